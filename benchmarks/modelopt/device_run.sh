#!/usr/bin/env bash
# Runs ModelOpt's auto_quantize on random-weight Qwen3-VL checkpoints on a GPU machine that has PyTorch and
# transformers but no ModelOpt and no network: installs the carried wheels, builds the checkpoints, runs the
# cases listed in README.md and leaves result JSONs, the calibration batches (for aq) and a log in OUT_DIR.
#
# Usage: bash benchmarks/modelopt/device_run.sh OUT_DIR [tiny|all] [SECONDS_BUDGET]
#   WHEELS (default .whl): nvidia-modelopt and the dependencies the machine lacks (README.md lists them)
#   CARRY (default .device-carry): qwen3-tokenizer/ (tokenizer.json, tokenizer_config.json) and captions/
set -u -o pipefail
OUT_DIR=${1:?usage: device_run.sh OUT_DIR [tiny|all] [SECONDS_BUDGET]}
WHAT=${2:-all}
BUDGET=${3:-540}
HERE=$(cd "$(dirname "$0")" && pwd)
WHEELS=${WHEELS:-.whl}
CARRY=${CARRY:-.device-carry}
WORK=${WORK:-/tmp/aq-modelopt}
TOK=$CARRY/qwen3-tokenizer
CAP=$CARRY/captions
mkdir -p "$OUT_DIR" "$WORK"

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
  "$WHEELS"/*.whl || exit 1
export PYTHONPATH=$WORK/site PYTHONUNBUFFERED=1 PYTHONHASHSEED=0 TQDM_DISABLE=1
export TORCH_EXTENSIONS_DIR=$WORK/torch_extensions
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import sys, torch, transformers; print(sys.version.split()[0], torch.__version__, transformers.__version__)"

# ModelOpt JIT-builds its CUDA fake-quant extensions on first use: build them in the background while the
# checkpoints are made, so that no timed run includes the build (the runs then load them from the cache).
T0=$SECONDS
python3 -c "from modelopt.torch.quantization import extensions as e; print(e.get_cuda_ext()); print(e.get_cuda_ext_fp8())" \
  > "$WORK/ext_build.log" 2>&1 &
EXT=$!

python3 "$HERE/make_random_qwen3_vl.py" --preset tiny --tokenizer "$TOK" --out "$WORK/tiny" --seed 0 2>&1 | tail -n 1
if [ "$WHAT" = all ]; then
  python3 "$HERE/make_random_qwen3_vl.py" --preset 4b --device cuda --tokenizer "$TOK" --out "$WORK/4b" --seed 0 \
    2>&1 | tail -n 1
fi
wait $EXT
echo "extension build: $((SECONDS - T0)) s after start of build"
grep -v '^\s*$' "$WORK/ext_build.log" | tail -n 4

run() {
  local label=$1
  shift
  echo "== $label ($SECONDS s)"
  timeout 420 python3 "$HERE/run_modelopt_autoquant.py" --label "$label" --out "$OUT_DIR/$label.json" "$@" \
    > "$WORK/$label.log" 2>&1
  echo "exit $?"
  grep -v -i 'warn' "$WORK/$label.log" | tail -n 3
}

run tiny_fp8_int8_b8 --model "$WORK/tiny" --captions "$CAP/coco2017_captions_small.txt" --seq-len 128 \
  --batch-size 8 --formats fp8_e4m3,int8_w8a8 --effective-bits 8 \
  --dump-batches "$OUT_DIR/batches_small_s128.safetensors"
run tiny_all4_b6 --model "$WORK/tiny" --batches "$OUT_DIR/batches_small_s128.safetensors" --batch-size 8 \
  --formats fp8_e4m3,int8_w8a8,w4a8,w8a4 --effective-bits 6 --disabled-layers 'model.visual*,lm_head'
if [ "$WHAT" = all ]; then
  run 4b_fp8_int8_b8 --model "$WORK/4b" --captions "$CAP/coco2017_captions_medium.txt" --seq-len 512 \
    --batch-size 8 --formats fp8_e4m3,int8_w8a8 --effective-bits 8 \
    --dump-batches "$OUT_DIR/batches_medium_s512.safetensors"
  if [ $SECONDS -lt $((BUDGET * 6 / 10)) ]; then
    run 4b_all4_b6 --model "$WORK/4b" --batches "$OUT_DIR/batches_medium_s512.safetensors" --batch-size 8 \
      --formats fp8_e4m3,int8_w8a8,w4a8,w8a4 --effective-bits 6
  else
    echo "skipped 4b_all4_b6: $SECONDS s used of $BUDGET"
  fi
fi
for m in tiny 4b; do  # one JSON object a line: how each checkpoint was drawn (with its sha256)
  [ -f "$WORK/$m/random_init.json" ] && python3 -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1])), sort_keys=True))" "$WORK/$m/random_init.json"
done > "$OUT_DIR/random_init.jsonl"
tar -C "$WORK" -czf "$OUT_DIR/logs.tar.gz" $(cd "$WORK" && ls *.log)
echo "total $SECONDS s"
