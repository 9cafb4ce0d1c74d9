#!/usr/bin/env python3
"""Compares bench_kernels --json results of several builds or settings, row by row.

usage: tools/bench_compare.py NAME=RUN.json[,RUN2.json...] NAME=... [--family F] [--device cpu]
Each NAME gets one or more runs; a row's time for NAME is its fastest over those runs (the least
disturbed by a noisy machine), so interleaving the runs of the builds compared (A B A B ...) gives a
fair comparison on a shared VM. Prints, per family, the geometric mean of each NAME's time relative
to the first NAME, then the rows that differ by more than 10 %. Needs only Python 3.
"""
import argparse
import json
import math
from collections import defaultdict


def load(paths, device):
    best, cpu = {}, set()
    for p in paths.split(","):
        with open(p) as f:
            d = json.load(f)
        cpu.add(d.get("cpu", "?") + " / kernels " + d.get("cpu_kernels", "?"))
        for r in d["rows"]:
            if r["device"] != device or r["status"] != "ok" or r["time_ms"] <= 0:
                continue
            k = (r["family"], r["kernel"], r["shape"])
            best[k] = min(best.get(k, math.inf), r["time_ms"])
    return best, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="NAME=run.json[,run2.json...]")
    ap.add_argument("--family", help="only this family")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    names, data = [], []
    for spec in args.runs:
        name, _, paths = spec.partition("=")
        best, cpu = load(paths, args.device)
        names.append(name)
        data.append(best)
        print(f"{name}: {len(paths.split(','))} run(s), {', '.join(sorted(cpu))}")
    keys = sorted(set.intersection(*(set(d) for d in data)))
    if args.family:
        keys = [k for k in keys if k[0] == args.family]
    by_family = defaultdict(list)
    for k in keys:
        by_family[k[0]].append([data[i][k] / data[0][k] for i in range(len(names))])
    print(f"\ntime relative to {names[0]} (geometric mean over rows; < 1 is faster)")
    print(f"{'family':14s} {'rows':>4s} " + " ".join(f"{n:>12s}" for n in names))
    everything = []
    for fam in sorted(by_family):
        rows = by_family[fam]
        everything += rows
        gm = [math.exp(sum(math.log(r[i]) for r in rows) / len(rows)) for i in range(len(names))]
        print(f"{fam:14s} {len(rows):4d} " + " ".join(f"{g:12.3f}" for g in gm))
    gm = [math.exp(sum(math.log(r[i]) for r in everything) / len(everything)) for i in range(len(names))]
    print(f"{'all':14s} {len(everything):4d} " + " ".join(f"{g:12.3f}" for g in gm))
    print("\nrows differing by more than 10 % (ms):")
    for k in keys:
        t = [data[i][k] for i in range(len(names))]
        if max(t) > 1.1 * min(t):
            print(f"  {k[0]:12s} {k[1]:30s} {k[2]:40s} " + " ".join(f"{v:9.3f}" for v in t))


if __name__ == "__main__":
    main()
