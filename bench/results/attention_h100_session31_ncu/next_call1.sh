#!/bin/bash
# Session 32, call 1 (prepared in session 31): branch s31-candidates
# (LDS / STS in the chunked wgmma kernels; two-chunk window backward kernels
# at D = 128; Lizard's two-chunk window forward): every attention suite,
# then ncu of LoLCATs' and Lizard's prefill and step beside main's binary.
# Needs .gpu-prebuilt built from s31-candidates (git checkout s31-candidates
# && bash scripts/gpu-prebuild) and .gpu/diag/main_bench.xz (main's).
R=$OUT; export OUT=/tmp/n1; mkdir -p $OUT
LINEARIZE_CALL_SECONDS=200 LINEARIZE_SUITE_SECONDS=60 bash scripts/gpu-attention-check tests > $OUT/check-tests.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-tests.txt
tar -C /tmp -czf $R/all.tgz n1; cp $OUT/summary-tests.txt $R/summary.txt
LINEARIZE_CALL_SECONDS=330 LINEARIZE_KERNEL_OPS="lolcats lolcats_fwd_bwd lizard lizard_fwd_bwd" LINEARIZE_BASELINE_BENCH=.gpu/diag/main_bench.xz \
  bash scripts/gpu-attention-check kernels > $OUT/check-kernels.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-kernels.txt
tar -C /tmp -czf $R/all.tgz n1; cat $OUT/summary-tests.txt $OUT/summary-kernels.txt > $R/summary.txt
