#!/usr/bin/env python3
"""Read a run's TensorBoard event files with TensorBoard's own loader and print its scalars.

Usage:
  pip install tensorboard
  python3 tools/check_tensorboard.py output            # the save_dir of a --use_vdl run

Prints every scalar tag with its number of points, first/last step and last value, e.g.
  Train/loss      5 points  steps 10..50  last 0.6
Exit code 1 when the folder holds no event file or no scalar. This is how the engine's event
writer (train/event_writer.h) was checked against a real TensorBoard; the test suite checks the
byte format itself (tests/test_event_writer.cpp) and does not run this script.
"""
import argparse
import glob
import os
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="folder with events.out.tfevents.* files")
    args = ap.parse_args()
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        sys.exit("check_tensorboard: the 'tensorboard' package is needed (pip install tensorboard)")
    files = glob.glob(os.path.join(args.run_dir, "*tfevents*"))
    if not files:
        sys.exit(f"check_tensorboard: no events.out.tfevents.* file in '{args.run_dir}'")
    print(f"{len(files)} event file(s) in {args.run_dir}")
    acc = EventAccumulator(args.run_dir, size_guidance={"scalars": 0})  # 0 = keep every point
    acc.Reload()
    tags = acc.Tags().get("scalars", [])
    if not tags:
        sys.exit("check_tensorboard: TensorBoard found no scalars")
    for tag in sorted(tags):
        ev = acc.Scalars(tag)
        print(f"{tag:24s} {len(ev):5d} points  steps {ev[0].step}..{ev[-1].step}  last {ev[-1].value:.6g}")


if __name__ == "__main__":
    main()
