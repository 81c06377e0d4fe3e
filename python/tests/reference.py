# SPDX-License-Identifier: Apache-2.0
"""Double-precision references with PyTorch's semantics, and the tolerance
model the tests compare with.

Tolerances, per query row (the model of the C suites, tests/ref.c): with M
the largest scale |q|.|k| + |bias| over the row's visible keys (what a
float dot product's error scales with: |q.k| alone is small where the
terms cancel, and a row with one visible key has nothing else), V the largest
|v| among them and g = (E + 8) 2^-24 (a float dot product), a score is off
by at most g M, lse by g M, each output element by 2 g M V; plus, for the
output's own rounding, 2^-22 V (float32) or 2^-11 (|o| + V 2^-11) (float16,
whose inputs are exact halves, so only the result's rounding adds).  The
layer (MultiheadAttention) chains three float GEMMs: 2e-4 absolute, as the
C suites' REF_MHA_ABS, for activations of order 1."""

import numpy as np

MHA_ABS = 2e-4


def window_hides(L, S, window, offset=0):
    """[L, S]: True where a sliding window of window keys hides key j from
    query i (top-left, its diagonal moved by offset: j < i + offset -
    window + 1); all False for window 0."""
    i = np.arange(L)[:, None]
    j = np.arange(S)[None, :]
    return ((j < i + offset - window + 1) if window > 0
            else np.zeros((L, S), bool))


def causal_hides(L, S, offset=0):
    """[L, S]: True where the causal mask hides key j from query i
    (top-left, its diagonal moved by offset: j > i + offset)."""
    return np.triu(np.ones((L, S), dtype=bool), k=1 + offset)


def sdpa(q, k, v, mask=None, is_causal=False, scale=None, enable_gqa=False,
         window=0, causal_offset=0):
    """PyTorch's scaled_dot_product_attention in float64: (out, lse, tol_o,
    tol_lse) with the tolerances above for float32 (the caller adds the
    float16 term).  A row with no visible key gives 0 and lse -inf.
    window, causal_offset: libattn's sliding window and the diagonal's
    offset (window_hides, causal_hides)."""
    q = q.astype(np.float64)
    k = k.astype(np.float64)
    v = v.astype(np.float64)
    L, E = q.shape[-2:]
    S = k.shape[-2]
    if q.ndim >= 3 and q.shape[-3] != k.shape[-3]:
        rep = q.shape[-3] // k.shape[-3]
        k = np.repeat(k, rep, axis=-3)
        v = np.repeat(v, rep, axis=-3)
    sc = 1.0 / np.sqrt(E) if scale is None else scale
    s = sc * (q @ np.swapaxes(k, -1, -2))
    cond = abs(sc) * (np.abs(q) @ np.swapaxes(np.abs(k), -1, -2))
    if is_causal:
        s = np.where(causal_hides(L, S, causal_offset), -np.inf, s)
    s = np.where(window_hides(L, S, window, causal_offset), -np.inf, s)
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype == np.bool_:
            s = np.where(m, s, -np.inf)
        else:
            s = s + m.astype(np.float64)
            cond = cond + np.abs(np.where(np.isfinite(m), m, 0.0))
    mx = np.max(s, axis=-1, keepdims=True)
    empty = ~np.isfinite(mx)
    mx = np.where(empty, 0.0, mx)
    p = np.exp(s - mx)
    den = np.sum(p, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(empty, 0.0, (p @ v) / np.where(empty, 1.0, den))
        lse = np.where(empty[..., 0], -np.inf, (mx + np.log(den))[..., 0])
    visible = np.isfinite(s)
    mag = np.max(np.where(visible, np.maximum(np.abs(s), cond), 0.0), axis=-1)
    vmax = np.max(np.abs(v), axis=(-1, -2))[..., None]
    vmax = np.broadcast_to(vmax, mag.shape)
    g = (E + 8) * 2.0 ** -24
    tol_lse = g * mag + 2.0 ** -22 * np.abs(np.where(np.isfinite(lse),
                                                       lse, 0.0))
    tol_o = (2 * g * mag * vmax + 2.0 ** -22 * vmax)[..., None]
    return out, lse, tol_o, tol_lse


def sdpa_backward(q, k, v, dout, mask=None, is_causal=False, scale=None,
                  enable_gqa=False, mask_grad=False, window=0,
                  causal_offset=0):
    """The gradients (dq, dk, dv) of PyTorch's scaled_dot_product_attention
    in float64 at the output gradient dout, each shaped as its input (dk,
    dv summed over the query heads of a key head and over the batch
    dimensions key and value were broadcast along).  A row with no visible
    key gets dq 0 and adds nothing.  mask_grad: a float mask's gradient
    fourth, dS summed over what the mask broadcasts along."""
    if q.ndim == 2:  # one head
        r = sdpa_backward(q[None], k[None], v[None], dout[None], mask,
                          is_causal, scale, enable_gqa, mask_grad, window,
                          causal_offset)
        return tuple(x[0] for x in r[:3]) + tuple(r[3:])
    q = q.astype(np.float64)
    k0, v0 = k, v
    lead = q.shape[:-3]
    k = np.broadcast_to(k.astype(np.float64), lead + k.shape[-3:])
    v = np.broadcast_to(v.astype(np.float64), lead + v.shape[-3:])
    g = dout.astype(np.float64)
    L, E = q.shape[-2:]
    S = k.shape[-2]
    rep = q.shape[-3] // k.shape[-3]
    kr = np.repeat(k, rep, axis=-3)
    vr = np.repeat(v, rep, axis=-3)
    sc = 1.0 / np.sqrt(E) if scale is None else scale
    s = sc * (q @ np.swapaxes(kr, -1, -2))
    if is_causal:
        s = np.where(causal_hides(L, S, causal_offset), -np.inf, s)
    s = np.where(window_hides(L, S, window, causal_offset), -np.inf, s)
    if mask is not None:
        m = np.asarray(mask)
        s = (np.where(m, s, -np.inf) if m.dtype == np.bool_
             else s + m.astype(np.float64))
    mx = np.max(s, axis=-1, keepdims=True)
    empty = ~np.isfinite(mx)
    p = np.exp(s - np.where(empty, 0.0, mx))
    p = np.where(empty, 0.0, p / np.where(empty, 1.0,
                                          p.sum(axis=-1, keepdims=True)))
    o = p @ vr
    dp = g @ np.swapaxes(vr, -1, -2)
    ds = p * (dp - np.sum(g * o, axis=-1, keepdims=True))
    dq = sc * (ds @ kr)
    dkr = sc * (np.swapaxes(ds, -1, -2) @ q)
    dvr = np.swapaxes(p, -1, -2) @ g

    def fold(x, like):
        x = x.reshape(x.shape[:-3] + (k.shape[-3], rep) + x.shape[-2:])
        x = x.sum(axis=-3)
        axes = tuple(i for i, n in enumerate(like.shape[:-3])
                     if n == 1 and x.shape[i] != 1)
        return x.sum(axis=axes, keepdims=True) if axes else x

    if not mask_grad:
        return dq, fold(dkr, k0), fold(dvr, v0)
    m = np.asarray(mask)
    mshape = (1,) * (ds.ndim - m.ndim) + m.shape
    axes = tuple(i for i, n in enumerate(mshape) if n == 1 and ds.shape[i] != 1)
    dm = ds.sum(axis=axes, keepdims=True) if axes else ds
    return dq, fold(dkr, k0), fold(dvr, v0), dm.reshape(m.shape)


def check_close(got, want, tol, what):
    """Every element within tol (broadcast), -inf where want is -inf."""
    got = np.asarray(got, dtype=np.float64)
    tol = np.broadcast_to(tol, want.shape)
    inf = np.isinf(want)
    assert np.array_equal(got[inf], want[inf]), what + ": infinities differ"
    err = np.abs(got[~inf] - want[~inf])
    bad = err > tol[~inf]
    assert not bad.any(), "%s: %d elements out of tolerance, worst %.3g " \
        "(tol %.3g)" % (what, bad.sum(), err.max(),
                        tol[~inf][np.argmax(err - tol[~inf])])


def mha(x_q, x_kv, wq, wk, wv, wo, bq, bk, bv, bo, heads_q, heads_kv,
        bias=None, causal=False):
    """The layer in float64, batch-first: x_q (N, L, E), x_kv (N, S, E) or
    None; bias (N|1, Hq|1, L, S) added to the scores; causal top-left."""
    x_q = x_q.astype(np.float64)
    x_kv = x_q if x_kv is None else x_kv.astype(np.float64)

    def lin(x, w, b):
        y = x @ w.astype(np.float64).T
        return y if b is None else y + b.astype(np.float64)

    n, L, _ = x_q.shape
    S = x_kv.shape[1]
    D = wq.shape[0] // heads_q
    q = lin(x_q, wq, bq).reshape(n, L, heads_q, D).transpose(0, 2, 1, 3)
    k = lin(x_kv, wk, bk).reshape(n, S, heads_kv, D).transpose(0, 2, 1, 3)
    v = lin(x_kv, wv, bv).reshape(n, S, heads_kv, D).transpose(0, 2, 1, 3)
    out, _, _, _ = sdpa(q, k, v, mask=bias, is_causal=causal,
                        enable_gqa=True)
    cat = out.transpose(0, 2, 1, 3).reshape(n, L, heads_q * D)
    return lin(cat, wo, bo)
