#!/bin/bash
# Session 34, call 1 (prepared in session 33, which got no device machine):
# branch s33-candidates (or main + s33_candidates.patch): every attention
# suite, then ncu of LoLCATs' and Lizard's prefill and step beside main
# deef400's binary, then the wall-clock benchmark beside it (about 490 s).
# Needs .gpu-prebuilt built from the branch (git checkout s33-candidates &&
# bash scripts/gpu-prebuild) and .gpu/diag/main_bench_deef400.xz (main
# deef400's stripped bench_attention_gpu, xz -9e); carry .gpu/deps,
# .gpu-prebuilt, .gpu/diag.
R=$OUT; export OUT=/tmp/n1; mkdir -p $OUT
save() { tar -C /tmp -czf $R/all.tgz n1; cat $OUT/summary-*.txt > $R/summary.txt 2>/dev/null; }
base=.gpu/diag/main_bench_deef400.xz
LINEARIZE_CALL_SECONDS=160 LINEARIZE_SUITE_SECONDS=60 bash scripts/gpu-attention-check tests > $OUT/check-tests.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-1tests.txt; save
LINEARIZE_CALL_SECONDS=230 LINEARIZE_KERNEL_OPS="lolcats lolcats_fwd_bwd lizard lizard_fwd_bwd" LINEARIZE_BASELINE_BENCH=$base \
  bash scripts/gpu-attention-check kernels > $OUT/check-kernels.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-2kernels.txt; save
LINEARIZE_CALL_SECONDS=100 LINEARIZE_BENCH_PARTS=prefill,train LINEARIZE_BENCH_SECONDS=45 LINEARIZE_BASELINE_BENCH=$base \
  bash scripts/gpu-attention-check bench > $OUT/check-bench.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-3bench.txt; save
