/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_abi: the structs a caller fills are read by the caller's size
 * (docs/ABI.md).  An older caller (old_caller.c, built without attn.h
 * against the first layouts) works on this library; a newer caller's
 * members this library does not know are accepted at their defaults and
 * refused otherwise; a caller of a later layout (with `kernel`, before
 * `precision`) has the members it lacks at their defaults; a size no
 * layout has is refused; the init functions
 * and initializers write exactly the caller's size; device arrays are
 * walked by the caller's element size.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "abi/old_caller.h"
#include "attn/attn.h"
#include "harness.h"
#include "ref.h"

#define GUARD 0xa5

static int intact(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != GUARD)
            return 0;
    return 1;
}

static void expect_null(const char *failure, const char *what)
{
    if (failure)
        printf("\n  %s: %s\n", what, failure);
    HARNESS_EXPECT(failure == NULL, what);
}

static void test_old_caller(void)
{
    expect_null(old_caller_options(), "old caller: options");
    expect_null(old_caller_context(), "old caller: context and attn_sdpa");
    expect_null(old_caller_zeroed(), "old caller: zeroed options");
    expect_null(old_caller_devices(), "old caller: device array");
}

static void test_initializers(void)
{
    attn_options o = ATTN_OPTIONS_INIT;
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    attn_mask_desc m = ATTN_MASK_DESC_INIT;
    attn_mha_desc h = ATTN_MHA_DESC_INIT;
    attn_device_info i[2] = {ATTN_DEVICE_INFO_INIT};
    CU_ASSERT_EQUAL(o.struct_size, sizeof o);
    CU_ASSERT_STRING_EQUAL(o.device, "auto");
    CU_ASSERT_EQUAL(o.allow_fallback, 1);
    CU_ASSERT_PTR_NULL(o.kernel);
    CU_ASSERT_EQUAL(o.precision, ATTN_PRECISION_EXACT);
    CU_ASSERT_EQUAL(d.struct_size, sizeof d);
    CU_ASSERT_EQUAL(d.batch, 0);
    CU_ASSERT_EQUAL(m.struct_size, sizeof m);
    CU_ASSERT_EQUAL(h.struct_size, sizeof h);
    CU_ASSERT_EQUAL(i[0].struct_size, sizeof i[0]);
    CU_ASSERT_EQUAL(i[1].struct_size, 0);
}

/* Each init function writes exactly the size it is given. */
static void test_init_sized(void)
{
    struct {
        attn_sdpa_desc d;
        unsigned char guard[32];
    } sd;
    struct {
        attn_mha_desc m;
        unsigned char guard[32];
    } md;
    struct {
        attn_mask_desc k;
        unsigned char guard[32];
    } kd;
    struct {
        attn_device_info i;
        unsigned char guard[32];
    } id;
    struct {
        attn_options o;
        uint64_t newer; /* a member of a later release */
        unsigned char guard[32];
    } od;
    memset(&sd, GUARD, sizeof sd);
    attn_sdpa_desc_init(&sd.d);
    CU_ASSERT_EQUAL(sd.d.struct_size, sizeof sd.d);
    CU_ASSERT_EQUAL(sd.d.batch, 0);
    CU_ASSERT_PTR_NULL(sd.d.mask.kv_len);
    CU_ASSERT_TRUE(intact(sd.guard, sizeof sd.guard));
    memset(&md, GUARD, sizeof md);
    attn_mha_desc_init(&md.m);
    CU_ASSERT_EQUAL(md.m.struct_size, sizeof md.m);
    CU_ASSERT_PTR_NULL(md.m.wq);
    CU_ASSERT_TRUE(intact(md.guard, sizeof md.guard));
    memset(&kd, GUARD, sizeof kd);
    attn_mask_desc_init(&kd.k);
    CU_ASSERT_EQUAL(kd.k.struct_size, sizeof kd.k);
    CU_ASSERT_EQUAL(kd.k.causal, 0);
    CU_ASSERT_TRUE(intact(kd.guard, sizeof kd.guard));
    memset(&id, GUARD, sizeof id);
    attn_device_info_init(&id.i);
    CU_ASSERT_EQUAL(id.i.struct_size, sizeof id.i);
    CU_ASSERT_TRUE(intact(id.guard, sizeof id.guard));
    /* A newer caller's larger struct is zeroed in full (its defaults). */
    memset(&od, GUARD, sizeof od);
    CU_ASSERT_EQUAL(attn_options_init_sized(&od.o, sizeof od.o + 8), ATTN_OK);
    CU_ASSERT_EQUAL(od.o.struct_size, sizeof od.o + 8);
    CU_ASSERT_EQUAL(od.newer, 0);
    CU_ASSERT_TRUE(intact(od.guard, sizeof od.guard));
    /* Sizes no layout has, and NULL: refused, nothing written. */
    memset(&od, GUARD, sizeof od);
    CU_ASSERT_EQUAL(attn_options_init_sized(&od.o, 12),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_options_init_sized(&od.o, sizeof od.o + 3),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_options_init_sized(&od.o, (size_t)1 << 20),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_TRUE(intact(&od, sizeof od));
    CU_ASSERT_EQUAL(attn_sdpa_desc_init_sized(NULL, sizeof sd.d),
                    ATTN_ERR_INVALID_ARGUMENT);
    /* below the first layout, which ends past dtype */
    CU_ASSERT_EQUAL(attn_sdpa_desc_init_sized(
                        &sd.d, offsetof(attn_sdpa_desc, dtype) / 8 * 8),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_mha_desc_init_sized(&md.m, 0),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_device_info_init_sized(&id.i, 8),
                    ATTN_ERR_INVALID_ARGUMENT);
}

static attn_context *native_context(void)
{
    attn_options o = ATTN_OPTIONS_INIT;
    attn_context *ctx = NULL;
    o.device = "native";
    o.threads = 1;
    CU_ASSERT_EQUAL(attn_context_create(&o, &ctx), ATTN_OK);
    return ctx;
}

/* A newer caller: members past this library's struct are fine at their
 * defaults (zero) and refused otherwise, as a whole call. */
static void test_newer_caller(void)
{
    struct {
        attn_options o;
        uint64_t newer;
    } on;
    struct {
        attn_sdpa_desc d;
        uint64_t newer;
    } dn;
    float q[8], k[8], v[8], o[8], before[8];
    attn_context *ctx = NULL;
    attn_status s;
    attn_options_init_sized(&on.o, sizeof on);
    on.o.device = "native";
    CU_ASSERT_EQUAL(attn_context_create(&on.o, &ctx), ATTN_OK);
    attn_context_destroy(ctx);
    on.newer = 1;
    ctx = NULL;
    s = attn_context_create(&on.o, &ctx);
    CU_ASSERT_EQUAL(s, ATTN_ERR_UNSUPPORTED);
    CU_ASSERT_PTR_NULL(ctx);
    CU_ASSERT_PTR_NOT_NULL(strstr(attn_last_error(), "attn_options"));
    CU_ASSERT_PTR_NOT_NULL(strstr(attn_last_error(), "newer"));

    if (!(ctx = native_context()))
        return;
    for (int i = 0; i < 8; i++) {
        q[i] = (float)i * 0.1f;
        k[i] = (float)(8 - i) * 0.1f;
        v[i] = (float)i;
        o[i] = before[i] = -7.0f;
    }
    attn_sdpa_desc_init_sized(&dn.d, sizeof dn);
    dn.d.batch = dn.d.heads_q = dn.d.heads_kv = 1;
    dn.d.seq_q = dn.d.seq_kv = 2;
    dn.d.head_dim = dn.d.head_dim_v = 4;
    CU_ASSERT_EQUAL(attn_sdpa(ctx, &dn.d, q, k, v, o, NULL), ATTN_OK);
    CU_ASSERT(memcmp(o, before, sizeof o) != 0);
    memcpy(o, before, sizeof o);
    dn.newer = 3;
    CU_ASSERT_EQUAL(attn_sdpa(ctx, &dn.d, q, k, v, o, NULL),
                    ATTN_ERR_UNSUPPORTED);
    CU_ASSERT_EQUAL(memcmp(o, before, sizeof o), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(attn_context_last_error(ctx), "newer"));
    attn_context_destroy(ctx);
}

/* The same for a KV cache: a newer caller's cache at its defaults runs,
 * one with a member this library does not know is refused, len kept. */
static void test_newer_kv_cache(void)
{
    struct {
        attn_kv_cache kv;
        uint64_t newer;
    } cn;
    float w[16], x[4], y[4], k[8], v[8];
    attn_mha_desc m = ATTN_MHA_DESC_INIT;
    attn_mha_layer *layer = NULL;
    attn_context *ctx = native_context();
    if (!ctx)
        return;
    for (int i = 0; i < 16; i++)
        w[i] = (float)(i % 5) * 0.1f;
    for (int i = 0; i < 4; i++)
        x[i] = (float)i * 0.25f;
    m.heads_q = m.heads_kv = 1;
    m.d_model = m.head_dim = 4;
    m.wq = m.wk = m.wv = m.wo = w;
    CU_ASSERT_EQUAL_FATAL(attn_mha_create(ctx, &m, 0.0f, &layer), ATTN_OK);
    CU_ASSERT_EQUAL(attn_kv_cache_init_sized(&cn.kv, sizeof cn), ATTN_OK);
    CU_ASSERT_EQUAL(cn.kv.struct_size, sizeof cn);
    CU_ASSERT_EQUAL(cn.newer, 0);
    cn.kv.k = k;
    cn.kv.v = v;
    cn.kv.capacity = 2;
    CU_ASSERT_EQUAL(attn_mha_forward_layer(ctx, layer, 1, 1, 1, ATTN_F32, x,
                                           NULL, NULL, &cn.kv, y),
                    ATTN_OK);
    CU_ASSERT_EQUAL(cn.kv.len, 1);
    cn.newer = 5;
    CU_ASSERT_EQUAL(attn_mha_forward_layer(ctx, layer, 1, 1, 1, ATTN_F32, x,
                                           NULL, NULL, &cn.kv, y),
                    ATTN_ERR_UNSUPPORTED);
    CU_ASSERT_EQUAL(cn.kv.len, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(attn_context_last_error(ctx), "newer"));
    attn_mha_destroy(layer);
    attn_context_destroy(ctx);
}

/* attn_mha_desc's first layout ends at pos_table_len: a caller of that
 * size gets F32 weights whatever its bytes past it hold; weight_dtype and
 * the padding after it are read by the full size only (pad0_ never). */
static void test_mha_first_layout(void)
{
    struct {
        attn_mha_desc m;
        uint64_t newer;
    } mn;
    float w[16], x[4], y[4], y16[4];
    uint16_t w16[16];
    attn_context *ctx = native_context();
    if (!ctx)
        return;
    for (int i = 0; i < 16; i++) {
        w[i] = (float)(i % 5) * 0.25f - 0.5f; /* exact in bfloat16 */
        w16[i] = ref_f32_to_bf16(w[i]);
    }
    for (int i = 0; i < 4; i++)
        x[i] = (float)i * 0.25f;
    memset(&mn, GUARD, sizeof mn);
    attn_mha_desc_init(&mn.m);
    mn.m.heads_q = mn.m.heads_kv = 1;
    mn.m.d_model = mn.m.head_dim = 4;
    mn.m.wq = mn.m.wk = mn.m.wv = mn.m.wo = w;
    mn.m.pad0_ = 77;
    CU_ASSERT_EQUAL(attn_mha_forward(ctx, &mn.m, 1, 1, 1, x, NULL, NULL, y),
                    ATTN_OK);
    /* the first layout: weight_dtype's bytes are not the caller's */
    mn.m.struct_size = offsetof(attn_mha_desc, weight_dtype);
    mn.m.weight_dtype = (attn_dtype)0x5a5a5a5a;
    CU_ASSERT_EQUAL(attn_mha_forward(ctx, &mn.m, 1, 1, 1, x, NULL, NULL, y16),
                    ATTN_OK);
    CU_ASSERT_EQUAL(memcmp(y, y16, sizeof y), 0);
    /* the full layout with BF16 weights holding the same values */
    mn.m.struct_size = sizeof mn.m;
    mn.m.weight_dtype = ATTN_BF16;
    mn.m.wq = mn.m.wk = mn.m.wv = mn.m.wo = (const float *)(void *)w16;
    CU_ASSERT_EQUAL(attn_mha_forward(ctx, &mn.m, 1, 1, 1, x, NULL, NULL, y16),
                    ATTN_OK);
    CU_ASSERT_EQUAL(memcmp(y, y16, sizeof y), 0);
    /* a newer caller's member past the library's is refused */
    mn.m.struct_size = sizeof mn;
    mn.newer = 1;
    CU_ASSERT_EQUAL(attn_mha_forward(ctx, &mn.m, 1, 1, 1, x, NULL, NULL, y16),
                    ATTN_ERR_UNSUPPORTED);
    attn_context_destroy(ctx);
}

/* An uninitialised struct_size (anything no layout has) is refused. */
static void test_bad_sizes(void)
{
    static const size_t bad[] = {8, 13, (size_t)1 << 17, (size_t)-8};
    attn_context *ctx = native_context();
    float x[4] = {0}, y[4];
    if (!ctx)
        return;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        attn_options o = ATTN_OPTIONS_INIT;
        attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
        attn_mha_desc m = ATTN_MHA_DESC_INIT;
        attn_mask_desc k = ATTN_MASK_DESC_INIT;
        attn_device_info info = ATTN_DEVICE_INFO_INIT;
        attn_context *c2 = NULL;
        size_t n;
        o.struct_size = bad[i];
        CU_ASSERT_EQUAL(attn_context_create(&o, &c2),
                        ATTN_ERR_INVALID_ARGUMENT);
        CU_ASSERT_PTR_NOT_NULL(strstr(attn_last_error(), "struct_size"));
        d.batch = d.heads_q = d.heads_kv = d.seq_q = d.seq_kv = 1;
        d.head_dim = d.head_dim_v = 4;
        d.struct_size = bad[i];
        CU_ASSERT_EQUAL(attn_sdpa(ctx, &d, x, x, x, y, NULL),
                        ATTN_ERR_INVALID_ARGUMENT);
        CU_ASSERT_EQUAL(attn_sdpa_kernel(ctx, &d, (char *)y, sizeof y),
                        ATTN_ERR_INVALID_ARGUMENT);
        m.struct_size = bad[i];
        CU_ASSERT_EQUAL(attn_mha_forward(ctx, &m, 1, 1, 1, x, NULL, NULL, y),
                        ATTN_ERR_INVALID_ARGUMENT);
        k.struct_size = bad[i];
        m.struct_size = sizeof m;
        CU_ASSERT_EQUAL(attn_mha_forward(ctx, &m, 1, 1, 1, x, NULL, &k, y),
                        ATTN_ERR_INVALID_ARGUMENT);
        CU_ASSERT_PTR_NOT_NULL(strstr(attn_last_error(), "attn_mask_desc"));
        info.struct_size = bad[i];
        CU_ASSERT_EQUAL(attn_context_device(ctx, &info),
                        ATTN_ERR_INVALID_ARGUMENT);
        CU_ASSERT_EQUAL(attn_devices(&info, 1, &n), ATTN_ERR_INVALID_ARGUMENT);
    }
    attn_context_destroy(ctx);
}

/* A newer caller's device array: walked by its larger element size, the
 * members this library does not know left as they were. */
static void test_device_stride(void)
{
    typedef struct newer_info {
        attn_device_info info;
        unsigned char extra[40];
    } newer_info;
    newer_info arr[3], was[3];
    attn_context *ctx;
    size_t n = 0;
    memset(arr, GUARD, sizeof arr);
    arr[0].info.struct_size = sizeof arr[0];
    memcpy(was, arr, sizeof arr);
    CU_ASSERT_EQUAL_FATAL(attn_devices(&arr[0].info, 2, &n), ATTN_OK);
    for (size_t i = 0; i < 3; i++) {
        CU_ASSERT_TRUE(intact(arr[i].extra, sizeof arr[i].extra));
        if (i < n && i < 2) {
            CU_ASSERT_EQUAL(arr[i].info.struct_size, sizeof arr[0]);
            CU_ASSERT(arr[i].info.platform_index >= 0);
            CU_ASSERT_PTR_NOT_NULL(memchr(arr[i].info.opencl_version, '\0',
                                          sizeof arr[i].info.opencl_version));
        } else { /* as the caller left it (struct_size in element 0) */
            CU_ASSERT_EQUAL(
                memcmp(&arr[i].info, &was[i].info, sizeof arr[i].info), 0);
        }
    }
    if (!(ctx = native_context()))
        return;
    memset(arr, GUARD, sizeof arr);
    arr[0].info.struct_size = sizeof arr[0];
    CU_ASSERT_EQUAL(attn_context_device(ctx, &arr[0].info), ATTN_OK);
    CU_ASSERT_EQUAL(arr[0].info.kind, ATTN_DEVICE_NATIVE);
    CU_ASSERT_STRING_EQUAL(arr[0].info.opencl_version, "");
    CU_ASSERT_TRUE(intact(arr[0].extra, sizeof arr[0].extra));
    attn_context_destroy(ctx);
}

/* A caller of attn_sdpa_desc's first layout: its tail padding (pad0_
 * now) holds whatever it holds and the bytes behind its struct, where
 * causal_align now stands, are not read: the call is bottom-right causal,
 * as before; a caller of this layout asking TOP_LEFT gets it. */
static void test_sdpa_first_layout(void)
{
    const size_t n = offsetof(attn_sdpa_desc, causal_align);
    union {
        attn_sdpa_desc d;
        unsigned char b[sizeof(attn_sdpa_desc) + 16];
    } u;
    attn_sdpa_desc full = ATTN_SDPA_DESC_INIT;
    /* query 0 sees key 2 bottom-right (keys 0..2), key 0 top-left */
    const float q[8] = {0}, k[16] = {0},
                v[16] = {1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0};
    float o[8], want[8];
    attn_context *ctx = native_context();
    if (!ctx)
        return;
    memset(&u, GUARD, sizeof u);
    CU_ASSERT_EQUAL_FATAL(attn_sdpa_desc_init_sized(&u.d, n), ATTN_OK);
    CU_ASSERT_TRUE(intact(u.b + n, sizeof u.b - n));
    memset((unsigned char *)&u.d + offsetof(attn_sdpa_desc, pad0_), GUARD,
           n - offsetof(attn_sdpa_desc, pad0_));
    u.d.batch = u.d.heads_q = u.d.heads_kv = 1;
    u.d.seq_q = 2;
    u.d.seq_kv = 4;
    u.d.head_dim = u.d.head_dim_v = 4;
    u.d.mask.causal = 1;
    CU_ASSERT_EQUAL(attn_sdpa(ctx, &u.d, q, k, v, o, NULL), ATTN_OK);
    /* row 0: keys 0..2, v 1, 0, 2 in column 0 */
    CU_ASSERT_DOUBLE_EQUAL(o[0], 1.0, 1e-6);
    memcpy(&full, &u.d, n);
    full.struct_size = sizeof full;
    full.pad0_ = 0;
    full.causal_align = ATTN_CAUSAL_BOTTOM_RIGHT;
    CU_ASSERT_EQUAL(attn_sdpa(ctx, &full, q, k, v, want, NULL), ATTN_OK);
    CU_ASSERT_EQUAL(memcmp(o, want, sizeof o), 0);
    full.causal_align = ATTN_CAUSAL_TOP_LEFT;
    CU_ASSERT_EQUAL(attn_sdpa(ctx, &full, q, k, v, o, NULL), ATTN_OK);
    CU_ASSERT_DOUBLE_EQUAL(o[0], 1.0, 1e-6); /* key 0 alone */
    CU_ASSERT_DOUBLE_EQUAL(o[4], 0.5, 1e-6); /* keys 0, 1 */
    attn_context_destroy(ctx);
}

/* A caller of the layout that ends at cu_seqlens_kv (before
 * causal_offset): the bytes behind its struct, where causal_offset now
 * stands (GUARD there would move the diagonal out of range), are not
 * read: the call is causal on the alignment's own diagonal. */
static void test_sdpa_seqlens_layout(void)
{
    const size_t n = offsetof(attn_sdpa_desc, causal_offset);
    union {
        attn_sdpa_desc d;
        unsigned char b[sizeof(attn_sdpa_desc) + 16];
    } u;
    attn_sdpa_desc full = ATTN_SDPA_DESC_INIT;
    const float q[8] = {0}, k[16] = {0},
                v[16] = {1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0};
    float o[8];
    attn_context *ctx = native_context();
    if (!ctx)
        return;
    memset(&u, GUARD, sizeof u);
    CU_ASSERT_EQUAL_FATAL(attn_sdpa_desc_init_sized(&u.d, n), ATTN_OK);
    CU_ASSERT_TRUE(intact(u.b + n, sizeof u.b - n));
    u.d.batch = u.d.heads_q = u.d.heads_kv = 1;
    u.d.seq_q = 2;
    u.d.seq_kv = 4;
    u.d.head_dim = u.d.head_dim_v = 4;
    u.d.mask.causal = 1;
    u.d.causal_align = ATTN_CAUSAL_TOP_LEFT;
    CU_ASSERT_EQUAL(attn_sdpa(ctx, &u.d, q, k, v, o, NULL), ATTN_OK);
    CU_ASSERT_DOUBLE_EQUAL(o[0], 1.0, 1e-6); /* key 0 alone */
    CU_ASSERT_DOUBLE_EQUAL(o[4], 0.5, 1e-6); /* keys 0, 1 */
    /* the same call of the full layout moved by causal_offset 2: row 1
     * sees keys 0..3 */
    memcpy(&full, &u.d, n);
    full.struct_size = sizeof full;
    full.causal_offset = 2;
    CU_ASSERT_EQUAL(attn_sdpa(ctx, &full, q, k, v, o, NULL), ATTN_OK);
    CU_ASSERT_DOUBLE_EQUAL(o[4], 0.75, 1e-6);
    attn_context_destroy(ctx);
}

/* A caller of the layout that ends at `kernel` (before `precision`): the
 * bytes behind its struct, where `precision` now stands, are not read
 * (GUARD there would be a precision outside the enum), and the context
 * runs at what ATTN_PRECISION says, else EXACT. */
static void test_kernel_layout(void)
{
    const size_t n = offsetof(attn_options, precision);
    union {
        attn_options o;
        unsigned char b[sizeof(attn_options) + 16];
    } u;
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    attn_precision asked = (attn_precision)9, runs = (attn_precision)9;
    attn_context *ctx = NULL;
    d.batch = d.heads_q = d.heads_kv = d.seq_q = d.seq_kv = 1;
    d.head_dim = d.head_dim_v = 4;
    memset(&u, GUARD, sizeof u);
    CU_ASSERT_EQUAL_FATAL(attn_options_init_sized(&u.o, n), ATTN_OK);
    CU_ASSERT_TRUE(intact(u.b + n, sizeof u.b - n));
    u.o.device = "native";
    u.o.threads = 1;
    CU_ASSERT_EQUAL_FATAL(attn_context_create(&u.o, &ctx), ATTN_OK);
    CU_ASSERT_EQUAL(attn_sdpa_precision(ctx, &d, &asked, &runs), ATTN_OK);
    CU_ASSERT_EQUAL(asked, ATTN_PRECISION_EXACT);
    CU_ASSERT_EQUAL(runs, ATTN_PRECISION_EXACT);
    attn_context_destroy(ctx);
    ctx = NULL;
    setenv("ATTN_PRECISION", "tf32", 1);
    CU_ASSERT_EQUAL_FATAL(attn_context_create(&u.o, &ctx), ATTN_OK);
    CU_ASSERT_EQUAL(attn_sdpa_precision(ctx, &d, &asked, NULL),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_sdpa_precision(ctx, &d, &asked, &runs), ATTN_OK);
    CU_ASSERT_EQUAL(asked, ATTN_PRECISION_TF32);
    unsetenv("ATTN_PRECISION");
    attn_context_destroy(ctx);
}

int main(void)
{
    static const harness_test tests[] = {
        {"old caller on this library", test_old_caller},
        {"initializers", test_initializers},
        {"init functions write the caller's size", test_init_sized},
        {"newer caller", test_newer_caller},
        {"newer caller's KV cache", test_newer_kv_cache},
        {"a caller of the layout with kernel", test_kernel_layout},
        {"a caller of the first attn_sdpa_desc layout", test_sdpa_first_layout},
        {"a caller of attn_sdpa_desc before causal_offset",
         test_sdpa_seqlens_layout},
        {"a caller of the first attn_mha_desc layout", test_mha_first_layout},
        {"sizes no layout has", test_bad_sizes},
        {"device arrays by the caller's element size", test_device_stride},
        {NULL, NULL}};
    unsetenv("ATTN_DEVICE");
    unsetenv("ATTN_NUM_THREADS");
    unsetenv("ATTN_PRECISION");
    return harness_main("abi", NULL, NULL, tests);
}
