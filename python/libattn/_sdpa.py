# SPDX-License-Identifier: Apache-2.0
"""libattn.scaled_dot_product_attention: attn_sdpa in PyTorch's words."""

import numpy as np

from ._arrays import as_numpy, contiguous, dtype_code
from ._context import context_for
from ._errors import check
from ._ffi import ffi, lib


def _ptr(arr, ctype="void *"):
    return ffi.cast(ctype, arr.ctypes.data)


def _element_strides(arr):
    """arr's (batch, head, row) strides in elements when the library can
    read it in place (last dimension contiguous, the leading dimensions
    one stride apart, nothing negative), else None."""
    item = arr.itemsize
    st = arr.strides
    n = arr.ndim
    if arr.shape[-1] > 1 and st[-1] != item:
        return None
    if any(x < 0 or x % item for x in st[:-1]):
        return None
    # the batch dimensions as one: each a whole number of the next
    bst = 0
    prev = None
    for size, x in reversed(list(zip(arr.shape[:n - 3], st[:n - 3]))):
        if size == 1:
            continue
        if prev is not None and x != prev[0] * prev[1]:
            return None
        if prev is None:
            bst = x
        prev = (size, x)
    return (bst // item, st[-3] // item, st[-2] // item)


def _mask_operand(mask, lead, batch, hq, L, S, name="attn_mask"):
    """A PyTorch attn_mask broadcastable to (*lead, hq, L, S) as the
    library takes it in place: (array, shape) with array [B', H', Q', S]
    and shape (B', H', Q'), each 1 (broadcast) or the full size; a bool
    mask as uint8 keep bytes (1 takes part), a float one as a float32 bias.
    Only what the library cannot broadcast is materialised: the key
    dimension where the mask has 1 there, and batch dimensions broadcast
    in part."""
    m, _ = as_numpy(mask, name)
    full = tuple(lead) + (hq, L, S)
    if m.ndim > len(full):
        raise ValueError("%s has %d dimensions, more than the %d of the "
                         "scores %s" % (name, m.ndim, len(full), full))
    try:
        np.broadcast_shapes(m.shape, full)
    except ValueError:
        raise ValueError("%s of shape %s does not broadcast to the scores' "
                         "shape %s" % (name, m.shape, full)) from None
    if m.dtype == np.bool_:
        m = m.view(np.uint8)
    elif m.dtype.kind == "f":
        m = m.astype(np.float32, copy=False)
    else:
        raise TypeError("%s: dtype %s is not supported (bool or a float "
                        "type)" % (name, m.dtype))
    shape = (1,) * (len(full) - m.ndim) + m.shape
    m = m.reshape(shape)
    mlead = shape[:-3]
    if all(s == 1 for s in mlead):
        nb = 1
    else:
        nb = batch
        if mlead != tuple(lead):
            m = np.broadcast_to(m, tuple(lead) + shape[-3:])
    m = np.broadcast_to(m, m.shape[:-1] + (S,))
    m = np.ascontiguousarray(m.reshape((nb,) + m.shape[-3:]))
    return m, (nb, m.shape[1], m.shape[2])


def scaled_dot_product_attention(query, key, value, attn_mask=None,
                                 dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False, *, device=None,
                                 return_lse=False):
    """softmax(query key^T * scale + mask) value, as
    torch.nn.functional.scaled_dot_product_attention computes it.

    query (..., Hq, L, E), key (..., H, S, E), value (..., H, S, Ev): numpy
    arrays or DLPack CPU tensors of float32, float16 or bfloat16
    (torch.bfloat16, or ml_dtypes' bfloat16 arrays; all three alike);
    the leading dimensions are the batch (2-D inputs are one head).
    attn_mask: bool (True takes part) or float (added), broadcastable to
    (..., Hq, L, S).  is_causal: query i sees keys j <= i (top-left, as
    PyTorch), not together with attn_mask.  scale: None for 1/sqrt(E).
    enable_gqa: H may divide Hq (query head h reads key head h // (Hq/H)).
    dropout_p must be 0.  device: None (a shared "auto" context), a device
    string (a context kept per string) or a libattn.Context.  A query row
    that sees no key gives zeros (and lse -inf).  Returns the output
    (..., Hq, L, Ev) in the inputs' kind and dtype, and with return_lse the
    log-sum-exp of each row's scores (..., Hq, L) in float32 too.  Errors:
    TypeError, ValueError, and libattn.LibattnError subclasses carrying
    the library's sentence."""
    if dropout_p != 0.0:
        raise ValueError("dropout_p must be 0: libattn has no dropout")
    if is_causal and attn_mask is not None:
        raise ValueError("attn_mask and is_causal=True cannot be given "
                         "together")
    q, kind = as_numpy(query, "query")
    k, _ = as_numpy(key, "key")
    v, _ = as_numpy(value, "value")
    code = dtype_code(q, "query")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError("query, key and value must have one dtype, not %s, "
                        "%s and %s" % (q.dtype, k.dtype, v.dtype))
    if not q.ndim == k.ndim == v.ndim or q.ndim < 2:
        raise ValueError("query, key and value must have the same number "
                         "of dimensions, at least 2 (got %d, %d, %d)" %
                         (q.ndim, k.ndim, v.ndim))
    L, E = q.shape[-2:]
    S, Ek = k.shape[-2:]
    Sv, Ev = v.shape[-2:]
    if Ek != E:
        raise ValueError("key's last dimension %d differs from query's %d"
                         % (Ek, E))
    if Sv != S:
        raise ValueError("value has %d rows, key %d" % (Sv, S))
    if q.ndim >= 3:
        hq, hk, hv = q.shape[-3], k.shape[-3], v.shape[-3]
        lead = q.shape[:-3]
        if k.shape[:-3] != lead or v.shape[:-3] != lead:
            # Batch dimensions broadcast as torch.matmul broadcasts them:
            # key and value to the query's (copied, as the library takes
            # each batch item's rows in place).
            try:
                if np.broadcast_shapes(lead, k.shape[:-3],
                                       v.shape[:-3]) != lead:
                    raise ValueError
            except ValueError:
                raise ValueError(
                    "the batch dimensions of key %s and value %s do not "
                    "broadcast to the query's %s" %
                    (k.shape[:-3], v.shape[:-3], lead)) from None
            k = np.broadcast_to(k, lead + k.shape[-3:])
            v = np.broadcast_to(v, lead + v.shape[-3:])
    else:
        hq = hk = hv = 1
        lead = ()
    if hk != hv:
        raise ValueError("key has %d heads, value %d" % (hk, hv))
    if hq != hk and not enable_gqa:
        raise ValueError("query has %d heads and key %d: pass "
                         "enable_gqa=True for grouped-query attention" %
                         (hq, hk))
    if hk == 0 or hq % hk:
        raise ValueError("key's %d heads must divide query's %d" % (hk, hq))
    if E == 0 or Ev == 0:
        raise ValueError("head dimensions must be positive")
    if scale is not None:
        scale = float(scale)
        if scale == 0.0:
            raise ValueError("scale=0 is not supported (the library reads "
                             "0 as 1/sqrt(E))")
    batch = int(np.prod(lead, dtype=np.int64)) if lead else 1
    o = np.empty(q.shape[:-1] + (Ev,), dtype=q.dtype)
    lse = (np.empty(q.shape[:-1], dtype=np.float32)
           if return_lse else None)

    def result():
        if return_lse:
            return kind.back(o), kind.back(lse)
        return kind.back(o)

    if batch == 0 or hq == 0 or L == 0:
        return result()
    if S == 0:
        o.fill(0)
        if lse is not None:
            lse.fill(-np.inf)
        return result()

    mask_arr = None
    if attn_mask is not None:
        mask_arr, mask_shape = _mask_operand(attn_mask, lead, batch, hq, L, S)

    ctx = context_for(device)
    # Strided inputs (element strides, last dimension contiguous) go to
    # the library as they lie; other arrays are copied to C order.
    strided = None
    if q.ndim >= 3 and not all(a.flags.c_contiguous for a in (q, k, v)):
        strided = tuple(_element_strides(a) for a in (q, k, v))
        if any(x is None for x in strided):
            strided = None
    if strided is None:
        q = contiguous(q)
        k = contiguous(k)
        v = contiguous(v)
    d = ffi.new("attn_sdpa_desc *")
    d.struct_size = ffi.sizeof("attn_sdpa_desc")
    d.batch, d.heads_q, d.heads_kv = batch, hq, hk
    d.seq_q, d.seq_kv, d.head_dim, d.head_dim_v = L, S, E, Ev
    d.scale = 0.0 if scale is None else scale
    d.score = lib.ATTN_SCORE_DOT
    d.dtype = code
    if is_causal:
        d.mask.causal = 1
        d.causal_align = lib.ATTN_CAUSAL_TOP_LEFT
    if mask_arr is not None:
        if mask_arr.dtype == np.uint8:
            d.keep = _ptr(mask_arr, "const uint8_t *")
            d.keep_shape = mask_shape
        else:
            d.mask.bias = _ptr(mask_arr, "const float *")
            d.mask.bias_kind = lib.ATTN_BIAS_BROADCAST
            d.bias_shape = mask_shape
    if strided is not None:
        d.q_strides, d.k_strides, d.v_strides = strided
    handle = ctx._handle()
    status = lib.attn_sdpa(handle, d, _ptr(q), _ptr(k), _ptr(v), _ptr(o),
                           _ptr(lse, "float *") if lse is not None
                           else ffi.NULL)
    check(status, handle)
    return result()
