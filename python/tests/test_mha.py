# SPDX-License-Identifier: Apache-2.0
"""MultiheadAttention against the float64 layer of reference.py, with
torch.nn.MultiheadAttention's conventions (seq-first by default, bool masks
where True hides)."""

import numpy as np
import pytest

import libattn
from reference import MHA_ABS, mha


def make(ctx, rng, e=32, heads=4, kv=None, bias=True, batch_first=False):
    layer = libattn.MultiheadAttention(e, heads, num_kv_heads=kv, bias=bias,
                                       batch_first=batch_first, device=ctx,
                                       rng=rng)
    if bias:  # non-zero biases, so that they are checked too
        for name in ("bq", "bk", "bv", "bo"):
            b = getattr(layer, name)
            b[:] = rng.uniform(-0.5, 0.5, b.shape)
    return layer


def want(layer, xq, xkv=None, bias=None, causal=False):
    return mha(xq, xkv, layer.wq, layer.wk, layer.wv, layer.wo, layer.bq,
               layer.bk, layer.bv, layer.bo, layer.num_heads,
               layer.num_kv_heads, bias=bias, causal=causal)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("kv", [None, 2, 1])
def test_self_attention(ctx, rng, batch_first, kv):
    layer = make(ctx, rng, kv=kv, batch_first=batch_first)
    x = rng.standard_normal((3, 10, 32)).astype(np.float32)  # (N, L, E)
    xin = x if batch_first else x.transpose(1, 0, 2).copy()
    y, w = layer(xin, xin, xin)
    assert w is None
    y = y if batch_first else y.transpose(1, 0, 2)
    assert np.abs(y - want(layer, x)).max() < MHA_ABS


def test_masks_and_causal(ctx, rng):
    layer = make(ctx, rng, batch_first=True)
    n, L = 2, 9
    x = rng.standard_normal((n, L, 32)).astype(np.float32)
    kpm = np.zeros((n, L), bool)
    kpm[0, 6:] = True  # right padding of item 0: True hides
    am = rng.random((L, L)) < 0.2
    np.fill_diagonal(am, False)
    y, _ = layer(x, key_padding_mask=kpm, attn_mask=am)
    bias = np.where(am, -np.inf, 0.0)[None, None] + \
        np.where(kpm, -np.inf, 0.0)[:, None, None, :]
    assert np.abs(y - want(layer, x, bias=bias)).max() < MHA_ABS
    y, _ = layer(x, is_causal=True)
    assert np.abs(y - want(layer, x, causal=True)).max() < MHA_ABS
    # A key-padding mask alone (the library's [batch, seq_kv] key bias),
    # with causal too.
    kb = np.where(kpm, -np.inf, 0.0)[:, None, None, :]
    y, _ = layer(x, key_padding_mask=kpm)
    assert np.abs(y - want(layer, x, bias=kb)).max() < MHA_ABS
    y, _ = layer(x, key_padding_mask=kpm, is_causal=True)
    assert np.abs(y - want(layer, x, bias=kb, causal=True)).max() < MHA_ABS
    # Float masks are added; per-head masks are (N*heads, L, L).
    fm = rng.standard_normal((n * 4, L, L)).astype(np.float32)
    y, _ = layer(x, attn_mask=fm)
    assert np.abs(y - want(layer, x, bias=fm.reshape(n, 4, L, L))).max() \
        < MHA_ABS


def test_masks_as_lists(ctx, rng):
    """Nested lists of bools hide where True, as bool arrays do."""
    layer = make(ctx, rng, batch_first=True)
    x = rng.standard_normal((2, 6, 32)).astype(np.float32)
    kpm = np.zeros((2, 6), bool)
    kpm[1, 4:] = True
    am = np.triu(np.ones((6, 6), bool), 1)
    want_y, _ = layer(x, key_padding_mask=kpm, attn_mask=am)
    y, _ = layer(x, key_padding_mask=kpm.tolist(), attn_mask=am.tolist())
    assert np.array_equal(want_y, y)


def test_cross_attention_and_unbatched(ctx, rng):
    layer = make(ctx, rng, batch_first=True, bias=False)
    xq = rng.standard_normal((2, 5, 32)).astype(np.float32)
    xkv = rng.standard_normal((2, 12, 32)).astype(np.float32)
    y, _ = layer(xq, xkv, xkv)
    assert np.abs(y - want(layer, xq, xkv)).max() < MHA_ABS
    y1, _ = layer(xq[1], xkv[1], xkv[1])
    assert y1.shape == (5, 32)
    assert np.abs(y1 - want(layer, xq[1:], xkv[1:])[0]).max() < MHA_ABS
    # Causal with fewer queries than keys: top-left, as torch.
    y, _ = layer(xq, xkv, xkv, is_causal=True)
    assert np.abs(y - want(layer, xq, xkv, causal=True)).max() < MHA_ABS


def test_state_dict_round_trip(ctx, rng):
    src = make(ctx, rng)
    sd = {
        "in_proj_weight": np.concatenate([src.wq, src.wk, src.wv]),
        "in_proj_bias": np.concatenate([src.bq, src.bk, src.bv]),
        "out_proj.weight": src.wo, "out_proj.bias": src.bo,
    }
    dst = libattn.MultiheadAttention(32, 4, device=ctx).load_state_dict(sd)
    x = rng.standard_normal((7, 2, 32)).astype(np.float32)
    assert np.array_equal(src(x)[0], dst(x)[0])


def test_layer_errors(ctx, rng):
    layer = make(ctx, rng)
    x = rng.standard_normal((4, 2, 32)).astype(np.float32)
    other = rng.standard_normal((4, 2, 32)).astype(np.float32)
    with pytest.raises(NotImplementedError):
        layer(x, need_weights=True)
    with pytest.raises(NotImplementedError, match="same input"):
        layer(x, x, other)
    with pytest.raises(TypeError):
        layer(x.astype(np.float64))
    with pytest.raises(ValueError):
        layer(x[..., :16])
    with pytest.raises(ValueError):
        layer(x, attn_mask=np.zeros((3, 3), bool))
    with pytest.raises(ValueError):
        libattn.MultiheadAttention(30, 4)
    with pytest.raises(ValueError):
        libattn.MultiheadAttention(32, 4, num_kv_heads=3)
    with pytest.raises(ValueError):
        libattn.MultiheadAttention(32, 4, posenc="learned")


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    m = torch.nn.MultiheadAttention(32, 4, batch_first=True)
    layer = libattn.MultiheadAttention.from_torch(m, device="native")
    x = torch.randn(2, 9, 32)
    with torch.no_grad():
        ref, _ = m(x, x, x, need_weights=False)
    y, _ = layer(x, x, x)
    assert isinstance(y, torch.Tensor)
    assert (y - ref).abs().max().item() < MHA_ABS


def test_layer_shapes_checked(ctx, rng):
    """The table, the biases and weights set by hand are checked against
    the layer's sizes (the library would read past smaller arrays), and an
    empty batch or sequence gives an empty output."""
    with pytest.raises(ValueError, match="pos_table"):
        libattn.MultiheadAttention(32, 4, posenc="learned", device=ctx,
                                   pos_table=np.zeros((20, 16), np.float32))
    with pytest.raises(ValueError, match="pos_table"):
        libattn.MultiheadAttention(32, 4, posenc="learned", device=ctx,
                                   pos_table=np.zeros(640, np.float32))
    layer = make(ctx, rng)
    sd = {"in_proj_weight": np.concatenate([layer.wq, layer.wk, layer.wv]),
          "in_proj_bias": np.zeros(5, np.float32),
          "out_proj.weight": layer.wo}
    with pytest.raises(ValueError, match="in_proj_bias"):
        libattn.MultiheadAttention(32, 4, device=ctx).load_state_dict(sd)
    x = rng.standard_normal((4, 2, 32)).astype(np.float32)
    layer.bo = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="bo"):
        layer(x)
    layer.bo = None
    layer.wk = layer.wk[:4]
    with pytest.raises(ValueError, match="wk"):
        layer(x)
    layer = make(ctx, rng)
    out, _ = layer(np.zeros((0, 2, 32), np.float32))
    assert out.shape == (0, 2, 32)
    out, _ = layer(np.zeros((4, 0, 32), np.float32))
    assert out.shape == (4, 0, 32)
