#!/usr/bin/env python3
"""Joins gpufrac bench's requests.jsonl with gpufrac-synth-server's ground truth (same host, same
CLOCK_MONOTONIC) and splits measured TTFT into what the server did and what the client added.

  added TTFT      = measured TTFT - configured TTFT (what the issue's target names)
  server lateness = server's first content write - (received + configured TTFT)
  client overhead = measured TTFT - server-side TTFT
                  = (server received - client start) + (client read - server write)

Usage: groundtruth.py REQUESTS_JSONL TRUTH_JSONL TTFT_MS [RUN_LABEL]  -> JSON on stdout
"""
import json
import sys


def percentile(values, p):
    """numpy-style linear interpolation (what gpufrac bench and GenAI-Perf use)."""
    if not values:
        return float("nan")
    s = sorted(values)
    rank = p / 100 * (len(s) - 1)
    lo = int(rank)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (rank - lo)


def describe(values_us):
    return {
        "count": len(values_us),
        "p50_us": percentile(values_us, 50),
        "p90_us": percentile(values_us, 90),
        "p99_us": percentile(values_us, 99),
        "max_us": max(values_us) if values_us else float("nan"),
    }


def main():
    requests_path, truth_path, ttft_ms = sys.argv[1], sys.argv[2], float(sys.argv[3])
    run = sys.argv[4] if len(sys.argv) > 4 else None
    truth = {}
    with open(truth_path) as f:
        for line in f:
            t = json.loads(line)
            truth[t["request_id"]] = t
    added, lateness, overhead, send_lag, read_lag = [], [], [], [], []
    for line in open(requests_path):
        r = json.loads(line)
        if r["warmup"] or r["error"] != "none" or not r["content_ns"]:
            continue
        if run is not None and r.get("run") != run:
            continue
        t = truth.get(str(r["id"]))
        if t is None or not t["content_ns"]:
            continue
        measured_ns = r["content_ns"][0] - r["start_ns"]
        server_ns = t["content_ns"][0] - t["received_ns"]
        added.append((measured_ns - ttft_ms * 1e6) / 1e3)
        lateness.append((t["content_ns"][0] - t["received_ns"] - ttft_ms * 1e6) / 1e3)
        overhead.append((measured_ns - server_ns) / 1e3)
        send_lag.append((t["received_ns"] - r["start_ns"]) / 1e3)
        read_lag.append((r["content_ns"][0] - t["content_ns"][0]) / 1e3)
    print(json.dumps({
        "added_ttft": describe(added),
        "server_lateness": describe(lateness),
        "client_overhead": describe(overhead),
        "send_lag": describe(send_lag),
        "read_lag": describe(read_lag),
    }, indent=1))


if __name__ == "__main__":
    main()
