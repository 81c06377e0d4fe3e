#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""PyTorch's SDPA forward and backward on the CPU (or, with --cuda, on
CUDA tensors), for attn-bwd-bench.

    python3 bench/peer_torch_bwd.py N CAUSAL [--heads H] [--head-dim D]
                                     [--threads T] [--batch B] [--cuda]

Builds q, k, v [B, H, N, d] float32 (random, requires_grad) and dO, then
prints "READY impl=torch-<version> how=..." (or "SKIP <why>" when torch
does not import) and answers commands on stdin, one a line:

  run   one torch.nn.functional.scaled_dot_product_attention call (is_causal
        = CAUSAL; with seq_q = seq_kv its top-left mask is libattn's
        bottom-right one) and one o.backward(dO), each timed with
        time.perf_counter (--cuda: between CUDA events, synchronized
        after both); answers "TIME fwd_ms=... bwd_ms=...".
  quit  exits.

torch.set_num_threads(T) (default: every core).  The gradients are reset
to None before each call so that every backward writes fresh tensors, as a
training step's does.
"""
import os
import sys
import time


def main():
    args = sys.argv[1:]
    opts = {"--heads": 8, "--head-dim": 64, "--threads": 0, "--batch": 1}
    pos = []
    cuda = "--cuda" in args
    args = [a for a in args if a != "--cuda"]
    i = 0
    while i < len(args):
        if args[i] in opts and i + 1 < len(args):
            opts[args[i]] = int(args[i + 1])
            i += 2
        else:
            pos.append(args[i])
            i += 1
    if len(pos) != 2:
        print("ERROR usage: peer_torch_bwd.py N CAUSAL [options]", flush=True)
        return 2
    n, causal = int(pos[0]), int(pos[1]) != 0
    try:
        import torch
        import torch.nn.functional as F
    except Exception as e:  # noqa: BLE001 - any import failure is a skip
        print("SKIP torch does not import: %s" % e, flush=True)
        return 0
    if cuda and not torch.cuda.is_available():
        print("SKIP torch sees no CUDA device", flush=True)
        return 0
    threads = opts["--threads"] or os.cpu_count() or 1
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(1)
    shape = (opts["--batch"], opts["--heads"], n, opts["--head-dim"])
    q, k, v, do = (torch.rand(shape, generator=g) - 0.5 for _ in range(4))
    if cuda:
        q, k, v, do = (t.cuda() for t in (q, k, v, do))
    for t in (q, k, v):
        t.requires_grad_(True)
    how = ("cuda,f32,%s" % torch.cuda.get_device_name().replace(" ", "_")
           if cuda else "cpu,f32,threads=%d" % threads)
    print("READY impl=torch-%s how=%s" % (torch.__version__, how), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        if cmd != "run":
            print("ERROR unknown command %r" % cmd, flush=True)
            continue
        q.grad = k.grad = v.grad = None
        if cuda:
            ev = [torch.cuda.Event(enable_timing=True) for _ in range(3)]
            ev[0].record()
            o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            ev[1].record()
            o.backward(do)
            ev[2].record()
            torch.cuda.synchronize()
            fwd, bwd = ev[0].elapsed_time(ev[1]), ev[1].elapsed_time(ev[2])
        else:
            t0 = time.perf_counter()
            o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            t1 = time.perf_counter()
            o.backward(do)
            t2 = time.perf_counter()
            fwd, bwd = 1e3 * (t1 - t0), 1e3 * (t2 - t1)
        print("TIME fwd_ms=%.6f bwd_ms=%.6f" % (fwd, bwd), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
