#!/usr/bin/env bash
# Correctness at Qwen1.5-1.8B's shape against HF transformers + PEFT on a GPU host without Node
# (see tools/gpu-check/parity-1p8b.ts): a random bf16 checkpoint from bench_hf.py, the parity
# input (probe sequence, 50 training steps, initial adapter), HF's side, then sqlora's
# comparison. Writes hf.log, hf-expected.json, parity.txt and parity.json to $OUT.
#
# Build where Node is (the bundle carries Node; the esbuilt script sits in its app/gpu/):
#   npm run bundle -- --out .gpu/bundle --compress
#   npx esbuild tools/gpu-check/parity-1p8b.ts --bundle --platform=node --format=esm --target=node20 \
#     --external:koffi --outfile=.gpu/bundle/app/gpu/parity-1p8b.mjs
# and run from the repository root: OUT=out bash tools/gpu-check/parity-1p8b.sh [.gpu/bundle]
set -u -o pipefail
B=${1:-.gpu/bundle}
OUT=${OUT:-parity-out}
W=${WORK:-/tmp/sqlora-parity}
mkdir -p "$OUT" "$W"
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-/tmp/xdg} PYTHONUNBUFFERED=1
[ -f "$W/model/config.json" ] || python3 tools/reference/bench_hf.py --shape 1.8b --save-model "$W/model" || exit 1
"$B/node" "$B/app/gpu/parity-1p8b.mjs" prepare "$W/model" "$W/input" || exit 1
python3 tools/reference/train_reference.py "$W/input/parity-input.json" "$W/hf" --device cuda --dtype bfloat16 --attn sdpa > "$OUT/hf.log" 2>&1 \
  || { tail -20 "$OUT/hf.log"; exit 1; }
cp "$W/hf/expected.json" "$OUT/hf-expected.json"
"$B/node" "$B/app/gpu/parity-1p8b.mjs" compare "$W/input/parity-input.json" "$W/hf" --device cuda --report "$OUT/parity.json" | tee "$OUT/parity.txt"
