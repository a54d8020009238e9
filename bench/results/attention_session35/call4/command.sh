# Session 35, call 4 (H100, warm after call 3): ncu of Lizard's step, the
# landed tree beside main 730c09e.
R=$OUT; export OUT=/tmp/n12; mkdir -p $OUT; LINEARIZE_CALL_SECONDS=140 LINEARIZE_KERNEL_OPS="lizard_fwd_bwd" LINEARIZE_BASELINE_BENCH=.gpu/diag/main_bench_730c09e.xz bash scripts/gpu-attention-check kernels > $OUT/check-kernels-main.log 2>&1; cp $OUT/attention-summary.txt $R/summary.txt; mkdir -p $R/vs_main; cp $OUT/ncu_*.csv $R/vs_main/
