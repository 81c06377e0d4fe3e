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

double util_flops(int n, int causal)
{
    double f = 4.0 * (double)n * (double)n * HEAD_DIM * HEADS;
    return causal ? f / 2 : f;
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

float util_from_half(uint16_t h)
{
    uint32_t e = h >> 10 & 0x1fu, m = h & 0x3ffu;
    float v = e == 0    ? (float)ldexp((double)m, -24)
              : e == 31 ? (m ? NAN : INFINITY)
                        : (float)ldexp((double)(m | 0x400u), (int)e - 25);
    return h & 0x8000u ? -v : v;
}

/* Max abs error of libattn's o against a double-precision reference on up to
 * rows_per_head evenly spread rows of every head. */
double util_check_rows(const float *q, const float *k, const float *v,
                       const float *o, int n, int causal, int rows_per_head)
{
    double worst = 0.0;
    double scale = 1.0 / sqrt((double)HEAD_DIM);
    double *p = malloc((size_t)n * sizeof *p);
    if (!p)
        return NAN;
    int step = n / rows_per_head > 0 ? n / rows_per_head : 1;
    for (int h = 0; h < HEADS; h++) {
        const float *qh = q + (size_t)h * n * HEAD_DIM;
        const float *kh = k + (size_t)h * n * HEAD_DIM;
        const float *vh = v + (size_t)h * n * HEAD_DIM;
        for (int i = (h * 7) % step; i < n; i += step) {
            int last = causal ? i : n - 1;
            double mx = -INFINITY, sum = 0.0;
            for (int j = 0; j <= last; j++) {
                double s = 0.0;
                for (int c = 0; c < HEAD_DIM; c++)
                    s += (double)qh[(size_t)i * HEAD_DIM + c] *
                         (double)kh[(size_t)j * HEAD_DIM + c];
                p[j] = s * scale;
                if (p[j] > mx)
                    mx = p[j];
            }
            for (int j = 0; j <= last; j++) {
                p[j] = exp(p[j] - mx);
                sum += p[j];
            }
            for (int c = 0; c < HEAD_DIM; c++) {
                double acc = 0.0;
                for (int j = 0; j <= last; j++)
                    acc += p[j] * (double)vh[(size_t)j * HEAD_DIM + c];
                double e = fabs(acc / sum -
                                (double)o[((size_t)h * n + i) * HEAD_DIM + c]);
                if (!(e <= worst))
                    worst = e;
            }
        }
    }
    free(p);
    return worst;
}
