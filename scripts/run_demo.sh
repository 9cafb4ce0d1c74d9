#!/usr/bin/env bash
# The main job: install what is missing, build the production configuration (real CUDA when the
# toolkit is present, else CPU only), generate the synthetic fundus data set (once), train
# PP-LiteSeg-T on it with evaluation (configs/pp_liteseg_synthetic_256x256.yml), then write
# prediction PNGs for the validation images. About 2-3 minutes on 2 CPU cores.
# With --task det (first argument): the detection job instead: the synthetic shapes set
# (engine-datagen --task det) and YOLOv3-MobileNetV1 trained the PaddleX way on it
# (configs/yolov3_mobilenetv1_synthetic.yml, 12 epochs with evaluation; about 6 minutes on 2 CPU cores).
# Extra arguments go to engine-train (e.g. --device cpu, --iters 600, --num_workers 4; for det
# PaddleX's flags, e.g. --num_epochs 20).
# Environment: ENGINE_BUILD_DIR (default build/release), ENGINE_CMAKE_ARGS (extra cmake options,
# e.g. "-DCMAKE_CUDA_ARCHITECTURES=90-real" or "-DENGINE_NATIVE=ON").
# A failure names its step (install, configure, build, data, train, predict) and exits non-zero.
set -uo pipefail
task=seg
if [ "${1:-}" = "--task" ]; then
  task=${2:-}
  shift 2 || true
  case "$task" in seg|det) ;; *) echo "run_demo: --task: expected seg or det, got '$task'" >&2; exit 2 ;; esac
fi
root=$(cd "$(dirname "$0")/.." && pwd)
build=${ENGINE_BUILD_DIR:-$root/build/release}
read -r -a cmake_args <<< "${ENGINE_CMAKE_ARGS:-}"

# step NAME COMMAND...: runs one step; on failure says which and stops with its exit code.
step() {
  local name=$1; shift
  echo "=== run_demo: $name"
  "$@"
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "run_demo: FAILED in step '$name' (exit $rc): $*" >&2
    exit $rc
  fi
}

configure() {
  mkdir -p "$build" &&
    cmake -S "$root" -B "$build" -G Ninja -DENGINE_CUDA=AUTO -DENGINE_BUILD_TESTS=OFF "${cmake_args[@]}" \
      > "$build.configure.log" 2>&1 || { tail -20 "$build.configure.log"; echo "(whole log: $build.configure.log)"; return 1; }
}

step install bash "$root/scripts/install_deps.sh"
step configure configure
step build ninja -C "$build" -j "$(nproc)" engine-train engine-eval engine-predict engine-datagen bench_train
cd "$root" || exit 1
if [ "$task" = det ]; then
  data=datasets/synthetic_det
  out=output/yolov3_synthetic
  n=1
  while [ -e "$out/metrics.jsonl" ] || [ -e "$out/best_model" ] || compgen -G "$out/epoch_*" > /dev/null; do
    n=$((n + 1)); out=output/yolov3_synthetic-$n
  done
  if [ ! -f "$data/train_list.txt" ]; then
    step data "$build/engine-datagen" --task det --out "$data" --train 200 --val 40 --size 256 --seed 1
  fi
  step train "$build/engine-train" --config configs/yolov3_mobilenetv1_synthetic.yml --save_dir "$out" "$@"
  cat <<TXT

Done. Outputs in $out/:
  best_model/model.safetensors (the best bbox_map), epoch_3/ epoch_6/ ... (weights + optimizer state;
  resume with --resume_checkpoint $out/epoch_6)
  metrics.jsonl   train losses (loss_xy, loss_wh, loss_obj, loss_cls, loss) and each evaluation's bbox_map
TXT
  exit 0
fi
data=datasets/synthetic_fundus
# A new folder for each run of the demo: engine-train refuses to write over an earlier run's results.
out=output/pp_liteseg_synthetic
n=1
while [ -e "$out/metrics.jsonl" ] || [ -e "$out/best_model" ] || compgen -G "$out/iter_*" > /dev/null; do
  n=$((n + 1)); out=output/pp_liteseg_synthetic-$n
done
cfg=configs/pp_liteseg_synthetic_256x256.yml
if [ ! -f "$data/train_list.txt" ]; then
  step data "$build/engine-datagen" --out "$data" --train 200 --val 40 --size 256 --seed 1
fi
step train "$build/engine-train" --config "$cfg" --do_eval --use_vdl --save_interval 100 --log_iters 20 \
  --num_workers 2 --save_dir "$out" "$@"
step predict "$build/engine-predict" --config "$cfg" --model_path "$out/best_model" --image_path "$data/val_list.txt" \
  --save_dir "$out/result"
cat <<TXT

Done. Outputs in $out/:
  best_model/model.safetensors, iter_*/ (weights + optimizer state; resume with --resume_model $out/iter_300)
  result/pseudo_color_prediction/*.png   class masks (palette PNG)
  result/added_prediction/*.jpg          overlays on the validation images
  events.out.tfevents.*                  TensorBoard: tensorboard --logdir $out
  vdlrecords.*.log                       VisualDL: visualdl --logdir $out
  metrics.jsonl                          the same scalars, one JSON object per line
Evaluate again (multi-scale + flip): $build/engine-eval --config $cfg --model_path $out/best_model --aug_eval --scales 0.75 1.0 1.25 --flip_horizontal
TXT
