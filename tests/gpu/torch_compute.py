#!/usr/bin/env python3
"""PyTorch side of tests/gpu/compute_checks.sh (compute sharing); run plainly or under gpufrac run.

Workloads (each warms up, writes READY_DIR/NAME.ready, waits for the file READY_DIR/go, which
holds the start time as seconds since the epoch, then measures for --seconds from that instant,
so every process of a scenario measures the same wall-clock windows):

  torch_compute.py matmul --name N --ready-dir D --out F [--n 4096] [--sync-every 20] [--seconds 10]
      A loop of N x N fp16 matmuls, synchronizing every --sync-every iterations; counts the
      iterations completed in each 1 s window.
  torch_compute.py graph  --name N --ready-dir D --out F [--n 4096] [--graph-matmuls 4] [--sync-every 5]
      The same work replayed from a torch.cuda.CUDAGraph that captured --graph-matmuls matmuls
      (cuGraphLaunch); counts matmuls (replays x graph-matmuls) per window.
  torch_compute.py infer  --name N --ready-dir D --out F [--period-ms 25] [--burst 1]
      A small "inference" loop: every --period-ms, --burst forward passes of a batch-1 fp16 MLP
      (4 layers of 4096) then a synchronize; the step latency is from the first launch to the end
      of the synchronize. Sleeps to the next period. Reports every latency and p50/p99.

Each writes one JSON object to --out (and prints it): per-window counts, totals, latencies.

Analysis (no torch, no GPU):

  torch_compute.py share --alone A.json --run R.json --target 0.5 [--tol-pp 5] [--min-in 0.8]
      Per-window share = R's window rate / median of A's window rates. Prints one JSON line:
      median share, per-window shares, windows within target +- tol, pass.
  torch_compute.py ratio --alone A.json --run R.json
      Median of R's windows relative to median of A's windows (throughput ratio).
  torch_compute.py latency --run R.json
      p50/p99/max of an infer run, and the step count.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time


# --- measurement --------------------------------------------------------------------------------

def wait_for_go(args):
    """Writes the ready file, waits for the go file; returns the start as a time.monotonic()."""
    os.makedirs(args.ready_dir, exist_ok=True)
    ready = os.path.join(args.ready_dir, args.name + ".ready")
    with open(ready + ".tmp", "w") as f:
        f.write(str(os.getpid()) + "\n")
    os.replace(ready + ".tmp", ready)
    go = os.path.join(args.ready_dir, "go")
    deadline = time.monotonic() + args.timeout
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for " + go)
        time.sleep(0.01)
    start_epoch = None
    while start_epoch is None:
        try:
            with open(go) as f:
                start_epoch = float(f.read().strip())
        except ValueError:  # being written
            time.sleep(0.01)
    # One clock conversion: the epoch start expressed on this process's monotonic clock.
    return time.monotonic() + (start_epoch - time.time())


def sleep_until(t_mono):
    while True:
        left = t_mono - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.05) if left > 0.002 else 0)


def write_result(args, result):
    result.update({"name": args.name, "pid": os.getpid(), "seconds": args.seconds})
    line = json.dumps(result)
    print(line, flush=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        f.write(line + "\n")
    os.replace(tmp, args.out)


def counted_loop(args, torch, step, per_step):
    """Runs step() (async GPU work) until the measurement ends; per-window counts of work units.

    Synchronizes every --sync-every steps and credits those steps' units to the window in which
    the synchronize returned (sync batches are milliseconds, windows 1 s)."""
    # Warm-up: cuBLAS heuristics, clocks, the allocator; then idle until the common start.
    warm_end = time.monotonic() + args.warmup
    while time.monotonic() < warm_end:
        for _ in range(args.sync_every):
            step()
        torch.cuda.synchronize()
    start = wait_for_go(args)
    sleep_until(start)
    windows = [0] * int(args.seconds)
    end = start + args.seconds
    units = 0
    while True:
        for _ in range(args.sync_every):
            step()
        torch.cuda.synchronize()
        now = time.monotonic()
        if now >= end:
            break
        w = int(now - start)
        if 0 <= w < len(windows):
            windows[w] += args.sync_every * per_step
        units += args.sync_every * per_step
    return {"windows": windows, "units": units, "sync_every": args.sync_every}


def run_matmul(args):
    import torch
    a = torch.randn(args.n, args.n, device="cuda", dtype=torch.float16)
    b = torch.randn(args.n, args.n, device="cuda", dtype=torch.float16)
    c = torch.empty(args.n, args.n, device="cuda", dtype=torch.float16)

    def step():
        torch.matmul(a, b, out=c)

    result = counted_loop(args, torch, step, 1)
    result.update({"kind": "matmul", "n": args.n, "unit": "matmul"})
    write_result(args, result)
    return 0


def run_graph(args):
    import torch
    a = torch.randn(args.n, args.n, device="cuda", dtype=torch.float16)
    b = torch.randn(args.n, args.n, device="cuda", dtype=torch.float16)
    outs = [torch.empty(args.n, args.n, device="cuda", dtype=torch.float16)
            for _ in range(args.graph_matmuls)]
    # Warm up on a side stream before capture, as torch's CUDA graph docs require.
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            for o in outs:
                torch.matmul(a, b, out=o)
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for o in outs:
            torch.matmul(a, b, out=o)
    torch.cuda.synchronize()

    result = counted_loop(args, torch, graph.replay, args.graph_matmuls)
    result.update({"kind": "graph", "n": args.n, "graph_matmuls": args.graph_matmuls,
                   "unit": "matmul (replays x graph_matmuls)"})
    write_result(args, result)
    return 0


def run_infer(args):
    import torch
    torch.manual_seed(0)
    layers = [torch.randn(args.width, args.width, device="cuda", dtype=torch.float16) / 64
              for _ in range(args.layers)]
    x0 = torch.randn(args.batch, args.width, device="cuda", dtype=torch.float16)

    def forward():
        x = x0
        for w in layers:
            x = torch.relu(x @ w)
        return x

    period = args.period_ms / 1000.0
    warm_end = time.monotonic() + args.warmup
    while time.monotonic() < warm_end:
        for _ in range(args.burst):
            forward()
        torch.cuda.synchronize()
        time.sleep(period / 2)
    start = wait_for_go(args)
    end = start + args.seconds
    latencies = []
    windows = [0] * int(args.seconds)
    missed = 0
    t_next = start
    while True:
        sleep_until(t_next)
        t0 = time.monotonic()
        if t0 >= end:
            break
        for _ in range(args.burst):
            forward()
        torch.cuda.synchronize()
        t1 = time.monotonic()
        latencies.append((t1 - t0) * 1000.0)
        w = int(t1 - start)
        if 0 <= w < len(windows):
            windows[w] += 1
        t_next += period
        if t_next < t1:  # overran the period: skip the missed ticks rather than bunch up
            missed += int((t1 - t_next) / period) + 1
            t_next += (int((t1 - t_next) / period) + 1) * period
    lat = sorted(latencies)
    result = {"kind": "infer", "unit": "step", "windows": windows, "units": len(latencies),
              "latencies_ms": [round(v, 4) for v in latencies],
              "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
              "max_ms": lat[-1] if lat else None, "missed_periods": missed,
              "period_ms": args.period_ms, "burst": args.burst, "width": args.width,
              "layers": args.layers, "batch": args.batch}
    write_result(args, result)
    return 0


# --- analysis -----------------------------------------------------------------------------------

def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    k = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[k - 1]


def load(path):
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)
    raise SystemExit("no JSON in " + path)


def analyze_share(args):
    alone, run = load(args.alone), load(args.run)
    base = statistics.median(alone["windows"])
    shares = [w / base for w in run["windows"]] if base > 0 else []
    tol = args.tol_pp / 100.0
    inside = sum(1 for s in shares if abs(s - args.target) <= tol)
    med = statistics.median(shares) if shares else 0.0
    frac_in = inside / len(shares) if shares else 0.0
    ok = bool(shares) and abs(med - args.target) <= tol and frac_in >= args.min_in
    print(json.dumps({
        "alone_median": base, "run_median": statistics.median(run["windows"]) if shares else 0,
        "median_share": round(med, 4), "shares": " ".join("%.3f" % s for s in shares),
        "windows_in": inside, "windows": len(shares), "pass": ok,
        "min_share": round(min(shares), 4) if shares else 0,
        "max_share": round(max(shares), 4) if shares else 0,
    }))
    return 0


def analyze_ratio(args):
    alone, run = load(args.alone), load(args.run)
    base = statistics.median(alone["windows"])
    ratios = [w / base for w in run["windows"]] if base > 0 else []
    print(json.dumps({
        "alone_median": base, "run_median": statistics.median(run["windows"]),
        "ratio": round(statistics.median(ratios), 4) if ratios else 0,
        "ratios": " ".join("%.3f" % r for r in ratios),
    }))
    return 0


def analyze_latency(args):
    run = load(args.run)
    lat = sorted(run.get("latencies_ms", []))
    print(json.dumps({
        "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
        "max_ms": lat[-1] if lat else None, "steps": len(lat),
        "missed_periods": run.get("missed_periods", 0),
    }))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("matmul", "graph", "infer"):
        p = sub.add_parser(name)
        p.add_argument("--name", required=True)
        p.add_argument("--ready-dir", required=True)
        p.add_argument("--out", required=True)
        p.add_argument("--seconds", type=int, default=10)
        p.add_argument("--warmup", type=float, default=2.0)
        p.add_argument("--timeout", type=float, default=300.0)
        p.add_argument("--n", type=int, default=4096)
        p.add_argument("--sync-every", type=int, default=20 if name == "matmul" else 5)
        p.add_argument("--graph-matmuls", type=int, default=4)
        p.add_argument("--period-ms", type=float, default=25.0)
        p.add_argument("--burst", type=int, default=1)
        p.add_argument("--width", type=int, default=4096)
        p.add_argument("--layers", type=int, default=4)
        p.add_argument("--batch", type=int, default=1)
    p = sub.add_parser("share")
    p.add_argument("--alone", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--target", type=float, required=True)
    p.add_argument("--tol-pp", type=float, default=5.0)
    p.add_argument("--min-in", type=float, default=0.8)
    p = sub.add_parser("ratio")
    p.add_argument("--alone", required=True)
    p.add_argument("--run", required=True)
    p = sub.add_parser("latency")
    p.add_argument("--run", required=True)
    args = parser.parse_args()
    if args.command in ("matmul", "graph", "infer"):
        import torch
        if not torch.cuda.is_available():
            print(json.dumps({"error": "torch.cuda.is_available() is False"}), flush=True)
            return 3
        return {"matmul": run_matmul, "graph": run_graph, "infer": run_infer}[args.command](args)
    return {"share": analyze_share, "ratio": analyze_ratio,
            "latency": analyze_latency}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
