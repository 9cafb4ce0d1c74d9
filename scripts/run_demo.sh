#!/usr/bin/env bash
# The main job: install what is missing, build the production configuration (real CUDA when the
# toolkit is present, else CPU only) and train the demo network, printing the falling loss.
# Extra arguments go to engine-demo (e.g. --device cpu --steps 500).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/install_deps.sh"
mkdir -p "$root/build"
bash "$root/scripts/build.sh" release -DENGINE_CUDA=AUTO -DENGINE_BUILD_TESTS=OFF -- engine-demo
"$root/build/release/engine-demo" "$@"
