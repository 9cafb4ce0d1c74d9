#!/usr/bin/env bash
# End-to-end checks of data-parallel engine-train on CPU ranks under OpenMPI (a CTest entry,
# `dist_checks`; no GPU needed): only rank 0 writes; resume on 1 rank from a 2-rank checkpoint and
# back; a stop request (SIGTERM) to one rank ends the job non-zero with "Stopped by SIGTERM after
# iter" and a checkpoint; a killed rank ends the job within the timeout with a non-zero exit naming
# it; a hung rank is caught by the collective timeout (exit code 4, one line from the rank left
# waiting, "rank 0 of 2: ... did not complete within 4 s"); no checkpoint is left incomplete; CPU
# ranks without mpirun are refused.
# Usage: scripts/dist_checks.sh BUILD_DIR
set -uo pipefail
bin=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
cleanup() {
  [ -n "${job:-}" ] && kill -9 "$job" 2>/dev/null
  pkill -9 -f "$work/" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
fails=0
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1
export CUDA_VISIBLE_DEVICES=   # CPU ranks, also in a GPU build
mpi=(mpirun --oversubscribe)
train=("$bin/engine-train" --config "$work/cfg.yml" --device cpu)

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
# expect CODE "WORDS" command...: runs the command, checks its exit code and that its output has WORDS.
expect() {
  local code=$1 words=$2; shift 2
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" != "$code" ] || ! grep -qF -- "$words" <<<"$out"; then
    fail "$* -> exit $rc (want $code), output:"; echo "$out" | tail -8; echo "(wanted: $words)"
  else
    ok "exit $rc: $(grep -F -- "$words" <<<"$out" | head -1 | cut -c1-160)"
  fi
  last_out=$out
}
# Every checkpoint folder holds both files and no temporary folder is left.
complete_checkpoints() {
  local dir=$1 d
  for d in "$dir"/iter_*; do
    [ -e "$d" ] || continue
    [ -f "$d/model.safetensors" ] && [ -f "$d/optimizer.safetensors" ] || { fail "$d is incomplete"; return; }
  done
  if find "$dir" -mindepth 1 -maxdepth 1 -name '*tmp*' | grep -q .; then fail "temporary folders left in $dir"; return; fi
  ok "every checkpoint in $dir is complete: $(cd "$dir" && ls -d iter_* 2>/dev/null | tr '\n' ' ')"
}
# The pid of rank R of a running job, from the ranks' environment: OpenMPI's rank variable, or VAR.
rank_pid() {
  local r=$1 var=${2:-OMPI_COMM_WORLD_RANK} p
  for p in $(pgrep -f "$bin/engine-train"); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "$var=$r"; then echo "$p"; return; fi
  done
}
# hang_check LOG VAR PATTERN WHAT command...: starts the job, stops rank 1 (SIGSTOP) once it logged
# iter 3, and expects exit code 4 within 20 s with PATTERN (a grep regex) in LOG.
hang_check() {
  local log=$1 var=$2 pattern=$3 what=$4 start rc took hung_pid; shift 4
  "$@" >"$log" 2>&1 &
  job=$!
  if wait_for "$log" "iter: 3/100000"; then
    start=$(date +%s)
    hung_pid=$(rank_pid 1 "$var")
    kill -STOP "$hung_pid"
    wait "$job"; rc=$?; job=
    took=$(( $(date +%s) - start ))
    kill -9 "$hung_pid" 2>/dev/null
    if [ "$rc" -eq 4 ] && [ "$took" -le 20 ] && grep -q "$pattern" "$log"; then
      ok "$what: exit 4 after ${took} s: $(grep -m1 'did not complete' "$log" | cut -c1-140)"
    else
      fail "$what: exit $rc after ${took} s"; tail -5 "$log"
    fi
  else
    fail "the run of '$what' did not start"; tail -5 "$log"
  fi
}
# Waits (up to 60 s) until FILE contains WORDS.
wait_for() {
  local file=$1 words=$2 i
  for i in $(seq 600); do grep -qF -- "$words" "$file" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

"$bin/engine-datagen" --out data --train 12 --val 4 --size 64 --seed 5 >/dev/null || { echo "FAIL: engine-datagen"; exit 1; }
cat > cfg.yml <<YML
_base_: $root/configs/pp_liteseg_synthetic_256x256.yml
batch_size: 2
iters: 6
model:
  backbone: {type: STDC1}
  arm_out_chs: [32, 64, 128]
  seg_head_inter_chs: [32, 64, 64]
train_dataset:
  dataset_root: $work/data
  train_path: $work/data/train_list.txt
  transforms:
    - type: RandomPaddingCrop
      crop_size: [64, 64]
    - type: Normalize
val_dataset:
  dataset_root: $work/data
  val_path: $work/data/val_list.txt
lr_scheduler:
  warmup_iters: 0
YML

# 1. Two ranks (MPMD: rank 1 is given another save_dir, which must stay untouched): rank 0 alone
#    logs and writes; distributed evaluation over the 4 val images.
expect 0 "engine-train: finished 6 iterations" "${mpi[@]}" -np 1 "${train[@]}" --do_eval --save_interval 3 --log_iters 3 --save_dir "$work/out2" \
  : -np 1 "${train[@]}" --do_eval --save_interval 3 --log_iters 3 --save_dir "$work/rank1_dir"
[ -e rank1_dir ] && fail "rank 1 wrote into its save_dir" || ok "rank 1 wrote nothing"
[ "$(grep -c '\[TRAIN\]' <<<"$last_out")" = 2 ] && ok "one [TRAIN] line per log point" || fail "[TRAIN] lines: $(grep -c '\[TRAIN\]' <<<"$last_out") (want 2: rank 0 alone logs)"
grep -qF "[EVAL] #Images: 4 mIoU" <<<"$last_out" && ok "evaluation counts the 4 val images once" || fail "evaluation line missing"
grep -qF "3 iters per epoch" <<<"$last_out" && ok "12 images / (2 ranks x batch 2) = 3 iters per epoch" || fail "iters per epoch"
[ -f out2/iter_3/model.safetensors ] && [ -f out2/iter_6/optimizer.safetensors ] && [ -f out2/best_model/model.safetensors ] &&
  [ "$(grep -c '"type":"train"' out2/metrics.jsonl)" = 2 ] && ok "checkpoints, best_model and metrics.jsonl from rank 0" ||
  fail "rank 0's outputs missing"
complete_checkpoints out2

# 2. One rank from the 2-rank checkpoint, and two ranks from a 1-rank checkpoint.
expect 0 "trained by 2 rank(s) with batch_size 2 each (global batch 4), this run has 1" "${train[@]}" --resume_model out2/iter_3 --save_dir out1
grep -qF "engine-train: finished 6 iterations" <<<"$last_out" && ok "resumed on 1 rank to iter 6" || fail "1-rank resume did not finish"
expect 0 "engine-train: finished 6 iterations" "${train[@]}" --save_interval 3 --save_dir single
expect 0 "trained by 1 rank(s) with batch_size 2 each (global batch 2), this run has 2" "${mpi[@]}" -np 2 "${train[@]}" --resume_model single/iter_3 --save_dir back2
grep -qF "Resume model from single/iter_3 (iter 3)" <<<"$last_out" && grep -qF "finished 6 iterations" <<<"$last_out" &&
  ok "resumed on 2 ranks from iter 3 to 6" || fail "2-rank resume"
# The position by samples: 3 batches of 2 = 6 samples of epoch 1 trained; one global batch of 4 fits.
grep -qF "epoch 1 continues after 4 of the 6 samples already trained on" <<<"$last_out" &&
  ok "data position mapped by samples (4 of 6)" || fail "the mapped data position is not in the warning"
expect 2 "start them with mpirun" env RANK=0 WORLD_SIZE=2 "${train[@]}" --save_dir nompi
[ -e nompi ] && fail "a refused run wrote nompi/" || ok "nothing written by the refused run"
# 2a. Two ranks at bf16 O2 (activations in bf16; CPU ranks all-reduce f32 gradients by default),
# resumed on one; the same with the gradients all-reduced in bf16 (--allreduce_dtype bf16).
if grep -qE "avx512_bf16|amx_bf16" /proc/cpuinfo; then
  expect 0 "engine-train: finished 6 iterations" "${mpi[@]}" -np 2 "${train[@]}" --precision bf16 --amp_level O2 \
    --save_interval 3 --save_dir o2x2
  grep -qF "precision bf16 (O2" <<<"$last_out" && ok "two ranks trained at bf16 O2" || fail "the O2 line is missing"
  grep -qE "Gradient all-reduce: 2 ranks, [0-9]+ buckets in f32" <<<"$last_out" &&
    ok "f32 gradient buckets on CPU ranks by default" || fail "the default gradient buckets of CPU ranks are not f32"
  expect 0 "engine-train: finished 6 iterations" "${mpi[@]}" -np 2 "${train[@]}" --precision bf16 --amp_level O2 \
    --allreduce_dtype bf16 --save_interval 6 --save_dir o2bf16
  grep -qE "Gradient all-reduce: 2 ranks, [0-9]+ buckets in bf16" <<<"$last_out" &&
    ok "--allreduce_dtype bf16 all-reduces bf16 gradient buckets" || fail "--allreduce_dtype bf16 was not applied"
  expect 0 "engine-train: finished 6 iterations" "${train[@]}" --precision bf16 --amp_level O2 --resume_model o2x2/iter_3 \
    --save_dir o2x1
fi

# 2b. Detection (PaddleX's train_batch_size is the total: 4 = 2 per rank), evaluation on rank 0.
"$bin/engine-datagen" --task det --out det --train 10 --val 3 --size 64 >/dev/null || fail "engine-datagen --task det"
cat > det.yml <<YML
model: {type: YOLOv3, backbone: MobileNetV1}
train_dataset:
  type: VOCDetection
  data_dir: $work/det
  file_list: $work/det/train_list.txt
  label_list: $work/det/labels.txt
  transforms: [{type: RandomHorizontalFlip}, {type: Normalize}, {type: BatchRandomResize, target_sizes: [64]}]
eval_dataset:
  type: VOCDetection
  data_dir: $work/det
  file_list: $work/det/val_list.txt
  label_list: $work/det/labels.txt
  transforms: [{type: Resize, target_size: 64}, {type: Normalize}]
train_batch_size: 4
learning_rate: 0.0005
warmup_steps: 2
lr_decay_epochs: [2]
save_interval_epochs: 1
log_interval_steps: 1
YML
expect 0 "[TRAIN] Epoch=2/2, Step=2/2" "${mpi[@]}" -np 2 "$bin/engine-train" det.yml --device cpu --num_epochs 2 --save_dir dout
[ -f dout/epoch_2/model.safetensors ] && [ -f dout/best_model/model.safetensors ] && ok "detection checkpoints from rank 0" || fail "detection checkpoints missing"
expect 2 "must be divisible by their number (2)" "${mpi[@]}" -np 2 "$bin/engine-train" det.yml --device cpu --train_batch_size 3 --save_dir dout3

# 3. SIGTERM to rank 1 only: the job stops with a non-zero exit, the stop message and a checkpoint
#    (the ranks agree on the stop iteration by design; this checks the outcome, not the iteration).
"${mpi[@]}" -np 2 "${train[@]}" --opts iters=100000 --log_iters 1 --save_interval 100000 --save_dir stop >stop.log 2>&1 &
job=$!
if wait_for stop.log "iter: 3/100000"; then
  kill -TERM "$(rank_pid 1)"
  wait "$job"; rc=$?; job=
  if [ "$rc" -ne 0 ] && grep -qF "Stopped by SIGTERM after iter" stop.log && ls -d stop/iter_* >/dev/null 2>&1; then
    ok "SIGTERM to rank 1: exit $rc, $(grep -oF 'Stopped by SIGTERM after iter' stop.log | head -1) $(ls stop | grep iter_)"
  else
    fail "SIGTERM to rank 1: exit $rc"; tail -5 stop.log
  fi
  complete_checkpoints stop
else
  fail "the stop run did not start"; tail -5 stop.log
fi

# 4. A killed rank: the job ends within the timeout, non-zero, naming the rank; checkpoints stay complete.
"${mpi[@]}" -np 2 "${train[@]}" --opts iters=100000 --log_iters 1 --save_interval 2 --dist_timeout 20 --save_dir killed >killed.log 2>&1 &
job=$!
if wait_for killed.log "iter: 5/100000"; then
  start=$(date +%s)
  kill -9 "$(rank_pid 1)"
  wait "$job"; rc=$?; job=
  took=$(( $(date +%s) - start ))
  if [ "$rc" -ne 0 ] && [ "$took" -le 25 ] && grep -q "rank 1" killed.log; then
    ok "killed rank 1: exit $rc after ${took} s: $(grep -m1 'rank 1' killed.log | cut -c1-120)"
  else
    fail "killed rank 1: exit $rc after ${took} s"; tail -5 killed.log
  fi
  complete_checkpoints killed
else
  fail "the kill run did not start"; tail -5 killed.log
fi

# 5. A hung rank (stopped with SIGSTOP): rank 0's collective times out, the job exits with code 4.
hang_check hung.log OMPI_COMM_WORLD_RANK "rank 0 of 2: .* did not complete within 4 s" "hung rank 1" \
  "${mpi[@]}" -np 2 "${train[@]}" --opts iters=100000 --log_iters 1 --save_interval 100000 --dist_timeout 4 --save_dir hung

# 6. GPU ranks on the emulated GPU (a build with -DENGINE_CUDA=EMU): two processes under engine-launch,
#    one emulated device each, the production NCCL communicator over the emulated NCCL
#    (kernels/emu/nccl_emu.cpp). With and without CUDA graphs of the data-parallel step (captured
#    collectives) the checkpoints are the same bytes, in fp32 and at fp16 O2 (fp16 buckets); GPU ranks
#    under mpirun (the unique id over MPI); two ranks on one GPU are refused; a hung GPU rank is
#    caught by the NCCL watchdog (exit 4).
if grep -q "^ENGINE_CUDA:STRING=EMU" "$bin/CMakeCache.txt" 2>/dev/null; then
  export CUEMU_DEVICE_COUNT=2  # the emulated machine's GPUs
  launch=(env ENGINE_CONV_ALGO=heuristic "$bin/engine-launch" --gpus 0,1)
  gpu_run=("$bin/engine-train" --config "$work/cfg.yml" --device gpu --log_iters 1)
  gpu_train=("${gpu_run[@]}" --iters 4 --save_interval 4)
  expect 0 "CUDA graphs: 3 of 4 steps replayed" "${launch[@]}" "${gpu_train[@]}" --save_dir g_on --cuda_graph on
  grep -qF "Gradient all-reduce: 2 ranks" <<<"$last_out" && ok "two NCCL ranks (emulated)" || fail "no 2-rank all-reduce line"
  expect 0 "CUDA graphs: switched off" "${launch[@]}" "${gpu_train[@]}" --save_dir g_off --cuda_graph off
  cmp -s g_on/iter_4/model.safetensors g_off/iter_4/model.safetensors &&
    cmp -s g_on/iter_4/optimizer.safetensors g_off/iter_4/optimizer.safetensors &&
    ok "2 GPU ranks: the same checkpoint with and without CUDA graphs" || fail "2 GPU ranks: graph and eager checkpoints differ"
  expect 0 "CUDA graphs: 3 of 4 steps replayed" "${launch[@]}" "${gpu_train[@]}" --precision fp16 --amp_level O2 \
    --save_dir g16_on --cuda_graph on
  grep -qE "Gradient all-reduce: 2 ranks, [0-9]+ buckets in f16" <<<"$last_out" && ok "fp16 gradient buckets" ||
    fail "the fp16 O2 run's buckets are not fp16"
  expect 0 "CUDA graphs: switched off" "${launch[@]}" "${gpu_train[@]}" --precision fp16 --amp_level O2 \
    --save_dir g16_off --cuda_graph off
  cmp -s g16_on/iter_4/model.safetensors g16_off/iter_4/model.safetensors &&
    cmp -s g16_on/iter_4/optimizer.safetensors g16_off/iter_4/optimizer.safetensors &&
    ok "2 GPU ranks at fp16 O2: the same checkpoint with and without CUDA graphs" ||
    fail "2 GPU ranks at fp16 O2: graph and eager checkpoints differ"
  # Under mpirun the NCCL unique id travels over MPI instead of a rendezvous file; each rank takes the
  # device of its local rank.
  expect 0 "engine-train: finished 2 iterations" env -u CUDA_VISIBLE_DEVICES ENGINE_CONV_ALGO=heuristic \
    "${mpi[@]}" -np 2 "${gpu_run[@]}" --iters 2 --save_interval 2 --save_dir gmpi
  grep -qF "nccl, device cuda:0" <<<"$last_out" && ok "GPU ranks under mpirun: NCCL, the id over MPI" ||
    fail "GPU ranks under mpirun did not use NCCL"
  # Two ranks on one GPU (each rank sees only device 0): NCCL refuses them, the job ends non-zero.
  expect 1 "Duplicate GPU detected" env CUDA_VISIBLE_DEVICES=0 "${mpi[@]}" -np 2 "${gpu_run[@]}" --iters 2 --save_dir gdup
  [ -e gdup ] && fail "the refused job wrote gdup/" || ok "nothing written by the refused job"
  # A hung GPU rank (SIGSTOP): the other's collective times out under the NCCL watchdog.
  hang_check ghung.log RANK "rank 0 of 2: .*(nccl) did not complete within 4 s" "hung GPU rank 1" \
    env ENGINE_CONV_ALGO=heuristic "$bin/engine-launch" --gpus 0,1 --grace_seconds 2 \
    "${gpu_run[@]}" --iters 100000 --save_interval 100000 --dist_timeout 4 --save_dir ghung
fi

if [ "$fails" -ne 0 ]; then echo "dist_checks: $fails check(s) FAILED"; exit 1; fi
echo "dist_checks: all passed"
