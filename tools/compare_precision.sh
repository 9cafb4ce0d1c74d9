#!/usr/bin/env bash
# Trains the same models in fp32 and in the low precisions on the embedded synthetic data sets and
# prints the final loss and metric of every run: PP-LiteSeg-T (configs/pp_liteseg_synthetic_256x256.yml)
# once per seed in SEEDS (default "7 8 9 10": 300 iterations vary by a few hundredths of mIoU from
# seed to seed, so one seed cannot show a difference of 0.01), YOLOv3-MobileNetV1
# (configs/yolov3_mobilenetv1_synthetic.yml) once per seed in DET_SEEDS (default "7"). The loss curves of the seed-7 runs are drawn
# in docs/precision_curves.svg (tools/plot_loss_curves.py).
#   bash tools/compare_precision.sh [BUILD_DIR] [OUT_DIR]     (default build/release, output/precision)
# PRECISIONS (default "fp32 bf16 fp16") picks the runs; AMP_LEVEL (default O1) is the --amp_level of
# the bf16 / fp16 runs, whose folders and curve names get "-O2" at O2. DET_EPOCHS=N trains the
# detection runs for N epochs instead of the config's 12, the rate's decay steps moved to 80 % and 93 %
# of them (30 -> 24, 28), into folders named det<N>ep_*: 12 epochs are too few for the detection
# metric to settle (docs/BENCHMARKS.md).
# DEVICE=cpu (default): fp32 and bf16 train on the CPU (bf16 needs a CPU with AVX512-BF16 or
# AMX-BF16); fp16 is a GPU precision, so it trains on the emulated GPU of the build in EMU_BUILD
# (default build/emu, a -DENGINE_CUDA=EMU build): the GPU kernels' numerics with fp16 convolutions
# and loss scaling, at emulation speed (about 3x slower than the CPU device). One seed of
# PP-LiteSeg-T takes about 5 minutes on the CPU and 15 on the emulated GPU (2 cores).
# DEVICE=gpu: every run (fp32 included) trains on the real GPU of BUILD_DIR (a -DENGINE_CUDA=REAL
# build), e.g. the whole comparison the accuracy target asks for:
#   DEVICE=gpu AMP_LEVEL=O2 SEEDS="7 8 9 10 11 12 13 14" DET_SEEDS="7 8 9" DET_EPOCHS=30 \
#     bash tools/compare_precision.sh build/cuda output/precision_gpu
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
precisions=${PRECISIONS:-fp32 bf16 fp16}
level=${AMP_LEVEL:-O1}
# name PRECISION: the run's name (fp32, bf16, bf16-O2, ...)
name() { if [ "$1" != fp32 ] && [ "$level" = O2 ]; then echo "$1-O2"; else echo "$1"; fi; }
emu=${EMU_BUILD:-$root/build/emu}
device=${DEVICE:-cpu}
case "$device" in cpu | gpu) ;; *) echo "compare_precision: DEVICE must be cpu or gpu, got '$device'" >&2; exit 2 ;; esac
det_seeds=${DET_SEEDS:-7}
det_epochs=${DET_EPOCHS:-}
det_args=()
det_prefix=det
if [ -n "$det_epochs" ]; then
  [[ "$det_epochs" =~ ^[1-9][0-9]*$ ]] || { echo "compare_precision: DET_EPOCHS must be a positive integer, got '$det_epochs'" >&2; exit 2; }
  decay1=$(( (det_epochs * 80 + 50) / 100 )) decay2=$(( (det_epochs * 93 + 50) / 100 ))
  decay1=$(( decay1 > 0 ? decay1 : 1 ))
  decay2=$(( decay2 > decay1 ? decay2 : decay1 + 1 ))
  det_args=(--num_epochs "$det_epochs" --lr_decay_epochs "$decay1,$decay2"
    --save_interval_epochs "$(( det_epochs >= 5 ? det_epochs / 5 : 1 ))")
  det_prefix=det${det_epochs}ep
fi
# train PRECISION ARGS...: engine-train at that precision: on the real GPU with DEVICE=gpu, else on
# the CPU and, for fp16, the emulated GPU.
train() {
  local p=$1; shift
  if [ "$device" = gpu ]; then
    if [ "$p" = fp32 ]; then
      "$build/engine-train" "$@" --device gpu --precision fp32
    else
      "$build/engine-train" "$@" --device gpu --precision "$p" --amp_level "$level"
    fi
  elif [ "$p" = fp16 ]; then
    env -u CUDA_VISIBLE_DEVICES "$emu/engine-train" "$@" --device gpu --precision fp16 --amp_level "$level"
  elif [ "$p" = fp32 ]; then
    "$build/engine-train" "$@" --device cpu --precision fp32
  else
    "$build/engine-train" "$@" --device cpu --precision "$p" --amp_level "$level"
  fi
}
runs=()
for seed in $seeds; do
  for p in $precisions; do
    n=$(name "$p")
    train "$p" --config configs/pp_liteseg_synthetic_256x256.yml --do_eval --save_interval 100 \
      --log_iters 10 --num_workers 1 --seed "$seed" --overwrite --save_dir "$out/seg_${n}_s$seed"
    runs+=("PP-LiteSeg-T-seed$seed $n=$out/seg_${n}_s$seed/metrics.jsonl")
  done
done
for seed in $det_seeds; do
  for p in $precisions; do
    n=$(name "$p")
    train "$p" --config configs/yolov3_mobilenetv1_synthetic.yml "${det_args[@]}" --seed "$seed" --overwrite \
      --save_dir "$out/${det_prefix}_${n}_s$seed"
    runs+=("YOLOv3-MobileNetV1-${det_prefix}-seed$seed $n=$out/${det_prefix}_${n}_s$seed/metrics.jsonl")
  done
done
python3 "$root/tools/plot_loss_curves.py" "${runs[@]}"
# The plot takes every seed-7 run found in OUT_DIR, earlier invocations' included (e.g. O1 and O2).
curves=()
for task in seg det; do
  for n in fp32 bf16 bf16-O2 fp16 fp16-O2; do
    title=$([ $task = seg ] && echo PP-LiteSeg-T || echo YOLOv3-MobileNetV1)
    prefix=$([ $task = seg ] && echo seg || echo "$det_prefix")
    [ -f "$out/${prefix}_${n}_s7/metrics.jsonl" ] && curves+=("$title $n=$out/${prefix}_${n}_s7/metrics.jsonl")
  done
done
python3 "$root/tools/plot_loss_curves.py" --svg "$root/docs/precision_curves.svg" "${curves[@]}" > /dev/null
echo "compare_precision: loss curves in docs/precision_curves.svg"
