#!/usr/bin/env bash
# Stop 21, call H (whatever card comes; no H200 would start): the MLA tests and mla-forms with the
# fitted CUDA costs (Auto's regret, against stop 20's call D on an H100), the sparse benchmark with
# FlashInfer's own split and fixed splits of the kept pages' tensor-core plan (NC_PREFILL_SPLIT_PAGES,
# eager plans; 100000: no split), decode-choice likewise, fp8kv, then the whole GPU suite but SmolLM2's.
set -uo pipefail
R=/tmp/s21h; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
source tools/gpu_bundle.sh; gpu_unpack build-gpu/new2.tar.xz; log unpacked
timeout 30 python3 bench/gpu_ceilings.py > $R/ceilings.json 2>&1; log "ceilings rc $?"
T() { NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout "$1" $nc/bin/nc_gpu_tests --gtest_filter="$2" > $R/$3.log 2>&1; log "$3 rc $?"; }
T 60 'CudaMlaExpanded*:CudaMlaFiModel*' mla_tests
b() { local name=$1; shift; (cd $nc && OUT=$R timeout 45 $nc/bin/nc_gpu_bench "$@" > $R/$name.md 2>&1); log "$name rc $?"; }
b mla_forms mla-forms
b sparse sparse
for sp in 8 32 100000; do NC_PREFILL_SPLIT_PAGES=$sp b sparse_split$sp sparse; done
b fp8kv fp8kv
for w in 1 2; do NC_FP8_DECODE_WAVES=$w b fp8kv_w$w fp8kv; done
T $(( SECONDS < 290 ? 320 - SECONDS : 30 )) '-*SmolLM2*:CudaMlaExpanded*:CudaMlaFiModel*' gpu_tests
tar -C /tmp -cJf "$OUT/s21h.tar.xz" s21h
cat $R/rcs.txt $R/ceilings.json; grep -E "^\[  (FAILED|PASSED)|rel err|graph vs" $R/mla_tests.log | tail -20
grep "^|" $R/mla_forms.md | head -40
for f in $R/sparse*.md; do echo "$f"; grep "^| 32768 | 16 \|^| 131072 | 16 " $f | head -4; done
for f in $R/fp8kv*.md; do echo "$f"; grep "| 2048 |" $f | head -9; done
grep -E "^\[  (FAILED|PASSED)|tests ran|^\[ RUN" $R/gpu_tests.log | tail -14
