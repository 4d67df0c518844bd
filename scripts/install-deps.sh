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

# cuDNN's frontend (MIT, header-only C++ over the cuDNN library the CUDA toolkit ships): the fused
# attention of aq's CUDA backend where cuDNN is present (README, "Dependencies"). Taken from its
# pinned PyPI wheel, checked by hash, into .deps/ beside the sources; skipped without nvcc or pip,
# or when it cannot be fetched (the build then runs aq's own attention kernels).
fetch_cudnn_frontend() {
  local version=1.32.0
  local wheel=nvidia_cudnn_frontend-$version-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl
  local sha=c6006556017a4d1c914c52a556c71b1267f2d6a0500f742e7b4edef539878df0
  local dest=.deps/cudnn-frontend-$version
  [[ -f $dest/include/cudnn_frontend.h ]] && return 0
  command -v nvcc >/dev/null || [[ -x /usr/local/cuda/bin/nvcc ]] || return 0
  local tmp
  tmp=$(mktemp -d)
  if python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
      --platform manylinux_2_28_x86_64 -d "$tmp" "nvidia-cudnn-frontend==$version" >/dev/null 2>&1 &&
    echo "$sha  $tmp/$wheel" | sha256sum -c --quiet - 2>/dev/null; then
    mkdir -p "$tmp/x" && python3 -m zipfile -e "$tmp/$wheel" "$tmp/x" &&
      mkdir -p .deps && rm -rf "$dest" && mkdir -p "$dest" && mv "$tmp/x/include" "$dest/include"
  else
    echo "install-deps.sh: cuDNN frontend $version not fetched; CUDA attention runs aq's own kernels" >&2
  fi
  rm -rf "$tmp"
}
(cd "$(dirname "$0")/.." && fetch_cudnn_frontend)

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
