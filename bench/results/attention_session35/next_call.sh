#!/bin/bash
# For session 36 (about 250 s, H100; carry .gpu/deps and .gpu-prebuilt built
# from main): where Lizard's two largest backward kernels stall now that the
# gated d_k / d_v kernel no longer spills, then the wall-clock bench of the
# training step and prefill (no FLA). Read the CSVs with
#   python3 bench/sass_hotspots.py source_X.csv --regions
R=$OUT; export OUT=/tmp/n36; mkdir -p $OUT
save() { tar -C /tmp -czf $R/all.tgz n36; cp $OUT/attention-summary.txt $R/summary.txt 2>/dev/null; }
LINEARIZE_CALL_SECONDS=150 \
  LINEARIZE_SOURCE_KERNELS="lizard_fwd_bwd:ChunkedLinearDkvWgmmaKernel lizard_fwd_bwd:KeyKernel" \
  bash scripts/gpu-attention-check source > $OUT/check-source.log 2>&1
mkdir -p $OUT/source && mv $OUT/source_*.csv* $OUT/source/ 2>/dev/null; save
LINEARIZE_CALL_SECONDS=100 LINEARIZE_BENCH_PARTS=prefill,train LINEARIZE_BENCH_SECONDS=90 \
  bash scripts/gpu-attention-check bench > $OUT/check-bench.log 2>&1; save
