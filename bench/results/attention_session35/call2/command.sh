# Session 35, call 2 (H200, warm after call 1): the two suites call 1 had no
# time for, then ncu of Lizard's step, tree B beside main 730c09e and beside
# A. Carry .gpu/deps, .gpu-prebuilt (built from 3c78107), .gpu/diag.
R=$OUT; export OUT=/tmp/n10; mkdir -p $OUT; save() { tar -C /tmp -czf $R/all.tgz n10; cat $OUT/summary-*.txt > $R/summary.txt 2>/dev/null; }
export LD_LIBRARY_PATH=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))'):/usr/local/cuda/lib64:$PWD/.gpu/deps/usr/lib/x86_64-linux-gnu
mkdir -p build-prebuilt && tar -C build-prebuilt -xJf .gpu-prebuilt/bin.tar.xz
for t in gpu_chunked_linear_wgmma_test gpu_window_walk_test; do timeout 100 build-prebuilt/bin/$t > $OUT/$t.log 2>&1; echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED)  \]' $OUT/$t.log | tr '\n' ' ')" >> $OUT/summary-1.txt; done; save
LINEARIZE_CALL_SECONDS=200 LINEARIZE_KERNEL_OPS="lizard_fwd_bwd" LINEARIZE_BASELINE_BENCH=.gpu/diag/main_bench_730c09e.xz bash scripts/gpu-attention-check kernels > $OUT/check-kernels-main.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-3main.txt; mkdir -p $OUT/vs_main; mv $OUT/ncu_*.csv $OUT/vs_main/; save
LINEARIZE_CALL_SECONDS=200 LINEARIZE_KERNEL_OPS="lizard_fwd_bwd" LINEARIZE_BASELINE_BENCH=.gpu/diag/A_bench_attention_gpu.xz bash scripts/gpu-attention-check kernels > $OUT/check-kernels-A.log 2>&1
cp $OUT/attention-summary.txt $OUT/summary-4A.txt; mkdir -p $OUT/vs_A; mv $OUT/ncu_*.csv $OUT/vs_A/; save
