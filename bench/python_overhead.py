# SPDX-License-Identifier: Apache-2.0
"""What the Python package adds to a call: libattn.scaled_dot_product_attention
against attn_sdpa called directly through the package's C bindings (the
same library, no argument handling), alternating, medians.

    python3 bench/python_overhead.py [--n 2048] [--reps 21] [--device native]

B=1 H=8 d=64 f32 by default, the shape the package's overhead target
names.  Prints the two medians and their ratio."""

import argparse
import statistics
import time

import numpy as np

import libattn
from libattn._ffi import ffi, lib


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--reps", type=int, default=21)
    ap.add_argument("--device", default="native")
    ap.add_argument("--causal", action="store_true")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    shape = (1, a.heads, a.n, a.head_dim)
    q, k, v = (rng.standard_normal(shape).astype(np.float32)
               for _ in range(3))
    ctx = libattn.Context(a.device)
    d = ffi.new("attn_sdpa_desc *")
    d.struct_size = ffi.sizeof("attn_sdpa_desc")
    d.batch, d.heads_q, d.heads_kv = 1, a.heads, a.heads
    d.seq_q = d.seq_kv = a.n
    d.head_dim = d.head_dim_v = a.head_dim
    d.mask.causal = 1 if a.causal else 0
    o = np.empty_like(q)
    ptrs = [ffi.cast("void *", x.ctypes.data) for x in (q, k, v, o)]

    def c_call():
        st = lib.attn_sdpa(ctx._ptr, d, ptrs[0], ptrs[1], ptrs[2], ptrs[3],
                           ffi.NULL)
        assert st == 0

    def py_call():
        libattn.scaled_dot_product_attention(q, k, v, is_causal=a.causal,
                                             device=ctx)

    c_call()
    py_call()
    tc, tp = [], []
    for _ in range(a.reps):
        for fn, ts in ((c_call, tc), (py_call, tp)):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    mc, mp = statistics.median(tc) * 1e3, statistics.median(tp) * 1e3
    print("device %s, B=1 H=%d N=%d d=%d f32%s, %d alternating runs" %
          (ctx.device.name, a.heads, a.n, a.head_dim,
           " causal" if a.causal else "", a.reps))
    print("attn_sdpa direct   median %.3f ms" % mc)
    print("libattn (Python)   median %.3f ms" % mp)
    print("ratio python/direct %.4f" % (mp / mc))


if __name__ == "__main__":
    main()
