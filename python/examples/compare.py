# SPDX-License-Identifier: Apache-2.0
"""libattn's attention next to PyTorch's (when torch is installed) or a
float64 numpy reference: the devices, one call on each usable device, the
largest difference and the time.

    python3 python/examples/compare.py
"""

import time

import numpy as np

import libattn


def numpy_reference(q, k, v):
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    s = np.where(np.triu(np.ones(s.shape[-2:], bool), 1), -np.inf, s)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


def main():
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 8, 512, 64)).astype(np.float32)
               for _ in range(3))
    try:
        import torch
        ref = torch.nn.functional.scaled_dot_product_attention(
            torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v),
            is_causal=True).numpy()
        ref_name = "torch " + torch.__version__
    except ImportError:
        ref = numpy_reference(q, k, v)
        ref_name = "numpy float64"
    print("libattn", libattn.__version__, "- reference:", ref_name)
    for dev in libattn.devices():
        if not dev.usable:
            print("  %-6s %s: not usable (%s)" % (dev.spec, dev.name,
                                                dev.reason))
            continue
        with libattn.Context(dev.spec) as ctx:
            out = libattn.scaled_dot_product_attention(q, k, v,
                                                       is_causal=True,
                                                       device=ctx)
            t0 = time.perf_counter()
            out = libattn.scaled_dot_product_attention(q, k, v,
                                                       is_causal=True,
                                                       device=ctx)
            ms = (time.perf_counter() - t0) * 1e3
        print("  %-6s %-45s max |diff| %.2e  %.2f ms" %
              (dev.spec, dev.name[:45], np.abs(out - ref).max(), ms))


if __name__ == "__main__":
    main()
