# SPDX-License-Identifier: Apache-2.0
"""Against PyTorch itself where torch is installed (its CPU SDPA in
float64 as the reference; torch tensors in, torch tensors out)."""

import numpy as np
import pytest

import libattn

torch = pytest.importorskip("torch")
F = torch.nn.functional


def t64(x):
    return x.to(torch.float64)


def assert_grads_close(ours, refs):
    """The gradients of q, k and v from libattn (ours) against torch's
    float64 ones (refs): within 1e-4 (max |ref| + 1)."""
    for name, a, b in zip(("q", "k", "v"), ours, refs):
        err = (a.grad.to(torch.float64) - b.grad).abs().max().item()
        assert err < 1e-4 * (b.grad.abs().max().item() + 1.0), name


def compare(ctx, q, k, v, tol, **kw):
    out = libattn.scaled_dot_product_attention(q, k, v, device=ctx, **kw)
    assert isinstance(out, torch.Tensor) and out.dtype == q.dtype
    mask = kw.get("attn_mask")
    if mask is not None and mask.dtype != torch.bool:
        kw["attn_mask"] = t64(mask)
    ref = F.scaled_dot_product_attention(t64(q), t64(k), t64(v), **kw)
    ref = torch.nan_to_num(ref, nan=0.0)  # no visible key: 0 (older: NaN)
    assert (out.to(torch.float64) - ref).abs().max().item() < tol


@pytest.mark.parametrize("L,S", [(16, 16), (7, 19), (19, 7)])
@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_matches_torch(ctx, L, S, causal):
    g = torch.Generator().manual_seed(L * 100 + S)
    q = torch.randn(2, 4, L, 32, generator=g)
    k = torch.randn(2, 4, S, 32, generator=g)
    v = torch.randn(2, 4, S, 32, generator=g)
    compare(ctx, q, k, v, 1e-5, is_causal=causal)


@pytest.mark.parametrize("shape", [(9, 13), (2, 1, 9, 13), (1, 4, 1, 13),
                                   (2, 4, 9, 13)])
def test_masks_match_torch(ctx, shape):
    g = torch.Generator().manual_seed(7)
    q = torch.randn(2, 4, 9, 16, generator=g)
    k = torch.randn(2, 4, 13, 16, generator=g)
    v = torch.randn(2, 4, 13, 16, generator=g)
    keep = torch.rand(shape, generator=g) < 0.75
    compare(ctx, q, k, v, 1e-5, attn_mask=keep)
    add = torch.randn(shape, generator=g)
    compare(ctx, q, k, v, 1e-5, attn_mask=add)


def test_gqa_scale_and_f16_match_torch(ctx):
    g = torch.Generator().manual_seed(3)
    q = torch.randn(1, 8, 11, 64, generator=g)
    k = torch.randn(1, 2, 23, 64, generator=g)
    v = torch.randn(1, 2, 23, 64, generator=g)
    compare(ctx, q, k, v, 1e-5, enable_gqa=True, scale=0.2)
    compare(ctx, q.half(), k.half(), v.half(), 2e-3, enable_gqa=True)


def test_lse_is_torch_logsumexp(ctx):
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 2, 6, 8, generator=g) for _ in range(3))
    _, lse = libattn.scaled_dot_product_attention(q, k, v, device=ctx,
                                                  return_lse=True)
    s = t64(q) @ t64(k).transpose(-1, -2) / np.sqrt(8)
    assert (t64(lse) - torch.logsumexp(s, -1)).abs().max().item() < 1e-5


def test_requires_grad_is_a_clear_type_error(ctx):
    q = torch.randn(1, 1, 4, 8, requires_grad=True)
    with pytest.raises(TypeError, match="detach"):
        libattn.scaled_dot_product_attention(q, q, q, device=ctx)


def test_bfloat16_matches_torch(ctx):
    # bfloat16 in and out (its unit roundoff 2^-8 on outputs of order 1)
    g = torch.Generator().manual_seed(6)
    q, k, v = (torch.randn(2, 2, 9, 16, generator=g).bfloat16()
               for _ in range(3))
    compare(ctx, q, k, v, 3e-2, is_causal=True)


@pytest.mark.parametrize("causal", [False, True])
def test_backward_matches_torch_autograd(ctx, causal):
    # libattn's gradients against torch.autograd through its float64 SDPA
    g = torch.Generator().manual_seed(11 + causal)
    q = torch.randn(2, 4, 13, 16, generator=g)
    k = torch.randn(2, 2, 17, 16, generator=g)
    v = torch.randn(2, 2, 17, 8, generator=g)
    dout = torch.randn(2, 4, 13, 8, generator=g)
    o, lse = libattn.scaled_dot_product_attention(
        q, k, v, is_causal=causal, enable_gqa=True, device=ctx,
        return_lse=True)
    got = libattn.scaled_dot_product_attention_backward(
        dout, q, k, v, o, lse, is_causal=causal, enable_gqa=True, device=ctx)
    leaves = [t64(x).requires_grad_() for x in (q, k, v)]
    ref = F.scaled_dot_product_attention(*leaves, is_causal=causal,
                                         enable_gqa=True)
    ref.backward(t64(dout))
    for name, x, leaf in zip(("dq", "dk", "dv"), got, leaves):
        assert isinstance(x, torch.Tensor) and x.shape == leaf.shape, name
        err = (x.to(torch.float64) - leaf.grad).abs().max().item()
        assert err < 1e-4 * (leaf.grad.abs().max().item() + 1.0), name


@pytest.mark.parametrize("mask_kind", [None, "bool", "float"])
def test_autograd_function_trains_like_torch(ctx, mask_kind):
    # libattn.torch's function inside a graph: the leaves' gradients as
    # torch.autograd gives them through its own float64 SDPA
    from libattn.torch import scaled_dot_product_attention as sdpa
    g = torch.Generator().manual_seed(21)
    q = torch.randn(2, 4, 9, 16, generator=g)
    k = torch.randn(2, 2, 12, 16, generator=g)
    v = torch.randn(2, 2, 12, 16, generator=g)
    w = torch.randn(2, 4, 9, 16, generator=g)
    mask = None
    if mask_kind == "bool":
        mask = torch.rand(9, 12, generator=g) < 0.8
        mask[:, 0] = True
    elif mask_kind == "float":
        mask = torch.randn(1, 4, 9, 12, generator=g)
    ours = [x.clone().requires_grad_() for x in (q, k, v)]
    (sdpa(*ours, attn_mask=mask, enable_gqa=True, device=ctx) * w).sum() \
        .backward()
    refs = [t64(x).requires_grad_() for x in (q, k, v)]
    m64 = mask if mask is None or mask.dtype == torch.bool else t64(mask)
    (F.scaled_dot_product_attention(*refs, attn_mask=m64, enable_gqa=True) *
     t64(w)).sum().backward()
    assert_grads_close(ours, refs)


def test_autograd_function_sliding_window(ctx):
    # window=4 with is_causal against torch with the same band as a mask:
    # query i sees keys i - 3 .. i
    from libattn.torch import scaled_dot_product_attention as sdpa
    g = torch.Generator().manual_seed(23)
    q, k, v, w = (torch.randn(2, 2, 15, 16, generator=g) for _ in range(4))
    ours = [x.clone().requires_grad_() for x in (q, k, v)]
    (sdpa(*ours, is_causal=True, window=4, device=ctx) * w).sum().backward()
    i = torch.arange(15)[:, None]
    j = torch.arange(15)[None, :]
    band = (j <= i) & (j > i - 4)
    refs = [t64(x).requires_grad_() for x in (q, k, v)]
    (F.scaled_dot_product_attention(*refs, attn_mask=band) *
     t64(w)).sum().backward()
    assert_grads_close(ours, refs)


def test_autograd_function_causal_offset(ctx):
    # the last 6 rows of a 20-row sequence against all 20 keys
    # (causal_offset 14) and a window of 5, against torch with the band
    # as a mask: query i sees keys i + 10 .. i + 14
    from libattn.torch import scaled_dot_product_attention as sdpa
    g = torch.Generator().manual_seed(29)
    q, w = (torch.randn(2, 2, 6, 16, generator=g) for _ in range(2))
    k, v = (torch.randn(2, 2, 20, 16, generator=g) for _ in range(2))
    ours = [x.clone().requires_grad_() for x in (q, k, v)]
    (sdpa(*ours, is_causal=True, window=5, causal_offset=14, device=ctx) *
     w).sum().backward()
    i = torch.arange(6)[:, None]
    j = torch.arange(20)[None, :]
    band = (j <= i + 14) & (j > i + 14 - 5)
    refs = [t64(x).requires_grad_() for x in (q, k, v)]
    (F.scaled_dot_product_attention(*refs, attn_mask=band) *
     t64(w)).sum().backward()
    assert_grads_close(ours, refs)


@pytest.mark.parametrize("mshape", [(2, 4, 9, 12), (1, 4, 9, 12), (9, 1)])
def test_autograd_function_mask_gradient(ctx, mshape):
    # a float mask that requires grad gets torch.autograd's gradient
    # through its own float64 SDPA (summed over what it broadcasts along)
    from libattn.torch import scaled_dot_product_attention as sdpa
    g = torch.Generator().manual_seed(31)
    q = torch.randn(2, 4, 9, 16, generator=g)
    k = torch.randn(2, 2, 12, 16, generator=g)
    v = torch.randn(2, 2, 12, 8, generator=g)
    w = torch.randn(2, 4, 9, 8, generator=g)
    mask = torch.randn(*mshape, generator=g)
    ours = [x.clone().requires_grad_() for x in (q, k, v, mask)]
    (sdpa(*ours[:3], attn_mask=ours[3], enable_gqa=True, device=ctx) *
     w).sum().backward()
    refs = [t64(x).requires_grad_() for x in (q, k, v, mask)]
    (F.scaled_dot_product_attention(*refs[:3], attn_mask=refs[3],
                                    enable_gqa=True) *
     t64(w)).sum().backward()
    for name, a, b in zip(("q", "k", "v", "mask"), ours, refs):
        assert a.grad is not None and a.grad.shape == b.grad.shape, name
        err = (a.grad.to(torch.float64) - b.grad).abs().max().item()
        assert err < 1e-4 * (b.grad.abs().max().item() + 1.0), name
    # a mask that does not require grad gets none (and costs none)
    m = mask.clone()
    out = sdpa(q.clone().requires_grad_(), k, v, attn_mask=m,
               enable_gqa=True, device=ctx)
    out.sum().backward()
    assert m.grad is None
