#!/usr/bin/env bash
# Command-line checks that engine-train never loses work (a CTest entry, `run_safety_checks`;
# docs/TRAINING.md "What survives"): a second run into the same --save_dir is refused and leaves
# every file as it was; --overwrite replaces; resume continues in its own folder but not over newer
# checkpoints; another batch_size or train set is refused, other optimizer settings warn; divergence
# after a resume names the checkpoint resumed from; stale temporaries are removed; a live run's
# folder is refused to a second run; SIGINT and SIGTERM stop with a checkpoint and one line saying
# where to resume, a second signal stops at once; damaged checkpoint headers name the file.
# Usage: scripts/run_safety_checks.sh BUILD_DIR
set -uo pipefail
[ -n "${RUN_SAFETY_TRACE:-}" ] && set -x
bin=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
fails=0
export CUDA_VISIBLE_DEVICES=   # the CPU, also in a GPU build
export OMP_WAIT_POLICY=PASSIVE

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# expect CODE "WORDS" command...: runs the command, checks its exit code and that its output has WORDS.
expect() {
  local code=$1 words=$2; shift 2
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -ne "$code" ] || ! grep -qF -- "$words" <<<"$out"; then
    fail "$* -> exit $rc (want $code), output:"; echo "$out" | tail -5; echo "(wanted: $words)"
  else
    echo "ok: exit $rc: $(grep -F -- "$words" <<<"$out" | head -1 | cut -c1-160)"
  fi
}
# fingerprint DIR: every file under DIR with its checksum (names sorted), to prove nothing changed.
fingerprint() { (cd "$1" && find . -type f ! -name .lock -print0 | sort -z | xargs -0 sha256sum); }
# wait_for FILE WORDS: until FILE contains WORDS (at most 60 s).
wait_for() {
  for _ in $(seq 600); do grep -qF -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  fail "timed out waiting for '$2' in $1"; return 1
}
dead_pid() { sh -c 'echo $$'; }

"$bin/engine-datagen" --out data --train 12 --val 4 --size 64 --seed 5 >/dev/null || fail "engine-datagen"
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
train() { "$bin/engine-train" --config cfg.yml --log_iters 1 "$@"; }
# background runs: the program itself, not a subshell, so that $! is its pid
long_run=("$bin/engine-train" --config cfg.yml --log_iters 1 --iters 100000 --save_interval 100000)

# 1. a second fresh run into the same folder is refused and changes nothing
expect 0 "finished 6 iterations" train --do_eval --save_interval 3 --save_dir out
before=$(fingerprint out)
expect 2 "already holds the results of a run (iter_3/, iter_6/, best_model/ (iter" train --do_eval --save_interval 3 --save_dir out
expect 2 "add --resume_model out/iter_6" train --save_dir out --seed 9
[ "$(fingerprint out)" == "$before" ] || fail "a refused run changed out/"
# ... unless asked to overwrite
cp -r out keep
expect 0 "--overwrite: deleted iter_3, iter_6, best_model, metrics.jsonl" train --save_interval 2 --save_dir keep --overwrite
[ -d keep/iter_2 ] && [ ! -d keep/iter_3 ] && [ ! -d keep/best_model ] || fail "--overwrite left the earlier run"

# 2. resume in the checkpoint's own folder keeps its earlier checkpoints; newer ones are refused
expect 0 "Resume model from out/iter_6" train --save_interval 3 --save_dir out --resume_model out/iter_6 --iters 9
[ -d out/iter_3 ] && [ -d out/iter_9 ] || fail "resume into out/ lost its earlier checkpoints"
before=$(fingerprint out)
expect 2 "holds checkpoints newer than iter 3 (iter_6/, iter_9/)" train --save_dir out --resume_model out/iter_3 --iters 9
[ "$(fingerprint out)" == "$before" ] || fail "a refused resume changed out/"
expect 2 "already holds the results of another run" train --save_dir keep --resume_model out/iter_3 --iters 9

# 3. a resume that cannot be exact is refused naming both values; optimizer changes warn
expect 2 "out/iter_3: the checkpoint was trained with batch_size 2, this run has batch_size 1" \
  train --save_dir b1 --resume_model out/iter_3 --batch_size 1
expect 2 "the checkpoint was trained with batch_size 2, this run has batch_size 4" \
  train --save_dir b4 --resume_model out/iter_3 --batch_size 4
head -n 5 data/train_list.txt > data/short_list.txt
expect 2 "the checkpoint was trained on 12 training images" \
  train --save_dir short --resume_model out/iter_3 --opts train_dataset.train_path=data/short_list.txt
expect 0 "the checkpoint was trained with momentum 0.9, weight_decay 4e-05; this run uses momentum 0.5" \
  train --save_dir mom --resume_model out/iter_3 --opts optimizer.momentum=0.5
[ ! -e b1 ] || [ -z "$(ls -A b1 | grep -v '^.lock$')" ] || fail "a refused resume wrote into b1/"

# 4. divergence after a resume names the checkpoint resumed from
expect 3 "Last good checkpoint: out/iter_3." train --save_dir hot --resume_model out/iter_3 --iters 40 --learning_rate 1e30

# 5. temporaries of dead processes are removed at start-up
dead=$(dead_pid)
mkdir -p out/.iter_12.tmp-"$dead" && echo partial > out/.iter_12.tmp-"$dead"/model.safetensors
mkdir -p out/.best_model.tmp-"$dead"
expect 0 "Removed out/.iter_12.tmp-$dead" train --save_interval 3 --save_dir out --resume_model out/iter_9 --iters 10
ls -a out | grep -q "tmp-" && fail "temporaries left in out/: $(ls -a out | grep tmp-)"

# 6. a live run's folder is refused to a second run; SIGTERM stops the first with a checkpoint
"${long_run[@]}" --save_dir busy > busy.log 2> busy.err &
busy=$!
if wait_for busy.log "iter: 3/"; then
  expect 2 "--save_dir 'busy' is in use by another engine-train (pid $busy)" train --save_dir busy --overwrite
  kill -TERM "$busy"; wait "$busy"; rc=$?
  [ "$rc" -eq 143 ] || fail "SIGTERM: exit $rc (want 143)"
  grep -q "engine-train: stopped by SIGTERM after iter [0-9]*; resume with --resume_model busy/iter_[0-9]* --save_dir busy" busy.err \
    || fail "SIGTERM: no resume line: $(cat busy.err)"
  ck=$(grep -o "busy/iter_[0-9]*" busy.err | head -1)
  n=${ck#busy/iter_}
  expect 0 "Resume model from $ck (iter $n)" train --save_dir busy --resume_model "$ck" --iters $((n + 2))
  ls -a busy | grep -q "tmp-" && fail "temporaries left in busy/"
fi

# 7. SIGINT: the same, exit 130; with --no_save_on_stop nothing is written
"${long_run[@]}" --save_dir int > int.log 2> int.err &
pid=$!
if wait_for int.log "iter: 2/"; then
  kill -INT "$pid"; wait "$pid"; rc=$?
  [ "$rc" -eq 130 ] || fail "SIGINT: exit $rc (want 130)"
  grep -q "stopped by SIGINT after iter [0-9]*; resume with --resume_model int/iter_" int.err || fail "SIGINT: $(cat int.err)"
  [ "$(grep -c "^engine-train:" int.err)" -eq 2 ] || fail "SIGINT: expected the notice and one line on stderr: $(cat int.err)"
fi
"${long_run[@]}" --save_dir nosave --no_save_on_stop > nosave.log 2> nosave.err &
pid=$!
if wait_for nosave.log "iter: 2/"; then
  kill -INT "$pid"; wait "$pid"
  grep -q "no checkpoint to resume from" nosave.err || fail "--no_save_on_stop: $(cat nosave.err)"
  ls nosave | grep -q iter_ && fail "--no_save_on_stop wrote a checkpoint"
fi
# a second signal stops at once, without the graceful stop's line
# (batches of 12: a step long enough for the second signal to arrive within it; the second is sent
# once the first has been handled, as two pending signals of one kind are delivered once)
"${long_run[@]}" --save_dir twice --batch_size 12 > twice.log 2> twice.err &
pid=$!
if wait_for twice.log "iter: 2/"; then
  kill -INT "$pid"; wait_for twice.err "stop requested"; kill -INT "$pid"; wait "$pid"; rc=$?
  [ "$rc" -eq 130 ] || fail "second SIGINT: exit $rc (want 130)"
  grep -q "stopped by" twice.err && fail "second SIGINT: the run stopped gracefully instead of at once"
fi

# 8. damaged checkpoint headers name the file (every loader: engine-eval here)
mkdir -p bad
python3 - out/iter_6/model.safetensors bad <<'PY'
import json, struct, sys
src, out = sys.argv[1], sys.argv[2]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header, data = raw[8:8 + n].decode(), raw[8 + n:]
def write(name, text):
    text += " " * ((8 - len(text) % 8) % 8)
    open(f"{out}/{name}", "wb").write(struct.pack("<Q", len(text)) + text.encode() + data)
write("overflow.safetensors", header.replace('"shape":[', '"shape":[1e400,', 1))
h = json.loads(header)
# two tensors of the same size exchange their data: valid JSON, valid layout, another model
a = next(k for k in h if k.endswith("._mean")); b = a[: -len("_mean")] + "_variance"
h[a]["data_offsets"], h[b]["data_offsets"] = h[b]["data_offsets"], h[a]["data_offsets"]
write("swapped.safetensors", json.dumps(h, separators=(",", ":")))
PY
expect 1 "bad/overflow.safetensors" "$bin/engine-eval" --config cfg.yml --model_path bad/overflow.safetensors
expect 1 "checkpoint 'bad/swapped.safetensors': checksum mismatch" "$bin/engine-eval" --config cfg.yml --model_path bad/swapped.safetensors

echo "run_safety_checks: $fails failure(s)"
[ "$fails" -eq 0 ]
