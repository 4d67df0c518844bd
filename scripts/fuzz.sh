#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, Clang with ASan+UBSan) in build-fuzz/ and runs each one
# from its seed corpus fuzz/corpus/<name>/ for a bounded time, two at a time. Any finding (crash,
# sanitizer report, leak, timeout, out-of-memory) fails the script; its input and log are kept in
# build-fuzz/fuzz-runs/<name>/.
#
#   bash scripts/fuzz.sh                  # every target, 60 s each
#   AQ_FUZZ_SECONDS=600 bash scripts/fuzz.sh image tokenizer
#   build-fuzz/fuzz/fuzz_image build-fuzz/fuzz-runs/image/crash-...   # replay one input
#
# New inputs go to build-fuzz/fuzz-runs/<name>/new/, never into the committed seed corpus.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${AQ_FUZZ_SECONDS:-60}
jobs=${AQ_FUZZ_JOBS:-2}
build="build-fuzz"

bash scripts/install-deps.sh --fuzz
cmake -S . -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DAQ_WITH_CUDA=OFF -DAQ_BUILD_TESTS=OFF -DAQ_BUILD_EXAMPLES=OFF -DAQ_BUILD_BENCHMARKS=OFF -DAQ_INSTALL=OFF \
  -DAQ_BUILD_FUZZERS=ON >/dev/null
cmake --build "$build" -j "$(nproc)" --target aq_fuzzers

if (($# > 0)); then
  names=("$@")
else
  names=()
  for source in fuzz/fuzz_*.cpp; do
    name=$(basename "$source" .cpp)
    names+=("${name#fuzz_}")
  done
fi

runs="$build/fuzz-runs"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

fuzz_one() {
  local name=$1 dir="$runs/$1"
  rm -rf "$dir"
  mkdir -p "$dir/new"
  local args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
              -artifact_prefix="$dir/")
  if [[ -f fuzz/dict/$name.dict ]]; then args+=(-dict="fuzz/dict/$name.dict"); fi
  if "$build/fuzz/fuzz_$name" "${args[@]}" "$dir/new" "fuzz/corpus/$name" >"$dir/log" 2>&1; then
    echo "fuzz $name: ok ($(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$dir/log" | grep -o '[0-9]*$') runs in ${seconds} s)"
  else
    echo "fuzz $name: FINDING (log and input in $dir/)"
    touch "$dir/failed"
  fi
}

for name in "${names[@]}"; do
  [[ -x $build/fuzz/fuzz_$name ]] || { echo "no fuzz target fuzz_$name" >&2; exit 2; }
done
for name in "${names[@]}"; do
  while (($(jobs -rp | wc -l) >= jobs)); do wait -n || true; done
  fuzz_one "$name" &
done
wait

failed=0
shopt -s nullglob
for name in "${names[@]}"; do
  if [[ -e $runs/$name/failed ]]; then
    failed=1
    echo "---- fuzz_$name:" "$runs/$name"/{crash,leak,timeout,oom}-*
    grep -E 'ERROR|SUMMARY|runtime error|#[0-9]+ .* in aq::' "$runs/$name/log" | head -20 || true
  fi
done
exit "$failed"
