#!/bin/bash
# Session 31, call 3: branch state-window (the window's weights on the state
# warpgroup): the attention suites, then ncu of LoLCATs' step beside main f19616b.
R=$OUT; export OUT=/tmp/o3; mkdir -p $OUT
LINEARIZE_CALL_SECONDS=210 LINEARIZE_SUITE_SECONDS=40 bash scripts/gpu-attention-check tests > $OUT/check-tests.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-tests.txt
LINEARIZE_CALL_SECONDS=340 LINEARIZE_KERNEL_OPS="lolcats lolcats_fwd_bwd" LINEARIZE_BASELINE_BENCH=.gpu/diag/main_bench.xz \
  bash scripts/gpu-attention-check kernels > $OUT/check-kernels.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-kernels.txt
tar -C /tmp -czf $R/all.tgz o3; cat $OUT/summary-tests.txt $OUT/summary-kernels.txt > $R/summary.txt
export OUT=/tmp/o3
LINEARIZE_CALL_SECONDS=200 LINEARIZE_SOURCE_KERNELS=lolcats:ChunkedLinearWgmmaKernel bash scripts/gpu-attention-check source > $OUT/check-source.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-source.txt
tar -C /tmp -czf $R/all.tgz o3; cat $OUT/summary-source.txt >> $R/summary.txt
