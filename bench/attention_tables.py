"""Markdown tables from bench_attention_gpu's JSON: forward and forward +
backward times (ms) by T, our kernels with the LibTorch form in brackets,
and the decode step by batch; with --fla, flash-linear-attention's times from
the same call (bench/fla_bench.py) beside ours, as ratios. For
bench/results/*.md.

    python3 bench/attention_tables.py attention_bench.json [--fla fla_bench.json]
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


# (ours, mode, FLA kernel of the closest form): FLA's numbers are without
# feature maps or windows, ours with them.
VERSUS = [("lolcats", "fwd", "fla_chunk_linear_attn"),
          ("lizard", "fwd", "fla_chunk_simple_gla"),
          ("chunked_linear", "fwd", "fla_chunk_linear_attn"),
          ("chunked_linear_fwd_bwd", "fwd_bwd", "fla_chunk_linear_attn")]


def versus_table(rows, fla_rows):
    """Ours, FLA's and FLA / ours per T (ms); an FLA error shows as its first words."""
    def fla_cell(op, mode, t):
        for r in fla_rows:
            if r["op"] == op and r["mode"] == mode and r["T"] == t:
                return r.get("ms"), r.get("error", "")
        return None, "not run"
    ts = sorted({r["T"] for r in fla_rows})
    head = "| T | " + " | ".join(f"{o} | FLA {f[4:]} ({m}) | FLA / ours" for o, m, f in VERSUS)
    lines = [head + " |", "|---" * (1 + 3 * len(VERSUS)) + "|"]
    for t in ts:
        cells = []
        for ours_op, mode, fla_op in VERSUS:
            ours = [r["ms"] for r in rows if r["op"] == ours_op and r["T"] == t
                    and r["impl"] == "cuda"]
            theirs, err = fla_cell(fla_op, mode, t)
            cells.append(f"{ours[0]:.3f}" if ours else "")
            cells.append(f"{theirs:.3f}" if theirs is not None else err.split(":")[0])
            cells.append(f"{theirs / ours[0]:.2f}x" if ours and theirs is not None else "")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(path, fla_path=None):
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
    if fla_path:
        with open(fla_path) as f:
            fla = json.load(f)
        print(f"Against flash-linear-attention in the same call ({fla['device']}, "
              f"torch {fla.get('torch', '?')}, triton {fla.get('triton', '?')}), ms:\n")
        print(versus_table(rows, fla["rows"]))


if __name__ == "__main__":
    args = sys.argv[1:]
    fla_arg = None
    if "--fla" in args:
        i = args.index("--fla")
        fla_arg = args[i + 1]
        del args[i:i + 2]
    main(args[0], fla_arg)
