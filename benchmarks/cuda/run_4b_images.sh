#!/usr/bin/env bash
# aq against ModelOpt 0.39 on the bundled image-caption pairs (data/images/captions.jsonl, 10
# photos), the random-weight Qwen3-VL-4B of the reference runs with its vision tower quantized too
# (--scope all: every Linear of the tower, the merger and the decoder, lm_head), fp8_e4m3 +
# int8_w8a8 at 8 bits, one pair per batch, every batch calibrated and scored. aq preprocesses the
# images and dumps its batches (tokens, pixel_values, image_grid_thw); ModelOpt runs on those very
# batches. Then aq again under half of ModelOpt's peak_allocated, and compare.py's tables.
#
#   run_4b_images.sh AQ_AUTOQUANT OUT_DIR [WORK_DIR]
#   WHEELS (default .whl): nvidia-modelopt 0.39 and the packages benchmarks/modelopt/README.md lists
#   PROFILE=1 adds a --profile-kernels run
set -uo pipefail
exe=$1
out=$2
work=${3:-/tmp/aq-4b}
root=$(cd "$(dirname "$0")/../.." && pwd)
wheels=${WHEELS:-$root/.whl}
mkdir -p "$out" "$work"
# shellcheck source=modelopt_4b_setup.sh
source "$root/benchmarks/cuda/modelopt_4b_setup.sh"

pairs=$root/data/images/captions.jsonl
n=$(grep -c . "$pairs")
run_aq() {  # label args...
  local label=$1
  shift
  "$exe" --device cuda --model "$work/4b" --calib "$pairs" --num-samples "$n" --scope all \
    --formats fp8_e4m3,int8_w8a8 --effective-bits 8 --output-dir "$work/$label" \
    --result-json "$out/$label.json" "$@" > "$out/$label.log" 2>&1
  echo "$label: exit $?"
  grep -E "^stage wall time|^GEMM work|^device memory|^attention:|^tokens run|^steps" "$out/$label.log"
}

run_aq aq_4b_images --dump-batches "$out/batches_images.safetensors"
timeout 300 python3 "$root/benchmarks/modelopt/run_modelopt_autoquant.py" --label 4b_images --model "$work/4b" \
  --image-batches "$out/batches_images.safetensors" --disabled-layers "" --num-calib-steps "$n" \
  --num-score-steps "$n" --formats fp8_e4m3,int8_w8a8 --effective-bits 8 --out "$out/4b_images.json" \
  > "$out/modelopt_images.log" 2>&1
echo "ModelOpt images: exit $?"
half=$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['memory_bytes']['peak_allocated'] / 2**31, 2))" \
  "$out/4b_images.json") || exit 1
run_aq "aq_4b_images_budget$half" --memory-budget-gib "$half"
for label in aq_4b_images "aq_4b_images_budget$half"; do  # a refused budget writes no JSON
  [ -f "$out/$label.json" ] && python3 "$root/benchmarks/modelopt/compare.py" "$out/4b_images.json" "$out/$label.json"
done
if [ -n "${PROFILE:-}" ]; then
  run_aq aq_4b_images_profile --profile-kernels
  sed -n '/GPU time per kernel class/,/^score-stage GEMMs/p' "$out/aq_4b_images_profile.log"
fi
