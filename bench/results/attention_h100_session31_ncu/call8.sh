#!/bin/bash
# Session 31, call 8: branch state-copies (every copy issued by the state warpgroup,
# keys and values handed over by barriers, both right after the phi_k barrier): the attention suites, then ncu of LoLCATs' step beside main f19616b.
R=$OUT; export OUT=/tmp/o8; mkdir -p $OUT
LINEARIZE_CALL_SECONDS=210 LINEARIZE_SUITE_SECONDS=40 bash scripts/gpu-attention-check tests > $OUT/check-tests.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-tests.txt
LINEARIZE_CALL_SECONDS=340 LINEARIZE_KERNEL_OPS="lolcats lolcats_fwd_bwd" LINEARIZE_BASELINE_BENCH=.gpu/diag/main_bench.xz \
  bash scripts/gpu-attention-check kernels > $OUT/check-kernels.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-kernels.txt
LINEARIZE_CALL_SECONDS=150 LINEARIZE_BENCH_PARTS=prefill,train LINEARIZE_BENCH_SECONDS=60 LINEARIZE_BASELINE_BENCH=.gpu/diag/main_bench.xz \
  bash scripts/gpu-attention-check bench > $OUT/check-bench.log 2>&1
tar -C /tmp -czf $R/all.tgz o8; cat $OUT/summary-tests.txt $OUT/summary-kernels.txt > $R/summary.txt
