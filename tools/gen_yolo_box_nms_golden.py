#!/usr/bin/env python3
"""Golden values for yolo_box + multiclass_nms, computed by Paddle itself (CPU kernels).

Run (needs paddlepaddle and numpy; CPU is enough):
    pip install paddlepaddle numpy
    python3 tools/gen_yolo_box_nms_golden.py > tests/golden/detection/yolo_box_nms.json

Read by tests/test_detection_ops.cpp (test DetectionGolden.*). Deterministic: logits come from
numpy.random.RandomState with fixed seeds, rounded to 3 decimals (short in JSON, exact as float32).

Each case holds, per head scale (stride 32 first, as PaddleDetection's YOLOBox walks them):
  x        the head output in the ENGINE's layout, [N, H, W, A*(5+C)] flattened (Paddle gets the
           NCHW transpose of it),
  boxes, scores   paddle.vision.ops.yolo_box outputs, [N, A*H*W, 4] and [N, A*H*W, C] flattened;
and for each NMS setting, Paddle's multiclass_nms3 (the op PaddleDetection's MultiClassNMS calls)
on the concatenation of the three scales (boxes [N, M, 4], scores transposed to [N, C, M]):
  labels [R], index [R] (n*M + m) and bbox_num [N] of Paddle's output rows (label, score, x1, y1,
  x2, y2); the script asserts that each row's score and box are exactly scores[n, label, m] and
  boxes[n, m] of its input, so the test rebuilds the rows from those.
Floats are written as the shortest decimal that round-trips in float32.
"""
import json
import sys

import numpy as np
import paddle
from paddle import _C_ops

paddle.set_device("cpu")

ANCHORS = [[116, 90, 156, 198, 373, 326], [30, 61, 62, 45, 59, 119], [10, 13, 16, 30, 33, 23]]


def f32s(a):
    return [float(str(np.float32(v))) for v in np.asarray(a, dtype=np.float32).ravel()]


def make_case(name, seed, N, C, in_h, in_w, img_size, conf_thresh, clip_bbox, scale_x_y, nms_settings):
    rs = np.random.RandomState(seed)
    A = 3
    case = {"name": name, "N": N, "class_num": C, "conf_thresh": conf_thresh, "clip_bbox": clip_bbox,
            "scale_x_y": scale_x_y, "img_size": img_size, "scales": [], "nms": []}
    img = paddle.to_tensor(np.array(img_size, dtype=np.int32))
    all_boxes, all_scores = [], []
    for i, ratio in enumerate([32, 16, 8]):
        H, W = in_h // ratio, in_w // ratio
        x = np.zeros((N, H, W, A, 5 + C), dtype=np.float64)
        x[..., 0:2] = rs.normal(0.0, 1.5, size=(N, H, W, A, 2))
        x[..., 2:4] = rs.normal(0.0, 0.6, size=(N, H, W, A, 2))
        x[..., 4] = rs.normal(-2.0, 3.0, size=(N, H, W, A))
        x[..., 5:] = rs.normal(-1.0, 2.0, size=(N, H, W, A, C))
        x = np.round(x, 3).astype(np.float32).reshape(N, H, W, A * (5 + C))
        nchw = paddle.to_tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        boxes, scores = paddle.vision.ops.yolo_box(nchw, img, ANCHORS[i], C, conf_thresh, ratio, clip_bbox,
                                                   scale_x_y=scale_x_y)
        case["scales"].append({"downsample_ratio": ratio, "anchors": ANCHORS[i], "H": H, "W": W, "x": f32s(x),
                               "boxes": f32s(boxes.numpy()), "scores": f32s(scores.numpy())})
        all_boxes.append(boxes)
        all_scores.append(paddle.transpose(scores, [0, 2, 1]))
    boxes = paddle.concat(all_boxes, axis=1)
    scores = paddle.concat(all_scores, axis=2)
    for s in nms_settings:
        out, index, num = _C_ops.multiclass_nms3(boxes, scores, None, s["score_threshold"], s["nms_top_k"],
                                                 s["keep_top_k"], s["nms_threshold"], s["normalized"], s["nms_eta"],
                                                 s["background_label"])
        entry = dict(s)
        out, index = out.numpy().reshape(-1, 6), index.numpy().ravel()
        # Every row is (label, scores[n, label, m], boxes[n, m]) of the input: stored as labels and
        # index only (the C++ test rebuilds the rows from the boxes and scores above); checked here.
        b, sc = boxes.numpy().reshape(-1, 4), scores.numpy()
        for r, g in zip(out, index):
            n, m = divmod(int(g), b.shape[0] // N)
            assert r[0] == int(r[0]) and r[1] == sc[n, int(r[0]), m] and np.array_equal(r[2:], b[g]), (r, g)
        entry["labels"] = [int(v) for v in out[:, 0]]
        entry["bbox_num"] = [int(v) for v in num.numpy().ravel()]
        entry["index"] = [int(v) for v in index]
        case["nms"].append(entry)
    return case


def nms(score_threshold=0.01, nms_top_k=1000, keep_top_k=100, nms_threshold=0.45, normalized=True, nms_eta=1.0,
        background_label=-1):
    return {"score_threshold": score_threshold, "nms_top_k": nms_top_k, "keep_top_k": keep_top_k,
            "nms_threshold": nms_threshold, "normalized": normalized, "nms_eta": nms_eta,
            "background_label": background_label}


def main():
    cases = [
        # PaddleDetection's YOLOv3 settings; original images of two sizes, input 32 x 64.
        make_case("yolov3_defaults", 7, 2, 3, 32, 64, [[375, 500], [480, 640]], 0.005, True, 1.0,
                  [nms(), nms(keep_top_k=6), nms(nms_top_k=5), nms(normalized=False, nms_threshold=0.3),
                   nms(nms_eta=0.9, nms_threshold=0.7), nms(score_threshold=0.2, background_label=0)]),
        # PP-YOLO style scale_x_y, no clipping, one image.
        make_case("scale_x_y_no_clip", 11, 1, 2, 64, 32, [[300, 200]], 0.01, False, 1.05, [nms()]),
    ]
    doc = {"generator": "tools/gen_yolo_box_nms_golden.py", "paddle_version": paddle.__version__,
           "numpy_version": np.__version__, "cases": cases}
    for c in cases:
        for e in c["nms"]:
            assert sum(e["bbox_num"]) == len(e["index"]), c["name"]
    text = json.dumps(doc, separators=(",", ":"))
    assert len(text) < 50_000, len(text)
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
