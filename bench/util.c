/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-bench's small helpers: clocks, statistics over the timed runs,
 * deterministic inputs and the double-precision reference check.
 */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void util_scopy(char *dst, size_t len, const char *src)
{
    size_t n = strlen(src);
    if (n >= len)
        n = len - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void util_field(const char *line, const char *key, char *out, size_t len)
{
    out[0] = '\0';
    const char *p = strstr(line, key);
    if (!p)
        return;
    p += strlen(key);
    size_t n = strcspn(p, " \r\n");
    if (n >= len)
        n = len - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

double util_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

void util_pause_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* "0.52 0.61 0.70" from /proc/loadavg, or "?" */
void util_loadavg(char *out, size_t len)
{
    util_scopy(out, len, "?");
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f)
        return;
    double a = 0, b = 0, c = 0;
    if (fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3)
        snprintf(out, len, "%.2f %.2f %.2f", a, b, c);
    fclose(f);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double util_median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

double util_min(const double *t, int n)
{
    double m = t[0];
    for (int i = 1; i < n; i++)
        if (t[i] < m)
            m = t[i];
    return m;
}

size_t shape_q_count(const shape *s)
{
    return (size_t)s->batch * s->heads * s->seq_q * s->head_dim;
}

size_t shape_kv_count(const shape *s)
{
    return (size_t)s->batch * s->kv_heads * s->seq_kv * s->head_dim;
}

void shape_desc(const shape *s, int causal, int f16, attn_sdpa_desc *d)
{
    memset(d, 0, sizeof *d);
    d->batch = s->batch;
    d->heads_q = s->heads;
    d->heads_kv = s->kv_heads;
    d->seq_q = s->seq_q;
    d->seq_kv = s->seq_kv;
    d->head_dim = d->head_dim_v = s->head_dim;
    d->mask.causal = causal;
    d->dtype = f16 == 2 ? ATTN_BF16 : f16 ? ATTN_F16 : ATTN_F32;
}

double util_flops(const shape *s, int causal)
{
    double per_pair = 4.0 * s->head_dim * s->batch * s->heads;
    double sq = s->seq_q, skv = s->seq_kv;
    if (!causal)
        return per_pair * sq * skv;
    if (s->seq_q == s->seq_kv)
        return per_pair * sq * skv / 2;
    /* row i sees seq_kv - seq_q + i + 1 keys (at most seq_kv) */
    double keys = 0;
    for (int i = 0; i < s->seq_q; i++) {
        double k = skv - sq + i + 1;
        keys += k < 0 ? 0 : k > skv ? skv : k;
    }
    return per_pair * keys;
}

double util_kv_bytes(const shape *s, int f16)
{
    return 2.0 * (double)shape_kv_count(s) * (f16 ? 2 : 4);
}

float util_max_abs_diff(const float *a, const float *b, size_t n)
{
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= m)) /* also catches NaN */
            m = d;
    }
    return m;
}

/* Deterministic inputs in [-1, 1). */
void util_fill(float *x, size_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
    }
}

uint16_t util_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)(x >> 16 & 0x8000u);
    x &= 0x7fffffffu;
    if (x >= 0x477ff000u) /* rounds to 2^16 or more: inf */
        return (uint16_t)(sign | 0x7c00u);
    if (x >= 0x38800000u) { /* normal: rebias, round off 13 bits */
        uint32_t r = x - 0x38000000u;
        r += 0xfffu + (r >> 13 & 1u);
        return (uint16_t)(sign | r >> 13);
    }
    /* subnormal or zero: a multiple of 2^-24, rounded to even */
    return (uint16_t)(sign | (uint16_t)lrintf(fabsf(f) * 16777216.0f));
}

/* bfloat16: to nearest even, NaN kept, float subnormals to a signed zero
 * (attn.h, ATTN_BF16); back by a shift. */
uint16_t util_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)(x >> 16 | 0x40u);
    if ((x & 0x7f800000u) == 0)
        return (uint16_t)(x >> 16 & 0x8000u);
    return (uint16_t)((x + 0x7fffu + (x >> 16 & 1u)) >> 16);
}

float util_from_bf16(uint16_t h)
{
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

const char *util_dtype_name(int kind)
{
    return kind == 2 ? "bf16" : kind ? "f16" : "f32";
}

float util_from_half(uint16_t h)
{
    uint32_t e = h >> 10 & 0x1fu, m = h & 0x3ffu;
    float v = e == 0    ? (float)ldexp((double)m, -24)
              : e == 31 ? (m ? NAN : INFINITY)
                        : (float)ldexp((double)(m | 0x400u), (int)e - 25);
    return h & 0x8000u ? -v : v;
}

/* Max abs error of libattn's o against a double-precision reference on
 * sampled query rows (bench.h). */
double util_check_rows(const shape *s, const float *q, const float *k,
                       const float *v, const float *o, int causal,
                       int rows_per_head)
{
    /* at most about 2^28 multiply-adds per product, at least 8 rows */
    double budget = 268435456.0 / ((double)s->seq_kv * s->head_dim);
    long max_rows = budget < 8 ? 8 : (long)budget;
    int sq = s->seq_q, skv = s->seq_kv, dim = s->head_dim;
    int group = s->heads / s->kv_heads;
    int n_heads = s->batch * s->heads;
    double worst = 0.0;
    double scale = 1.0 / sqrt((double)dim);
    double *p = malloc((size_t)skv * sizeof *p);
    if (!p)
        return NAN;
    int per_head = rows_per_head < sq ? rows_per_head : sq;
    int step = sq / per_head > 0 ? sq / per_head : 1;
    /* at most max_rows rows: every head_step-th (batch, head) */
    long total = (long)n_heads * per_head;
    int head_step =
        total > max_rows ? (int)((total + max_rows - 1) / max_rows) : 1;
    for (int bh = 0; bh < n_heads; bh += head_step) {
        int b = bh / s->heads, h = bh % s->heads;
        int g = b * s->kv_heads + h / group;
        const float *qh = q + (size_t)bh * sq * dim;
        const float *kh = k + (size_t)g * skv * dim;
        const float *vh = v + (size_t)g * skv * dim;
        const float *oh = o + (size_t)bh * sq * dim;
        for (int i = (bh * 7) % step; i < sq; i += step) {
            /* bottom-right aligned: row i sees j <= i + skv - sq */
            int last = causal ? i + skv - sq : skv - 1;
            if (last > skv - 1)
                last = skv - 1;
            double mx = -INFINITY, sum = 0.0;
            for (int j = 0; j <= last; j++) {
                double sc = 0.0;
                for (int c = 0; c < dim; c++)
                    sc += (double)qh[(size_t)i * dim + c] *
                          (double)kh[(size_t)j * dim + c];
                p[j] = sc * scale;
                if (p[j] > mx)
                    mx = p[j];
            }
            for (int j = 0; j <= last; j++) {
                p[j] = exp(p[j] - mx);
                sum += p[j];
            }
            for (int c = 0; c < dim; c++) {
                double acc = 0.0;
                for (int j = 0; j <= last; j++)
                    acc += p[j] * (double)vh[(size_t)j * dim + c];
                /* a row that sees no key: O = 0 */
                double want = last >= 0 ? acc / sum : 0.0;
                double e = fabs(want - (double)oh[(size_t)i * dim + c]);
                if (!(e <= worst))
                    worst = e;
            }
        }
    }
    free(p);
    return worst;
}
