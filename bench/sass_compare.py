#!/usr/bin/env python3
"""Compares the SASS of the kernels in two cubins, kernel by kernel: SAME
when every instruction matches once branch targets, comments and the
anonymous namespace's per-build hash are left out, else DIFF with the first
differing instruction. Kernels are paired by name; --strip REGEX removes a
piece of the names (and of the instructions) first, e.g. a template
argument one side lacks.

Build each cubin from one .cu file, e.g.
  nvcc -gencode arch=compute_90a,code=sm_90a --expt-relaxed-constexpr \\
    --expt-extended-lambda -O2 -DNDEBUG --use_fast_math -lineinfo -std=c++17 \\
    -I<root> -cubin -o a.cubin <root>/kernels/.../x_cuda.cu
nvdisasm is not in the CUDA that scripts/setup installs; the wheel
nvidia-cuda-nvdisasm has it (pip download, unzip, set NVDISASM).

  NVDISASM=.../nvdisasm python3 bench/sass_compare.py a.cubin b.cubin [--strip REGEX]
"""
import argparse
import os
import re
import subprocess

ANON = re.compile(r"\d+_GLOBAL__N__[0-9a-f]+_\d+_\w+?_cu_[0-9a-f]+")
# An instruction line: /*0a10*/ OPCODE ... ;  (addresses of any width)
INSTRUCTION = re.compile(r"\s*/\*[0-9a-f]+\*/\s+(.*?);")


def kernels(nvdisasm, path):
    """{kernel name: [normalised instructions]} of a cubin."""
    text = subprocess.run([nvdisasm, "-c", path], capture_output=True, text=True,
                          check=True).stdout
    out, current = {}, None
    for line in text.splitlines():
        m = re.match(r"\s*\.text\.(\S+):", line)
        if m:
            current = ANON.sub("ANON", m.group(1))
            out[current] = []
            continue
        m = INSTRUCTION.match(line) if current else None
        if m:
            ins = re.sub(r"/\*.*?\*/", "", m.group(1)).strip()
            ins = re.sub(r"`?\(?\.L_x_\d+\)?", "L", ins)  # branch targets
            ins = ANON.sub("ANON", ins)  # symbols named in calls and returns
            out[current].append(ins)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--strip", default=None, help="regex removed from names (and instructions) before pairing")
    args = ap.parse_args()
    nvdisasm = os.environ.get("NVDISASM", "nvdisasm")
    name = (lambda n: re.sub(args.strip, "", n)) if args.strip else (lambda n: n)
    # (The strip applies to the instructions too: a return names its kernel.)
    a = {name(n): [name(i) for i in v] for n, v in kernels(nvdisasm, args.a).items()}
    b = {name(n): [name(i) for i in v] for n, v in kernels(nvdisasm, args.b).items()}
    for n in sorted(set(a) | set(b)):
        if n not in a or n not in b:
            print(f"ONLY-{'A' if n in a else 'B'}  {n}")
            continue
        x, y = a[n], b[n]
        if x == y:
            print(f"SAME  {len(x):6d}  {n}")
            continue
        first = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
        print(f"DIFF  {len(x):6d} {len(y):6d}  {n}\n      at {first}: "
              f"{x[first] if first < len(x) else '-'} | {y[first] if first < len(y) else '-'}")


if __name__ == "__main__":
    main()
