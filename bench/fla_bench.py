"""flash-linear-attention's Triton kernels on the shapes of bench_attention_gpu.

The peers' numbers for bench/results/: chunk_linear_attn (normalised, on
precomputed positive features, F = 128) and chunk_simple_gla (scalar per-head
log decays), forward and forward + backward, bf16, B = 1, 32 heads, D = 128,
T in {2k .. 32k}. Run on the GPU machine in the same call as
bench_attention_gpu (the wheels come from scripts/gpu-pack, in .gpu/fla):

  python3 -m pip install --no-index --no-deps --target /tmp/fla .gpu/fla/*.whl
  PYTHONPATH=/tmp/fla python3 bench/fla_bench.py $OUT/fla_bench.json

A kernel that fails (Triton versions differ) is recorded with its error.
"""
import json
import statistics
import sys

import torch


def time_ms(fn, reps, warmup=2):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def main():
    from fla.ops.linear_attn import chunk_linear_attn
    from fla.ops.simple_gla import chunk_simple_gla

    path = sys.argv[1] if len(sys.argv) > 1 else "fla_bench.json"
    h, d = 32, 128
    rows = []
    for t in (2048, 4096, 8192, 16384, 32768):
        reps = 5 if t >= 16384 else 10
        opts = dict(device="cuda", dtype=torch.bfloat16)
        # Positive features with rows summing to 2, as Hedgehog's [softmax, softmax].
        q = torch.softmax(torch.randn(1, t, h, d, **opts), -1) * 2
        k = torch.softmax(torch.randn(1, t, h, d, **opts), -1) * 2
        v = torch.randn(1, t, h, d, **opts)
        g = torch.nn.functional.logsigmoid(torch.randn(1, t, h, device="cuda") + 3)
        leaves = [x.clone().requires_grad_(True) for x in (q, k, v)]
        g_leaf = g.clone().requires_grad_(True)
        cases = {
            "fla_chunk_linear_attn": lambda x: chunk_linear_attn(*x, scale=1.0, normalize=True)[0],
            "fla_chunk_simple_gla": lambda x: chunk_simple_gla(*x, g=g_leaf, scale=1.0)[0],
        }
        for name, fwd in cases.items():
            for mode in ("fwd", "fwd_bwd"):
                row = {"op": name, "mode": mode, "T": t, "B": 1, "H": h, "D": d}
                try:
                    if mode == "fwd":
                        with torch.no_grad():
                            row["ms"] = time_ms(lambda: fwd((q, k, v)), reps)
                    else:
                        dy = torch.randn_like(v)
                        inputs = leaves + ([g_leaf] if "gla" in name else [])

                        def step():
                            torch.autograd.grad(fwd(leaves), inputs, dy)

                        row["ms"] = time_ms(step, reps)
                except Exception as e:  # noqa: BLE001 - recorded, not hidden
                    row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
                rows.append(row)
                print(f"{name:24s} {mode:8s} T={t:6d} "
                      + (f"{row['ms']:9.3f} ms" if "ms" in row else row["error"]), flush=True)
    info = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    try:
        import triton
        info["triton"] = triton.__version__
    except ImportError:
        pass
    with open(path, "w") as f:
        json.dump({**info, "rows": rows}, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
