#!/usr/bin/env bash
# Stop 23, call F (#13 at 8-token pages, any card): nc_gpu_bench sparse and sparse-parts with
# NC_SPARSE_PAGE=8, and the 64k batch-16 e2e decode (tools/gpu_long_context.sh's runs) at
# --page-size 8, dense and --sparse-budget 2048, next to page 16 again.
set -uo pipefail
R=/tmp/s23f; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
( while sleep 20; do tar -C /tmp -cJf "$OUT/s23f.tmp.tar.xz" s23f && mv "$OUT/s23f.tmp.tar.xz" "$OUT/s23f.tar.xz"; done ) &
tarpid=$!
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
source tools/gpu_bundle.sh; gpu_unpack ${BUNDLE:-build-gpu/new6.tar.xz}; log unpacked
timeout 30 python3 bench/gpu_ceilings.py > $R/ceilings.json 2>&1; log "ceilings rc $?"
b() { local name=$1; shift; (cd $nc && OUT=$R/$name timeout 60 $nc/bin/nc_gpu_bench "$@" > $R/$name.md 2>&1); log "$name rc $?"; }
mkdir -p $R/sparse_page8 $R/sparse_page16
NC_SPARSE_PAGE=8 b sparse_page8 sparse
b sparse_page16 sparse
e() { local name=$1; shift; [ $SECONDS -lt 480 ] || { log "$name skipped"; return; }
  (cd $nc && timeout 100 $nc/bin/nanocascade bench --backend cuda --load-format dummy \
    --workload shared-prefix --system-len 0 --prompts-per-group 1 --groups 16 \
    --question-len 65279 --output-len 256 --no-prefix-cache --no-cascade \
    --max-num-seqs 16 --max-num-batched-tokens 16384 --model configs/llama-3.2-1b.json --max-model-len 65536 "$@" \
    --json $R/$name.json > $R/$name.log 2>&1); log "$name rc $?"; }
e e2e_page8_dense --page-size 8
e e2e_page8_sparse --page-size 8 --sparse-budget 2048
kill $tarpid 2>/dev/null; tar -C /tmp -cJf "$OUT/s23f.tar.xz" s23f; rm -f "$OUT/s23f.tmp.tar.xz"
cat $R/rcs.txt $R/ceilings.json; grep -m1 "H[12]00" $R/nvidia-smi.txt
for f in $R/sparse_page*.md; do echo "$f"; grep "^| [0-9]" $f | head -16; done
for f in $R/e2e*.log; do echo "$f"; grep -h "decode-only\|throughput\|memory:" $f; done
