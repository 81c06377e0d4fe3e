/* SPDX-License-Identifier: Apache-2.0 */
/*
 * peer_clblast: attention the way an OpenCL user without libattn writes it:
 * Q, K, V uploaded, S = scale * Q K^T per head with
 * CLBlastSgemmStridedBatched, a plain row-softmax kernel (causal mask
 * applied there), O = P V with CLBlastSgemmStridedBatched, O read back.
 * Built only when CLBlast and OpenCL are found (ATTN_BENCH_HAVE_CLBLAST).
 * CLBlast 1.5 is not thread-safe on first use: call it from one thread.
 */
#ifndef ATTN_BENCH_PEER_CLBLAST_H
#define ATTN_BENCH_PEER_CLBLAST_H

#include <stddef.h>

typedef struct clblast_peer clblast_peer;
typedef struct clblast_case clblast_case;

/* Opens the OpenCL device libattn selects for device_spec (as
 * attn_options.device; when that fails or spec is NULL: the first OpenCL
 * CPU device, else the first device of any kind), a context, a queue
 * (profiling when on_device, for --resident) and the softmax kernel.
 * Returns 0, or -1 and a sentence in why. */
int clblast_peer_open(clblast_peer **out, const char *device_spec,
                      int on_device, char *why, size_t why_len);
void clblast_peer_close(clblast_peer *p);
/* "device name (platform)" */
const char *clblast_peer_device(const clblast_peer *p);

/* Allocates the device buffers of one case: heads, n, d; q, k, v are
 * [heads, n, d] floats that must outlive the case; o receives the output
 * at every exec (resident: at clblast_case_read).  A resident peer uploads
 * q, k and v here, once.  Returns 0, or -1 and why (for example a buffer
 * larger than the device's largest allocation). */
int clblast_case_prepare(clblast_peer *p, int heads, int n, int d, int causal,
                         const float *q, const float *k, const float *v,
                         float *o, clblast_case **out, char *why,
                         size_t why_len);
/* One timed call: upload, GEMM, softmax, GEMM, download (blocking).
 * Returns 0, or -1 and why. */
int clblast_case_exec(clblast_case *c, char *why, size_t why_len);
/* Resident: GEMM, softmax, GEMM on the device buffers only, held back
 * until enqueued whole; kernel_ms from event profiling (bench_cl.h),
 * wall_ms the host time to completion.  Returns 0, or -1 and why. */
int clblast_case_exec_resident(clblast_case *c, double *kernel_ms,
                               double *wall_ms, char *why, size_t why_len);
/* Resident: reads O into the o given to clblast_case_prepare.  0 or -1. */
int clblast_case_read(clblast_case *c, char *why, size_t why_len);
void clblast_case_free(clblast_case *c);

#endif
