/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-demo: one multi-head self-attention layer (d_model 512, 8 heads of
 * 64, RoPE, causal) on the device libattn selects.  Prints the device, a
 * checksum of the output and the time of the call.
 *
 *   attn-demo [--seq N] [--batch B] [--threads T] [--device SPEC]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <attn/attn.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Deterministic values in [-scale, scale) so the checksum is reproducible. */
static void fill(float *x, size_t n, float scale, unsigned *state)
{
    for (size_t i = 0; i < n; i++) {
        *state = *state * 1664525u + 1013904223u;
        x[i] = scale * ((float)(*state >> 8) / 8388608.0f - 1.0f);
    }
}

/* A whole number in [lo, hi] (a usage error otherwise). */
static int number(const char *s, long lo, long hi, int *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static const char *kind_name(attn_device_kind k)
{
    static const char *const names[] = {"gpu", "igpu",  "fpga",
                                        "cpu", "other", "native"};
    return (unsigned)k <= ATTN_DEVICE_NATIVE ? names[k] : "?";
}

int main(int argc, char **argv)
{
    int seq = 1024, batch = 1, d_model = 512, heads = 8, head_dim = 64;
    attn_options opt;
    attn_options_init(&opt);
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(argv[i], "--seq") && next)
            bad = number(argv[++i], 1, 1 << 20, &seq);
        else if (!strcmp(argv[i], "--batch") && next)
            bad = number(argv[++i], 1, 1 << 16, &batch);
        else if (!strcmp(argv[i], "--threads") && next)
            bad = number(argv[++i], 0, 1024, &opt.threads);
        else if (!strcmp(argv[i], "--device") && next)
            opt.device = argv[++i];
        else {
            int help = !strcmp(argv[i], "--help");
            fprintf(help ? stdout : stderr,
                    "usage: %s [--seq N] [--batch B] [--threads T] "
                    "[--device SPEC]\n",
                    argv[0]);
            return help ? 0 : 2;
        }
        if (bad) {
            fprintf(stderr,
                    "attn-demo: bad value '%s' for %s (--seq 1..1048576, "
                    "--batch 1..65536, --threads 0..1024)\n",
                    argv[i], argv[i - 1]);
            return 2;
        }
    }

    attn_context *ctx;
    attn_status s = attn_context_create(&opt, &ctx);
    if (s != ATTN_OK) {
        fprintf(stderr, "attn-demo: %s: %s\n", attn_status_string(s),
                attn_last_error());
        return 1;
    }
    attn_device_info dev = ATTN_DEVICE_INFO_INIT;
    attn_context_device(ctx, &dev);
    printf("libattn %s\ndevice: %s (%s, %u compute units)\n", attn_version(),
           dev.name, kind_name(dev.kind), dev.compute_units);

    size_t nx = (size_t)batch * seq * d_model, nw = (size_t)d_model * d_model;
    float *x = malloc(nx * sizeof *x), *y = malloc(nx * sizeof *y);
    float *w = malloc(4 * nw * sizeof *w), *bias = malloc(4 * d_model * 4);
    int rc = 1;
    if (!x || !y || !w || !bias) {
        fprintf(stderr, "attn-demo: out of memory\n");
        goto out;
    }
    unsigned state = 42;
    fill(x, nx, 1.0f, &state);
    fill(w, 4 * nw, 0.0442f, &state); /* ~ 1/sqrt(d_model) */
    fill(bias, 4 * (size_t)d_model, 0.02f, &state);

    attn_mha_desc m = ATTN_MHA_DESC_INIT;
    m.d_model = d_model;
    m.heads_q = m.heads_kv = heads;
    m.head_dim = head_dim;
    m.wq = w, m.wk = w + nw, m.wv = w + 2 * nw, m.wo = w + 3 * nw;
    m.bq = bias, m.bk = bias + d_model, m.bv = bias + 2 * d_model;
    m.bo = bias + 3 * d_model;
    m.posenc = ATTN_POSENC_ROPE;
    attn_mask_desc mask = ATTN_MASK_DESC_INIT;
    mask.causal = 1;

    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_ms();
        s = attn_mha_forward(ctx, &m, batch, seq, seq, x, NULL, &mask, y);
        double t = now_ms() - t0;
        if (s != ATTN_OK) {
            fprintf(stderr, "attn-demo: %s: %s\n", attn_status_string(s),
                    attn_context_last_error(ctx));
            goto out;
        }
        best = t < best ? t : best;
    }
    double sum = 0, abs_sum = 0;
    for (size_t i = 0; i < nx; i++) {
        sum += y[i];
        abs_sum += y[i] < 0 ? -y[i] : y[i];
    }
    printf("layer: batch %d, seq %d, d_model %d, %d heads x %d, causal, "
           "RoPE\n",
           batch, seq, d_model, heads, head_dim);
    printf("checksum: sum %.6f  sum|y| %.6f\n", sum, abs_sum);
    printf("time: %.3f ms (best of 3)\n", best);
    rc = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "attn-demo: cannot write the output\n");
        rc = 1;
    }
out:
    free(x);
    free(y);
    free(w);
    free(bias);
    attn_context_destroy(ctx);
    return rc;
}
