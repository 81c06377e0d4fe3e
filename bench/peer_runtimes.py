#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""OpenVINO and ONNX Runtime peers for attn-bench: one attention op as a
one-op model on the CPU, called as an inference user calls it.

    python3 bench/peer_runtimes.py BACKEND N CAUSAL REPS [options]
    python3 bench/peer_runtimes.py BACKEND N CAUSAL 0 --serve [options]
    python3 bench/peer_runtimes.py --check [BACKEND,...]

BACKEND is one of

  openvino       opset-13 ScaledDotProductAttention (scale 1/sqrt(d), the
                 op's causal attribute), compiled for "CPU" with
                 INFERENCE_PRECISION_HINT f32, INFERENCE_NUM_THREADS =
                 --threads, NUM_STREAMS 1 and PERFORMANCE_HINT LATENCY; one
                 infer request whose input tensors share the arrays' memory.
                 GQA: Q as [B, K, H/K, S, d] against K, V as [B, K, 1, N, d]
                 (the op broadcasts them over the H/K query heads).
  ort-mha        com.microsoft MultiHeadAttention (num_heads, scale,
                 unidirectional when causal): Q as [B, S, H*d] (transposed
                 before timing, as a model holds it), K and V [B, H, N, d]
                 (BNSH), O [B, S, H*d] (transposed back after timing).  The
                 op has no GQA: without a mask (or with seq_q 1) the H/K
                 query heads of a kv head are handed over as H/K times the
                 query rows, which is the same computation.
  ort-attention  the standard opset-23 Attention (is_causal, scale): Q
                 [B, H, S, d], K and V [B, K, N, d] (GQA by K's heads).

The ONNX Runtime sessions run on the CPUExecutionProvider with
intra_op_num_threads = --threads, inter_op_num_threads 1, sequential
execution and every graph optimization; inputs and output are bound once
(io-binding over OrtValues that share the arrays' memory) and each call is
run_with_iobinding.

Inputs and output are f32 or, with --dtype f16, binary16 (OpenVINO still
computes in f32: the precision hint).  Causal masks are bottom-right
aligned, as libattn's: query i sees key j iff j <= i + N - S.  The ops'
causal attributes agree with that only when S == N (OpenVINO and opset-23
Attention align the mask top-left; MultiHeadAttention's unidirectional mask
matches neither with S < N), so a causal case with 1 < S < N is skipped
with that reason; with S == 1 the one query row sees every key and runs
without a mask ("no-mask" in how).

Each call is timed with time.perf_counter around the infer call.
Standalone (random inputs unless --in), --warmup untimed calls, then REPS
timed calls, and one line

    RESULT median_ms=... min_ms=... impl=... how=...

With --serve the script builds the model, reads --in (raw Q [B, H, S, d],
K and V [B, K, N, d], one after the other, float32 or binary16 as --dtype
says) and prints "READY impl=... how=..." (or "SKIP <why>" when the
backend does not take the case, "ERROR <why>" when it fails), then answers
commands on stdin, one a line: "run" (one call; "TIME ms=..."), "out"
(writes O of the last call to --out as raw float32 [B, H, S, d]; "DONE"),
"quit".  attn-bench drives it so that these calls alternate with its own.
--check prints one line per backend: "OK BACKEND <version>" when it
imports and runs a small case, else "NO BACKEND <why>".  Errors print one
line "ERROR ..." and exit with status 2.
"""
import argparse
import statistics
import sys
import time

BACKENDS = ("openvino", "ort-mha", "ort-attention")


class Skip(Exception):
    """The backend does not take this case."""


def fail(msg):
    print("ERROR " + msg, flush=True)
    sys.exit(2)


def need_numpy():
    try:
        import numpy
    except ImportError as e:
        raise Skip("numpy is not installed (pip install numpy): %s" % e)
    return numpy


def need_openvino():
    try:
        import openvino
        import openvino.opset13
    except ImportError as e:
        raise Skip("openvino is not installed (pip install openvino): %s" % e)
    return openvino, openvino.opset13


def need_ort():
    try:
        import onnxruntime
    except ImportError as e:
        raise Skip("onnxruntime is not installed (pip install onnxruntime): %s"
                   % e)
    try:
        import onnx
    except ImportError as e:
        raise Skip("onnx is not installed (pip install onnx; the one-op model "
                   "is built with it): %s" % e)
    return onnxruntime, onnx


def mask_plan(backend, causal, s, n, heads, kv_heads):
    """How the case runs: (use the op's causal attribute, how words), or
    Skip when the op cannot express libattn's bottom-right mask."""
    how = []
    use_causal = bool(causal) and s == n
    if causal and s == 1:
        how.append("no-mask")
    elif causal and s != n:
        raise Skip("the op's causal mask is not libattn's bottom-right one for "
                   "seq_q %d < seq_kv %d (%s)" % (
                       s, n, "top-left aligned" if backend != "ort-mha" else
                       "MultiHeadAttention's unidirectional mask differs"))
    if kv_heads != heads:
        if backend == "openvino":
            how.append("gqa")
        elif backend == "ort-attention":
            how.append("gqa")
        elif use_causal:
            raise Skip("MultiHeadAttention takes kv heads = heads, and with a "
                       "causal mask the query heads of a kv head cannot be "
                       "folded into rows")
        else:
            how.append("gqa-as-rows")
    return use_causal, how


class OpenVinoPeer:
    def __init__(self, np, q, k, v, causal, threads, f16):
        ov, ops = need_openvino()
        self.version = ov.__version__.split("-")[0]
        b, h, s, d = q.shape
        kvh, n = k.shape[1], k.shape[2]
        use_causal, self.how = mask_plan("openvino", causal, s, n, h, kvh)
        if kvh != h:  # [B, K, H/K, S, d] against [B, K, 1, N, d]
            q = q.reshape(b, kvh, h // kvh, s, d)
            k = k.reshape(b, kvh, 1, n, d)
            v = v.reshape(b, kvh, 1, n, d)
        et = ov.Type.f16 if f16 else ov.Type.f32
        ft = np.float16 if f16 else np.float32
        pq, pk, pv = (ops.parameter(list(x.shape), et) for x in (q, k, v))
        node = ops.scaled_dot_product_attention(
            pq, pk, pv, ops.constant(ft(0)), ops.constant(ft(d ** -0.5)),
            causal=use_causal)
        model = ov.Model([node], [pq, pk, pv], "sdpa")
        core = ov.Core()
        cfg = {"INFERENCE_PRECISION_HINT": "f32",
               "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
               "PERFORMANCE_HINT": "LATENCY"}
        compiled = core.compile_model(model, "CPU", cfg)
        got = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        if "32" not in got:
            raise RuntimeError("OpenVINO compiled with inference precision %s, "
                               "not f32" % got)
        self.req = compiled.create_infer_request()
        self.keep = (q, k, v)  # the tensors below share these arrays
        for i, x in enumerate(self.keep):
            self.req.set_input_tensor(i, ov.Tensor(x, shared_memory=True))
        self.shape = (b, h, s, d)
        self.out = None
        self.impl = "openvino-%s-sdpa-%s" % (self.version, "f16" if f16 else "f32")

    def call(self):
        t0 = time.perf_counter()
        r = self.req.infer(share_outputs=True)
        ms = (time.perf_counter() - t0) * 1e3
        self.out = r[0]
        return ms

    def output(self):
        return None if self.out is None else self.out.reshape(self.shape)


def ort_session(ort, model_bytes, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Its workers would otherwise spin between calls, on the cores the
    # interleaved libattn calls run on (measured: native's median at
    # N = 2048 went from 22-28 ms alone to 38-41 ms beside a spinning peer).
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes, so,
                                providers=["CPUExecutionProvider"])


class OrtPeer:
    def __init__(self, np, backend, q, k, v, causal, threads, f16):
        ort, onnx = need_ort()
        from onnx import helper
        self.version = ort.__version__
        b, h, s, d = q.shape
        kvh, n = k.shape[1], k.shape[2]
        use_causal, self.how = mask_plan(backend, causal, s, n, h, kvh)
        et = onnx.TensorProto.FLOAT16 if f16 else onnx.TensorProto.FLOAT
        self.shape = (b, h, s, d)
        scale = float(d ** -0.5)
        if backend == "ort-mha":
            # query heads of a kv head as rows: [B, K, (H/K)*S, d]
            rows = (h // kvh) * s
            xq = np.ascontiguousarray(
                q.reshape(b, kvh, rows, d).transpose(0, 2, 1, 3)).reshape(
                    b, rows, kvh * d)
            shapes = ([b, rows, kvh * d], list(k.shape), list(v.shape),
                      [b, rows, kvh * d])
            attrs = {"num_heads": kvh, "scale": scale}
            if use_causal:
                attrs["unidirectional"] = 1
            node = helper.make_node("MultiHeadAttention", ["q", "k", "v"],
                                    ["o"], domain="com.microsoft", **attrs)
            opsets = [helper.make_opsetid("", 17),
                      helper.make_opsetid("com.microsoft", 1)]
            self.impl = "onnxruntime-%s-mha-%s" % (self.version,
                                                    "f16" if f16 else "f32")
            self.unfold = (b, s, kvh, h // kvh, d)
        else:
            xq = q
            shapes = (list(q.shape), list(k.shape), list(v.shape),
                      list(q.shape))
            node = helper.make_node("Attention", ["q", "k", "v"], ["o"],
                                    is_causal=int(use_causal), scale=scale)
            opsets = [helper.make_opsetid("", 23)]
            self.impl = "onnxruntime-%s-attention23-%s" % (
                self.version, "f16" if f16 else "f32")
            self.unfold = None
        vi = [helper.make_tensor_value_info(nm, et, sh)
              for nm, sh in zip(("q", "k", "v", "o"), shapes)]
        graph = helper.make_graph([node], "attention", vi[:3], vi[3:])
        model = helper.make_model(graph, opset_imports=opsets)
        self.sess = ort_session(ort, model.SerializeToString(), threads)
        self.keep = (xq, k, v)
        self.bind = self.sess.io_binding()
        for nm, x in zip(("q", "k", "v"), self.keep):
            self.bind.bind_ortvalue_input(
                nm, ort.OrtValue.ortvalue_from_numpy(x))
        self.o = ort.OrtValue.ortvalue_from_shape_and_type(
            shapes[3], np.float16 if f16 else np.float32)
        self.bind.bind_ortvalue_output("o", self.o)

    def call(self):
        t0 = time.perf_counter()
        self.sess.run_with_iobinding(self.bind)
        return (time.perf_counter() - t0) * 1e3

    def output(self):
        o = self.o.numpy()
        if self.unfold:  # [B, (H/K)*S, K*d] -> [B, H, S, d]
            b, s, kvh, g, d = self.unfold
            o = o.reshape(b, g, s, kvh, d).transpose(0, 3, 1, 2, 4)
        return o.reshape(self.shape)


def make_peer(np, backend, q, k, v, causal, threads, f16):
    if backend == "openvino":
        return OpenVinoPeer(np, q, k, v, causal, threads, f16)
    return OrtPeer(np, backend, q, k, v, causal, threads, f16)


def check(backends):
    for be in backends:
        try:
            np = need_numpy()
            x = np.ones((1, 2, 4, 8), dtype=np.float32)
            p = make_peer(np, be, x, x, x, 1, 1, False)
            p.call()
            if abs(float(p.output().sum()) - 64.0) > 1e-3:
                raise RuntimeError("a small case gave a wrong result")
            print("OK %s %s" % (be, p.impl), flush=True)
        except Skip as e:
            print("NO %s %s" % (be, e), flush=True)
        except Exception as e:  # an op the installed version lacks, ...
            print("NO %s a small case failed: %s" % (
                be, str(e).replace("\n", " ")[:400]), flush=True)


def read_inputs(np, path, dtype, shapes):
    counts = [int(np.prod(sh)) for sh in shapes]
    try:
        buf = np.fromfile(path, dtype=dtype)
    except OSError as e:
        fail("cannot read %s: %s" % (path, e))
    if buf.size != sum(counts):
        fail("%s holds %d values, expected %d" % (path, buf.size, sum(counts)))
    parts, at = [], 0
    for c, sh in zip(counts, shapes):
        parts.append(buf[at:at + c].reshape(sh))
        at += c
    return parts


def serve(peer, np, out_path):
    print("READY impl=%s how=%s" % (peer.impl, ",".join(peer.how) or "-"),
          flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "run":
            print("TIME ms=%.6f" % peer.call(), flush=True)
        elif cmd == "out" and out_path and peer.output() is not None:
            np.ascontiguousarray(peer.output(), dtype=np.float32).tofile(
                out_path)
            print("DONE", flush=True)
        elif cmd == "quit":
            return
        else:
            print("ERROR unknown command or no output: %r" % cmd, flush=True)


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--check":
        check(sys.argv[2].split(",") if len(sys.argv) > 2 else BACKENDS)
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("backend", choices=BACKENDS)
    ap.add_argument("n", type=int, help="keys (seq_kv)")
    ap.add_argument("causal", type=int, choices=(0, 1))
    ap.add_argument("reps", type=int)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=0, help="default: --heads")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--seq-q", type=int, default=0, help="default: N")
    ap.add_argument("--dtype", choices=("f32", "f16"), default="f32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--in", dest="inp")
    ap.add_argument("--out")
    a = ap.parse_args()
    kvh = a.kv_heads or a.heads
    s = a.seq_q or a.n
    if (min(a.n, a.batch, a.heads, kvh, a.dim, s, a.threads) <= 0
            or a.warmup < 0 or a.reps < 0 or (a.reps == 0 and not a.serve)):
        fail("N, REPS, --batch, --heads, --kv-heads, --dim, --seq-q and "
             "--threads must be positive")
    if a.heads % kvh or s > a.n:
        fail("--kv-heads must divide --heads, --seq-q must not exceed N")
    try:
        np = need_numpy()
    except Skip as e:
        fail(str(e))
    f16 = a.dtype == "f16"
    ft = np.float16 if f16 else np.float32
    shapes = ((a.batch, a.heads, s, a.dim), (a.batch, kvh, a.n, a.dim),
              (a.batch, kvh, a.n, a.dim))
    if a.inp:
        q, k, v = read_inputs(np, a.inp, ft, shapes)
    else:
        rng = np.random.default_rng(1)
        q, k, v = (rng.uniform(-1, 1, sh).astype(ft) for sh in shapes)
    try:
        peer = make_peer(np, a.backend, q, k, v, a.causal, a.threads, f16)
        if a.serve:
            serve(peer, np, a.out)
            return
        for _ in range(a.warmup):
            peer.call()
        times = [peer.call() for _ in range(a.reps)]
    except Skip as e:
        print("SKIP %s" % e, flush=True)
        sys.exit(0 if a.serve else 3)
    except Exception as e:  # the runtime's own errors, out of memory
        fail("%s: %s" % (a.backend, str(e).replace("\n", " ")[:400]))
    if a.out:
        np.ascontiguousarray(peer.output(), dtype=np.float32).tofile(a.out)
    print("RESULT median_ms=%.6f min_ms=%.6f impl=%s how=%s" % (
        statistics.median(times), min(times), peer.impl,
        ",".join(peer.how) or "-"), flush=True)


if __name__ == "__main__":
    main()
