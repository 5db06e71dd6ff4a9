#!/usr/bin/env python3
"""Load benchmark for gpufrac node (issue 5): create/delete cycles and concurrent API clients.

Starts a real agent on the simulated driver (temp socket, state and simulation id), then
  1. N sequential create/delete cycles (each tenant runs `sleep 60`; delete = SIGTERM, reap, forget),
  2. C concurrent clients, each with its own keep-alive connection, issuing R reads each
     (GET /v1/tenants with 10 live tenants, and GET /v1/gpus, alternating),
and reports p50/p99 latency per phase and the agent's RSS and open file descriptors at start
(after a warm-up) and at the end. Prints a JSON summary; --markdown prints a table too.

  bench/node/load.py [--build build] [--cycles 1000] [--clients 200] [--requests 50] [--rounds 2]
"""
import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
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
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, data, time.perf_counter() - start


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))] * 1000.0


def proc_figures(pid):
    rss_kib = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kib = int(line.split()[1])
    return {"rss_kib": rss_kib, "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2, help="read rounds (at least 1)")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    tmp = tempfile.mkdtemp(prefix="gpufrac-node-load-")
    sock = os.path.join(tmp, "node.sock")
    sim_id = f"nodeload{os.getpid()}"
    env = dict(os.environ, LD_LIBRARY_PATH=f"{build}/lib/sim", GPUFRAC_SIM_ID=sim_id,
               GPUFRAC_SIM_GPUS="H100:80GiB,H100:80GiB")
    with open(os.path.join(tmp, "node.yaml"), "w") as f:
        f.write(f"socket: {sock}\nstate: {tmp}/node.db\ngrace_period: 2s\n")
    log = open(os.path.join(tmp, "agent.log"), "w")
    agent = subprocess.Popen([f"{build}/bin/gpufrac", "node", "--config", f"{tmp}/node.yaml"],
                             env=env, stdout=log, stderr=log)
    uuids = []
    failed = True  # until the run completes
    try:
        deadline = time.time() + 20
        while not os.path.exists(sock):
            if time.time() > deadline or agent.poll() is not None:
                sys.exit("agent did not start; see " + log.name)
            time.sleep(0.02)
        conn = UnixConnection(sock)
        uuids = [g["uuid"] for g in json.loads(call(conn, "GET", "/v1/gpus")[1])["gpus"]]
        # Warm-up, then the baseline.
        for i in range(20):
            call(conn, "POST", "/v1/tenants", {"name": f"w{i}", "memory": "1GiB",
                                               "command": ["sleep", "60"]})
            call(conn, "DELETE", f"/v1/tenants/w{i}")
        before = proc_figures(agent.pid)

        create, delete = [], []
        t0 = time.perf_counter()
        for i in range(args.cycles):
            st, body, dt = call(conn, "POST", "/v1/tenants",
                                {"name": f"c{i}", "memory": "0.25", "command": ["sleep", "60"]})
            if st != 201:
                sys.exit(f"create {i}: {st} {body!r}")
            create.append(dt)
            st, body, dt = call(conn, "DELETE", f"/v1/tenants/c{i}")
            if st != 200:
                sys.exit(f"delete {i}: {st} {body!r}")
            delete.append(dt)
        cycles_s = time.perf_counter() - t0

        after_cycles = proc_figures(agent.pid)
        for i in range(10):
            call(conn, "POST", "/v1/tenants", {"name": f"r{i}", "memory": "2GiB",
                                               "command": ["sleep", "600"]})
        reads, errors = [], []
        lock = threading.Lock()
        

        def client(n):
            c = UnixConnection(sock)
            mine = []
            try:
                for k in range(args.requests):
                    target = "/v1/tenants" if (k + n) % 2 == 0 else "/v1/gpus"
                    st, _, dt = call(c, "GET", target)
                    if st != 200:
                        raise RuntimeError(f"status {st}")
                    mine.append(dt)
            except Exception as e:  # noqa: BLE001 - reported, not hidden
                with lock:
                    errors.append(repr(e))
            with lock:
                reads.extend(mine)
            c.close()

        # Identical rounds (--rounds, default 2): growth that goes on from round to round would be
        # a leak; growth before round 1 is the allocator's high-water mark for 200 simultaneous
        # connections.
        rounds = []
        reads_s = 0.0
        for _ in range(args.rounds):
            threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            reads_s += time.perf_counter() - t0
            rounds.append(proc_figures(agent.pid))
        for i in range(10):
            call(conn, "DELETE", f"/v1/tenants/r{i}?grace=1s")
        conn.close()
        after = proc_figures(agent.pid)
        result = {
            "cycles": args.cycles,
            "cycles_seconds": round(cycles_s, 2),
            "create_ms": {"p50": round(pct(create, 50), 2), "p99": round(pct(create, 99), 2)},
            "delete_ms": {"p50": round(pct(delete, 50), 2), "p99": round(pct(delete, 99), 2)},
            "clients": args.clients,
            "reads": len(reads),
            "read_errors": len(errors),
            "reads_per_second": round(len(reads) / reads_s, 1),
            "read_ms": {"p50": round(pct(reads, 50), 2), "p99": round(pct(reads, 99), 2)}
            if reads else None,
            "agent_after_warmup": before,
            "agent_after_cycles": after_cycles,
            **{f"agent_after_read_round_{k + 1}": r for k, r in enumerate(rounds)},
            "agent_at_end": after,
        }
        print(json.dumps(result, indent=2))
        if errors:
            print("errors (first 5):", errors[:5], file=sys.stderr)
        if args.markdown:
            print(f"\n| phase | p50 ms | p99 ms |\n| --- | --- | --- |\n"
                  f"| create ({args.cycles}) | {result['create_ms']['p50']} | "
                  f"{result['create_ms']['p99']} |\n"
                  f"| delete ({args.cycles}) | {result['delete_ms']['p50']} | "
                  f"{result['delete_ms']['p99']} |\n"
                  f"| reads ({args.clients} clients x {args.requests}) | "
                  f"{result['read_ms']['p50'] if reads else '-'} | "
                  f"{result['read_ms']['p99'] if reads else '-'} |")
        failed = bool(errors)
    finally:
        agent.terminate()
        status = agent.wait(timeout=20)
        log.close()
        # A sanitizer build reports leaks when the agent exits: show them, and fail.
        if status != 0:
            with open(log.name) as f:
                tail = f.read()[-4000:]
            print(f"agent exited with status {status}; end of its log:\n{tail}", file=sys.stderr)
            failed = True
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
