# SPDX-License-Identifier: Apache-2.0
"""libattn.torch: scaled_dot_product_attention as a torch.autograd
function, for training with PyTorch on libattn's backends.

    from libattn.torch import scaled_dot_product_attention
    out = scaled_dot_product_attention(q, k, v, is_causal=True)
    out.sum().backward()          # q.grad, k.grad, v.grad from libattn

Needs torch (imported here, not by `import libattn`)."""

import torch

from ._sdpa import scaled_dot_product_attention as _forward
from ._sdpa import scaled_dot_product_attention_backward as _backward

__all__ = ["scaled_dot_product_attention"]


class _Attention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, key, value, attn_mask, is_causal, scale,
                enable_gqa, device, window, causal_offset):
        q, k, v = query.detach(), key.detach(), value.detach()
        if isinstance(attn_mask, torch.Tensor):
            attn_mask = attn_mask.detach()
        out, lse = _forward(q, k, v, attn_mask, 0.0, is_causal, scale,
                            enable_gqa, device=device, return_lse=True,
                            window=window, causal_offset=causal_offset)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.args = (attn_mask, is_causal, scale, enable_gqa, device, window,
                    causal_offset)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse = (x.detach() for x in ctx.saved_tensors)
        (attn_mask, is_causal, scale, enable_gqa, device, window,
         causal_offset) = ctx.args
        want_mask = bool(ctx.needs_input_grad[3])
        grads = _backward(grad_out.detach().contiguous(), q, k, v, out, lse,
                          attn_mask, is_causal, scale, enable_gqa,
                          device=device, grad_attn_mask=want_mask,
                          window=window, causal_offset=causal_offset)
        dmask = grads[3] if want_mask else None
        return (grads[0], grads[1], grads[2], dmask, None, None, None, None,
                None, None)


def scaled_dot_product_attention(query, key, value, attn_mask=None,
                                 dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False, *, device=None, window=0,
                                 causal_offset=0):
    """libattn.scaled_dot_product_attention on torch tensors (CPU), with
    its gradient: query, key and value may require grad, and backward()
    runs attn_sdpa_backward (libattn.scaled_dot_product_attention_backward)
    on the same device.  A float attn_mask that requires grad gets its
    gradient too (summed over what it broadcasts along); dropout_p must be
    0.  Arguments and errors as libattn.scaled_dot_product_attention."""
    if dropout_p != 0.0:
        raise ValueError("dropout_p must be 0: libattn has no dropout")
    return _Attention.apply(query, key, value, attn_mask, is_causal, scale,
                            enable_gqa, device, window, causal_offset)
