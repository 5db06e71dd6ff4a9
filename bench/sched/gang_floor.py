#!/usr/bin/env python3
"""How close a gang queue came to the most it could hold, from a `gpufrac sim --json` report.

A queue whose workloads are gangs of whole GPUs can only hold multiples of its gang quantum, and
only on whole GPUs that the other queues' fractions leave untouched. Its fair share, computed from
demand, is a real number, so some deviation is unavoidable: this script measures that floor per
steady-state sample and counts the samples where the queue held the most it could.

  bench/sched/gang_floor.py REPORT.json --queue training --quantum 8 --warmup 1800

For each sample at or after --warmup seconds (the scenario's sim.warmup):
  best  = floor((GPUs - ceil(GPUs held by the other queues)) / quantum) * quantum
  floor = |min(best, fair) - fair| / fair  (the nearest reachable holding at or below the share)
Prints the mean deviation, the mean floor, and how many samples held `best` or more.
"""
import argparse
import json
import math
import statistics
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("report")
    ap.add_argument("--queue", required=True, help="the gang queue, by name")
    ap.add_argument("--quantum", type=int, required=True, help="GPUs per gang (the smallest)")
    ap.add_argument("--warmup", type=float, required=True,
                    help="the scenario's sim.warmup, in seconds: samples before it are skipped")
    args = ap.parse_args()
    with open(args.report) as f:
        report = json.load(f)
    names = [q if isinstance(q, str) else q["name"] for q in report["queues"]]
    if args.queue not in names:
        sys.exit(f"gang_floor.py: no queue '{args.queue}' in the report (queues: {names})")
    index = names.index(args.queue)
    warmup = args.warmup
    gpus = report["gpus"]
    devs, floors, at_best = [], [], 0
    for s in report["samples"]:
        if s["t"] < warmup:
            continue
        held, fair = s["queue_gpu"][index], s["queue_fair_gpu"][index]
        if fair <= 0:
            continue
        others = sum(s["queue_gpu"]) - held
        best = math.floor((gpus - math.ceil(others - 1e-9)) / args.quantum) * args.quantum
        devs.append(abs(held - fair) / fair)
        floors.append(abs(min(best, fair) - fair) / fair)
        at_best += held >= min(best, fair)
    if not devs:
        sys.exit("gang_floor.py: no steady-state samples with a fair share for that queue")
    print(f"queue {args.queue}: {len(devs)} samples, deviation mean {statistics.mean(devs):.1%}, "
          f"granularity floor mean {statistics.mean(floors):.1%}, "
          f"held the most it could in {at_best} of {len(devs)} samples")


if __name__ == "__main__":
    main()
