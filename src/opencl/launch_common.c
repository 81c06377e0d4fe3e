/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the OpenCL launchers share: tensor checks, host-input copies, the
 * gate of a call, kernel arguments and event chains, program pieces.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/memsize.h"
#include "opencl/launch_common.h"

/* Checks that buffer m holds count elements of elem bytes at offset off. */
static attn_status check_buffer(cl_mem m, const char *name, size_t off,
                                size_t count, size_t elem, attn_err *err)
{
    size_t size = 0, need;
    cl_int rc = clGetMemObjectInfo(m, CL_MEM_SIZE, sizeof size, &size, NULL);
    if (rc != CL_SUCCESS)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "buffer %s is not a valid cl_mem: %s", name,
                         attn_cl_error_name(rc));
    if (count > SIZE_MAX - off || !attn_mul_size(&need, off + count, elem))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "the size of %s overflows", name);
    if (need > size)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "buffer %s holds %zu bytes; the tensor at offset %zu "
                         "needs %zu",
                         name, size, off, need);
    return ATTN_OK;
}

attn_status attn_cl_check_call(const char *fn, const attn_cl_runtime *rt,
                               const attn_sdpa_desc *d,
                               const attn_cl_tensors *t, cl_command_queue queue,
                               cl_uint n_wait, const cl_event *wait,
                               cl_event *done, attn_err *err)
{
    (void)done;
    if (!rt || !d || !t || !queue || !t->q || !t->k || !t->v || !t->o ||
        (n_wait > 0 && !wait))
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT, "%s: NULL argument",
                         fn);
    if ((unsigned)d->dtype > (unsigned)ATTN_BF16)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "dtype %d is not an attn_dtype", (int)d->dtype);
    return ATTN_OK;
}

attn_status attn_cl_check_tensors(const attn_sdpa_desc *d,
                                  const attn_cl_tensors *t, attn_err *err)
{
    const size_t elem = d->dtype == ATTN_F32 ? sizeof(float) : 2;
    const size_t bq = (size_t)d->batch * (size_t)d->heads_q,
                 bkv = (size_t)d->batch * (size_t)d->heads_kv;
    const size_t fq[] = {bq, (size_t)d->seq_q, (size_t)d->head_dim};
    const size_t fk[] = {bkv, (size_t)d->seq_kv, (size_t)d->head_dim};
    const size_t fv[] = {bkv, (size_t)d->seq_kv, (size_t)d->head_dim_v};
    const size_t fo[] = {bq, (size_t)d->seq_q, (size_t)d->head_dim_v};
    size_t n[5];
    attn_status s;
    if (!attn_mul_sizes(&n[0], 3, fq) || !attn_mul_sizes(&n[1], 3, fk) ||
        !attn_mul_sizes(&n[2], 3, fv) || !attn_mul_sizes(&n[3], 3, fo) ||
        !attn_mul_size(&n[4], bq, (size_t)d->seq_q))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "the tensor sizes overflow");
    /* strided tensors take the extent they span (d is valid) */
    if (attn_sdpa_strided(d))
        for (int i = 0; i < 4; i++)
            n[i] = attn_tensor_extent(d, ATTN_T_Q + i);
    if ((s = check_buffer(t->q, "q", t->q_off, n[0], elem, err)) ||
        (s = check_buffer(t->k, "k", t->k_off, n[1], elem, err)) ||
        (s = check_buffer(t->v, "v", t->v_off, n[2], elem, err)) ||
        (s = check_buffer(t->o, "o", t->o_off, n[3], elem, err)))
        return s;
    if (t->lse)
        return check_buffer(t->lse, "lse", t->lse_off, n[4], sizeof(float),
                            err);
    return ATTN_OK;
}

/* Where one tensor of a call lives: bytes [lo, hi) of buffer root (the
 * parent of a sub-buffer, else the buffer itself), and of host memory
 * [host_lo, host_hi) when the buffer uses the caller's host pointer
 * (host_lo 0 otherwise). */
typedef struct placed {
    const char *name;
    cl_mem root;
    size_t lo, hi;
    uintptr_t host_lo, host_hi;
} placed;

static attn_status place(const attn_cl_runtime *rt, cl_mem m, const char *name,
                         size_t off_bytes, size_t bytes, placed *p,
                         attn_err *err)
{
    cl_context c = NULL;
    cl_mem parent = NULL;
    cl_mem_flags flags = 0;
    size_t origin = 0;
    void *host = NULL;
    memset(p, 0, sizeof *p);
    p->name = name;
    if (clGetMemObjectInfo(m, CL_MEM_CONTEXT, sizeof c, &c, NULL) !=
            CL_SUCCESS ||
        clGetMemObjectInfo(m, CL_MEM_ASSOCIATED_MEMOBJECT, sizeof parent,
                           &parent, NULL) != CL_SUCCESS ||
        clGetMemObjectInfo(m, CL_MEM_OFFSET, sizeof origin, &origin, NULL) !=
            CL_SUCCESS ||
        clGetMemObjectInfo(m, CL_MEM_FLAGS, sizeof flags, &flags, NULL) !=
            CL_SUCCESS)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "buffer %s is not a valid cl_mem", name);
    if (c != rt->context)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "buffer %s belongs to another OpenCL context than "
                         "the libattn context's",
                         name);
    p->root = parent ? parent : m;
    if (!parent)
        origin = 0;
    /* Sizes were checked against the buffer: no overflow below. */
    p->lo = origin + off_bytes;
    p->hi = p->lo + bytes;
    if ((flags & CL_MEM_USE_HOST_PTR) &&
        clGetMemObjectInfo(m, CL_MEM_HOST_PTR, sizeof host, &host, NULL) ==
            CL_SUCCESS &&
        host) {
        /* A sub-buffer reports its own host pointer (parent's + origin). */
        p->host_lo = (uintptr_t)host + off_bytes;
        p->host_hi = p->host_lo + bytes;
    }
    return ATTN_OK;
}

static int meet(const placed *a, const placed *b)
{
    if (a->hi == a->lo || b->hi == b->lo)
        return 0;
    if (a->root == b->root && a->lo < b->hi && b->lo < a->hi)
        return 1;
    return a->host_lo && b->host_lo && a->host_lo < b->host_hi &&
           b->host_lo < a->host_hi;
}

attn_status attn_cl_check_aliasing(const attn_cl_runtime *rt,
                                   const attn_sdpa_desc *d,
                                   const attn_cl_tensors *t, attn_err *err)
{
    const size_t elem = d->dtype == ATTN_F32 ? sizeof(float) : 2;
    const size_t rows =
        (size_t)d->batch * (size_t)d->heads_q * (size_t)d->seq_q;
    /* q, k, v, o (the extents their strides span), lse; q, k and v are
     * only read and may share memory, o and lse are written */
    const attn_cl_span sp[5] = {
        {t->q, "q", t->q_off, attn_tensor_extent(d, ATTN_T_Q), elem, 0},
        {t->k, "k", t->k_off, attn_tensor_extent(d, ATTN_T_K), elem, 0},
        {t->v, "v", t->v_off, attn_tensor_extent(d, ATTN_T_V), elem, 0},
        {t->o, "o", t->o_off, attn_tensor_extent(d, ATTN_T_O), elem, 1},
        {t->lse, "lse", t->lse_off, rows, sizeof(float), 1}};
    return attn_cl_check_spans(rt, sp, t->lse ? 5 : 4, err);
}

attn_status attn_cl_check_spans(const attn_cl_runtime *rt,
                                const attn_cl_span *sp, int n, attn_err *err)
{
    placed *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    attn_status s = ATTN_OK;
    if (!p)
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < n && s == ATTN_OK; i++)
        if ((s = check_buffer(sp[i].mem, sp[i].name, sp[i].off, sp[i].count,
                              sp[i].elem, err)) == ATTN_OK)
            s = place(rt, sp[i].mem, sp[i].name, sp[i].off * sp[i].elem,
                      sp[i].count * sp[i].elem, &p[i], err);
    /* each pair with a written span once, the earlier one named first */
    for (int w = 0; w < n && s == ATTN_OK; w++)
        for (int i = 0; i < n && s == ATTN_OK && sp[w].written; i++) {
            const placed *a = i < w ? &p[i] : &p[w], *b = i < w ? &p[w] : &p[i];
            if (i == w || (i > w && sp[i].written) || !meet(a, b))
                continue;
            s = attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                          "%s and %s overlap in %s (%s: bytes %zu..%zu, %s: "
                          "bytes %zu..%zu); an output may share memory with "
                          "no other tensor",
                          a->name, b->name,
                          a->root == b->root ? "one OpenCL buffer"
                                             : "the host memory of two "
                                               "buffers",
                          a->name, a->lo, a->hi, b->name, b->lo, b->hi);
        }
    free(p);
    return s;
}

/* A read-only device copy of host data; *out stays NULL when p is NULL. */
static attn_status host_copy(attn_cl_runtime *rt, const void *p, size_t n,
                             size_t elem, const char *name, cl_mem *out,
                             attn_err *err)
{
    size_t bytes;
    cl_int rc;
    *out = NULL;
    if (!p)
        return ATTN_OK;
    if (!attn_mul_size(&bytes, n, elem))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "the size of %s overflows", name);
    *out = ATTN_CL(clCreateBuffer)(rt->context,
                                   CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                   bytes, (void *)p, &rc);
    if (rc != CL_SUCCESS) {
        *out = NULL;
        return attn_fail(err, attn_cl_status(rc),
                         "cannot copy %s to the device (%zu bytes): %s", name,
                         bytes, attn_cl_error_name(rc));
    }
    return ATTN_OK;
}

/* Elements of d's mask.bias (0 without one); 0 on overflow. */
static int bias_elems(const attn_sdpa_desc *d, size_t *n)
{
    return attn_bias_elems(d, n);
}

int attn_cl_input_sizes(const attn_sdpa_desc *d, size_t bytes[3])
{
    size_t n_bias = 0;
    bytes[0] = bytes[1] = bytes[2] = 0;
    if (!bias_elems(d, &n_bias) ||
        (d->mask.bias && !attn_mul_size(&bytes[0], n_bias, sizeof(float))))
        return 0;
    if (d->mask.kv_len)
        bytes[1] = (size_t)d->batch * sizeof(int32_t);
    if (d->score == ATTN_SCORE_ADDITIVE && d->additive_w &&
        !attn_mul_size(&bytes[2], (size_t)d->heads_q * (size_t)d->head_dim,
                       sizeof(float)))
        return 0;
    return 1;
}

uint64_t attn_cl_add_bytes(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

uint64_t attn_cl_input_bytes(const attn_sdpa_desc *d, uint64_t *largest)
{
    size_t n_bias = 0;
    uint64_t part[3] = {0, 0, 0}, total = 0, big = 0;
    if (!bias_elems(d, &n_bias) || n_bias > UINT64_MAX / sizeof(float))
        part[0] = UINT64_MAX;
    else if (d->mask.bias)
        part[0] = (uint64_t)n_bias * sizeof(float);
    if (d->mask.kv_len)
        part[1] = (uint64_t)d->batch * sizeof(int32_t);
    if (d->score == ATTN_SCORE_ADDITIVE && d->additive_w)
        part[2] = (uint64_t)d->heads_q * (uint64_t)d->head_dim * sizeof(float);
    for (int i = 0; i < 3; i++) {
        total = attn_cl_add_bytes(total, part[i]);
        big = part[i] > big ? part[i] : big;
    }
    if (largest)
        *largest = big;
    return total;
}

attn_status attn_cl_check_fit(const attn_cl_runtime *rt, const char *what,
                              uint64_t total, uint64_t largest, attn_err *err)
{
    uint64_t global_mem = 0, max_alloc = 0;
    char need[ATTN_BYTES_TEXT_MAX], have[ATTN_BYTES_TEXT_MAX];
    attn_cl_mem_limits(rt, &global_mem, &max_alloc);
    if (max_alloc && largest > max_alloc)
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "%s needs a buffer of %s on %s, whose largest "
                         "allocation is %s",
                         what, attn_bytes_text(need, sizeof need, largest),
                         rt->info.name,
                         attn_bytes_text(have, sizeof have, max_alloc));
    if (global_mem && total > global_mem)
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "%s needs %s on %s, which has %s of global memory",
                         what, attn_bytes_text(need, sizeof need, total),
                         rt->info.name,
                         attn_bytes_text(have, sizeof have, global_mem));
    return ATTN_OK;
}

attn_status attn_cl_check_launch_fit(const attn_cl_runtime *rt,
                                     const attn_sdpa_desc *d, uint64_t scratch,
                                     const char *what, attn_err *err)
{
    uint64_t largest = 0, in = attn_cl_input_bytes(d, &largest);
    return attn_cl_check_fit(rt, what, attn_cl_add_bytes(in, scratch),
                             scratch > largest ? scratch : largest, err);
}

attn_status attn_cl_copy_inputs(attn_cl_runtime *rt, const attn_sdpa_desc *d,
                                cl_mem *bias, cl_mem *kv_len, cl_mem *addw,
                                attn_err *err)
{
    size_t n_bias = 0;
    attn_status s;
    if (!bias_elems(d, &n_bias))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "the size of mask.bias overflows");
    if ((s = host_copy(rt, d->mask.bias, n_bias, sizeof(float), "mask.bias",
                       bias, err)) ||
        (s = host_copy(rt, d->mask.kv_len, (size_t)d->batch, sizeof(int32_t),
                       "mask.kv_len", kv_len, err)) ||
        (s = host_copy(rt,
                       d->score == ATTN_SCORE_ADDITIVE ? d->additive_w : NULL,
                       (size_t)d->heads_q * (size_t)d->head_dim, sizeof(float),
                       "additive_w", addw, err)))
        return s;
    return ATTN_OK;
}

void attn_cl_release_mem(cl_mem m)
{
    if (m)
        clReleaseMemObject(m);
}

/* The fills of pad_rows: n elements of the pattern's size from element
 * off of m, each behind wl; its event appended to ev (counted only, with
 * ev NULL). */
typedef struct pad_fills {
    attn_cl_runtime *rt;
    cl_command_queue q;
    cl_uint n_wl;
    const cl_event *wl;
    cl_event *ev;
    size_t n;
} pad_fills;

static attn_status pad_fill(pad_fills *f, cl_mem m, const void *pattern,
                            size_t size, size_t off, size_t n, attn_err *err)
{
    cl_int rc;
    if (!f->ev) {
        f->n++;
        return ATTN_OK;
    }
    rc = ATTN_CL(clEnqueueFillBuffer)(f->q, m, pattern, size, off * size,
                                      n * size, f->n_wl, f->wl, &f->ev[f->n]);
    if (rc != CL_SUCCESS)
        return attn_fail(err, attn_cl_status(rc),
                         "enqueueing the fill of q_start's padding rows on %s "
                         "failed: %s (%d)",
                         f->rt->info.name, attn_cl_error_name(rc), (int)rc);
    f->n++;
    return ATTN_OK;
}

/* Every fill of attn_cl_pad_rows through f. */
static attn_status pad_all(pad_fills *f, const attn_sdpa_desc *d,
                           const int32_t *q_start, cl_mem o, size_t o_off,
                           cl_mem lse, size_t lse_off, size_t lse_pitch,
                           attn_err *err)
{
    const size_t es = d->dtype == ATTN_F32 ? 4 : 2, H = (size_t)d->heads_q,
                 S = (size_t)d->seq_q, dv = (size_t)d->head_dim_v;
    const uint32_t zero = 0;
    const float neg_inf = -INFINITY;
    size_t st[3];
    attn_status s = ATTN_OK;
    attn_tensor_strides(d, ATTN_T_O, st);
    for (size_t b = 0; b < (size_t)d->batch && s == ATTN_OK; b++) {
        const size_t p = q_start[b] <= 0          ? 0
                         : (size_t)q_start[b] < S ? (size_t)q_start[b]
                                                  : S;
        const size_t ob = o_off + b * st[0];
        if (!p)
            continue;
        if (o && st[2] == dv) /* a head's rows lie back to back */
            for (size_t h = 0; h < H && s == ATTN_OK; h++)
                s = pad_fill(f, o, &zero, es, ob + h * st[1], p * dv, err);
        else if (o && st[1] == dv) /* a row's heads lie back to back */
            for (size_t i = 0; i < p && s == ATTN_OK; i++)
                s = pad_fill(f, o, &zero, es, ob + i * st[2], H * dv, err);
        else if (o)
            for (size_t h = 0; h < H && s == ATTN_OK; h++)
                for (size_t i = 0; i < p && s == ATTN_OK; i++)
                    s = pad_fill(f, o, &zero, es, ob + h * st[1] + i * st[2],
                                 dv, err);
        for (size_t h = 0; lse && h < H && s == ATTN_OK; h++)
            s = pad_fill(f, lse, &neg_inf, sizeof neg_inf,
                         lse_off + (b * H + h) * lse_pitch, p, err);
    }
    return s;
}

attn_status attn_cl_pad_rows(attn_cl_runtime *rt, cl_command_queue q,
                             const attn_sdpa_desc *d, const int32_t *q_start,
                             cl_mem o, size_t o_off, cl_mem lse, size_t lse_off,
                             size_t lse_pitch, cl_uint n_wl, const cl_event *wl,
                             cl_event *done, attn_err *err)
{
    pad_fills f = {rt, q, n_wl, wl, NULL, 0};
    attn_status s;
    cl_int rc;
    *done = NULL;
    if (!lse_pitch)
        lse_pitch = (size_t)d->seq_q;
    pad_all(&f, d, q_start, o, o_off, lse, lse_off, lse_pitch,
            err); /* counts */
    if (f.n && !(f.ev = malloc(f.n * sizeof *f.ev)))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the events of %zu fills", f.n);
    f.n = 0;
    s = pad_all(&f, d, q_start, o, o_off, lse, lse_off, lse_pitch, err);
    if (s == ATTN_OK) {
        rc = f.n ? clEnqueueMarkerWithWaitList(q, (cl_uint)f.n, f.ev, done)
                 : clEnqueueMarkerWithWaitList(q, n_wl, wl, done);
        if (rc != CL_SUCCESS) {
            *done = NULL;
            s = attn_fail(err, attn_cl_status(rc),
                          "enqueueing the end of q_start's fills on %s "
                          "failed: %s (%d)",
                          rt->info.name, attn_cl_error_name(rc), (int)rc);
        }
    }
    for (size_t i = 0; i < f.n; i++)
        clReleaseEvent(f.ev[i]);
    free(f.ev);
    return s;
}

attn_status attn_cl_gate_open(attn_cl_runtime *rt, int own, cl_uint n_wait,
                              const cl_event *wait, attn_cl_gate *g,
                              attn_err *err)
{
    cl_int rc;
    g->own = own;
    g->user = clCreateUserEvent(rt->context, &rc);
    if (rc != CL_SUCCESS) {
        g->user = NULL;
        return attn_fail(err, attn_cl_status(rc),
                         "clCreateUserEvent failed: %s",
                         attn_cl_error_name(rc));
    }
    if (!(g->wl = malloc(((size_t)n_wait + 1) * sizeof *g->wl)))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY, "out of memory");
    if (n_wait)
        memcpy(g->wl, wait, (size_t)n_wait * sizeof *g->wl);
    g->wl[n_wait] = g->user;
    return ATTN_OK;
}

attn_status attn_cl_gate_close(attn_status s, attn_cl_gate *g, cl_event last,
                               cl_event *done, attn_err *err)
{
    cl_int rc;
    if (s == ATTN_OK && g->user &&
        (rc = clSetUserEventStatus(g->user, CL_COMPLETE)) != CL_SUCCESS)
        s = attn_fail(err, ATTN_ERR_DEVICE, "clSetUserEventStatus failed: %s",
                      attn_cl_error_name(rc));
    if (g->user && s != ATTN_OK)
        /* Terminates what was enqueued, or lets it run on the library's
         * own buffers. */
        clSetUserEventStatus(g->user, g->own ? CL_COMPLETE : -1);
    ATTN_FAULT_DELIVER(0);
    if (s == ATTN_OK && done)
        *done = last;
    else if (last)
        clReleaseEvent(last);
    free(g->wl);
    if (g->user)
        clReleaseEvent(g->user);
    memset(g, 0, sizeof *g);
    return s;
}
