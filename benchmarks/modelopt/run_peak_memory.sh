#!/usr/bin/env bash
# ModelOpt 0.39's peak device memory in auto_quantize (LM-only, fp8_e4m3 + int8_w8a8, 8 bits) on
# random-weight Qwen3-VL checkpoints of several sizes and batch shapes: the data behind aq's
# default memory plan (half of this peak; examples/cli/reference_peak.hpp's estimate is checked
# against these results). Peak memory depends on shapes, not on the values or the number of
# steps, so each run takes 2 calibration and 2 score steps of the committed 128 x 512 batches.
#
#   run_peak_memory.sh OUT_DIR [WORK_DIR]
#   WHEELS (default .whl): nvidia-modelopt 0.39 and the packages benchmarks/modelopt/README.md lists
#   PRESETS (default "4b 2b 8b"), BATCHES (default "2 8 16": 1,024, 4,096 and 8,192 tokens a batch)
set -uo pipefail
out=${1:?usage: run_peak_memory.sh OUT_DIR [WORK_DIR]}
work=${2:-/tmp/aq-peak}
root=$(cd "$(dirname "$0")/../.." && pwd)
wheels=${WHEELS:-$root/.whl}
mkdir -p "$out" "$work"
# shellcheck source=../cuda/modelopt_4b_setup.sh
source "$root/benchmarks/cuda/modelopt_4b_setup.sh"  # ModelOpt installed, its extensions built, $work/4b
batches=$root/benchmarks/modelopt/results/batches_medium_s512.safetensors
for preset in ${PRESETS:-4b 2b 8b}; do
  ckpt=$work/$preset
  [ -f "$ckpt/config.json" ] || python3 "$root/benchmarks/modelopt/make_random_qwen3_vl.py" --preset "$preset" \
    --device cuda --tokenizer "$root/data/qwen3-tokenizer" --out "$ckpt" --seed 0 > "$work/make_$preset.log" 2>&1 ||
    { tail -n 3 "$work/make_$preset.log"; continue; }
  for bs in ${BATCHES:-2 8 16}; do
    label=peak_${preset}_b$bs
    timeout 300 python3 "$root/benchmarks/modelopt/run_modelopt_autoquant.py" --label "$label" --model "$ckpt" \
      --batches "$batches" --batch-size "$bs" --num-calib-steps 2 --num-score-steps 2 \
      --formats fp8_e4m3,int8_w8a8 --effective-bits 8 --out "$out/$label.json" > "$out/$label.log" 2>&1
    echo "$label: exit $? $(python3 -c "import json,sys; m=json.load(open(sys.argv[1]))['memory_bytes']; print(m['peak_allocated'], m['peak_reserved'])" "$out/$label.json" 2>/dev/null)"
  done
  rm -rf "$ckpt"
done
