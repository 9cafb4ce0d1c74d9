#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this):
#  1. emu:  CPU + emulated CUDA (fiber mode): every test; the kernel tests again with two fiber
#           scheduling seeds and a shuffled block order, and with the CPU kernels' AVX2 variants.
#  2. asan: the kernel tests and the file-format/parser/loader tests (label sanitize) under AddressSanitizer + UBSan (fiber mode),
#           with the kernels' line coverage (scripts/kernel_coverage.py) measured on that run.
#  3. tsan: the 'tsan' tests under ThreadSanitizer (OS-thread mode, small shapes).
#  4. cuda: the production build with nvcc (sm_80 + sm_90, warnings and spills as errors, the
#           per-kernel resource report); its tests run on the CPU and skip the GPU-only ones when
#           no GPU is present, and run everything on the GPU where one exists; its programs also
#           run on qemu's emulated AVX2-only CPU.
# Every build also checks the install list against the files it used (scripts/check_deps.py).
# Prints each CTest summary and a final "N passed, M failed" line.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/install_deps.sh" || exit 1
mkdir -p "$root/build"
export CTEST_OUTPUT_ON_FAILURE=1
# ctest runs two test programs at once on two cores: OpenMP threads that spin while waiting would
# then steal each other's cores (a 30x slowdown seen on small ops), so let them sleep instead.
export OMP_WAIT_POLICY=PASSIVE
passed=0; failed=0; status=0
log="$root/build/test-summary.log"; : > "$log"

# Runs ctest, echoes its output, and adds its pass/fail counts to the totals.
run_ctest() {
  local label=$1 dir=$2; shift 2
  echo "=== ctest [$label] $*"
  local out; out=$(mktemp)
  ctest --test-dir "$dir" "$@" 2>&1 | tee "$out"
  local rc=${PIPESTATUS[0]}
  local line; line=$(grep -E "tests passed, [0-9]+ tests failed out of [0-9]+" "$out" | tail -1)
  if [ -n "$line" ]; then
    local total nfail
    total=$(echo "$line" | sed -E 's/.*out of ([0-9]+).*/\1/')
    nfail=$(echo "$line" | sed -E 's/.* ([0-9]+) tests failed.*/\1/')
    passed=$((passed + total - nfail)); failed=$((failed + nfail))
    echo "[$label] $line" >> "$log"
  elif [ "$rc" -ne 0 ]; then
    failed=$((failed + 1)); echo "[$label] ctest failed to run (rc $rc)" >> "$log"
  fi
  [ "$rc" -eq 0 ] || status=1
  rm -f "$out"
}

# Kernel line coverage of a build's test run (scripts/kernel_coverage.py; per file in
# build/<name>/kernel_coverage.txt): its one line goes into the summary. A low number does not fail
# the run; a script that cannot measure does.
kernel_coverage() {
  local line
  if line=$(python3 "$root/scripts/kernel_coverage.py" "$root/build/$1" "$root"); then
    echo "$line (per file: build/$1/kernel_coverage.txt)"
    echo "[$1] $line" >> "$log"
  else
    echo "[$1] kernel coverage FAILED (scripts/kernel_coverage.py)" | tee -a "$log"
    failed=$((failed + 1)); status=1
  fi
}

build() { bash "$root/scripts/build.sh" "$@" || { echo "build $1 FAILED"; failed=$((failed + 1)); status=1; return 1; }; }

have_cuda_headers=0
[ -f /usr/local/cuda/include/cuda_runtime.h ] && have_cuda_headers=1

if [ $have_cuda_headers = 1 ]; then
  if build emu -DENGINE_CUDA=EMU; then
    run_ctest emu "$root/build/emu" -j "$(nproc)"
    for seed in 1 2; do
      CUEMU_SCHED_SEED=$seed CUEMU_SHUFFLE_BLOCKS=$seed run_ctest "emu seed $seed" "$root/build/emu" -L kernel -j "$(nproc)"
    done
    # The CPU kernels' AVX2 variants (the default on a CPU with AVX-512 is the AVX-512 one).
    ENGINE_CPU_ISA=avx2 run_ctest "emu avx2" "$root/build/emu" -L kernel -j "$(nproc)"
  fi
  # The asan build also measures kernel line coverage (-DENGINE_COVERAGE=ON: gcc --coverage on the
  # kernel sources only); counts of an earlier run are deleted first.
  if build asan -DENGINE_CUDA=EMU -DENGINE_SANITIZE=address -DCMAKE_BUILD_TYPE=RelWithDebInfo -DENGINE_COVERAGE=ON -- asan_tests; then
    find "$root/build/asan" -name '*.gcda' -delete
    ASAN_OPTIONS=detect_leaks=1 run_ctest asan "$root/build/asan" -L "kernel|sanitize|deps" -j "$(nproc)"
    kernel_coverage asan
  fi
  if build tsan -DENGINE_CUDA=EMU -DENGINE_SANITIZE=thread -DCMAKE_BUILD_TYPE=RelWithDebInfo -- tsan_tests; then
    run_ctest tsan "$root/build/tsan" -L "tsan|deps" -j "$(nproc)"
  fi
else
  echo "no CUDA headers under /usr/local/cuda: building CPU only"
fi
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  if build cuda -DENGINE_CUDA=REAL -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc; then
    cat "$root/build/cuda/resource_report.txt" | head -3
    run_ctest cuda "$root/build/cuda" -j "$(nproc)"
  fi
else
  if build cpu -DENGINE_CUDA=OFF; then run_ctest cpu "$root/build/cpu" -j "$(nproc)"; fi
fi
echo "=== summary"
cat "$log"
echo "$passed passed, $failed failed"
exit $status
