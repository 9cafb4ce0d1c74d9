#!/usr/bin/env bash
# The C++/CUDA sources follow .clang-format (CTest format_check). Uses clang-format 14, Debian 12's
# (scripts/install_deps.sh installs it): other versions format some constructs differently, so
# with another version the check is skipped (exit 77) instead of failing on the version's taste.
# Usage: scripts/check_format.sh [--fix]     --fix rewrites the files in place
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
fmt=$(command -v clang-format-14 || command -v clang-format || true)
if [ -z "$fmt" ]; then
  echo "check_format: clang-format not found (scripts/install_deps.sh installs it)"; exit 77
fi
version=$("$fmt" --version | sed -E 's/.*version ([0-9]+).*/\1/')
if [ "$version" != 14 ]; then
  echo "check_format: $fmt is version $version; the tree is formatted with clang-format 14"; exit 77
fi
# The project's sources: git's list in a clone, else every file under the source folders.
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files -co --exclude-standard -- '*.h' '*.cpp' '*.cu' '*.cuh' '*.inc' | grep -v '^third_party/')
else
  mapfile -t files < <(find base bench cli data engine kernels models tests train -name '*.h' -o -name '*.cpp' \
                         -o -name '*.cu' -o -name '*.cuh' -o -name '*.inc' | sort)
fi
if [ "${1:-}" = "--fix" ]; then
  "$fmt" -i "${files[@]}"
  echo "check_format: formatted ${#files[@]} files"; exit 0
fi
bad=()
for f in "${files[@]}"; do
  [ -f "$f" ] || continue
  "$fmt" --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  echo "check_format: ${#bad[@]} of ${#files[@]} files differ from .clang-format (fix: bash scripts/check_format.sh --fix):"
  printf '  %s\n' "${bad[@]}"
  exit 1
fi
echo "check_format: ${#files[@]} files follow .clang-format"
