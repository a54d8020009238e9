#!/bin/bash
# Session 32, call 2: branch s32 (main + LDS/STS in the chunked wgmma kernels
# + Lizard's maps inside the gated kernels' op): the attention suites, ncu of
# LoLCATs' and Lizard's prefill and step beside main's binary, Lizard's
# prefill again (call 1 put its gated forward 109 us behind), then the
# prefill and training benchmark beside main's.
R=$OUT; export OUT=/tmp/n2; mkdir -p $OUT
save() { tar -C /tmp -czf $R/all.tgz n2 n2b 2>/dev/null; cat $OUT/summary-*.txt > $R/summary.txt 2>/dev/null; }
LINEARIZE_CALL_SECONDS=200 LINEARIZE_SUITE_SECONDS=60 bash scripts/gpu-attention-check tests > $OUT/check-tests.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-1tests.txt; save
LINEARIZE_CALL_SECONDS=330 LINEARIZE_KERNEL_OPS="lolcats lolcats_fwd_bwd lizard lizard_fwd_bwd" LINEARIZE_BASELINE_BENCH=.gpu/diag/main_bench.xz \
  bash scripts/gpu-attention-check kernels > $OUT/check-kernels.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-2kernels.txt; save
mkdir -p /tmp/n2b
OUT=/tmp/n2b LINEARIZE_CALL_SECONDS=120 LINEARIZE_KERNEL_OPS="lizard" LINEARIZE_BASELINE_BENCH=.gpu/diag/main_bench.xz \
  bash scripts/gpu-attention-check kernels > /tmp/n2b/check-kernels.log 2>&1
cp /tmp/n2b/attention-summary.txt $OUT/summary-3lizard-again.txt; save
LINEARIZE_CALL_SECONDS=200 LINEARIZE_BENCH_PARTS=prefill,train LINEARIZE_BENCH_SECONDS=90 LINEARIZE_BASELINE_BENCH=.gpu/diag/main_bench.xz \
  bash scripts/gpu-attention-check bench > $OUT/check-bench.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-4bench.txt; save
