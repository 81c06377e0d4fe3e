# SPDX-License-Identifier: Apache-2.0
"""libattn.varlen_attention: attention over packed variable-length
sequences (attn_sdpa_desc.cu_seqlens_q, cu_seqlens_kv), in the layout of
flash_attn_varlen_func."""

import numpy as np

from ._arrays import as_numpy, contiguous
from ._context import context_for
from ._errors import c_ints, check
from ._ffi import ffi, lib
from ._sdpa import (_backward, _grad_inputs, _ptr, _qkv, _scale_arg,
                    _window_arg)


class _Packed:
    """The checked arguments of a packed call (_check_packed)."""


def _cu(cu, name):
    """cu_seqlens as a contiguous int32 array of batch + 1 offsets."""
    a, _ = as_numpy(cu, name, ints=True)
    if a.ndim != 1 or a.shape[0] < 2:
        raise ValueError("%s must be 1-D with batch + 1 >= 2 entries, not of "
                         "shape %s" % (name, a.shape))
    if a.dtype.kind not in "iu":
        raise TypeError("%s must hold integers, not %s" % (name, a.dtype))
    if np.any(a > 2 ** 31 - 1) or np.any(a < -(2 ** 31)):
        raise ValueError("%s holds values outside int32" % name)
    return np.ascontiguousarray(a.astype(np.int32))


def _max_len(cu, given, name):
    """The longest sequence of cu, or given when it is not None (at least
    that and at least 1: what the library takes as seq_q / seq_kv)."""
    longest = int(np.max(np.diff(cu.astype(np.int64)))) if cu.size > 1 else 0
    if given is None:
        return max(longest, 1)
    if (isinstance(given, bool) or not isinstance(given, (int, np.integer))
            or given < 1):
        raise ValueError("%s must be an int >= 1, not %r" % (name, given))
    return int(given)


def _check_packed(query, key, value, cu_seqlens_q, cu_seqlens_k,
                  max_seqlen_q, max_seqlen_k, is_causal, scale, window):
    _window_arg(window)
    c = _Packed()
    q, k, v, c.kind, c.code = _qkv(query, key, value)
    if not q.ndim == k.ndim == v.ndim == 3:
        raise ValueError("query (total_q, Hq, E), key (total_k, H, E) and "
                         "value (total_k, H, Ev) must be 3-D (got %d, %d, "
                         "%d dimensions)" % (q.ndim, k.ndim, v.ndim))
    tq, hq, e = q.shape
    tk, hk, ek = k.shape
    tv, hv, ev = v.shape
    if ek != e:
        raise ValueError("key's head dimension %d differs from query's %d"
                         % (ek, e))
    if tv != tk or hv != hk:
        raise ValueError("value %s must have key's rows and heads %s"
                         % (v.shape, k.shape))
    if hk == 0 or hq % hk:
        raise ValueError("key's %d heads must divide query's %d" % (hk, hq))
    if e == 0 or ev == 0:
        raise ValueError("head dimensions must be positive")
    c.cq = _cu(cu_seqlens_q, "cu_seqlens_q")
    c.ck = _cu(cu_seqlens_k, "cu_seqlens_k")
    if c.cq.shape != c.ck.shape:
        raise ValueError("cu_seqlens_q and cu_seqlens_k must have one length "
                         "(batch + 1), not %d and %d"
                         % (c.cq.shape[0], c.ck.shape[0]))
    if c.cq[-1] != tq or c.ck[-1] != tk:
        raise ValueError("cu_seqlens_q ends at %d and cu_seqlens_k at %d, "
                         "query has %d rows and key %d"
                         % (c.cq[-1], c.ck[-1], tq, tk))
    scale = _scale_arg(scale)
    c.L = _max_len(c.cq, max_seqlen_q, "max_seqlen_q")
    c.S = _max_len(c.ck, max_seqlen_k, "max_seqlen_k")
    c.q, c.k, c.v = q, k, v
    c.batch, c.hq, c.hk, c.E, c.Ev = c.cq.shape[0] - 1, hq, hk, e, ev
    c.tq, c.tk, c.scale = tq, tk, scale
    c.is_causal = bool(is_causal)
    c.window = min(int(window), 2 ** 31 - 1)
    return c


def _desc(c):
    """The attn_sdpa_desc of packed call c (contiguous [total, heads, dim]
    tensors: the library's default packed strides)."""
    d = ffi.new("attn_sdpa_desc *")
    d.struct_size = ffi.sizeof("attn_sdpa_desc")
    d.batch, d.heads_q, d.heads_kv = c.batch, c.hq, c.hk
    d.seq_q, d.seq_kv, d.head_dim, d.head_dim_v = c.L, c.S, c.E, c.Ev
    d.scale = 0.0 if c.scale is None else c.scale
    d.score = lib.ATTN_SCORE_DOT
    d.dtype = c.code
    d.mask.causal = 1 if c.is_causal else 0
    d.mask.window = c.window
    d.causal_align = lib.ATTN_CAUSAL_BOTTOM_RIGHT
    d.cu_seqlens_q = _ptr(c.cq, "const int32_t *")
    d.cu_seqlens_kv = _ptr(c.ck, "const int32_t *")
    return d


@c_ints
def varlen_attention(query, key, value, cu_seqlens_q, cu_seqlens_k,
                     max_seqlen_q=None, max_seqlen_k=None, is_causal=False,
                     scale=None, *, window=0, device=None, return_lse=False):
    """Attention over a batch of sequences of different lengths packed
    without padding, in the layout of flash_attn_varlen_func: query
    (total_q, Hq, E), key (total_k, H, E), value (total_k, H, Ev), the
    rows of sequence b from cu_seqlens_q[b] to cu_seqlens_q[b + 1] (and
    cu_seqlens_k for the keys; 1-D integer arrays of batch + 1 offsets
    from 0).  Each sequence attends to its own keys only.  H must divide Hq
    (query head h reads key head h // (Hq/H)).  is_causal: the causal mask
    of each sequence aligned bottom-right (its last query row sees its
    last key: row i of a sequence with Lq queries and Lk keys sees keys j
    <= i + Lk - Lq), as flash_attn_varlen_func aligns it.  window > 0: also
    hides key j from row i when j < i + Lk - Lq - window + 1.  scale: None
    for 1/sqrt(E).  max_seqlen_q / max_seqlen_k: None (computed), or at
    least the longest sequence.  float32, float16 or bfloat16 numpy arrays
    or DLPack CPU tensors; device as scaled_dot_product_attention's.  A
    sequence without keys gives zero rows (lse -inf).  Returns the output
    (total_q, Hq, Ev) in the inputs' kind and dtype, and with return_lse
    the log-sum-exp (Hq, total_q) in float32 too (flash_attn's
    softmax_lse layout).  Errors: TypeError, ValueError, and
    libattn.LibattnError subclasses carrying the library's sentence."""
    c = _check_packed(query, key, value, cu_seqlens_q, cu_seqlens_k,
                      max_seqlen_q, max_seqlen_k, is_causal, scale, window)
    q, k, v = contiguous(c.q), contiguous(c.k), contiguous(c.v)
    o = np.empty((c.tq, c.hq, c.Ev), dtype=q.dtype)
    lse = (np.empty((c.hq, c.tq), dtype=np.float32)
           if return_lse else None)
    if c.tq and c.hq and not c.tk:  # no key at all: zeros, lse -inf
        o.fill(0)
        if lse is not None:
            lse.fill(-np.inf)
    elif c.tq and c.hq:
        ctx = context_for(device)
        d = _desc(c)
        handle = ctx._handle()
        check(lib.attn_sdpa(handle, d, _ptr(q), _ptr(k), _ptr(v), _ptr(o),
                            _ptr(lse, "float *") if lse is not None
                            else ffi.NULL), handle)
    if return_lse:
        return c.kind.back(o), c.kind.back(lse)
    return c.kind.back(o)


@c_ints
def varlen_attention_backward(grad_output, query, key, value, output, lse,
                              cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None,
                              max_seqlen_k=None, is_causal=False, scale=None,
                              *, window=0, device=None):
    """The gradients of varlen_attention (attn_sdpa_backward on packed
    sequences): (grad_query, grad_key, grad_value) given the loss's
    gradient at the output, the forward's query, key, value, output and
    lse (return_lse=True, (Hq, total_q)) and the arguments it was called
    with.  grad_output is shaped and typed as the output; the gradients
    come back shaped as query, key and value in their kind and dtype
    (grad_key and grad_value summed over the query heads that read a key
    head).  A sequence without keys gets grad_query 0, one without queries
    grad_key and grad_value 0.  Errors as varlen_attention's, ValueError
    for grad_output, output or lse of another shape."""
    c = _check_packed(query, key, value, cu_seqlens_q, cu_seqlens_k,
                      max_seqlen_q, max_seqlen_k, is_causal, scale, window)
    g, o, ls = _grad_inputs(grad_output, output, lse, (c.tq, c.hq, c.Ev),
                            (c.hq, c.tq), c.q.dtype)
    dq = np.zeros(c.q.shape, dtype=c.q.dtype)
    dk = np.zeros(c.k.shape, dtype=c.q.dtype)
    dv = np.zeros(c.v.shape, dtype=c.q.dtype)
    if c.tq and c.hq and c.tk:
        ctx = context_for(device)
        q, k, v = contiguous(c.q), contiguous(c.k), contiguous(c.v)
        g, o, ls = contiguous(g), contiguous(o), contiguous(ls)
        _backward(ctx, _desc(c), (q, k, v, o, ls, g), (dq, dk, dv))
    return c.kind.back(dq), c.kind.back(dk), c.kind.back(dv)
