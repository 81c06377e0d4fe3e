# SPDX-License-Identifier: Apache-2.0
"""libattn.MultiheadAttention: attn_mha_forward with the weights as
arrays, loadable from a torch.nn.MultiheadAttention."""

import numpy as np

from ._arrays import as_numpy
from ._context import context_for
from ._errors import c_ints, check
from ._ffi import ffi, lib

_POSENC = {
    "none": lib.ATTN_POSENC_NONE,
    "sinusoidal": lib.ATTN_POSENC_SINUSOIDAL,
    "learned": lib.ATTN_POSENC_LEARNED,
    "rope": lib.ATTN_POSENC_ROPE,
}


def _f32(x, name, shape=None):
    a, _ = as_numpy(x, name)
    if a.dtype != np.float32:
        raise TypeError("%s: dtype %s; the layer takes float32" %
                        (name, a.dtype))
    if shape is not None and a.shape != tuple(shape):
        raise ValueError("%s has shape %s, expected %s" %
                         (name, a.shape, tuple(shape)))
    return np.ascontiguousarray(a)


def _ptr(a):
    return ffi.NULL if a is None else ffi.cast("const float *", a.ctypes.data)


def _to_bias(mask, name, true_hides):
    """A float32 additive form of a torch.nn.MultiheadAttention mask: bool
    (True hides, as nn.MultiheadAttention has it) or float (added)."""
    m, _ = as_numpy(mask, name)
    if m.dtype == np.bool_:
        return np.where(m if true_hides else ~m, np.float32(-np.inf),
                        np.float32(0))
    if m.dtype.kind == "f":
        return m.astype(np.float32, copy=False)
    raise TypeError("%s: dtype %s is not supported (bool or float)" %
                    (name, m.dtype))


class MultiheadAttention:
    """A multi-head attention layer run by attn_mha_forward, in the words of
    torch.nn.MultiheadAttention: weights wq (Hq*D, E), wk and wv (Hkv*D,
    E), wo (E, Hq*D), biases bq, bk, bv, bo (None: zero), all float32.
    num_kv_heads < num_heads gives grouped-query attention.  posenc:
    "none", "sinusoidal", "learned" (pos_table [rows, E]) or "rope".
    batch_first as in torch: inputs (L, N, E) when False, (N, L, E) when
    True, or unbatched (L, E).  device: None, a device string or a
    libattn.Context.  New weights start as torch initialises them (xavier
    uniform in, uniform out, zero biases), from rng (a numpy Generator)."""

    @c_ints
    def __init__(self, embed_dim, num_heads, *, num_kv_heads=None,
                 bias=True, batch_first=False, posenc="none",
                 pos_table=None, device=None, rng=None):
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError("embed_dim (%d) must be a positive multiple of "
                             "num_heads (%d)" % (embed_dim, num_heads))
        kv = num_heads if num_kv_heads is None else num_kv_heads
        if kv <= 0 or num_heads % kv:
            raise ValueError("num_kv_heads (%d) must divide num_heads (%d)"
                             % (kv, num_heads))
        if posenc not in _POSENC:
            raise ValueError("posenc must be one of %s" % ", ".join(_POSENC))
        self.embed_dim, self.num_heads, self.num_kv_heads = (
            embed_dim, num_heads, kv)
        self.head_dim = embed_dim // num_heads
        self.batch_first = batch_first
        self.posenc = posenc
        self.pos_table = (None if pos_table is None else
                          _f32(pos_table, "pos_table"))
        if posenc == "learned" and self.pos_table is None:
            raise ValueError("posenc='learned' needs a pos_table")
        self._check_table()
        self._ctx = context_for(device)
        rng = np.random.default_rng() if rng is None else rng
        e, qd, kd = embed_dim, num_heads * self.head_dim, kv * self.head_dim
        lim = np.sqrt(6.0 / (e + qd + 2 * kd))  # xavier over in_proj

        def uni(shape, a):
            return rng.uniform(-a, a, size=shape).astype(np.float32)

        self.wq, self.wk, self.wv = uni((qd, e), lim), uni((kd, e), lim), \
            uni((kd, e), lim)
        self.wo = uni((e, qd), 1.0 / np.sqrt(qd))
        zero = (lambda n: np.zeros(n, np.float32)) if bias else \
            (lambda n: None)
        self.bq, self.bk, self.bv, self.bo = zero(qd), zero(kd), zero(kd), \
            zero(e)

    # -- weights ---------------------------------------------------------
    def _check_table(self):
        t = self.pos_table
        if t is not None and (t.ndim != 2 or t.shape[1] != self.embed_dim):
            raise ValueError("pos_table must be [rows, %d], got %s" %
                             (self.embed_dim, t.shape))

    def _check_params(self):
        """The weights, biases and table as the C layer reads them: each of
        its shape (an array set by hand included), else ValueError; the
        library would read past a smaller one."""
        e = self.embed_dim
        qd = self.num_heads * self.head_dim
        kd = self.num_kv_heads * self.head_dim
        want = {"wq": (qd, e), "wk": (kd, e), "wv": (kd, e), "wo": (e, qd),
                "bq": (qd,), "bk": (kd,), "bv": (kd,), "bo": (e,)}
        for name, shape in want.items():
            a = getattr(self, name)
            if a is None and name[0] == "b":
                continue
            if a is None or np.shape(a) != shape:
                raise ValueError("%s has shape %s, expected %s" %
                                 (name, None if a is None else np.shape(a),
                                  shape))
        self._check_table()

    @c_ints
    def load_state_dict(self, state):
        """Weights from a torch.nn.MultiheadAttention state dict (tensors
        or arrays): in_proj_weight / in_proj_bias (or q_proj_weight,
        k_proj_weight, v_proj_weight), out_proj.weight, out_proj.bias."""
        e = self.embed_dim
        qd = self.num_heads * self.head_dim
        kd = self.num_kv_heads * self.head_dim

        def get(k):
            v = state[k]
            if hasattr(v, "detach"):
                v = v.detach()
            return _f32(v, k)

        if "in_proj_weight" in state:
            w = get("in_proj_weight")
            if w.shape != (qd + 2 * kd, e):
                raise ValueError("in_proj_weight has shape %s, expected %s"
                                 % (w.shape, (qd + 2 * kd, e)))
            self.wq, self.wk, self.wv = (w[:qd].copy(), w[qd:qd + kd].copy(),
                                         w[qd + kd:].copy())
        else:
            self.wq = _f32(get("q_proj_weight"), "q_proj_weight", (qd, e))
            self.wk = _f32(get("k_proj_weight"), "k_proj_weight", (kd, e))
            self.wv = _f32(get("v_proj_weight"), "v_proj_weight", (kd, e))
        self.wo = _f32(get("out_proj.weight"), "out_proj.weight", (e, qd))
        if state.get("in_proj_bias") is not None:
            b = _f32(get("in_proj_bias"), "in_proj_bias", (qd + 2 * kd,))
            self.bq, self.bk, self.bv = (b[:qd].copy(), b[qd:qd + kd].copy(),
                                         b[qd + kd:].copy())
        else:
            self.bq = self.bk = self.bv = None
        self.bo = (_f32(get("out_proj.bias"), "out_proj.bias", (e,))
                   if state.get("out_proj.bias") is not None else None)
        return self

    @classmethod
    def from_torch(cls, module, *, device=None):
        """A layer with the weights and settings of a
        torch.nn.MultiheadAttention (kdim = vdim = embed_dim, no
        add_bias_kv, no add_zero_attn, dropout unused)."""
        if getattr(module, "bias_k", None) is not None or \
                getattr(module, "add_zero_attn", False):
            raise NotImplementedError("add_bias_kv and add_zero_attn are "
                                      "not supported")
        if module.kdim != module.embed_dim or module.vdim != module.embed_dim:
            raise NotImplementedError("kdim and vdim must equal embed_dim")
        layer = cls(module.embed_dim, module.num_heads,
                    batch_first=module.batch_first, device=device,
                    rng=np.random.default_rng(0))
        return layer.load_state_dict(module.state_dict())

    # -- forward ---------------------------------------------------------
    @c_ints
    def __call__(self, query, key=None, value=None, key_padding_mask=None,
                 need_weights=False, attn_mask=None, is_causal=False, *,
                 pos_offset=0):
        """Returns (attn_output, None) like torch's forward with
        need_weights=False.  key and value must be one input (the layer
        projects K and V from the same tokens); None or query itself means
        self-attention.  key_padding_mask (N, S): bool True hides the key,
        float is added; attn_mask (L, S) or (N*num_heads, L, S): bool True
        hides, float is added; is_causal: query i sees keys j <= i.  The
        result has the input's kind (numpy, torch, ...)."""
        if need_weights:
            raise NotImplementedError("need_weights=True: the attention "
                                      "weights are never formed")
        x, kind = as_numpy(query, "query")
        src = query if key is None else key
        if value is not None and value is not src:
            kk, _ = as_numpy(src, "key")
            vv, _ = as_numpy(value, "value")
            if kk.shape != vv.shape or not np.array_equal(kk, vv):
                raise NotImplementedError(
                    "key and value must be the same input")
        xkv = None if src is query else as_numpy(src, "key")[0]
        unbatched = x.ndim == 2
        e = self.embed_dim

        def tokens(a, name):
            a = a.astype(np.float32, copy=False) if a.dtype == np.float32 \
                else a
            if a.dtype != np.float32:
                raise TypeError("%s: dtype %s; the layer takes float32" %
                                (name, a.dtype))
            if unbatched:
                if a.ndim != 2 or a.shape[1] != e:
                    raise ValueError("%s must be (L, %d), got %s" %
                                     (name, e, a.shape))
                return np.ascontiguousarray(a[None])
            if a.ndim != 3 or a.shape[2] != e:
                raise ValueError("%s must be 3-D with last dimension %d, got "
                                 "%s" % (name, e, a.shape))
            return np.ascontiguousarray(a if self.batch_first else
                                        a.transpose(1, 0, 2))

        xq = tokens(x, "query")
        xk = None if xkv is None else tokens(xkv, "key")
        n, L = xq.shape[0], xq.shape[1]
        S = L if xk is None else xk.shape[1]
        if xk is not None and xk.shape[0] != n:
            raise ValueError("query and key have different batch sizes")
        self._check_params()
        if n == 0 or L == 0:  # nothing to compute: an empty output
            y = np.empty((n, L, e), dtype=np.float32)
            out = y[0] if unbatched else (
                y if self.batch_first else y.transpose(1, 0, 2).copy())
            return kind.back(out), None
        hq = self.num_heads
        bias = None
        causal = 0
        if attn_mask is not None:
            am = _to_bias(attn_mask, "attn_mask", True)
            if am.shape == (L, S):
                bias = am.reshape(1, 1, L, S)
            elif am.shape == (n * hq, L, S):
                bias = am.reshape(n, hq, L, S)
            else:
                raise ValueError("attn_mask must be (L, S) or (N*num_heads, "
                                 "L, S) = %s or %s, got %s" %
                                 ((L, S), (n * hq, L, S), am.shape))
        if key_padding_mask is not None:
            kp = _to_bias(key_padding_mask, "key_padding_mask", True)
            want = (S,) if unbatched else (n, S)
            if kp.shape != want:
                raise ValueError("key_padding_mask must be %s, got %s" %
                                 (want, kp.shape))
            kp = kp.reshape(n, 1, 1, S)
            bias = kp if bias is None else bias + kp
        if is_causal:
            if L == S and bias is None:
                causal = 1
            else:
                i = np.arange(L)[:, None]
                j = np.arange(S)[None, :]
                cm = np.where(j <= i, np.float32(0),
                              np.float32(-np.inf)).reshape(1, 1, L, S)
                bias = cm if bias is None else bias + cm
        mask = ffi.new("attn_mask_desc *")
        mask.struct_size = ffi.sizeof("attn_mask_desc")
        mask.causal = causal
        if bias is not None:
            if bias.shape[1:3] == (1, 1) and bias.shape[0] == n and \
                    attn_mask is None and not (is_causal and not causal):
                # A key-padding mask alone: [batch, seq_kv], read in place.
                bias = np.ascontiguousarray(bias.reshape(n, S))
                mask.bias_kind = lib.ATTN_BIAS_KEY
            elif bias.shape[0] == 1 and bias.shape[1] == 1:
                bias = np.ascontiguousarray(bias.reshape(L, S))
                mask.bias_kind = lib.ATTN_BIAS_SHARED
            else:
                bias = np.ascontiguousarray(
                    np.broadcast_to(bias, (n, hq, L, S)), dtype=np.float32)
                mask.bias_kind = lib.ATTN_BIAS_FULL
            mask.bias = _ptr(bias)
        d = ffi.new("attn_mha_desc *")
        d.struct_size = ffi.sizeof("attn_mha_desc")
        d.d_model, d.heads_q, d.heads_kv, d.head_dim = (
            e, hq, self.num_kv_heads, self.head_dim)
        arrays = [np.ascontiguousarray(a, dtype=np.float32)
                  if a is not None else None
                  for a in (self.wq, self.wk, self.wv, self.wo, self.bq,
                            self.bk, self.bv, self.bo)]
        (d.wq, d.wk, d.wv, d.wo, d.bq, d.bk, d.bv, d.bo) = \
            [_ptr(a) for a in arrays]
        d.score = lib.ATTN_SCORE_DOT
        d.posenc = _POSENC[self.posenc]
        if self.pos_table is not None:
            d.pos_table = _ptr(self.pos_table)
            d.pos_table_len = self.pos_table.shape[0]
        d.pos_offset = int(pos_offset)
        y = np.empty((n, L, e), dtype=np.float32)
        handle = self._ctx._handle()
        status = lib.attn_mha_forward(
            handle, d, n, L, S, _ptr(xq), _ptr(xk), mask,
            ffi.cast("float *", y.ctypes.data))
        check(status, handle)
        if unbatched:
            out = y[0]
        else:
            out = y if self.batch_first else \
                np.ascontiguousarray(y.transpose(1, 0, 2))
        return kind.back(out), None
