#!/usr/bin/env bash
# The training path on a GPU host without Node: each new CUDA kernel checked against the CPU
# backend in its own process (a crash takes nothing else down), the ones that fail turned off
# (SQLORA_CUDA_OFF), the whole cuda-check, HF + PEFT's LoRA steps at 16x512 and 8x128
# (tools/reference/bench_hf.py), then tools/gpu-check/train-profile.ts. Writes to $OUT.
#
# Build on a machine with Node (the bundle carries Node, the esbuilt scripts sit in its app/):
#   npm run bundle -- --out .gpu/bundle-train --compress
#   for s in cuda-check train-profile; do npx esbuild tools/gpu-check/$s.ts --bundle --platform=node \
#     --format=esm --target=node20 --external:koffi --outfile=.gpu/bundle-train/app/gpu/$s.mjs; done
# and run from the repository root: OUT=out bash tools/gpu-check/train-check.sh [.gpu/bundle-train]
set -u
B=${1:-.gpu/bundle-train}
OUT=${OUT:-train-check-out}
mkdir -p "$OUT"
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/run.txt"; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee -a "$OUT/run.txt"
mkdir -p "$B/app/fixtures" && cp -r test/fixtures/tiny "$B/app/fixtures/"
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-/tmp/xdg}
off=""
for k in "lora-down:loraDown (" "lora-grads:loraDownGrads" "flash:attention"; do
  name="${k%%:*}"; filter="${k#*:}"
  timeout 60 "$B/node" "$B/app/gpu/cuda-check.mjs" "/tmp/c-$name" --only="$filter" > "/tmp/c-$name.txt" 2>&1
  rc=$?
  { echo "== $name (rc $rc)"; grep -E "ok|FAIL|PASSED|FAILURES" "/tmp/c-$name.txt" | grep -v "^  ok   f32" | cut -c1-220; } >> "$OUT/checks.txt"
  if [ $rc -ne 0 ]; then off="$off,$name"; fi
done
export SQLORA_CUDA_OFF="${off#,}"
log "kernels off: '${SQLORA_CUDA_OFF}'"
log "cuda-check"
timeout 120 "$B/node" "$B/app/gpu/cuda-check.mjs" /tmp/check --no-timing > /tmp/check.txt 2>&1; echo "rc $?" >> /tmp/check.txt
cp /tmp/check/cuda-check.log "$OUT/check.log" 2>/dev/null || cp /tmp/check.txt "$OUT/check.log"
grep -E "FAIL|PASSED|FAILURES" /tmp/check.txt | head -20 | tee -a "$OUT/run.txt"
for c in "16 512" "8 128"; do
  set -- $c
  log "HF train $1x$2"
  timeout 90 python3 tools/reference/bench_hf.py --shape 1.8b --mode train --batch "$1" --seq "$2" --steps 10 --warmup 2 --out "$OUT/hf-$1x$2.json" >> "$OUT/run.txt" 2>&1
done
log "sqlora profile"
timeout 200 "$B/node" "$B/app/gpu/train-profile.mjs" /tmp/profile > /tmp/profile.txt 2>&1; echo "rc $?" >> /tmp/profile.txt
cp /tmp/profile/train-profile.json "$OUT/profile.json" 2>/dev/null
cp /tmp/profile.txt "$OUT/profile.log"
log "done"
