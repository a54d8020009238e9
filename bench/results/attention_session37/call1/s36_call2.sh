#!/bin/bash
# Session 36, call 2, not run (about 300 s; carry .gpu/deps, .gpu-prebuilt
# built from branch s36-candidates, .gpu/diag with this script and
# main_bench_6faa6a5.xz): every GPU suite; ncu of both training steps beside
# main's bench (6faa6a5); the wall-clock bench of prefill and training
# beside main's. `bash next_call.sh short`: only the suites that cover
# 303e721's kernels, then ncu (no bench).
R=${R:-$OUT}; export R; export OUT=/tmp/n37; mkdir -p $OUT
save() { tar -C /tmp -czf $R/all.tgz n37; cat $OUT/summary-*.txt > $R/summary.txt 2>/dev/null; }
export LD_LIBRARY_PATH=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))'):/usr/local/cuda/lib64:$PWD/.gpu/deps/usr/lib/x86_64-linux-gnu
mkdir -p build-prebuilt && tar -C build-prebuilt -xJf .gpu-prebuilt/bin.tar.xz
suites="gpu_hybrid_grad_test gpu_lizard_test gpu_lolcats_test gpu_feature_map_test gpu_window_walk_test"
[ "${1:-}" = short ] || suites="$suites gpu_chunked_linear_grad_test gpu_chunked_linear_test gpu_chunked_linear_wgmma_test gpu_linear_attention_test gpu_decode_graph_test gpu_wgmma_test"
for t in $suites; do
  timeout 100 build-prebuilt/bin/$t > $OUT/$t.log 2>&1
  echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED)  \]' $OUT/$t.log | tr '\n' ' ')" >> $OUT/summary-1.txt
done
grep -h "FAILED  \] [A-Z]" $OUT/gpu_*.log | sort -u >> $OUT/summary-1.txt; save
baseline=.gpu/diag/main_bench_6faa6a5.xz
LINEARIZE_CALL_SECONDS=200 LINEARIZE_KERNEL_OPS="lizard_fwd_bwd lolcats_fwd_bwd" LINEARIZE_BASELINE_BENCH=$baseline \
  bash scripts/gpu-attention-check kernels > $OUT/check-kernels.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-2kernels.txt; mkdir -p $OUT/ncu; mv $OUT/ncu_*.csv $OUT/ncu/ 2>/dev/null; save
[ "${1:-}" = short ] && exit 0
LINEARIZE_CALL_SECONDS=170 LINEARIZE_BENCH_PARTS=prefill,train LINEARIZE_BENCH_SECONDS=100 LINEARIZE_BASELINE_BENCH=$baseline \
  bash scripts/gpu-attention-check bench > $OUT/check-bench.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-3bench.txt; save
