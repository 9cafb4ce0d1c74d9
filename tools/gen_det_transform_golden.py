#!/usr/bin/env python3
# Run (from the checkout root; PyPI only, the venv lives in .venv-paddle/, which git ignores):
#   python3 -m venv .venv-paddle && .venv-paddle/bin/pip install 'opencv-python-headless<5' numpy shapely pillow && .venv-paddle/bin/pip install --no-deps paddlex==2.1.0 && .venv-paddle/bin/python tools/gen_det_transform_golden.py > tests/golden/det_transforms/det_transforms.json
"""Golden values for tests/test_det_transforms.cpp (data/det_transforms.h).

Two parts:
  resize      cv2.resize on float32 HWC images (integer pixel values 0..255) for the five
              interpolations PaddleX draws from (NEAREST, LINEAR, CUBIC, AREA, LANCZOS4), growing,
              shrinking by fractional and integer factors, and mixed (one axis up, one down).
  paddlex_*   the deterministic parts of PaddleX 2.1.0's own transforms (the PyPI wheel's
              paddlex/cv/transforms/operators.py, identical to the release/2.1 branch): Resize (boxes,
              scale_factor, keep_ratio), Normalize, RandomHorizontalFlip with prob 1, Padding with fixed
              offsets (RandomExpand's core), RandomCrop with a forced crop box, MixupImage with a forced
              factor, the four RandomDistort ops with a forced delta, _NormalizeBox + _BboxXYXY2XYWH.
              paddlex/__init__ imports paddle, which is not needed here: operators.py is loaded on its
              own under empty stand-in parent packages (it only uses `paddlex` for isinstance checks in Compose).
Image values are written rounded to 4 decimals (the test's tolerance is 1e-3); boxes and scale
factors as Python floats of the float32 values.
"""
import copy
import importlib
import json
import os
import sys
import types

import cv2
import numpy as np

INTERPS = {'NEAREST': cv2.INTER_NEAREST, 'LINEAR': cv2.INTER_LINEAR, 'CUBIC': cv2.INTER_CUBIC,
           'AREA': cv2.INTER_AREA, 'LANCZOS4': cv2.INTER_LANCZOS4}


def load_paddlex_operators():
    import importlib.util
    spec = importlib.util.find_spec('paddlex')
    root = os.path.dirname(spec.origin)
    for name, sub in [('paddlex', ''), ('paddlex.cv', 'cv'), ('paddlex.cv.transforms', 'cv/transforms')]:
        m = types.ModuleType(name)
        m.__path__ = [os.path.join(root, sub)]
        sys.modules[name] = m
    return importlib.import_module('paddlex.cv.transforms.operators')


def img_list(im):
    return [round(float(v), 4) for v in np.asarray(im, dtype=np.float64).ravel()]


def f32_list(a):
    return [float(v) for v in np.asarray(a, dtype=np.float32).ravel()]


def make_image(rng, h, w):
    return rng.integers(0, 256, size=(h, w, 3)).astype(np.float32)


def main():
    rng = np.random.default_rng(20240607)
    images = {'a': make_image(rng, 7, 9), 'b': make_image(rng, 8, 12)}
    out = {'opencv': cv2.__version__, 'numpy': np.__version__,
           'images': {k: {'h': v.shape[0], 'w': v.shape[1], 'c': 3, 'data': [int(x) for x in v.ravel()]}
                      for k, v in images.items()}}

    sizes = [('a', 11, 14), ('a', 4, 5), ('a', 12, 4), ('a', 3, 3),
             ('b', 4, 6), ('b', 4, 4), ('b', 3, 5), ('b', 10, 13)]
    cases = []
    for name, code in INTERPS.items():
        for key, h, w in sizes:
            r = cv2.resize(images[key], (w, h), interpolation=code)
            cases.append({'image': key, 'h': h, 'w': w, 'interp': name, 'out': img_list(r)})
    out['resize'] = cases

    ops = load_paddlex_operators()
    import paddlex  # the empty stand-in package
    out['paddlex'] = getattr(paddlex, '__version__', '2.1.0 (PyPI wheel, operators.py loaded alone)')
    boxes = np.array([[0.5, 1.0, 6.0, 5.5], [2.0, 0.0, 8.5, 3.0], [7.0, 4.0, 9.0, 7.0]], dtype=np.float32)
    classes = np.array([[1], [4], [2]], dtype=np.int32)

    def sample(key='a'):
        return {'image': images[key].copy(), 'gt_bbox': boxes.copy(), 'gt_class': classes.copy(),
                'scale_factor': np.array([1., 1.], dtype=np.float32)}

    px = {}
    px['boxes'] = f32_list(boxes)
    px['classes'] = [int(c) for c in classes.ravel()]

    rs = []
    for interp, target, keep in [('LINEAR', (12, 5), False), ('CUBIC', (5, 13), False), ('AREA', (10, 10), True),
                                 ('NEAREST', (6, 20), True)]:
        s = ops.Resize(target_size=list(target), interp=interp, keep_ratio=keep)(sample())
        rs.append({'interp': interp, 'target': list(target), 'keep_ratio': int(keep),
                   'out_h': int(s['image'].shape[0]), 'out_w': int(s['image'].shape[1]),
                   'out': img_list(s['image']), 'out_boxes': f32_list(s['gt_bbox']),
                   'scale_factor': f32_list(s['scale_factor'])})
    px['resize'] = rs

    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    s = ops.Normalize(mean=mean, std=std)(sample())
    px['normalize'] = {'mean': mean, 'std': std, 'out': img_list(s['image'])}

    s = ops.RandomHorizontalFlip(prob=1.0)(sample())
    px['flip'] = {'out': img_list(s['image']), 'out_boxes': f32_list(s['gt_bbox'])}

    fill = [123.675, 116.28, 103.53]
    s = ops.Padding(target_size=(11, 16), pad_mode=-1, offsets=(5, 3), im_padding_value=fill)(sample())
    px['expand'] = {'h': 11, 'w': 16, 'x': 5, 'y': 3, 'fill': fill, 'out': img_list(s['image']),
                    'out_boxes': f32_list(s['gt_bbox'])}

    crops = []
    for crop in ([1, 1, 7, 6], [4, 0, 9, 4]):
        op = ops.RandomCrop(thresholds=[0.0], allow_no_crop=False, num_attempts=1)
        op._get_crop_box = lambda im_h, im_w, c=crop: list(c)
        s = op(sample())
        crops.append({'crop': crop, 'out_h': int(s['image'].shape[0]), 'out_w': int(s['image'].shape[1]),
                      'out': img_list(s['image']), 'out_boxes': f32_list(s['gt_bbox']),
                      'out_classes': [int(c) for c in np.asarray(s['gt_class']).ravel()]})
    px['crop'] = crops

    factor = 0.3125
    saved = np.random.beta
    np.random.beta = lambda a, b: factor
    try:
        s1, s2 = sample('a'), sample('b')
        s2['gt_bbox'] = s2['gt_bbox'][:2] + 1.0
        s2['gt_class'] = s2['gt_class'][:2] + 10
        m = ops.MixupImage()([s1, s2])
    finally:
        np.random.beta = saved
    px['mixup'] = {'factor': factor, 'out_h': int(m['image'].shape[0]), 'out_w': int(m['image'].shape[1]),
                   'out': img_list(m['image']), 'out_boxes': f32_list(m['gt_bbox']),
                   'out_classes': [int(c) for c in np.asarray(m['gt_class']).ravel()],
                   'out_scores': f32_list(m['gt_score'])}

    dist = []
    for name, delta in [('brightness', 1.3), ('contrast', 0.7), ('saturation', 1.4), ('hue', 0.37)]:
        op = ops.RandomDistort(brightness_prob=0., contrast_prob=0., saturation_prob=0., hue_prob=0.)
        saved = np.random.uniform
        np.random.uniform = lambda low=0.0, high=1.0, d=delta: d  # prob test (d < 0: false), then delta
        try:
            r = getattr(op, 'apply_' + name)(images['a'].copy())
        finally:
            np.random.uniform = saved
        dist.append({'op': name, 'delta': delta, 'out': img_list(r)})
    px['distort'] = dist

    s = sample()
    s = ops._NormalizeBox()(s)
    s = ops._BboxXYXY2XYWH()(s)
    px['cxcywh'] = {'w': 9, 'h': 7, 'out': f32_list(s['gt_bbox'])}
    out['px'] = px

    json.dump(out, sys.stdout, separators=(',', ':'))
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
