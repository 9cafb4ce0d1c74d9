#!/usr/bin/env python3
"""Kills engine-train with SIGKILL at random moments, many times, and checks that no work is lost
(a CTest entry, `crash_safety`; docs/TRAINING.md "What survives").

Each round resumes from the newest checkpoint in one --save_dir (checkpoints every iteration, with
evaluation, so most kills fall in or near a save) and is killed after a random delay. After every
kill:
  - every iter_N/ and best_model/ folder loads completely (engine-train --resume_model with
    --iters N checks names, shapes and checksums of both files and stops: "Nothing to train";
    best_model/ through engine-eval), i.e. a folder under a final name is never partial;
  - temporaries of the killed process may remain, but none of an earlier process survives the
    next start (the next round's first log line comes after the clean-up).
At the end a last run resumes from the newest checkpoint to the final iteration. Bounded by
--seconds (default 45). Fixed seed: the same delays in every run.
Usage: python3 scripts/crash_safety_check.py BUILD_DIR [--seconds S] [--seed N]
"""
import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build_dir")
    ap.add_argument("--seconds", type=float, default=45.0)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    bin_dir = os.path.abspath(args.build_dir)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rng = random.Random(args.seed)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_WAIT_POLICY="PASSIVE")
    failures = []
    iters = 400

    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)
        subprocess.run([f"{bin_dir}/engine-datagen", "--out", "data", "--train", "8", "--val", "2", "--size", "64",
                        "--seed", "5"], check=True, stdout=subprocess.DEVNULL, env=env)
        with open("cfg.yml", "w") as f:
            f.write(f"""_base_: {root}/configs/pp_liteseg_synthetic_256x256.yml
batch_size: 2
iters: {iters}
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
""")
        train = [f"{bin_dir}/engine-train", "--config", "cfg.yml", "--save_dir", "out", "--log_iters", "1"]

        def newest_checkpoint():
            if not os.path.isdir("out"):
                return None
            ns = [int(m.group(1)) for d in os.listdir("out") if (m := re.fullmatch(r"iter_(\d+)", d))]
            return f"out/iter_{max(ns)}" if ns else None

        def temporaries():
            if not os.path.isdir("out"):
                return set()
            return {d for d in os.listdir("out") if re.fullmatch(r"\..+\.(tmp|old)-\d+", d)}

        def check_folders(round_no):
            for d in sorted(os.listdir("out")):
                m = re.fullmatch(r"iter_(\d+)", d)
                if m:
                    r = subprocess.run(train[:3] + ["--resume_model", f"out/{d}", "--iters", m.group(1),
                                                    "--save_dir", "check"], capture_output=True, text=True, env=env)
                    if r.returncode != 0 or "Nothing to train" not in r.stdout:
                        failures.append(f"round {round_no}: out/{d} does not load: {r.stderr.strip()}")
                elif d == "best_model":
                    r = subprocess.run([f"{bin_dir}/engine-eval", "--config", "cfg.yml", "--model_path", "out/best_model"],
                                       capture_output=True, text=True, env=env)
                    if r.returncode != 0:
                        failures.append(f"round {round_no}: out/best_model does not load: {r.stderr.strip()}")

        start = time.monotonic()
        rounds = kills_in_save = 0
        left_behind = set()  # temporaries present after the previous kill
        while time.monotonic() - start < args.seconds:
            rounds += 1
            ck = newest_checkpoint()
            cmd = train + ["--save_interval", "1", "--do_eval", "--keep_checkpoint_max", "3"]
            # Killed before its first checkpoint, a run leaves results (metrics.jsonl, perhaps best_model/)
            # but nothing to resume: starting again in that folder needs --overwrite, as it would for a user.
            cmd += ["--resume_model", ck] if ck else (["--overwrite"] if os.path.isdir("out") else [])
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            # The first [TRAIN] line comes after start-up (lock, clean-up of temporaries).
            deadline = time.monotonic() + 60
            started = False
            while time.monotonic() < deadline:
                line = p.stdout.readline()
                if not line:
                    break
                if "[TRAIN]" in line:
                    started = True
                    break
            if not started:
                p.kill()
                p.wait()
                failures.append(f"round {rounds}: engine-train did not start: {p.stderr.read().strip()[-300:]}")
                break
            stale = left_behind & temporaries()
            if stale:
                failures.append(f"round {rounds}: temporaries of a killed process survived the start: {sorted(stale)}")
            time.sleep(rng.uniform(0.0, 0.6))
            p.send_signal(signal.SIGKILL)
            p.wait()
            p.stdout.close()
            p.stderr.close()
            left_behind = temporaries()
            kills_in_save += bool(left_behind)
            check_folders(rounds)
            if failures:
                break

        # The run goes on to its end from whatever the kills left.
        ck = newest_checkpoint()
        final = subprocess.run(train + ["--save_interval", "50"] + (["--resume_model", ck] if ck else ["--overwrite"]) +
                               ["--iters", str(int(ck.split("_")[-1]) + 3 if ck else 3)],
                               capture_output=True, text=True, env=env)
        if final.returncode != 0:
            failures.append(f"the final resume failed: {final.stderr.strip()}")
        if temporaries():
            failures.append(f"temporaries left after the final run: {sorted(temporaries())}")
        shutil.rmtree("check", ignore_errors=True)

    print(f"crash_safety: {rounds} kills in {time.monotonic() - start:.0f} s, {kills_in_save} left a temporary folder "
          f"(killed during a save); newest checkpoint {ck}")
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
