#!/usr/bin/env python3
# Writes the small Paddle weights files tests/test_pdparams.cpp reads, and expected.json with what each
# must load as (dtype, shape, sum and values per tensor). Run (paddle is needed only here, never by
# the build or the tests):
#   pip install paddlepaddle && python3 tools/make_pdparams_fixtures.py tests/golden/pdparams
# Files (all written by paddle.save unless said otherwise; checked by paddle.load before writing):
#   dtypes_p4.pdparams, dtypes_p2.pdparams  float32/float16/float64/int64/int32/uint8/bool tensors, a 0-d
#                       and an empty one, pickle protocol 4 (paddle.save's default) and 2
#   tuple_form.pdparams a dict with a non-tensor value: paddle.save pickles it through _pickle_save,
#                       each Tensor as the tuple (name, array)
#   bigsplit_p2.pdparams the layout paddle.save gives arrays above 1 GiB under protocol 2/3
#                       ("w@@.0", "w@@.1" + UnpackBigParamInfor@@), written by pickle on a small array
#   darknet53_subset.pdparams  a DarkNet53 backbone file as PaddleDetection names it (no "backbone."
#                       prefix; keys of ppdet/modeling/backbones/darknet.py), one tensor of a wrong
#                       shape and one key no YOLOv3 parameter ends with
#   PP_Fixture.tar.gz   PP_Fixture/model.pdparams (= dtypes_p4), a macOS ._model.pdparams and a README
#                       (PaddleSeg's archive layout, e.g. PP_STDCNet2.tar.gz)
#   two_pdparams.tar    two *.pdparams members (must be refused)
#   long_pax.tar.gz, long_gnu.tar.gz  one member whose path exceeds 100 bytes (pax / GNU long name)
import io
import json
import os
import pickle
import sys
import tarfile
import gzip

import numpy as np
import paddle


def describe(arr):
    a = np.asarray(arr)
    f = a.astype(np.float32) if a.dtype in (np.float16, np.float64) else a  # loaded as f32
    d = {"dtype": str(a.dtype), "shape": list(a.shape), "sum": float(np.sum(f.astype(np.float64)))}
    flat = f.reshape(-1)
    d["values"] = [v.item() if not isinstance(v.item(), bool) else int(v.item()) for v in flat[:64]]
    return d


def check_roundtrip(path, arrays):
    loaded = paddle.load(path, return_numpy=True)
    for k, v in arrays.items():
        got = loaded[k]
        got = got[1] if isinstance(got, tuple) else got
        assert np.array_equal(np.asarray(got), v) and np.asarray(got).dtype == v.dtype, (path, k)


def main(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20260515)
    expected = {}

    arrays = {
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "bn._mean": rng.standard_normal(4).astype(np.float32),
        "half": (rng.standard_normal((2, 3)) * 100).astype(np.float16),
        "double": np.array([1.0 / 3.0, -2.5e-8, 1e30], dtype=np.float64),
        "steps": np.array([[1, -2], [2**40, -(2**62)]], dtype=np.int64),
        "idx": np.array([0, 1, -7, 2**31 - 1, -(2**31)], dtype=np.int32),
        "bytes": np.array([0, 255, 7], dtype=np.uint8),
        "mask": np.array([True, False, True]),
        "scalar": np.array(1.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    tensors = {k: paddle.to_tensor(v) for k, v in arrays.items()}
    for proto in (4, 2):
        name = "dtypes_p%d.pdparams" % proto
        path = os.path.join(out, name)
        paddle.save(tensors, path, protocol=proto)
        check_roundtrip(path, arrays)
        expected[name] = {k: describe(v) for k, v in arrays.items()}

    # Not a plain state dict (an int value): _pickle_save, tensors as (name, array).
    path = os.path.join(out, "tuple_form.pdparams")
    paddle.save({"w": paddle.to_tensor(arrays["conv.weight"][:1, :1]), "epoch": 3}, path)
    assert b"tuple" in open(path, "rb").read(), "expected the (name, array) tuple form"
    check_roundtrip(path, {"w": arrays["conv.weight"][:1, :1]})
    expected["tuple_form.pdparams"] = {"w": describe(arrays["conv.weight"][:1, :1])}

    # Protocol 2/3 split of big arrays, on a small one: the layout of paddle's
    # io_utils._unpack_saved_dict (there only above (2**30 - 1) / itemsize elements), read back by
    # paddle.load's _pack_loaded_dict.
    big = rng.standard_normal((5, 3)).astype(np.float32)
    flat = big.reshape(-1)
    saved = {
        "other": arrays["bn._mean"],
        "head.weight@@.0": flat[:8],
        "head.weight@@.1": flat[8:],
        "UnpackBigParamInfor@@": {  # typos: disable-line
            "head.weight": {"OriginShape": big.shape, "slices": ["head.weight@@.0", "head.weight@@.1"]}
        },
    }
    path = os.path.join(out, "bigsplit_p2.pdparams")
    with open(path, "wb") as f:
        pickle.dump(saved, f, protocol=2)
    loaded = paddle.load(path, return_numpy=True)
    assert np.array_equal(loaded["head.weight"], big) and "head.weight@@.0" not in loaded
    expected["bigsplit_p2.pdparams"] = {"other": describe(arrays["bn._mean"]), "head.weight": describe(big)}

    # DarkNet53 backbone keys (PaddleDetection ppdet/modeling/backbones/darknet.py: ConvBNLayer .conv /
    # .batch_norm, DarkNet.conv0, .downsample0.conv_bn_layer, stage.i.basicblock0.conv1/conv2).
    dk = {}

    def conv_bn(prefix, cout, cin, k):
        dk[prefix + ".conv.weight"] = (rng.standard_normal((cout, cin, k, k)) * 0.1).astype(np.float32)
        dk[prefix + ".batch_norm.weight"] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
        dk[prefix + ".batch_norm.bias"] = rng.standard_normal(cout).astype(np.float32)
        dk[prefix + ".batch_norm._mean"] = rng.standard_normal(cout).astype(np.float32)
        dk[prefix + ".batch_norm._variance"] = rng.uniform(0.5, 2.0, cout).astype(np.float32)

    conv_bn("conv0", 32, 3, 3)
    conv_bn("downsample0.conv_bn_layer", 64, 32, 3)
    conv_bn("stage.0.basicblock0.conv1", 32, 64, 1)
    # Wrong shape on purpose (the model's is [64, 32, 3, 3]): must be skipped with a [SKIP] line.
    dk["stage.0.basicblock0.conv2.conv.weight"] = np.full((64, 32, 1, 1), 0.25, dtype=np.float32)
    dk["fc.weight"] = np.arange(8, dtype=np.float32).reshape(2, 4)  # no model key ends with it
    path = os.path.join(out, "darknet53_subset.pdparams")
    paddle.save({k: paddle.to_tensor(v) for k, v in dk.items()}, path)
    check_roundtrip(path, dk)
    expected["darknet53_subset.pdparams"] = {k: describe(v) for k, v in dk.items()}

    # PaddleSeg's archive layout.
    def add(tar, name, data):
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        ti.mtime = 0
        tar.addfile(ti, io.BytesIO(data))

    p4 = open(os.path.join(out, "dtypes_p4.pdparams"), "rb").read()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo("PP_Fixture")
        d.type = tarfile.DIRTYPE
        d.mtime = 0
        tar.addfile(d)
        add(tar, "PP_Fixture/._model.pdparams", b"\x00\x05\x16\x07AppleDouble metadata")
        add(tar, "PP_Fixture/model.pdparams", p4)
        add(tar, "PP_Fixture/README.txt", b"fixture\n")
    with open(os.path.join(out, "PP_Fixture.tar.gz"), "wb") as f:
        f.write(gzip.compress(buf.getvalue(), compresslevel=9, mtime=0))
    expected["PP_Fixture.tar.gz"] = {"member": "PP_Fixture/model.pdparams", "same_as": "dtypes_p4.pdparams"}

    small = open(os.path.join(out, "tuple_form.pdparams"), "rb").read()
    with tarfile.open(os.path.join(out, "two_pdparams.tar"), "w", format=tarfile.USTAR_FORMAT) as tar:
        add(tar, "a/model.pdparams", small)
        add(tar, "b/model.pdparams", small)

    # Names above 100 bytes: a pax 'x' header (POSIX.1-2001) and a GNU 'L' header carry them.
    long_dir = "a_folder_name_long_enough_that_the_path_does_not_fit_in_the_100_bytes_of_a_ustar_name/sub"
    for fmt, name in ((tarfile.PAX_FORMAT, "long_pax.tar.gz"), (tarfile.GNU_FORMAT, "long_gnu.tar.gz")):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
            add(tar, long_dir + "/model.pdparams", small)
        with open(os.path.join(out, name), "wb") as f:
            f.write(gzip.compress(buf.getvalue(), compresslevel=9, mtime=0))
        expected[name] = {"member": long_dir + "/model.pdparams", "same_as": "tuple_form.pdparams"}

    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")
    for name in sorted(os.listdir(out)):
        print("%8d  %s" % (os.path.getsize(os.path.join(out, name)), name))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/golden/pdparams")
