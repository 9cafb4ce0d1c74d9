#!/usr/bin/env python3
"""PaddleSeg's own PP-LiteSeg and this engine give the same logits from the same .pdparams file.

Builds PaddleSeg's PP-LiteSeg-T (STDC1, 2 classes) with random weights (batch-norm statistics randomised
too, so they matter), saves its state dict with paddle.save as model.pdparams, runs it in eval mode on a
fixed random image, then runs `engine-predict --model_path model.pdparams --save_logits` on the same PNG
and compares the logits element by element. Not part of the default test run (it needs paddlepaddle and
paddleseg from PyPI).

Run:  pip install paddlepaddle paddleseg "numpy<1.24"
      python3 tools/check_pdparams_logits.py build/release [--height 96 --width 128 --seed 3]
Exit code 0 when the largest difference is within --tol of the logits' scale, 1 otherwise.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build_dir", help="folder holding engine-predict")
    ap.add_argument("--height", type=int, default=96)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--tol", type=float, default=1e-4, help="max |engine - paddle| / max |paddle| allowed")
    args = ap.parse_args()

    import cv2
    import paddle
    from paddleseg.models import PPLiteSeg
    from paddleseg.models.backbones import STDC1

    paddle.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = PPLiteSeg(num_classes=2, backbone=STDC1(), arm_out_chs=[32, 64, 128], seg_head_inter_chs=[32, 64, 64])
    state = model.state_dict()
    for name, t in state.items():  # statistics and affine parameters away from 0/1, so a swap would show
        if name.endswith("._mean") or name.endswith(".bias"):
            t.set_value(rng.normal(0, 0.1, t.shape).astype("float32"))
        elif name.endswith("._variance"):
            t.set_value(rng.uniform(0.5, 2.0, t.shape).astype("float32"))
    model.eval()

    with tempfile.TemporaryDirectory() as work:
        weights = os.path.join(work, "model.pdparams")
        paddle.save(model.state_dict(), weights)
        image = rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)  # RGB
        png = os.path.join(work, "probe.png")
        cv2.imwrite(png, image[:, :, ::-1])  # cv2 writes BGR
        # PaddleSeg's Normalize (mean 0.5, std 0.5 on [0, 1]) and NCHW, as the engine's val pipeline.
        x = (image.astype("float32") / 255.0 - 0.5) / 0.5
        with paddle.no_grad():
            ref = model(paddle.to_tensor(x.transpose(2, 0, 1)[None]))[0].numpy()[0].transpose(1, 2, 0)  # [H, W, C]

        cfg = os.path.join(work, "cfg.yml")
        with open(os.path.join(work, "list.txt"), "w") as f:
            f.write("probe.png probe.png\n")
        with open(cfg, "w") as f:
            f.write(
                "batch_size: 1\niters: 1\n"
                "model:\n  type: PPLiteSeg\n  num_classes: 2\n  backbone: {type: STDC1}\n"
                "  arm_out_chs: [32, 64, 128]\n  seg_head_inter_chs: [32, 64, 64]\n"
                f"train_dataset:\n  type: Dataset\n  dataset_root: {work}\n  train_path: {work}/list.txt\n"
                "  num_classes: 2\n  mode: train\n  transforms: [{type: Normalize}]\n"
                f"val_dataset:\n  type: Dataset\n  dataset_root: {work}\n  val_path: {work}/list.txt\n"
                "  num_classes: 2\n  mode: val\n  transforms: [{type: Normalize}]\n"
                "optimizer: {type: SGD, momentum: 0.9, weight_decay: 4.0e-5}\n"
                "lr_scheduler: {type: PolynomialDecay, learning_rate: 0.01, end_lr: 0, power: 0.9}\n"
                "loss: {types: [{type: CrossEntropyLoss}], coef: [1, 1, 1]}\n")
        out_dir = os.path.join(work, "res")
        cmd = [os.path.join(args.build_dir, "engine-predict"), "--config", cfg, "--model_path", weights,
               "--image_path", png, "--save_dir", out_dir, "--save_logits", "--device", "cpu"]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            print("check_pdparams_logits: engine-predict failed:", run.stdout + run.stderr)
            return 1
        got = np.load(os.path.join(out_dir, "logits", "probe.npy"))

    if got.shape != ref.shape:
        print(f"check_pdparams_logits: FAIL: engine logits {got.shape}, Paddle's {ref.shape}")
        return 1
    scale = float(np.abs(ref).max())
    diff = float(np.abs(got - ref).max())
    agree = float((got.argmax(-1) == ref.argmax(-1)).mean())
    print(f"PP-LiteSeg-T (STDC1, 2 classes), {args.height}x{args.width}, paddle {paddle.__version__}: "
          f"max |engine - paddle| = {diff:.3g} (logits up to {scale:.3g}, relative {diff / scale:.3g}); "
          f"argmax agrees on {100 * agree:.3f} % of the pixels")
    if diff > args.tol * scale:
        print(f"check_pdparams_logits: FAIL: relative difference {diff / scale:.3g} > {args.tol}")
        return 1
    print("check_pdparams_logits: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
