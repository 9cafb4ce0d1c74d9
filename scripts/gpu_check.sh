#!/usr/bin/env bash
# The checks to run on a machine with a real NVIDIA GPU (docs/GPU.md records the results), in three
# stages, most valuable first, so that a session cut short still brings back the targets:
#   targets  bench_train of the targets: PP-LiteSeg-B at 512x512 in fp32 and bf16 O2 at batch
#            4 and 16 (bf16 with CUDA graphs and eagerly), YOLOv3-DarkNet53 at 608 batch 8 the same,
#            and the step's roofline for both in bf16 O2;
#   tests    the GPU test programs and the CPU-vs-GPU model and trainer tests;
#   more     the other precisions and AMP levels (tf32, bf16 O1, fp16 O1 / O2), the cross-entropy and
#            softmax kernel rows, the hand-written backward-data kernel against cuDNN's (kernel rows
#            and the DarkNet53 step), and the fp32 / O1 rooflines.
#   bash scripts/gpu_check.sh BUILD_DIR OUT_DIR [STAGE ...]     (default: targets tests more)
# BUILD_DIR: a -DENGINE_CUDA=REAL build (scripts/build.sh cuda). Every stage appends to OUT_DIR/<stage>.log
# as it goes (one JSON per bench_train run beside it); each command is limited to STEP_TIMEOUT seconds
# (default 300). The exit status is non-zero when a test fails.
set -uo pipefail
bin=$(cd "$1" && pwd)
out=$2
shift 2
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(targets tests more)
limit=${STEP_TIMEOUT:-300}
mkdir -p "$out"
status=0

# bench NAME ARGS...: one bench_train run, its JSON as OUT_DIR/NAME.json, its last lines in the log.
bench() {
  local name=$1
  shift
  echo "--- $name: bench_train $*"
  timeout "$limit" "$bin/bench_train" --device gpu "$@" --json "$out/$name.json" 2>&1 | tail -3
}
# roofline NAME ARGS...: the median and the roofline table of a profiled run.
roofline() {
  local name=$1
  shift
  echo "--- $name: bench_train --roofline $*"
  timeout "$limit" "$bin/bench_train" --device gpu "$@" --steps 5 --roofline --json "$out/$name.json" 2>&1 |
    sed -n '/^median/p;/^roofline on/,$p'
}

stage_targets() {
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  for b in 4 16; do
    bench "B_b${b}_fp32-O1" --model B --batch "$b" --precision fp32 --steps 10 --no-profile
    bench "B_b${b}_bf16-O2_graph" --model B --batch "$b" --precision bf16 --amp_level O2 --steps 10 --no-profile \
      --cuda_graph
    bench "B_b${b}_bf16-O2" --model B --batch "$b" --precision bf16 --amp_level O2 --steps 10 --no-profile
  done
  local d53=(--model yolov3_darknet53 --size 608 --batch 8)
  bench darknet53_608_b8_fp32-O1 "${d53[@]}" --precision fp32 --steps 5 --no-profile
  bench darknet53_608_b8_bf16-O2_graph "${d53[@]}" --precision bf16 --amp_level O2 --steps 5 --no-profile --cuda_graph
  bench darknet53_608_b8_bf16-O2 "${d53[@]}" --precision bf16 --amp_level O2 --steps 5 --no-profile
  roofline roofline_B_b4_bf16_O2 --model B --batch 4 --precision bf16 --amp_level O2
  roofline roofline_B_b16_bf16_O2 --model B --batch 16 --precision bf16 --amp_level O2
  roofline roofline_darknet53_608_b8_bf16_O2 "${d53[@]}" --precision bf16 --amp_level O2
}

stage_tests() {
  for t in test_conv_gpu test_gemm_gpu test_cuda_graph test_optim test_loss test_resize test_softmax test_conv \
    test_models test_det_models test_trainer test_nccl_gpu; do
    echo "=== $t"
    timeout "$limit" "$bin/tests/$t" 2>&1 | tail -25
    local rc=${PIPESTATUS[0]}
    echo "=== $t exit $rc"
    [ "$rc" -eq 0 ] || [ "$rc" -eq 77 ] || status=1
  done
}

stage_more() {
  for mode in tf32-O1 bf16-O1 fp16-O1 fp16-O2; do
    local p=${mode%-*} l=${mode#*-}
    for b in 4 16; do
      bench "B_b${b}_$mode" --model B --batch "$b" --precision "$p" --amp_level "$l" --steps 10 --no-profile
    done
    bench "darknet53_608_b8_$mode" --model yolov3_darknet53 --size 608 --batch 8 --precision "$p" --amp_level "$l" \
      --steps 5 --no-profile
  done
  # Cross entropy on f32 and on bf16 logits (O2's full-size logits, widened as the staged tiles are fetched)
  timeout "$limit" "$bin/bench_kernels" --device gpu --filter cross_entropy 2>&1 | grep -E "cross_entropy|failed"
  timeout "$limit" "$bin/bench_kernels" --device gpu --filter softmax 2>&1 | grep -E "softmax|argmax|failed"
  # Rewritten without a GPU after the last measurements: resize (row grids, two-pass backward),
  # fill, add_inplace, the strided kernels' 32-bit index unravelling (broadcast add / mul, permute),
  # the vectorised float casts and unary backward kernels, the conv weights' OIHW <-> OHWI copies
  # (copy_rows_kernel: the permute rows named OIHW / OHWI), batch norm's batched loads (the
  # upsampled cross entropy's fused kernels are in the cross_entropy rows above)
  for f in resize elementwise batch_norm; do
    timeout "$limit" "$bin/bench_kernels" --device gpu --filter "$f" 2>&1 | grep -E "$f|failed"
  done
  # The hand-written stride-2 backward-data against cuDNN: kernel rows in fp32, bf16 and fp16 (the op's
  # rows are cuDNN's choice, the direct kernel's rows the kernel alone), then the DarkNet53 step with
  # cuDNN forced and with the automatic choice, in fp32 and in bf16 O2 (the kernel's bf16 variant
  # against cuDNN's tensor-core algorithms).
  ENGINE_BENCH_CONV_NET=DarkNet timeout "$limit" "$bin/bench_kernels" --device gpu --filter conv 2>&1 |
    grep -E "bwd_data|failed"
  for precision in fp32 bf16; do
    for mode in cudnn auto; do
      echo "ENGINE_CONV_BWD_DATA=$mode, $precision"
      ENGINE_CONV_BWD_DATA=$mode timeout "$limit" "$bin/bench_train" --model yolov3_darknet53 --size 608 --batch 8 \
        --device gpu --steps 5 --precision $precision --amp_level "$([ $precision = bf16 ] && echo O2 || echo O1)" \
        --json "$out/darknet53_608_b8_${precision}_bwd_data_$mode.json" 2>&1 | grep -E "median|conv2d_backward_data"
    done
  done
  roofline roofline_B_b4_fp32_O1 --model B --batch 4 --precision fp32
  roofline roofline_B_b4_bf16_O1 --model B --batch 4 --precision bf16
}

for s in "${stages[@]}"; do
  case "$s" in
    targets | tests | more) "stage_$s" >>"$out/$s.log" 2>&1 ;;
    *)
      echo "gpu_check: unknown stage '$s' (expected targets, tests or more)" >&2
      exit 2
      ;;
  esac
  echo "gpu_check: stage $s done ($(date +%T)); $out/$s.log"
done
echo "gpu_check: tests $([ $status = 0 ] && echo passed || echo FAILED); results in $out"
exit $status
