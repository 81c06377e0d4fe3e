/*
 * The decode attention path (cl/decode.cl): for seq_q <= 4 query rows per
 * head (token-by-token generation against a KV cache) the keys are split
 * across work-groups; pass 1 writes each split's partial maximum, sum and
 * unnormalised O into a temporary buffer, pass 2 combines the splits of
 * every row through their log-sum-exp.  Used by the OpenCL backend and the
 * embedding API.  Not installed.
 *
 * Programs: one per dtype (tags "decode_f32", "decode_f16"), built lazily
 * on first use under rt->lock and kept in rt->decode (released by
 * rt->decode_free).  A build failure is kept too: later calls fail fast
 * with the same sentence until the tuning changes.
 */
#ifndef ATTN_OPENCL_SDPA_DECODE_H
#define ATTN_OPENCL_SDPA_DECODE_H

#include "opencl/sdpa_cl.h"

/* Most query rows per head the decode kernels take. */
#define ATTN_CL_DECODE_MAX_Q 4

/* Blocking of cl/decode.cl (its -D values).  Pass 1 runs work-groups of
 * `wg` items over chunks of `tk` keys; pass 2 work-groups of `cwg` items.
 * `splits` fixes the number of key splits per (batch, query head); 0 picks
 * it from the keys and the device's compute units: about 4 work-groups per
 * compute unit, at least one chunk of keys per split, at most 256 splits.
 * Changing only `splits` keeps the built programs.
 * Local memory of pass 1: 4 * (R4(seq_q * head_dim) + R4(head_dim) +
 * seq_q * (tk + wg + R4(head_dim_v))) bytes (R4: rounded up to 4). */
typedef struct attn_cl_decode_tuning {
    int wg;            /* [1, 1024] */
    int tk;            /* [1, 4096], a multiple of wg */
    int cwg;           /* [1, 1024] */
    int splits;        /* 0 = auto, else [1, 256] */
    char options[128]; /* extra build options, "" or e.g. "-cl-mad-enable",
                          NUL-terminated */
} attn_cl_decode_tuning;

/* The defaults (tuned on PoCL's CPU device, where 16 items beat 32 - 128;
 * GPUs likely want 64 or more): 16 items over chunks of 256 keys, 64 items
 * per combined row, automatic splits, no extra options. */
void attn_cl_decode_tuning_default(attn_cl_decode_tuning *t);

/* The build options of cl/decode.cl (before attn_cl_build adds -cl-std)
 * for tuning t as fitted to the device (tk a multiple of wg), F16 storage
 * when f16 is 1.  Returns what snprintf returns. */
int attn_cl_decode_options(const attn_cl_decode_tuning *t, int f16, char *buf,
                           size_t cap);

/* Sets the tuning of rt's decode programs and drops the programs built so
 * far.  Commands already enqueued are not affected.  Errors:
 * ATTN_ERR_INVALID_ARGUMENT (NULL, a value outside its range, tk not a
 * multiple of wg, options not NUL-terminated), ATTN_ERR_OUT_OF_MEMORY.
 * Thread-safe (takes rt->lock). */
attn_status attn_cl_decode_set_tuning(attn_cl_runtime *rt,
                                      const attn_cl_decode_tuning *t,
                                      attn_err *err);

/* The decode path on device buffers, with the contract of
 * attn_cl_sdpa_fused (sdpa_fused.h): d validated by the caller, every
 * feature of DESIGN.md, enqueued on `queue` after the wait list behind a
 * user event, *done = the last command's event (done may be NULL), never
 * blocks; host-side inputs copied at once, temporaries (the partial buffer
 * included) released after enqueueing; on failure nothing enqueued writes
 * o or lse.  Errors: ATTN_ERR_INVALID_ARGUMENT, ATTN_ERR_OUT_OF_MEMORY,
 * ATTN_ERR_BUILD_FAILED, ATTN_ERR_DEVICE, and ATTN_ERR_UNSUPPORTED when the
 * shape is not one it takes (seq_q > ATTN_CL_DECODE_MAX_Q, head_dim /
 * head_dim_v too large for the device's local memory, sequences near
 * INT_MAX) or the device cannot run the kernels; the caller may then use
 * another path.  Thread-safe. */
attn_status attn_cl_sdpa_decode(attn_cl_runtime *rt, const attn_sdpa_desc *d,
                                const attn_cl_tensors *t,
                                cl_command_queue queue, cl_uint n_wait,
                                const cl_event *wait, cl_event *done,
                                attn_err *err);

#endif /* ATTN_OPENCL_SDPA_DECODE_H */
