#!/usr/bin/env python3
"""Golden files for tests/test_golden.cpp, computed with PyTorch (CPU) and numpy.

Run from anywhere:  python3 tests/golden/gen_golden.py        (needs: pip install torch numpy)
Writes tests/golden/*.golden next to this script. Deterministic: inputs come from
numpy.random.RandomState (a stream numpy guarantees never to change, NEP 19) with fixed seeds, and
references are computed in float64 from the float32-rounded inputs, then stored as float32.

Every tensor is stored in the ENGINE's layout: activations [N, H, W, C] (PyTorch computes in NCHW,
we permute before saving), conv weights [O, I/groups, kH, kW], labels [N, H, W] int64.
File format: see README.md in this folder (and tests/harness/golden.h, the C++ loader).

Where Paddle/PaddleSeg differ from PyTorch, the expected values follow Paddle (see README.md):
 - batch_norm running_var is updated with the BIASED batch variance (Paddle's CUDA kernel);
   PyTorch's unbiased result is stored beside it for information only;
 - cross_entropy is PaddleSeg's CrossEntropyLoss (avg_non_ignore, class-weight formula, eps 1e-8);
 - ohem_cross_entropy is PaddleSeg's OhemCrossEntropyLoss, re-implemented here in numpy.
"""
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
MAGIC = b"EGLD"
END_MAGIC = b"DNEG"
VERSION = 1
DT_F32, DT_I64 = 0, 1

torch.set_default_dtype(torch.float64)


# ----------------------------------------------------------------------------------------- writer
class Golden:
    """An ordered list of named tensors written as one .golden file."""

    def __init__(self, fname):
        self.fname = fname
        self.items = []
        self.names = set()

    def add(self, name, value, dtype=None):
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        arr = np.asarray(value)
        if dtype is None:
            dtype = DT_I64 if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_ else DT_F32
        # np.array, not np.ascontiguousarray: the latter turns 0-d (scalar losses) into shape [1]
        arr = np.array(arr, dtype="<f4" if dtype == DT_F32 else "<i8", order="C")
        assert name not in self.names, name
        assert np.all(np.isfinite(arr)), name
        self.names.add(name)
        self.items.append((name, dtype, arr))

    def write(self):
        out = bytearray()
        out += MAGIC + struct.pack("<II", VERSION, len(self.items))
        for name, dtype, arr in self.items:
            nb = name.encode("utf-8")
            out += struct.pack("<I", len(nb)) + nb
            out += struct.pack("<II", dtype, arr.ndim)
            out += struct.pack("<%dq" % arr.ndim, *arr.shape)
            out += arr.tobytes()
        out += END_MAGIC
        path = os.path.join(HERE, self.fname)
        with open(path, "wb") as f:
            f.write(bytes(out))
        print("%-28s %3d tensors %7d bytes" % (self.fname, len(self.items), len(out)))
        return len(out)


# ---------------------------------------------------------------------------------------- helpers
def f32(a):
    """Round to float32 (the engine's inputs), returned as a float64 array holding those values."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def uniform(rs, shape, lo=-1.0, hi=1.0):
    return f32(rs.uniform(lo, hi, size=shape))


def leaf(a):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def nhwc_to_nchw(a):
    return a.permute(0, 3, 1, 2)


def nchw_to_nhwc(t):
    return t.permute(0, 2, 3, 1)


def grad_of(t):
    return t.grad.detach().numpy()


# --------------------------------------------------------------------------------- basic (loader)
def gen_basic():
    """Ops that already exist in the engine (matmul, elementwise, reduce): validates the loader."""
    g = Golden("basic.golden")
    rs = np.random.RandomState(100)
    # matmul [5,7] x [7,3]
    a, b = uniform(rs, (5, 7)), uniform(rs, (7, 3))
    ta, tb = leaf(a), leaf(b)
    y = ta @ tb
    gy = uniform(rs, y.shape)
    y.backward(torch.tensor(gy))
    for k, v in dict(a=a, b=b, y=y, gy=gy, ga=grad_of(ta), gb=grad_of(tb)).items():
        g.add("matmul/" + k, v)
    # sigmoid, tanh on an odd shape
    x = uniform(rs, (3, 5, 7), -4, 4)
    for op, fn in (("sigmoid", torch.sigmoid), ("tanh", torch.tanh)):
        tx = leaf(x)
        y = fn(tx)
        gy = uniform(rs, y.shape)
        y.backward(torch.tensor(gy))
        for k, v in dict(x=x, y=y, gy=gy, gx=grad_of(tx)).items():
            g.add(op + "/" + k, v)
    # broadcast add [2,3,4] + [4], mul [2,3,4] * [3,1]
    x, c = uniform(rs, (2, 3, 4)), uniform(rs, (4,))
    tx, tc = leaf(x), leaf(c)
    y = tx + tc
    gy = uniform(rs, y.shape)
    y.backward(torch.tensor(gy))
    for k, v in dict(a=x, b=c, y=y, gy=gy, ga=grad_of(tx), gb=grad_of(tc)).items():
        g.add("add_bcast/" + k, v)
    # sum over axis 1 (keepdim), mean over all, max over the last axis (values + indices)
    x = uniform(rs, (3, 4, 5))
    tx = leaf(x)
    y = tx.sum(dim=1, keepdim=True)
    gy = uniform(rs, y.shape)
    y.backward(torch.tensor(gy))
    for k, v in dict(x=x, y=y, gy=gy, gx=grad_of(tx)).items():
        g.add("sum_axis1/" + k, v)
    tx = leaf(x)
    y = tx.mean()
    y.backward()
    for k, v in dict(x=x, y=y, gx=grad_of(tx)).items():
        g.add("mean_all/" + k, v)
    tx = leaf(x)
    vals, idx = tx.max(dim=-1)
    gy = uniform(rs, vals.shape)
    vals.backward(torch.tensor(gy))
    for k, v in dict(x=x, y=vals, indices=idx, gy=gy, gx=grad_of(tx)).items():
        g.add("max_last/" + k, v)
    return g.write()


# ------------------------------------------------------------------------------------------ conv2d
def gen_conv2d():
    g = Golden("conv2d.golden")
    rs = np.random.RandomState(200)
    # name, N, H, W, Cin, Cout, kh, kw, stride (h,w), pad (h,w), dilation (h,w), groups, bias
    cases = [
        ("basic3x3", 2, 7, 6, 3, 5, 3, 3, (1, 1), (1, 1), (1, 1), 1, True),
        ("stride2", 2, 9, 8, 4, 6, 3, 3, (2, 2), (1, 1), (1, 1), 1, True),
        ("depthwise", 2, 8, 7, 6, 6, 3, 3, (1, 1), (1, 1), (1, 1), 6, True),
        ("depthwise_s2_mult2", 1, 9, 10, 4, 8, 3, 3, (2, 2), (1, 1), (1, 1), 4, False),
        ("grouped_dilated", 1, 9, 9, 4, 6, 3, 3, (1, 1), (2, 2), (2, 2), 2, False),
        ("pointwise", 2, 5, 3, 7, 4, 1, 1, (1, 1), (0, 0), (1, 1), 1, True),
        ("rect_asym", 1, 7, 11, 3, 2, 3, 5, (2, 1), (1, 2), (1, 1), 1, True),
        ("stem_s2_nopad", 1, 8, 9, 3, 4, 3, 3, (2, 2), (0, 0), (1, 1), 1, False),
    ]
    for name, n, h, w, cin, cout, kh, kw, st, pd, dl, groups, has_bias in cases:
        x = uniform(rs, (n, h, w, cin))
        wt = f32(rs.normal(0, np.sqrt(2.0 / (kh * kw * cin)), size=(cout, cin // groups, kh, kw)))
        b = uniform(rs, (cout,), -0.5, 0.5) if has_bias else None
        tx, tw = leaf(x), leaf(wt)
        tb = leaf(b) if has_bias else None
        y = F.conv2d(nhwc_to_nchw(tx), tw, tb, stride=st, padding=pd, dilation=dl, groups=groups)
        y = nchw_to_nhwc(y)
        gy = uniform(rs, y.shape)
        y.backward(torch.tensor(gy))
        p = name + "/"
        g.add(p + "x", x)
        g.add(p + "w", wt)
        if has_bias:
            g.add(p + "b", b)
        g.add(p + "args", np.array([st[0], st[1], pd[0], pd[1], dl[0], dl[1], groups], np.int64))
        g.add(p + "y", y)
        g.add(p + "gy", gy)
        g.add(p + "gx", grad_of(tx))
        g.add(p + "gw", grad_of(tw))
        if has_bias:
            g.add(p + "gb", grad_of(tb))
    return g.write()


# -------------------------------------------------------------------------------------- batch_norm
def gen_batch_norm():
    """Train: 3 steps on fresh batches sharing weight/bias/running stats; eval: one step.

    Paddle: running = momentum*running + (1-momentum)*batch with momentum 0.9, and the running
    variance uses the BIASED batch variance (Paddle's CUDA BNForwardTraining). PyTorch (momentum
    0.1) uses the unbiased one; its result is saved as running_var_torch_unbiased, not compared.
    """
    g = Golden("batch_norm.golden")
    rs = np.random.RandomState(300)
    momentum, eps = 0.9, 1e-5
    for name, shape in (("train_nhwc", (2, 5, 3, 4)), ("train_nc", (6, 5)), ("train_n1", (1, 2, 3, 3))):
        c = shape[-1]
        wt, bs = uniform(rs, (c,), 0.5, 1.5), uniform(rs, (c,), -0.5, 0.5)
        rm0, rv0 = uniform(rs, (c,), -0.2, 0.2), uniform(rs, (c,), 0.5, 2.0)
        p = name + "/"
        g.add(p + "weight", wt)
        g.add(p + "bias", bs)
        g.add(p + "running_mean_init", rm0)
        g.add(p + "running_var_init", rv0)
        g.add(p + "args", np.array([momentum, eps, 1.0]))  # momentum (Paddle), eps, training
        rm_t, rv_t = torch.tensor(rm0), torch.tensor(rv0)  # PyTorch's own running stats
        rm_p, rv_p = rm0.copy(), rv0.copy()  # Paddle's, in numpy
        rv_u = rv0.copy()  # PyTorch's rule, in numpy (cross-check only)
        for step in range(3):
            # per-channel offsets/scales so the statistics are not all ~(0, 1)
            x = f32(rs.normal(0, 1, size=shape) * rs.uniform(0.5, 3, size=(c,)) + rs.uniform(-2, 2, size=(c,)))
            tx, tw, tb = leaf(x), leaf(wt), leaf(bs)
            y = F.batch_norm(tx.reshape(-1, c), rm_t, rv_t, tw, tb, training=True, momentum=1 - momentum, eps=eps)
            y = y.reshape(shape)
            gy = uniform(rs, shape)
            y.backward(torch.tensor(gy))
            xr = x.reshape(-1, c)
            mean_b, var_biased = xr.mean(0), xr.var(0, ddof=0)
            # sanity: torch's normalisation uses the biased variance too
            y_np = (xr - mean_b) / np.sqrt(var_biased + eps) * wt + bs
            assert np.allclose(y_np.reshape(shape), y.detach().numpy(), atol=1e-10)
            rm_p = momentum * rm_p + (1 - momentum) * mean_b
            rv_p = momentum * rv_p + (1 - momentum) * var_biased
            # sanity: same running mean as torch; torch's running var is the unbiased (M/(M-1)) update
            assert np.allclose(rm_t.numpy(), rm_p, atol=1e-12)
            rv_u = momentum * rv_u + (1 - momentum) * xr.var(0, ddof=1)
            assert np.allclose(rv_t.numpy(), rv_u, atol=1e-12)
            s = str(step)
            g.add(p + "x" + s, x)
            g.add(p + "y" + s, y)
            g.add(p + "gy" + s, gy)
            g.add(p + "gx" + s, grad_of(tx))
            g.add(p + "gw" + s, grad_of(tw))
            g.add(p + "gb" + s, grad_of(tb))
        g.add(p + "running_mean", rm_p)
        g.add(p + "running_var", rv_p)
        g.add(p + "running_var_torch_unbiased", rv_t.numpy())
        assert not np.allclose(rv_p, rv_t.numpy(), rtol=1e-6), "biased/unbiased should differ visibly"
    # eval: running statistics, no update
    shape = (2, 4, 5, 3)
    c = shape[-1]
    x = uniform(rs, shape, -2, 2)
    wt, bs = uniform(rs, (c,), 0.5, 1.5), uniform(rs, (c,), -0.5, 0.5)
    rm, rv = uniform(rs, (c,), -0.5, 0.5), uniform(rs, (c,), 0.5, 2.0)
    tx, tw, tb = leaf(x), leaf(wt), leaf(bs)
    y = F.batch_norm(tx.reshape(-1, c), torch.tensor(rm), torch.tensor(rv), tw, tb, training=False, eps=eps)
    y = y.reshape(shape)
    gy = uniform(rs, shape)
    y.backward(torch.tensor(gy))
    p = "eval_nhwc/"
    for k, v in dict(weight=wt, bias=bs, running_mean_init=rm, running_var_init=rv).items():
        g.add(p + k, v)
    g.add(p + "args", np.array([momentum, eps, 0.0]))
    for k, v in dict(x0=x, y0=y, gy0=gy, gx0=grad_of(tx), gw0=grad_of(tw), gb0=grad_of(tb)).items():
        g.add(p + k, v)
    g.add(p + "running_mean", rm)
    g.add(p + "running_var", rv)
    return g.write()


# ------------------------------------------------------------------------------------------ resize
RESIZE_BILINEAR, RESIZE_NEAREST, RESIZE_BILINEAR_SCALE, RESIZE_NEAREST_SCALE = 0, 1, 2, 3


def gen_resize():
    g = Golden("resize.golden")
    rs = np.random.RandomState(400)
    # name, mode, input NHWC, (out_h, out_w), align_corners, scale (for *_SCALE modes)
    cases = [
        ("bilinear_up_odd", RESIZE_BILINEAR, (2, 5, 7, 3), (11, 13), 0, None),
        ("bilinear_down_odd", RESIZE_BILINEAR, (1, 9, 11, 2), (4, 5), 0, None),
        ("bilinear_up_x2", RESIZE_BILINEAR, (1, 4, 6, 3), (8, 12), 0, None),
        ("bilinear_mixed", RESIZE_BILINEAR, (2, 6, 5, 1), (3, 9), 0, None),
        ("bilinear_x8_logits", RESIZE_BILINEAR, (1, 3, 2, 4), (24, 16), 0, None),
        ("bilinear_from_1x1", RESIZE_BILINEAR, (2, 1, 1, 3), (3, 4), 0, None),
        ("bilinear_align_corners", RESIZE_BILINEAR, (1, 5, 7, 2), (9, 4), 1, None),
        ("bilinear_scale2", RESIZE_BILINEAR_SCALE, (1, 3, 5, 2), (6, 10), 0, (2.0, 2.0)),
        # non-integer in*scale: out = floor(in*scale) and the source ratio is 1/scale, not in/out
        # (Paddle's scale_factor path; PyTorch's too with recompute_scale_factor unset)
        ("bilinear_scale_half_odd", RESIZE_BILINEAR_SCALE, (1, 13, 7, 2), (6, 3), 0, (0.5, 0.5)),
        ("bilinear_scale_1.5", RESIZE_BILINEAR_SCALE, (2, 5, 3, 1), (7, 4), 0, (1.5, 1.5)),
        ("nearest_x2", RESIZE_NEAREST, (2, 3, 5, 4), (6, 10), 0, None),
        ("nearest_5to7", RESIZE_NEAREST, (1, 5, 5, 2), (7, 7), 0, None),
        ("nearest_down", RESIZE_NEAREST, (1, 7, 8, 2), (3, 3), 0, None),
        ("nearest_scale2", RESIZE_NEAREST_SCALE, (2, 3, 4, 3), (6, 8), 0, (2.0, 2.0)),
        ("nearest_scale_half_odd", RESIZE_NEAREST_SCALE, (1, 7, 5, 2), (3, 2), 0, (0.5, 0.5)),
    ]
    for name, mode, shape, (oh, ow), ac, scale in cases:
        x = uniform(rs, shape)
        tx = leaf(x)
        xin = nhwc_to_nchw(tx)
        if mode in (RESIZE_BILINEAR, RESIZE_BILINEAR_SCALE):
            if scale is None:
                y = F.interpolate(xin, size=(oh, ow), mode="bilinear", align_corners=bool(ac))
            else:
                y = F.interpolate(xin, scale_factor=scale, mode="bilinear", align_corners=False)
        else:
            if scale is None:
                y = F.interpolate(xin, size=(oh, ow), mode="nearest")
            else:
                y = F.interpolate(xin, scale_factor=scale, mode="nearest")
        y = nchw_to_nhwc(y)
        assert tuple(y.shape) == (shape[0], oh, ow, shape[3]), (name, y.shape)
        gy = uniform(rs, y.shape)
        y.backward(torch.tensor(gy))
        p = name + "/"
        g.add(p + "mode", np.array([mode], np.int64))
        g.add(p + "args", np.array([oh, ow, ac], np.int64))
        if scale is not None:
            g.add(p + "scale", np.array(scale))
        for k, v in dict(x=x, y=y, gy=gy, gx=grad_of(tx)).items():
            g.add(p + k, v)
    # the half-pixel formula itself, checked independently of torch on one case
    stored = {n: a.astype(np.float64) for n, _, a in g.items}
    assert np.allclose(bilinear_numpy(stored["bilinear_up_odd/x"], 11, 13), stored["bilinear_up_odd/y"], atol=1e-6)
    return g.write()


def bilinear_numpy(x, oh, ow):
    n, h, w, c = x.shape

    def src(o, i, out):
        s = max((o + 0.5) * i / out - 0.5, 0.0)
        i0 = min(int(np.floor(s)), i - 1)
        i1 = min(i0 + 1, i - 1)
        return i0, i1, s - i0

    y = np.zeros((n, oh, ow, c))
    for oy in range(oh):
        y0, y1, ly = src(oy, h, oh)
        for ox in range(ow):
            x0, x1, lx = src(ox, w, ow)
            y[:, oy, ox] = ((1 - ly) * ((1 - lx) * x[:, y0, x0] + lx * x[:, y0, x1]) +
                            ly * ((1 - lx) * x[:, y1, x0] + lx * x[:, y1, x1]))
    return y


# -------------------------------------------------------------------------------------------- pool
POOL_AVG, POOL_MAX, POOL_ADAPTIVE_AVG, POOL_GLOBAL_AVG = 0, 1, 2, 3


def gen_pool():
    g = Golden("pool.golden")
    rs = np.random.RandomState(500)
    # name, mode, shape, args: avg/max: (kernel, stride, padding, exclusive); adaptive: (out_h, out_w)
    cases = [
        ("avg3s2p1_exclusive", POOL_AVG, (2, 7, 9, 3), (3, 2, 1, 1)),
        ("avg3s2p1_exclusive_even", POOL_AVG, (1, 8, 8, 2), (3, 2, 1, 1)),
        ("avg3s2p1_include_pad", POOL_AVG, (1, 7, 6, 2), (3, 2, 1, 0)),
        ("avg2s2p0", POOL_AVG, (2, 6, 5, 3), (2, 2, 0, 1)),
        ("max3s2p1", POOL_MAX, (2, 7, 9, 3), (3, 2, 1)),
        ("max2s2p0_odd", POOL_MAX, (1, 5, 7, 2), (2, 2, 0)),
        ("adaptive_7to4", POOL_ADAPTIVE_AVG, (2, 7, 7, 3), (4, 4)),
        ("adaptive_5x9to2x3", POOL_ADAPTIVE_AVG, (1, 5, 9, 4), (2, 3)),
        ("adaptive_sppm_bins1", POOL_ADAPTIVE_AVG, (1, 6, 10, 2), (1, 1)),
        ("adaptive_sppm_bins4", POOL_ADAPTIVE_AVG, (1, 6, 10, 2), (4, 4)),
        ("adaptive_up_3to5", POOL_ADAPTIVE_AVG, (1, 3, 3, 2), (5, 5)),
        ("global", POOL_GLOBAL_AVG, (2, 5, 3, 4), ()),
    ]
    for name, mode, shape, args in cases:
        x = uniform(rs, shape)
        tx = leaf(x)
        xin = nhwc_to_nchw(tx)
        if mode == POOL_AVG:
            k, s, pd, excl = args
            y = F.avg_pool2d(xin, k, s, pd, ceil_mode=False, count_include_pad=not excl)
        elif mode == POOL_MAX:
            k, s, pd = args
            y = F.max_pool2d(xin, k, s, pd)
        elif mode == POOL_ADAPTIVE_AVG:
            y = F.adaptive_avg_pool2d(xin, args)
        else:
            y = xin.mean(dim=(2, 3), keepdim=True)
        y = nchw_to_nhwc(y)
        gy = uniform(rs, y.shape)
        y.backward(torch.tensor(gy))
        p = name + "/"
        g.add(p + "mode", np.array([mode], np.int64))
        g.add(p + "args", np.array(args, np.int64).reshape(-1))
        for k_, v in dict(x=x, y=y, gy=gy, gx=grad_of(tx)).items():
            g.add(p + k_, v)
    return g.write()


# ----------------------------------------------------------------------------------------- softmax
SM_SOFTMAX, SM_LOG_SOFTMAX, SM_ARGMAX = 0, 1, 2


def gen_softmax():
    g = Golden("softmax.golden")
    rs = np.random.RandomState(600)
    cases = [
        ("softmax_channels", SM_SOFTMAX, (2, 3, 4, 5), -1, 0),
        ("softmax_channels_wide", SM_SOFTMAX, (1, 2, 3, 19), -1, 0),
        ("softmax_axis1", SM_SOFTMAX, (2, 3, 4, 5), 1, 0),
        ("log_softmax_channels", SM_LOG_SOFTMAX, (2, 3, 4, 5), -1, 0),
        ("log_softmax_large_logits", SM_LOG_SOFTMAX, (1, 2, 2, 7), -1, 0),
        ("argmax_channels", SM_ARGMAX, (2, 3, 4, 5), -1, 0),
        ("argmax_channels_keepdim", SM_ARGMAX, (2, 3, 4, 5), -1, 1),
    ]
    for name, mode, shape, axis, keepdim in cases:
        lo, hi = (-60.0, 60.0) if "large" in name else (-3.0, 3.0)
        x = uniform(rs, shape, lo, hi)
        p = name + "/"
        g.add(p + "mode", np.array([mode], np.int64))
        g.add(p + "args", np.array([axis, keepdim], np.int64))
        g.add(p + "x", x)
        if mode == SM_ARGMAX:
            g.add(p + "y", torch.tensor(x).argmax(dim=axis, keepdim=bool(keepdim)))
            continue
        tx = leaf(x)
        y = F.softmax(tx, dim=axis) if mode == SM_SOFTMAX else F.log_softmax(tx, dim=axis)
        gy = uniform(rs, y.shape)
        y.backward(torch.tensor(gy))
        for k, v in dict(y=y, gy=gy, gx=grad_of(tx)).items():
            g.add(p + k, v)
    return g.write()


# ------------------------------------------------------------------------------------ cross entropy
def make_labels(rs, shape, c, ignore_frac, ignore_index=255):
    lab = rs.randint(0, c, size=shape).astype(np.int64)
    lab[rs.uniform(size=shape) < ignore_frac] = ignore_index
    return lab


def paddleseg_ce(tlogits_nhwc, labels, weight, ignore_index):
    """PaddleSeg CrossEntropyLoss (top_k_percent_pixels=1): mean(loss*mask)/(mean(mask*coef)+1e-8)."""
    c = tlogits_nhwc.shape[-1]
    mask = labels != ignore_index
    safe = np.where(mask, labels, 0)
    logp = F.log_softmax(tlogits_nhwc, dim=-1)
    nll = -torch.gather(logp, -1, torch.tensor(safe)[..., None])[..., 0]
    coef = np.ones(labels.shape) if weight is None else weight[safe]
    loss = nll * torch.tensor(coef) * torch.tensor(mask.astype(np.float64))
    denom = (mask * coef).mean() + 1e-8
    avg = loss.mean() / denom
    # cross-check against torch's own weighted/ignored cross entropy where it is defined
    if mask.any():
        ref = F.cross_entropy(nhwc_to_nchw(tlogits_nhwc.detach()), torch.tensor(labels), ignore_index=ignore_index,
                              weight=None if weight is None else torch.tensor(weight), reduction="none")
        assert np.allclose(ref.numpy(), loss.detach().numpy(), atol=1e-12)
    return avg


def gen_cross_entropy():
    g = Golden("cross_entropy.golden")
    rs = np.random.RandomState(700)
    cases = [
        ("plain", (2, 5, 6, 4), 0.2, False),
        ("class_weight", (2, 4, 7, 5), 0.25, True),
        ("many_classes", (1, 3, 5, 19), 0.1, False),
        ("no_ignore", (1, 4, 4, 3), 0.0, True),
        ("all_ignored", (1, 2, 3, 4), 1.0, False),
    ]
    for name, shape, ign, weighted in cases:
        c = shape[-1]
        x = uniform(rs, shape, -3, 3)
        lab = make_labels(rs, shape[:-1], c, ign)
        w = uniform(rs, (c,), 0.2, 2.0) if weighted else None
        tx = leaf(x)
        loss = paddleseg_ce(tx, lab, w, 255)
        loss.backward()
        p = name + "/"
        g.add(p + "logits", x)
        g.add(p + "labels", lab)
        if weighted:
            g.add(p + "class_weight", w)
        g.add(p + "ignore_index", np.array([255], np.int64))
        g.add(p + "loss", loss.reshape(()))
        g.add(p + "glogits", grad_of(tx))
    return g.write()


# --------------------------------------------------------------------------------------------- OHEM
def ohem_numpy(logits_nhwc, labels, thresh, min_kept, ignore_index):
    """PaddleSeg OhemCrossEntropyLoss selection, step by step (paddleseg/models/losses/ohem_cross_entropy_loss.py).

    Returns (kept mask [N,H,W] bool, threshold used or None, p_gt, num_valid).
    """
    valid = labels != ignore_index
    num_valid = int(valid.sum())
    lab = np.where(valid, labels, 0)
    z = logits_nhwc - logits_nhwc.max(-1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    p_gt = np.take_along_axis(prob, lab[..., None], -1)[..., 0]
    kept = valid.copy()
    threshold = None
    if min_kept < num_valid and num_valid > 0:
        p = (p_gt + (1 - valid)).reshape(-1)  # ignored pixels sort last
        threshold = thresh
        if min_kept > 0:  # PaddleSeg applies the kept mask only inside this branch
            order = np.argsort(p, kind="stable")
            p_k = p[order[min(p.size, min_kept) - 1]]
            if p_k > thresh:
                threshold = p_k
            kept = valid & (p < threshold).reshape(valid.shape)  # strict <
    return kept, threshold, p_gt, num_valid


def gen_ohem():
    g = Golden("ohem.golden")
    # name, shape, ignore fraction, thresh, min_kept, confidence (logit bonus on the label class)
    cases = [
        ("threshold_pk", (2, 6, 7, 4), 0.15, 0.7, 20, 5.0),   # p_k > thresh: threshold = p_k, min_kept-1 kept
        ("threshold_thresh", (2, 6, 7, 4), 0.15, 0.7, 10, 2.5),  # p_k <= thresh: keep p < 0.7
        ("no_mining", (1, 4, 5, 3), 0.2, 0.7, 1000, 1.0),     # min_kept >= num_valid: plain CE
        ("min_kept_1_keeps_none", (1, 5, 6, 5), 0.1, 0.05, 1, 6.0),  # p_k = min p > thresh: strict < keeps 0
        ("thresh_0.9_confident", (2, 5, 5, 3), 0.1, 0.9, 15, 3.0),
        ("all_ignored", (1, 3, 4, 3), 1.0, 0.7, 5, 0.0),
        # PaddleSeg applies the kept mask inside `if min_kept > 0`: min_kept = 0 mines nothing (plain
        # CE over the valid pixels), although some p >= thresh would be dropped by "keep p < thresh"
        ("min_kept_0_no_mining", (1, 5, 6, 4), 0.1, 0.7, 0, 2.5),
    ]
    rs = np.random.RandomState(800)
    for name, shape, ign, thresh, min_kept, conf in cases:
        c = shape[-1]
        for attempt in range(1000):
            lab = make_labels(rs, shape[:-1], c, ign)
            x = rs.uniform(-2, 2, size=shape)
            if conf:
                bonus = conf * (0.5 + 0.5 * rs.uniform(0, 1, size=shape[:-1] + (1,)))
                x = x + bonus * np.eye(c)[np.where(lab == 255, 0, lab)]
            x = f32(x)
            kept, threshold, p_gt, num_valid = ohem_numpy(x, lab, thresh, min_kept, 255)
            # the selection must be robust to float32 rounding in the engine's softmax:
            # no valid p_gt within 1e-4 of the threshold, and distinct p_gt values
            v = np.sort(p_gt[lab != 255])
            ok = True
            if threshold is not None and v.size:
                ok = np.min(np.abs(v - thresh)) > 1e-4 and (v.size < 2 or np.min(np.diff(v)) > 1e-5)
                if threshold != thresh:  # threshold = p_k: the element itself is excluded (strict <)
                    ok = ok and np.min(np.abs(np.delete(v, np.argmin(np.abs(v - threshold))) - threshold)) > 1e-4
            if ok:
                break
        else:
            sys.exit("ohem case %s: no robust draw found" % name)
        # expectations per case, so a change in the data cannot silently stop covering the branch
        nk = int(kept.sum())
        if name == "threshold_pk":
            assert threshold != thresh and nk == min_kept - 1, (threshold, nk)
        if name == "threshold_thresh":
            assert threshold == thresh and min_kept <= nk < num_valid, (threshold, nk)
        if name == "no_mining":
            assert threshold is None and nk == num_valid
        if name == "min_kept_1_keeps_none":
            assert threshold != thresh and nk == 0, (threshold, nk)
        if name == "thresh_0.9_confident":
            assert threshold == thresh and nk > min_kept, (threshold, nk)
        if name == "min_kept_0_no_mining":
            assert threshold == thresh and nk == num_valid and np.any(p_gt[lab != 255] > thresh), (threshold, nk)
        if name == "all_ignored":
            assert num_valid == 0 and nk == 0
        # loss = sum over kept of CE / (mean(kept) + 1e-5) / (N*H*W) (torch autograd for the grads)
        tx = leaf(x)
        logp = F.log_softmax(tx, dim=-1)
        safe = np.where(lab == 255, 0, lab)
        nll = -torch.gather(logp, -1, torch.tensor(safe)[..., None])[..., 0]
        km = torch.tensor(kept.astype(np.float64))
        loss = (nll * km).mean() / (km.mean() + 1e-5)
        loss.backward()
        p = name + "/"
        g.add(p + "logits", x)
        g.add(p + "labels", lab)
        g.add(p + "thresh", np.array([thresh]))
        g.add(p + "min_kept", np.array([min_kept], np.int64))
        g.add(p + "ignore_index", np.array([255], np.int64))
        g.add(p + "loss", loss.reshape(()))
        g.add(p + "glogits", grad_of(tx))
        g.add(p + "kept", kept.astype(np.int64))  # diagnostic: which pixels were kept
        g.add(p + "threshold", np.array([-1.0 if threshold is None else threshold]))  # diagnostic
        print("  ohem %-22s valid %3d kept %3d threshold %s" % (name, num_valid, nk, threshold))
    return g.write()


# --------------------------------------------------------------------------------- BCE / BCE / L1
LOSS_BCE_LOGITS, LOSS_BCE, LOSS_L1 = 0, 1, 2


def gen_bce():
    g = Golden("bce_l1.golden")
    rs = np.random.RandomState(900)
    cases = [
        ("bce_logits_weighted", LOSS_BCE_LOGITS, (2, 4, 5, 3), True),
        ("bce_logits_plain", LOSS_BCE_LOGITS, (1, 3, 7, 1), False),
        ("bce_logits_large", LOSS_BCE_LOGITS, (1, 2, 3, 4), True),
        ("bce_probs_weighted", LOSS_BCE, (2, 3, 4, 2), True),
        ("bce_probs_plain", LOSS_BCE, (1, 5, 5, 1), False),
        ("l1", LOSS_L1, (2, 3, 5, 4), False),
    ]
    for name, mode, shape, weighted in cases:
        p = name + "/"
        g.add(p + "mode", np.array([mode], np.int64))
        if mode == LOSS_L1:
            a = uniform(rs, shape)
            d = rs.uniform(0.05, 1.0, size=shape) * rs.choice([-1.0, 1.0], size=shape)  # |a-b| >= 0.05
            b = f32(a + d)
            ta, tb = leaf(a), leaf(b)
            loss = F.l1_loss(ta, tb)
            loss.backward()
            for k, v in dict(a=a, b=b, loss=loss.reshape(()), ga=grad_of(ta), gb=grad_of(tb)).items():
                g.add(p + k, v)
            continue
        if mode == LOSS_BCE_LOGITS:
            lo, hi = (-40, 40) if "large" in name else (-4, 4)
            x = uniform(rs, shape, lo, hi)
        else:
            x = uniform(rs, shape, 0.05, 0.95)
        t = f32(rs.uniform(0, 1, size=shape))
        t[rs.uniform(size=shape) < 0.3] = 1.0  # hard targets mixed with soft ones
        t[rs.uniform(size=shape) < 0.3] = 0.0
        w = uniform(rs, shape, 0.1, 2.0) if weighted else None
        tx = leaf(x)
        tw = None if w is None else torch.tensor(w)
        if mode == LOSS_BCE_LOGITS:
            loss = F.binary_cross_entropy_with_logits(tx, torch.tensor(t), weight=tw)
        else:
            loss = F.binary_cross_entropy(tx, torch.tensor(t), weight=tw)
        loss.backward()
        g.add(p + "x", x)
        g.add(p + "targets", t)
        if weighted:
            g.add(p + "weight", w)
        g.add(p + "loss", loss.reshape(()))
        g.add(p + "gx", grad_of(tx))
    return g.write()


# ------------------------------------------------------------------------------------------ metrics
def gen_metrics():
    """PaddleSeg area statistics (paddleseg/utils/metrics.py calculate_area), numpy; torch.bincount as a cross-check."""
    g = Golden("metrics.golden")
    rs = np.random.RandomState(1000)
    for name, shape, c in (("c5", (2, 5, 7), 5), ("c19_sparse", (1, 6, 9), 19), ("c3_all_ignored", (1, 2, 3), 3)):
        label = make_labels(rs, shape, c, 1.0 if "ignored" in name else 0.2)
        pred = rs.randint(0, c, size=shape).astype(np.int64)
        agree = rs.uniform(size=shape) < 0.4  # make some predictions right
        pred = np.where(agree & (label != 255), label, pred)
        mask = label != 255
        inter = np.array([np.sum((pred == i) & mask & (label == i)) for i in range(c)], np.int64)
        parea = np.array([np.sum((pred == i) & mask) for i in range(c)], np.int64)
        larea = np.array([np.sum(label == i) for i in range(c)], np.int64)
        assert np.array_equal(parea, torch.bincount(torch.tensor(pred[mask]), minlength=c).numpy())
        p = name + "/"
        g.add(p + "pred", pred)
        g.add(p + "label", label)
        g.add(p + "args", np.array([c, 255], np.int64))
        g.add(p + "intersect", inter)
        g.add(p + "pred_area", parea)
        g.add(p + "label_area", larea)
    return g.write()


# ---------------------------------------------------------------------------------------------- SGD
def gen_sgd():
    """3 steps of torch.optim.SGD(momentum, dampening=0, weight_decay) == Paddle Momentum + L2 decay."""
    g = Golden("sgd.golden")
    rs = np.random.RandomState(1100)
    lr, mu, wd = 0.05, 0.9, 4e-3
    shapes = [(3, 2, 3, 3), (7,), (5, 4)]
    params0 = [uniform(rs, s) for s in shapes]
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params0]
    opt = torch.optim.SGD(tparams, lr=lr, momentum=mu, weight_decay=wd, dampening=0)
    ps, vs = [p.copy() for p in params0], [np.zeros(s) for s in shapes]
    g.add("args", np.array([lr, mu, wd]))
    for i, p in enumerate(params0):
        g.add("param%d_init" % i, p)
    for step in range(3):
        grads = [uniform(rs, s) for s in shapes]
        for i, (tp, gr) in enumerate(zip(tparams, grads)):
            tp.grad = torch.tensor(gr)
            g.add("step%d/grad%d" % (step, i), gr)
        opt.step()
        for i in range(len(shapes)):  # Paddle rule in numpy
            gp = grads[i] + wd * ps[i]
            vs[i] = mu * vs[i] + gp
            ps[i] = ps[i] - lr * vs[i]
            assert np.allclose(ps[i], tparams[i].detach().numpy(), atol=1e-12)
            g.add("step%d/param%d" % (step, i), ps[i])
            g.add("step%d/velocity%d" % (step, i), vs[i])
    return g.write()


def main():
    total = 0
    for fn in (gen_basic, gen_conv2d, gen_batch_norm, gen_resize, gen_pool, gen_softmax, gen_cross_entropy,
               gen_ohem, gen_bce, gen_metrics, gen_sgd):
        total += fn()
    print("total %d bytes (torch %s, numpy %s)" % (total, torch.__version__, np.__version__))
    assert total < 512 * 1024


if __name__ == "__main__":
    main()
