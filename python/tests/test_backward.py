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


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_sliding_window(ctx, rng, causal, dtype):
    q = rand(rng, (2, 4, 29, 16), dtype)
    k = rand(rng, (2, 2, 37, 16), dtype)
    v = rand(rng, (2, 2, 37, 8), dtype)
    check(ctx, q, k, v, is_causal=causal, enable_gqa=True, window=5)


@pytest.mark.parametrize("offset,window", [(20, 0), (-9, 0), (12, 6)])
def test_causal_offset(ctx, rng, offset, window):
    q = rand(rng, (2, 4, 13, 16))
    k = rand(rng, (2, 2, 37, 16))
    v = rand(rng, (2, 2, 37, 8))
    check(ctx, q, k, v, is_causal=True, enable_gqa=True, window=window,
          causal_offset=offset)


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


@pytest.mark.parametrize("mshape", [
    (2, 3, 7, 11),   # one entry per score
    (7, 11),         # shared by the batch and the heads
    (1, 3, 1, 11),   # per head and key
    (2, 1, 7, 1),    # per batch item and query row (broadcast over keys)
    (11,),           # per key
])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_mask_gradient(ctx, rng, mshape, dtype):
    # grad_attn_mask: the mask's gradient against float64 dS summed over
    # what the mask broadcasts along, shaped and typed as the mask
    q = rand(rng, (2, 3, 7, 16), dtype)
    k = rand(rng, (2, 3, 11, 16), dtype)
    v = rand(rng, (2, 3, 11, 8), dtype)
    mask = rand(rng, mshape, dtype)
    hidden = rng.random(mshape) < 0.15
    hidden.flat[0] = False
    mask[hidden] = -np.inf
    o, lse = libattn.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, device=ctx, return_lse=True, scale=0.4)
    dout = rand(np.random.default_rng(3), o.shape, dtype)
    got = libattn.scaled_dot_product_attention_backward(
        dout, q, k, v, o, lse, attn_mask=mask, device=ctx, scale=0.4,
        grad_attn_mask=True)
    want = sdpa_backward(q, k, v, dout, mask, scale=0.4, mask_grad=True)
    assert len(got) == 4
    tol = TOL[dtype]
    for name, g, w in zip(("dq", "dk", "dv", "dmask"), got, want):
        assert g.shape == w.shape and g.dtype == dtype, name
        m = np.max(np.abs(w)) if w.size else 0.0
        err = np.abs(g.astype(np.float64) - w)
        assert np.all(err <= tol * (m + 1.0) + tol * np.abs(w)), (
            "%s: worst %.3g (max %.3g)" % (name, err.max(), m))
    # an entry that only hidden scores read gets exactly 0
    assert np.all(got[3][hidden] == 0)


def test_mask_gradient_gqa_5d_and_empty(ctx, rng):
    q = rand(rng, (2, 2, 4, 5, 8))
    k = rand(rng, (2, 2, 2, 6, 8))
    v = rand(rng, (2, 2, 2, 6, 8))
    mask = rand(rng, (2, 1, 4, 1, 6))  # per outer batch item, head and key
    o, lse = libattn.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, enable_gqa=True, device=ctx, return_lse=True)
    dout = rand(rng, o.shape)
    got = libattn.scaled_dot_product_attention_backward(
        dout, q, k, v, o, lse, attn_mask=mask, enable_gqa=True, device=ctx,
        grad_attn_mask=True)
    want = sdpa_backward(q, k, v, dout, mask, enable_gqa=True, mask_grad=True)
    assert got[3].shape == mask.shape
    np.testing.assert_allclose(got[3], want[3], rtol=1e-4,
                               atol=1e-4 * (np.abs(want[3]).max() + 1.0))
    # no query rows: every gradient 0, the mask's shaped as the mask
    q0 = rand(rng, (2, 3, 0, 8))
    k0 = rand(rng, (2, 3, 4, 8))
    m0 = rand(rng, (1, 4))
    o0, l0 = libattn.scaled_dot_product_attention(
        q0, k0, k0, attn_mask=m0, device=ctx, return_lse=True)
    got = libattn.scaled_dot_product_attention_backward(
        o0, q0, k0, k0, o0, l0, attn_mask=m0, device=ctx,
        grad_attn_mask=True)
    assert got[3].shape == (1, 4) and not got[3].any()


def test_mask_gradient_refusals(rng):
    q = rand(rng, (1, 2, 3, 8))
    o, lse = libattn.scaled_dot_product_attention(q, q, q, return_lse=True)
    with pytest.raises(ValueError, match="needs an attn_mask"):
        libattn.scaled_dot_product_attention_backward(
            o, q, q, q, o, lse, grad_attn_mask=True)
    keep = np.ones((3, 3), dtype=bool)
    with pytest.raises(TypeError, match="no gradient"):
        libattn.scaled_dot_product_attention_backward(
            o, q, q, q, o, lse, attn_mask=keep, grad_attn_mask=True)


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
