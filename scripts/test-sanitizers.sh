#!/usr/bin/env bash
# Builds the whole test suite (tests and the example drivers they run) with AddressSanitizer and
# UndefinedBehaviorSanitizer in build-asan/ (GCC, -O1, CUDA off) and runs it with CTest. A
# sanitizer report (out-of-bounds access, use after free, leak, undefined behaviour) aborts the
# test that triggered it, so it fails like an assertion. Extra arguments go to CTest:
#
#   bash scripts/test-sanitizers.sh
#   bash scripts/test-sanitizers.sh -R test_safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

sanitize="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# GCC's -Wmaybe-uninitialized misfires on instrumented code (std::regex, std::function): off here,
# the release build keeps it.
warnings="-Wno-maybe-uninitialized"
# -O1 keeps the model tests fast enough; -g1 gives line numbers in sanitizer stacks.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
  -DCMAKE_CXX_FLAGS="$sanitize $warnings" -DCMAKE_EXE_LINKER_FLAGS="$sanitize" \
  -DAQ_WITH_CUDA=OFF -DAQ_BUILD_TESTS=ON -DAQ_BUILD_EXAMPLES=ON -DAQ_BUILD_BENCHMARKS=OFF >/dev/null
# Only the test programs (and the drivers they run) are built: the compile-only checks (every
# header alone, the single header) and the packaging tests gain nothing from sanitizers and already
# run in scripts/test.sh.
skip='^(single_header_alone|single_header_current|consumer_projects)$'
# The unit tests' program (aq_test_programs), and the targets named after the other tests. Tests
# that have no target of their own (the install and run-from-elsewhere checks run the drivers,
# which the driver test builds) need nothing more.
mapfile -t tests < <(ctest --test-dir build-asan -N -E "$skip" | sed -n 's/^ *Test *#[0-9]*: *//p')
mapfile -t targets < <(printf '%s\n' "${tests[@]}" | grep -Fxf <(ninja -C build-asan -t targets all | sed 's/:.*//'))
cmake --build build-asan -j "$(nproc)" --target aq_test_programs "${targets[@]}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir build-asan --output-on-failure -j "$(nproc)" -E "$skip" "$@"
