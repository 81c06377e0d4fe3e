/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fuzz harness's runs of the embedding API on buffers it made
 * (attn_sdpa_cl_buffers: offsets, overlaps, sub-buffers, buffers of
 * another cl_context, left padding; after a forward that ran with lse, its
 * backward on the same buffers, attn_sdpa_backward_cl_buffers, against
 * attn_sdpa_backward on host memory, on the variant AUTO picks or on
 * bwd_tiled forced by name, now and then with a gradient over an input,
 * which must be refused) and of context creation under the
 * environment (ATTN_DEVICE, ATTN_PLATFORM_DIR, the cache folder).  Contract in
 * fuzz_common.h; README.md lists what an input exercises.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attn/attn_cl.h"
#include "cases.h"
#include "fuzz_common.h"
#include "ref.h"

#define FILL      0x5a /* bytes of a buffer that hold no input */
#define N_T       5    /* q, k, v, o, lse */
#define MAX_ROOTS N_T

static cl_context own, foreign;
static cl_command_queue queue;
static attn_context *actx;
/* The same device and cl_context with the backward variant bwd_tiled
 * forced (AUTO takes bwd_fused on a CPU device). */
static attn_context *actx_tiled;
/* Backward calls on the caller's buffers that ran: AUTO's variant,
 * bwd_tiled (fuzz_cl_counts). */
static unsigned long n_bwd_ran[2];
static size_t align_bytes; /* sub-buffer origins */
static char sentinel_storage;
#define SENTINEL ((cl_event)(void *)&sentinel_storage)

/* ---- setup -------------------------------------------------------------- */

static attn_status warm_up(attn_dtype dt);

int fuzz_cl_init(attn_context *ctx)
{
    cl_device_id dev = NULL;
    cl_uint bits = 0;
    cl_int rc;
    attn_options o;
    if (!ctx || attn_context_cl_objects(ctx, NULL, &dev, NULL) != ATTN_OK)
        return -1;
    own = clCreateContext(NULL, 1, &dev, NULL, NULL, &rc);
    if (rc != CL_SUCCESS)
        return -1;
    foreign = clCreateContext(NULL, 1, &dev, NULL, NULL, &rc);
    if (rc != CL_SUCCESS)
        return -1;
    queue = clCreateCommandQueue(own, dev, 0, &rc);
    if (rc != CL_SUCCESS ||
        clGetDeviceInfo(dev, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof bits, &bits,
                        NULL) != CL_SUCCESS)
        return -1;
    align_bytes = bits >= 8 ? bits / 8 : 1;
    attn_options_init(&o);
    o.allow_fallback = 0;
    if (attn_context_create_cl(own, dev, &o, &actx) != ATTN_OK)
        return -1;
    o.kernel = "bwd_tiled";
    if (attn_context_create_cl(own, dev, &o, &actx_tiled) != ATTN_OK ||
        sdpa_backward_warm(actx_tiled) != ATTN_OK) {
        /* Said, and the backward runs take AUTO's variant only (the
         * counts show bwd_tiled 0). */
        fprintf(stderr, "fuzz_cl: no bwd_tiled runs: %s\n",
                actx_tiled ? attn_context_last_error(actx_tiled)
                           : attn_last_error());
        attn_context_destroy(actx_tiled);
        actx_tiled = NULL;
    }
    /* Build the kernels now, not inside a timed input. */
    return warm_up(ATTN_F32) == ATTN_OK && warm_up(ATTN_F16) == ATTN_OK ? 0
                                                                        : -1;
}

/* ---- one call on the harness's buffers --------------------------------- */

/* Where one tensor lives. */
typedef struct placed {
    int present;
    int root;      /* index of its root buffer; -1: of another context */
    int sub;       /* 1: a sub-buffer of the root at `origin` */
    size_t origin; /* of the sub-buffer in the root (0 without one) */
    size_t off;    /* bytes from the start of its cl_mem */
    size_t bytes;  /* of the tensor */
    size_t mem;    /* bytes of its cl_mem (the root's when not sub) */
    size_t elem;   /* its element size */
} placed;

typedef struct roots {
    int n;
    size_t bytes[MAX_ROOTS + 1]; /* [MAX_ROOTS]: the foreign buffer */
    unsigned char *image[MAX_ROOTS + 1];
    cl_mem mem[MAX_ROOTS + 1];
} roots;

static size_t up(size_t x, size_t to)
{
    return (x + to - 1) / to * to;
}

/* A random multiple of elem in [0, room]. */
static size_t at(gen_src *g, size_t room, size_t elem)
{
    return (size_t)gen_int(g, 0, (int)(room / elem)) * elem;
}

static int root_of(const placed *p)
{
    return p->root < 0 ? MAX_ROOTS : p->root;
}

/* Lays the tensors out in the input's way; returns 1 when the model says
 * the call must be refused. */
static int lay_out(gen_src *g, placed *t, roots *r)
{
    size_t sum = 0, big = 0;
    int mode = gen_int(g, 0, 3), refuse = 0;
    for (int i = 0; i < N_T; i++) {
        sum += t[i].bytes;
        big = t[i].bytes > big ? t[i].bytes : big;
    }
    memset(r, 0, sizeof *r);
    if (mode == 0) {
        /* Back to back in one buffer, small gaps: nothing overlaps. */
        size_t pos = 0;
        for (int i = 0; i < N_T; i++) {
            if (!t[i].present)
                continue;
            pos = up(pos + (size_t)gen_int(g, 0, 3) * t[i].elem, t[i].elem);
            t[i].off = pos;
            pos += t[i].bytes;
        }
        r->n = 1;
        r->bytes[0] = up(pos + (size_t)gen_int(g, 0, 64), 4);
    } else if (mode == 1 || mode == 2) {
        /* Anywhere in one buffer (1), or in one of several (2). */
        r->n = mode == 1 ? 1 : gen_int(g, 1, MAX_ROOTS);
        for (int k = 0; k < r->n; k++)
            r->bytes[k] = up(sum + (size_t)gen_int(g, 0, (int)sum), 4);
        for (int i = 0; i < N_T; i++) {
            t[i].root = gen_int(g, 0, r->n - 1);
            t[i].off = at(g, r->bytes[t[i].root] - t[i].bytes, t[i].elem);
        }
    } else {
        /* Sub-buffers of one parent at aligned origins, some shared. */
        const size_t slot = up(up(big + 64, align_bytes), 4);
        r->n = 1;
        r->bytes[0] = (N_T + 1) * slot;
        for (int i = 0; i < N_T; i++) {
            t[i].sub = !gen_chance(g, 15);
            t[i].origin = t[i].sub ? (size_t)gen_int(g, 0, N_T) * slot : 0;
            if (t[i].sub && gen_chance(g, 40))
                t[i].origin += (size_t)gen_int(g, 0, 2) * align_bytes;
            if (t[i].origin + slot > r->bytes[0])
                t[i].origin = 0;
            t[i].off = at(g, 64, t[i].elem);
            if (!t[i].sub)
                t[i].off = at(g, r->bytes[0] - t[i].bytes, t[i].elem);
        }
    }
    for (int i = 0; i < N_T; i++)
        t[i].mem = t[i].sub ? t[i].off + t[i].bytes : r->bytes[t[i].root];
    /* Now and then a buffer of another cl_context, or one too small. */
    if (gen_chance(g, 8)) {
        int i = gen_int(g, 0, N_T - 1);
        if (t[i].present) {
            t[i].root = -1;
            t[i].sub = 0;
            t[i].origin = 0;
            t[i].off = at(g, 64, t[i].elem);
            r->bytes[MAX_ROOTS] = t[i].off + t[i].bytes;
            t[i].mem = r->bytes[MAX_ROOTS];
            refuse = 1;
        }
    } else if (gen_chance(g, 5)) {
        int i = gen_int(g, 0, N_T - 1);
        if (t[i].present && t[i].sub && t[i].mem > t[i].elem) {
            t[i].mem -= t[i].elem;
            refuse = 1;
        } else if (t[i].present && !t[i].sub && t[i].mem >= t[i].bytes) {
            t[i].off = t[i].mem - t[i].bytes + t[i].elem;
            refuse = 1;
        }
    }
    /* An output may share no byte with another tensor. */
    for (int w = 3; w < N_T; w++)
        for (int i = 0; i < N_T; i++) {
            size_t a0, a1, b0, b1;
            if (i == w || !t[w].present || !t[i].present || t[w].root < 0 ||
                t[i].root != t[w].root)
                continue;
            a0 = t[w].origin + t[w].off;
            a1 = a0 + t[w].bytes;
            b0 = t[i].origin + t[i].off;
            b1 = b0 + t[i].bytes;
            refuse |= a0 < b1 && b0 < a1;
        }
    return refuse;
}

/* The host arrays of d's mask and score, drawn from r. */
typedef struct host_in {
    float *bias, *addw;
    int32_t *kv_len, *starts; /* starts: q_start then kv_start */
    uint8_t *keep;
} host_in;

static int host_inputs(gen_src *g, const gen_sdpa *gs, attn_sdpa_desc *d,
                       ref_rng *r, host_in *h)
{
    const attn_bias_kind bk = d->mask.bias_kind;
    size_t nb = (size_t)d->seq_kv;
    memset(h, 0, sizeof *h);
    /* [B, H, Q, seq_kv] of the kind (attn.h) */
    if (bk == ATTN_BIAS_FULL || bk == ATTN_BIAS_KEY ||
        (bk == ATTN_BIAS_BROADCAST && d->bias_shape[0] != 1))
        nb *= (size_t)d->batch;
    if (bk == ATTN_BIAS_FULL || bk == ATTN_BIAS_PER_HEAD ||
        (bk == ATTN_BIAS_BROADCAST && d->bias_shape[1] != 1))
        nb *= (size_t)d->heads_q;
    if ((bk >= ATTN_BIAS_SHARED && bk <= ATTN_BIAS_FULL) ||
        (bk == ATTN_BIAS_BROADCAST && d->bias_shape[2] != 1))
        nb *= (size_t)d->seq_q;
    if (d->mask.bias_kind != ATTN_BIAS_NONE) {
        if (!(h->bias = malloc(nb * sizeof(float))))
            return -1;
        ref_fill_f32(r, h->bias, nb, -1.0, 1.0);
        for (size_t e = 0; e < nb; e++)
            if (ref_rng_uniform(r, 0.0, 1.0) < gs->ninf)
                h->bias[e] = -INFINITY;
        d->mask.bias = h->bias;
    }
    if (gs->with_kv_len & CASE_KV_LEN) {
        if (!(h->kv_len = malloc((size_t)d->batch * sizeof(int32_t))))
            return -1;
        for (int b = 0; b < d->batch; b++)
            h->kv_len[b] = gen_int(g, 0, d->seq_kv);
        d->mask.kv_len = h->kv_len;
    }
    if (d->score == ATTN_SCORE_ADDITIVE) {
        size_t n = (size_t)d->heads_q * (size_t)d->head_dim;
        if (!(h->addw = malloc(n * sizeof(float))))
            return -1;
        ref_fill_f32(r, h->addw, n, -1.0, 1.0);
        d->additive_w = h->addw;
    }
    if (d->keep_shape[0]) {
        size_t n = (size_t)d->keep_shape[0] * (size_t)d->keep_shape[1] *
                   (size_t)d->keep_shape[2] * (size_t)d->seq_kv;
        if (!(h->keep = malloc(n)))
            return -1;
        for (size_t e = 0; e < n; e++)
            h->keep[e] = ref_rng_uniform(r, 0.0, 1.0) < 0.3 ? 0 : 1;
        d->keep = h->keep;
    }
    if (gs->with_kv_len & (CASE_KV_START | CASE_Q_START)) { /* left padding */
        if (!(h->starts = malloc(2 * (size_t)d->batch * sizeof(int32_t))))
            return -1;
        for (int b = 0; b < d->batch; b++) {
            h->starts[b] = gen_int(g, 0, d->seq_q);
            h->starts[d->batch + b] = gen_int(g, 0, d->seq_kv);
        }
        if (gs->with_kv_len & CASE_Q_START)
            d->q_start = h->starts;
        if (gs->with_kv_len & CASE_KV_START)
            d->kv_start = h->starts + d->batch;
    }
    return 0;
}

static void fill_input(ref_rng *r, void *p, size_t n, attn_dtype dt, double amp)
{
    if (dt == ATTN_F16)
        ref_fill_f16(r, p, n, -amp, amp);
    else if (dt == ATTN_BF16)
        ref_fill_bf16(r, p, n, -amp, amp);
    else
        ref_fill_f32(r, p, n, -amp, amp);
}

static unsigned char *read_back(cl_mem m, size_t bytes)
{
    unsigned char *p = malloc(bytes);
    REQUIRE(p, "out of memory");
    REQUIRE(clEnqueueReadBuffer(queue, m, CL_TRUE, 0, bytes, p, 0, NULL,
                                NULL) == CL_SUCCESS,
            "cannot read a buffer back");
    return p;
}

/* Checks a call that ran: outputs against the oracle of the inputs as the
 * buffers hold them, every other byte unchanged. */
static void check_ran(const attn_sdpa_desc *d, const placed *t, roots *r)
{
    unsigned char *now[MAX_ROOTS];
    const unsigned char *in[3];
    ref_sdpa_result ref;
    for (int k = 0; k < r->n; k++) {
        now[k] = read_back(r->mem[k], r->bytes[k]);
        for (size_t e = 0; e < r->bytes[k]; e++) {
            int written = 0;
            for (int w = 3; w < N_T; w++)
                written |= t[w].present && t[w].root == k &&
                           e >= t[w].origin + t[w].off &&
                           e < t[w].origin + t[w].off + t[w].bytes;
            if (!written && now[k][e] != r->image[k][e])
                fuzz_fail(__FILE__, __LINE__,
                          "byte %zu of buffer %d changed (not in o or lse)", e,
                          k);
        }
    }
    for (int i = 0; i < 3; i++)
        in[i] = r->image[t[i].root] + t[i].origin + t[i].off;
    REQUIRE(ref_sdpa(d, in[0], in[1], in[2], &ref) == 0, "oracle: no memory");
    REQUIRE(ref_check_sdpa("attn_sdpa_cl_buffers", d, &ref,
                           now[t[3].root] + t[3].origin + t[3].off,
                           t[4].present
                               ? (const float *)(const void *)(now[t[4].root] +
                                                               t[4].origin +
                                                               t[4].off)
                               : NULL,
                           NULL),
            "attn_sdpa_cl_buffers: results differ from the oracle");
    ref_sdpa_free(&ref);
    for (int k = 0; k < r->n; k++)
        free(now[k]);
}

/* The backward of a forward that ran on tensors t (q, k, v, o, lse as the
 * cl_mem m and offsets of b): dO in a buffer of its own; dq, dk, dv at
 * random offsets in one buffer, back to back (or, now and then, dq over
 * q's bytes: refused, nothing written).  The gradients must equal, bit for
 * bit, attn_sdpa_backward's on host copies of the same tensors on the same
 * context (the same kernels); its status too. */
static void bwd_on(gen_src *g, const attn_sdpa_desc *d,
                   const attn_cl_buffers *b, const placed *t, roots *r)
{
    const size_t es = d->dtype == ATTN_F32 ? 4 : 2;
    const size_t n[3] = {t[0].bytes, t[1].bytes, t[2].bytes};
    const int over = gen_chance(g, 12);
    attn_context *bctx = actx_tiled && gen_chance(g, 50) ? actx_tiled : actx;
    attn_cl_grad_buffers gb = ATTN_CL_GRAD_BUFFERS_INIT;
    attn_sdpa_grad hg = ATTN_SDPA_GRAD_INIT;
    unsigned char *in[5], *dout, *host[3], *img, *now;
    size_t at3[3], pos = 0, total;
    cl_mem dm, gm;
    cl_event done = SENTINEL;
    ref_rng rng;
    attn_status s, hs;
    cl_int rc;
    for (int i = 0; i < 5; i++) {
        unsigned char *all =
            read_back(r->mem[root_of(&t[i])], r->bytes[root_of(&t[i])]);
        in[i] = malloc(t[i].bytes);
        REQUIRE(in[i], "out of memory");
        memcpy(in[i], all + t[i].origin + t[i].off, t[i].bytes);
        free(all);
    }
    dout = malloc(t[3].bytes);
    REQUIRE(dout, "out of memory");
    ref_rng_seed(&rng, gen_u64(g));
    fill_input(&rng, dout, t[3].bytes / es, d->dtype, 1.0);
    for (int i = 0; i < 3; i++) {
        pos = up(pos + (size_t)gen_int(g, 0, 5) * es, es);
        at3[i] = pos;
        pos += n[i];
        host[i] = malloc(n[i]);
        REQUIRE(host[i], "out of memory");
    }
    total = up(pos + (size_t)gen_int(g, 0, 32), 4);
    img = malloc(total);
    REQUIRE(img, "out of memory");
    memset(img, FILL, total);
    dm = clCreateBuffer(own, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                        t[3].bytes, dout, &rc);
    REQUIRE(rc == CL_SUCCESS, "clCreateBuffer: %d", (int)rc);
    gm = clCreateBuffer(own, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, total,
                        img, &rc);
    REQUIRE(rc == CL_SUCCESS, "clCreateBuffer: %d", (int)rc);
    gb.q = b->q, gb.k = b->k, gb.v = b->v, gb.o = b->o, gb.lse = b->lse;
    gb.q_offset = b->q_offset, gb.k_offset = b->k_offset;
    gb.v_offset = b->v_offset, gb.o_offset = b->o_offset;
    gb.lse_offset = b->lse_offset;
    gb.d_o = dm;
    gb.dq = gb.dk = gb.dv = gm;
    gb.dq_offset = at3[0] / es, gb.dk_offset = at3[1] / es;
    gb.dv_offset = at3[2] / es;
    if (over) { /* dq over q */
        gb.dq = b->q;
        gb.dq_offset = b->q_offset;
    }
    hg.q = in[0], hg.k = in[1], hg.v = in[2], hg.o = in[3];
    hg.lse = (const float *)(const void *)in[4], hg.d_o = dout;
    hg.dq = host[0], hg.dk = host[1], hg.dv = host[2];
    s = attn_sdpa_backward_cl_buffers(bctx, d, &gb, queue, 0, NULL, &done);
    REQUIRE_STATUS(s, "attn_sdpa_backward_cl_buffers");
    if (over) {
        REQUIRE(s == ATTN_ERR_INVALID_ARGUMENT,
                "attn_sdpa_backward_cl_buffers with dq over q returned %s",
                attn_status_string(s));
        REQUIRE(done == SENTINEL, "*done changed on an error");
        REQUIRE(clFinish(queue) == CL_SUCCESS, "clFinish");
        now = read_back(gm, total);
        REQUIRE(!memcmp(now, img, total), "a refused backward wrote dk, dv");
        free(now);
    } else {
        hs = attn_sdpa_backward(bctx, d, &hg);
        REQUIRE(s == hs,
                "attn_sdpa_backward_cl_buffers: %s, "
                "attn_sdpa_backward on host memory: %s (%s)",
                attn_status_string(s), attn_status_string(hs),
                attn_context_last_error(bctx));
        if (s == ATTN_OK) {
            REQUIRE(done && done != SENTINEL, "no event back");
            REQUIRE(clWaitForEvents(1, &done) == CL_SUCCESS, "event failed");
            clReleaseEvent(done);
            now = read_back(gm, total);
            for (int i = 0; i < 3; i++)
                REQUIRE(!memcmp(now + at3[i], host[i], n[i]),
                        "attn_sdpa_backward_cl_buffers: %s differs from "
                        "attn_sdpa_backward's",
                        i == 0   ? "dq"
                        : i == 1 ? "dk"
                                 : "dv");
            for (size_t e = 0; e < total; e++) {
                int inside = 0;
                for (int i = 0; i < 3; i++)
                    inside |= e >= at3[i] && e < at3[i] + n[i];
                REQUIRE(inside || now[e] == FILL,
                        "byte %zu of the gradients' buffer changed", e);
            }
            free(now);
            n_bwd_ran[bctx == actx_tiled]++;
        } else {
            REQUIRE(done == SENTINEL, "*done changed on an error");
        }
    }
    clReleaseMemObject(dm);
    clReleaseMemObject(gm);
    for (int i = 0; i < 5; i++)
        free(in[i]);
    for (int i = 0; i < 3; i++)
        free(host[i]);
    free(dout);
    free(img);
}

static int call_on(gen_src *g, attn_sdpa_desc *d, const gen_sdpa *gs)
{
    const size_t es = d->dtype == ATTN_F32 ? 4 : 2;
    const size_t rows =
                     (size_t)d->batch * (size_t)d->heads_q * (size_t)d->seq_q,
                 kvrows =
                     (size_t)d->batch * (size_t)d->heads_kv * (size_t)d->seq_kv;
    placed t[N_T];
    roots r;
    cl_mem sub[N_T] = {NULL, NULL, NULL, NULL, NULL};
    attn_cl_buffers b;
    cl_event done = SENTINEL;
    ref_rng rng;
    attn_status s;
    int refuse;
    memset(t, 0, sizeof t);
    t[0].bytes = rows * (size_t)d->head_dim * es;
    t[1].bytes = kvrows * (size_t)d->head_dim * es;
    t[2].bytes = kvrows * (size_t)d->head_dim_v * es;
    t[3].bytes = rows * (size_t)d->head_dim_v * es;
    t[4].bytes = rows * sizeof(float);
    for (int i = 0; i < N_T; i++) {
        t[i].present = i < 4 || gs->with_lse;
        t[i].elem = i < 4 ? es : sizeof(float);
    }
    refuse = lay_out(g, t, &r);
    ref_rng_seed(&rng, gen_u64(g));
    /* The roots, the inputs written in order (the last one wins where they
     * overlap), then the buffers. */
    for (int k = 0; k <= MAX_ROOTS; k++) {
        if (k >= r.n && k < MAX_ROOTS)
            continue;
        if (k == MAX_ROOTS && !r.bytes[k])
            continue;
        r.image[k] = malloc(r.bytes[k]);
        REQUIRE(r.image[k], "out of memory");
        memset(r.image[k], FILL, r.bytes[k]);
    }
    for (int i = 0; i < 3; i++) {
        void *x = malloc(t[i].bytes);
        REQUIRE(x, "out of memory");
        fill_input(&rng, x, t[i].bytes / es, d->dtype, gs->qk_amp);
        /* (not when it runs past its buffer: that call is refused) */
        if (t[i].origin + t[i].off + t[i].bytes <= r.bytes[root_of(&t[i])])
            memcpy(r.image[root_of(&t[i])] + t[i].origin + t[i].off, x,
                   t[i].bytes);
        free(x);
    }
    for (int k = 0; k <= MAX_ROOTS; k++) {
        cl_int rc;
        if (!r.image[k])
            continue;
        r.mem[k] = clCreateBuffer(k == MAX_ROOTS ? foreign : own,
                                  CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                                  r.bytes[k], r.image[k], &rc);
        REQUIRE(rc == CL_SUCCESS, "clCreateBuffer: %d", (int)rc);
    }
    for (int i = 0; i < N_T; i++) {
        cl_buffer_region reg = {t[i].origin, t[i].mem};
        cl_int rc;
        if (!t[i].present || !t[i].sub)
            continue;
        sub[i] = clCreateSubBuffer(r.mem[root_of(&t[i])], CL_MEM_READ_WRITE,
                                   CL_BUFFER_CREATE_TYPE_REGION, &reg, &rc);
        REQUIRE(rc == CL_SUCCESS, "clCreateSubBuffer: %d", (int)rc);
    }
    memset(&b, 0, sizeof b);
    {
        cl_mem *m[N_T] = {&b.q, &b.k, &b.v, &b.o, &b.lse};
        size_t *o[N_T] = {&b.q_offset, &b.k_offset, &b.v_offset, &b.o_offset,
                          &b.lse_offset};
        for (int i = 0; i < N_T; i++)
            if (t[i].present) {
                *m[i] = t[i].sub ? sub[i] : r.mem[root_of(&t[i])];
                *o[i] = t[i].off / t[i].elem;
            }
    }
    snprintf(fuzz_current, sizeof fuzz_current,
             "attn_sdpa_cl_buffers: b %d hq %d hkv %d sq %d skv %d d %d dv %d "
             "dtype %d; q %d/%zu+%zu k %d/%zu+%zu v %d/%zu+%zu o %d/%zu+%zu "
             "lse %d/%zu+%zu (root/origin+offset, bytes); refuse %d",
             d->batch, d->heads_q, d->heads_kv, d->seq_q, d->seq_kv,
             d->head_dim, d->head_dim_v, (int)d->dtype, t[0].root, t[0].origin,
             t[0].off, t[1].root, t[1].origin, t[1].off, t[2].root, t[2].origin,
             t[2].off, t[3].root, t[3].origin, t[3].off,
             t[4].present ? t[4].root : -9, t[4].origin, t[4].off, refuse);
    s = attn_sdpa_cl_buffers(actx, d, &b, queue, 0, NULL, &done);
    REQUIRE_STATUS(s, "attn_sdpa_cl_buffers");
    if (refuse) {
        REQUIRE(s == ATTN_ERR_INVALID_ARGUMENT,
                "attn_sdpa_cl_buffers returned %s, must refuse",
                attn_status_string(s));
        REQUIRE(done == SENTINEL, "*done changed on an error");
        REQUIRE(attn_context_last_error(actx)[0], "refused without a message");
        REQUIRE(clFinish(queue) == CL_SUCCESS, "clFinish");
        for (int k = 0; k <= MAX_ROOTS; k++) {
            unsigned char *now;
            if (!r.mem[k] || k == MAX_ROOTS)
                continue;
            now = read_back(r.mem[k], r.bytes[k]);
            REQUIRE(!memcmp(now, r.image[k], r.bytes[k]),
                    "a refused call wrote buffer %d", k);
            free(now);
        }
    } else {
        REQUIRE(s == ATTN_OK || s == ATTN_ERR_UNSUPPORTED,
                "attn_sdpa_cl_buffers: %s (%s)", attn_status_string(s),
                attn_context_last_error(actx));
        if (s == ATTN_OK) {
            REQUIRE(done && done != SENTINEL, "no event back");
            REQUIRE(clWaitForEvents(1, &done) == CL_SUCCESS, "event failed");
            clReleaseEvent(done);
            check_ran(d, t, &r);
            if (t[4].present)
                bwd_on(g, d, &b, t, &r);
        } else {
            REQUIRE(done == SENTINEL, "*done changed on an error");
        }
    }
    for (int i = 0; i < N_T; i++)
        if (sub[i])
            clReleaseMemObject(sub[i]);
    for (int k = 0; k <= MAX_ROOTS; k++) {
        if (r.mem[k])
            clReleaseMemObject(r.mem[k]);
        free(r.image[k]);
    }
    return refuse ? 0 : 1;
}

static int sdpa_cl(gen_src *g, int warm, attn_dtype dt)
{
    static const gen_limits lim = {2, 2, 2, 9, 20, 24, 0, 0};
    gen_sdpa gs;
    host_in h;
    ref_rng rng;
    int rc;
    gen_sdpa_shape(g, &lim, &gs);
    gen_sdpa_plain(&gs); /* cl_buffers: strides not modelled here */
    if (warm) {
        gs.d.dtype = dt;
        gs.with_lse = 1;
    }
    ref_rng_seed(&rng, gen_u64(g));
    REQUIRE(host_inputs(g, &gs, &gs.d, &rng, &h) == 0, "out of memory");
    rc = call_on(g, &gs.d, &gs);
    free(h.bias);
    free(h.addw);
    free(h.kv_len);
    free(h.starts);
    free(h.keep);
    return rc;
}

static attn_status warm_up(attn_dtype dt)
{
    gen_src g;
    gen_from_bytes(&g, NULL, 0); /* every choice the simplest */
    sdpa_cl(&g, 1, dt);
    return ATTN_OK;
}

void fuzz_cl_counts(unsigned long *bwd_auto, unsigned long *bwd_tiled)
{
    *bwd_auto = n_bwd_ran[0];
    *bwd_tiled = n_bwd_ran[1];
}

int fuzz_cl_buffers(gen_src *g)
{
    if (!actx)
        return -1;
    return sdpa_cl(g, 0, ATTN_F32);
}

/* ---- contexts under the environment ------------------------------------ */

static char base[64];
static char long_path[1200];

static int remove_one(const char *path, const struct stat *st, int flag,
                      struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

/* At exit: the folders of env_init and whatever the library put there. */
static void env_remove(void)
{
    if (base[0])
        nftw(base, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The folders the environment inputs point at, made once. */
static int env_init(void)
{
    char p[128];
    if (base[0])
        return 0;
    snprintf(base, sizeof base, "/tmp/libattn-fuzz-env-%ld", (long)getpid());
    if (mkdir(base, 0700) != 0 && errno != EEXIST)
        return -1;
    atexit(env_remove);
    static const char *const dirs[] = {"prof", "fifo",  "empty",
                                       "home", "cache", "open"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", base, dirs[i]);
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            return -1;
    }
    snprintf(p, sizeof p, "%s/open", base);
    chmod(p, 0777); /* writable by all: the cache refuses it */
    snprintf(p, sizeof p, "%s/fifo/x.prof", base);
    if (mkfifo(p, 0600) != 0 && errno != EEXIST)
        return -1;
    {
        char target[128];
        snprintf(target, sizeof target, "%s/cache", base);
        snprintf(p, sizeof p, "%s/link", base);
        if (symlink(target, p) != 0 && errno != EEXIST)
            return -1;
    }
    /* Longer than a cache path may be. */
    snprintf(long_path, sizeof long_path, "%s/", base);
    while (strlen(long_path) < 1100)
        strcat(long_path, "deep/");
    return 0;
}

/* A profile made of the input's bytes: real keys with odd values, section
 * headers, raw bytes. */
static void write_profile(gen_src *g)
{
    static const char *const lines[] = {
        "[default]\n",
        "[kind \"cpu\"]\n",
        "[device \"pthread\"]\n",
        "[vendor \"\"]\n",
        "queues = 2\n",
        "queues = 0\n",
        "path = fused\n",
        "path.order = tiled decode fused unfused\n",
        "path.order = nosuch\n",
        "staging = pinned\n",
        "unfused.sc_tq = 64\n",
        "fused.vw = 3\n",
        "build_options = -cl-mad-enable\n",
        "build_options = -DATTN_F16=1 -cl-fast-relaxed-math\n",
        "build_options = \"-I/tmp -cl-nv-maxrregcount=32 -D X\"\n",
        "build_options = -cl-std=CL3.0 -cl-denorms-are-zero\n",
        "quirk.spin_wait = yes\n",
        "weight = 7\n",
        "native_beats_opencl = 0\n",
        "bogus\n"};
    char path[128];
    FILE *f;
    snprintf(path, sizeof path, "%s/prof/f.prof", base);
    if (!(f = fopen(path, "w")))
        return;
    for (int n = gen_int(g, 0, 8); n > 0; n--) {
        if (gen_chance(g, 15)) {
            for (int c = gen_int(g, 1, 40); c > 0; c--)
                fputc(gen_u8(g), f);
            fputc('\n', f);
        } else {
            fputs(lines[gen_int(g, 0, sizeof lines / sizeof lines[0] - 1)], f);
        }
    }
    fclose(f);
}

/* The variables this input sets, and their values before. */
static const char *const vars[] = {"ATTN_DEVICE",    "ATTN_PLATFORM_DIR",
                                   "ATTN_CACHE_DIR", "XDG_CACHE_HOME",
                                   "HOME",           "ATTN_TEST_DRIVER_CACHE"};
#define N_VARS (sizeof vars / sizeof vars[0])

attn_status fuzz_env_context(gen_src *g, attn_log_fn log)
{
    static const char *const devices[] = {"auto", "native", "cpu", "all",
                                          ",",    " , ",    NULL};
    char *saved[N_VARS], spec[96], dir[128], cache[128];
    const char *cache_choice;
    attn_options o;
    attn_context *ctx = NULL;
    attn_status s;
    int env_device;
    if (env_init() != 0)
        return ATTN_ERR_IO;
    for (size_t i = 0; i < N_VARS; i++) {
        const char *v = getenv(vars[i]);
        saved[i] = v ? strdup(v) : NULL;
    }
    snprintf(dir, sizeof dir, "%s/home", base);
    setenv("HOME", dir, 1); /* never the real ~/.cache */
    unsetenv("XDG_CACHE_HOME");
    /* The default folder is not used on a driver that keeps its kernels
     * itself (PoCL): a test build (scripts/fuzz.sh builds one) says it
     * does not, so that the folder's rules are fuzzed there too. */
    setenv("ATTN_TEST_DRIVER_CACHE", "0", 1);
    unsetenv("ATTN_CACHE_DIR");
    env_device = gen_chance(g, 40);
    if (env_device) {
        gen_device_spec(g, spec, sizeof spec);
        setenv("ATTN_DEVICE", spec, 1);
    } else {
        unsetenv("ATTN_DEVICE");
    }
    switch (gen_int(g, 0, 4)) {
    case 0:
        unsetenv("ATTN_PLATFORM_DIR");
        break;
    case 1:
        write_profile(g);
        snprintf(dir, sizeof dir, "%s/prof", base);
        setenv("ATTN_PLATFORM_DIR", dir, 1);
        break;
    case 2:
        snprintf(dir, sizeof dir, "%s/fifo", base);
        setenv("ATTN_PLATFORM_DIR", dir, 1);
        break;
    case 3:
        snprintf(dir, sizeof dir, "%s/empty", base);
        setenv("ATTN_PLATFORM_DIR", dir, 1);
        break;
    default:
        setenv("ATTN_PLATFORM_DIR", "/nonexistent/platforms", 1);
        break;
    }
    {
        static const char *const leaf[] = {"cache", "open", "link",
                                           "missing/new"};
        int c = gen_int(g, 0, 6);
        snprintf(cache, sizeof cache, "%s/%s", base, leaf[c % 4]);
        cache_choice = c < 4 ? cache : c == 4 ? long_path : c == 5 ? "" : NULL;
    }
    attn_options_init(&o);
    o.device = devices[gen_int(g, 0, 6)];
    o.allow_fallback = gen_int(g, 0, 1);
    o.log = log;
    o.log_level = gen_int(g, 1, 4);
    switch (gen_int(g, 0, 2)) {
    case 0:
        o.cache_dir = cache_choice;
        break;
    case 1:
        if (cache_choice)
            setenv("ATTN_CACHE_DIR", cache_choice, 1);
        break;
    default:
        /* The default folder under XDG_CACHE_HOME: a relative one is
         * ignored (HOME's is used). */
        setenv("XDG_CACHE_HOME", gen_chance(g, 50) ? "relative/cache" : cache,
               1);
        break;
    }
    snprintf(fuzz_current, sizeof fuzz_current,
             "attn_context_create: device %s, ATTN_DEVICE %s, "
             "ATTN_PLATFORM_DIR %s, ATTN_CACHE_DIR %s, XDG_CACHE_HOME %s, "
             "cache_dir %.80s",
             o.device ? o.device : "NULL",
             env_device ? getenv("ATTN_DEVICE") : "(unset)",
             getenv("ATTN_PLATFORM_DIR") ? getenv("ATTN_PLATFORM_DIR")
                                         : "(unset)",
             getenv("ATTN_CACHE_DIR") ? "set" : "(unset)",
             getenv("XDG_CACHE_HOME") ? getenv("XDG_CACHE_HOME") : "(unset)",
             o.cache_dir ? o.cache_dir : "NULL");
    s = attn_context_create(&o, &ctx);
    REQUIRE_STATUS(s, "attn_context_create");
    if (s != ATTN_OK) {
        REQUIRE(!ctx, "*out set on an error");
        REQUIRE(attn_last_error()[0], "failed without a message");
    } else {
        attn_device_info info = ATTN_DEVICE_INFO_INIT;
        REQUIRE(attn_context_device(ctx, &info) == ATTN_OK, "device info");
        attn_context_destroy(ctx);
    }
    /* Empty device lists are errors, wherever they come from. */
    if (!env_device && o.device &&
        (!strcmp(o.device, ",") || !strcmp(o.device, " , ")))
        REQUIRE(s == ATTN_ERR_INVALID_ARGUMENT, "an empty list was accepted");
    if (!env_device && o.device && !strcmp(o.device, "native"))
        REQUIRE(s == ATTN_OK, "native refused: %s", attn_last_error());
    for (size_t i = 0; i < N_VARS; i++) {
        if (saved[i])
            setenv(vars[i], saved[i], 1);
        else
            unsetenv(vars[i]);
        free(saved[i]);
    }
    return s;
}
