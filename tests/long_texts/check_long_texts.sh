#!/usr/bin/env sh
# benchmarks/data/make_long_texts.py: the same arguments give the same bytes, and every line the
# Qwen3 tokenizer (aq-tokenize) turns into at least --tokens tokens, so no calibration row of the
# full-length benchmarks holds padding.
#   check_long_texts.sh PYTHON MAKE_LONG_TEXTS AQ_TOKENIZE TOKENIZER_DIR WORK_DIR
set -eu
python=$1 make=$2 tokenize=$3 tokenizer=$4 work=$5
mkdir -p "$work"
for tokens in 512 2048; do
  "$python" "$make" --texts 6 --tokens $tokens --out "$work/a.txt"
  "$python" "$make" --texts 6 --tokens $tokens --out "$work/b.txt"
  cmp "$work/a.txt" "$work/b.txt"
  test "$(wc -l < "$work/a.txt")" -eq 6
  while IFS= read -r line; do
    n=$(printf '%s' "$line" | "$tokenize" --tokenizer "$tokenizer" | wc -w)
    if [ "$n" -lt $tokens ]; then echo "a line of $n tokens, fewer than $tokens"; exit 1; fi
  done < "$work/a.txt"
done
"$python" "$make" --texts 2 --tokens 512 --seed 1 --out "$work/c.txt"
if cmp -s "$work/a.txt" "$work/c.txt"; then echo "--seed changes nothing"; exit 1; fi
echo ok
