#!/usr/bin/env python3
"""Print the VisualDL record file that tests/test_vdl_writer.cpp compares byte for byte.

  pip install visualdl && python3 tests/golden/gen_vdl_golden.py

Writes one run with VisualDL's own LogWriter (clock fixed at 1700000000.0 s so the file name and the
first, meta-data record are reproducible) and prints the file name and its bytes as a C++ string
literal to paste into the test. The committed bytes came from visualdl 2.5.3 (protobuf 7.36.2).
"""
import os
import tempfile
import time

import visualdl
from visualdl import LogWriter

CLOCK = 1700000000.0
# (tag, value, step, wall time in ms): the trainer's tags, step 0 (omitted from the record), value 0
# (kept: `value` sits in a oneof), a multi-byte step, a long tag (two-byte length), a value float
# cannot hold exactly, a negative value.
SCALARS = [
    ("Train/loss", 2.75, 10, 1700000000250),
    ("Train/lr", 0.01, 10, 1700000000251),
    ("Evaluate/mIoU", 0.0, 0, 1700000001000),
    ("Train/batch_cost", -1.5e-3, 300, 1700000002999),
    ("Train/" + "x" * 150, 123456.789, 2**40, 1700000003000),
]


def main():
    time.time = lambda: CLOCK  # LogWriter names the file and stamps its meta record with time.time()
    with tempfile.TemporaryDirectory() as d:
        w = LogWriter(logdir=d)
        for tag, value, step, ms in SCALARS:
            w.add_scalar(tag=tag, value=value, step=step, walltime=ms)
        w.close()
        (name,) = os.listdir(d)
        data = open(os.path.join(d, name), "rb").read()
    print(f"// visualdl {visualdl.__version__}: {name}, {len(data)} bytes")
    for i in range(0, len(data), 24):
        print('"' + "".join(f"\\x{b:02x}" for b in data[i:i + 24]) + '"')


if __name__ == "__main__":
    main()
