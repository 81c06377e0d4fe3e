/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The caller's structs read by the caller's size (docs/ABI.md): every
 * public struct a caller fills starts with its struct_size; the library
 * reads the members that size covers, gives the others their defaults
 * (zero), and refuses a newer caller's members it does not know unless
 * they hold their defaults.  Not installed.
 */
#ifndef ATTN_API_ABI_H
#define ATTN_API_ABI_H

#include <stdalign.h>

#include "core/core.h"

/* Sizes above this are refused (an uninitialised struct_size, most
 * likely): no struct of the API comes near it. */
#define ATTN_ABI_SIZE_MAX 65536

/* The first layouts: what struct_size 0 means, and the smallest size
 * accepted.  Members added since then end each list. */
#define ATTN_ABI_OPTIONS_FIRST     offsetof(attn_options, kernel)
#define ATTN_ABI_DEVICE_INFO_FIRST offsetof(attn_device_info, opencl_version)
#define ATTN_ABI_MASK_FIRST        sizeof(attn_mask_desc)
/* attn_sdpa_desc's first layout ends at dtype, rounded up to the struct's
 * alignment (its tail padding, which pad0_ now names). */
#define ATTN_ABI_SDPA_FIRST                                                    \
    ((offsetof(attn_sdpa_desc, dtype) + sizeof(attn_dtype) +                   \
      alignof(attn_sdpa_desc) - 1) /                                           \
     alignof(attn_sdpa_desc) * alignof(attn_sdpa_desc))
/* attn_mha_desc's first layout ends at pos_table_len (no tail padding). */
#define ATTN_ABI_MHA_FIRST      offsetof(attn_mha_desc, weight_dtype)
#define ATTN_ABI_KV_CACHE_FIRST sizeof(attn_kv_cache)
#define ATTN_ABI_GRAD_FIRST     offsetof(attn_sdpa_grad, dbias)
#define ATTN_ABI_MHA_GRAD_FIRST sizeof(attn_mha_grad)

/* One struct of the API: its name for messages, its first layout's size
 * and the library's own size. */
typedef struct attn_abi_layout {
    const char *name;
    size_t first, size;
} attn_abi_layout;

/* The size the caller's struct at in says it has (0 read as the first
 * layout).  Errors: ATTN_ERR_INVALID_ARGUMENT (smaller than the first
 * layout, larger than ATTN_ABI_SIZE_MAX or not a multiple of
 * alignof(size_t)). */
attn_status attn_abi_size(const void *in, const attn_abi_layout *l,
                          size_t *size, attn_err *err);

/* Copies the caller's struct at in into out (the library's layout, l->size
 * bytes): the members its size covers, the rest zero; out's struct_size
 * becomes l->size.  Errors: those of attn_abi_size, and
 * ATTN_ERR_UNSUPPORTED when a member past the library's layout is not
 * zero (the caller needs a newer libattn). */
attn_status attn_abi_read(void *out, const void *in, const attn_abi_layout *l,
                          attn_err *err);

/* attn_options (NULL: the defaults) into *out. */
attn_status attn_abi_options(const attn_options *in, attn_options *out,
                             attn_err *err);
/* A descriptor into *copy; *use is copy, or NULL when in is NULL (the
 * validation then says so). */
attn_status attn_abi_sdpa_desc(const attn_sdpa_desc *in, attn_sdpa_desc *copy,
                               const attn_sdpa_desc **use, attn_err *err);
attn_status attn_abi_mask_desc(const attn_mask_desc *in, attn_mask_desc *copy,
                               const attn_mask_desc **use, attn_err *err);
attn_status attn_abi_mha_desc(const attn_mha_desc *in, attn_mha_desc *copy,
                              const attn_mha_desc **use, attn_err *err);
attn_status attn_abi_kv_cache(const attn_kv_cache *in, attn_kv_cache *copy,
                              const attn_kv_cache **use, attn_err *err);

/* The element size of the caller's attn_device_info at out (its
 * struct_size, 0 read as the first layout).  Errors: attn_abi_size's. */
attn_status attn_abi_info_size(const attn_device_info *out, size_t *size,
                               attn_err *err);
/* Writes info into the caller's attn_device_info at dst, which is size
 * bytes: the members size covers, nothing past them; dst's struct_size
 * becomes raw (the value the caller set). */
void attn_abi_info_put(void *dst, size_t size, size_t raw,
                       const attn_device_info *info);

#ifdef ATTN_HAVE_OPENCL
/* attn_cl_buffers (attn_cl.h; read with attn_abi_read). */
extern const attn_abi_layout attn_abi_cl_buffers_layout;
/* attn_cl_grad_buffers (attn_cl.h; read with attn_abi_read). */
extern const attn_abi_layout attn_abi_cl_grad_buffers_layout;
#endif

#endif /* ATTN_API_ABI_H */
