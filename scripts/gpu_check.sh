#!/usr/bin/env bash
# The checks to run on a machine with a real NVIDIA GPU, in one go (docs/GPU.md records the results):
# the GPU test programs and the CPU-vs-GPU model and trainer tests of a REAL build, then bench_train
# in every precision and AMP level (PP-LiteSeg-B at 512x512, batch 4 and 16; YOLOv3-DarkNet53 at 608,
# batch 8), with CUDA graphs against eager launches, the step's roofline, and
# the hand-written backward-data kernel against cuDNN's (kernel rows and the DarkNet53 step).
#   bash scripts/gpu_check.sh BUILD_DIR OUT_DIR
# BUILD_DIR: a -DENGINE_CUDA=REAL build (scripts/build.sh cuda). Everything goes to OUT_DIR
# (tests.log, bench.log, roofline.log, one JSON per bench_train run); the exit status is non-zero when a test fails.
set -uo pipefail
bin=$(cd "$1" && pwd)
out=$2
mkdir -p "$out"
status=0
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  for t in test_conv_gpu test_gemm_gpu test_cuda_graph test_models test_det_models test_trainer test_optim test_conv \
    test_loss test_resize test_softmax; do
    echo "=== $t"
    "$bin/tests/$t" 2>&1 | tail -25
    rc=${PIPESTATUS[0]}
    echo "=== $t exit $rc"
    [ "$rc" -eq 0 ] || [ "$rc" -eq 77 ] || status=1
  done
} > "$out/tests.log" 2>&1
{
  for mode in fp32-O1 tf32-O1 bf16-O1 bf16-O2 fp16-O1 fp16-O2; do
    p=${mode%-*} l=${mode#*-}
    for b in 4 16; do
      "$bin/bench_train" --model B --batch "$b" --device gpu --precision "$p" --amp_level "$l" --steps 10 \
        --no-profile --json "$out/B_b${b}_$mode.json" 2>&1 | tail -2
    done
    "$bin/bench_train" --model yolov3_darknet53 --size 608 --batch 8 --device gpu --precision "$p" --amp_level "$l" \
      --steps 5 --no-profile --json "$out/darknet53_608_b8_$mode.json" 2>&1 | tail -2
  done
  # CUDA graph against eager launches (the same step, bf16 O2, the two batch sizes)
  for b in 4 16; do
    "$bin/bench_train" --model B --batch "$b" --device gpu --precision bf16 --amp_level O2 --steps 10 --no-profile \
      --cuda_graph --json "$out/B_b${b}_bf16-O2_graph.json" 2>&1 | tail -2
  done
  "$bin/bench_train" --model yolov3_darknet53 --size 608 --batch 8 --device gpu --precision bf16 --amp_level O2 \
    --steps 5 --no-profile --cuda_graph --json "$out/darknet53_608_b8_bf16-O2_graph.json" 2>&1 | tail -2
  # Cross entropy on f32 and on bf16 logits (O2's full-size logits, widened as the staged tiles are fetched)
  "$bin/bench_kernels" --device gpu --filter cross_entropy 2>&1 | grep -E "cross_entropy|failed"
  "$bin/bench_kernels" --device gpu --filter softmax 2>&1 | grep -E "softmax|argmax|failed"
  # The hand-written stride-2 backward-data against cuDNN: kernel rows, then the DarkNet53 step with
  # cuDNN forced and with the automatic choice.
  ENGINE_BENCH_CONV_NET=DarkNet "$bin/bench_kernels" --filter conv 2>&1 | grep -E "bwd_data|failed"
  for mode in cudnn auto; do
    echo "ENGINE_CONV_BWD_DATA=$mode"
    ENGINE_CONV_BWD_DATA=$mode "$bin/bench_train" --model yolov3_darknet53 --size 608 --batch 8 --device gpu \
      --steps 5 --json "$out/darknet53_608_b8_fp32_bwd_data_$mode.json" 2>&1 | grep -E "median|conv2d_backward_data"
  done
} > "$out/bench.log" 2>&1
{
  for run in "B 4 fp32 O1" "B 4 bf16 O1" "B 4 bf16 O2" "B 16 bf16 O2"; do
    set -- $run
    "$bin/bench_train" --model "$1" --batch "$2" --device gpu --precision "$3" --amp_level "$4" --steps 5 --roofline \
      --json "$out/roofline_$1_b$2_$3_$4.json" 2>&1 | sed -n '/^median/p;/^roofline on/,$p'
  done
  "$bin/bench_train" --model yolov3_darknet53 --size 608 --batch 8 --device gpu --precision bf16 --amp_level O2 \
    --steps 5 --roofline --json "$out/roofline_darknet53_608_b8_bf16_O2.json" 2>&1 | sed -n '/^median/p;/^roofline on/,$p'
} > "$out/roofline.log" 2>&1
echo "gpu_check: tests $([ $status = 0 ] && echo passed || echo FAILED); results in $out"
exit $status
