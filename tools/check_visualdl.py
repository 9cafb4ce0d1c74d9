#!/usr/bin/env python3
"""Read a --use_vdl run's VisualDL record file with VisualDL's own reader and check its scalars.

Usage:
  pip install visualdl
  python3 tools/check_visualdl.py output              # the save_dir of a `--use_vdl --do_eval` run
  python3 tools/check_visualdl.py output --train_only # a run without evaluation

Takes the file `visualdl --logdir output` shows for that folder (VisualDL shows one file per folder:
the vdlrecords.* name that sorts last), checks that it starts with VisualDL's meta-data record and
that the tags the trainer writes are there with strictly increasing steps:
  segmentation (PaddleSeg):   Train/loss, Train/lr, Train/batch_cost, Train/reader_cost,
                              Evaluate/mIoU, Evaluate/Acc
  detection (PaddleX YOLOv3): the same Train/* tags, Train/loss_xy, Train/loss_wh, Train/loss_obj,
                              Train/loss_cls, and Evaluate/bbox_map (VOC) or Evaluate/bbox_mmap (COCO)
Prints every scalar tag with its number of points, first/last step and last value; exits 1 with one
line naming what is missing or out of order. This is how the engine's writer (train/vdl_writer.h)
was checked against a real VisualDL; the test suite checks the byte format itself
(tests/test_vdl_writer.cpp) and does not run this script.
"""
import argparse
import os
import sys

TRAIN = ["Train/loss", "Train/lr", "Train/batch_cost", "Train/reader_cost"]
SEG_EVAL = ["Evaluate/mIoU", "Evaluate/Acc"]
DET_TERMS = ["Train/loss_xy", "Train/loss_wh", "Train/loss_obj", "Train/loss_cls"]


def fail(msg):
    sys.exit(f"check_visualdl: {msg}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="folder with a vdlrecords.*.log file (the run's --save_dir)")
    ap.add_argument("--train_only", action="store_true", help="the run had no evaluation: no Evaluate/* tags")
    args = ap.parse_args()
    try:
        from visualdl import LogReader
        from visualdl.reader.reader import is_VDLRecord_file
    except ImportError:
        fail("the 'visualdl' package is needed (pip install visualdl)")
    if not os.path.isdir(args.run_dir):
        fail(f"'{args.run_dir}' is not a folder")

    # The server's choice of file per folder (visualdl/reader/reader.py LogReader.logs()).
    logs = LogReader(logdir=args.run_dir).logs()
    run = os.path.normpath(args.run_dir)
    chosen = {os.path.normpath(k): v for k, v in logs.items()}.get(run)
    if chosen is None:
        fail(f"no vdlrecords.* file in '{args.run_dir}'")
    path = os.path.join(run, chosen)
    others = sorted(f for f in os.listdir(run) if "vdlrecords" in f and f != chosen)
    print(f"{path}" + (f" (VisualDL shows this one; also there: {', '.join(others)})" if others else ""))
    if not is_VDLRecord_file(path, check=True):
        fail(f"'{path}' does not start with VisualDL's meta-data record")

    reader = LogReader(file_path=path)
    tags = sorted(reader.get_tags().get("scalar", []))  # the tags as written ('/' kept)
    if not tags:
        fail(f"VisualDL found no scalars in '{path}'")
    for tag in tags:
        pts = reader.get_data("scalar", tag)
        print(f"{tag:24s} {len(pts):5d} points  steps {pts[0].id}..{pts[-1].id}  last {pts[-1].value:.6g}")

    # PP-LiteSeg's per-head losses are Train/loss_0, _1, ...; YOLOv3's terms have names.
    detection = any(t in DET_TERMS or t.startswith("Evaluate/bbox_") for t in tags)
    want = TRAIN + (DET_TERMS if detection else [])
    if not args.train_only:
        if detection:
            evals = [t for t in ("Evaluate/bbox_map", "Evaluate/bbox_mmap") if t in tags]
            if not evals:
                fail(f"'{path}' has neither Evaluate/bbox_map nor Evaluate/bbox_mmap (add --train_only for a run without evaluation)")
            want += evals
        else:
            want += SEG_EVAL
    missing = [t for t in want if t not in tags]
    if missing:
        fail(f"'{path}' lacks {', '.join(missing)} (has {', '.join(tags)})")
    for tag in want:
        steps = [p.id for p in reader.get_data("scalar", tag)]
        bad = next((i for i in range(1, len(steps)) if steps[i] <= steps[i - 1]), None)
        if bad is not None:
            fail(f"'{path}': {tag} step {steps[bad]} follows step {steps[bad - 1]} (steps must increase)")
    print(f"ok: {len(want)} {'detection' if detection else 'segmentation'} tags present with increasing steps")


if __name__ == "__main__":
    main()
