#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""torch-cuda peer for attn-bench: PyTorch's scaled_dot_product_attention on
CUDA tensors, timed with CUDA events.

    python3 bench/peer_torch_cuda.py N CAUSAL REPS [options]
    python3 bench/peer_torch_cuda.py --check

times softmax(Q K^T / sqrt(d) [+ causal mask]) V for --batch B, --heads H
query heads over --kv-heads K key/value heads (GQA: query head h reads kv
head h / (H / K)), --seq-q S query rows (default N) against N keys,
head_dim --dim d, in --dtype f32 or f16, and prints one line

    RESULT median_ms=... min_ms=... impl=... how=... device=...

(how: "gqa" when torch shares the kv heads, "kv-repeat" when they are
copied per query head, "mask" for a bottom-right causal mask given as
a boolean tensor, "tf32-matmul" when torch.backends.cuda.matmul.allow_tf32
is set; "-" for none of these).

Each timed run is one call between two CUDA events (start.record(), the
call, end.record(), synchronize, elapsed_time) after --warmup untimed calls;
the median and the smallest of REPS runs are reported.  Causal masks are
bottom-right aligned as libattn's are: query i sees key j iff
j <= i + N - S (is_causal when S == N; no mask when S == 1, where every key
is visible; otherwise an explicit boolean mask, since torch's is_causal
aligns top-left).

attn-bench passes --in (raw Q [B, H, S, d], K and V [B, K, N, d], one after
the other, float32 or binary16 as --dtype says) and --out (raw float32 O
[B, H, S, d]) so that the result is checked against libattn's.  Without
--in the inputs are random.  --check prints "OK <device>" when torch
imports and sees a CUDA device, after one small call.  Errors print one
line "ERROR ..." and exit with status 2.
"""
import argparse
import ctypes
import statistics
import sys


def fail(msg):
    print("ERROR " + msg, flush=True)
    sys.exit(2)


def load_torch():
    """torch, when it imports and has a CUDA device; else ERROR and exit."""
    try:
        import torch
    except ImportError as e:
        fail("torch is not installed (%s)" % e)
    except OSError as e:  # a torch whose CUDA libraries do not load
        fail("torch is not installed properly: %s" % e)
    if not torch.cuda.is_available():
        fail("CUDA is not available (torch %s, built for CUDA %s: "
             "torch.cuda.is_available() is False)"
             % (torch.__version__, torch.version.cuda))
    return torch


def device_text(torch):
    return "%s (torch %s, CUDA %s)" % (torch.cuda.get_device_name(0),
                                       torch.__version__, torch.version.cuda)


def sdpa_call(torch, q, k, v, causal, heads, kv_heads):
    """A function running one attention call, and words on how it runs."""
    f = torch.nn.functional.scaled_dot_product_attention
    s, n = q.shape[2], k.shape[2]
    how = []
    kw = {}
    if kv_heads != heads:
        try:  # torch >= 2.5 shares the kv heads itself
            f(q[:, :, :1], k[:, :, :1], v[:, :, :1], enable_gqa=True)
            kw["enable_gqa"] = True
            how.append("gqa")
        except TypeError:  # older: each query head gets its kv head's copy
            rep = heads // kv_heads
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
            how.append("kv-repeat")
    if causal and s == n:
        kw["is_causal"] = True
    elif causal and s > 1:  # is_causal would align the mask top-left
        ones = torch.ones(s, n, dtype=torch.bool, device=q.device)
        kw["attn_mask"] = ones.tril(diagonal=n - s)
        how.append("mask")
    # causal with s == 1: the one query row sees every key

    def once():
        return f(q, k, v, **kw)
    return once, how


def timed(torch, fn, reps, warmup):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    out = None
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return times, out


def read_inputs(torch, path, dtype, elem, counts):
    need = sum(counts) * elem
    buf = bytearray(need)
    try:
        with open(path, "rb") as f:
            got = f.readinto(buf)
            extra = f.read(1)
    except OSError as e:
        fail("cannot read %s: %s" % (path, e))
    if got != need or extra:
        fail("%s does not hold %d bytes" % (path, need))
    flat = torch.frombuffer(buf, dtype=dtype)
    parts, at = [], 0
    for c in counts:
        parts.append(flat[at:at + c])
        at += c
    return parts


def write_output(path, out):
    o = out.float().contiguous().cpu()
    data = ctypes.string_at(o.data_ptr(), o.numel() * o.element_size())
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        fail("cannot write %s: %s" % (path, e))


def main():
    if sys.argv[1:] == ["--check"]:
        torch = load_torch()
        try:
            x = torch.ones(1, 1, 4, 8, device="cuda")
            torch.nn.functional.scaled_dot_product_attention(x, x, x)
            torch.cuda.synchronize()
        except Exception as e:  # a driver or architecture mismatch
            fail("a small call on CUDA failed: %s" % e)
        print("OK " + device_text(torch), flush=True)
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", type=int, help="keys (seq_kv)")
    ap.add_argument("causal", type=int, choices=(0, 1))
    ap.add_argument("reps", type=int)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=0, help="default: --heads")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--seq-q", type=int, default=0, help="default: N")
    ap.add_argument("--dtype", choices=("f32", "f16"), default="f32")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0,
                    help="accepted for attn-bench; unused")
    ap.add_argument("--in", dest="inp")
    ap.add_argument("--out")
    a = ap.parse_args()
    kv_heads = a.kv_heads or a.heads
    s = a.seq_q or a.n
    if min(a.n, a.reps, a.batch, a.heads, kv_heads, a.dim, s) <= 0 or a.warmup < 0:
        fail("N, REPS, --batch, --heads, --kv-heads, --dim and --seq-q must be "
             "positive")
    if a.heads % kv_heads:
        fail("--kv-heads must divide --heads")
    if s > a.n:
        fail("--seq-q must not exceed N")

    torch = load_torch()
    dtype, elem = ((torch.float16, 2) if a.dtype == "f16"
                   else (torch.float32, 4))
    q_shape = (a.batch, a.heads, s, a.dim)
    kv_shape = (a.batch, kv_heads, a.n, a.dim)
    counts = (a.batch * a.heads * s * a.dim, a.batch * kv_heads * a.n * a.dim,
              a.batch * kv_heads * a.n * a.dim)
    try:
        if a.inp:
            hq, hk, hv = read_inputs(torch, a.inp, dtype, elem, counts)
            q = hq.reshape(q_shape).to("cuda")
            k = hk.reshape(kv_shape).to("cuda")
            v = hv.reshape(kv_shape).to("cuda")
        else:
            gen = torch.Generator(device="cuda").manual_seed(1)
            q = torch.randn(q_shape, device="cuda", dtype=dtype, generator=gen)
            k = torch.randn(kv_shape, device="cuda", dtype=dtype, generator=gen)
            v = torch.randn(kv_shape, device="cuda", dtype=dtype, generator=gen)
        with torch.no_grad():
            fn, how = sdpa_call(torch, q, k, v, a.causal, a.heads, kv_heads)
            times, out = timed(torch, fn, a.reps, a.warmup)
    except RuntimeError as e:  # CUDA out of memory among them
        fail("torch: %s" % str(e).split("\n")[0])
    if a.out:
        write_output(a.out, out)
    if torch.backends.cuda.matmul.allow_tf32:
        how.append("tf32-matmul")
    impl = "torch-%s-sdpa-%s" % (torch.__version__, a.dtype)
    print("RESULT median_ms=%.6f min_ms=%.6f impl=%s how=%s device=%s" % (
        statistics.median(times), min(times), impl.replace(" ", "_"),
        ",".join(how) or "-", device_text(torch).replace(" ", "_")),
        flush=True)


if __name__ == "__main__":
    main()
