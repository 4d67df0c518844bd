#!/usr/bin/env bash
# The run command: builds aq-autoquant and runs it on the built-in default (a small Qwen3-VL
# generated in code and the bundled captions), then measures the chosen mix, the uniform recipes and
# the Pareto front on held-out captions (--evaluate: out/default/report.html). Extra arguments go
# to aq-autoquant.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/configure.sh
cmake --build build -j "$(nproc)" --target aq-autoquant
exec build/examples/aq-autoquant --output-dir out/default --evaluate "$@"
