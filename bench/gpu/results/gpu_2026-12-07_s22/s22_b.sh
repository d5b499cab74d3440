#!/usr/bin/env bash
# Stop 22, call B (#13, #17, #16; any card): the sparse benchmark with FlashInfer's own split and
# fixed splits of the kept pages' tensor-core plan (NC_PREFILL_SPLIT_PAGES, eager plans; 100000:
# no split), fp8kv with NC_FP8_DECODE_WAVES 1 and 2, decode-choice, decode-b1, then
# tools/gpu_fp8.sh (#17's whole check, 8B batch 256 only) while time lasts. Re-tarred every 20 s.
set -uo pipefail
R=/tmp/s22b; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
( while sleep 20; do tar -C /tmp -cJf "$OUT/s22b.tmp.tar.xz" s22b && mv "$OUT/s22b.tmp.tar.xz" "$OUT/s22b.tar.xz"; done ) &
tarpid=$!
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
source tools/gpu_bundle.sh; gpu_unpack ${BUNDLE:-build-gpu/new4.tar.xz}; log unpacked
timeout 30 python3 bench/gpu_ceilings.py > $R/ceilings.json 2>&1; log "ceilings rc $?"
b() { local name=$1; shift; (cd $nc && OUT=$R timeout 45 $nc/bin/nc_gpu_bench "$@" > $R/$name.md 2>&1); log "$name rc $?"; }
b sparse sparse
for sp in 8 32 100000; do NC_PREFILL_SPLIT_PAGES=$sp b sparse_split$sp sparse; done
b fp8kv fp8kv
for w in 1 2; do NC_FP8_DECODE_WAVES=$w b fp8kv_w$w fp8kv; done
b decode_choice decode-choice
NC_PREFILL_SPLIT_PAGES=16 b decode_choice_split16 decode-choice
b decode_b1 decode-b1 configs/qwen3-0.6b.json configs/llama-3-8b.json
OUT=$R/fp8 NC_KEEP_FILES=1 NC_8B_BATCHES="256" timeout $(( SECONDS < 500 ? 565 - SECONDS : 60 )) bash tools/gpu_fp8.sh ${BUNDLE:-build-gpu/new4.tar.xz} > /dev/null 2>&1; log "fp8 rc $?"
kill $tarpid 2>/dev/null; tar -C /tmp -cJf "$OUT/s22b.tar.xz" s22b; rm -f "$OUT/s22b.tmp.tar.xz"
cat $R/rcs.txt $R/ceilings.json
for f in $R/sparse*.md; do echo "$f"; grep "^| 32768 | 16 \|^| 131072 | 16 " $f | head -4; done
for f in $R/fp8kv*.md; do echo "$f"; grep "| 2048 |" $f | head -9; done
grep "^|" $R/decode_b1.md | head -12; grep -v "^| \|^|--\|^$" $R/fp8/fp8.log 2>/dev/null | head -40
