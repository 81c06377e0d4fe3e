# SPDX-License-Identifier: Apache-2.0
"""bfloat16 inputs (ATTN_BF16): ml_dtypes' bfloat16 arrays and
torch.bfloat16 tensors, where installed, against the float64 reference
given the very bfloat16 values; the output keeps the inputs' type.  The
output's rounding to 8 significant bits adds 2^-8 |o| (half an ulp) and
2^-126 (a result the store flushes to zero) to the float tolerance."""

import numpy as np
import pytest

import libattn
from reference import check_close, sdpa


def bf16_tol(want, tol_o):
    return tol_o + 2.0 ** -8 * np.abs(want) + 2.0 ** -126


@pytest.mark.parametrize("causal", [False, True])
def test_ml_dtypes_bfloat16(ctx, rng, causal):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf = ml_dtypes.bfloat16
    q = rng.standard_normal((2, 4, 13, 32)).astype(bf)
    k = rng.standard_normal((2, 2, 21, 32)).astype(bf)
    v = rng.standard_normal((2, 2, 21, 24)).astype(bf)
    o, lse = libattn.scaled_dot_product_attention(
        q, k, v, is_causal=causal, enable_gqa=True, device=ctx,
        return_lse=True)
    assert o.dtype == bf and o.shape == (2, 4, 13, 24)
    want, want_lse, tol_o, tol_lse = sdpa(
        q.astype(np.float64), k.astype(np.float64), v.astype(np.float64),
        is_causal=causal, enable_gqa=True)
    check_close(o.astype(np.float64), want, bf16_tol(want, tol_o), "output")
    check_close(lse, want_lse, tol_lse, "lse")


def test_ml_dtypes_strided_view(ctx, rng):
    """A non-contiguous bfloat16 view is read as it is (copied once)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf = ml_dtypes.bfloat16
    x = rng.standard_normal((2, 9, 3, 16)).astype(bf)  # (B, L, H, E)
    q = k = v = x.transpose(0, 2, 1, 3)
    o = libattn.scaled_dot_product_attention(q, k, v, device=ctx)
    want, _, tol_o, _ = sdpa(q.astype(np.float64), k.astype(np.float64),
                             v.astype(np.float64))
    check_close(o.astype(np.float64), want, bf16_tol(want, tol_o), "output")


def test_torch_bfloat16(ctx):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(5)
    q = torch.randn(1, 8, 11, 64, generator=g).bfloat16()
    k = torch.randn(1, 2, 23, 64, generator=g).bfloat16()
    v = torch.randn(1, 2, 23, 64, generator=g).bfloat16()
    o, lse = libattn.scaled_dot_product_attention(
        q, k, v, enable_gqa=True, is_causal=True, device=ctx,
        return_lse=True)
    assert isinstance(o, torch.Tensor) and o.dtype == torch.bfloat16
    assert isinstance(lse, torch.Tensor) and lse.dtype == torch.float32
    want, _, tol_o, _ = sdpa(q.double().numpy(), k.double().numpy(),
                             v.double().numpy(), is_causal=True,
                             enable_gqa=True)
    check_close(o.double().numpy(), want, bf16_tol(want, tol_o), "output")


def test_mixed_dtypes_refused(ctx, rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    q = rng.standard_normal((1, 2, 4, 8)).astype(ml_dtypes.bfloat16)
    k = rng.standard_normal((1, 2, 4, 8)).astype(np.float32)
    with pytest.raises(TypeError):
        libattn.scaled_dot_product_attention(q, k, k, device=ctx)


def test_bfloat16_float_mask(ctx, rng):
    """A float mask in bfloat16 (the inputs' type) is added as its float
    values."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf = ml_dtypes.bfloat16
    q = rng.standard_normal((1, 2, 7, 16)).astype(bf)
    k = rng.standard_normal((1, 2, 9, 16)).astype(bf)
    v = rng.standard_normal((1, 2, 9, 16)).astype(bf)
    m = rng.standard_normal((7, 9)).astype(bf)
    o = libattn.scaled_dot_product_attention(q, k, v, attn_mask=m, device=ctx)
    want = libattn.scaled_dot_product_attention(
        q, k, v, attn_mask=m.astype(np.float32), device=ctx)
    assert np.array_equal(o.astype(np.float32), want.astype(np.float32))
