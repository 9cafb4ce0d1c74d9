"""Run: pip install pycocotools numpy && python3 tools/gen_coco_eval_golden.py > tests/golden/det_metrics/coco_eval.json

Writes the golden file that tests/test_det_metrics.cpp (CocoEvalGolden.*) compares the C++ COCOeval
of train/det_metrics.{h,cpp} with: fixed-seed random detection sets (inputs rounded to 2 decimals so
both sides read the same doubles), and what pycocotools' COCOeval (iouType 'bbox') makes of them:
the 12 summarize() stats, the per-category AP@[.50:.95] (area all, maxDets 100), and its IoU and
recall threshold tables.

Cases:
  random - 20 images with shuffled, non-consecutive ids; 5 categories: 0-2 ordinary, 3 with gts
           but never detected, 4 detected but without gts (excluded, -1). Box sizes from ~6 to
           ~300 px (all three area ranges), some iscrowd gts, 'area' fields that differ from w*h
           (segmentation areas), two gts whose 'area' is exactly 32^2 / 96^2, jittered true
           positives, duplicates, wrong-class and random false positives, scores with 2 decimals
           (many ties across images).
  dense  - 3 images, 2 categories, >100 detections of one category per image (the maxDets cut),
           scores with 1 decimal (ties at the cut), crowd regions over groups of objects.

Deterministic: numpy.random.RandomState (NEP 19 keeps its stream fixed). pycocotools' progress
messages go to stderr; only the JSON goes to stdout.
"""
import contextlib
import importlib.metadata
import json
import sys

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

W, H = 640.0, 480.0


def r2(x):
    return round(float(x), 2)


def rand_box(rng, lo=6.0, hi=300.0):
    s = np.exp(rng.uniform(np.log(lo), np.log(hi)))
    asp = np.exp(rng.uniform(-0.7, 0.7))
    w, h = min(s * np.sqrt(asp), W - 1), min(s / np.sqrt(asp), H - 1)
    x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
    return [r2(x), r2(y), max(r2(w), 0.5), max(r2(h), 0.5)]


def jitter(rng, b, sigma=0.12):
    x, y, w, h = b
    cx = x + w / 2 + rng.normal(0, sigma * w)
    cy = y + h / 2 + rng.normal(0, sigma * h)
    w2 = w * np.exp(rng.normal(0, sigma * 1.3))
    h2 = h * np.exp(rng.normal(0, sigma * 1.3))
    return [r2(cx - w2 / 2), r2(cy - h2 / 2), max(r2(w2), 0.5), max(r2(h2), 0.5)]


def random_case(rng):
    num_cat = 5
    ids = [int(i) for i in rng.permutation(np.arange(1, 21)) * 7]
    images = []
    for n, img_id in enumerate(ids):
        gts, dets = [], []
        for _ in range(rng.randint(3, 13)):
            cat = int(rng.choice(4, p=[0.3, 0.3, 0.25, 0.15]))
            box = rand_box(rng)
            crowd = int(rng.rand() < 0.06)
            if crowd:  # crowd regions are large
                box = rand_box(rng, 80, 300)
            area = box[2] * box[3] * (rng.uniform(0.55, 1.0) if rng.rand() < 0.5 else 1.0)
            gts.append([cat, *box, r2(area), crowd])
        if n == 0:  # 'area' exactly on the range bounds (both bounds are inclusive)
            gts.append([0, 100.0, 100.0, 40.0, 25.6, 1024.0, 0])
            gts.append([1, 300.0, 200.0, 96.0, 96.0, 9216.0, 0])
        for g in gts:
            cat, box, crowd = g[0], g[1:5], g[6]
            if cat == 3:
                continue
            reps = 1 + int(rng.rand() < 0.2) if not crowd else rng.randint(1, 4)
            for _ in range(reps):
                if rng.rand() < 0.85:
                    b = jitter(rng, box, 0.05 if not crowd else 0.35)
                    iou_like = float(np.exp(-abs(rng.normal(0, 1))))
                    dets.append([cat, *b, r2(np.clip(0.3 + 0.7 * iou_like * rng.uniform(0.6, 1.0), 0.01, 1.0))])
            if rng.rand() < 0.1:  # right place, wrong class (sometimes the never-annotated class 4)
                dets.append([int(rng.choice([0, 1, 2, 4])), *jitter(rng, box), r2(rng.uniform(0.01, 0.7))])
        for _ in range(rng.randint(8, 20)):  # background false positives
            dets.append([int(rng.choice([0, 1, 2, 4])), *rand_box(rng), r2(rng.uniform(0.01, 0.6))])
        images.append({"id": img_id, "gts": gts, "dets": dets})
    return {"name": "random", "num_categories": num_cat, "images": images}


def dense_case(rng):
    images = []
    for img_id in (3, 1, 2):
        gts, dets = [], []
        for gy in range(5):
            for gx in range(5):
                w, h = rng.uniform(20, 110), rng.uniform(20, 90)
                box = [r2(10 + gx * 125 + rng.uniform(0, 5)), r2(10 + gy * 95 + rng.uniform(0, 3)), r2(w), r2(h)]
                gts.append([0, *box, r2(w * h), 0])
        gts.append([0, 0.0, 0.0, 260.0, 200.0, 52000.0, 1])  # crowd over the top-left objects
        gts.append([1, 300.0, 250.0, 200.0, 150.0, 30000.0, 1])  # a crowd-only category in this image
        for g in gts[:25]:
            for _ in range(rng.randint(4, 7)):
                dets.append([0, *jitter(rng, g[1:5], 0.08), round(float(rng.uniform(0.05, 1.0)), 1)])
        for _ in range(6):
            dets.append([1, *jitter(rng, [320.0, 260.0, 60.0, 50.0], 0.3), round(float(rng.uniform(0.05, 1.0)), 1)])
        images.append({"id": img_id, "gts": gts, "dets": dets})
    return {"name": "dense", "num_categories": 2, "images": images}


def evaluate(case):
    gt = {"images": [], "annotations": [], "categories": []}
    gt["categories"] = [{"id": k + 1, "name": "c%d" % k} for k in range(case["num_categories"])]
    res = []
    ann_id = 1
    for img in case["images"]:
        gt["images"].append({"id": img["id"], "width": int(W), "height": int(H)})
        for cat, x, y, w, h, area, crowd in img["gts"]:
            gt["annotations"].append({"id": ann_id, "image_id": img["id"], "category_id": cat + 1,
                                      "bbox": [x, y, w, h], "area": area, "iscrowd": crowd})
            ann_id += 1
        for cat, x, y, w, h, score in img["dets"]:
            res.append({"image_id": img["id"], "category_id": cat + 1, "bbox": [x, y, w, h], "score": score})
    with contextlib.redirect_stdout(sys.stderr):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(res)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    prec = ev.eval["precision"]
    cat_ap = []
    for k in range(case["num_categories"]):
        s = prec[:, :, k, 0, 2]
        cat_ap.append(float(np.mean(s[s > -1])) if np.any(s > -1) else -1.0)
    out = dict(case)
    out["stats"] = [float(v) for v in ev.stats]
    out["category_ap"] = cat_ap
    out["num_gts"] = sum(len(i["gts"]) for i in case["images"])
    out["num_dets"] = len(res)
    return out, ev.params


def main():
    rng = np.random.RandomState(20240611)
    cases, params = [], None
    for make in (random_case, dense_case):
        c, params = evaluate(make(rng))
        cases.append(c)
        print("%s: %d images, %d gts, %d dets, stats %s" % (c["name"], len(c["images"]), c["num_gts"],
                                                             c["num_dets"], c["stats"]), file=sys.stderr)
    d = lambda v: json.dumps(v, separators=(",", ":"))
    lines = ["{", '"generator":"tools/gen_coco_eval_golden.py",',
             '"pycocotools":%s,"numpy":%s,' % (d(importlib.metadata.version("pycocotools")), d(np.__version__)),
             '"iou_thrs":%s,' % d([float(v) for v in params.iouThrs]),
             '"rec_thrs":%s,' % d([float(v) for v in params.recThrs]),
             '"cases":[']
    for ci, c in enumerate(cases):
        lines.append('{"name":%s,"num_categories":%d,"num_gts":%d,"num_dets":%d,' % (
            d(c["name"]), c["num_categories"], c["num_gts"], c["num_dets"]))
        lines.append('"stats":%s,' % d(c["stats"]))
        lines.append('"category_ap":%s,' % d(c["category_ap"]))
        lines.append('"images":[')
        for ii, img in enumerate(c["images"]):
            lines.append(d(img) + ("," if ii + 1 < len(c["images"]) else ""))
        lines.append("]}" + ("," if ci + 1 < len(cases) else ""))
    lines.append("]}")
    text = "\n".join(lines) + "\n"
    json.loads(text)  # well-formed
    assert len(text) < 60000, len(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
