#!/bin/bash
# Session 35, call 1 (H200; the ncu parts found too little of the call left and were run in call 2).
# Session 34: tree B (late d_v rows + gates' weights while the products run
# in the gated d_k / d_v kernel) against A (late rows only) and main 730c09e,
# and the worst elements of Lizard's d_k without sinks. About 250 s. Needs
# .gpu-prebuilt from branch s34-dv-spills, .gpu/diag/A_*.xz and
# main_bench_730c09e.xz; carry .gpu/deps, .gpu-prebuilt, .gpu/diag.
R=$OUT; export OUT=/tmp/n8; mkdir -p $OUT
save() { tar -C /tmp -czf $R/all.tgz n8; cat $OUT/summary-*.txt > $R/summary.txt 2>/dev/null; }
LINEARIZE_CALL_SECONDS=130 LINEARIZE_SUITE_SECONDS=60 bash scripts/gpu-attention-check tests > $OUT/check-tests.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-1tests.txt; save
export LD_LIBRARY_PATH=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))'):/usr/local/cuda/lib64:$PWD/.gpu/deps/usr/lib/x86_64-linux-gnu
for t in gpu_hybrid_grad_test gpu_chunked_linear_grad_test; do
  xz -dc .gpu/diag/A_$t.xz > /tmp/A_$t && chmod +x /tmp/A_$t
  timeout 60 /tmp/A_$t > $OUT/A_$t.log 2>&1; echo "A $t: rc=$? $(grep -E '^\[  (PASSED|FAILED)  \]' $OUT/A_$t.log | tr '\n' ' ')" >> $OUT/summary-2A.txt
done
grep -h "FAILED  \] [A-Z]" $OUT/A_*.log >> $OUT/summary-2A.txt
# Lizard's d_k without sinks (1.08e-2 in session 34): its worst element.
LINEARIZE_PRINT_ERRORS=1 build-prebuilt/bin/gpu_hybrid_grad_test --gtest_filter='*no_sinks*:*T333_gqa_D128*' \
  > $OUT/print_errors.log 2>&1; grep -E "^d k|^d q:" $OUT/print_errors.log > $OUT/summary-2errors.txt; save
LINEARIZE_CALL_SECONDS=120 LINEARIZE_KERNEL_OPS="lizard_fwd_bwd" LINEARIZE_BASELINE_BENCH=.gpu/diag/main_bench_730c09e.xz \
  bash scripts/gpu-attention-check kernels > $OUT/check-kernels-main.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-3main.txt; mkdir -p $OUT/vs_main; mv $OUT/ncu_*.csv $OUT/vs_main/; save
LINEARIZE_CALL_SECONDS=120 LINEARIZE_KERNEL_OPS="lizard_fwd_bwd" LINEARIZE_BASELINE_BENCH=.gpu/diag/A_bench_attention_gpu.xz \
  bash scripts/gpu-attention-check kernels > $OUT/check-kernels-A.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-4A.txt; mkdir -p $OUT/vs_A; mv $OUT/ncu_*.csv $OUT/vs_A/; save
