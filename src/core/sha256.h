/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SHA-256 (FIPS 180-4), for the integrity of the program cache's entries.
 * A small implementation of the standard's own description: no tables
 * beyond the round constants, no platform code.  Not installed.
 */
#ifndef ATTN_SHA256_H
#define ATTN_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define ATTN_SHA256_BYTES 32

typedef struct attn_sha256_ctx {
    uint32_t h[8];
    uint64_t total; /* bytes hashed so far */
    unsigned char block[64];
    size_t used; /* bytes waiting in block */
} attn_sha256_ctx;

/* Starts a hash. */
void attn_sha256_init(attn_sha256_ctx *s);
/* Adds n bytes of p (p may be NULL when n is 0). */
void attn_sha256_update(attn_sha256_ctx *s, const void *p, size_t n);
/* Ends the hash and writes the 32-byte digest; s must be initialised again
 * before it is reused. */
void attn_sha256_final(attn_sha256_ctx *s,
                       unsigned char out[ATTN_SHA256_BYTES]);
/* The digest of n bytes of p in one call. */
void attn_sha256(const void *p, size_t n, unsigned char out[ATTN_SHA256_BYTES]);

#endif /* ATTN_SHA256_H */
