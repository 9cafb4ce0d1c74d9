#!/usr/bin/env python3
"""Golden values of the YOLOv3 loss from PaddleDetection, for tests/test_yolo_loss.cpp.

Runs PaddleDetection's own Gt2YoloTarget (ppdet/data/transform/batch_operators.py) and YOLOv3Loss
(ppdet/modeling/losses/yolo_loss.py) in float32 on the CPU on fixed inputs and writes the five
loss terms and the gradient of `loss` w.r.t. each head (transposed to the engine's NHWC layout).

How to run (needs network access for pip; written with paddlepaddle 3.3.1, paddledet 2.6.0,
numpy 1.26.4, scikit-learn):
    python3 -m venv .venv-paddle && .venv-paddle/bin/pip install paddlepaddle paddledet scikit-learn "numpy<2"
    .venv-paddle/bin/python tools/gen_yolo_loss_golden.py > tests/golden/yolo_loss/yolo_loss.json

Inputs (no random generator, so the C++ test rebuilds them exactly): network input 64x64 (heads
2x2, 4x4, 8x8, stride 32, 16, 8), batch 2, 2 classes, 6 gt rows per image, the default COCO anchors
and masks. Head element k (row-major NHWC index) of head s holds
    v = ((k * 7919 + s * 104729) % 4001 - 2000) / 1000      (in [-2, 2], as float32)
times 0.75 on the tw / th channels (channel % 7 in {2, 3}); then the "plants" overwrite a few
elements so that one negative prediction decodes onto a gt (IoU > 0.7, ignored). The gts cover
every scale (one box larger than the image reaches the stride-32 anchors at this small input), a
collision of two gts on one prediction, mixup scores, a padded row, a row with score 0 and a centre
at x = 0.999.
"""
import contextlib
import json
import math
import sys

import numpy as np
import paddle

with contextlib.redirect_stdout(sys.stderr):  # ppdet prints warnings on import
    from ppdet.data.transform.batch_operators import Gt2YoloTarget
    from ppdet.modeling.losses.yolo_loss import YOLOv3Loss

IN = 64
N, B, C = 2, 6, 2
ANCHORS = [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198], [373, 326]]
MASKS = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
DOWNSAMPLE = [32, 16, 8]
L = 3 * (5 + C)

# (cx, cy, w, h, class, score) per image, normalized to the 64x64 input.
GTS = [
    [(0.30, 0.40, 8 / 64, 10 / 64, 1, 1.0),
     (0.55, 0.52, 60 / 64, 47 / 64, 0, 1.0),
     (0.56, 0.53, 61 / 64, 46 / 64, 1, 0.6),   # same prediction as the row above
     (0.50, 0.50, 1.6, 1.3, 0, 0.8),           # stride 32
     (0.0, 0.0, 0.0, 0.0, 0, 0.0),             # padding
     (0.40, 0.60, 0.3, 0.3, 1, 0.0)],          # score 0: not assigned, still in the ignore IoU
    [(0.999, 0.25, 14 / 64, 12 / 64, 1, 1.0),
     (0.70, 0.30, 30 / 64, 60 / 64, 0, 0.5),
     (0.0, 0.0, 0.0, 0.0, 0, 0.0),
     (0.0, 0.0, 0.0, 0.0, 0, 0.0),
     (0.0, 0.0, 0.0, 0.0, 0, 0.0),
     (0.0, 0.0, 0.0, 0.0, 0, 0.0)],
]


def head_values(s, shape):
    n = int(np.prod(shape))
    k = np.arange(n, dtype=np.int64)
    v = ((k * 7919 + s * 104729) % 4001 - 2000) / 1000.0
    ch = (k % L) % (5 + C)
    v = np.where((ch == 2) | (ch == 3), v * 0.75, v)
    return v.astype(np.float32).reshape(shape)


def plants():
    # Image 0, stride 16 (grid 4), the cell of gt row 1, slot 0 (anchor 3 = 30x61): a box equal to that gt.
    g = 4
    i, j = int(0.55 * g), int(0.52 * g)
    fx, fy = 0.55 * g - i, 0.52 * g - j
    base = ((0 * g + j) * g + i) * L + 0 * (5 + C)
    vals = [math.log(fx / (1 - fx)), math.log(fy / (1 - fy)), math.log(60 / 30), math.log(47 / 61)]
    return [[1, base + c, float(np.float32(v))] for c, v in enumerate(vals)]


def main():
    shapes = [(N, IN // d, IN // d, L) for d in DOWNSAMPLE]
    heads = [head_values(s, sh) for s, sh in enumerate(shapes)]
    for s, idx, v in plants():
        heads[s].reshape(-1)[idx] = np.float32(v)
    box = np.array([[g[:4] for g in im] for im in GTS], dtype=np.float32)
    cls = np.array([[g[4] for g in im] for im in GTS], dtype=np.int32)
    score = np.array([[g[5] for g in im] for im in GTS], dtype=np.float32)

    samples = [{'image': np.zeros((3, IN, IN), np.float32), 'gt_bbox': box[n].copy(),
                'gt_class': cls[n].reshape(B, 1).copy(), 'gt_score': score[n].reshape(B, 1).copy()}
               for n in range(N)]
    samples = Gt2YoloTarget(ANCHORS, MASKS, DOWNSAMPLE, num_classes=C)(samples)

    out = {'input': IN, 'batch': N, 'gts_per_image': B, 'num_classes': C, 'plants': plants(),
           'gt_box': box.reshape(-1).tolist(), 'gt_class': cls.reshape(-1).tolist(),
           'gt_score': score.reshape(-1).tolist(),
           'versions': {'paddle': paddle.__version__, 'numpy': np.__version__}, 'cases': {}}
    mask_anchors = [[ANCHORS[i] for i in m] for m in MASKS]
    for name, smooth in (('default', False), ('label_smooth', True)):
        xs = [paddle.to_tensor(h.transpose(0, 3, 1, 2).copy(), stop_gradient=False) for h in heads]
        targets = {'gt_bbox': paddle.to_tensor(box)}
        for s in range(3):
            targets['target%d' % s] = paddle.to_tensor(np.stack([smp['target%d' % s] for smp in samples]))
        loss_fn = YOLOv3Loss(num_classes=C, ignore_thresh=0.7, label_smooth=smooth, downsample=DOWNSAMPLE)
        res = loss_fn(xs, targets, mask_anchors)
        res['loss'].backward()
        case = {k: float(res[k].numpy()) for k in ('loss_xy', 'loss_wh', 'loss_obj', 'loss_cls', 'loss')}
        if name == 'default':
            case['grad'] = [[float('%.8g' % v) for v in x.grad.numpy().transpose(0, 2, 3, 1).reshape(-1)] for x in xs]
        out['cases'][name] = case
    json.dump(out, sys.stdout, separators=(',', ':'))
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
