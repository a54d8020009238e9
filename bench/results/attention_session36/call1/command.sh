#!/bin/bash
# Session 36, call 1 (H100; planned while no device was lent; about 500 s;
# carry .gpu/deps, .gpu-prebuilt built from branch s36-candidates at
# c69f581, .gpu/diag with this script and s35_den.sh):
#  1. s35_den.sh: every GPU suite of the branch, both hybrid gradient
#     suites' errors beside main ee16058 on the same draws, ncu of both
#     training steps beside main's bench (ee16058, main's kernels);
#  2. ncu of Lizard's step beside the branch at 017b2ce (the maps' backward
#     at two CTAs an SM, without its staged dx stores), to tell the two
#     maps' backward changes apart;
#  3. stall samples of the window backward's key and query kernels and the
#     gated d_k / d_v kernel, as time allows.
R=$OUT
started=$(date +%s)
left() { echo $(( 570 - ($(date +%s) - started) )); }
bash .gpu/diag/s35_den.sh  # a copy is s35_den.sh beside this script
export OUT=/tmp/n36k; mkdir -p $OUT
LINEARIZE_CALL_SECONDS=$(left) LINEARIZE_KERNEL_OPS="lizard_fwd_bwd" \
  LINEARIZE_BASELINE_BENCH=.gpu/diag/s36_bench_017b2ce.xz \
  bash scripts/gpu-attention-check kernels > $OUT/check-kernels.log 2>&1
cp $OUT/attention-summary.txt $R/summary-vs017b2ce.txt
tar -C /tmp -czf $R/vs017b2ce.tgz n36k
export OUT=/tmp/n36s; mkdir -p $OUT
LINEARIZE_CALL_SECONDS=$(left) \
  LINEARIZE_SOURCE_KERNELS="lizard_fwd_bwd:KeyKernel lizard_fwd_bwd:QueryKernel lizard_fwd_bwd:ChunkedLinearDkvWgmmaKernel" \
  bash scripts/gpu-attention-check source > $OUT/check-source.log 2>&1
cp $OUT/attention-summary.txt $R/summary-source.txt
tar -C /tmp -czf $R/source.tgz n36s
