#!/usr/bin/env bash
# The test command: installs dependencies, checks the single header is current, builds
# everything (CUDA translation units too when nvcc is present) and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
python3 scripts/amalgamate.py --check
bash scripts/configure.sh
cmake --build build -j "$(nproc)"
ctest --test-dir build --output-on-failure -j "$(nproc)"
