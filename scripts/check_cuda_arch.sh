#!/usr/bin/env bash
# CTest cuda_architectures_honoured: the default CUDA architectures are sm_80 SASS + sm_90 SASS and
# compute_90 PTX, and a user's -DCMAKE_CUDA_ARCHITECTURES replaces them. Configures two scratch
# builds (no compilation) and reads the nvcc code-generation flags CMake wrote into build.ninja.
# Usage: scripts/check_cuda_arch.sh NVCC
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
nvcc=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

# gencode DIR [cmake options]: configures DIR and prints its sorted, distinct --generate-code flags.
gencode() {
  local dir=$1; shift
  cmake -S "$root" -B "$dir" -G Ninja -DENGINE_CUDA=REAL -DCMAKE_CUDA_COMPILER="$nvcc" -DENGINE_BUILD_TESTS=OFF \
    "$@" > "$dir.log" 2>&1 || { echo "configure failed:"; tail -20 "$dir.log"; return 1; }
  grep -o -- '--generate-code=[^ ]*' "$dir/build.ninja" | sort -u | tr '\n' ' '
}

# expect WHAT GOT WANT
expect() {
  if [ "$2" = "$3" ]; then echo "ok: $1: $2"; else echo "FAIL: $1: got '$2', want '$3'"; fails=$((fails + 1)); fi
}

expect "default" "$(gencode "$tmp/default")" \
  "--generate-code=arch=compute_80,code=[sm_80] --generate-code=arch=compute_90,code=[compute_90,sm_90] "
expect "-DCMAKE_CUDA_ARCHITECTURES=90-real" "$(gencode "$tmp/user" -DCMAKE_CUDA_ARCHITECTURES=90-real)" \
  "--generate-code=arch=compute_90,code=[sm_90] "
[ "$fails" -eq 0 ]
