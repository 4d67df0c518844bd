#!/usr/bin/env bash
# Installs aq's build and test dependencies from Debian packages. Idempotent: packages already
# present are left alone and apt-get runs only when something is missing.
# chromium-headless-shell renders report.html for the report_screenshot test and
# scripts/screenshot-report.sh; fonts-dejavu-core gives it the font the plots name (recommended
# fonts are not installed with --no-install-recommends).
#   --fuzz        also Clang with libFuzzer and the sanitizer runtimes, and llvm-symbolizer for
#                 readable stacks (scripts/fuzz.sh); GCC's ASan/UBSan runtimes come with g++.
set -euo pipefail

packages=(cmake ninja-build g++ python3 libeigen3-dev doctest-dev libsimdjson-dev libstb-dev libjpeg-dev
  chromium-headless-shell fonts-dejavu-core)
for arg in "$@"; do
  case $arg in
    --fuzz) packages+=(clang libclang-rt-dev llvm) ;;
    *) echo "install-deps.sh: unknown option $arg (--fuzz)" >&2; exit 2 ;;
  esac
done

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  sudo_cmd=(sudo)
fi
echo "installing: ${missing[*]}"
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
