#!/usr/bin/env bash
# Trains the same models in fp32 and with --precision bf16 on the embedded synthetic data sets and
# prints the final loss and metric of every run: PP-LiteSeg-T (configs/pp_liteseg_synthetic_256x256.yml)
# once per seed in SEEDS (default "7 8 9 10": 300 iterations vary by a few hundredths of mIoU from
# seed to seed, so one seed cannot show a difference of 0.01), YOLOv3-MobileNetV1
# (configs/yolov3_mobilenetv1_synthetic.yml) with seed 7. The loss curves of the seed-7 runs are drawn
# in docs/precision_curves.svg (tools/plot_loss_curves.py).
#   bash tools/compare_precision.sh [BUILD_DIR] [OUT_DIR]     (default build/release, output/precision)
# Needs a CPU with AVX512-BF16 or AMX-BF16 (engine-train refuses bf16 elsewhere with a message).
# About 35 minutes on 2 cores; runs one training at a time, one thread each when OMP_NUM_THREADS=1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/release}
out=${2:-$root/output/precision}
seeds=${SEEDS:-7 8 9 10}
cd "$root"
mkdir -p "$out"
[ -f datasets/synthetic_fundus/train_list.txt ] ||
  "$build/engine-datagen" --out datasets/synthetic_fundus --train 200 --val 40 --size 256 --seed 1
[ -f datasets/synthetic_det/train_list.txt ] ||
  "$build/engine-datagen" --task det --out datasets/synthetic_det --train 200 --val 40 --size 256 --seed 1
runs=()
for seed in $seeds; do
  for p in fp32 bf16; do
    "$build/engine-train" --config configs/pp_liteseg_synthetic_256x256.yml --do_eval --save_interval 100 \
      --log_iters 10 --num_workers 1 --seed "$seed" --precision "$p" --overwrite --save_dir "$out/seg_${p}_s$seed"
    runs+=("PP-LiteSeg-T-seed$seed $p=$out/seg_${p}_s$seed/metrics.jsonl")
  done
done
for p in fp32 bf16; do
  "$build/engine-train" --config configs/yolov3_mobilenetv1_synthetic.yml --seed 7 --precision "$p" \
    --overwrite --save_dir "$out/det_${p}_s7"
  runs+=("YOLOv3-MobileNetV1-seed7 $p=$out/det_${p}_s7/metrics.jsonl")
done
python3 "$root/tools/plot_loss_curves.py" "${runs[@]}"
python3 "$root/tools/plot_loss_curves.py" --svg "$root/docs/precision_curves.svg" \
  "PP-LiteSeg-T fp32=$out/seg_fp32_s7/metrics.jsonl" "PP-LiteSeg-T bf16=$out/seg_bf16_s7/metrics.jsonl" \
  "YOLOv3-MobileNetV1 fp32=$out/det_fp32_s7/metrics.jsonl" "YOLOv3-MobileNetV1 bf16=$out/det_bf16_s7/metrics.jsonl" \
  > /dev/null
echo "compare_precision: loss curves in docs/precision_curves.svg"
