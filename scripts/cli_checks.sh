#!/usr/bin/env bash
# End-to-end checks of the command-line programs (a CTest entry, `cli_checks`): a tiny synthetic data
# set, a short engine-train run with evaluation, resume, engine-eval, engine-predict, bf16 training and
# evaluation where the CPU has bf16 math, fp16 training with loss scaling on the emulated GPU (and the
# refusals of what is not available); then bad input,
# each with its exit code and the words the one-line error must contain.
# Usage: scripts/cli_checks.sh BUILD_DIR
set -uo pipefail
bin=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
fails=0

# expect CODE "WORDS" command...: runs the command, checks its exit code and that its output has WORDS.
expect() {
  local code=$1 words=$2; shift 2
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -ne "$code" ] || ! grep -qF -- "$words" <<<"$out"; then
    echo "FAIL: $* -> exit $rc (want $code), output:"; echo "$out" | tail -5; echo "(wanted: $words)"
    fails=$((fails + 1))
  else
    echo "ok: exit $rc: $(grep -F -- "$words" <<<"$out" | head -1 | cut -c1-150)"
  fi
  last_out=$out
}

expect 0 "wrote 12 train, 4 val" "$bin/engine-datagen" --out data --train 12 --val 4 --size 64 --seed 5
cat > cfg.yml <<YML
_base_: $root/configs/pp_liteseg_synthetic_256x256.yml
batch_size: 2
iters: 6
train_dataset:
  dataset_root: data
  train_path: data/train_list.txt
  transforms:
    - type: RandomPaddingCrop
      crop_size: [64, 64]
    - type: Normalize
val_dataset:
  dataset_root: data
  val_path: data/val_list.txt
lr_scheduler:
  warmup_iters: 0
YML
export CUDA_VISIBLE_DEVICES=   # the CPU, also in a GPU build
expect 0 "[TRAIN] epoch: 1, iter: 2/6" "$bin/engine-train" --config cfg.yml --do_eval --save_interval 3 --log_iters 2 --save_dir out
expect 0 "Resume model from out/iter_3" "$bin/engine-train" --config cfg.yml --resume_model out/iter_3 --save_interval 3 --save_dir out2
expect 0 "[EVAL] #Images: 4 mIoU:" "$bin/engine-eval" --config cfg.yml --model_path out/best_model
# --use_ema: the average is evaluated beside the model and kept in ema_best_model/, which engine-eval reads
expect 0 "[EVAL] The EMA model with the best validation mIoU" "$bin/engine-train" --config cfg.yml --do_eval --use_ema --save_interval 3 --iters 3 --save_dir out_ema
expect 0 "[EVAL] #Images: 4 mIoU:" "$bin/engine-eval" --config cfg.yml --model_path out_ema/ema_best_model
# sliding windows (PaddleSeg's --is_slide): 64x64 images in 40x40 windows every 24 pixels
expect 0 "[EVAL] #Images: 4 mIoU:" "$bin/engine-eval" --config cfg.yml --model_path out/best_model --is_slide --crop_size 40 40 --stride 24 24
# --custom_color: classes 0 and 1 black and white in the PNG's palette (PLTE chunk after the 33-byte header)
expect 0 "4 images -> res_c" "$bin/engine-predict" cfg.yml --model_path out/iter_6 --image_path data/val_list.txt --save_dir res_c --custom_color 0 0 0 255 255 255
if [ "$(od -An -tx1 -j37 -N10 res_c/pseudo_color_prediction/0012.png | tr -d ' \n')" = "504c5445000000ffffff" ]; then
  echo "ok: --custom_color sets the palette"
else
  echo "FAIL: res_c/pseudo_color_prediction/0012.png: palette $(od -An -tx1 -j33 -N20 res_c/pseudo_color_prediction/0012.png)"; fails=$((fails + 1))
fi
expect 0 "4 images -> res_s" "$bin/engine-predict" cfg.yml --model_path out/iter_6 --image_path data/val_list.txt --save_dir res_s --is_slide --crop_size 40 32 --stride 24 16
expect 2 "test_config.stride" "$bin/engine-eval" --config cfg.yml --model_path out/best_model --opts test_config.is_slide=True "test_config.crop_size=[8, 8]" "test_config.stride=[9, 8]"
expect 0 "4 images -> res" "$bin/engine-predict" cfg.yml --model_path out/iter_6 --image_path data/val_list.txt --save_dir res
[ -f res/pseudo_color_prediction/0012.png ] && [ -f res/added_prediction/0012.jpg ] || { echo "FAIL: prediction files missing"; fails=$((fails + 1)); }
# --save_logits: numpy .npy files, f32 [H, W, classes] after a 64-byte-aligned header
expect 0 "logits/" "$bin/engine-predict" cfg.yml --model_path out/iter_6 --image_path data/val_list.txt --save_dir res_l --save_logits
npy=res_l/logits/0012.npy
if [ -f "$npy" ] && head -c 128 "$npy" | grep -qa "'descr': '<f4', 'fortran_order': False, 'shape': (64, 64, 2), }" &&
   [ $(( $(stat -c %s "$npy") - 64 * 64 * 2 * 4 )) -gt 0 ] && [ $(( ($(stat -c %s "$npy") - 64 * 64 * 2 * 4) % 64 )) -eq 0 ]; then
  echo "ok: $npy is a (64, 64, 2) float32 .npy"
else
  echo "FAIL: $npy is not the expected .npy"; fails=$((fails + 1))
fi

# bad input: exit 2 for flags and configs (naming the flag or key path), 1 for files
expect 2 "unknown flag '--itres'" "$bin/engine-train" --config cfg.yml --itres 5
expect 2 "--config" "$bin/engine-train" --iters 5
expect 2 "model.bogus" "$bin/engine-train" --config cfg.yml --opts model.bogus=1
expect 2 "batch_size" "$bin/engine-train" --config cfg.yml --batch_size 0
expect 2 "nope.yml" "$bin/engine-train" --config nope.yml
expect 2 "--device" "$bin/engine-train" --config cfg.yml --device gpu
expect 1 "not found" "$bin/engine-train" --config cfg.yml --resume_model out/iter_99
expect 1 "model.safetensors" "$bin/engine-eval" --config cfg.yml --model_path data
expect 1 "missing.jpg" "$bin/engine-predict" --config cfg.yml --model_path out/iter_6 --image_path missing.jpg
expect 2 "--train" "$bin/engine-datagen" --out d2 --train x
printf 'images/0000.jpg\n' > data/bad_list.txt
expect 1 "bad_list.txt" "$bin/engine-train" --config cfg.yml --opts train_dataset.train_path=data/bad_list.txt
# nothing already written is clobbered by a failed run
[ -f out/iter_6/model.safetensors ] || { echo "FAIL: out/iter_6 lost"; fails=$((fails + 1)); }

# mixed precision (engine/precision.h): bf16 O1 where the CPU multiplies bf16, and checkpoints that
# move between precisions; what is not available is a one-line error (exit 2) that writes nothing
expect 2 "--precision fp16 is a GPU precision" "$bin/engine-train" --config cfg.yml --precision fp16 --save_dir p16
expect 2 "--amp_level O2 (activations stored in bf16 or fp16) does not apply" "$bin/engine-train" --config cfg.yml --precision tf32 --amp_level O2 --save_dir pO2
expect 2 "--precision tf32 is a GPU tensor-core math mode" "$bin/engine-train" --config cfg.yml --precision tf32 --save_dir pt32
expect 2 "precision: expected fp32, tf32, bf16 or fp16, got 'half'" "$bin/engine-train" --config cfg.yml --opts precision=half --save_dir ph
[ ! -e p16 ] && [ ! -e pO2 ] && [ ! -e pt32 ] && [ ! -e ph ] || { echo "FAIL: a refused precision wrote a run folder"; fails=$((fails + 1)); }
if grep -qE "avx512_bf16|amx_bf16" /proc/cpuinfo; then
  expect 0 "precision bf16 (O1: convolutions multiply in bf16" "$bin/engine-train" --config cfg.yml --precision bf16 --iters 3 --save_interval 3 --save_dir pbf
  expect 0 "Resume model from pbf/iter_3" "$bin/engine-train" --config cfg.yml --resume_model pbf/iter_3 --save_dir pbf32
  expect 0 "[EVAL] #Images: 4 mIoU:" "$bin/engine-eval" --config cfg.yml --model_path out/best_model --precision bf16
  # O2: activations in bf16; its checkpoint resumes at O1 and evaluates at O2
  expect 0 "precision bf16 (O2: activations stored in bf16" "$bin/engine-train" --config cfg.yml --precision bf16 --amp_level O2 --iters 3 --save_interval 3 --save_dir pO2b
  expect 0 "Resume model from pO2b/iter_3" "$bin/engine-train" --config cfg.yml --resume_model pO2b/iter_3 --precision bf16 --save_dir pO2r
  expect 0 "[EVAL] #Images: 4 mIoU:" "$bin/engine-eval" --config cfg.yml --model_path pO2b/iter_3 --precision bf16 --amp_level O2
else
  expect 2 "needs a CPU with AVX512-BF16 or AMX-BF16" "$bin/engine-train" --config cfg.yml --precision bf16 --save_dir pbf
fi
# fp16 with loss scaling on the emulated GPU (a build with -DENGINE_CUDA=EMU): a scale of 2^40 overflows
# the fp16 gradients, so steps are skipped (WARNING lines) while the scale falls; the checkpoint
# carries the scale into the resumed run; evaluation in fp16
if grep -q "^ENGINE_CUDA:STRING=EMU" "$bin/CMakeCache.txt" 2>/dev/null; then
  expect 0 "fp16 loss scaling 2.68435e+08, 4 optimizer steps skipped" env -u CUDA_VISIBLE_DEVICES "$bin/engine-train" \
    --config cfg.yml --device gpu --precision fp16 --iters 4 --save_interval 2 --log_iters 1 --save_dir p16g \
    --opts "loss_scaling={init_loss_scaling: 1099511627776.0, decr_ratio: 0.125}"
  # fp16 at PaddleSeg's scaling (1024, halved after an overflow) with and without CUDA graphs: the
  # first six steps overflow and are skipped (the first eager, the second captured, the others
  # replayed): at O1 the GPU's cuDNN writes the weight gradients in fp16, and this model's largest
  # stays above 65504 down to a scale of 32. Two replayed steps update. The graphs unscale and skip on
  # the device, eager steps on the host; the weights, the momentum and the scale come out the same,
  # bit for bit.
  expect 0 "fp16 loss scaling 16, 6 optimizer steps skipped" env -u CUDA_VISIBLE_DEVICES "$bin/engine-train" \
    --config cfg.yml --device gpu --precision fp16 --iters 8 --save_interval 2 --save_dir p16gon
  expect 0 "fp16 loss scaling 16, 6 optimizer steps skipped" env -u CUDA_VISIBLE_DEVICES "$bin/engine-train" \
    --config cfg.yml --device gpu --precision fp16 --iters 8 --save_interval 2 --save_dir p16goff --cuda_graph off
  cmp -s p16gon/iter_8/model.safetensors p16goff/iter_8/model.safetensors && \
    cmp -s p16gon/iter_8/optimizer.safetensors p16goff/iter_8/optimizer.safetensors || {
    echo "FAIL: fp16 weights after 8 steps differ between --cuda_graph on and off"; fails=$((fails + 1)); }
  cmp -s p16gon/iter_8/model.safetensors p16gon/iter_6/model.safetensors && {
    echo "FAIL: the last two fp16 steps did not change the weights"; fails=$((fails + 1)); }
  expect 0 "Loss scaling 1.71799e+10 restored from the checkpoint" env -u CUDA_VISIBLE_DEVICES "$bin/engine-train" \
    --config cfg.yml --device gpu --precision fp16 --iters 4 --resume_model p16g/iter_2 --save_dir p16r \
    --opts "loss_scaling={init_loss_scaling: 1099511627776.0, decr_ratio: 0.125}"
  expect 0 "[EVAL] #Images: 4 mIoU:" env -u CUDA_VISIBLE_DEVICES "$bin/engine-eval" --config cfg.yml --device gpu \
    --model_path p16g/iter_4 --precision fp16
  expect 0 "precision fp16 (O2: activations stored in fp16" env -u CUDA_VISIBLE_DEVICES "$bin/engine-train" \
    --config cfg.yml --device gpu --precision fp16 --amp_level O2 --iters 2 --save_interval 2 --save_dir p16o2
  # CUDA graphs (train/step_graphs.h): steps replayed from a graph train to the same weights, bit for
  # bit, as eager steps
  expect 0 "CUDA graphs: 3 of 4 steps replayed from 1 capture(s)" env -u CUDA_VISIBLE_DEVICES "$bin/engine-train" \
    --config cfg.yml --device gpu --iters 4 --save_interval 4 --save_dir gon
  expect 0 "CUDA graphs: switched off" env -u CUDA_VISIBLE_DEVICES "$bin/engine-train" --config cfg.yml --device gpu \
    --iters 4 --save_interval 4 --save_dir goff --cuda_graph off
  cmp -s gon/iter_4/model.safetensors goff/iter_4/model.safetensors && \
    cmp -s gon/iter_4/optimizer.safetensors goff/iter_4/optimizer.safetensors || {
    echo "FAIL: PP-LiteSeg weights after 4 steps differ between --cuda_graph on and off"; fails=$((fails + 1)); }
  expect 2 "--cuda_graph: expected auto, on or off, got 'yes'" "$bin/engine-train" --config cfg.yml --cuda_graph yes
fi

# detection: engine-datagen --task det, a one-epoch PaddleX-style run with evaluation, resume, and its errors
expect 0 "wrote 10 train, 3 val detection images of 64x64" "$bin/engine-datagen" --task det --out det --train 10 --val 3 --size 64
cat > det.yml <<YML
model: {type: YOLOv3, backbone: MobileNetV1}
train_dataset:
  type: VOCDetection
  data_dir: det
  file_list: det/train_list.txt
  label_list: det/labels.txt
  transforms: [{type: RandomHorizontalFlip}, {type: Normalize}, {type: BatchRandomResize, target_sizes: [64]}]
eval_dataset:
  type: VOCDetection
  data_dir: det
  file_list: det/val_list.txt
  label_list: det/labels.txt
  transforms: [{type: Resize, target_size: 64}, {type: Normalize}]
train_batch_size: 4
learning_rate: 0.0005
warmup_steps: 2
lr_decay_epochs: [2]
save_interval_epochs: 1
log_interval_steps: 1
num_workers: 0
YML
expect 0 "[TRAIN] Epoch=1/2, Step=2/2, loss_xy=" "$bin/engine-train" det.yml --num_epochs 2 --save_dir dout
expect 2 "--use_ema: is a PaddleSeg flag" "$bin/engine-train" --config det.yml --use_ema
expect 0 "best bbox_map" "$bin/engine-train" det.yml --num_epochs 1 --save_dir dout_b
[ -f dout/epoch_2/model.safetensors ] && [ -f dout/best_model/model.safetensors ] || { echo "FAIL: detection checkpoints missing"; fails=$((fails + 1)); }
# Detection on the emulated GPU with CUDA graphs: several batch shapes (BatchRandomResize), each its
# own graph; the same weights as eager steps, bit for bit
if grep -q "^ENGINE_CUDA:STRING=EMU" "$bin/CMakeCache.txt" 2>/dev/null; then
  sed 's/target_sizes: \[64\]/target_sizes: [64, 96]/' det.yml > det_ms.yml
  expect 0 "steps replayed from 2 capture(s)" env -u CUDA_VISIBLE_DEVICES "$bin/engine-train" det_ms.yml \
    --num_epochs 3 --save_dir dgon --device gpu
  expect 0 "CUDA graphs: switched off" env -u CUDA_VISIBLE_DEVICES "$bin/engine-train" det_ms.yml --num_epochs 3 \
    --save_dir dgoff --device gpu --cuda_graph off
  cmp -s dgon/epoch_3/model.safetensors dgoff/epoch_3/model.safetensors || {
    echo "FAIL: YOLOv3 weights after 3 epochs differ between --cuda_graph on and off"; fails=$((fails + 1)); }
fi
expect 0 "Resume model from dout/epoch_1" "$bin/engine-train" det.yml --num_epochs 2 --resume_checkpoint dout/epoch_1 --save_dir dout2
if grep -qE "avx512_bf16|amx_bf16" /proc/cpuinfo; then  # YOLOv3 with bf16 activations, evaluated at O2 as well
  expect 0 "best bbox_map" "$bin/engine-train" det.yml --num_epochs 1 --precision bf16 --amp_level O2 --save_dir dout_o2
fi
# pretrain_weights as a URL, served on the loopback address: downloaded into the cache, then loaded
# (a Paddle .pdparams file from the test fixtures; its few tensors fit no parameter of this model)
python3 -m http.server 0 --bind 127.0.0.1 --directory "$root/tests/golden/pdparams" >http.log 2>&1 &
http_pid=$!
for i in $(seq 100); do grep -q "port [0-9]" http.log && break; sleep 0.05; done
port=$(grep -o "port [0-9]*" http.log | head -1 | cut -d' ' -f2)
export ENGINE_CACHE_DIR="$work/cache"
expect 0 "Loading pretrained model from $work/cache/pretrained/" "$bin/engine-train" det.yml --num_epochs 1 --save_dir dout_url \
  --pretrain_weights "http://127.0.0.1:$port/dtypes_p4.pdparams"
grep -qF "downloaded dtypes_p4.pdparams" <<<"$last_out" && echo "ok: downloaded once" || { echo "FAIL: no download line"; fails=$((fails + 1)); }
expect 0 "Loading pretrained model from $work/cache/pretrained/" "$bin/engine-train" det.yml --num_epochs 1 --save_dir dout_url2 \
  --pretrain_weights "http://127.0.0.1:$port/dtypes_p4.pdparams"
grep -qF "downloading" <<<"$last_out" && { echo "FAIL: the cached file was downloaded again"; fails=$((fails + 1)); } || echo "ok: the cache is reused"
expect 1 "HTTP 404" "$bin/engine-train" det.yml --num_epochs 1 --save_dir dout_404 --pretrain_weights "http://127.0.0.1:$port/missing.pdparams"
kill "$http_pid" 2>/dev/null
unset ENGINE_CACHE_DIR
expect 2 "Either \`warmup_steps\` be less than 4 or lr_decay_epochs[0] be greater than 2" "$bin/engine-train" det.yml --warmup_steps 5 --save_dir dout3
[ ! -e dout3 ] || { echo "FAIL: the refused run wrote dout3"; fails=$((fails + 1)); }
expect 2 "--iters: is a PaddleSeg flag" "$bin/engine-train" det.yml --iters 5
expect 2 "lr_decay_epochs" "$bin/engine-train" det.yml --lr_decay_epoch 3
expect 2 "--metric: is a detection (PaddleX) flag" "$bin/engine-train" cfg.yml --metric VOC
expect 2 "pretrain_weights and resume_checkpoint cannot be set simultaneously" "$bin/engine-train" det.yml --pretrain_weights w.safetensors --resume_checkpoint dout/epoch_1
expect 0 "[TRAIN] epoch: 1, iter: 2/6" "$bin/engine-train" cfg.yml --num_epochs 1 --train_batch_size 2 --log_interval_steps 2 --save_dir out_epochs

# a multi-process launch is refused (one line, exit 2) rather than training the same run twice
expect 2 "rank 1 of 2" env OMPI_COMM_WORLD_RANK=1 OMPI_COMM_WORLD_SIZE=2 "$bin/engine-train" cfg.yml --save_dir out_mpi
expect 2 "RANK='x' is not an integer" env RANK=x WORLD_SIZE=2 "$bin/engine-train" cfg.yml --save_dir out_mpi

echo "cli_checks: $fails failure(s)"
[ "$fails" -eq 0 ]
