/* SPDX-License-Identifier: Apache-2.0 */
/* The native backend behind the backend interface of core/backend.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/memsize.h"
#include "cpu/backend_native.h"
#include "cpu/cpu_impl.h"

static void native_destroy(attn_backend *b)
{
    attn_cpu_destroy(b->impl);
    free(b);
}

/* The CPU model from /proc/cpuinfo where there is one. */
static void cpu_model(char *out, size_t len)
{
    char line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    snprintf(out, len, "native CPU");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!strncmp(line, "model name", 10) && colon) {
            colon += 1 + strspn(colon + 1, " \t");
            colon[strcspn(colon, "\n")] = '\0';
            snprintf(out, len, "%s", colon);
            break;
        }
    }
    fclose(f);
}

static void native_device_info(const attn_backend *b, attn_device_info *out)
{
    attn_cpu *cpu = b->impl;
    cpu_model(out->name, sizeof out->name);
    snprintf(out->vendor, sizeof out->vendor, "libattn");
    snprintf(out->driver_version, sizeof out->driver_version, "%s",
             attn_version());
    snprintf(out->reason, sizeof out->reason,
             "native C backend, %s kernels, %d threads",
             attn_cpu_isa_name(attn_cpu_get_isa(cpu)),
             attn_pool_threads(attn_cpu_pool(cpu)));
    out->kind = ATTN_DEVICE_NATIVE;
    out->platform_index = out->device_index = -1;
    out->compute_units = (unsigned)attn_pool_threads(attn_cpu_pool(cpu));
    out->global_mem_bytes = out->max_alloc_bytes = attn_host_memory_bytes();
    out->fp64 = 1;
    out->unified_memory = 1;
    out->usable = 1;
}

static attn_status native_sdpa(attn_backend *b, const attn_sdpa_call *c,
                               attn_err *err)
{
    const attn_sdpa_desc *d = c->d;
    attn_status s = attn_cpu_sdpa(b->impl, d, c->q, c->k, c->v, c->o, c->lse,
                                  NULL, attn_cpu_precision(b->impl));
    if (s) {
        char need[ATTN_BYTES_TEXT_MAX], have[ATTN_BYTES_TEXT_MAX];
        size_t bytes = attn_cpu_ws_bytes(b->impl, d->head_dim, d->head_dim_v);
        attn_fail(err, s,
                  "the native backend needs %s of working memory "
                  "(head_dim %d, head_dim_v %d, %d workers); the host has %s",
                  bytes ? attn_bytes_text(need, sizeof need, bytes)
                        : "more than the address space",
                  d->head_dim, d->head_dim_v, attn_cpu_workers(b->impl),
                  attn_bytes_text(have, sizeof have, attn_host_memory_bytes()));
    }
    return s;
}

attn_precision attn_backend_native_precision(const attn_backend *b,
                                             const attn_sdpa_desc *d)
{
    /* A permission, not an obligation: float products are more exact than
     * TF32 ones, and faster here than their emulation; BF16 runs where the
     * kernels have VDPBF16PS (and AMX where the CPU has it). */
    const attn_cpu *cpu = b->impl;
    return attn_cpu_sdpa_precision(cpu, d, attn_cpu_precision(cpu));
}

void attn_backend_native_ask(attn_backend *b, attn_precision asked)
{
    /* Only BF16 has kernels; TF32 to attn_cpu_sdpa would be its test
     * emulation, slower and less exact than EXACT. */
    attn_cpu_set_precision(b->impl, asked == ATTN_PRECISION_BF16
                                        ? ATTN_PRECISION_BF16
                                        : ATTN_PRECISION_EXACT);
}

static attn_status native_mha(attn_backend *b, int dev, const attn_prepared *p,
                              const attn_mha_call *c, attn_err *err)
{
    (void)dev;
    (void)p;
    return attn_cpu_mha(b->impl, c, err);
}

attn_status attn_backend_native_backward(attn_backend *b,
                                         const attn_sdpa_desc *d,
                                         const attn_sdpa_grad *g)
{
    return attn_cpu_sdpa_backward(b->impl, d, g);
}

attn_status attn_backend_native_gemm_nt(attn_backend *b, int m, int n, int k,
                                        const float *a, size_t lda,
                                        const float *bm, size_t ldb,
                                        const float *bias, float *c, size_t ldc)
{
    attn_cpu *cpu = b->impl;
    return attn_cpu_kerns(cpu)->gemm_nt(attn_cpu_pool(cpu), m, n, k, a, lda, bm,
                                        ldb, bias, c, ldc);
}

/* Both of the generic copy, which every build has: sin and cos of each
 * position, not SIMD work. */
void attn_native_posenc_sinusoidal(int seq, int d_model, int offset,
                                   float *table)
{
    attn_cpu_posenc_sinusoidal_generic(seq, d_model, offset, table);
}

void attn_native_add_posenc(const attn_mha_desc *m, int batch, int seq,
                            int pos0, const float *x, float *out)
{
    attn_cpu_add_posenc_generic(m, batch, seq, pos0, x, out);
}

static const attn_backend_ops native_ops = {
    .name = "native",
    .destroy = native_destroy,
    .device_info = native_device_info,
    .sdpa = native_sdpa,
    .mha = native_mha,
    .exec = NULL,
};

attn_status attn_backend_native_create(int threads, const attn_logger *lg,
                                       char *warn, size_t cap,
                                       attn_backend **out, attn_err *err)
{
    attn_backend *b = calloc(1, sizeof *b);
    attn_cpu *cpu = NULL;
    attn_cpu_isa isa = attn_cpu_isa_select(warn, cap);
    attn_status s;
    if (!b)
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the native backend");
    s = attn_cpu_create(threads, isa, &cpu);
    if (s) {
        free(b);
        return attn_fail(err, s, "cannot start %d native worker threads",
                         threads);
    }
    attn_log(lg, ATTN_LOG_INFO, "native backend: %s kernels (best here: %s)",
             attn_cpu_isa_name(isa), attn_cpu_isa_name(attn_cpu_isa_best()));
    b->ops = &native_ops;
    b->impl = cpu;
    *out = b;
    return ATTN_OK;
}
