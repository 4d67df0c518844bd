#!/usr/bin/env bash
# Checks a compressed-tensors export end to end on a random Qwen3-VL checkpoint: an aq-autoquant
# run chooses a mix (fp8_e4m3, int8_w8a8, w4a16, none), aq-export writes it, transformers (with
# the compressed-tensors package) loads it, and its logits on held-out captions are compared with
# `aq-logits --recipes` of the same mix, in fp32 and bf16, next to the unquantized model's own
# transformers-vs-aq gap (the floor of each precision).
#
#   verify_compressed_tensors.sh BIN_DIR WORK_DIR [tiny|4b] [cpu|cuda]
#
# BIN_DIR holds aq-autoquant, aq-export and aq-logits; python3 must import torch, transformers
# and compressed_tensors. CAPTIONS (default 8) held-out captions are compared; AUTOQUANT_FLAGS are
# added to the aq-autoquant run. Prints one line per
# comparison; the JSON reports (per caption: error, argmax agreement, diverged positions) land in
# WORK_DIR.
set -euo pipefail
bin=$1
work=$2
preset=${3:-tiny}
device=${4:-cpu}
repo=$(cd "$(dirname "$0")/../.." && pwd)
export AQ_DATA_DIR=$repo/data
model=$work/model_$preset
run=$work/run_$preset
mkdir -p "$work"

if [[ ! -f $model/config.json ]]; then
  python3 "$repo/benchmarks/modelopt/make_random_qwen3_vl.py" --preset "$preset" --device "$device" \
    --tokenizer "$repo/data/qwen3-tokenizer" --out "$model" --seed 0 > "$work/make_$preset.log" 2>&1
fi
"$bin/aq-autoquant" --device "$device" --model "$model" --calib "$repo/data/captions/coco2017_captions_small.txt" \
  --num-samples 16 --seq-len 64 --batch-size 8 --formats fp8_e4m3,int8_w8a8,w4a16 --effective-bits 7 \
  --disable '*lm_head*' --output-dir "$run" ${AUTOQUANT_FLAGS:-} > "$work/autoquant_$preset.log" 2>&1
manifest=$run/autoquant_lm_quant_manifest.json
state=$run/autoquant_lm_autoquant_state.safetensors
rm -rf "$work/ct_$preset"
"$bin/aq-export" --model "$model" --recipes "$manifest" --state "$state" --format compressed-tensors \
  --output-dir "$work/ct_$preset" > "$work/export_$preset.log" 2>&1

# Held-out captions: the last lines of the bundled file, far from the 16 calibration samples.
captions=${CAPTIONS:-8}
quantized=()
unquantized=()
i=0
while IFS= read -r caption; do
  "$bin/aq-logits" --model "$model" --text "$caption" --recipes "$manifest" --state "$state" \
    --out "$work/mix_${preset}_$i.safetensors" > /dev/null
  "$bin/aq-logits" --model "$model" --text "$caption" --out "$work/none_${preset}_$i.safetensors" > /dev/null
  quantized+=("$work/mix_${preset}_$i.safetensors")
  unquantized+=("$work/none_${preset}_$i.safetensors")
  i=$((i + 1))
done < <(tail -n "$captions" "$repo/data/captions/coco2017_captions.txt")

check="$repo/benchmarks/modelopt/check_compressed_tensors.py"
for dtype in float32 bfloat16; do
  mix=$(python3 "$check" --model "$work/ct_$preset" --dtype "$dtype" --json "$work/ct_${preset}_$dtype.json" \
    --state "$state" "${quantized[@]}" 2> "$work/check_$dtype.log" | tail -n 2 | tr '\n' ' ')
  floor=$(python3 "$check" --model "$model" --dtype "$dtype" --json "$work/none_${preset}_$dtype.json" \
    "${unquantized[@]}" 2>> "$work/check_$dtype.log" | tail -n 1)
  echo "$preset $dtype: exported mix vs aq-logits --recipes: $mix; unquantized vs aq-logits: $floor"
done
