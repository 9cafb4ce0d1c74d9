#!/usr/bin/env bash
# Coverage-guided fuzzing of the engine's file readers (a tool, not part of the test suite): builds
# each target of tools/fuzz/fuzz_targets.cpp with clang++ -fsanitize=fuzzer,address,undefined (the
# fuzzed reader's source compiled by clang, everything else linked from BUILD_DIR's libraries as g++
# built them), seeds it from tests/golden/ and engine-datagen, and runs it for SECONDS each.
#   bash tools/fuzz/run.sh [BUILD_DIR] [SECONDS] [TARGET ...]   (defaults: build/release, 120, all)
# Targets: pdparams tar safetensors image voc coco yaml. Needs clang with its libFuzzer runtime (Debian 12:
# apt-get install clang). Results in BUILD_DIR/fuzz/<target>/: the corpus, and crash-* files for
# findings; `BUILD_DIR/fuzz/fuzz_<target> crash-...` replays one. The exit status is 1 when a target
# found something.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build/release}" && pwd) || exit 1
seconds=${2:-120}
shift $(($# > 2 ? 2 : $#))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(pdparams tar safetensors image voc coco yaml)
command -v clang++ >/dev/null || { echo "run.sh: clang++ not found (apt-get install clang)"; exit 1; }
[ -x "$build/engine-datagen" ] || { echo "run.sh: $build has no engine-datagen (build it first)"; exit 1; }

# The libraries engine-eval links, as ninja would link them (relative paths are the build's).
link=$(ninja -C "$build" -t commands engine-eval | tail -1 | sed -E 's/.* -o engine-eval +//; s/ *&& *:$//')
libs=()
for l in $link; do
  case $l in /* | -*) libs+=("$l") ;; *) libs+=("$build/$l") ;; esac
done

out=$build/fuzz
mkdir -p "$out"
flags=(-std=c++20 -O1 -g -I"$root" -fno-sanitize-recover=undefined)
seeds_made=0
make_seeds() {
  [ $seeds_made = 1 ] && return
  rm -rf "$out/datagen" && mkdir -p "$out/datagen"
  "$build/engine-datagen" --out "$out/datagen/seg" --train 1 --val 0 --size 32 >/dev/null &&
    "$build/engine-datagen" --task det --out "$out/datagen/det" --train 3 --val 0 --size 32 >/dev/null || exit 1
  seeds_made=1
}

status=0
for t in "${targets[@]}"; do
  case $t in
    pdparams) src=train/pdparams.cpp ;;
    tar) src=train/tar_archive.cpp ;;
    safetensors) src=train/safetensors.cpp ;;
    image) src=data/image_io.cpp ;;
    voc | coco) src=data/det_dataset.cpp ;;
    yaml) src="train/yaml_tree.cpp train/config.cpp train/det_config.cpp" ;;
    *) echo "run.sh: unknown target '$t' (pdparams tar safetensors image voc coco yaml)"; exit 1 ;;
  esac
  dir=$out/$t
  mkdir -p "$dir/corpus" "$dir/seeds"
  echo "=== $t: building"
  objects=()
  for s in $src; do
    objects+=("$out/$t.$(basename "$s" .cpp).o")
    clang++ "${flags[@]}" -fsanitize=fuzzer-no-link,address,undefined -c "$root/$s" -o "${objects[-1]}" || exit 1
  done
  clang++ "${flags[@]}" -fsanitize=fuzzer,address,undefined -DFUZZ_TARGET_${t^^} "$root/tools/fuzz/fuzz_targets.cpp" \
    "${objects[@]}" -o "$out/fuzz_$t" "${libs[@]}" || exit 1
  make_seeds
  case $t in
    pdparams) cp "$root"/tests/golden/pdparams/*.pdparams "$dir/seeds/" ;;
    tar) cp "$root"/tests/golden/pdparams/*.tar* "$dir/seeds/" ;;
    safetensors)
      # Two tensors and a metadata entry, as a checkpoint has them (the reader's own files carry a
      # checksum in the metadata; a file without one is read too).
      python3 - "$dir/seeds/two.safetensors" <<'PY'
import json, struct, sys
header = {"__metadata__": {"format": "engine"}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
          "b": {"dtype": "I64", "shape": [1, 1], "data_offsets": [8, 16]}}
text = json.dumps(header).encode()
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + struct.pack("<2f", 1.5, -2.0) + struct.pack("<q", 7))
PY
      ;;
    image) cp "$out"/datagen/seg/images/* "$out"/datagen/seg/labels/* "$dir/seeds/" ;;
    yaml)
      cp "$root"/configs/*.yml "$dir/seeds/"
      printf '_base_: base.yml\nmodel:\n  num_classes: 4\n' >"$dir/seeds/with_base.yml"
      printf '_base_: config.yml\n' >"$dir/seeds/cycle.yml"
      ;;
    voc) cp "$out"/datagen/det/Annotations/*.xml "$dir/seeds/" ;;
    coco)
      cat >"$dir/seeds/ann.json" <<'JSON'
{"images": [{"id": 1, "file_name": "JPEGImages/0.jpg", "height": 32, "width": 32},
            {"id": 2, "file_name": "JPEGImages/1.jpg", "height": 32, "width": 32}],
 "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1.5, 2, 10, 12], "area": 120, "iscrowd": 0},
                 {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 1}],
 "categories": [{"id": 1, "name": "circle"}, {"id": 3, "name": "square"}]}
JSON
      ;;
  esac
  echo "=== $t: fuzzing for $seconds s"
  (cd "$dir" && "$out/fuzz_$t" -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=4096 \
    -print_final_stats=1 corpus seeds >"$dir/log.txt" 2>&1)
  rc=$?
  grep -E "^stat::number_of_executed_units|^Done" "$dir/log.txt" | tail -1
  if [ $rc -ne 0 ] || ls "$dir"/crash-* >/dev/null 2>&1; then
    echo "$t: FOUND something (exit $rc): $(ls "$dir"/crash-* 2>/dev/null | tr '\n' ' ')"
    grep -a -E "runtime error|ERROR:|line break" "$dir/log.txt" | head -3
    status=1
  else
    echo "$t: nothing found"
  fi
done
exit $status
