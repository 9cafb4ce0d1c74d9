#!/usr/bin/env python3
"""Golden values of the whole YOLOv3 forward from PaddleDetection, for tests/test_det_golden.cpp.

Builds PaddleDetection's own YOLOv3 (ppdet/modeling/architectures/yolo.py YOLOv3 with
backbones/darknet.py DarkNet, backbones/mobilenet_v1.py MobileNet, necks/yolo_fpn.py YOLOv3FPN,
heads/yolo_head.py YOLOv3Head), as configs/yolov3/_base_/yolov3_darknet53.yml and
yolov3_mobilenet_v1.yml do (DarkNet depth 53, return_idx [2, 3, 4]; MobileNet scale 1,
feature_maps [4, 6, 13], with_extra_blocks False; 80 classes, the COCO anchors and masks), sets every
state-dict tensor from the formula below, runs it in eval mode (BN on its running statistics) in
float32 on the CPU and writes, per model and per head (raw 1x1 conv output, transposed to the
engine's NHWC layout): shape, max |value|, sum and sum of squares (float64) and a subsample.

How to run (needs network access for pip; written with paddlepaddle 3.3.1, paddledet 2.6.0,
numpy 1.26.4):
    python3 -m venv .venv-paddle && .venv-paddle/bin/pip install paddlepaddle paddledet scikit-learn "numpy<2"
    .venv-paddle/bin/python tools/gen_yolov3_forward_golden.py > tests/golden/yolov3_forward/yolov3_forward.json

Weights (no files: integer arithmetic, so float32 values are bit-identical in Python and C++).
For the state-dict tensor with key K (PaddleDetection's name, e.g.
"neck.yolo_block.0.conv_module.conv0.conv.weight"), h = FNV-1a 32-bit hash of K's UTF-8 bytes
(offset 2166136261, prime 16777619). Element k (row-major in Paddle's layout; conv weights OIHW)
gets, computed in float64 and rounded once to float32,
    u = ((k * 7919 + h) % 4001 - 2000) / 2000.0                     (in [-1, 1])
    conv weight (4-D)            u * sqrt(3 / fan_in), fan_in = shape[1] * shape[2] * shape[3]
                                 (in_channels / groups * kh * kw)
    BN _mean                     0.1 * u
    BN _variance                 1 + 0.5 * u
    other 1-D ".weight" (gamma)  1 + 0.2 * u
    other 1-D ".bias"            0.1 * u       (BN beta and the head's conv bias)
Input image: NHWC [1, 320, 320, 3], element k of the NHWC row-major order gets
    2 * ((k * 7919 + 12345) % 4001 - 2000) / 2000.0                 (in [-2, 2])
(transposed to NCHW for Paddle).
Subsample: every stride-th element of the flattened NHWC head output, k = 0, stride, 2*stride, ...
(stride per head in the JSON). weights_abs_sum (sum of |value| over every state-dict element, float64)
lets the C++ test check that it rebuilt the same weights.
"""
import contextlib
import json
import math
import sys

import numpy as np
import paddle

with contextlib.redirect_stdout(sys.stderr):  # ppdet prints warnings on import
    from ppdet.modeling.architectures.yolo import YOLOv3
    from ppdet.modeling.backbones.darknet import DarkNet
    from ppdet.modeling.backbones.mobilenet_v1 import MobileNet
    from ppdet.modeling.heads.yolo_head import YOLOv3Head
    from ppdet.modeling.necks.yolo_fpn import YOLOv3FPN

IN = 320
NUM_CLASSES = 80
ANCHORS = [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198], [373, 326]]
MASKS = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
STRIDES = [97, 389, 1553]  # subsample stride per head (about 260 values each at 320x320)
IMAGE_HASH = 12345


def fnv1a32(s):
    h = 2166136261
    for b in s.encode('utf-8'):
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def unit(n, h):
    k = np.arange(n, dtype=np.int64)
    return ((k * 7919 + h) % 4001 - 2000) / 2000.0  # float64


def tensor_value(key, shape):
    n = int(np.prod(shape))
    u = unit(n, fnv1a32(key))
    if len(shape) == 4:
        v = u * math.sqrt(3.0 / (shape[1] * shape[2] * shape[3]))
    elif key.endswith('._mean'):
        v = 0.1 * u
    elif key.endswith('._variance'):
        v = 1.0 + 0.5 * u
    elif key.endswith('.weight'):
        v = 1.0 + 0.2 * u
    elif key.endswith('.bias'):
        v = 0.1 * u
    else:
        raise SystemExit('no formula for state-dict key %s %s' % (key, shape))
    return v.astype(np.float32).reshape(shape)


def build(backbone_name):
    if backbone_name == 'DarkNet53':
        backbone = DarkNet(depth=53, return_idx=[2, 3, 4])
    else:
        backbone = MobileNet(scale=1, feature_maps=[4, 6, 13], with_extra_blocks=False)
    in_ch = [s.channels for s in backbone.out_shape]
    neck = YOLOv3FPN(in_channels=in_ch)
    head = YOLOv3Head(in_channels=[s.channels for s in neck.out_shape], anchors=ANCHORS, anchor_masks=MASKS,
                      num_classes=NUM_CLASSES, loss=None)
    return YOLOv3(backbone=backbone, neck=neck, yolo_head=head, post_process=None)


def main():
    paddle.set_device('cpu')
    image = (2.0 * unit(IN * IN * 3, IMAGE_HASH)).astype(np.float32).reshape(1, IN, IN, 3)
    out = {'input': IN, 'num_classes': NUM_CLASSES, 'image_hash': IMAGE_HASH,
           'versions': {'paddle': paddle.__version__, 'numpy': np.__version__}, 'models': {}}
    for name in ('DarkNet53', 'MobileNetV1'):
        model = build(name)
        sd = model.state_dict()
        values = {k: tensor_value(k, list(t.shape)) for k, t in sd.items()}
        model.set_state_dict(values)
        for k, t in model.state_dict().items():  # every tensor really took the formula's values
            assert np.array_equal(t.numpy(), values[k]), k
        model.eval()
        with paddle.no_grad():
            x = paddle.to_tensor(image.transpose(0, 3, 1, 2).copy())
            feats = model.backbone({'image': x})
            heads = model.yolo_head(model.neck(feats))  # eval: the raw [1, 255, H, W] conv outputs
        weights_abs_sum = float(sum(np.abs(values[k].astype(np.float64)).sum() for k in sorted(values)))
        m = {'keys': [[k, list(sd[k].shape)] for k in sorted(sd)], 'weights_abs_sum': weights_abs_sum,
             'heads': []}
        for s, y in enumerate(heads):
            y = y.numpy().transpose(0, 2, 3, 1)
            flat = y.reshape(-1).astype(np.float64)
            m['heads'].append({
                'shape': list(y.shape), 'max_abs': float(np.abs(flat).max()), 'sum': float(flat.sum()),
                'sum_sq': float((flat * flat).sum()), 'stride': STRIDES[s],
                'sample': [float('%.9g' % v) for v in y.reshape(-1)[::STRIDES[s]]]})
            print('%s head %d %s max|y| %.4g mean %.4g rms %.4g' % (
                name, s, y.shape, np.abs(flat).max(), flat.mean(), math.sqrt((flat * flat).mean())),
                file=sys.stderr)
        out['models'][name] = m
    json.dump(out, sys.stdout, separators=(',', ':'))
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
