#!/bin/bash
# Session 32, call 3: branch s32 with generic shared accesses kept in
# Lizard's fused prefill and LoLCATs' d_k / d_v (where LDS / STS measured
# slower in call 2): ncu of Lizard's prefill and LoLCATs' step beside
# main's binary first, then the attention suites.
R=$OUT; export OUT=/tmp/n3; mkdir -p $OUT
save() { tar -C /tmp -czf $R/all.tgz n3; cat $OUT/summary-*.txt > $R/summary.txt 2>/dev/null; }
LINEARIZE_CALL_SECONDS=200 LINEARIZE_KERNEL_OPS="lizard lolcats_fwd_bwd" LINEARIZE_BASELINE_BENCH=.gpu/diag/main_bench.xz \
  bash scripts/gpu-attention-check kernels > $OUT/check-kernels.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-1kernels.txt; save
LINEARIZE_CALL_SECONDS=150 LINEARIZE_SUITE_SECONDS=60 bash scripts/gpu-attention-check tests > $OUT/check-tests.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-2tests.txt; save
