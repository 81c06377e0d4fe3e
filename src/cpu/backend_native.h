/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The native backend: the CPU kernels of src/cpu behind the backend
 * interface (core/backend.h).  Not installed.
 */
#ifndef ATTN_CPU_BACKEND_NATIVE_H
#define ATTN_CPU_BACKEND_NATIVE_H

#include "core/backend.h"

/* The native backend on `threads` (>= 1) worker threads.  Its kernels are
 * those of the instruction set ATTN_CPU_ISA and the CPU select
 * (src/cpu/isa.c); lg receives the choice at info level, and warn (cap
 * bytes) a warning about a bad ATTN_CPU_ISA for the caller to report, or
 * "".  Errors: ATTN_ERR_OUT_OF_MEMORY (threads or memory). */
attn_status attn_backend_native_create(int threads, const attn_logger *lg,
                                       char *warn, size_t cap,
                                       attn_backend **out, attn_err *err);

/* The precision the native backend b computes d (valid) at: BF16 when b
 * was asked for BF16 (attn_backend_native_ask) and its kernels have it for
 * d, else EXACT (no TF32 hardware; attn.h, attn_precision). */
attn_precision attn_backend_native_precision(const attn_backend *b,
                                             const attn_sdpa_desc *d);

/* Asks b's attention (attn_sdpa's; the multi-head layer's stays EXACT) for
 * the precision `asked`; a backend is created asking EXACT.  The context asks
 * its precision only of the native backend that runs its work, so that a
 * call falling back from a device computes EXACT as attn.h says.  Not
 * while b is in use. */
void attn_backend_native_ask(attn_backend *b, attn_precision asked);

/* Whether the native backend, with the kernels a context created now would
 * get, outruns an OpenCL CPU runtime on the same cores: 1 with the avx2 or
 * avx512 kernels, 0 with the generic ones, which PoCL's fused path
 * outruns (figures in src/cpu/isa.c).  "auto" prefers native to an OpenCL
 * CPU device only when this holds (and the device's profile allows it). */
int attn_native_beats_opencl_cpu(void);

/* ---- host services of the native backend b, for the API layer ----------
 * (the training layer and the backward pass run on the host whatever the
 * context's device; these keep src/cpu's own interface, cpu_impl.h,
 * private to src/cpu). */

/* The gradients of attention (attn_sdpa_backward, attn.h) on b's worker
 * threads: d and g validated, dot score, contiguous layouts.  Returns
 * ATTN_OK or ATTN_ERR_OUT_OF_MEMORY (outputs untouched then). */
attn_status attn_backend_native_backward(attn_backend *b,
                                         const attn_sdpa_desc *d,
                                         const attn_sdpa_grad *g);

/* c[m x n] (row stride ldc) = a[m x k] b[n x k]^T (+ bias[n] per row, bias
 * may be NULL), with b's kernels on its worker threads.  Returns ATTN_OK
 * or ATTN_ERR_OUT_OF_MEMORY. */
attn_status attn_backend_native_gemm_nt(attn_backend *b, int m, int n, int k,
                                        const float *a, size_t lda,
                                        const float *bm, size_t ldb,
                                        const float *bias, float *c,
                                        size_t ldc);

/* The table of attn_posenc_sinusoidal (attn.h): seq x d_model floats, the
 * arguments valid. */
void attn_native_posenc_sinusoidal(int seq, int d_model, int offset,
                                   float *table);

/* out = x plus m's added positional encoding (the sinusoidal table, or
 * m->pos_table for a learned one) for batch x seq rows of d_model from
 * position pos0, as the native layer's forward adds it. */
void attn_native_add_posenc(const attn_mha_desc *m, int batch, int seq,
                            int pos0, const float *x, float *out);

/* The instruction set whose kernels a native context created now would run
 * ("generic", "avx2" or "avx512"; ATTN_CPU_ISA and the CPU decide), for
 * tools such as attn-probe.  Static storage. */
const char *attn_native_isa_name(void);

#endif /* ATTN_CPU_BACKEND_NATIVE_H */
