#!/bin/bash
# The first call of the next session (planned in session 36, not run: no
# device machine was lent; about 400 s; carry .gpu/deps, .gpu-prebuilt from branch
# s35-den-fp32, .gpu/diag): s35_den.sh (every suite, gradient errors beside
# main ee16058, ncu of both steps beside main), then the stall samples of the
# window backward's key and query kernels and the branch's gated d_k / d_v.
R=$OUT
bash .gpu/diag/s35_den.sh  # a copy is s35_den.sh beside this script
export OUT=/tmp/n36s; mkdir -p $OUT
LINEARIZE_CALL_SECONDS=280 \
  LINEARIZE_SOURCE_KERNELS="lizard_fwd_bwd:KeyKernel lizard_fwd_bwd:QueryKernel lizard_fwd_bwd:ChunkedLinearDkvWgmmaKernel" \
  bash scripts/gpu-attention-check source > $OUT/check-source.log 2>&1
cp $OUT/attention-summary.txt $R/summary-source.txt
tar -C /tmp -czf $R/source.tgz n36s
