#!/bin/bash
# Session 31, call 5: branch pdl (forward's outputs kernel and the d_k / d_v
# kernel launched behind their pass 1s): the attention suites, the
# benchmark's prefill and training rows beside main f19616b, twice.
R=$OUT; export OUT=/tmp/o5; mkdir -p $OUT
LINEARIZE_CALL_SECONDS=200 LINEARIZE_SUITE_SECONDS=40 bash scripts/gpu-attention-check tests > $OUT/check-tests.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-tests.txt
for run in 1 2; do
  export OUT=/tmp/o5/bench$run; mkdir -p $OUT
  LINEARIZE_CALL_SECONDS=200 LINEARIZE_BENCH_PARTS=prefill,train LINEARIZE_BENCH_SECONDS=90 LINEARIZE_BASELINE_BENCH=.gpu/diag/main_bench.xz \
    bash scripts/gpu-attention-check bench > $OUT/check-bench.log 2>&1
done
export OUT=/tmp/o5
LINEARIZE_CALL_SECONDS=150 LINEARIZE_KERNEL_OPS="lolcats_fwd_bwd" LINEARIZE_BASELINE_BENCH=.gpu/diag/main_bench.xz \
  bash scripts/gpu-attention-check kernels > $OUT/check-kernels.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-kernels.txt
tar -C /tmp -czf $R/all.tgz o5; cat $OUT/summary-tests.txt $OUT/summary-kernels.txt > $R/summary.txt
