#!/usr/bin/env bash
# The GPU AutoQuant benchmark on a random-weight Qwen3-VL-4B (exact shapes): writes the
# checkpoint with benchmarks/modelopt/make_random_qwen3_vl.py (seed 0, drawn on the GPU, as the
# ModelOpt reference run), runs aq-autoquant --device cuda LM-only on the medium captions
# (128 x 512, batch 8, fp8_e4m3,int8_w8a8, 8 bits, gradient), and compares with ModelOpt's result.
# usage: run_4b_autoquant.sh AQ_AUTOQUANT OUT_DIR [WORK_DIR [extra aq-autoquant flags...]]
# (AQ_AUTOQUANT: aq-autoquant of a CUDA build, or its aq-autoquant-cuda link)
set -euo pipefail
exe=$1
out=$2
work=${3:-/tmp/aq-4b}
shift $(( $# < 3 ? $# : 3 ))
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out" "$work"
if [ ! -f "$work/4b/config.json" ]; then
  start=$(date +%s%N)
  python3 "$root/benchmarks/modelopt/make_random_qwen3_vl.py" --preset 4b --device cuda \
    --tokenizer "$root/data/qwen3-tokenizer" --out "$work/4b" --seed 0
  echo "checkpoint written in $(( ($(date +%s%N) - start) / 1000000 )) ms"
fi
start=$(date +%s%N)
"$exe" --device cuda --model "$work/4b" --calib "$root/data/captions/coco2017_captions_medium.txt" \
  --formats fp8_e4m3,int8_w8a8 --effective-bits 8 --seq-len 512 --batch-size 8 --num-samples 128 \
  --output-dir "$out/aq_4b" --result-json "$out/aq_4b_fp8_int8_b8.json" "$@"
echo "aq-autoquant --device cuda wall time (process): $(( ($(date +%s%N) - start) / 1000000 )) ms"
python3 "$root/benchmarks/modelopt/compare.py" "$root/benchmarks/modelopt/results/4b_fp8_int8_b8.json" \
  "$out/aq_4b_fp8_int8_b8.json"
