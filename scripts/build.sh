#!/usr/bin/env bash
# Configures and builds one configuration into build/<name>.
# Usage: scripts/build.sh NAME [cmake -D options...] [-- ninja targets...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=$1; shift
opts=(); targets=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--" ]; then shift; targets=("$@"); break; fi
  opts+=("$1"); shift
done
dir="$root/build/$name"
mkdir -p "$root/build"
cmake -S "$root" -B "$dir" -G Ninja "${opts[@]}" > "$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; exit 1; }
ninja -C "$dir" -j "$(nproc)" "${targets[@]}"
