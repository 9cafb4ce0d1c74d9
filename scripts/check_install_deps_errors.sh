#!/usr/bin/env bash
# CTest install_deps_names_what_failed: scripts/install_deps.sh ends with one line naming what
# failed. Runs it with fake dpkg-query (nothing installed), id (root) and apt-get first on PATH, so
# nothing is installed for real: apt-get update failing, apt-get install failing, and apt-get
# "succeeding" without installing anything.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
printf '#!/bin/sh\nexit 1\n' > "$tmp/dpkg-query"
printf '#!/bin/sh\necho 0\n' > "$tmp/id"

# expect_last_line APT_GET_SCRIPT WANTED_PREFIX
expect_last_line() {
  printf '#!/bin/sh\n%s\n' "$1" > "$tmp/apt-get"
  chmod +x "$tmp/dpkg-query" "$tmp/id" "$tmp/apt-get"
  local out rc last
  out=$(PATH="$tmp:$PATH" bash "$root/scripts/install_deps.sh" 2>&1); rc=$?
  last=$(printf '%s\n' "$out" | tail -1)
  if [ "$rc" -ne 0 ] && [[ "$last" == "$2"* ]]; then
    echo "ok: exit $rc: ${last:0:140}"
  else
    echo "FAIL: exit $rc, last line '$last' (wanted '$2...')"; fails=$((fails + 1))
  fi
}

expect_last_line 'echo "E: network unreachable" >&2; exit 100' "install_deps: FAILED: apt-get update"
expect_last_line 'if [ "$1" = update ]; then exit 0; fi; echo "E: Unable to locate package" >&2; exit 100' \
  "install_deps: FAILED: apt-get install --no-install-recommends build-essential"
expect_last_line 'exit 0' "install_deps: FAILED: still not installed after apt-get: build-essential"
[ "$fails" -eq 0 ]
