/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading the caller's structs by the caller's size, and the init
 * functions that set it (docs/ABI.md).  A struct_size smaller than the
 * library's is an older caller: the members it lacks take their defaults,
 * which are zero for every member added after a first layout.  A larger
 * one is a newer caller: the members this library does not know must hold
 * their defaults (zero), else the call is refused rather than half done.
 */
#include <stdalign.h>
#include <string.h>

#include "api/abi.h"
#ifdef ATTN_HAVE_OPENCL
#include "attn/attn_cl.h"
#endif

/* A member added after a first layout must start at or past that
 * layout's end: one placed in its tail padding would be read from an
 * older caller's padding. */
_Static_assert(ATTN_ABI_OPTIONS_FIRST < sizeof(attn_options),
               "attn_options grew past its first layout");
_Static_assert(ATTN_ABI_DEVICE_INFO_FIRST < sizeof(attn_device_info),
               "attn_device_info grew past its first layout");
/* The same for each member added since, against the struct as it was:
 * precision after kernel (attn_options' second layout). */
_Static_assert(offsetof(attn_options, precision) >=
                   offsetof(attn_options, kernel) + sizeof(const char *),
               "attn_options.precision starts past the layout with kernel");
/* causal_align past attn_sdpa_desc's first layout (pad0_ fills its
 * tail). */
_Static_assert(offsetof(attn_sdpa_desc, causal_align) >= ATTN_ABI_SDPA_FIRST,
               "attn_sdpa_desc.causal_align starts past the first layout");
_Static_assert(offsetof(attn_sdpa_desc, bias_shape) >=
                   offsetof(attn_sdpa_desc, causal_align) +
                       sizeof(attn_causal_align),
               "attn_sdpa_desc.bias_shape starts past causal_align");
_Static_assert(offsetof(attn_sdpa_desc, keep) >=
                   offsetof(attn_sdpa_desc, bias_shape) + 3 * sizeof(int),
               "attn_sdpa_desc.keep starts past bias_shape");
_Static_assert(offsetof(attn_sdpa_desc, q_start) >=
                   offsetof(attn_sdpa_desc, keep_shape) + 3 * sizeof(int),
               "attn_sdpa_desc.q_start starts past keep_shape");
_Static_assert(offsetof(attn_sdpa_desc, q_strides) >=
                   offsetof(attn_sdpa_desc, kv_start) + sizeof(const int32_t *),
               "attn_sdpa_desc.q_strides starts past kv_start");
_Static_assert(offsetof(attn_sdpa_desc, cu_seqlens_q) >=
                   offsetof(attn_sdpa_desc, o_strides) + 3 * sizeof(int64_t),
               "attn_sdpa_desc.cu_seqlens_q starts past o_strides");
_Static_assert(offsetof(attn_sdpa_desc, causal_offset) >=
                   offsetof(attn_sdpa_desc, cu_seqlens_kv) +
                       sizeof(const int32_t *),
               "attn_sdpa_desc.causal_offset starts past cu_seqlens_kv");
/* weight_dtype past attn_mha_desc's first layout, which ends at
 * pos_table_len with no tail padding of its own. */
_Static_assert(ATTN_ABI_MHA_FIRST ==
                       offsetof(attn_mha_desc, pos_table_len) + sizeof(int) &&
                   ATTN_ABI_MHA_FIRST % alignof(size_t) == 0,
               "attn_mha_desc.weight_dtype starts past the first layout");
_Static_assert(offsetof(attn_options, struct_size) == 0 &&
                   offsetof(attn_device_info, struct_size) == 0 &&
                   offsetof(attn_mask_desc, struct_size) == 0 &&
                   offsetof(attn_sdpa_desc, struct_size) == 0 &&
                   offsetof(attn_mha_desc, struct_size) == 0 &&
                   offsetof(attn_kv_cache, struct_size) == 0,
               "struct_size comes first");

static const attn_abi_layout options_layout = {
    "attn_options", ATTN_ABI_OPTIONS_FIRST, sizeof(attn_options)};
static const attn_abi_layout info_layout = {
    "attn_device_info", ATTN_ABI_DEVICE_INFO_FIRST, sizeof(attn_device_info)};
static const attn_abi_layout mask_layout = {
    "attn_mask_desc", ATTN_ABI_MASK_FIRST, sizeof(attn_mask_desc)};
static const attn_abi_layout sdpa_layout = {
    "attn_sdpa_desc", ATTN_ABI_SDPA_FIRST, sizeof(attn_sdpa_desc)};
static const attn_abi_layout mha_layout = {"attn_mha_desc", ATTN_ABI_MHA_FIRST,
                                           sizeof(attn_mha_desc)};

static const attn_abi_layout kv_cache_layout = {
    "attn_kv_cache", ATTN_ABI_KV_CACHE_FIRST, sizeof(attn_kv_cache)};

static int size_ok(size_t n, const attn_abi_layout *l)
{
    return n >= l->first && n <= ATTN_ABI_SIZE_MAX && n % alignof(size_t) == 0;
}

attn_status attn_abi_size(const void *in, const attn_abi_layout *l,
                          size_t *size, attn_err *err)
{
    size_t n;
    memcpy(&n, in, sizeof n);
    if (n == 0)
        n = l->first;
    if (!size_ok(n, l))
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "%s.struct_size %zu is the size of no %s (0, or a "
                         "multiple of %zu from %zu to %d: set it with the "
                         "initializer or init function of %s)",
                         l->name, n, l->name, alignof(size_t), l->first,
                         ATTN_ABI_SIZE_MAX, l->name);
    *size = n;
    return ATTN_OK;
}

attn_status attn_abi_read(void *out, const void *in, const attn_abi_layout *l,
                          attn_err *err)
{
    const unsigned char *p = in;
    size_t n = 0;
    attn_status s = attn_abi_size(in, l, &n, err);
    if (s)
        return s;
    memset(out, 0, l->size);
    memcpy(out, in, n < l->size ? n : l->size);
    for (size_t i = l->size; i < n; i++)
        if (p[i])
            return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                             "%s: byte %zu of %zu is set, past the %zu "
                             "bytes this libattn (%s) knows: a member of a "
                             "newer libattn is used",
                             l->name, i, n, l->size, attn_version());
    memcpy(out, &l->size, sizeof l->size);
    return ATTN_OK;
}

attn_status attn_abi_options(const attn_options *in, attn_options *out,
                             attn_err *err)
{
    if (!in) {
        attn_options_init_sized(out, sizeof *out);
        return ATTN_OK;
    }
    return attn_abi_read(out, in, &options_layout, err);
}

attn_status attn_abi_sdpa_desc(const attn_sdpa_desc *in, attn_sdpa_desc *copy,
                               const attn_sdpa_desc **use, attn_err *err)
{
    attn_status s;
    *use = NULL;
    if (!in)
        return ATTN_OK;
    if ((s = attn_abi_read(copy, in, &sdpa_layout, err)))
        return s;
    /* The descriptor's size covers its mask (attn.h). */
    copy->mask.struct_size = sizeof copy->mask;
    /* padding, which an older caller's struct_size covers unset */
    copy->pad0_ = 0;
    *use = copy;
    return ATTN_OK;
}

attn_status attn_abi_mask_desc(const attn_mask_desc *in, attn_mask_desc *copy,
                               const attn_mask_desc **use, attn_err *err)
{
    attn_status s;
    *use = NULL;
    if (!in)
        return ATTN_OK;
    if ((s = attn_abi_read(copy, in, &mask_layout, err)))
        return s;
    *use = copy;
    return ATTN_OK;
}

attn_status attn_abi_mha_desc(const attn_mha_desc *in, attn_mha_desc *copy,
                              const attn_mha_desc **use, attn_err *err)
{
    attn_status s;
    *use = NULL;
    if (!in)
        return ATTN_OK;
    if ((s = attn_abi_read(copy, in, &mha_layout, err)))
        return s;
    copy->pad0_ = 0; /* padding, not read */
    *use = copy;
    return ATTN_OK;
}

attn_status attn_abi_kv_cache(const attn_kv_cache *in, attn_kv_cache *copy,
                              const attn_kv_cache **use, attn_err *err)
{
    attn_status s;
    *use = NULL;
    if (!in)
        return ATTN_OK;
    if ((s = attn_abi_read(copy, in, &kv_cache_layout, err)))
        return s;
    *use = copy;
    return ATTN_OK;
}

attn_status attn_abi_info_size(const attn_device_info *out, size_t *size,
                               attn_err *err)
{
    return attn_abi_size(out, &info_layout, size, err);
}

void attn_abi_info_put(void *dst, size_t size, size_t raw,
                       const attn_device_info *info)
{
    size_t n = size < sizeof *info ? size : sizeof *info;
    memcpy(dst, info, n);
    memcpy(dst, &raw, sizeof raw);
}

/* ---- the init functions (attn.h, attn_cl.h) ------------------------------
 * Each writes exactly the caller's size: zeroes, then the defaults that
 * are not zero (all of them inside the first layouts). */

static attn_status init_sized(void *p, size_t size, const attn_abi_layout *l,
                              const char *fn)
{
    attn_err err = {{0}};
    if (!p || !size_ok(size, l)) {
        if (!p)
            attn_fail(&err, ATTN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                      l->name);
        else
            attn_fail(&err, ATTN_ERR_INVALID_ARGUMENT,
                      "%s: %zu is the size of no %s (a multiple of %zu from "
                      "%zu to %d)",
                      fn, size, l->name, alignof(size_t), l->first,
                      ATTN_ABI_SIZE_MAX);
        attn_thread_set_error(err.msg);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    memset(p, 0, size);
    memcpy(p, &size, sizeof size);
    return ATTN_OK;
}

attn_status attn_options_init_sized(attn_options *o, size_t size)
{
    attn_status s =
        init_sized(o, size, &options_layout, "attn_options_init_sized");
    if (s == ATTN_OK) {
        o->device = "auto";
        o->allow_fallback = 1;
    }
    return s;
}

/* The function behind the macro of the same name (attn.h): the first
 * layout, the one every caller's attn_options has. */
void(attn_options_init)(attn_options *o)
{
    if (o)
        attn_options_init_sized(o, ATTN_ABI_OPTIONS_FIRST);
}

attn_status attn_device_info_init_sized(attn_device_info *info, size_t size)
{
    return init_sized(info, size, &info_layout, "attn_device_info_init_sized");
}

attn_status attn_sdpa_desc_init_sized(attn_sdpa_desc *d, size_t size)
{
    attn_status s =
        init_sized(d, size, &sdpa_layout, "attn_sdpa_desc_init_sized");
    if (s == ATTN_OK)
        d->mask.struct_size = sizeof d->mask;
    return s;
}

attn_status attn_mask_desc_init_sized(attn_mask_desc *m, size_t size)
{
    return init_sized(m, size, &mask_layout, "attn_mask_desc_init_sized");
}

attn_status attn_mha_desc_init_sized(attn_mha_desc *m, size_t size)
{
    return init_sized(m, size, &mha_layout, "attn_mha_desc_init_sized");
}

attn_status attn_kv_cache_init_sized(attn_kv_cache *kv, size_t size)
{
    return init_sized(kv, size, &kv_cache_layout, "attn_kv_cache_init_sized");
}

#ifdef ATTN_HAVE_OPENCL
_Static_assert(offsetof(attn_cl_buffers, struct_size) == 0,
               "struct_size comes first");

const attn_abi_layout attn_abi_cl_buffers_layout = {
    "attn_cl_buffers", sizeof(attn_cl_buffers), sizeof(attn_cl_buffers)};

attn_status attn_cl_buffers_init_sized(attn_cl_buffers *b, size_t size)
{
    return init_sized(b, size, &attn_abi_cl_buffers_layout,
                      "attn_cl_buffers_init_sized");
}

_Static_assert(offsetof(attn_cl_grad_buffers, struct_size) == 0,
               "struct_size comes first");

const attn_abi_layout attn_abi_cl_grad_buffers_layout = {
    "attn_cl_grad_buffers", sizeof(attn_cl_grad_buffers),
    sizeof(attn_cl_grad_buffers)};

attn_status attn_cl_grad_buffers_init_sized(attn_cl_grad_buffers *g,
                                            size_t size)
{
    return init_sized(g, size, &attn_abi_cl_grad_buffers_layout,
                      "attn_cl_grad_buffers_init_sized");
}
#endif
