/* SPDX-License-Identifier: Apache-2.0 */
/* Kernel sources and profiles embedded at build time (see
 * cmake/embed_kernels.cmake).  Not installed. */
#ifndef ATTN_OPENCL_EMBEDDED_H
#define ATTN_OPENCL_EMBEDDED_H

#include <stddef.h>

typedef struct attn_embedded_file {
    const char *name; /* file name without folder, e.g. "score.cl" */
    const char *data; /* NUL-terminated */
    size_t size;      /* bytes, without the NUL */
} attn_embedded_file;

/* Terminated by an entry whose name is NULL. */
extern const attn_embedded_file attn_embedded_files[];

#endif /* ATTN_OPENCL_EMBEDDED_H */
