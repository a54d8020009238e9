# Session 35, call 3 (H100): every GPU suite of the landed tree (8b03991:
# A + the review fixes + the clamped bound) from .gpu-prebuilt, then the
# worst elements. Carry .gpu/deps, .gpu-prebuilt, .gpu/diag.
R=$OUT; export OUT=/tmp/n11; mkdir -p $OUT; save() { tar -C /tmp -czf $R/all.tgz n11; cat $OUT/summary-*.txt > $R/summary.txt 2>/dev/null; }
export LD_LIBRARY_PATH=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))'):/usr/local/cuda/lib64:$PWD/.gpu/deps/usr/lib/x86_64-linux-gnu
mkdir -p build-prebuilt && tar -C build-prebuilt -xJf .gpu-prebuilt/bin.tar.xz
for t in gpu_hybrid_grad_test gpu_chunked_linear_grad_test gpu_chunked_linear_test gpu_lizard_test gpu_chunked_linear_wgmma_test gpu_lolcats_test gpu_linear_attention_test gpu_feature_map_test gpu_decode_graph_test gpu_wgmma_test gpu_window_walk_test; do timeout 100 build-prebuilt/bin/$t > $OUT/$t.log 2>&1; echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED)  \]' $OUT/$t.log | tr '\n' ' ')" >> $OUT/summary-1.txt; done
grep -h "FAILED  \] [A-Z]" $OUT/gpu_*.log | sort -u >> $OUT/summary-1.txt; save
LINEARIZE_PRINT_ERRORS=1 build-prebuilt/bin/gpu_hybrid_grad_test --gtest_filter='*no_sinks*:*T333_gqa_D128*' > $OUT/print_errors.log 2>&1; grep -E "^d k|^d q:" $OUT/print_errors.log > $OUT/summary-2errors.txt; save
