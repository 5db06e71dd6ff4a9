#!/usr/bin/env python3
"""Scale-out under a load ramp, measured: `gpufrac bench` sweeps the users of a chat model up and
down while `gpufrac serve` autoscales it; prints, per 5 s of the run, the requests, failures, TTFT
p50/p95/p99 and the replicas in rotation, with the autoscaler's decisions.

  bench/serve/ramp.py [--build build] [--users 2,8,16,32,8,2] [--step 10]

The replica (gpufrac-synth-server) slows with load like a real LLM server: TTFT grows by
--slowdown-ms for every other stream it serves, so one replica cannot hold the SLA at the peak.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Deployment  # noqa: E402


def pct(v, p):
    if not v:
        return float("nan")
    v = sorted(v)
    r = p / 100 * (len(v) - 1)
    lo = math.floor(r)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (r - lo)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--users", default="2,8,16,32,8,2")
    ap.add_argument("--step", type=float, default=10, help="seconds per load step")
    ap.add_argument("--slowdown-ms", default="10")
    ap.add_argument("--sla-ms", type=int, default=300)
    args = ap.parse_args()
    models = f"""autoscaler: {{interval: 500ms, window: 10s, scale_out_cooldown: 2s,
             scale_in_cooldown: 5s, scale_in_stable: 8s}}
models:
  - name: chat
    command: [SYNTH, --port, "{{port}}", --model, chat, --ttft-ms, "40", --itl-ms, "10",
              --slowdown-ms-per-stream, "{args.slowdown_ms}"]
    health: {{interval: 500ms}}
    gpu: {{memory: "0.15", compute: 0.15}}
    min_replicas: 1
    max_replicas: 6
    drain_grace: 30s
    sla: {{ttft_p95: {args.sla_ms}ms, inflight_per_replica: 4}}
    admission: {{max_inflight_per_replica: 16, max_queue: 1000, queue_timeout: 30s}}
"""
    with Deployment(args.build, models) as d:
        wait_ready = time.time() + 30
        while time.time() < wait_ready and "replica.ready" not in d.log():
            time.sleep(0.1)
        wall_minus_mono = time.time() - time.monotonic()
        out = f"{d.tmp}/bench"
        r = subprocess.run([d.gpufrac, "bench", "--url", f"http://127.0.0.1:{d.port}", "--model",
                            "chat", "--concurrency", args.users, "--duration", f"{args.step}s",
                            "--output-tokens-mean", "32", "--input-tokens-mean", "64",
                            "--output-dir", out, "--no-progress"],
                           capture_output=True, text=True, timeout=1200)
        if r.returncode not in (0, 1):
            sys.exit(r.stderr)
        time.sleep(20)  # let it scale back in
        recs = [json.loads(line) for line in open(f"{out}/requests.jsonl")]
        log = d.log()
    t0 = min(x["start_ns"] for x in recs) / 1e9
    # Replicas in rotation over time, from the log (wall clock -> monotonic).
    events = []
    for m in re.finditer(r"ts=(\S+) event=(replica\.ready|replica\.draining|replica\.failed)", log):
        ts = datetime.strptime(m[1], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        events.append((ts.timestamp() - wall_minus_mono - t0, 1 if m[2] == "replica.ready" else -1))
    events.sort()
    windows = {}
    for x in recs:
        w = int((x["start_ns"] / 1e9 - t0) // 5)
        windows.setdefault(w, []).append(x)
    print("| time (s) | requests | failed | TTFT p50 (ms) | TTFT p95 (ms) | TTFT p99 (ms) | "
          "replicas in rotation at the end |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for w in sorted(windows):
        xs = windows[w]
        ttft = [x["ttft_ms"] for x in xs if "ttft_ms" in x]
        failed = sum(1 for x in xs if x["error"] != "none")
        ready = sum(delta for t, delta in events if t <= (w + 1) * 5)
        print(f"| {w * 5}-{w * 5 + 5} | {len(xs)} | {failed} | {pct(ttft, 50):.0f} | "
              f"{pct(ttft, 95):.0f} | {pct(ttft, 99):.0f} | {ready} |")
    print()
    for m in re.finditer(r"ts=(\S+) event=autoscaler.decision (.*)", log):
        ts = datetime.strptime(m[1], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        print(f"- t={ts.timestamp() - wall_minus_mono - t0:6.1f}s {m[2]}")
    total_failed = sum(1 for x in recs if x["error"] != "none")
    print(f"\n{len(recs)} requests, {total_failed} failed; SLA ttft_p95 {args.sla_ms} ms")


if __name__ == "__main__":
    main()
