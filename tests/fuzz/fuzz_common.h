/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the files of the fuzz harness share: the failure report (a failed
 * expectation aborts, which libFuzzer reports as a crash with the input
 * saved) and the description of the call being checked.
 */
#ifndef ATTN_FUZZ_COMMON_H
#define ATTN_FUZZ_COMMON_H

#include "attn/attn.h"
#include "attn_gen.h"

/* The call being checked, for the failure message. */
extern char fuzz_current[1024];

/* Prints file:line, the message and fuzz_current, then aborts. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noreturn, format(printf, 3, 4)))
#endif
void fuzz_fail(const char *file, int line, const char *fmt, ...);

#define REQUIRE(cond, ...)                                                     \
    do {                                                                       \
        if (!(cond))                                                           \
            fuzz_fail(__FILE__, __LINE__, __VA_ARGS__);                        \
    } while (0)

/* 1 when s is a value of attn_status. */
int fuzz_is_status(attn_status s);

#define REQUIRE_STATUS(s, fn)                                                  \
    REQUIRE(fuzz_is_status(s), "%s returned %d, not an attn_status", fn,       \
            (int)(s))

/* ---- fuzz_cl.c: the embedding API and the environment ------------------- */

/* Prepares the embedding-API runs on the OpenCL device ctx runs on: a
 * cl_context and queue of the harness's own with a libattn context on
 * them (kernels built now), and a second cl_context for foreign buffers.
 * Returns 0, or -1 when that cannot be done (the runs are then skipped). */
int fuzz_cl_init(attn_context *ctx);

/* One attn_sdpa_cl_buffers call on buffers the harness made, the tensors
 * at random offsets in one cl_mem, in several, in sub-buffers of one
 * parent, or in a buffer of another cl_context, overlapping or not.  The
 * harness's model says whether the call must be refused (an output
 * overlapping another tensor, a foreign buffer, a buffer too small): then
 * the status is ATTN_ERR_INVALID_ARGUMENT, *done and every buffer are
 * untouched; otherwise the results match the oracle and nothing outside o
 * and lse changed.  Returns 1 (ran), 0 (refused as expected) or -1 (not
 * available). */
int fuzz_cl_buffers(gen_src *g);
/* The backward calls on the harness's buffers that ran so far, on the
 * variant AUTO picks and on bwd_tiled forced. */
void fuzz_cl_counts(unsigned long *bwd_auto, unsigned long *bwd_tiled);

/* attn_context_create with ATTN_DEVICE, ATTN_PLATFORM_DIR (a folder with a
 * profile made of the input's bytes, one with a FIFO, none) and the cache
 * folder (ATTN_CACHE_DIR or options.cache_dir: missing, relative, too
 * long, a symbolic link, writable by all) drawn from the input; log is the
 * callback that checks messages.  The environment is restored after.
 * Returns the status. */
attn_status fuzz_env_context(gen_src *g, attn_log_fn log);

/* ---- fuzz_placed.c: strided tensors and packed batches ---------------- */

/* attn_sdpa of shape (gen_sdpa_shape: its layouts, packed batch, dtype) on
 * ctx, its inputs placed at the shape's strides with NaN in the gaps.
 * Valid (hostile 0): the call succeeds (on an OpenCL context it may be
 * UNSUPPORTED), never writes past o's extent, its gaps or lse's, gives
 * finite outputs (0 for rows seeing no key) that match the oracle.
 * Hostile: one field spoiled (a negative stride, an extent past the
 * address space, o strides that alias rows, cu_seqlens decreasing, past
 * seq_q / seq_kv or not starting at 0, a batch stride or a mask with a
 * packed batch): the status attn.h gives, o untouched.  Half the time a
 * strided call that ran is followed by its backward (d_o in o's strides,
 * dq, dk, dv in q's, k's and v's, one block for the fused QKV layout),
 * compared bit for bit with the backward of the contiguous problem.
 * Returns 2 (ran, with the backward), 1 (ran), 0 (refused as expected)
 * or -1 (unsupported on the device). */
int fuzz_sdpa_placed(gen_src *g, attn_context *ctx, const gen_sdpa *shape,
                     int hostile, int on_device);

/* ---- fuzz_bwd.c: the backward pass ------------------------------------ */

/* The tensors of a forward that ran (valid, OK) and their bytes; finite:
 * the gradients must come out finite (F32, no poisoned input, q, k, o and
 * lse those of that very forward). */
typedef struct fuzz_bwd_in {
    const void *q, *k, *v, *o;
    const float *lse;
    size_t q_bytes, k_bytes, v_bytes, o_bytes, bias_bytes, addw_bytes;
    int finite;
    int on_device; /* a device context without fallback: it may decline */
} fuzz_bwd_in;

/* attn_sdpa_backward of that forward with a random dO, dbias and
 * d_additive_w asked or not: it must succeed and write every output
 * (finite ones when in->finite), or, on a device context without
 * fallback, may decline (ATTN_ERR_UNSUPPORTED with a message, every
 * output untouched) as the forward may; half the time also a spoiled call,
 * which must be refused without writing its dq. */
void fuzz_backward(gen_src *g, attn_context *ctx, const attn_sdpa_desc *d,
                   const fuzz_bwd_in *in);

#endif /* ATTN_FUZZ_COMMON_H */
