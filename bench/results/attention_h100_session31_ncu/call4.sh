#!/bin/bash
# Session 31, call 4: branch pdl (the forward's outputs kernel launched
# behind pass 1, heads-first grid): the attention suites, the benchmark's
# prefill and training rows beside main f19616b, ncu of LoLCATs' prefill.
R=$OUT; export OUT=/tmp/o4; mkdir -p $OUT
LINEARIZE_CALL_SECONDS=200 LINEARIZE_SUITE_SECONDS=40 bash scripts/gpu-attention-check tests > $OUT/check-tests.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-tests.txt
LINEARIZE_CALL_SECONDS=200 LINEARIZE_BENCH_PARTS=prefill,train LINEARIZE_BENCH_SECONDS=90 LINEARIZE_BASELINE_BENCH=.gpu/diag/main_bench.xz \
  bash scripts/gpu-attention-check bench > $OUT/check-bench.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-bench.txt
LINEARIZE_CALL_SECONDS=150 LINEARIZE_KERNEL_OPS="lolcats" LINEARIZE_BASELINE_BENCH=.gpu/diag/main_bench.xz \
  bash scripts/gpu-attention-check kernels > $OUT/check-kernels.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-kernels.txt
tar -C /tmp -czf $R/all.tgz o4; cat $OUT/summary-tests.txt $OUT/summary-bench.txt $OUT/summary-kernels.txt > $R/summary.txt
