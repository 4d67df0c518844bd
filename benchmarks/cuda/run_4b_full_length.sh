#!/usr/bin/env bash
# aq against ModelOpt 0.39 on texts that fill their sequence (nothing to trim or pack), on the
# random-weight Qwen3-VL-4B of the reference runs, LM-only, fp8_e4m3 + int8_w8a8 at 8 bits:
#   s512:  128 texts x 512 tokens, batch 8 (16 calibration / 16 score steps)
#   s2048:  32 texts x 2,048 tokens, batch 2 (16 / 16: the same 4,096 tokens a batch)
#   s8192:  16 texts x 8,192 tokens, batch 1 (16 / 16; not in the default CASES)
# The texts come from benchmarks/data/make_long_texts.py (bundled COCO captions, seeded); aq
# tokenizes them and dumps its batches, ModelOpt runs on those very batches. Each case runs aq
# with its fastest memory plan (--memory-budget-gib max), ModelOpt, then aq under half of ModelOpt's
# measured peak_allocated, and prints compare.py's table for each aq run.
#
#   run_4b_full_length.sh AQ_AUTOQUANT OUT_DIR [WORK_DIR]
#   WHEELS (default .whl): nvidia-modelopt 0.39 and the packages benchmarks/modelopt/README.md lists
#   CASES (default "s512 s2048"); PROFILE=1 adds a --profile-kernels run of each case;
#   CODES=1 a --recipe-gemm codes run (recipe products on fp8/int8 codes)
set -uo pipefail
exe=$1
out=$2
work=${3:-/tmp/aq-4b}
root=$(cd "$(dirname "$0")/../.." && pwd)
wheels=${WHEELS:-$root/.whl}
mkdir -p "$out" "$work"
# shellcheck source=modelopt_4b_setup.sh
source "$root/benchmarks/cuda/modelopt_4b_setup.sh"

run_aq() {  # label case-args...
  local label=$1
  shift
  "$exe" --device cuda --model "$work/4b" --formats fp8_e4m3,int8_w8a8 --effective-bits 8 \
    --output-dir "$work/$label" --result-json "$out/$label.json" "$@" > "$out/$label.log" 2>&1
  echo "$label: exit $?"
  grep -E "^stage wall time|^GEMM work|^device memory|^attention:|^tokens run" "$out/$label.log"
}

for case in ${CASES:-s512 s2048}; do
  case $case in
    s512) texts=128 tokens=512 batch=8 ;;
    s2048) texts=32 tokens=2048 batch=2 ;;
    s8192) texts=16 tokens=8192 batch=1 ;;
    *) echo "unknown case $case"; exit 1 ;;
  esac
  python3 "$root/benchmarks/data/make_long_texts.py" --texts $texts --tokens $tokens --out "$work/texts_$case.txt"
  args=(--calib "$work/texts_$case.txt" --num-samples $texts --seq-len $tokens --batch-size $batch)
  run_aq "aq_4b_full_$case" "${args[@]}" --memory-budget-gib max --dump-batches "$out/batches_full_$case.safetensors"
  python3 - "$out/batches_full_$case.safetensors" <<'PY' || exit 1
import sys
from safetensors.numpy import load_file
mask = load_file(sys.argv[1])["attention_mask"]
assert mask.all(), f"{sys.argv[1]}: {int((mask == 0).sum())} padding positions"
print(f"batches {mask.shape[0]} x {mask.shape[1]}, no padding")
PY
  timeout 240 python3 "$root/benchmarks/modelopt/run_modelopt_autoquant.py" --label "4b_full_$case" \
    --model "$work/4b" --batches "$out/batches_full_$case.safetensors" --batch-size $batch \
    --formats fp8_e4m3,int8_w8a8 --effective-bits 8 --out "$out/4b_full_$case.json" > "$out/modelopt_$case.log" 2>&1
  echo "ModelOpt $case: exit $?"
  half=$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['memory_bytes']['peak_allocated'] / 2**31, 2))" \
    "$out/4b_full_$case.json") || continue
  run_aq "aq_4b_full_${case}_budget$half" "${args[@]}" --memory-budget-gib "$half"
  for label in "aq_4b_full_$case" "aq_4b_full_${case}_budget$half"; do
    python3 "$root/benchmarks/modelopt/compare.py" "$out/4b_full_$case.json" "$out/$label.json"
  done
  # CODES=1: the default run again with the recipe products on fp8/int8 codes (the A/B of
  # --recipe-gemm).
  if [ -n "${CODES:-}" ]; then
    run_aq "aq_4b_full_${case}_codes" "${args[@]}" --recipe-gemm codes
    python3 "$root/benchmarks/modelopt/compare.py" "$out/4b_full_$case.json" "$out/aq_4b_full_${case}_codes.json"
  fi
  # PROFILE=1: the default run again with per-kernel-class GPU times (events around each launch
  # group; slower, so not the timed run).
  if [ -n "${PROFILE:-}" ]; then
    run_aq "aq_4b_full_${case}_profile" "${args[@]}" --profile-kernels
    sed -n '/GPU time per kernel class/,/^score-stage GEMMs/p' "$out/aq_4b_full_${case}_profile.log"
  fi
done
