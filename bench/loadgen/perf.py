#!/usr/bin/env python3
"""Performance of gpufrac bench itself, against gpufrac-synth-server with fixed timings (stdlib only).

  perf.py overhead  added client TTFT (measured - configured) at 1, 100, 1000 concurrent streams,
                    split with the server's ground truth into server lateness and client overhead
  perf.py scale     TTFT p99 at 10,000 concurrent streams against concurrency 1
  perf.py rate      open-loop constant rate: achieved send rate against 1k, 5k, 10k requests/s
  perf.py all       the three above

Options: --build DIR (default build), --out DIR (default /tmp/gpufrac-bench-perf), --quick
(shorter runs), --streams N[,N...] (overhead: the concurrencies, default 1,100,1000),
--busy-poll none|client|server|both (who runs with --busy-poll; default none). Prints a Markdown
table per scenario and writes results.json into --out.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import groundtruth  # noqa: E402


class SynthServer:
    def __init__(self, build, out, name, flags):
        self.truth = os.path.join(out, name + ".truth.jsonl")
        self.log = open(os.path.join(out, name + ".synth.log"), "w")
        cmd = [os.path.join(build, "bin", "gpufrac-synth-server"), "--port", "0",
               "--ground-truth", self.truth] + server_flags() + flags
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            raise SystemExit("synthetic server did not start: " + line)
        self.url = "http://" + line.split("listening on ")[1].strip()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.log.close()


BUSY_POLL = "none"  # set from --busy-poll


def server_flags():
    return ["--busy-poll"] if BUSY_POLL in ("server", "both") else []


def client_flags():
    return ["--busy-poll"] if BUSY_POLL in ("client", "both") else []


def bench(build, out, name, args):
    run_dir = os.path.join(out, name)
    cmd = [os.path.join(build, "bin", "gpufrac"), "bench", "--no-progress", "--output-dir",
           run_dir] + client_flags() + args
    started = time.time()
    cpu_before = os.times()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"gpufrac bench failed ({proc.returncode}): {proc.stderr}")
    cpu_after = os.times()
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    summary["_wall_s"] = time.time() - started
    # CPU the client used (user + system), as a share of one core over its wall time.
    cpu = (cpu_after.children_user - cpu_before.children_user
           + cpu_after.children_system - cpu_before.children_system)
    summary["_client_cpu_pct"] = 100 * cpu / summary["_wall_s"]
    return summary, os.path.join(run_dir, "requests.jsonl")


def split(requests, truth, ttft_ms):
    # client overhead = request delivery (client write -> server read, which includes the server's
    # wake-up) + response delivery (server send() -> client parse); one clock (CLOCK_MONOTONIC).
    added, lateness, overhead, request_delivery, response_delivery = [], [], [], [], []
    truths = {}
    with open(truth) as f:
        for line in f:
            t = json.loads(line)
            truths[t["request_id"]] = t
    with open(requests) as f:
        for line in f:
            r = json.loads(line)
            if r["warmup"] or r["error"] != "none" or not r["content_ns"]:
                continue
            t = truths.get(str(r["id"]))
            if t is None or not t["content_ns"]:
                continue
            measured = r["content_ns"][0] - r["start_ns"]
            server = t["content_ns"][0] - t["received_ns"]
            added.append((measured - ttft_ms * 1e6) / 1e3)
            lateness.append((server - ttft_ms * 1e6) / 1e3)
            overhead.append((measured - server) / 1e3)
            request_delivery.append((t["received_ns"] - r["start_ns"]) / 1e3)
            response_delivery.append((r["content_ns"][0] - t["content_ns"][0]) / 1e3)
    return {k: groundtruth.describe(v) for k, v in
            (("added_ttft", added), ("server_lateness", lateness), ("client_overhead", overhead),
             ("request_delivery", request_delivery), ("response_delivery", response_delivery))}


def overhead(build, out, quick, streams=(1, 100, 1000)):
    ttft_ms, itl_ms, tokens = 200, 100, 10
    rows = []
    for users in streams:
        name = f"overhead-c{users}"
        server = SynthServer(build, out, name, ["--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms)])
        request_s = (ttft_ms + itl_ms * (tokens - 1)) / 1000
        args = ["--url", server.url, "--model", "synthetic", "--concurrency", str(users),
                "--output-tokens-mean", str(tokens), "--input-tokens-mean", "64",
                "--ramp-up", f"{request_s}s", "--warmup", f"{request_s * 2 + 0.5}s",
                "--duration", "4s" if quick else "8s"]
        summary, requests = bench(build, out, name, args)
        server.stop()
        parts = split(requests, server.truth, ttft_ms)
        rows.append({"concurrency": users, "ok": summary["requests"]["ok"],
                     "failed": summary["requests"]["failed"],
                     "ttft_p50_ms": summary["metrics"]["time_to_first_token_ms"]["p50"],
                     "ttft_p99_ms": summary["metrics"]["time_to_first_token_ms"]["p99"],
                     "client_cpu_pct": summary["_client_cpu_pct"], **parts})
    print(f"\n### Added client TTFT (configured TTFT 200 ms, ITL 100 ms, 10 tokens; "
          f"busy-poll: {BUSY_POLL})\n")
    print("| streams | requests | added TTFT p50 / p99 (us) | server lateness p50 / p99 (us) "
          "| client overhead p50 / p99 (us) | of which request delivery | response delivery "
          "| client CPU |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        f = lambda k: f"{r[k]['p50_us']:.0f} / {r[k]['p99_us']:.0f}"  # noqa: E731
        print(f"| {r['concurrency']} | {r['ok']} | {f('added_ttft')} | {f('server_lateness')} "
              f"| {f('client_overhead')} | {f('request_delivery')} | {f('response_delivery')} "
              f"| {r['client_cpu_pct']:.0f}% |")
    return rows


def scale(build, out, quick):
    ttft_ms, itl_ms, tokens = 1000, 1000, 5
    rows = []
    for users in (1, 10000):
        name = f"scale-c{users}"
        server = SynthServer(build, out, name, ["--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms)])
        request_s = (ttft_ms + itl_ms * (tokens - 1)) / 1000
        args = ["--url", server.url, "--model", "synthetic", "--concurrency", str(users),
                "--output-tokens-mean", str(tokens), "--input-tokens-mean", "32",
                "--ramp-up", f"{request_s}s", "--warmup", f"{request_s + 1}s",
                "--duration", "10s" if quick else "20s", "--timeout", "60s"]
        summary, requests = bench(build, out, name, args)
        server.stop()
        parts = split(requests, server.truth, ttft_ms)
        ttft = summary["metrics"]["time_to_first_token_ms"]
        rows.append({"concurrency": users, "ok": summary["requests"]["ok"],
                     "failed": summary["requests"]["failed"], "errors": summary["errors_by_kind"],
                     "ttft_p50_ms": ttft.get("p50"), "ttft_p99_ms": ttft.get("p99"),
                     "request_throughput": summary["request_throughput"], **parts})
    base = rows[0]["ttft_p99_ms"]
    print("\n### 10,000 concurrent streams (TTFT 1 s, ITL 1 s, 5 tokens)\n")
    print("| streams | requests ok / failed | req/s | TTFT p50 (ms) | TTFT p99 (ms) "
          "| p99 vs c=1 | server lateness p99 (us) | client overhead p99 (us) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['ok']} / {r['failed']} | {r['request_throughput']:.0f} "
              f"| {r['ttft_p50_ms']:.2f} | {r['ttft_p99_ms']:.2f} "
              f"| {100 * (r['ttft_p99_ms'] / base - 1):+.2f}% "
              f"| {r['server_lateness']['p99_us']:.0f} | {r['client_overhead']['p99_us']:.0f} |")
    return rows


def rate(build, out, quick):
    rows = []
    for target in (1000, 5000, 10000):
        name = f"rate-{target}"
        server = SynthServer(build, out, name, ["--ttft-ms", "1", "--itl-ms", "0"])
        args = ["--url", server.url, "--model", "synthetic", "--rate", str(target), "--arrival",
                "constant", "--output-tokens-mean", "1", "--input-tokens-mean", "16",
                "--warmup", "1s", "--duration", "3s" if quick else "5s"]
        summary, requests = bench(build, out, name, args)
        server.stop()
        starts = []
        with open(requests) as f:
            for line in f:
                r = json.loads(line)
                if not r["warmup"]:
                    starts.append(r["start_ns"])
        starts.sort()
        achieved = (len(starts) - 1) / ((starts[-1] - starts[0]) / 1e9)
        lag = summary["metrics"]["schedule_lag_ms"]
        rows.append({"target": target, "sent": len(starts), "achieved": achieved,
                     "error_pct": 100 * (achieved / target - 1), "ok": summary["requests"]["ok"],
                     "failed": summary["requests"]["failed"], "lag_p50_ms": lag["p50"],
                     "lag_p99_ms": lag["p99"]})
    print("\n### Open-loop constant rate (server: TTFT 1 ms, 1 token)\n")
    print("| target req/s | sent | achieved req/s | error | schedule lag p50 / p99 (ms) "
          "| ok / failed |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['target']} | {r['sent']} | {r['achieved']:.1f} | {r['error_pct']:+.2f}% "
              f"| {r['lag_p50_ms']:.3f} / {r['lag_p99_ms']:.3f} | {r['ok']} / {r['failed']} |")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["overhead", "scale", "rate", "all"])
    parser.add_argument("--build", default=os.path.join(HERE, "..", "..", "build"))
    parser.add_argument("--out", default="/tmp/gpufrac-bench-perf")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--streams", default="1,100,1000")
    parser.add_argument("--busy-poll", default="none", choices=["none", "client", "server", "both"])
    a = parser.parse_args()
    global BUSY_POLL
    BUSY_POLL = a.busy_poll
    os.makedirs(a.out, exist_ok=True)
    results = {"busy_poll": a.busy_poll, "load_average_before": os.getloadavg()}
    streams = tuple(int(n) for n in a.streams.split(","))
    for name, fn in (("overhead", overhead), ("scale", scale), ("rate", rate)):
        if a.scenario in (name, "all"):
            build = os.path.abspath(a.build)
            if name == "overhead":
                results[name] = fn(build, a.out, a.quick, streams)
            else:
                results[name] = fn(build, a.out, a.quick)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
