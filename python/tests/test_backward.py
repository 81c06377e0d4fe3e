# SPDX-License-Identifier: Apache-2.0
"""scaled_dot_product_attention_backward against the float64 gradients of
PyTorch's semantics (reference.sdpa_backward), on every backend of
conftest.py.  Tolerance per element of a gradient whose reference has the
largest magnitude M: TOL (M + 1) + TOL |want|, TOL 1e-4 for float32 and
8e-3 for float16 (as tests/test_backward.c: float sums of a few hundred
products, P recomputed from a float lse; float16's stored output and
gradients add its unit roundoff 2^-11 on that)."""

import numpy as np
import pytest

import libattn
from reference import sdpa_backward

TOL = {np.float32: 1e-4, np.float16: 8e-3}


def rand(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def check(ctx, q, k, v, mask=None, **kw):
    o, lse = libattn.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, device=ctx, return_lse=True, **kw)
    rng = np.random.default_rng(7)
    dout = rand(rng, o.shape, q.dtype)
    got = libattn.scaled_dot_product_attention_backward(
        dout, q, k, v, o, lse, attn_mask=mask, device=ctx, **kw)
    want = sdpa_backward(q, k, v, dout, mask, **kw)
    tol = TOL[q.dtype.type]
    for name, g, w, x in zip(("dq", "dk", "dv"), got, want, (q, k, v)):
        assert g.shape == x.shape and g.dtype == q.dtype, name
        m = np.max(np.abs(w)) if w.size else 0.0
        err = np.abs(g.astype(np.float64) - w)
        assert np.all(err <= tol * (m + 1.0) + tol * np.abs(w)), (
            "%s: worst %.3g (max %.3g)" % (name, err.max(), m))
    return got


@pytest.mark.parametrize("shape", [
    ((2, 4, 33, 16), (2, 4, 47, 16), (2, 4, 47, 16)),    # 4-D, L != S
    ((3, 19, 64), (3, 19, 64), (3, 19, 32)),             # 3-D, Ev != E
    ((17, 8), (9, 8), (9, 8)),                           # 2-D: one head
    ((2, 3, 2, 5, 8), (2, 3, 2, 7, 8), (2, 3, 2, 7, 8)),  # 5-D batch
])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_shapes_and_dtypes(ctx, rng, shape, dtype):
    q, k, v = (rand(rng, s, dtype) for s in shape)
    check(ctx, q, k, v)


def test_causal_gqa_scale(ctx, rng):
    q = rand(rng, (2, 6, 21, 16))
    k = rand(rng, (2, 2, 21, 16))
    v = rand(rng, (2, 2, 21, 8))
    check(ctx, q, k, v, is_causal=True, enable_gqa=True, scale=0.3)


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_masks(ctx, rng, kind):
    q = rand(rng, (2, 3, 7, 16))
    k = rand(rng, (2, 3, 11, 16))
    v = rand(rng, (2, 3, 11, 16))
    if kind == "bool":
        mask = rng.random((2, 1, 7, 11)) < 0.7
        mask[0, 0, 3] = False  # a row that sees no key: dq 0
    else:
        mask = rand(rng, (7, 11))
        mask[rng.random((7, 11)) < 0.2] = -np.inf
    dq, _, _ = check(ctx, q, k, v, mask)
    if kind == "bool":
        assert np.all(dq[0, :, 3] == 0)


def test_broadcast_key_batch(ctx, rng):
    # key and value shared by the batch: their gradients summed over it
    q = rand(rng, (3, 2, 9, 8))
    k = rand(rng, (1, 2, 12, 8))
    v = rand(rng, (1, 2, 12, 8))
    _, dk, dv = check(ctx, q, k, v)
    assert dk.shape == k.shape and dv.shape == v.shape


def test_gradient_matches_finite_differences(rng):
    # the loss sum(o * w) at q +/- h e against its gradient
    q = rand(rng, (1, 2, 5, 4)).astype(np.float64)
    k = rand(rng, (1, 2, 6, 4)).astype(np.float64)
    v = rand(rng, (1, 2, 6, 4)).astype(np.float64)
    w = rand(rng, (1, 2, 5, 4))
    args = [a.astype(np.float32) for a in (q, k, v)]
    o, lse = libattn.scaled_dot_product_attention(*args, device="native",
                                                  return_lse=True)
    dq, _, _ = libattn.scaled_dot_product_attention_backward(
        w, *args, o, lse, device="native")
    h = 1e-2
    for idx in [(0, 0, 0, 0), (0, 1, 3, 2), (0, 0, 4, 3)]:
        qp, qm = args[0].copy(), args[0].copy()
        qp[idx] += h
        qm[idx] -= h
        fp = np.sum(libattn.scaled_dot_product_attention(
            qp, args[1], args[2], device="native").astype(np.float64) * w)
        fm = np.sum(libattn.scaled_dot_product_attention(
            qm, args[1], args[2], device="native").astype(np.float64) * w)
        assert abs((fp - fm) / (2 * h) - dq[idx]) < 2e-3


def test_bad_arguments(rng):
    q = rand(rng, (1, 2, 4, 8))
    k = rand(rng, (1, 2, 6, 8))
    v = rand(rng, (1, 2, 6, 8))
    o, lse = libattn.scaled_dot_product_attention(q, k, v, device="native",
                                                  return_lse=True)
    with pytest.raises(ValueError):
        libattn.scaled_dot_product_attention_backward(
            o, q, k, v, o, lse[..., :3], device="native")
    with pytest.raises(ValueError):
        libattn.scaled_dot_product_attention_backward(
            o[..., :2, :], q, k, v, o, lse, device="native")
    with pytest.raises(TypeError):
        libattn.scaled_dot_product_attention_backward(
            o.astype(np.float16), q, k, v, o, lse, device="native")
