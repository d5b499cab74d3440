#!/usr/bin/env bash
# Stop 22, call A (any card; the first GPU run since stop 20's PlanQuery fix): the MLA tests, the
# whole GPU suite but SmolLM2's (no weights in the bundle), then mla-forms with the fitted CUDA
# costs, mla, and the MoE/MLA shapes at fixed batches 1/64/256 (512 prompt ids, 256 output tokens,
# prefix cache and cascade off, KV 32 GiB) while time lasts. Results re-tarred into $OUT every 20 s.
set -uo pipefail
R=/tmp/s22a; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
( while sleep 20; do tar -C /tmp -cJf "$OUT/s22a.tmp.tar.xz" s22a && mv "$OUT/s22a.tmp.tar.xz" "$OUT/s22a.tar.xz"; done ) &
tarpid=$!
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
source tools/gpu_bundle.sh; gpu_unpack ${BUNDLE:-build-gpu/new4.tar.xz}; log unpacked
timeout 30 python3 bench/gpu_ceilings.py > $R/ceilings.json 2>&1; log "ceilings rc $?"
T() { NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout "$1" $nc/bin/nc_gpu_tests --gtest_filter="$2" > $R/$3.log 2>&1; log "$3 rc $?"; }
T 60 'CudaMlaExpanded*:CudaMlaFiModel*' mla_tests
T 220 '-*SmolLM2*:CudaMlaExpanded*:CudaMlaFiModel*' gpu_tests
b() { local name=$1; shift; (cd $nc && OUT=$R timeout 50 $nc/bin/nc_gpu_bench "$@" > $R/$name.md 2>&1); log "$name rc $?"; }
b mla_forms mla-forms; [ $SECONDS -lt 330 ] && b mla mla
F=(--max-model-len 4096 --kv-cache-memory 32GiB --max-num-seqs 512
   --no-prefix-cache --no-cascade --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 256)
e() { local name=$1; shift; timeout 40 $nc/bin/nanocascade bench --backend cuda --load-format dummy "$@" --json $R/$name.json > $R/$name.log 2>&1; log "$name rc $?"; }
for m in deepseek-v2-lite qwen3-30b-a3b; do
  for g in 1 64 256; do [ $SECONDS -lt 340 ] && e fixed_${m}_$g "${F[@]}" --model $nc/configs/$m.json --groups $g; done
done
kill $tarpid 2>/dev/null; tar -C /tmp -cJf "$OUT/s22a.tar.xz" s22a; rm -f "$OUT/s22a.tmp.tar.xz"
cat $R/rcs.txt $R/ceilings.json; grep -E "^\[  (FAILED|PASSED)|rel err|graph vs" $R/mla_tests.log | tail -12
grep -E "^\[  (FAILED|PASSED)|tests ran|FAILED" $R/gpu_tests.log | tail -20; grep -c "^\[       OK" $R/gpu_tests.log
grep "^|" $R/mla_forms.md | head -24; grep "^|" $R/mla.md | head -20
for f in $R/fixed_*.log; do echo "$f"; grep -h "throughput\|decode-only" $f; done
