#!/usr/bin/env python3
"""gpufrac bench side by side with AIPerf and guidellm on the same synthetic server,
in the same run: TTFT and throughput of each, and their ratio to ours. Needs the venv of
scripts/setup-python.sh.

  peers.py [--build DIR] [--out DIR] [--concurrency 10,100] [--requests N]

The server has fixed timings (TTFT 50 ms, ITL 10 ms, 20 output tokens), so every tool should
measure TTFT = 50 ms and ITL = 10 ms; what a tool reports above that is its own overhead.
"""
import argparse
import glob
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
from perf import SynthServer, bench  # noqa: E402

TTFT_MS, ITL_MS, TOKENS, INPUT = 50, 10, 20, 128


def run_ours(build, out, url, users, requests):
    summary, _ = bench(build, out, f"ours-c{users}",
                       ["--url", url, "--model", "synthetic", "--concurrency", str(users),
                        "--requests", str(requests), "--warmup-requests", str(users),
                        "--input-tokens-mean", str(INPUT), "--output-tokens-mean", str(TOKENS)])
    m = summary["metrics"]
    return {"ttft_p50": m["time_to_first_token_ms"]["p50"],
            "ttft_p99": m["time_to_first_token_ms"]["p99"],
            "itl_p50": m["inter_token_latency_ms"]["p50"],
            "req_s": summary["request_throughput"], "tok_s": summary["output_token_throughput"],
            "ok": summary["requests"]["ok"]}


def run_aiperf(venv, out, tokenizer, url, users, requests):
    art = os.path.join(out, f"aiperf-c{users}")
    cmd = [os.path.join(venv, "bin", "aiperf"), "profile", "--model", "synthetic", "--url", url,
           "--endpoint-type", "chat", "--streaming", "--tokenizer", tokenizer,
           "--use-server-token-count", "--use-legacy-max-tokens", "--concurrency", str(users),
           "--request-count", str(requests), "--warmup-request-count", str(users),
           "--prompt-input-tokens-mean", str(INPUT), "--prompt-input-tokens-stddev", "0",
           "--prompt-output-tokens-mean", str(TOKENS), "--prompt-output-tokens-stddev", "0",
           "--extra-inputs", "ignore_eos:true", "--output-artifact-dir", art, "--ui-type", "none"]
    with open(art + ".log", "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=out).returncode
    if rc != 0:
        return {"error": f"aiperf exit {rc}, see {art}.log"}
    files = glob.glob(os.path.join(art, "**", "*aiperf*.json"), recursive=True)
    files = [f for f in files if "input" not in os.path.basename(f)]
    if not files:
        return {"error": f"no AIPerf JSON export in {art}"}
    data = json.load(open(sorted(files)[0]))

    def metric(*names):
        for n in names:
            if n in data:
                return data[n]
        return {}
    ttft = metric("time_to_first_token", "ttft")
    itl = metric("inter_token_latency", "itl")
    return {"ttft_p50": ttft.get("p50"), "ttft_p99": ttft.get("p99"), "itl_p50": itl.get("p50"),
            "req_s": metric("request_throughput").get("avg"),
            "tok_s": metric("output_token_throughput").get("avg"),
            "ok": metric("request_count").get("avg")}


def run_guidellm(venv, out, tokenizer, url, users, requests):
    path = os.path.join(out, f"guidellm-c{users}.json")
    cmd = [os.path.join(venv, "bin", "guidellm"), "run",
           "--backend", f"kind=openai_http,target={url},model=synthetic",
           "--profile", f"kind=concurrent,streams={users}",
           "--constraint", f"kind=max_requests,count={requests}",
           "--tokenizer", f"kind=hf_auto,model={tokenizer}",
           "--data", f"kind=synthetic_text,prompt_tokens={INPUT},output_tokens={TOKENS}",
           "--output", f"kind=json,path={path}", "--disable-console-interactive"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    with open(path + ".log", "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=out, env=env).returncode
    if rc != 0:
        return {"error": f"guidellm exit {rc}, see {path}.log"}
    m = json.load(open(path))["benchmarks"][0]["metrics"]
    ok = m["time_to_first_token_ms"]["successful"]
    return {"ttft_p50": ok["percentiles"]["p50"], "ttft_p99": ok["percentiles"]["p99"],
            "itl_p50": m["inter_token_latency_ms"]["successful"]["percentiles"]["p50"],
            "req_s": m["requests_per_second"]["successful"]["mean"],
            "tok_s": m["output_tokens_per_second"]["successful"]["mean"],
            "ok": ok["count"]}


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--venv", default=os.path.join(ROOT, ".venv"))
    p.add_argument("--out", default="/tmp/gpufrac-bench-peers")
    p.add_argument("--concurrency", default="10,100")
    p.add_argument("--requests", type=int, default=1000)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    tokenizer = os.path.join(a.out, "tokenizer")
    if not os.path.exists(os.path.join(tokenizer, "tokenizer.json")):
        subprocess.run([os.path.join(a.venv, "bin", "python"),
                        os.path.join(HERE, "make_tokenizer.py"), tokenizer], check=True)
    rows = []
    for users in [int(c) for c in a.concurrency.split(",")]:
        server = SynthServer(os.path.abspath(a.build), a.out, f"peers-c{users}",
                             ["--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS)])
        ours = run_ours(os.path.abspath(a.build), a.out, server.url, users, a.requests)
        aiperf = run_aiperf(a.venv, a.out, tokenizer, server.url, users, a.requests)
        guidellm = run_guidellm(a.venv, a.out, tokenizer, server.url, users, a.requests)
        server.stop()
        rows.append({"concurrency": users, "gpufrac": ours, "aiperf": aiperf,
                     "guidellm": guidellm})
    json.dump(rows, open(os.path.join(a.out, "peers.json"), "w"), indent=1)
    print(f"\n### Side by side (server: TTFT {TTFT_MS} ms, ITL {ITL_MS} ms, {TOKENS} tokens; "
          f"{a.requests} requests)\n")
    print("| users | tool | TTFT p50 (ms) | TTFT p99 (ms) | ITL p50 (ms) | req/s | output tok/s "
          "| TTFT p50 excess vs ours | tok/s vs ours |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        o = r["gpufrac"]
        for tool in ("gpufrac", "aiperf", "guidellm"):
            m = r[tool]
            if "error" in m:
                print(f"| {r['concurrency']} | {tool} | {m['error']} ||||||| ")
                continue
            excess = (m["ttft_p50"] - TTFT_MS) / max(o["ttft_p50"] - TTFT_MS, 1e-3)
            print(f"| {r['concurrency']} | {tool} | {m['ttft_p50']:.3f} | {m['ttft_p99']:.3f} "
                  f"| {m['itl_p50']:.3f} | {m['req_s']:.1f} | {m['tok_s']:.0f} "
                  f"| {excess:.1f}x | {m['tok_s'] / o['tok_s']:.3f} |")


if __name__ == "__main__":
    main()
