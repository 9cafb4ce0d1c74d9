#!/usr/bin/env bash
# The main job: install what is missing, build the production configuration (real CUDA when the
# toolkit is present, else CPU only), generate the synthetic fundus data set (once), train
# PP-LiteSeg-T on it with evaluation (configs/pp_liteseg_synthetic_256x256.yml), then write
# prediction PNGs for the validation images. About 2-3 minutes on 2 CPU cores.
# Extra arguments go to engine-train (e.g. --device cpu, --iters 600, --num_workers 4).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/install_deps.sh"
mkdir -p "$root/build"
bash "$root/scripts/build.sh" release -DENGINE_CUDA=AUTO -DENGINE_BUILD_TESTS=OFF -- \
  engine-train engine-eval engine-predict engine-datagen bench_train
bin="$root/build/release"
cd "$root"
data=datasets/synthetic_fundus
out=output/pp_liteseg_synthetic
cfg=configs/pp_liteseg_synthetic_256x256.yml
[ -f "$data/train_list.txt" ] || "$bin/engine-datagen" --out "$data" --train 200 --val 40 --size 256 --seed 1
"$bin/engine-train" --config "$cfg" --do_eval --use_vdl --save_interval 100 --log_iters 20 --num_workers 2 \
  --save_dir "$out" "$@"
"$bin/engine-predict" --config "$cfg" --model_path "$out/best_model" --image_path "$data/val_list.txt" \
  --save_dir "$out/result"
cat <<TXT

Done. Outputs in $out/:
  best_model/model.safetensors, iter_*/ (weights + optimizer state; resume with --resume_model $out/iter_300)
  result/pseudo_color_prediction/*.png   class masks (palette PNG)
  result/added_prediction/*.jpg          overlays on the validation images
  events.out.tfevents.*                  TensorBoard: tensorboard --logdir $out
  metrics.jsonl                          the same scalars, one JSON object per line
Evaluate again (multi-scale + flip): $bin/engine-eval --config $cfg --model_path $out/best_model --aug_eval --scales 0.75 1.0 1.25 --flip_horizontal
TXT
