#!/usr/bin/env bash
# Compiler launcher of the CUDA sources (the engine target's CUDA_COMPILER_LAUNCHER, CMakeLists.txt):
# runs the compile command given after LOG_DIR and keeps ptxas's per-kernel resource lines (the
# compile passes -Xptxas=-v) in LOG_DIR/<source file name>.ptxas, which scripts/resource_report.sh
# reads; everything else the command prints goes to stderr as before, and its exit status is kept.
# The report so comes from the objects that ship instead of a second compile of every .cu.
# Usage: scripts/ptxas_log.sh LOG_DIR COMMAND...
set -uo pipefail
log_dir=$1; shift
src=""; prev=""
for a in "$@"; do
  [ "$prev" = "-c" ] && src=$a
  prev=$a
done
err=$(mktemp)
"$@" 2> "$err"
rc=$?
# ptxas -v: "ptxas info    : ..." lines and the indented "N bytes stack frame, ..." line of each function.
grep -vE '^ptxas info|^ +[0-9]+ bytes stack frame' "$err" >&2
if [ $rc -eq 0 ] && [ -n "$src" ]; then
  mkdir -p "$log_dir"
  grep -E '^ptxas info|^ +[0-9]+ bytes stack frame' "$err" > "$log_dir/$(basename "$src").ptxas.tmp" &&
    mv "$log_dir/$(basename "$src").ptxas.tmp" "$log_dir/$(basename "$src").ptxas"
fi
rm -f "$err"
exit $rc
