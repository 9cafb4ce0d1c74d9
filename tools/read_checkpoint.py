#!/usr/bin/env python3
"""Inspect engine checkpoints (safetensors layout, train/safetensors.h) from Python.

Usage:
  python3 tools/read_checkpoint.py output/iter_500            # every *.safetensors in the folder
  python3 tools/read_checkpoint.py output/best_model/model.safetensors --values 4

Prints the metadata, then one line per tensor (name, dtype, shape, and min/max/mean when numpy is
installed), and verifies the "crc32c:xxxxxxxx" checksum that the engine stores in the metadata.
Format "engine-checkpoint-2" (written now): CRC-32C over a canonical encoding of the header followed
by the whole data section, so edits of names, dtypes, shapes, offsets or metadata are caught too.
Canonical encoding (integers u64 little-endian; a string = u64 byte length + its UTF-8 bytes):
  u64 number of tensors; per tensor ordered by (begin, end, name bytes): name, dtype, u64 ndim,
  ndim x u64 dims, u64 begin, u64 end; u64 number of metadata entries except "checksum"; per such
  entry in byte-wise ascending key order: key, value.
Format "engine-checkpoint-1" (earlier builds): CRC-32C of the data section alone; a "checksum"
without a "format" is checked the same way. Other formats are reported as unknown; files without
either key (written by other tools) have nothing to verify. Definitions: train/safetensors.h. With the `safetensors` package installed it also loads the
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

        return lambda data, crc=0: crc32c.crc32c(bytes(data), crc)
    except ImportError:
        pass
    try:
        import google_crc32c  # pip install google-crc32c

        return lambda data, crc=0: google_crc32c.extend(crc, bytes(data))
    except ImportError:
        pass
    table = []
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table.append(c)

    def slow(data, crc=0):  # about 5 MB/s; chains like zlib.crc32
        c = crc ^ 0xFFFFFFFF
        for x in data:
            c = (c >> 8) ^ table[(c ^ x) & 0xFF]
        return c ^ 0xFFFFFFFF

    return slow


FORMAT_V2 = "engine-checkpoint-2"
FORMAT_V1 = "engine-checkpoint-1"


def canonical_header(header, meta):
    """The bytes that format 2's checksum covers before the data section (train/safetensors.h)."""

    def u64(v):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 64:
            raise ValueError(f"not an unsigned 64-bit integer: {v!r}")
        return struct.pack("<Q", v)

    def string(s):
        b = s.encode("utf-8")
        return u64(len(b)) + b

    def order(kv):
        name, e = kv
        b, t = e["data_offsets"]
        return (b, t, name.encode("utf-8"))

    out = [u64(len(header))]
    for name, e in sorted(header.items(), key=order):
        b, t = e["data_offsets"]
        out += [string(name), string(e["dtype"]), u64(len(e["shape"]))]
        out += [u64(d) for d in e["shape"]]
        out += [u64(b), u64(t)]
    entries = sorted((k.encode("utf-8"), v) for k, v in meta.items() if k != "checksum")
    out.append(u64(len(entries)))
    for k, v in entries:
        out += [u64(len(k)), k, string(v)]
    return b"".join(out)


def expected_checksum(header, meta, data, crc):
    """(checksum string, what it covers) for the file's format, or (None, reason) when none applies."""
    fmt = meta.get("format")
    if fmt is None and "checksum" not in meta:
        return None, "no format/checksum metadata (not written by the engine): nothing to verify"
    if fmt == FORMAT_V2:
        c = crc(canonical_header(header, meta))
        return "crc32c:%08x" % crc(data, c), "canonical header + data"
    if fmt in (None, FORMAT_V1):
        return "crc32c:%08x" % crc(data), "data only, format 1"
    raise ValueError(f"unknown format '{fmt}' (this tool reads '{FORMAT_V2}' and '{FORMAT_V1}')")


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
    try:
        got, covers = expected_checksum(header, meta, data, crc)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if got is None:
        print(f"   checksum: {covers}")
    else:
        want = meta.get("checksum")
        print(f"   checksum {'OK' if got == want else 'MISMATCH'} ({got} over {covers}, header says {want})")
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
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                print(f"ERROR: {e}")
                ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
