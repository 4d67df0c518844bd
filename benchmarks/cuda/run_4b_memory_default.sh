#!/usr/bin/env bash
# aq's default memory plan (half of ModelOpt's estimated peak) against the fastest plan
# (--memory-budget-gib max) on the 4B cases whose ModelOpt 0.39 runs are committed
# (benchmarks/modelopt/results): captions (128 x 512, left-padded), texts that fill 512, 2,048 and
# 8,192 tokens, and the 10 photo-caption pairs with --scope all. The two plans alternate on one
# machine; compare.py prints each run's time and peak against ModelOpt's committed result.
#
#   run_4b_memory_default.sh AQ_AUTOQUANT OUT_DIR [WORK_DIR]
#   CASES (default "captions s512 s2048 s8192 images"); DEFAULT_ONLY=1 skips the max runs
set -uo pipefail
exe=$1
out=$2
work=${3:-/tmp/aq-4b}
root=$(cd "$(dirname "$0")/../.." && pwd)
results=$root/benchmarks/modelopt/results
mkdir -p "$out" "$work"
if [ ! -f "$work/4b/config.json" ]; then
  python3 "$root/benchmarks/modelopt/make_random_qwen3_vl.py" --preset 4b --device cuda \
    --tokenizer "$root/data/qwen3-tokenizer" --out "$work/4b" --seed 0 > "$work/make_4b.log" 2>&1 ||
    { tail -n 3 "$work/make_4b.log"; exit 1; }
fi

run_aq() {  # label reference args...
  local label=$1 reference=$2
  shift 2
  "$exe" --device cuda --model "$work/4b" --formats fp8_e4m3,int8_w8a8 --effective-bits 8 \
    --output-dir "$work/$label" --result-json "$out/$label.json" "$@" > "$out/$label.log" 2>&1
  echo "$label: exit $?"
  grep -E "^stage wall time|^device memory|^memory budget|^attention:" "$out/$label.log"
  python3 "$root/benchmarks/modelopt/compare.py" "$results/$reference.json" "$out/$label.json" |
    grep -E "time auto_quantize|peak_allocated|Spearman"
}

for case in ${CASES:-captions s512 s2048 s8192 images}; do
  case $case in
    captions)
      reference=4b_fp8_int8_b8
      args=(--calib "$root/data/captions/coco2017_captions_medium.txt" --seq-len 512 --batch-size 8 --num-samples 128) ;;
    s512 | s2048 | s8192)
      case $case in
        s512) texts=128 tokens=512 batch=8 ;;
        s2048) texts=32 tokens=2048 batch=2 ;;
        s8192) texts=16 tokens=8192 batch=1 ;;
      esac
      reference=4b_full_$case
      python3 "$root/benchmarks/data/make_long_texts.py" --texts $texts --tokens $tokens --out "$work/texts_$case.txt"
      args=(--calib "$work/texts_$case.txt" --num-samples $texts --seq-len $tokens --batch-size $batch) ;;
    images)
      reference=4b_images
      pairs=$root/data/images/captions.jsonl
      args=(--calib "$pairs" --num-samples "$(grep -c . "$pairs")" --scope all) ;;
    *) echo "unknown case $case"; exit 1 ;;
  esac
  run_aq "aq_4b_${case}_default" "$reference" "${args[@]}"
  [ -n "${DEFAULT_ONLY:-}" ] || run_aq "aq_4b_${case}_max" "$reference" "${args[@]}" --memory-budget-gib max
done
