/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Random problems for the fuzzer and the soak program (see attn_gen.h).
 */
#include "attn_gen.h"

#include <string.h>

void gen_from_bytes(gen_src *g, const uint8_t *data, size_t size)
{
    memset(g, 0, sizeof *g);
    g->data = data;
    g->size = data ? size : 0;
    /* A PRNG-less byte source must not read anything through data. */
    if (!g->data)
        g->data = (const uint8_t *)"";
}

void gen_from_seed(gen_src *g, uint64_t seed)
{
    memset(g, 0, sizeof *g);
    g->state = seed;
}

size_t gen_left(const gen_src *g)
{
    return g->data ? g->size - g->pos : SIZE_MAX;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint8_t gen_u8(gen_src *g)
{
    if (!g->data)
        return (uint8_t)(splitmix(&g->state) >> 56);
    return g->pos < g->size ? g->data[g->pos++] : 0;
}

/* n bytes, little-endian (n <= 8). */
static uint64_t bytes(gen_src *g, int n)
{
    uint64_t v = 0;
    if (!g->data)
        return splitmix(&g->state) >> (64 - 8 * n);
    for (int i = 0; i < n; i++)
        v |= (uint64_t)gen_u8(g) << (8 * i);
    return v;
}

uint32_t gen_u32(gen_src *g)
{
    return (uint32_t)bytes(g, 4);
}

uint64_t gen_u64(gen_src *g)
{
    return bytes(g, 8);
}

int gen_int(gen_src *g, int lo, int hi)
{
    uint64_t span, v;
    if (hi <= lo)
        return lo;
    span = (uint64_t)((int64_t)hi - (int64_t)lo) + 1;
    /* As few fuzzer bytes as the span needs. */
    v = span <= 0x100     ? bytes(g, 1)
        : span <= 0x10000 ? bytes(g, 2)
                          : bytes(g, 4);
    return (int)((int64_t)lo + (int64_t)(v % span));
}

int gen_chance(gen_src *g, int percent)
{
    return gen_u8(g) % 100 >= 100 - percent;
}

int gen_pick(gen_src *g, const int *values, size_t n)
{
    return values[gen_int(g, 0, (int)n - 1)];
}

double gen_uniform(gen_src *g, double lo, double hi)
{
    return lo + (hi - lo) * ((double)gen_u32(g) * 0x1p-32);
}

/* A head size: small ones, the usual powers of two and odd ones. */
static int head_size(gen_src *g, int max)
{
    static const int common[] = {1,  2,  3,  4,  7,  8,   16, 17,
                                 32, 33, 64, 80, 96, 128, 256};
    int v = gen_chance(g, 60)
                ? gen_int(g, 1, max)
                : common[gen_int(g, 0,
                                 (int)(sizeof common / sizeof common[0]) - 1)];
    return v > max ? max : v;
}

void gen_sdpa_shape(gen_src *g, const gen_limits *lim, gen_sdpa *out)
{
    attn_sdpa_desc *d = &out->d;
    memset(out, 0, sizeof *out);
    d->batch = gen_int(g, 1, lim->batch);
    d->heads_kv = gen_int(g, 1, lim->heads_kv);
    d->heads_q = d->heads_kv * gen_int(g, 1, lim->group);
    d->seq_q = gen_int(g, 1, lim->seq_q);
    d->seq_kv = gen_chance(g, 20) ? d->seq_q : gen_int(g, 1, lim->seq_kv);
    d->head_dim = head_size(g, lim->head_dim);
    d->head_dim_v =
        gen_chance(g, 70) ? d->head_dim : head_size(g, lim->head_dim);
    d->score = gen_chance(g, 15) ? ATTN_SCORE_ADDITIVE : ATTN_SCORE_DOT;
    d->dtype = gen_chance(g, 30) ? ATTN_F16 : ATTN_F32;
    if (gen_chance(g, 30))
        d->scale = (float)gen_uniform(g, -1.0, 1.0);
    d->mask.causal = gen_chance(g, 35);
    if (gen_chance(g, 25))
        d->mask.window = gen_int(g, 1, d->seq_kv + 2);
    d->mask.bias_kind =
        gen_chance(g, 35) ? (attn_bias_kind)gen_int(g, 1, 3) : ATTN_BIAS_NONE;
    out->with_kv_len = gen_chance(g, 25);
    out->with_lse = gen_chance(g, 50);
    out->qk_amp = gen_chance(g, 20) ? gen_uniform(g, 2.0, 6.0) : 1.0;
    out->ninf = gen_chance(g, 30) ? gen_uniform(g, 0.0, 0.5) : 0.0;
    /* drawn last, so that the earlier choices of an input keep their
     * meaning; struct_size covers the members added since the first
     * layout */
    d->struct_size = sizeof *d;
    d->causal_align =
        gen_chance(g, 30) ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_BOTTOM_RIGHT;
    if (d->mask.bias_kind != ATTN_BIAS_NONE && gen_chance(g, 40)) {
        d->mask.bias_kind =
            gen_chance(g, 30) ? ATTN_BIAS_KEY : ATTN_BIAS_BROADCAST;
        d->bias_shape[0] = gen_chance(g, 50) ? d->batch : 1;
        d->bias_shape[1] = gen_chance(g, 50) ? d->heads_q : 1;
        d->bias_shape[2] = gen_chance(g, 50) ? d->seq_q : 1;
    }
    if (gen_chance(g, 20)) { /* a boolean mask keep of this shape */
        d->keep_shape[0] = gen_chance(g, 50) ? d->batch : 1;
        d->keep_shape[1] = gen_chance(g, 50) ? d->heads_q : 1;
        d->keep_shape[2] = gen_chance(g, 50) ? d->seq_q : 1;
    }
    if (gen_chance(g, 15)) /* left padding (sdpa_case_init's bits) */
        out->with_kv_len |=
            gen_chance(g, 50) ? CASE_KV_START : CASE_KV_START | CASE_Q_START;
    if (gen_chance(g, 15))
        d->dtype = ATTN_BF16;
    if (gen_chance(g, 35))
        out->layout = gen_int(g, GEN_BHSD, GEN_FUSED);
    if (gen_chance(g, 25))
        out->o_layout = gen_int(g, GEN_BHSD, GEN_PADDED);
    if (d->batch <= GEN_MAX_SEQS && gen_chance(g, 15)) {
        /* packed: none of kv_len, bias, keep or the starts */
        out->varlen = 1;
        out->with_kv_len = 0;
        out->ninf = 0.0;
        d->mask.bias_kind = ATTN_BIAS_NONE;
        memset(d->keep_shape, 0, sizeof d->keep_shape);
        for (int b = 0; b < d->batch; b++) {
            int lq = gen_chance(g, 10) ? 0 : gen_int(g, 1, d->seq_q);
            int lk = gen_chance(g, 10) ? 0 : gen_int(g, 1, d->seq_kv);
            out->cu_q[b + 1] = out->cu_q[b] + lq;
            out->cu_kv[b + 1] = out->cu_kv[b] + lk;
        }
        /* some rows and keys in all (the oracle's problem is not empty) */
        for (int b = 0; out->cu_q[d->batch] == 0 && b < d->batch; b++)
            out->cu_q[b + 1]++;
        for (int b = 0; out->cu_kv[d->batch] == 0 && b < d->batch; b++)
            out->cu_kv[b + 1]++;
    }
    if (!out->varlen && gen_chance(g, 15)) {
        /* the diagonal anywhere in [1 - seq_q, seq_kv - 1] */
        const int base =
            d->causal_align == ATTN_CAUSAL_TOP_LEFT ? 0 : d->seq_kv - d->seq_q;
        d->causal_offset = gen_int(g, 1 - d->seq_q, d->seq_kv - 1) - base;
    }
    gen_sdpa_place(out);
}

void gen_sdpa_storage(const gen_sdpa *s, attn_sdpa_desc *out)
{
    *out = s->d;
    memset(out->q_strides, 0, sizeof out->q_strides);
    memset(out->k_strides, 0, sizeof out->k_strides);
    memset(out->v_strides, 0, sizeof out->v_strides);
    memset(out->o_strides, 0, sizeof out->o_strides);
    out->cu_seqlens_q = out->cu_seqlens_kv = NULL;
    if (s->varlen) {
        out->seq_q = s->cu_q[s->d.batch];
        out->seq_kv = s->cu_kv[s->d.batch];
        out->batch = 1;
        out->mask.causal = 0;
        out->mask.window = 0;
    }
}

/* Strides of a tensor [n0, n1, n2, w] in layout lay; rows and row_w: the
 * rows and the row width (elements) of the fused buffer. */
static void layout_strides(int lay, const size_t n[3], size_t w, size_t rows,
                           size_t row_w, int64_t st[3])
{
    switch (lay) {
    case GEN_BHSD:
        st[0] = (int64_t)(n[1] * n[2] * w);
        st[1] = (int64_t)(n[2] * w);
        st[2] = (int64_t)w;
        break;
    case GEN_BSHD:
        st[0] = (int64_t)(n[2] * n[1] * w);
        st[1] = (int64_t)w;
        st[2] = (int64_t)(n[1] * w);
        break;
    case GEN_PADDED:
        st[1] = (int64_t)(w + 3);
        st[2] = (int64_t)(n[1] * (w + 3) + 5);
        st[0] = (int64_t)(n[2] * (size_t)st[2] + 7);
        break;
    case GEN_FUSED:
        st[0] = (int64_t)(rows * row_w);
        st[1] = (int64_t)w;
        st[2] = (int64_t)row_w;
        break;
    default:
        st[0] = st[1] = st[2] = 0;
        break;
    }
}

void gen_sdpa_place(gen_sdpa *s)
{
    attn_sdpa_desc sd, *d = &s->d;
    size_t nq[3], nk[3], rows, row_w;
    if (s->varlen) {
        d->cu_seqlens_q = s->cu_q;
        d->cu_seqlens_kv = s->cu_kv;
    } else {
        d->cu_seqlens_q = d->cu_seqlens_kv = NULL;
    }
    gen_sdpa_storage(s, &sd);
    nq[0] = nk[0] = (size_t)sd.batch;
    nq[1] = (size_t)sd.heads_q;
    nk[1] = (size_t)sd.heads_kv;
    nq[2] = (size_t)sd.seq_q;
    nk[2] = (size_t)sd.seq_kv;
    rows = nq[2] > nk[2] ? nq[2] : nk[2];
    row_w = nq[1] * (size_t)sd.head_dim +
            nk[1] * (size_t)(sd.head_dim + sd.head_dim_v);
    layout_strides(s->layout, nq, (size_t)sd.head_dim, rows, row_w,
                   d->q_strides);
    layout_strides(s->layout, nk, (size_t)sd.head_dim, rows, row_w,
                   d->k_strides);
    layout_strides(s->layout, nk, (size_t)sd.head_dim_v, rows, row_w,
                   d->v_strides);
    layout_strides(s->o_layout == GEN_FUSED ? GEN_CONTIG : s->o_layout, nq,
                   (size_t)sd.head_dim_v, 0, 0, d->o_strides);
    if (s->varlen) /* one packed batch item: the batch stride is 0 */
        d->q_strides[0] = d->k_strides[0] = d->v_strides[0] = d->o_strides[0] =
            0;
}

void gen_sdpa_plain(gen_sdpa *s)
{
    s->layout = s->o_layout = GEN_CONTIG;
    s->varlen = 0;
    gen_sdpa_place(s);
}

size_t gen_extent(const size_t n[3], size_t w, const int64_t st[3])
{
    size_t e = w;
    for (int i = 0; i < 3; i++)
        e += (size_t)st[i] * (n[i] - 1);
    return e;
}

void gen_strides(const int64_t st[3], const size_t n[3], size_t w, int packed,
                 int64_t out[3])
{
    if (st[0] || st[1] || st[2]) {
        memcpy(out, st, 3 * sizeof *out);
    } else if (packed) {
        out[0] = 0;
        out[1] = (int64_t)w;
        out[2] = (int64_t)(n[1] * w);
    } else {
        out[0] = (int64_t)(n[1] * n[2] * w);
        out[1] = (int64_t)(n[2] * w);
        out[2] = (int64_t)w;
    }
}

void gen_move(void *strided, void *contig, size_t elem, const size_t n[3],
              size_t w, const int64_t st[3], int to_strided)
{
    size_t r = 0;
    for (size_t a = 0; a < n[0]; a++)
        for (size_t b = 0; b < n[1]; b++)
            for (size_t c = 0; c < n[2]; c++, r++) {
                char *p =
                    (char *)strided + ((size_t)st[0] * a + (size_t)st[1] * b +
                                       (size_t)st[2] * c) *
                                          elem;
                char *t = (char *)contig + r * w * elem;
                if (to_strided)
                    memcpy(p, t, w * elem);
                else
                    memcpy(t, p, w * elem);
            }
}

void gen_mha_spec(gen_src *g, const gen_limits *lim, mha_spec *out)
{
    memset(out, 0, sizeof *out);
    out->d_model = gen_int(g, 1, lim->d_model);
    out->heads_kv = gen_int(g, 1, lim->heads_kv);
    out->heads_q = out->heads_kv * gen_int(g, 1, lim->group);
    out->head_dim = gen_int(g, 1, lim->head_dim);
    out->batch = gen_int(g, 1, lim->batch);
    out->seq_q = gen_int(g, 1, lim->seq_q);
    out->self = !gen_chance(g, 40);
    out->seq_kv = out->self ? out->seq_q : gen_int(g, 1, lim->seq_kv);
    out->with_bias = gen_chance(g, 50);
    out->score = gen_chance(g, 15) ? ATTN_SCORE_ADDITIVE : ATTN_SCORE_DOT;
    out->posenc = (attn_posenc)gen_int(g, 0, 3);
    out->pos_offset = gen_chance(g, 30) ? gen_int(g, 0, lim->pos_offset) : 0;
    out->causal = gen_chance(g, 35);
    out->window = gen_chance(g, 20) ? gen_int(g, 1, out->seq_kv + 2) : 0;
    out->with_kv_len = gen_chance(g, 20);
    out->bias_kind =
        gen_chance(g, 25) ? (attn_bias_kind)gen_int(g, 1, 3) : ATTN_BIAS_NONE;
}

void gen_device_spec(gen_src *g, char *out, size_t cap)
{
    static const char *const words[] = {
        "auto", "native",        "all",    "gpu",    "igpu",
        "fpga", "cpu",           "CPU",    " Auto ", "0:0",
        "0:1",  "1:0",           "00:00",  ":",      "0:",
        ":0",   "1:2:3",         "-1:0",   "pocl",   "pthread",
        "cpu-", "99999999999:0", "",       "\t",     "x",
        "cpuu", "allx",          "native "};
    static const char *const seps[] = {",", ", ", " ,", ",,", " ", ""};
    size_t len = 0;
    int items;
    if (cap == 0)
        return;
    out[0] = '\0';
    items = gen_int(g, 0, 6);
    for (int i = 0; i < items && len + 1 < cap; i++) {
        char piece[96];
        size_t n;
        if (i > 0) {
            const char *s = seps[gen_int(g, 0, 5)];
            n = strlen(s);
            if (len + n + 1 > cap)
                break;
            memcpy(out + len, s, n);
            len += n;
        }
        switch (gen_int(g, 0, 3)) {
        case 0: /* raw bytes, NUL excluded */
            n = (size_t)gen_int(g, 1, 16);
            for (size_t j = 0; j < n; j++) {
                uint8_t c = gen_u8(g);
                piece[j] = (char)(c ? c : 'a');
            }
            break;
        case 1: /* a long run */
            n = (size_t)gen_int(g, 1, sizeof piece - 1);
            memset(piece, gen_chance(g, 50) ? 'a' : ',', n);
            break;
        default: {
            const char *w =
                words[gen_int(g, 0, (int)(sizeof words / sizeof words[0]) - 1)];
            n = strlen(w);
            memcpy(piece, w, n);
            break;
        }
        }
        if (len + n + 1 > cap)
            n = cap - 1 - len;
        memcpy(out + len, piece, n);
        len += n;
    }
    out[len] = '\0';
}
