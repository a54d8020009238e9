#!/usr/bin/env python3
"""One line per kernel from ncu's SpeedOfLight and Occupancy sections.

Reads the ncu_sections.txt that `scripts/gpu-attention-check kernels` writes
with LINEARIZE_NCU_SECTIONS="SpeedOfLight Occupancy" (plain or .gz) and
prints, for each kernel launch that ran at least --min-us, its duration, the
throughputs of DRAM, L2, L1 and the SMs (percent of peak), its achieved
occupancy and what bounds its CTAs per SM (registers, shared memory, ...).

    python3 bench/ncu_sections.py ncu_sections.txt --min-us 100
"""
import argparse
import gzip
import re

METRICS = {
    "us": "Duration",
    "dram": "DRAM Throughput",
    "l2": "L2 Cache Throughput",
    "l1": "L1/TEX Cache Throughput",
    "sm": "Compute (SM) Throughput",
    "occ": "Achieved Occupancy",
}
LIMITS = ("Registers", "Shared Mem", "Warps", "Barriers", "SM")


def launches(text):
    """(kernel name, section text) per launch: each starts at an indented name line."""
    parts = re.split(r"\n  (?=\S.*\(\d+, \d+, \d+\)x\(\d+, \d+, \d+\))", text)
    for part in parts[1:]:
        head, _, body = part.partition("\n")
        name = head.split(" (")[0]  # the signature, without the launch's grid
        name = re.sub(r"^void |linearize::|<unnamed>::|at::", "", name)
        yield re.sub(r"\((?:[^()]|\([^()]*\))*\)$", "", name), body


def value(body, name):
    m = re.search(r"^\s+" + re.escape(name) + r"\s+\S+\s+([\d,.]+)\s*$", body, re.M)
    return float(m.group(1).replace(",", "")) if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--min-us", type=float, default=50.0)
    args = ap.parse_args()
    opener = gzip.open if args.path.endswith(".gz") else open
    with opener(args.path, "rt") as f:
        text = f.read()
    print(f"{'us':>8} {'DRAM%':>6} {'L2%':>6} {'L1%':>6} {'SM%':>6} {'occ%':>6}  "
          f"{'CTAs/SM limit':<22} kernel")
    for name, body in launches(text):
        v = {k: value(body, m) for k, m in METRICS.items()}
        if v["us"] is None or v["us"] < args.min_us:
            continue
        limits = {l: value(body, "Block Limit " + l) for l in LIMITS}
        known = {l: n for l, n in limits.items() if n is not None}
        low = min(known.values()) if known else None
        bound = ", ".join(l for l, n in known.items() if n == low)
        bound = f"{int(low)} ({bound})" if low is not None else "?"
        cells = " ".join(f"{v[k]:6.1f}" if v[k] is not None else f"{'?':>6}"
                         for k in ("dram", "l2", "l1", "sm", "occ"))
        print(f"{v['us']:8.1f} {cells}  {bound:<22} {name[:90]}")


if __name__ == "__main__":
    main()
