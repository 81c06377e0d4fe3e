# SPDX-License-Identifier: Apache-2.0
"""libattn.scaled_dot_product_attention: attn_sdpa in PyTorch's words."""

import numpy as np

from ._arrays import BF16, as_numpy, contiguous, dtype_code
from ._context import context_for
from ._errors import c_ints, check
from ._ffi import ffi, lib


def _ptr(arr, ctype="void *"):
    return ffi.cast(ctype, arr.ctypes.data)


def _element_strides(arr):
    """arr's (batch, head, row) strides in elements when the library can
    read it in place (last dimension contiguous, the leading dimensions
    one stride apart, nothing negative, not all three 0: the library reads
    (0, 0, 0) as the contiguous layout, so a fully broadcast array, as
    np.broadcast_to or torch's expand make, is copied), else None."""
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
    out = (bst // item, st[-3] // item, st[-2] // item)
    return None if out == (0, 0, 0) else out


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
    elif m.dtype == BF16:
        # bfloat16 (torch.bfloat16, ml_dtypes): a float32's top 16 bits
        m = (m.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
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


class _Call:
    """The checked arguments of a call (_check)."""


def _window_arg(window):
    """window checked: an int >= 0 (0: no window)."""
    if (isinstance(window, bool) or not isinstance(window, (int, np.integer))
            or window < 0):
        raise ValueError("window must be an int >= 0 (0: no window), not %r"
                         % (window,))


def _scale_arg(scale):
    """scale as a float, or None for 1/sqrt(E); 0 refused."""
    if scale is None:
        return None
    scale = float(scale)
    if scale == 0.0:
        raise ValueError("scale=0 is not supported (the library reads 0 as "
                         "1/sqrt(E))")
    return scale


def _qkv(query, key, value):
    """query, key and value as numpy arrays of one dtype: (q, k, v, the
    inputs' kind, the library's dtype code)."""
    q, kind = as_numpy(query, "query")
    k, _ = as_numpy(key, "key")
    v, _ = as_numpy(value, "value")
    code = dtype_code(q, "query")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError("query, key and value must have one dtype, not %s, "
                        "%s and %s" % (q.dtype, k.dtype, v.dtype))
    return q, k, v, kind, code


def _check(query, key, value, attn_mask, dropout_p, is_causal, scale,
           enable_gqa, window=0, causal_offset=0):
    """The arguments of scaled_dot_product_attention, checked: a _Call
    with q, k, v (numpy, k and v broadcast to q's batch dimensions), kind,
    code, lead, batch, hq, hk, L, S, E, Ev, scale, window, causal_offset,
    and key_lead and value_lead (the batch dimensions key and value came
    with)."""
    if dropout_p != 0.0:
        raise ValueError("dropout_p must be 0: libattn has no dropout")
    _window_arg(window)
    if (isinstance(causal_offset, bool)
            or not isinstance(causal_offset, (int, np.integer))):
        raise ValueError("causal_offset must be an int, not %r"
                         % (causal_offset,))
    if causal_offset and not is_causal and not window:
        raise ValueError("causal_offset moves the diagonal of is_causal or "
                         "of the window: give one of them")
    if is_causal and attn_mask is not None:
        raise ValueError("attn_mask and is_causal=True cannot be given "
                         "together")
    c = _Call()
    q, k, v, c.kind, c.code = _qkv(query, key, value)
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
    c.key_lead, c.value_lead = k.shape[:-3], v.shape[:-3]
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
    scale = _scale_arg(scale)
    c.q, c.k, c.v, c.lead = q, k, v, lead
    # a window past every key hides nothing: the library's int holds it
    c.window = min(int(window), 2 ** 31 - 1)
    # the library takes the diagonal within [1 - L, S - 1] (past it the
    # causal mask hides every key or none)
    c.causal_offset = int(causal_offset)
    if c.causal_offset and L > 0 and S > 0 and not (
            1 - L <= c.causal_offset <= S - 1):
        raise ValueError("causal_offset %d puts the diagonal outside "
                         "[1 - L, S - 1] = [%d, %d]"
                         % (c.causal_offset, 1 - L, S - 1))
    c.batch = int(np.prod(lead, dtype=np.int64)) if lead else 1
    c.hq, c.hk, c.L, c.S, c.E, c.Ev, c.scale = hq, hk, L, S, E, Ev, scale
    return c


def _desc(c, is_causal, mask_arr, mask_shape):
    """The attn_sdpa_desc of call c (contiguous tensors)."""
    d = ffi.new("attn_sdpa_desc *")
    d.struct_size = ffi.sizeof("attn_sdpa_desc")
    d.batch, d.heads_q, d.heads_kv = c.batch, c.hq, c.hk
    d.seq_q, d.seq_kv, d.head_dim, d.head_dim_v = c.L, c.S, c.E, c.Ev
    d.scale = 0.0 if c.scale is None else c.scale
    d.score = lib.ATTN_SCORE_DOT
    d.dtype = c.code
    if is_causal:
        d.mask.causal = 1
        d.causal_align = lib.ATTN_CAUSAL_TOP_LEFT
    if c.window:
        d.mask.window = c.window
        d.causal_align = lib.ATTN_CAUSAL_TOP_LEFT
    d.causal_offset = c.causal_offset
    if mask_arr is not None:
        if mask_arr.dtype == np.uint8:
            d.keep = _ptr(mask_arr, "const uint8_t *")
            d.keep_shape = mask_shape
        else:
            d.mask.bias = _ptr(mask_arr, "const float *")
            d.mask.bias_kind = lib.ATTN_BIAS_BROADCAST
            d.bias_shape = mask_shape
    return d


@c_ints
def scaled_dot_product_attention(query, key, value, attn_mask=None,
                                 dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False, *, device=None,
                                 return_lse=False, window=0,
                                 causal_offset=0):
    """softmax(query key^T * scale + mask) value, as
    torch.nn.functional.scaled_dot_product_attention computes it.

    query (..., Hq, L, E), key (..., H, S, E), value (..., H, S, Ev): numpy
    arrays or DLPack CPU tensors of float32, float16 or bfloat16
    (torch.bfloat16, or ml_dtypes' bfloat16 arrays; all three alike);
    the leading dimensions are the batch (2-D inputs are one head).
    attn_mask: bool (True takes part) or float (added), broadcastable to
    (..., Hq, L, S).  is_causal: query i sees keys j <= i (top-left, as
    PyTorch), not together with attn_mask.  window: > 0 also hides key j
    from query i when j < i - window + 1 (a sliding window, top-left as
    is_causal: with it query i sees keys i - window + 1 .. i; alone, every
    later key too), with attn_mask or is_causal or alone; 0: none.
    causal_offset: moves the diagonal of is_causal and the window: query i
    sees keys j <= i + causal_offset, the window hides j < i +
    causal_offset - window + 1 (a block of a longer sequence, its rows
    from position p and keys from position r, takes p - r); within
    [1 - L, S - 1], with is_causal or a window.
    scale: None for 1/sqrt(E).
    enable_gqa: H may divide Hq (query head h reads key head h // (Hq/H)).
    dropout_p must be 0.  device: None (a shared "auto" context), a device
    string (a context kept per string) or a libattn.Context.  A query row
    that sees no key gives zeros (and lse -inf).  Returns the output
    (..., Hq, L, Ev) in the inputs' kind and dtype, and with return_lse the
    log-sum-exp of each row's scores (..., Hq, L) in float32 too.  Errors:
    TypeError, ValueError, and libattn.LibattnError subclasses carrying
    the library's sentence."""
    c = _check(query, key, value, attn_mask, dropout_p, is_causal, scale,
               enable_gqa, window, causal_offset)
    q, k, v, kind = c.q, c.k, c.v, c.kind
    o = np.empty(q.shape[:-1] + (c.Ev,), dtype=q.dtype)
    lse = (np.empty(q.shape[:-1], dtype=np.float32)
           if return_lse else None)

    def result():
        if return_lse:
            return kind.back(o), kind.back(lse)
        return kind.back(o)

    if c.batch == 0 or c.hq == 0 or c.L == 0:
        return result()
    if c.S == 0:
        o.fill(0)
        if lse is not None:
            lse.fill(-np.inf)
        return result()

    mask_arr = mask_shape = None
    if attn_mask is not None:
        mask_arr, mask_shape = _mask_operand(attn_mask, c.lead, c.batch, c.hq,
                                             c.L, c.S)

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
    d = _desc(c, is_causal, mask_arr, mask_shape)
    if strided is not None:
        d.q_strides, d.k_strides, d.v_strides = strided
    handle = ctx._handle()
    status = lib.attn_sdpa(handle, d, _ptr(q), _ptr(k), _ptr(v), _ptr(o),
                           _ptr(lse, "float *") if lse is not None
                           else ffi.NULL)
    check(status, handle)
    return result()


def _unbroadcast(g, lead):
    """g (*batch, H, S, E) summed over the batch dimensions a tensor of
    batch dimensions lead was broadcast along."""
    axes = tuple(i for i, n in enumerate(lead) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g


def _mask_grad(db, mask, lead, batch):
    """The gradient of a float attn_mask from db, the library's dbias of
    the operand _mask_operand made of it ([B', H', Q', S]): summed over
    what the operand broadcast (batch dimensions, the key dimension),
    shaped and typed as the mask."""
    m, mkind = as_numpy(mask, "attn_mask")
    full_nd = len(lead) + 3
    shape = (1,) * (full_nd - m.ndim) + m.shape
    if db.shape[0] == 1:
        db = db.reshape((1,) * len(lead) + db.shape[1:])
    else:
        db = db.reshape(tuple(lead) + db.shape[1:])
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and db.shape[i] != 1)
    if axes:
        db = db.sum(axis=axes, keepdims=True)
    return mkind.back(db.reshape(m.shape).astype(m.dtype))


def _grad_inputs(grad_output, output, lse, oshape, lshape, dtype):
    """grad_output, output and lse of a backward call as numpy arrays,
    checked against the output's shape oshape, lse's lshape and the
    inputs' dtype."""
    g, _ = as_numpy(grad_output, "grad_output")
    o, _ = as_numpy(output, "output")
    ls, _ = as_numpy(lse, "lse")
    if g.shape != oshape or o.shape != oshape:
        raise ValueError("grad_output %s and output %s must have the "
                         "output's shape %s" % (g.shape, o.shape, oshape))
    if g.dtype != dtype or o.dtype != dtype:
        raise TypeError("grad_output and output must have the inputs' dtype "
                        "%s, not %s and %s" % (dtype, g.dtype, o.dtype))
    if ls.shape != lshape or ls.dtype != np.float32:
        raise ValueError("lse must be float32 of shape %s (got %s %s)"
                         % (lshape, ls.dtype, ls.shape))
    return g, o, ls


def _backward(ctx, d, inputs, grads, db=None):
    """attn_sdpa_backward of descriptor d on ctx: inputs (q, k, v, o, lse,
    d_o) and the outputs (dq, dk, dv) contiguous numpy arrays, db the
    dbias array or None."""
    q, k, v, o, ls, g = inputs
    dq, dk, dv = grads
    gr = ffi.new("attn_sdpa_grad *")
    gr.struct_size = ffi.sizeof("attn_sdpa_grad")
    gr.q, gr.k, gr.v, gr.o = _ptr(q), _ptr(k), _ptr(v), _ptr(o)
    gr.lse = _ptr(ls, "const float *")
    gr.d_o = _ptr(g)
    gr.dq, gr.dk, gr.dv = _ptr(dq), _ptr(dk), _ptr(dv)
    if db is not None:
        gr.dbias = _ptr(db, "float *")
    handle = ctx._handle()
    check(lib.attn_sdpa_backward(handle, d, gr), handle)


@c_ints
def scaled_dot_product_attention_backward(grad_output, query, key, value,
                                          output, lse, attn_mask=None,
                                          is_causal=False, scale=None,
                                          enable_gqa=False, *, device=None,
                                          grad_attn_mask=False, window=0,
                                          causal_offset=0):
    """The gradients of scaled_dot_product_attention (attn_sdpa_backward):
    (grad_query, grad_key, grad_value) of a loss whose gradient at the
    output is grad_output, given the forward's query, key, value, output
    and lse (return_lse=True) and the arguments it was called with
    (window and causal_offset too).

    grad_output is shaped and typed as the output, lse (..., Hq, L)
    float32.  The gradients come back in the inputs' kind and dtype, each
    shaped as its input (grad_key and grad_value summed over the query
    heads that read a key head with enable_gqa, and over the batch
    dimensions key and value were broadcast along).  A query row that
    sees no key gets grad_query 0, and a key that no query sees grad_key
    and grad_value 0.  With grad_attn_mask=True a float attn_mask's
    gradient comes fourth (attn_sdpa_grad.dbias): shaped and typed as the
    mask, each entry the sum of dL/dS over the scores it is added to (over
    what it broadcasts along); an entry only hidden scores read gets 0.
    Errors as scaled_dot_product_attention's, ValueError for grad_output,
    output or lse of another shape, and with grad_attn_mask TypeError for
    a boolean mask (it has no gradient) and ValueError for none."""
    c = _check(query, key, value, attn_mask, 0.0, is_causal, scale,
               enable_gqa, window, causal_offset)
    if grad_attn_mask:
        if attn_mask is None:
            raise ValueError("grad_attn_mask=True needs an attn_mask")
        if as_numpy(attn_mask, "attn_mask")[0].dtype == np.bool_:
            raise TypeError("a boolean attn_mask has no gradient "
                            "(grad_attn_mask=True needs a float mask)")
    kind = c.kind
    g, o, ls = _grad_inputs(grad_output, output, lse,
                            c.q.shape[:-1] + (c.Ev,), c.q.shape[:-1],
                            c.q.dtype)
    dq = np.zeros(c.q.shape, dtype=c.q.dtype)
    dk = np.zeros(c.k.shape, dtype=c.q.dtype)
    dv = np.zeros(c.v.shape, dtype=c.q.dtype)
    db = None
    if c.batch and c.hq and c.L and c.S:
        mask_arr = mask_shape = None
        if attn_mask is not None:
            mask_arr, mask_shape = _mask_operand(attn_mask, c.lead, c.batch,
                                                 c.hq, c.L, c.S)
            if grad_attn_mask:
                db = np.zeros(mask_arr.shape, dtype=np.float32)
        ctx = context_for(device)
        # contiguous copies: broadcast key and value rows would share
        # elements, where their gradients cannot
        q, k, v = contiguous(c.q), contiguous(c.k), contiguous(c.v)
        g, o, ls = contiguous(g), contiguous(o), contiguous(ls)
        d = _desc(c, is_causal, mask_arr, mask_shape)
        _backward(ctx, d, (q, k, v, o, ls, g), (dq, dk, dv), db)
    if c.q.ndim >= 3:
        dk = _unbroadcast(dk, c.key_lead)
        dv = _unbroadcast(dv, c.value_lead)
    grads = (kind.back(dq), kind.back(dk), kind.back(dv))
    if not grad_attn_mask:
        return grads
    if db is None:  # an empty call: every gradient 0
        m, mkind = as_numpy(attn_mask, "attn_mask")
        return grads + (mkind.back(np.zeros(m.shape, dtype=m.dtype)),)
    return grads + (_mask_grad(db, attn_mask, c.lead, c.batch),)
