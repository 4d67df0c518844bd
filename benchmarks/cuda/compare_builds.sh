#!/usr/bin/env bash
# Byte-compares the outputs of two aq-autoquant builds on the GPU over a matrix of flags on the
# built-in model (text, images, memory plans, attention modes), so a refactoring can show that it
# changed no result. The logs are compared without their timing lines.
# usage: compare_builds.sh "OLD_COMMAND" "NEW_COMMAND" OUT_DIR
#   e.g. compare_builds.sh "old/examples/aq-autoquant-cuda" "build/examples/aq-autoquant --device cuda" /tmp/cmp
set -uo pipefail
old=$1
new=$2
out=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
images="--calib $root/data/images/captions.jsonl --num-samples 3 --seq-len 256 --scope all"
declare -A cases=(
  [default]=""
  [micro_batch_keep_padding]="--micro-batch 1 --keep-padding"
  [memory_budget_recompute]="--memory-budget-gib 6 --activations recompute"
  [fp32_attention_profile]="--gpu-attention fp32 --profile-kernels"
  [images_scope_all]="$images"
  [eager_attention]="--attention eager"
  [four_formats]="--formats fp8_e4m3,int8_w8a8,w4a8,w8a4 --effective-bits 6"
)
mkdir -p "$out/old" "$out/new"
status=0
for name in $(printf '%s\n' "${!cases[@]}" | sort); do
  for side in old new; do
    command=${!side}
    # shellcheck disable=SC2086
    $command ${cases[$name]} --output-dir "$out/$side/$name" > "$out/$side/$name.stdout" 2>&1
    echo "$?" > "$out/$side/$name.rc"
  done
  verdict=same
  [[ $(cat "$out/old/$name.rc") == 0 && $(cat "$out/new/$name.rc") == 0 ]] || verdict="FAILED (rc old $(cat "$out/old/$name.rc"), new $(cat "$out/new/$name.rc"))"
  if [[ $verdict == same ]]; then
    for file in "$out/old/$name"/*; do
      base=$(basename "$file")
      if [[ $base == *.log ]]; then
        diff -q <(grep -v -i 'timing\|seconds\| s$' "$file") <(grep -v -i 'timing\|seconds\| s$' "$out/new/$name/$base") >/dev/null || verdict="DIFF $base"
      else
        cmp -s "$file" "$out/new/$name/$base" || verdict="DIFF $base"
      fi
    done
  fi
  [[ $verdict == same ]] || status=1
  printf '%-28s %s (%s files)\n' "$name" "$verdict" "$(ls "$out/old/$name" 2>/dev/null | wc -l)"
done
exit $status
