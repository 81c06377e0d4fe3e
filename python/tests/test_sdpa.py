# SPDX-License-Identifier: Apache-2.0
"""scaled_dot_product_attention against the float64 reference with
PyTorch's semantics (reference.py), on every backend of conftest.py."""

import numpy as np
import pytest

import libattn
from reference import check_close, sdpa


def run(ctx, q, k, v, **kw):
    return libattn.scaled_dot_product_attention(q, k, v, device=ctx,
                                                return_lse=True, **kw)


def check(ctx, q, k, v, mask=None, **kw):
    o, lse = run(ctx, q, k, v, attn_mask=mask, **kw)
    ref_kw = {key: kw[key] for key in ("is_causal", "scale", "enable_gqa",
                                       "window", "causal_offset")
              if key in kw}
    want, want_lse, tol_o, tol_lse = sdpa(q, k, v, mask, **ref_kw)
    assert o.shape == want.shape and o.dtype == q.dtype
    assert lse.shape == want_lse.shape and lse.dtype == np.float32
    if q.dtype == np.float16:
        vmax = np.max(np.abs(v.astype(np.float64)))
        tol_o = tol_o + 2.0 ** -11 * (np.abs(want) + vmax * 2.0 ** -11)
    check_close(o, want, tol_o, "output")
    check_close(lse, want_lse, tol_lse, "lse")
    return o


def rand(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


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


@pytest.mark.parametrize("L,S", [(16, 16), (5, 23), (23, 5), (1, 40)])
def test_is_causal_top_left(ctx, rng, L, S):
    q = rand(rng, (2, 3, L, 32))
    k = rand(rng, (2, 3, S, 32))
    v = rand(rng, (2, 3, S, 32))
    o = check(ctx, q, k, v, is_causal=True)
    # Top-left: row 0 sees key 0 only.
    assert np.allclose(o[..., 0, :], v[..., 0, :], atol=1e-6)


@pytest.mark.parametrize("L,S,window,causal", [
    (40, 40, 7, True), (23, 57, 5, True), (57, 23, 9, False), (1, 40, 3, True),
    (30, 30, 1, True), (12, 12, 100, False)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_sliding_window(ctx, rng, L, S, window, causal, dtype):
    q = rand(rng, (2, 3, L, 32), dtype)
    k = rand(rng, (2, 3, S, 32), dtype)
    v = rand(rng, (2, 3, S, 32), dtype)
    o = check(ctx, q, k, v, is_causal=causal, window=window)
    if causal and window == 1:  # each row sees its own key alone
        assert np.allclose(o, v, atol=2e-3)


def test_sliding_window_with_mask(ctx, rng):
    q = rand(rng, (2, 2, 19, 16))
    k = rand(rng, (2, 2, 31, 16))
    v = rand(rng, (2, 2, 31, 16))
    mask = rng.random((2, 1, 19, 31)) < 0.8
    check(ctx, q, k, v, mask, window=6)


# The diagonal moved: a block of a longer sequence (rows from position p,
# keys from r: offset p - r), at both ends of [1 - L, S - 1], with a
# window and alone.
@pytest.mark.parametrize("L,S,offset,window,causal", [
    (16, 40, 24, 0, True), (16, 40, 39, 0, True), (16, 40, -15, 0, True),
    (30, 30, -1, 0, True), (20, 50, 30, 8, True), (25, 25, 3, 6, False),
    (3, 300, 297, 64, True)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_causal_offset(ctx, rng, L, S, offset, window, causal, dtype):
    q = rand(rng, (2, 3, L, 32), dtype)
    k = rand(rng, (2, 3, S, 32), dtype)
    v = rand(rng, (2, 3, S, 32), dtype)
    o = check(ctx, q, k, v, is_causal=causal, window=window,
              causal_offset=offset)
    if causal and offset == 1 - L:  # only the last row sees a key, key 0
        assert np.all(o[..., :-1, :] == 0)


@pytest.mark.parametrize("offset,causal,window", [
    (40, True, 0), (-16, True, 0), (3, False, 0), (1.5, True, 0),
    (True, True, 0), (41, False, 4)])
def test_bad_causal_offset(ctx, rng, offset, causal, window):
    q = rand(rng, (1, 16, 8))
    k = rand(rng, (1, 40, 8))
    with pytest.raises(ValueError):
        libattn.scaled_dot_product_attention(q, k, k, device=ctx,
                                             is_causal=causal, window=window,
                                             causal_offset=offset)


@pytest.mark.parametrize("window", [-1, 2.5, True, "3"])
def test_bad_window(ctx, rng, window):
    q = rand(rng, (1, 4, 8))
    with pytest.raises(ValueError):
        libattn.scaled_dot_product_attention(q, q, q, device=ctx,
                                             window=window)


@pytest.mark.parametrize("mask_shape", [
    (7, 11), (2, 1, 7, 11), (2, 3, 7, 11), (1, 3, 1, 11), (2, 1, 1, 11),
    (11,), (3, 7, 11)])
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_masks_broadcast(ctx, rng, mask_shape, kind):
    q = rand(rng, (2, 3, 7, 16))
    k = rand(rng, (2, 3, 11, 16))
    v = rand(rng, (2, 3, 11, 16))
    if kind == "bool":
        mask = rng.random(mask_shape) < 0.7
    else:
        mask = rand(rng, mask_shape)
        mask[rng.random(mask_shape) < 0.2] = -np.inf
    check(ctx, q, k, v, mask)


def test_mask_as_list(ctx, rng):
    """A nested list of bools is a keep mask, of floats a bias: as the
    arrays they make."""
    q = rand(rng, (1, 2, 3, 8))
    k = rand(rng, (1, 2, 4, 8))
    v = rand(rng, (1, 2, 4, 8))
    keep = rng.random((3, 4)) < 0.6
    keep[:, 0] = True
    bias = rand(rng, (3, 4))
    for m in (keep, bias):
        want = run(ctx, q, k, v, attn_mask=m)[0]
        got = run(ctx, q, k, v, attn_mask=m.tolist())[0]
        assert np.array_equal(want, got)
    check(ctx, q, k, v, keep.tolist())


def test_fully_masked_row_gives_zero(ctx, rng):
    q = rand(rng, (1, 2, 4, 8))
    k = rand(rng, (1, 2, 6, 8))
    v = rand(rng, (1, 2, 6, 8))
    mask = np.ones((4, 6), dtype=bool)
    mask[2] = False
    o, lse = run(ctx, q, k, v, attn_mask=mask)
    assert np.all(o[..., 2, :] == 0) and np.all(lse[..., 2] == -np.inf)
    check(ctx, q, k, v, mask)


@pytest.mark.parametrize("hq,hkv", [(8, 2), (6, 1), (4, 4)])
def test_gqa(ctx, rng, hq, hkv):
    q = rand(rng, (2, hq, 9, 16))
    k = rand(rng, (2, hkv, 13, 16))
    v = rand(rng, (2, hkv, 13, 16))
    check(ctx, q, k, v, enable_gqa=True)


def test_scale(ctx, rng):
    q, k, v = (rand(rng, (1, 2, 10, 16)) for _ in range(3))
    check(ctx, q, k, v, scale=0.37)
    check(ctx, q, k, v, scale=-2.0, is_causal=True)


def test_strided_inputs(ctx, rng):
    # BSHD storage seen as BHSD: passed with its strides, same result.
    qs = rand(rng, (2, 12, 4, 16))
    q = qs.transpose(0, 2, 1, 3)
    assert not q.flags.c_contiguous
    check(ctx, q, q, q)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_fused_qkv_views(ctx, rng, dtype):
    # [batch, seq, 3, heads, dim] as three BHSD views of one buffer, and
    # the result equals the call on contiguous copies.
    qkv = rand(rng, (2, 21, 3, 4, 16), dtype)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    o = check(ctx, q, k, v, is_causal=True)
    want = run(ctx, *(np.ascontiguousarray(x) for x in (q, k, v)),
               is_causal=True)[0]
    assert np.array_equal(o, want)


def test_odd_strides(ctx, rng):
    # a batch dimension broadcast (stride 0), a 5-D batch of BSHD views,
    # and a view whose last dimension is strided (copied)
    q = rand(rng, (2, 3, 4, 9, 8))
    k = np.broadcast_to(rand(rng, (1, 1, 4, 11, 8)), (2, 3, 4, 11, 8))
    check(ctx, q, k, k)
    qs = rand(rng, (2, 3, 9, 4, 8)).transpose(0, 1, 3, 2, 4)
    check(ctx, qs, qs, qs)
    qw = rand(rng, (2, 4, 9, 16))[..., ::2]
    check(ctx, qw, qw, qw)


def test_returns_without_lse(ctx, rng):
    q = rand(rng, (1, 1, 3, 4))
    o = libattn.scaled_dot_product_attention(q, q, q, device=ctx)
    assert isinstance(o, np.ndarray) and o.shape == (1, 1, 3, 4)


def test_empty_sizes(ctx):
    q = np.zeros((1, 2, 0, 8), np.float32)
    k = np.zeros((1, 2, 5, 8), np.float32)
    o, lse = run(ctx, q, k, k)
    assert o.shape == (1, 2, 0, 8) and lse.shape == (1, 2, 0)
    q = np.ones((1, 2, 3, 8), np.float32)
    k = np.zeros((1, 2, 0, 8), np.float32)
    o, lse = run(ctx, q, k, k)
    assert np.all(o == 0) and np.all(lse == -np.inf)


class Wrapped:
    """A DLPack tensor of another library, here backed by numpy."""

    def __init__(self, a):
        self.a = a
        self.dtype = a.dtype

    def __dlpack__(self, **kw):
        return self.a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


def from_dlpack(x):
    """The module-level from_dlpack that results go back through."""
    return Wrapped(np.from_dlpack(x))


Wrapped.__module__ = __name__


def test_dlpack_in_and_out(ctx, rng):
    q, k, v = (rand(rng, (1, 2, 6, 8)) for _ in range(3))
    o = libattn.scaled_dot_product_attention(Wrapped(q), Wrapped(k),
                                             Wrapped(v), device=ctx)
    assert isinstance(o, Wrapped)
    want = libattn.scaled_dot_product_attention(q, k, v, device=ctx)
    assert np.array_equal(o.a, want)


def test_device_strings_and_default(rng):
    q = rand(rng, (1, 1, 4, 8))
    a = libattn.scaled_dot_product_attention(q, q, q, device="native")
    b = libattn.scaled_dot_product_attention(q, q, q)
    want, _, tol, _ = sdpa(q, q, q)
    check_close(a, want, tol, "native")
    check_close(b, want, tol, "auto")


def test_batch_broadcast(ctx, rng):
    q = rand(rng, (3, 2, 5, 8))
    k = rand(rng, (1, 2, 7, 8))
    v = rand(rng, (1, 2, 7, 8))
    o = libattn.scaled_dot_product_attention(q, k, v, device=ctx)
    want, _, tol, _ = sdpa(q, np.broadcast_to(k, (3, 2, 7, 8)),
                           np.broadcast_to(v, (3, 2, 7, 8)))
    check_close(o, want, tol, "broadcast batch")
    with pytest.raises(ValueError, match="broadcast"):
        libattn.scaled_dot_product_attention(q, rand(rng, (2, 2, 7, 8)),
                                             rand(rng, (2, 2, 7, 8)))


def test_fully_broadcast_inputs(ctx, rng):
    """Arrays broadcast in every leading dimension (np.broadcast_to,
    torch's expand): strides (0, 0, 0), which the library would read as
    the contiguous layout, so they are copied: the result is the copy's."""
    q = np.broadcast_to(rand(rng, (1, 1, 1, 16)), (2, 4, 9, 16))
    k = np.broadcast_to(rand(rng, (1, 1, 1, 16)), (2, 4, 5, 16))
    v = np.broadcast_to(rand(rng, (1, 1, 1, 16)), (2, 4, 5, 16))
    o = run(ctx, q, k, v)[0]
    want = run(ctx, q.copy(), k.copy(), v.copy())[0]
    assert np.array_equal(o, want)
    check(ctx, q, k, v)


def test_overflow_is_value_error(ctx):
    """Sizes past the C interface's ints: the documented ValueError."""
    q = np.zeros((5, 2, 8), np.float32)
    cu = np.array([0, 5], np.int32)
    with pytest.raises(ValueError):
        libattn.varlen_attention(q, q, q, cu, cu, max_seqlen_q=2 ** 40,
                                 device=ctx)
    layer = libattn.MultiheadAttention(8, 2, device=ctx)
    with pytest.raises(ValueError):
        layer(np.zeros((3, 8), np.float32), pos_offset=2 ** 31)
    with pytest.raises(ValueError):
        libattn.Context("native", threads=2 ** 40)
    with pytest.raises(ValueError, match="NUL"):
        libattn.Context("native\0junk")
