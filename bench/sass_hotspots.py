#!/usr/bin/env python3
"""Sums an ncu source-page CSV (scripts/gpu-attention-check source) by SASS
opcode: warp-stall samples (and their main reasons) and instructions
executed, so a kernel's time can be pinned on instruction kinds. With
--top N also lists the N instructions with the most samples. With
--regions also cuts the SASS at each barrier (BAR.SYNC) and sums each
piece: in the warp-specialised kernels every warpgroup's chunk loop starts
at the barrier all of them share, so the pieces tell which warpgroup waits
(its samples stalled on the barrier) and which one sets the pace.

  python3 bench/sass_hotspots.py source_DqKernel.csv[.gz] [--top 20] [--regions]
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
    ap.add_argument("--regions", action="store_true")
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
    if a.regions:
        print_regions(rows, stalls)


def print_regions(rows, stalls):
    cuts = [0] + [i for i, r in enumerate(rows) if "BAR.SYNC" in r["Source"]] + [len(rows)]
    print("\nthe SASS between barriers (each piece starts at its BAR.SYNC):")
    print(f"{'from':>6} {'to':>6} {'samples':>8} {'barrier':>8} {'executed':>10} {'mma':>4}  "
          "main stalls  [first instruction]")
    for lo, hi in zip(cuts, cuts[1:]):
        piece = rows[lo:hi]
        s = sum(num(r["Warp Stall Sampling (All Samples)"]) for r in piece)
        if s < 1:
            continue
        why = collections.Counter()
        for r in piece:
            for k in stalls:
                why[k[6:]] += num(r[k])
        mma = sum(1 for r in piece if "GMMA" in r["Source"] or "HMMA" in r["Source"])
        top = ", ".join(f"{k} {v / s * 100:.0f}%" for k, v in why.most_common(3) if v)
        first = piece[0]["Source"].strip()[:40]
        print(f"{lo:6d} {hi:6d} {s:8.0f} {why['barrier']:8.0f} "
              f"{sum(num(r['Instructions Executed']) for r in piece):10.3g} {mma:4d}  {top}  [{first}]")


if __name__ == "__main__":
    main()
