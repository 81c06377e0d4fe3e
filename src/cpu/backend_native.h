/*
 * The native backend: the CPU kernels of src/cpu behind the backend
 * interface (core/backend.h).  Not installed.
 */
#ifndef ATTN_CPU_BACKEND_NATIVE_H
#define ATTN_CPU_BACKEND_NATIVE_H

#include "core/backend.h"

/* The native backend on `threads` (>= 1) worker threads.  Errors:
 * ATTN_ERR_OUT_OF_MEMORY (threads or memory). */
attn_status attn_backend_native_create(int threads, const attn_logger *lg,
                                       attn_backend **out, attn_err *err);

#endif /* ATTN_CPU_BACKEND_NATIVE_H */
