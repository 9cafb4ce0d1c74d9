#!/usr/bin/env bash
# Installs the Debian 12 packages the engine needs, only those that are missing.
# The CUDA toolkit (nvcc, cuDNN 9, cuBLAS, NCCL) is expected under /usr/local/cuda; without it the
# engine builds CPU-only (and the emulated-CUDA test build still works: it needs only the headers,
# which are then missing too, so that build is skipped).
set -euo pipefail
packages=(
  build-essential cmake ninja-build ccache pkg-config
  libopenblas-dev      # CPU GEMM
  libdnnl-dev          # oneDNN convolutions (operator set)
  libgtest-dev         # tests
  libboost-context-dev # fast fiber switches in the CUDA emulation layer
  libyaml-cpp-dev libpng-dev libjpeg62-turbo-dev nlohmann-json3-dev libtinyxml2-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install_deps: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
