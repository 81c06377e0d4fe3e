/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A caller built against the first layouts of libattn's structs, before
 * attn_options gained `kernel` and attn_device_info gained
 * `opencl_version`, running on today's library.  It does not include
 * attn.h: it declares what it uses as that first header did, so every
 * struct it hands over is the smaller one, with guard bytes behind it
 * that the library must neither read as members nor write.
 * test_abi.c runs each check; each returns NULL or what went wrong.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "abi/old_caller.h"

/* ---- the first header, as far as this caller uses it --------------------
 */

typedef struct attn_context attn_context;

typedef struct old_options {
    size_t struct_size;
    const char *device;
    int queues;
    int threads;
    const char *cache_dir;
    int allow_fallback;
    int path;
    void (*log)(int level, const char *msg, void *user);
    void *log_user;
    int log_level;
} old_options;

typedef struct old_device_info {
    size_t struct_size;
    char name[256];
    char vendor[256];
    char platform[256];
    char driver_version[128];
    char opencl_c_version[64];
    int kind;
    int platform_index;
    int device_index;
    unsigned compute_units;
    unsigned max_clock_mhz;
    uint64_t global_mem_bytes;
    uint64_t local_mem_bytes;
    uint64_t max_alloc_bytes;
    size_t max_work_group_size;
    int fp16;
    int fp64;
    int unified_memory;
    int usable;
    char reason[256];
    double rank;
} old_device_info;

typedef struct old_mask_desc {
    size_t struct_size;
    int causal;
    int window;
    const int32_t *kv_len;
    const float *bias;
    int bias_kind;
} old_mask_desc;

typedef struct old_sdpa_desc {
    size_t struct_size;
    int batch, heads_q, heads_kv, seq_q, seq_kv, head_dim, head_dim_v;
    float scale;
    int score;
    const float *additive_w;
    old_mask_desc mask;
    int dtype;
} old_sdpa_desc;

#define OLD_DEVICE_NATIVE 5
#define OLD_DEVICE_OTHER  4

/* attn_status is an int-sized enum; ATTN_OK is 0. */
int attn_options_init_sized(old_options *o, size_t size);
void attn_options_init(old_options *o);
int attn_context_create(const old_options *o, attn_context **out);
void attn_context_destroy(attn_context *ctx);
int attn_context_device(const attn_context *ctx, old_device_info *out);
int attn_devices(old_device_info *out, size_t capacity, size_t *count);
int attn_sdpa(attn_context *ctx, const old_sdpa_desc *d, const void *q,
              const void *k, const void *v, void *o, float *lse);
const char *attn_last_error(void);

/* ---- the checks -------------------------------------------------------------
 */

#define GUARD 0xa5

static char why[512];

static int guard_intact(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != GUARD)
            return 0;
    return 1;
}

const char *old_caller_options(void)
{
    struct {
        old_options o;
        unsigned char guard[64];
    } box;
    int rc;
    memset(&box, GUARD, sizeof box);
    if ((rc = attn_options_init_sized(&box.o, sizeof box.o)) != 0)
        return "attn_options_init_sized refused the first layout's size";
    if (!guard_intact(box.guard, sizeof box.guard))
        return "attn_options_init_sized wrote past the caller's struct";
    if (box.o.struct_size != sizeof box.o || !box.o.device ||
        strcmp(box.o.device, "auto") != 0 || box.o.allow_fallback != 1 ||
        box.o.threads != 0 || box.o.log != NULL)
        return "attn_options_init_sized: not the defaults";
    memset(&box, GUARD, sizeof box);
    attn_options_init(&box.o); /* the function, as bindings call it */
    if (!guard_intact(box.guard, sizeof box.guard))
        return "attn_options_init wrote past the first layout";
    if (box.o.struct_size != sizeof box.o || box.o.allow_fallback != 1)
        return "attn_options_init: not the defaults";
    return NULL;
}

/* Q, K, V of a 1 x 2 x 5 x 4 problem and its O, in double. */
enum { H = 2, S = 5, D = 4 };

static void reference(const float *q, const float *k, const float *v, double *o)
{
    for (int h = 0; h < H; h++)
        for (int i = 0; i < S; i++) {
            double s[S], m = -INFINITY, sum = 0.0;
            for (int j = 0; j <= i; j++) { /* causal */
                s[j] = 0.0;
                for (int c = 0; c < D; c++)
                    s[j] += (double)q[(h * S + i) * D + c] *
                            (double)k[(h * S + j) * D + c];
                s[j] *= 0.5; /* 1 / sqrt(D) */
                m = s[j] > m ? s[j] : m;
            }
            for (int j = 0; j <= i; j++)
                sum += (s[j] = exp(s[j] - m));
            for (int c = 0; c < D; c++) {
                double acc = 0.0;
                for (int j = 0; j <= i; j++)
                    acc += s[j] * (double)v[(h * S + j) * D + c];
                o[(h * S + i) * D + c] = acc / sum;
            }
        }
}

const char *old_caller_context(void)
{
    struct {
        old_options o;
        unsigned char guard[64]; /* read as `kernel`, a wild pointer */
    } box;
    struct {
        old_device_info d;
        unsigned char guard[96];
    } info;
    old_sdpa_desc d;
    attn_context *ctx = NULL;
    float q[H * S * D], k[H * S * D], v[H * S * D], o[H * S * D];
    double want[H * S * D];
    int rc;
    memset(&box, GUARD, sizeof box);
    attn_options_init_sized(&box.o, sizeof box.o);
    box.o.device = "native";
    box.o.threads = 2;
    if ((rc = attn_context_create(&box.o, &ctx)) != 0) {
        snprintf(why, sizeof why, "attn_context_create: %d: %s", rc,
                 attn_last_error());
        return why;
    }
    memset(&info, GUARD, sizeof info);
    info.d.struct_size = sizeof info.d;
    rc = attn_context_device(ctx, &info.d);
    if (rc != 0 || !guard_intact(info.guard, sizeof info.guard) ||
        info.d.kind != OLD_DEVICE_NATIVE || info.d.compute_units != 2 ||
        !memchr(info.d.name, '\0', sizeof info.d.name) ||
        info.d.struct_size != sizeof info.d) {
        attn_context_destroy(ctx);
        return "attn_context_device on the first layout";
    }
    for (int i = 0; i < H * S * D; i++) {
        q[i] = (float)((i * 7 % 11) - 5) * 0.25f;
        k[i] = (float)((i * 5 % 13) - 6) * 0.2f;
        v[i] = (float)((i * 3 % 7) - 3) * 0.5f;
    }
    memset(&d, 0, sizeof d);
    d.struct_size = sizeof d;
    d.batch = 1;
    d.heads_q = d.heads_kv = H;
    d.seq_q = d.seq_kv = S;
    d.head_dim = d.head_dim_v = D;
    d.mask.causal = 1;
    rc = attn_sdpa(ctx, &d, q, k, v, o, NULL);
    attn_context_destroy(ctx);
    if (rc != 0) {
        snprintf(why, sizeof why, "attn_sdpa: %d: %s", rc, attn_last_error());
        return why;
    }
    reference(q, k, v, want);
    for (int i = 0; i < H * S * D; i++)
        if (!(fabs((double)o[i] - want[i]) <= 1e-5)) {
            snprintf(why, sizeof why, "attn_sdpa: o[%d] = %g, want %g", i,
                     (double)o[i], want[i]);
            return why;
        }
    return NULL;
}

const char *old_caller_zeroed(void)
{
    old_options z;
    attn_context *ctx = NULL;
    int rc;
    memset(&z, 0, sizeof z); /* struct_size 0: the first layout */
    z.device = "native";
    rc = attn_context_create(&z, &ctx);
    attn_context_destroy(ctx);
    if (rc != 0) {
        snprintf(why, sizeof why, "zeroed options: %d: %s", rc,
                 attn_last_error());
        return why;
    }
    return NULL;
}

const char *old_caller_devices(void)
{
    struct {
        old_device_info d[3];
        unsigned char guard[96];
    } box, was;
    size_t n = 0;
    int rc;
    memset(&box, GUARD, sizeof box);
    box.d[0].struct_size = sizeof box.d[0];
    was = box;
    if ((rc = attn_devices(box.d, 2, &n)) != 0) {
        snprintf(why, sizeof why, "attn_devices: %d: %s", rc,
                 attn_last_error());
        return why;
    }
    for (size_t i = 0; i < 2 && i < n; i++)
        if (box.d[i].struct_size != sizeof box.d[i] ||
            !memchr(box.d[i].name, '\0', sizeof box.d[i].name) ||
            box.d[i].platform_index < 0 || box.d[i].device_index < 0 ||
            box.d[i].kind < 0 || box.d[i].kind > OLD_DEVICE_OTHER) {
            snprintf(why, sizeof why,
                     "attn_devices: element %zu is not a device walked by "
                     "the first layout's size",
                     i);
            return why;
        }
    /* Past *count or the capacity: as the caller left it (element 0's
     * struct_size when there is no device). */
    for (size_t i = n < 2 ? n : 2; i < 3; i++)
        if (memcmp(&box.d[i], &was.d[i], sizeof box.d[i]) != 0)
            return "attn_devices wrote an element past *count or capacity";
    if (!guard_intact(box.guard, sizeof box.guard))
        return "attn_devices wrote past the caller's array";
    return NULL;
}
