#!/usr/bin/env python3
"""What the NVML backstop of gpufrac node costs and how fast it sees an escape (issue 5).

Starts a real agent on the simulated driver (two simulated 80 GiB GPUs; temp socket, state and
simulation id; backstop in warn mode at --interval), then
  1. with N tenants running (each a cuda_probe holding memory under the interposer, so NVML lists
     N processes), reads the backstop's own duration of a pass (last_sample_ms) over a few seconds;
  2. starts --strangers processes one after the other, each at a random point of the sampling
     period, that allocate outside gpufrac (cuda_probe without the interposer) and measures, for
     each, the time from its allocation ("ready") to the agent listing it in /v1/backstop
     (detection latency: the backstop acts on the second sample that sees it), then ends it;
  3. reads GET /v1/tenants latency meanwhile (the sampler holds the agent's lock while judging).
Prints a JSON summary; --markdown prints a table too.

  bench/node/backstop.py [--build build] [--tenants 100] [--strangers 10] [--interval 1s]
"""
import argparse
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def call(conn, method, target, body=None):
    start = time.perf_counter()
    conn.request(method, target, body=json.dumps(body) if body is not None else None,
                 headers={"Content-Type": "application/json"} if body is not None else {})
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, json.loads(data) if data else None, (time.perf_counter() - start) * 1000


def pct(values, p):
    values = sorted(values)
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def wait_ready(path, proc, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path) and "ready" in open(path).read():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--tenants", type=int, default=100)
    ap.add_argument("--strangers", type=int, default=10)
    ap.add_argument("--interval", default="1s")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    probe = f"{build}/tests/cuda_probe"
    tmp = tempfile.mkdtemp(prefix="gpufrac-node-backstop-")
    sock = os.path.join(tmp, "node.sock")
    sim_id = f"nodebackstop{os.getpid()}"
    env = dict(os.environ, LD_LIBRARY_PATH=f"{build}/lib/sim", GPUFRAC_SIM_ID=sim_id,
               GPUFRAC_SIM_GPUS="H100:80GiB,H100:80GiB")
    env.pop("LD_PRELOAD", None)
    with open(os.path.join(tmp, "node.yaml"), "w") as f:
        f.write(f"socket: {sock}\nstate: {tmp}/node.db\ngrace_period: 1s\n"
                f"interposer: {build}/lib/libgpufrac.so\n"
                f"backstop:\n  mode: warn\n  interval: {args.interval}\n")
    log = open(os.path.join(tmp, "agent.log"), "w")
    agent = subprocess.Popen([f"{build}/bin/gpufrac", "node", "--config", f"{tmp}/node.yaml"],
                             env=env, stdout=log, stderr=log)
    uuids, strangers, tenant_pids = [], [], []
    failed = True
    try:
        deadline = time.time() + 20
        while not os.path.exists(sock):
            if time.time() > deadline or agent.poll() is not None:
                sys.exit("agent did not start; see " + log.name)
            time.sleep(0.02)
        conn = UnixConnection(sock)
        uuids = [g["uuid"] for g in call(conn, "GET", "/v1/gpus")[1]["gpus"]]
        for i in range(args.tenants):
            st, body, _ = call(conn, "POST", "/v1/tenants",
                               {"name": f"t{i}", "memory": "1GiB", "placement": "spread",
                                "command": [probe, "hold", "alloc", "64MiB"]})
            if st != 201:
                sys.exit(f"create t{i}: {st} {body}")
            tenant_pids.append(body["pid"])
        # Every tenant's probe holds its memory (its context and 64 MiB) before measuring.
        deadline = time.time() + 120
        while time.time() < deadline:
            tenants = call(conn, "GET", "/v1/tenants")[1]["tenants"]
            if sum(1 for t in tenants if t["memory"]["used"] > 0) == args.tenants:
                break
            time.sleep(0.2)
        else:
            sys.exit("the tenants' probes did not all allocate")
        samples = []
        reads = []
        end = time.time() + 5
        while time.time() < end:
            st, body, _ = call(conn, "GET", "/v1/backstop")
            samples.append(body["last_sample_ms"])
            reads.append(call(conn, "GET", "/v1/tenants")[2])
            time.sleep(0.05)
        offenders_before = len(body["offenders"])

        # Strangers start at random points of the sampling period (else each would start just
        # after the sample that confirmed the one before, and every figure would be the worst).
        interval_s = float(args.interval[:-2]) / 1000 if args.interval.endswith("ms") else \
            float(args.interval.rstrip("s"))
        rng = random.Random(1)
        latencies = []
        for k in range(args.strangers):
            time.sleep(rng.uniform(0, interval_s))
            out = os.path.join(tmp, f"stranger{k}.out")
            with open(out, "w") as f:
                p = subprocess.Popen([probe, "hold", "alloc", "256MiB"], env=env, stdout=f)
            strangers.append(p)
            if not wait_ready(out, p):
                sys.exit(f"stranger {k} did not allocate")
            t0 = time.perf_counter()
            seen = False
            while time.perf_counter() - t0 < 30:
                body = call(conn, "GET", "/v1/backstop")[1]
                if any(o["pid"] == p.pid for o in body["offenders"]):
                    seen = True
                    break
                time.sleep(0.005)
            if not seen:
                sys.exit(f"stranger {k} was not flagged within 30 s")
            latencies.append((time.perf_counter() - t0) * 1000)
            p.kill()
            p.wait()
        for i in range(args.tenants):
            call(conn, "DELETE", f"/v1/tenants/t{i}?grace=1s")
        conn.close()
        result = {
            "tenants": args.tenants,
            "interval": args.interval,
            "nvml_processes": args.tenants,
            "false_flags_among_tenants": offenders_before,
            "sample_ms": {"p50": round(pct(samples, 50), 3), "max": round(max(samples), 3)},
            "tenant_list_ms_meanwhile": {"p50": round(pct(reads, 50), 2),
                                         "p99": round(pct(reads, 99), 2)},
            "strangers": args.strangers,
            "detection_ms": {"p50": round(pct(latencies, 50), 1),
                             "max": round(max(latencies), 1),
                             "mean": round(statistics.mean(latencies), 1)},
        }
        print(json.dumps(result, indent=2))
        if args.markdown:
            print(f"\n| figure | value |\n| --- | --- |\n"
                  f"| processes NVML lists (tenants under the interposer) | {args.tenants} |\n"
                  f"| of them flagged | {offenders_before} |\n"
                  f"| one backstop pass, p50 / max ms | {result['sample_ms']['p50']} / "
                  f"{result['sample_ms']['max']} |\n"
                  f"| GET /v1/tenants meanwhile, p50 / p99 ms | "
                  f"{result['tenant_list_ms_meanwhile']['p50']} / "
                  f"{result['tenant_list_ms_meanwhile']['p99']} |\n"
                  f"| detection of a stranger (interval {args.interval}), p50 / max ms | "
                  f"{result['detection_ms']['p50']} / {result['detection_ms']['max']} |")
        failed = offenders_before != 0
    finally:
        for p in strangers:
            if p.poll() is None:
                p.kill()
                p.wait()
        agent.terminate()
        status = agent.wait(timeout=30)
        log.close()
        if status != 0:
            print(f"agent exited with status {status}", file=sys.stderr)
            failed = True
        # The agent leaves tenants running by design; any not deleted above are ended here, by the
        # pids the agent gave (each leads its own process group).
        for pid in tenant_pids if failed else []:
            try:
                os.killpg(pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
        for u in uuids:
            for part in ("limits", "usage"):
                try:
                    os.unlink(f"/dev/shm/gpufrac.{u}.{part}")
                except FileNotFoundError:
                    pass
        try:
            os.unlink(f"/dev/shm/gpufrac-sim.{sim_id}")
        except FileNotFoundError:
            pass
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
