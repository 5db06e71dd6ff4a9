#!/usr/bin/env python3
"""PyTorch side of tests/gpu/runtime_checks.sh; run under `gpufrac run`.

  torch_checks.py info
      One JSON line: torch version, mem_get_info (free, total), device total_memory.
  torch_checks.py fill --chunk-mib 64 [--report FILE] [--barrier FILE] [--timeout S]
      Allocate CHUNK_MIB tensors until torch raises out-of-memory; print (and write to FILE) one
      JSON line with what was allocated; then hold the tensors until the barrier file exists, so
      concurrent tenants are all at their peak together.

The allocator mode comes from the environment the script sets (PYTORCH_NO_CUDA_MEMORY_CACHING=1
so every tensor is one cudaMalloc, or PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True for the
cuMemCreate path).
"""

import argparse
import json
import os
import sys
import time

import torch

MIB = 1 << 20


def is_oom(error):
    oom_type = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(error, oom_type):
        return True
    return "out of memory" in str(error).lower()


def info():
    torch.cuda.init()
    free, total = torch.cuda.mem_get_info(0)
    props = torch.cuda.get_device_properties(0)
    print(json.dumps({
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "device": props.name,
        "mem_get_info_free": free,
        "mem_get_info_total": total,
        "total_memory": props.total_memory,
    }), flush=True)
    return 0


def fill(args):
    chunk = args.chunk_mib * MIB
    tensors = []
    error = ""
    oom = False
    # A limit above the card would make this run to the card's size; a cap keeps a broken
    # interposer from hanging the script (4096 x 64 MiB = 256 GiB, beyond any single card).
    for _ in range(args.max_chunks):
        try:
            tensors.append(torch.empty(chunk, dtype=torch.uint8, device="cuda"))
        except Exception as e:  # torch raises RuntimeError subclasses for CUDA errors
            oom = is_oom(e)
            error = str(e).splitlines()[0][:300]
            break
    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info(0)
    result = {
        "pid": os.getpid(),
        "chunks": len(tensors),
        "chunk_bytes": chunk,
        "allocated": len(tensors) * chunk,
        "torch_allocated": torch.cuda.memory_allocated(0),
        "torch_reserved": torch.cuda.memory_reserved(0),
        "oom": oom,
        "error": error,
        "mem_get_info_free": free,
        "mem_get_info_total": total,
    }
    line = json.dumps(result)
    print(line, flush=True)
    if args.report:
        # Written then renamed, so a reader polling for the file never sees half of it.
        tmp = args.report + ".tmp"
        with open(tmp, "w") as f:
            f.write(line + "\n")
        os.replace(tmp, args.report)
    if args.barrier:
        deadline = time.monotonic() + args.timeout
        while not os.path.exists(args.barrier) and time.monotonic() < deadline:
            time.sleep(0.05)
    del tensors
    return 0 if oom else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info")
    p = sub.add_parser("fill")
    p.add_argument("--chunk-mib", type=int, default=64)
    p.add_argument("--max-chunks", type=int, default=4096)
    p.add_argument("--report", default="")
    p.add_argument("--barrier", default="")
    p.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"error": "torch.cuda.is_available() is False"}), flush=True)
        return 3
    if args.command == "info":
        return info()
    return fill(args)


if __name__ == "__main__":
    sys.exit(main())
