#!/usr/bin/env bash
# Installs the Debian 12 packages the engine needs, only those that are missing, the way a new user's
# machine gets them: `apt-get install --no-install-recommends`, so a package that is only a Recommends
# of another one must be named here itself. scripts/check_deps.py proves from a finished build that this
# list is complete (every header, library and CMake file used belongs to a package installed from it).
# The CUDA toolkit (nvcc, cuDNN 9, cuBLAS, NCCL) is expected under /usr/local/cuda; without it the
# engine builds CPU-only (and the emulated-CUDA test build, which needs the toolkit's headers, is skipped).
# Usage: scripts/install_deps.sh          install what is missing
#        scripts/install_deps.sh --list   print the package list, one per line
set -uo pipefail
packages=(
  build-essential cmake ninja-build ccache pkg-config
  python3              # scripts/check_deps.py, check_isa_symbols.py (checks of the test command)
  qemu-user            # tests: the portable binaries on an emulated CPU without AVX-512 (and one below the baseline)
  libopenblas-dev      # CPU GEMM
  libdnnl-dev          # oneDNN convolutions
  ocl-icd-opencl-dev   # OpenCL: oneDNN's CMake package config requires it (only a Recommends of libdnnl-dev)
  libgtest-dev         # tests
  libgmock-dev         # GTest's CMake package config loads GMock's targets when they exist: the same configure everywhere
  libboost-context-dev # fibers of the CUDA emulation layer on CPUs other than x86-64
  libyaml-cpp-dev      # configs
  libpng-dev libjpeg62-turbo-dev # images and labels
  nlohmann-json3-dev   # checkpoint headers, JSONL logs
  libtinyxml2-dev      # VOC annotations
  libopenmpi-dev openmpi-bin # data-parallel CPU ranks (mpirun), NCCL bootstrap under mpirun
  zlib1g-dev           # .tar.gz archives of Paddle weights (train/tar_archive)
  libcurl4-openssl-dev # downloads of pretrained weights given as URLs (train/download)
  ca-certificates      # HTTPS for those downloads: only a Recommends of libcurl4
  clang-format         # scripts/check_format.sh (CTest format_check): the tree follows .clang-format
)
if [ "${1:-}" = "--list" ]; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi
fail() { echo "install_deps: FAILED: $*" >&2; exit 1; }

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install_deps: installing ${missing[*]}"
command -v apt-get >/dev/null 2>&1 || fail "apt-get not found (a Debian 12 machine is expected); install by hand: ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || fail "not root and no sudo: run as root, or install by hand: ${missing[*]}"
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq || fail "apt-get update (check the network and /etc/apt/sources.list)"
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
  fail "apt-get install --no-install-recommends ${missing[*]}"
still=()
for p in "${missing[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || still+=("$p")
done
[ ${#still[@]} -eq 0 ] || fail "still not installed after apt-get: ${still[*]}"
echo "install_deps: installed ${#missing[@]} package(s)"
