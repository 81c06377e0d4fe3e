/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Argument checks of attn_sdpa_ring (ring_check.c).
 */
#ifndef ATTN_RING_CHECK_H
#define ATTN_RING_CHECK_H

#include "ring_impl.h"

/* Reads the caller's ring and sdpa descriptors by their struct_size into
 * *r_out and *d_out (full current layouts) and checks the global problem:
 * ATTN_OK, or the status of attn_sdpa_ring with a sentence in why. */
attn_status ring_check_descs(const attn_ring_desc *ring,
                             const attn_sdpa_desc *d, attn_ring_desc *r_out,
                             attn_sdpa_desc *d_out, char *why, size_t cap);

/* The size a caller's struct is read by (given: its struct_size; 0 means
 * known, the current layout), or 0 when it is no layout: from first (the
 * oldest layout this library takes) up. */
size_t ring_read_size(size_t given, size_t first, size_t known);
/* Whether the bytes of a caller's struct of size bytes past the known
 * ones (the members this library knows) are all zero (docs/ABI.md). */
int ring_tail_zero(const void *p, size_t size, size_t known);

/* A hash of everything that must be equal on every rank. */
uint32_t ring_hash(const attn_ring_desc *ring, const ring_layout *l,
                   const attn_sdpa_desc *g);

#endif /* ATTN_RING_CHECK_H */
