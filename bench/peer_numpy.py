#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Attention peer for attn-bench: what a CPU user writes with numpy (or torch).

    python3 bench/peer_numpy.py N CAUSAL REPS [options]

times softmax(Q K^T * scale [+ causal mask]) V for B batch items, H query
heads over K key/value heads (--batch, --heads, --kv-heads; query head h
reads kv head h / (H / K)), seq_q = seq_kv = N, head_dim d, float32, and
prints one line

    RESULT median_ms=... min_ms=... impl=... blas=... arch=... threads=...

attn-bench runs it as a subprocess with --in (raw float32 Q [B, H, N, d], K
and V [B, K, N, d], one after the other) and --out (raw float32 O
[B, H, N, d]) so that the result can be checked against libattn's.  Without
--in the inputs are random.  Errors print one line "ERROR ..." and exit with
status 2.

numpy: per head, S = (Q*scale) @ K^T (BLAS sgemm, threaded), the causal mask
is a precomputed boolean (np.putmask), then max-subtracted exp, row sums and
(P @ V) / sum.  The causal case computes the full matrix, as numpy users do.
--backend torch (or auto, when torch is installed) times
torch.nn.functional.scaled_dot_product_attention(is_causal=...) instead;
attn-bench asks for it as a separate row and drops the row quietly when torch
is missing.
"""
import argparse
import os
import statistics
import sys
import time


def fail(msg):
    print("ERROR " + msg, flush=True)
    sys.exit(2)


def blas_info(threads):
    """(description, limiter) from threadpoolctl, or ('unknown', None)."""
    try:
        import threadpoolctl
    except ImportError:
        return "unknown (pip install threadpoolctl to see the BLAS kernel)", None
    limiter = threadpoolctl.threadpool_limits(limits=threads, user_api="blas")
    parts = []
    for i in threadpoolctl.threadpool_info():
        if i.get("user_api") != "blas":
            continue
        parts.append("%s-%s arch=%s threads=%s" % (
            i.get("internal_api", "?"), i.get("version", "?"),
            i.get("architecture", "?"), i.get("num_threads", "?")))
    return (", ".join(parts) or "none found"), limiter


def kv_index(h, heads, kv_heads):
    """kv head of flattened query head h ([B*H] -> [B*K])."""
    b, hq = divmod(h, heads)
    return b * kv_heads + hq // (heads // kv_heads)


def run_numpy(np, q, k, v, causal, reps, scale, heads, kv_heads):
    n_heads, n, d = q.shape
    out = np.empty((n_heads, n, d), dtype=np.float32)
    s = np.empty((n, n), dtype=np.float32)
    mask = np.triu(np.ones((n, n), dtype=bool), 1) if causal else None

    def once():
        for h in range(n_heads):
            g = kv_index(h, heads, kv_heads)
            np.matmul(q[h] * np.float32(scale), k[g].T, out=s)
            if mask is not None:
                np.putmask(s, mask, -np.inf)
            np.subtract(s, s.max(axis=1, keepdims=True), out=s)
            np.exp(s, out=s)
            l = s.sum(axis=1, keepdims=True)
            np.matmul(s, v[g], out=out[h])
            np.divide(out[h], l, out=out[h])

    once()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        once()
        times.append((time.perf_counter() - t0) * 1e3)
    return times, out


def run_torch(torch, np, q, k, v, causal, reps, scale, heads, kv_heads):
    if kv_heads != heads:  # every query head reads its kv head
        idx = [kv_index(h, heads, kv_heads) for h in range(q.shape[0])]
        k, v = k[idx], v[idx]
    tq, tk, tv = (torch.from_numpy(np.ascontiguousarray(a))[None] for a in (q, k, v))
    f = torch.nn.functional.scaled_dot_product_attention

    def once():
        with torch.no_grad():
            return f(tq, tk, tv, is_causal=bool(causal), scale=scale)

    once()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        r = once()
        times.append((time.perf_counter() - t0) * 1e3)
    return times, r[0].numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", type=int)
    ap.add_argument("causal", type=int, choices=(0, 1))
    ap.add_argument("reps", type=int)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=0, help="default: --heads")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--in", dest="inp", help="raw float32 Q,K,V [H,N,d] each")
    ap.add_argument("--out", help="write raw float32 O [H,N,d] here")
    ap.add_argument("--backend", choices=("auto", "numpy", "torch"), default="numpy")
    a = ap.parse_args()
    kv_heads = a.kv_heads or a.heads
    if (a.n <= 0 or a.reps <= 0 or a.batch <= 0 or a.heads <= 0 or kv_heads <= 0
            or a.dim <= 0 or a.threads <= 0):
        fail("N, REPS, --batch, --heads, --kv-heads, --dim and --threads must be positive")
    if a.heads % kv_heads:
        fail("--kv-heads must divide --heads")

    try:
        import numpy as np
    except ImportError:
        fail("numpy is not installed (pip install numpy)")

    torch = None
    if a.backend in ("auto", "torch"):
        try:
            import torch as torch_mod
            torch = torch_mod
        except ImportError:
            if a.backend == "torch":
                fail("torch is not installed")

    q_shape = (a.batch * a.heads, a.n, a.dim)
    kv_shape = (a.batch * kv_heads, a.n, a.dim)
    q_count = a.batch * a.heads * a.n * a.dim
    kv_count = a.batch * kv_heads * a.n * a.dim
    if a.inp:
        try:
            buf = np.fromfile(a.inp, dtype=np.float32)
        except OSError as e:
            fail("cannot read %s: %s" % (a.inp, e))
        if buf.size != q_count + 2 * kv_count:
            fail("%s holds %d floats, expected %d" % (a.inp, buf.size,
                                                     q_count + 2 * kv_count))
        q = buf[:q_count].reshape(q_shape)
        k = buf[q_count:q_count + kv_count].reshape(kv_shape)
        v = buf[q_count + kv_count:].reshape(kv_shape)
    else:
        rng = np.random.default_rng(1)
        q = rng.standard_normal(q_shape, dtype=np.float32)
        k, v = (rng.standard_normal(kv_shape, dtype=np.float32) for _ in range(2))
    scale = 1.0 / (a.dim ** 0.5)

    if torch is not None:
        torch.set_num_threads(a.threads)
        blas, limiter = "torch-%s (%s)" % (torch.__version__, torch.__config__.parallel_info().split("\n")[0]), None
        impl = "torch-%s-sdpa" % torch.__version__
        times, out = run_torch(torch, np, q, k, v, a.causal, a.reps, scale,
                               a.heads, kv_heads)
    else:
        blas, limiter = blas_info(a.threads)
        impl = "numpy-%s" % np.__version__
        try:
            times, out = run_numpy(np, q, k, v, a.causal, a.reps, scale,
                                   a.heads, kv_heads)
        except MemoryError:
            fail("out of memory")
    if limiter is not None:
        limiter.restore_original_limits()

    if a.out:
        try:
            np.ascontiguousarray(out, dtype=np.float32).tofile(a.out)
        except OSError as e:
            fail("cannot write %s: %s" % (a.out, e))
    env = ",".join("%s=%s" % (n, os.environ[n]) for n in
                   ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if n in os.environ) or "unset"
    print("RESULT median_ms=%.6f min_ms=%.6f impl=%s threads=%d env=%s blas=%s" % (
        statistics.median(times), min(times), impl, a.threads, env,
        blas.replace(" ", "_").replace(",_", ",")), flush=True)


if __name__ == "__main__":
    main()
