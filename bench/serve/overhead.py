#!/usr/bin/env python3
"""Gateway overhead: the TTFT that `gpufrac serve` adds over going straight to the replica, side by
side with nginx as a reverse proxy, in the same run on the same replica.

One replica (gpufrac-synth-server with fixed timings) runs as a tenant of a real `gpufrac node` on
the simulated driver, started by a real `gpufrac serve`. nginx (Debian package) proxies to the same
replica with buffering off and kept-alive upstream connections. `gpufrac bench` measures each path
at each concurrency in turn (direct, gateway, nginx), so drift hits all three alike. With --rounds R
the three are measured R times, interleaved in a rotating order; each round's added TTFT is taken
against that round's direct run, and the table reports the median over rounds.

  bench/serve/overhead.py [--build build] [--concurrency 1,100,1000] [--duration 10] [--rounds 1]
                          [--cpus-bench LIST --cpus-replica LIST --cpus-proxy LIST]

The --cpus-* options pin the load generator, the replica and the proxy under test (gateway or
nginx) to CPU lists such as "0-3" or "4,5", so that on a machine with enough cores each role has
its own and the added TTFT measures the proxy rather than the wait for a free core. Give all three
or none; a CPU that this process may not use is refused.

Prints a Markdown table (added TTFT median and p99 per path and concurrency) and writes the raw
summaries as JSON next to it (--out, default /tmp/gpufrac-serve-overhead.json).
"""
import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Deployment, free_port, health, wait  # noqa: E402


NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/nginx-body;
  proxy_temp_path {tmp}/nginx-proxy;
  fastcgi_temp_path {tmp}/nginx-fastcgi;
  uwsgi_temp_path {tmp}/nginx-uwsgi;
  scgi_temp_path {tmp}/nginx-scgi;
  upstream replica {{ server 127.0.0.1:{replica}; keepalive 2048; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    keepalive_requests 1000000;
    location / {{
      proxy_pass http://replica;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 600s;
    }}
  }}
}}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--concurrency", default="1,100,1000")
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure each path this many times per concurrency, interleaved")
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--ttft-ms", default="50")
    ap.add_argument("--itl-ms", default="100")
    ap.add_argument("--output-tokens", default="5")
    ap.add_argument("--nginx-workers", default="1")
    ap.add_argument("--out", default="/tmp/gpufrac-serve-overhead.json")
    for role in ("bench", "replica", "proxy"):
        ap.add_argument(f"--cpus-{role}", type=cpu_list, metavar="LIST",
                        help=f"pin the {role} to these CPUs (e.g. 0-3,6)")
    args = ap.parse_args()
    pins = {r: getattr(args, f"cpus_{r}") for r in ("bench", "replica", "proxy")}
    if any(pins.values()) and not all(pins.values()):
        sys.exit("overhead.py: --cpus-bench, --cpus-replica and --cpus-proxy go together: "
                 "give all three or none")
    pins = pins if all(pins.values()) else None
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        sys.exit("overhead.py: nginx is not installed (scripts/setup.sh installs it)")
    models = f"""models:
  - name: synthetic
    command: [SYNTH, --port, "{{port}}", --model, synthetic, --ttft-ms, "{args.ttft_ms}",
              --itl-ms, "{args.itl_ms}"]
    gpu: {{memory: "0.25"}}
    min_replicas: 1
    max_replicas: 1
    sla: {{ttft_p95: 10s}}
    admission: {{max_inflight_per_replica: 100000, max_queue: 0}}
"""
    with Deployment(args.build, models) as d:
        gpufrac, tmp, gw_port = d.gpufrac, d.tmp, d.port
        wait(lambda: health(gw_port)["models"]["synthetic"]["ready"] == 1, 30, "the replica")
        replica = int(re.search(r"event=replica.ready .* port=(\d+)", d.log())[1])
        ng_port = free_port()
        with open(f"{tmp}/nginx.conf", "w") as f:
            f.write(NGINX_CONF.format(tmp=tmp, replica=replica, port=ng_port,
                                      workers=args.nginx_workers))
        d.start([nginx, "-c", f"{tmp}/nginx.conf", "-p", tmp], "nginx.log")
        # Whose CPU time each path costs: the gateway is the serve process, nginx its master and
        # workers; the direct path has no proxy.
        proxies = {"gateway": d.procs[1].pid, "nginx": d.procs[-1].pid}
        wait(lambda: socket.create_connection(("127.0.0.1", ng_port), 1).close() is None, 10,
             "nginx")
        if pins:
            replica_pids = [p for p, argv in processes() if os.path.basename(argv[0]) ==
                            "gpufrac-synth-server" and str(replica) in argv]
            if not replica_pids:
                sys.exit(f"overhead.py: found no replica process serving port {replica} to pin")
            # The node agent sits idle during the measurement; it goes with the load generator.
            # First, since the replica is its child and is pinned apart right after.
            pin_tree(d.procs[0].pid, pins["bench"])
            for pid in replica_pids:
                pin_tree(pid, pins["replica"])
            for pid in proxies.values():
                pin_tree(pid, pins["proxy"])
            print("pinned: load generator on CPUs " + fmt_cpus(pins["bench"]) + ", replica on " +
                  fmt_cpus(pins["replica"]) + ", proxy on " + fmt_cpus(pins["proxy"]),
                  file=sys.stderr)
        targets = {"direct": replica, "gateway": gw_port, "nginx": ng_port}
        concurrencies = [int(x) for x in args.concurrency.split(",")]
        runs = {}  # (path, concurrency) -> [summary per round]
        for c in concurrencies:
            for rnd in range(args.rounds):
                # Rotate the order each round so that no path always runs first (or last).
                order = list(targets)[rnd % 3:] + list(targets)[:rnd % 3]
                for name in order:
                    before = tree_cpu_seconds(proxies.get(name))
                    summary = measure(gpufrac, targets[name], c, args,
                                      pins["bench"] if pins else None)
                    summary["proxy_cpu_s"] = tree_cpu_seconds(proxies.get(name)) - before
                    runs.setdefault((name, c), []).append(summary)
                    ttft = summary.get("metrics", {}).get("time_to_first_token_ms", {})
                    print(f"round {rnd + 1} {name:8s} c={c:5d}: "
                          f"ttft p50 {ttft.get('p50', float('nan')):8.3f} ms  "
                          f"p99 {ttft.get('p99', float('nan')):8.3f} ms  "
                          f"ok {summary.get('requests', {}).get('ok')} "
                          f"failed {summary.get('requests', {}).get('failed')}", file=sys.stderr)
        with open(args.out, "w") as f:
            out = {f"{name}@{c}": v for (name, c), v in runs.items()}
            if pins:
                out["pinned_cpus"] = {role: sorted(cpus) for role, cpus in pins.items()}
            json.dump(out, f, indent=1)
        report(runs, targets, concurrencies, args.rounds)


def measure(gpufrac, port, c, args, bench_cpus):
    cmd = [gpufrac, "bench", "--url", f"http://127.0.0.1:{port}", "--model",
           "synthetic", "--concurrency", str(c), "--duration", f"{args.duration}s",
           "--warmup", f"{args.warmup}s", "--ramp-up", f"{min(2.0, c / 500)}s",
           "--input-tokens-mean", "32", "--output-tokens-mean", args.output_tokens,
           "--json", "--no-progress"]
    pin = (lambda: os.sched_setaffinity(0, bench_cpus)) if bench_cpus else None
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, preexec_fn=pin)
    return json.loads(r.stdout) if r.stdout.strip() else {}


def cpu_list(text):
    """"0-3,6" -> {0, 1, 2, 3, 6}; every CPU must be one this process may run on."""
    cpus = set()
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\s*-\s*(\d+))?\s*", part)
        if not m or (m[2] and int(m[2]) < int(m[1])):
            raise argparse.ArgumentTypeError(f"'{text}' is not a CPU list such as 0-3,6")
        cpus.update(range(int(m[1]), int(m[2] or m[1]) + 1))
    allowed = os.sched_getaffinity(0)
    if not cpus <= allowed:
        raise argparse.ArgumentTypeError(
            f"CPU {min(cpus - allowed)} is not available (this process may use "
            f"{fmt_cpus(allowed)})")
    return cpus


def fmt_cpus(cpus):
    return ",".join(str(c) for c in sorted(cpus))


def processes():
    """(pid, argv) of every process that can be read."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0]:
                yield int(entry), [a.decode(errors="replace") for a in argv]


def pin_tree(pid, cpus):
    """Pins every thread of a process and of its children (nginx's workers) to cpus."""
    children = [p for p, _ in processes() if parent_of(p) == pid]
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), cpus)
    for child in children:
        pin_tree(child, cpus)


def parent_of(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def tree_cpu_seconds(pid):
    """User + system CPU seconds of a process and its children (nginx's workers), from /proc."""
    if pid is None:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state, ppid, ..., utime and stime are the 12th and 13th.
        if int(entry) == pid or int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def cpu_us_per_request(summary):
    """Proxy CPU per request over the whole measured run (warm-up included in both)."""
    requests = summary.get("requests", {})
    n = requests.get("ok", 0) + requests.get("failed", 0)
    return summary.get("proxy_cpu_s", 0.0) * 1e6 / n if n else float("nan")


def ttft(summary, stat):
    return summary.get("metrics", {}).get("time_to_first_token_ms", {}).get(stat, float("nan"))


def report(runs, targets, concurrencies, rounds):
    """Per round, added = path - direct of that same round; the table gives the median over rounds
    (and the range), so that one noisy round cannot make or break a figure."""
    print(f"| concurrent streams | path | TTFT p50 (ms) | TTFT p99 (ms) | added p50 (ms) | "
          f"added p99 (ms) | added p99 range over {rounds} rounds | proxy CPU per request (us) | "
          f"requests ok / failed |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in concurrencies:
        base = runs[("direct", c)]
        for name in targets:
            mine = runs[(name, c)]
            p50 = statistics.median(ttft(s, "p50") for s in mine)
            p99 = statistics.median(ttft(s, "p99") for s in mine)
            ok = sum(s.get("requests", {}).get("ok", 0) for s in mine)
            failed = sum(s.get("requests", {}).get("failed", 0) for s in mine)
            added50 = added99 = spread = cpu = ""
            if name != "direct":
                d50 = [ttft(m, "p50") - ttft(b, "p50") for m, b in zip(mine, base)]
                d99 = [ttft(m, "p99") - ttft(b, "p99") for m, b in zip(mine, base)]
                added50 = f"{statistics.median(d50):+.3f}"
                added99 = f"{statistics.median(d99):+.3f}"
                spread = f"{min(d99):+.3f} .. {max(d99):+.3f}"
                cpu = f"{statistics.median(cpu_us_per_request(s) for s in mine):.0f}"
            print(f"| {c} | {name} | {p50:.3f} | {p99:.3f} | {added50} | {added99} | {spread} | "
                  f"{cpu} | {ok} / {failed} |")

if __name__ == "__main__":
    main()
