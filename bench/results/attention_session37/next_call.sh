#!/bin/bash
# Session 37, call 3 (about 150 s; the two suites that cover the key kernel; carry as call 2, .gpu-prebuilt built
# from s37-key-walk, .gpu/diag with main_bench_6faa6a5.xz): the suites
# that cover the window kernels, then ncu of both training steps
# beside main's bench; with `bench`, the prefill wall
# bench beside it.
R=$OUT; export OUT=/tmp/n37c; mkdir -p $OUT
save() { tar -C /tmp -czf $R/all.tgz n37c; cat $OUT/summary-*.txt > $R/summary.txt 2>/dev/null; }
export LD_LIBRARY_PATH=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))'):/usr/local/cuda/lib64:$PWD/.gpu/deps/usr/lib/x86_64-linux-gnu
mkdir -p build-prebuilt && tar -C build-prebuilt -xJf .gpu-prebuilt/bin.tar.xz
for t in gpu_window_walk_test gpu_hybrid_grad_test; do
  timeout 100 build-prebuilt/bin/$t > $OUT/$t.log 2>&1
  echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED)  \]' $OUT/$t.log | tr '\n' ' ')" >> $OUT/summary-1.txt
done
grep -h "FAILED  \] [A-Z]" $OUT/gpu_*.log | sort -u >> $OUT/summary-1.txt; save
baseline=.gpu/diag/main_bench_6faa6a5.xz
LINEARIZE_CALL_SECONDS=250 LINEARIZE_KERNEL_OPS="lizard_fwd_bwd" LINEARIZE_BASELINE_BENCH=$baseline \
  bash scripts/gpu-attention-check kernels > $OUT/check-kernels.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-2kernels.txt; mkdir -p $OUT/ncu; mv $OUT/ncu_*.csv $OUT/ncu/ 2>/dev/null; save
[ "${1:-}" = bench ] || exit 0
LINEARIZE_CALL_SECONDS=200 LINEARIZE_BENCH_PARTS=prefill LINEARIZE_BENCH_SECONDS=90 LINEARIZE_BASELINE_BENCH=$baseline \
  bash scripts/gpu-attention-check bench > $OUT/check-bench.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-3bench.txt; save
grep -E "^(lolcats|lizard) +cuda" $OUT/bench.log $OUT/bench_baseline.log
