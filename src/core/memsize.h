/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sizes of memory in messages, and the host's memory: a call that needs
 * more than the host (or a device) has is refused before anything is
 * allocated, with a message that names the size.
 */
#ifndef ATTN_MEMSIZE_H
#define ATTN_MEMSIZE_H

#include <stddef.h>
#include <stdint.h>

/* Physical memory of the host in bytes; 0 when unknown. */
uint64_t attn_host_memory_bytes(void);

/* Writes "<bytes> bytes (<x.y> GiB|MiB|KiB)" into buf and returns buf. */
#define ATTN_BYTES_TEXT_MAX 64
const char *attn_bytes_text(char *buf, size_t cap, uint64_t bytes);

#endif /* ATTN_MEMSIZE_H */
