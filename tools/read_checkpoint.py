#!/usr/bin/env python3
"""Inspect engine checkpoints (safetensors layout, train/safetensors.h) from Python.

Usage:
  python3 tools/read_checkpoint.py output/iter_500            # every *.safetensors in the folder
  python3 tools/read_checkpoint.py output/best_model/model.safetensors --values 4

Prints the metadata, then one line per tensor (name, dtype, shape, and min/max/mean when numpy is
installed), and verifies the "crc32c:xxxxxxxx" checksum that the engine stores in the metadata
(CRC-32C of the whole data section). With the `safetensors` package installed it also loads the
file with it and checks that every tensor it returns has the same bytes (BF16 is skipped: numpy
has no bfloat16). Needs only the standard library; numpy, safetensors and a fast CRC-32C module
(`crc32c` or `google-crc32c`) are used when present. Exit code 1 when a check fails.
Not used by the test suite; tests/test_safetensors.cpp tests the format itself.
"""
import argparse
import json
import os
import struct
import sys

DTYPES = {"F32": ("f", 4), "F16": ("e", 2), "BF16": (None, 2), "I32": ("i", 4), "I64": ("q", 8), "U8": ("B", 1)}


def _crc32c_function():
    try:
        import crc32c  # pip install crc32c

        return crc32c.crc32c
    except ImportError:
        pass
    try:
        import google_crc32c  # pip install google-crc32c

        return lambda data: google_crc32c.value(bytes(data))
    except ImportError:
        pass
    table = []
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table.append(c)

    def slow(data):  # about 5 MB/s
        c = 0xFFFFFFFF
        for x in data:
            c = (c >> 8) ^ table[(c ^ x) & 0xFF]
        return c ^ 0xFFFFFFFF

    return slow


def read(path):
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: {len(raw)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError(f"{path}: header length {n} is larger than the rest of the file")
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    data = memoryview(raw)[8 + n :]
    return header, meta, data


def stats(entry, buf):
    fmt, size = DTYPES.get(entry["dtype"], (None, 0))
    count = len(buf) // size if size else 0
    if count == 0:
        return None, []
    if entry["dtype"] == "BF16":  # the upper half of an f32
        vals = [struct.unpack("<f", struct.pack("<I", h << 16))[0] for (h,) in struct.iter_unpack("<H", buf)]
        return (min(vals), max(vals), sum(vals) / count), vals
    try:
        import numpy as np

        a = np.frombuffer(buf, dtype="<" + fmt).astype(np.float64)
        return (a.min(), a.max(), a.mean()), a
    except ImportError:
        vals = struct.unpack("<%d%s" % (count, fmt), buf)
        return (min(vals), max(vals), sum(vals) / count), vals


def check_file(path, show_values, crc):
    ok = True
    header, meta, data = read(path)
    print(f"== {path}  ({len(header)} tensors, {len(data)} data bytes)")
    for k in sorted(meta):
        print(f"   metadata {k} = {meta[k]}")
    end = 0
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        b, t = e["data_offsets"]
        end = max(end, t)
        buf = data[b:t]
        s, vals = stats(e, buf)
        line = f"   {name:40s} {e['dtype']:5s} {str(e['shape']):20s}"
        if s:
            line += f" min {s[0]:.6g} max {s[1]:.6g} mean {s[2]:.6g}"
        if show_values and len(vals):
            line += "  first: " + " ".join(f"{v:.6g}" for v in list(vals[:show_values]))
        print(line)
    if end != len(data):
        print(f"   ERROR: tensors end at byte {end} but the data section has {len(data)} bytes")
        ok = False
    want = meta.get("checksum")
    if want is not None:
        got = "crc32c:%08x" % crc(data)
        print(f"   checksum {'OK' if got == want else 'MISMATCH'} ({got}, header says {want})")
        ok &= got == want
    try:
        from safetensors import safe_open
    except ImportError:
        return ok
    with safe_open(path, framework="numpy") as f:
        same = 0
        for name, e in header.items():
            if e["dtype"] == "BF16":
                continue
            a = f.get_tensor(name)
            b, t = e["data_offsets"]
            if a.tobytes() != bytes(data[b:t]) or list(a.shape) != e["shape"]:
                print(f"   ERROR: the safetensors package reads '{name}' differently")
                ok = False
            else:
                same += 1
        print(f"   safetensors package: {same} tensors read identically (BF16 skipped)")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", help="*.safetensors files or checkpoint folders (iter_N, best_model)")
    ap.add_argument("--values", type=int, default=0, help="print the first N values of each tensor")
    args = ap.parse_args()
    crc = _crc32c_function()
    ok = True
    for p in args.paths:
        files = [os.path.join(p, f) for f in sorted(os.listdir(p)) if f.endswith(".safetensors")] if os.path.isdir(p) else [p]
        for f in files:
            try:
                ok &= check_file(f, args.values, crc)
            except (OSError, ValueError) as e:
                print(f"ERROR: {e}")
                ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
