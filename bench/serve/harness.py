"""Shared by the bench/serve scripts: a real `gpufrac node` on the simulated driver and a real
`gpufrac serve` on a deployment file, started in a temp dir and torn down (processes, temp files,
the simulation's shared memory) on exit."""
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if pred():
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


def agent_gpu_uuids(socket_path):
    """The node agent's GPU UUIDs (GET /v1/gpus over its unix socket): the ledgers' names."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(socket_path)
    s.sendall(b"GET /v1/gpus HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    body = data.split(b"\r\n\r\n", 1)[1]
    return [g["uuid"] for g in json.loads(body)["gpus"]]


def health(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
        return json.load(r)


class Deployment:
    """with Deployment(build, models_yaml, extra_yaml) as d: d.port, d.log_path, d.tmp ..."""

    def __init__(self, build, models_yaml, extra_yaml=""):
        self.build = os.path.abspath(build)
        self.gpufrac = f"{self.build}/bin/gpufrac"
        self.synth = f"{self.build}/bin/gpufrac-synth-server"
        self.models_yaml = models_yaml
        self.extra_yaml = extra_yaml
        self.procs = []
        self.uuids = []

    def __enter__(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.tmp = tempfile.mkdtemp(prefix="gpufrac-serve-bench-")
        self.env = dict(os.environ, LD_LIBRARY_PATH=f"{self.build}/lib/sim",
                        GPUFRAC_SIM_GPUS=os.environ.get("GPUFRAC_SIM_GPUS", "H100:80GiB"),
                        GPUFRAC_SIM_ID=f"serve-bench-{os.getpid()}")
        with open(f"{self.tmp}/node.yaml", "w") as f:
            f.write(f"socket: {self.tmp}/node.sock\nstate: {self.tmp}/node.db\n"
                    f"interposer: {self.build}/lib/libgpufrac.so\n")
        self.start([self.gpufrac, "node", "--config", f"{self.tmp}/node.yaml"], "node.log")
        wait(lambda: os.path.exists(f"{self.tmp}/node.sock"), 20, "the node agent")
        self.uuids = agent_gpu_uuids(f"{self.tmp}/node.sock")
        self.port = free_port()
        with open(f"{self.tmp}/deploy.yaml", "w") as f:
            f.write(f"node: {{socket: {self.tmp}/node.sock}}\n"
                    f"gateway: {{listen: \"127.0.0.1:{self.port}\"}}\n{self.extra_yaml}"
                    f"{self.models_yaml.replace('SYNTH', self.synth)}")
        self.log_path = f"{self.tmp}/serve.log"
        self.start([self.gpufrac, "serve", f"{self.tmp}/deploy.yaml"], "serve.log")
        wait(lambda: health(self.port)["status"] == "ok", 30, "gpufrac serve")
        return self

    def start(self, argv, log):
        self.procs.append(subprocess.Popen(argv, env=self.env, stdout=subprocess.DEVNULL,
                                           stderr=open(f"{self.tmp}/{log}", "w")))

    def log(self):
        return open(self.log_path).read()

    def __exit__(self, *exc):
        for p in reversed(self.procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)
        # The simulation's state and the GPUs' ledgers (named by UUID).
        for name in os.listdir("/dev/shm"):
            if self.env["GPUFRAC_SIM_ID"] in name or any(u in name for u in self.uuids):
                os.unlink(f"/dev/shm/{name}")
