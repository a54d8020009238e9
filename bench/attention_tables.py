"""Markdown tables from bench_attention_gpu's JSON: forward and forward +
backward times (ms) by T, our kernels with the LibTorch form in brackets,
and the decode step by batch. For bench/results/*.md.

    python3 bench/attention_tables.py attention_bench.json
"""
import json
import sys

FORWARD = ["chunked_linear", "hedgehog_map", "linear_attention", "lolcats", "lizard",
           "sdpa_causal"]
TRAIN = ["chunked_linear_fwd_bwd", "chunked_gated_fwd_bwd", "hedgehog_map_fwd_bwd",
         "linear_attention_fwd_bwd", "lolcats_fwd_bwd", "lizard_fwd_bwd", "sdpa_causal_fwd_bwd"]


def cell(rows, op, key, value):
    ours = [r for r in rows if r["op"] == op and r[key] == value and r["impl"] != "libtorch"]
    ref = [r for r in rows if r["op"] == op and r[key] == value and r["impl"] == "libtorch"]
    if not ours:
        return ""
    text = f"{ours[0]['ms']:.3f}"
    return text + (f" ({ref[0]['ms']:.3f})" if ref else "")


def table(rows, ops, key):
    ops = [op for op in ops if any(r["op"] == op for r in rows)]
    if not ops:
        return ""
    values = sorted({r[key] for r in rows if r["op"] in ops})
    lines = [f"| {key} | " + " | ".join(ops) + " |", "|---" * (len(ops) + 1) + "|"]
    for v in values:
        lines.append(f"| {v} | " + " | ".join(cell(rows, op, key, v) for op in ops) + " |")
    return "\n".join(lines) + "\n"


def main(path):
    with open(path) as f:
        data = json.load(f)
    rows = data["rows"]
    print(f"{data['device']}: copy {data['copy_GBps']:.0f} GB/s, "
          f"bf16 matmul {data['bf16_matmul_TFLOPs']:.0f} TFLOP/s\n")
    print("Forward, ms (LibTorch form in brackets):\n")
    print(table(rows, FORWARD, "T"))
    print("Forward + backward under bf16 autocast, ms (LibTorch form in brackets):\n")
    print(table(rows, TRAIN, "T"))
    decode = sorted({r["op"] for r in rows if r["op"].startswith("decode_")})
    if decode:
        print("Decode step, ms (LibTorch form in brackets):\n")
        print(table(rows, decode, "batch"))
    resume = sorted({r["op"] for r in rows if r["op"].startswith("continue_")})
    if resume:
        print("Prefill continuing a state, ms (LibTorch form in brackets):\n")
        print(table(rows, resume, "T"))


if __name__ == "__main__":
    main(sys.argv[1])
