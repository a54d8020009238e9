#!/bin/bash
# Step 1 of the next call (about 220 s; carry .gpu/deps, .gpu-prebuilt built
# from branch s36-candidates, which holds s35-den-fp32, .gpu/diag): does adding d_den, u and z in float32
# (not bf16-rounded) bring Lizard's d_k without sinks under 1e-2? Every GPU
# suite of the branch, the gradient errors of both hybrid suites (branch
# and main ee16058, same draws), then ncu of both steps beside main.
R=$OUT; export OUT=/tmp/n36; mkdir -p $OUT
save() { tar -C /tmp -czf $R/all.tgz n36; cat $OUT/summary-*.txt > $R/summary.txt 2>/dev/null; }
export LD_LIBRARY_PATH=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))'):/usr/local/cuda/lib64:$PWD/.gpu/deps/usr/lib/x86_64-linux-gnu
mkdir -p build-prebuilt && tar -C build-prebuilt -xJf .gpu-prebuilt/bin.tar.xz
for t in gpu_hybrid_grad_test gpu_chunked_linear_grad_test gpu_chunked_linear_test gpu_lizard_test gpu_chunked_linear_wgmma_test gpu_lolcats_test gpu_linear_attention_test gpu_feature_map_test gpu_decode_graph_test gpu_wgmma_test gpu_window_walk_test; do
  timeout 100 build-prebuilt/bin/$t > $OUT/$t.log 2>&1
  echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED)  \]' $OUT/$t.log | tr '\n' ' ')" >> $OUT/summary-1.txt
done
grep -h "FAILED  \] [A-Z]" $OUT/gpu_*.log | sort -u >> $OUT/summary-1.txt; save
for t in gpu_hybrid_grad_test gpu_chunked_linear_grad_test; do
  xz -dc .gpu/diag/main_${t}_ee16058.xz > /tmp/main_$t && chmod +x /tmp/main_$t
  timeout 100 /tmp/main_$t > $OUT/main_$t.log 2>&1
  echo "main $t rc=$? $(grep -E '^\[  (PASSED|FAILED)  \]' $OUT/main_$t.log | tr '\n' ' ')" >> $OUT/summary-2main.txt
done
LINEARIZE_PRINT_ERRORS=1 build-prebuilt/bin/gpu_hybrid_grad_test > $OUT/errors_branch.log 2>&1
LINEARIZE_PRINT_ERRORS=1 /tmp/main_gpu_hybrid_grad_test > $OUT/errors_main.log 2>&1
python3 - "$OUT" > $OUT/summary-3errors.txt <<'PY'
import re, sys
def errs(path):
    out, case = {}, None
    for line in open(path):
        m = re.match(r"\[ RUN +\] (\S+)", line)
        if m: case = m.group(1)
        m = re.match(r"d (\S+): (\S+) \(LibTorch ops in bf16: (\S+)\)", line)
        if m: out[(case, m.group(1))] = (float(m.group(2)), float(m.group(3)))
    return out
b, m = errs(sys.argv[1] + "/errors_branch.log"), errs(sys.argv[1] + "/errors_main.log")
print("gradient errors, branch vs main (max over cases), and the worst cases:")
worse = better = 0
for key in sorted(b):
    if key in m:
        better += b[key][0] < m[key][0]; worse += b[key][0] > m[key][0]
print(f"  {better} lower on the branch, {worse} higher, of {len(b)}")
for key in sorted(b, key=lambda k: -b[k][0])[:12]:
    name = key[0].split('.')[0].split('/')[-1] + '/' + key[0].split('/')[-1]
    print(f"  {name:48s} d {key[1]:12s} branch {b[key][0]:.4g} main {m.get(key, (float('nan'),))[0]:.4g} plain bf16 {b[key][1]:.4g}")
PY
save
LINEARIZE_CALL_SECONDS=200 LINEARIZE_KERNEL_OPS="lizard_fwd_bwd lolcats_fwd_bwd" LINEARIZE_BASELINE_BENCH=.gpu/diag/main_bench_ee16058.xz \
  bash scripts/gpu-attention-check kernels > $OUT/check-kernels-main.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-4main.txt; mkdir -p $OUT/vs_main; mv $OUT/ncu_*.csv $OUT/vs_main/ 2>/dev/null; save
