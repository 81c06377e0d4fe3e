# SPDX-License-Identifier: Apache-2.0
"""varlen_attention and its backward (packed variable-length sequences,
flash_attn_varlen_func's layout) against the float64 references of
reference.py applied to each sequence on its own, on every backend of
conftest.py.  The causal mask of a sequence is aligned bottom-right (row i
of Lq queries against Lk keys sees j <= i + Lk - Lq), so each sequence is
checked as reference.sdpa with causal_offset Lk - Lq.  Tolerances: the
forward's per-row model of reference.py (plus float16's own rounding, as
test_sdpa.py adds it); the gradients' TOL (M + 1) + TOL |want|, TOL 1e-4
for float32 and 8e-3 for float16 (test_backward.py's)."""

import numpy as np
import pytest

import libattn
from reference import sdpa, sdpa_backward

TOL = {np.float32: 1e-4, np.float16: 8e-3}


def packed(rng, lens_q, lens_k, hq, hk, e, ev, dtype):
    cq = np.concatenate(([0], np.cumsum(lens_q))).astype(np.int32)
    ck = np.concatenate(([0], np.cumsum(lens_k))).astype(np.int32)
    q = rng.standard_normal((cq[-1], hq, e)).astype(dtype)
    k = rng.standard_normal((ck[-1], hk, e)).astype(dtype)
    v = rng.standard_normal((ck[-1], hk, ev)).astype(dtype)
    return q, k, v, cq, ck


def per_seq(x, cu, b):
    """Sequence b of packed x as (heads, rows, dim)."""
    return np.swapaxes(x[cu[b]:cu[b + 1]], 0, 1)


def f16_term(o, v):
    return 2.0 ** -11 * (np.abs(o) + np.max(np.abs(v), initial=0.0) * 2.0 **
                         -11)


CASES = [
    # lens_q, lens_k, hq, hk, causal, window
    ([5, 17, 1, 9], [7, 17, 30, 3], 4, 2, False, 0),
    ([5, 17, 1, 9], [7, 17, 30, 3], 4, 2, True, 0),
    ([12, 0, 6], [12, 5, 0], 2, 2, True, 0),      # no query; no key
    ([20, 33], [20, 40], 4, 1, True, 6),          # bottom-right window
    ([8, 8], [8, 8], 2, 2, False, 3),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("case", CASES)
def test_forward(ctx, rng, dtype, case):
    lens_q, lens_k, hq, hk, causal, window = case
    q, k, v, cq, ck = packed(rng, lens_q, lens_k, hq, hk, 16, 8, dtype)
    o, lse = libattn.varlen_attention(q, k, v, cq, ck, is_causal=causal,
                                      window=window, device=ctx,
                                      return_lse=True)
    assert o.shape == (cq[-1], hq, 8) and o.dtype == dtype
    assert lse.shape == (hq, cq[-1]) and lse.dtype == np.float32
    for b in range(len(lens_q)):
        lq, lk = lens_q[b], lens_k[b]
        if lq == 0:
            continue
        got = np.swapaxes(o[cq[b]:cq[b + 1]], 0, 1).astype(np.float64)
        got_lse = lse[:, cq[b]:cq[b + 1]]
        if lk == 0:
            assert np.all(got == 0) and np.all(got_lse == -np.inf)
            continue
        kb, vb = per_seq(k, ck, b), per_seq(v, ck, b)
        want, wlse, tol_o, tol_l = sdpa(
            per_seq(q, cq, b), kb, vb, is_causal=causal, enable_gqa=True,
            window=window, causal_offset=(lk - lq) if (causal or window)
            else 0)
        if dtype == np.float16:
            tol_o = tol_o + f16_term(want, vb)
        fin = np.isfinite(wlse)
        assert np.all(np.abs(got - want) <= tol_o + 1e-300), "sequence %d" % b
        assert np.all(got_lse[~fin] == -np.inf)
        assert np.all(np.abs(got_lse[fin] - wlse[fin]) <= tol_l[fin] + 1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("case", CASES)
def test_backward(ctx, rng, dtype, case):
    lens_q, lens_k, hq, hk, causal, window = case
    q, k, v, cq, ck = packed(rng, lens_q, lens_k, hq, hk, 16, 8, dtype)
    o, lse = libattn.varlen_attention(q, k, v, cq, ck, is_causal=causal,
                                      window=window, device=ctx,
                                      return_lse=True)
    dout = rng.standard_normal(o.shape).astype(dtype)
    dq, dk, dv = libattn.varlen_attention_backward(
        dout, q, k, v, o, lse, cq, ck, is_causal=causal, window=window,
        device=ctx)
    assert dq.shape == q.shape and dk.shape == k.shape and dv.shape == v.shape
    assert dq.dtype == dk.dtype == dv.dtype == dtype
    tol = TOL[dtype]
    for b in range(len(lens_q)):
        lq, lk = lens_q[b], lens_k[b]
        gq = per_seq(dq, cq, b)
        gk, gv = per_seq(dk, ck, b), per_seq(dv, ck, b)
        if lq == 0 or lk == 0:
            # no query: its keys get nothing; no key: its rows get nothing
            assert np.all(gq == 0) and np.all(gk == 0) and np.all(gv == 0)
            continue
        want = sdpa_backward(
            per_seq(q, cq, b), per_seq(k, ck, b), per_seq(v, ck, b),
            per_seq(dout, cq, b), is_causal=causal, enable_gqa=True,
            window=window,
            causal_offset=(lk - lq) if (causal or window) else 0)
        for name, g, w in zip(("dq", "dk", "dv"), (gq, gk, gv), want):
            m = np.max(np.abs(w)) if w.size else 0.0
            err = np.abs(g.astype(np.float64) - w)
            assert np.all(err <= tol * (m + 1.0) + tol * np.abs(w)), (
                "sequence %d %s: worst %.3g" % (b, name, err.max()))


def test_same_as_padded(ctx, rng):
    """Equal lengths: the padded batch's scaled_dot_product_attention."""
    q, k, v, cq, ck = packed(rng, [9, 9, 9], [9, 9, 9], 2, 2, 16, 16,
                             np.float32)
    got = libattn.varlen_attention(q, k, v, cq, ck, is_causal=True,
                                   device=ctx)
    qb = np.swapaxes(q.reshape(3, 9, 2, 16), 1, 2)
    kb = np.swapaxes(k.reshape(3, 9, 2, 16), 1, 2)
    vb = np.swapaxes(v.reshape(3, 9, 2, 16), 1, 2)
    want = libattn.scaled_dot_product_attention(qb, kb, vb, is_causal=True,
                                                device=ctx)
    assert np.array_equal(np.swapaxes(want, 1, 2).reshape(27, 2, 16), got)


def test_refusals(ctx, rng):
    q, k, v, cq, ck = packed(rng, [3, 4], [5, 6], 2, 2, 8, 8, np.float32)
    va = libattn.varlen_attention
    with pytest.raises(ValueError, match="3-D"):
        va(q[0], k, v, cq, ck, device=ctx)
    with pytest.raises(ValueError, match="ends at"):
        va(q, k, v, np.array([0, 3, 6], np.int32), ck, device=ctx)
    with pytest.raises(ValueError, match="one length"):
        va(q, k, v, cq, np.array([0, 11], np.int32), device=ctx)
    with pytest.raises(TypeError, match="integers"):
        va(q, k, v, cq.astype(np.float32), ck, device=ctx)
    with pytest.raises(TypeError, match="not float64"):
        va(q, k, v, [0, 3.5, 7], ck, device=ctx)
    with pytest.raises(TypeError, match="one dtype"):
        va(q, k.astype(np.float16), v, cq, ck, device=ctx)
    with pytest.raises(ValueError, match="divide"):
        va(np.zeros((7, 3, 8), np.float32), k, v, cq, ck, device=ctx)
    with pytest.raises(ValueError, match="window"):
        va(q, k, v, cq, ck, window=-1, device=ctx)
    with pytest.raises(ValueError, match="max_seqlen_q"):
        va(q, k, v, cq, ck, max_seqlen_q=0, device=ctx)
    # a max_seqlen shorter than a sequence: the library's refusal
    with pytest.raises(libattn.InvalidArgumentError):
        va(q, k, v, cq, ck, max_seqlen_k=5, device=ctx)
    # offsets that go backwards: the library's refusal
    with pytest.raises(libattn.InvalidArgumentError):
        va(q, k, v, np.array([0, 5, 7], np.int32),
           np.array([0, 12, 11], np.int32), device=ctx)
    o, lse = va(q, k, v, cq, ck, device=ctx, return_lse=True)
    with pytest.raises(ValueError, match="lse"):
        libattn.varlen_attention_backward(o, q, k, v, o, lse.T, cq, ck,
                                          device=ctx)
    with pytest.raises(ValueError, match="shape"):
        libattn.varlen_attention_backward(o[1:], q, k, v, o, lse, cq, ck,
                                          device=ctx)


def test_offsets_as_lists(ctx, rng):
    """cu_seqlens as Python lists or tuples of ints: as the int32 arrays."""
    q, k, v, cq, ck = packed(rng, [3, 4], [5, 6], 2, 2, 8, 8, np.float32)
    want = libattn.varlen_attention(q, k, v, cq, ck, device=ctx)
    got = libattn.varlen_attention(q, k, v, cq.tolist(), tuple(ck.tolist()),
                                   device=ctx)
    assert np.array_equal(want, got)
