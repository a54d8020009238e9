#!/usr/bin/env python3
"""Sums an ncu source-page CSV (scripts/gpu-attention-check source) by SASS
opcode: warp-stall samples (and their main reasons) and instructions
executed, so a kernel's time can be pinned on instruction kinds. With
--top N also lists the N instructions with the most samples, with the
instructions around them.

  python3 bench/sass_hotspots.py source_DqKernel.csv[.gz] [--top 20]
"""
import argparse
import collections
import csv
import gzip
import io


def rows_of(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        lines = f.read().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('"Address"'))
    return list(csv.DictReader(io.StringIO("\n".join(lines[start:]))))


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=0)
    a = ap.parse_args()
    rows = rows_of(a.csv)
    stalls = [k for k in rows[0] if k.startswith("stall_") and "Not Issued" not in k]
    samples = collections.Counter()
    executed = collections.Counter()
    reasons = collections.defaultdict(collections.Counter)
    for r in rows:
        op = r["Source"].split()[0] if r["Source"].split() else "?"
        if op.startswith("@"):  # predicate
            op = r["Source"].split()[1]
        op = op.split(".")[0]
        s = num(r["Warp Stall Sampling (All Samples)"])
        samples[op] += s
        executed[op] += num(r["Instructions Executed"])
        for k in stalls:
            reasons[op][k[6:]] += num(r[k])
    total_s = sum(samples.values()) or 1
    total_e = sum(executed.values()) or 1
    print(f"{len(rows)} SASS instructions, {total_s:.0f} samples, {total_e:.3g} warp instructions executed")
    print(f"{'opcode':10} {'samples':>8} {'%':>6} {'executed':>10} {'%':>6}  main stalls")
    for op, s in samples.most_common(25):
        top = ", ".join(f"{k} {v / s * 100:.0f}%" for k, v in reasons[op].most_common(3) if v)
        print(f"{op:10} {s:8.0f} {s / total_s * 100:6.1f} {executed[op]:10.3g} "
              f"{executed[op] / total_e * 100:6.1f}  {top}")
    if a.top:
        print(f"\nthe {a.top} instructions with the most samples:")
        order = sorted(range(len(rows)), key=lambda i: -num(rows[i]["Warp Stall Sampling (All Samples)"]))
        for i in order[: a.top]:
            r = rows[i]
            top = max(stalls, key=lambda k: num(r[k]))
            print(f"{num(r['Warp Stall Sampling (All Samples)']):7.0f}  [{i}] {r['Source'].strip()}  ({top[6:]})")


if __name__ == "__main__":
    main()
