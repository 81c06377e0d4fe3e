/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The leaves every layer uses (api, plan, sched, backends): failure
 * sentences, the thread's last error, logging, argument validation,
 * overflow-checked sizes, and the plain call records.  Nothing here calls
 * upwards.  Not installed.
 */
#ifndef ATTN_CORE_H
#define ATTN_CORE_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>

#include "attn/attn.h"

#define ATTN_MSG_MAX 512

/* A sentence about a failure, filled by whoever detects it. */
typedef struct attn_err {
    char msg[ATTN_MSG_MAX];
} attn_err;

#if defined(__GNUC__) || defined(__clang__)
#define ATTN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define ATTN_PRINTF(f, a)
#endif

/* Writes a formatted message into e (when e is not NULL) and returns s, so
 * that a check reads `return attn_fail(err, ATTN_ERR_..., "...", ...)`. */
attn_status attn_fail(attn_err *e, attn_status s, const char *fmt, ...)
    ATTN_PRINTF(3, 4);

/* ---- logging -------------------------------------------------------------
 * A logger is a level and a sink: the caller's callback, or stderr when
 * ATTN_LOG asked for messages and no callback was given. */
typedef struct attn_logger {
    int level; /* messages at or below this attn_log_level are delivered */
    attn_log_fn fn;
    void *user;
    /* While a context is created, its last error (note_cap bytes), where
     * attn_log_env also writes; NULL otherwise. */
    char *note;
    size_t note_cap;
} attn_logger;

/* Resolves the options' level and callback against ATTN_LOG.  Returns
 * ATTN_ERR_INVALID_ARGUMENT for an options.log_level that is not an
 * attn_log_level.  An ATTN_LOG that names no level is ignored with a
 * warning, delivered (callback or stderr) and written to warn; warn->msg
 * stays as it was otherwise. */
attn_status attn_logger_init(attn_logger *lg, const attn_options *o,
                             attn_err *warn, attn_err *err);
/* Delivers a message at `level` when lg asks for it.  May be called with
 * any lock of the library held: the callback then runs under it, and
 * attn_log_in_callback keeps it from calling back in.  Messages logged
 * from inside a callback are dropped. */
void attn_log(const attn_logger *lg, int level, const char *fmt, ...)
    ATTN_PRINTF(3, 4);
/* A warning about a value of the environment (a variable, a file a
 * variable names): delivered as attn_log's, and written to lg->note when
 * set, so that attn_context_create leaves it as the context's last
 * error. */
void attn_log_env(const attn_logger *lg, const char *fmt, ...)
    ATTN_PRINTF(2, 3);
/* 1 while the calling thread runs a caller's log callback: an entry point
 * that does work (and so takes a context's locks) refuses to run then. */
int attn_log_in_callback(void);

/* One multi-head layer call (attn_mha_forward), validated. */
typedef struct attn_mha_call {
    const attn_mha_desc *m;
    int batch, seq_q, seq_kv;
    const float *x_q, *x_kv;    /* x_kv NULL: self-attention */
    const attn_mask_desc *mask; /* never NULL (a zeroed mask when none) */
    float *y;
    /* 1: y is the backward's d_y, an input [batch, seq_q, d_model] that
     * may share memory with the other inputs (not checked as an output) */
    int y_is_input;
    float scale; /* of the dot score; 0 = 1/sqrt(head_dim) */
    /* A KV cache (attn_kv_cache) or cache_k NULL: k and v [batch, heads_kv,
     * cache_cap, head_dim], cache_len rows filled.  With one the call is a
     * self-attention step (x_kv NULL, seq_kv == seq_q) whose keys and
     * values land at rows cache_len .., and the attention sees
     * cache_len + seq_q keys; m->pos_offset already counts cache_len. */
    float *cache_k, *cache_v;
    int cache_cap, cache_len;
    /* Per device of the backend, the weights it holds for the layer
     * (attn_mha_create), or NULL: the call uploads m's arrays. */
    void *const *resident;
    /* Bytes of one element of x_q, x_kv and y as validation sizes them: 0
     * for float; 2 while x_q, x_kv and y are still the caller's 16-bit
     * activations (attn_mha_forward_layer with F16 or BF16, validated
     * before it converts them; never run so). */
    size_t act_size;
} attn_mha_call;

/* Keys the attention step of c sees: seq_kv, or cache_len + seq_q. */
int attn_mha_keys(const attn_mha_call *c);

/* One attention call on host memory. */
typedef struct attn_sdpa_call {
    const attn_sdpa_desc *d;
    const void *q, *k, *v;
    void *o;
    float *lse; /* may be NULL */
} attn_sdpa_call;

/* Sets the calling thread's last error (attn_last_error); status.c. */
void attn_thread_set_error(const char *msg);

/* ---- validation (validate.c) ---------------------------------------------
 * Each returns ATTN_OK or an error with a sentence in err. */

/* Byte sizes of the tensors of a valid descriptor. */
typedef struct attn_sdpa_bytes {
    size_t q, k, v, o, lse;
} attn_sdpa_bytes;

/* Tensors of an attention call, in the order of attn_sdpa_desc's strides. */
enum { ATTN_T_Q, ATTN_T_K, ATTN_T_V, ATTN_T_O };

/* Tensor t's (ATTN_T_*) strides as d gives them (attn_sdpa_desc.q_strides
 * ..., all 0 for the contiguous layout). */
const int64_t *attn_tensor_given(const attn_sdpa_desc *d, int t);
/* Tensor t's batches, heads and rows in n, its row width in *w. */
void attn_tensor_dims(const attn_sdpa_desc *d, int t, size_t n[3], size_t *w);
/* 1 when no two rows of tensor t of d share an element: its dimensions
 * of more than one index, sorted by stride, nest (each stride at least
 * the extent of the smaller ones).  Always for the contiguous layout. */
int attn_tensor_rows_apart(const attn_sdpa_desc *d, int t);
/* 1 when tensor ta of d at a and tensor tb at b (elements of elem bytes)
 * provably share no element although their extents overlap: rows apart,
 * and some of the dimensions of the same stride in both (batch and row,
 * say) make cells at least their smallest stride apart in which the rows
 * of a (the other dimensions) and those of b lie in two blocks that do not
 * meet, as q, k and v do in one [batch, seq, heads_q + 2 heads_kv,
 * head_dim] block (fused QKV).  0 when that is not shown (packed calls:
 * always). */
int attn_tensors_disjoint(const attn_sdpa_desc *d, int ta, const void *a,
                          int tb, const void *b, size_t elem);
/* 1 when d gives strides for some tensor (attn_sdpa_desc.q_strides ...). */
int attn_sdpa_strided(const attn_sdpa_desc *d);
/* The element strides over batch, head and row of tensor t (ATTN_T_*) of
 * d: its strides, or the contiguous layout's when they are all 0.  d's
 * strides are valid (attn_validate_sdpa_desc). */
void attn_tensor_strides(const attn_sdpa_desc *d, int t, size_t st[3]);
/* The elements tensor t of d spans (the last one's offset + 1); d is
 * valid. */
size_t attn_tensor_extent(const attn_sdpa_desc *d, int t);
/* Checks tensor t's strides of d (not negative, o's rows apart) and puts
 * the bytes they span, elements of elem bytes, in *bytes.  Errors:
 * ATTN_ERR_INVALID_ARGUMENT with a sentence. */
attn_status attn_strides_extent(const attn_sdpa_desc *d, int t, size_t elem,
                                size_t *bytes, attn_err *err);

/* The offset of the causal diagonal (and of the window) of d: query i
 * sees key j iff j <= i + attn_causal_diag(d) (attn.h, causal_align and
 * causal_offset).  Validated descriptors keep it in [1 - seq_q,
 * seq_kv - 1]. */
static inline long long attn_causal_diag(const attn_sdpa_desc *d)
{
    return (d->causal_align == ATTN_CAUSAL_TOP_LEFT
                ? 0
                : (long long)d->seq_kv - d->seq_q) +
           (long long)d->causal_offset;
}

/* The first query row of batch item b that is not padding (q_start). */
static inline int attn_q_first(const attn_sdpa_desc *d, int b)
{
    return d->q_start ? (int)d->q_start[b] : 0;
}

/* The first key of batch item b that is not padding (kv_start). */
static inline int attn_kv_first(const attn_sdpa_desc *d, int b)
{
    return d->kv_start ? (int)d->kv_start[b] : 0;
}

/* attn_causal_diag for batch item b: under TOP_LEFT the diagonal is
 * measured from the starts (q_start, kv_start). */
static inline long long attn_causal_diag_b(const attn_sdpa_desc *d, int b)
{
    return attn_causal_diag(d) +
           (d->causal_align == ATTN_CAUSAL_TOP_LEFT
                ? (long long)attn_kv_first(d, b) - attn_q_first(d, b)
                : 0);
}

/* Whether a bias of kind k (shape: its bias_shape, read for BROADCAST)
 * spans batch, heads and queries, each (else it is broadcast there). */
void attn_bias_spans(attn_bias_kind k, const int *shape, int span[3]);
/* d's bias, read in place: the element of (b, h, i, j) is
 * bias[b * st[0] + h * st[1] + i * st[2] + j], with a stride of 0 over a
 * broadcast dimension.  The strides follow d's own sizes (a part of a call
 * split over batch items or heads keeps them).  All 0 without a bias. */
void attn_bias_strides(const attn_sdpa_desc *d, size_t st[3]);
/* The elements of d's bias in *n (0 without one); 0 when they overflow. */
int attn_bias_elems(const attn_sdpa_desc *d, size_t *n);

/* d's boolean mask keep, read in place as the bias is (attn_bias_strides):
 * the byte of (b, h, i, j) is keep[b * st[0] + h * st[1] + i * st[2] + j].
 * All 0 without one. */
void attn_keep_strides(const attn_sdpa_desc *d, size_t st[3]);
/* d with its keep, its kv_start and (under TOP_LEFT, when the starts move
 * the diagonal: kv_start[b] != q_start[b]) its causal mask and window
 * merged into its bias, for a device that takes only the bias and the
 * descriptor's diagonal: *out is d with keep, q_start and kv_start NULL and an
 * ATTN_BIAS_BROADCAST bias of the shape spanning them all (batch for
 * kv_start, batch and queries for a moved diagonal, whose causal and
 * window are then 0), -INFINITY where a mask hides the key and the bias
 * (or 0) elsewhere, in *buf (malloc'ed: the caller frees it after the
 * call; NULL when nothing is merged).  The rows of q_start are the
 * caller's to zero (attn_pad_rows_zero).  Errors: ATTN_ERR_OUT_OF_MEMORY. */
attn_status attn_keep_merge(const attn_sdpa_desc *d, attn_sdpa_desc *out,
                            float **buf, attn_err *err);
/* The padding rows of d's q_start (attn.h) in o, whose rows of (b, h, i)
 * start at element b * ost[0] + h * ost[1] + i * ost[2]: O = 0 and lse
 * (when not NULL; [batch, heads_q, seq_q]) = -INFINITY, as a row with no
 * visible key gives. */
void attn_pad_rows_zero(const attn_sdpa_desc *d, const size_t ost[3], void *o,
                        float *lse);

/* Everything about d but the tensor pointers. */
attn_status attn_validate_sdpa_desc(const attn_sdpa_desc *d, attn_sdpa_bytes *b,
                                    attn_err *err);
/* d plus host pointers: non-NULL q, k, v, o; o and lse apart from the
 * inputs. */
attn_status attn_validate_sdpa(const attn_sdpa_desc *d, const void *q,
                               const void *k, const void *v, const void *o,
                               const float *lse, attn_err *err);
/* The backward call: d as attn_validate_sdpa_desc checks it, every
 * tensor of g present, q, k and v with their rows apart (dq, dk and dv
 * take their strides), the outputs apart from every input and from each
 * other (dq, dk and dv may share a block where attn_tensors_disjoint
 * shows their elements apart). */
attn_status attn_validate_sdpa_grad(const attn_sdpa_desc *d,
                                    const attn_sdpa_grad *g, attn_err *err);
/* m, with bias_shape that of its attn_sdpa_desc (NULL for a mask alone,
 * which cannot be ATTN_BIAS_BROADCAST). */
attn_status attn_validate_mask(const attn_mask_desc *m, const int *bias_shape,
                               int batch, int heads_q, int seq_q, int seq_kv,
                               attn_err *err);
attn_status attn_validate_mha(const attn_mha_call *c, attn_err *err);
/* The name of the first array that layer call c reads (x_q, x_kv, a
 * weight or bias, additive_w, pos_table, the mask's arrays, the KV cache)
 * which [p, p + bytes) overlaps, or NULL (also for p NULL): c's sizes
 * validated. */
const char *attn_mha_input_overlap(const attn_mha_call *c, const void *p,
                                   size_t bytes);
/* The layer's descriptor alone (attn_mha_create): weights, sizes, enums,
 * pos_offset; sizes that can be addressed. */
attn_status attn_validate_mha_desc(const attn_mha_desc *m, attn_err *err);
/* The attention step of layer call c as an attn_sdpa descriptor (c's
 * scale, mask and score, attn_mha_keys keys, f32; no tensor pointers). */
void attn_mha_sdpa_desc(const attn_mha_call *c, attn_sdpa_desc *sd);

/* Overflow-checked size_t products (memsize.c); return 0 on overflow. */
int attn_mul_size(size_t *r, size_t a, size_t b);
int attn_mul_sizes(size_t *r, int n, const size_t *f);

#endif /* ATTN_CORE_H */
