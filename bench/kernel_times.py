"""Sums an ncu raw CSV (--metrics gpu__time_duration.sum --csv --page raw) by
kernel name: one row per kernel, its launches and total microseconds, largest
first, with the step's total. Used by scripts/gpu-attention-check kernels.

    python3 bench/kernel_times.py ncu_lolcats_fwd_bwd.csv[.gz]
"""
import csv
import gzip
import signal
import sys
from collections import defaultdict


def main(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        lines = [line for line in f if line.startswith('"')]  # ncu's own log lines are not CSV
    rows = list(csv.DictReader(lines))
    total_us = defaultdict(float)
    launches = defaultdict(int)
    for row in rows:
        value = row.get("gpu__time_duration.sum", "")
        try:
            ns = float(value.replace(",", ""))
        except ValueError:
            continue  # the units row
        name = row["Kernel Name"]
        total_us[name] += ns / 1e3
        launches[name] += 1
    if not total_us:
        sys.exit(f"kernel_times: no kernel rows in {path}")
    step = sum(total_us.values())
    print(f"{path}: {step / 1e3:.3f} ms of kernel time in {sum(launches.values())} launches")
    for name, us in sorted(total_us.items(), key=lambda kv: -kv[1]):
        print(f"  {us:9.1f} us {100 * us / step:5.1f}%  x{launches[name]:<3d} {name[:110]}")


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet when piped into head
    main(sys.argv[1])
