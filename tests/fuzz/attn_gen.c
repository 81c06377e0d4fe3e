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
