#!/bin/bash
# Session 34, call 2: where Lizard's fused gated prefill kernel
# (ChunkedLinearWgmmaKernel<1, 0, 1>, ~0.96 ms at 32k, 3x its memory floor)
# spends its time: ncu's per-instruction stall samples (no profile of it
# exists yet; sessions 21 and 31 sampled LoLCATs' fused kernel), then the
# gates' backward kernels' share of Lizard's step.
#   python3 bench/sass_hotspots.py source_ChunkedLinearWgmmaKernel.csv --regions
R=$OUT; export OUT=/tmp/n2; mkdir -p $OUT
save() { tar -C /tmp -czf $R/all.tgz n2; cat $OUT/summary-*.txt > $R/summary.txt 2>/dev/null; }
LINEARIZE_CALL_SECONDS=200 LINEARIZE_SOURCE_KERNELS="lizard:ChunkedLinearWgmmaKernel lizard_fwd_bwd:SuffixSumsKernel" \
  bash scripts/gpu-attention-check source > $OUT/check-source.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-1source.txt; save
