#!/bin/bash
# Session 37, call 1: s36_call2.sh (every suite, ncu of both training
# steps and the wall bench beside main's bench 6faa6a5), then the window
# forward's speed-of-light and memory sections, this tree's and main's.
# .gpu/diag/s36_call2.sh was bench/results/attention_session36/next_call.sh
# with its first line R=${R:-$OUT}; export R; export OUT=/tmp/n37; ...
R=$OUT; export R
bash .gpu/diag/s36_call2.sh
export OUT=/tmp/n37
export LD_LIBRARY_PATH=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))'):/usr/local/cuda/lib64:$PWD/.gpu/deps/usr/lib/x86_64-linux-gnu
for b in build-prebuilt/bin/bench_attention_gpu /tmp/bench_attention_gpu_baseline; do
  [ -x "$b" ] || { xz -dc .gpu/diag/main_bench_6faa6a5.xz > /tmp/bench_attention_gpu_baseline; chmod +x /tmp/bench_attention_gpu_baseline; }
  echo "=== $b" >> $OUT/window_sections.txt
  timeout 100 ncu --clock-control none --profile-from-start off -k "regex:LolcatsWindowKernel" -c 1 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy "$b" --step lizard_fwd_bwd 2>&1 \
    | grep -v "^==PROF==" >> $OUT/window_sections.txt
done
tar -C /tmp -czf $R/all.tgz n37 2>/dev/null
grep -E "===|Duration|Throughput|Hit Rate|Achieved Occupancy|Registers|Block Limit" $OUT/window_sections.txt
