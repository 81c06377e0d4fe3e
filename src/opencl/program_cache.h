/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The on-disk program cache: the key of a program, the format of an entry,
 * and the checks that decide whether a folder or an entry is trusted.
 * program.c calls these with rt->build_lock held.  Not installed.
 *
 * Trust: the cache folder (the last part of its path) and every entry are
 * opened without following a symbolic link and checked on the open
 * descriptor (fstat): the folder must be a folder, the entry a regular
 * file, both owned by the effective user and writable by nobody else
 * (no group or other write bit).  A folder that fails is neither read nor
 * written; an entry that fails is neither read, replaced nor removed.
 * Either is logged at WARN with its path and the reason.  Folders the
 * cache creates are 0700, entries 0600.
 *
 * An entry is
 *     magic "ATTNPRG2" | key (32) | size (u64, little-endian) |
 *     SHA-256 of key, size and binary (32) | binary (size bytes)
 * named "<key in hex>.clbin"; its size is checked against the file's
 * before anything is allocated, and is at most ATTN_CL_CACHE_ENTRY_MAX.
 */
#ifndef ATTN_OPENCL_PROGRAM_CACHE_H
#define ATTN_OPENCL_PROGRAM_CACHE_H

#include "opencl/runtime.h"
#include "core/sha256.h"

#define ATTN_CL_CACHE_KEY_BYTES ATTN_SHA256_BYTES
/* The largest program binary an entry may hold. */
#define ATTN_CL_CACHE_ENTRY_MAX ((uint64_t)256 << 20)
/* The entry's header: magic, key, size, checksum. */
#define ATTN_CL_CACHE_HEADER (8 + ATTN_CL_CACHE_KEY_BYTES + 8 + 32)

/* The cache of one program while it is built. */
typedef struct attn_cl_cache {
    const attn_cl_runtime *rt;
    unsigned char key[ATTN_CL_CACHE_KEY_BYTES];
    char name[2 * ATTN_CL_CACHE_KEY_BYTES + 8]; /* "<hex>.clbin" */
    int dir_fd; /* the checked folder; -1 when not open */
    int state;  /* what may be done (program_cache.c) */
} attn_cl_cache;

/* The key of a program: SHA-256 of the library version, the source text,
 * the build options and the identity of the platform, the device and the
 * driver as the device reports them now (names, vendors, versions, vendor
 * id, address bits, extensions), never a copy in rt->info. */
void attn_cl_cache_key(const attn_cl_runtime *rt, const char *src,
                       size_t src_len, const char *options,
                       unsigned char key[ATTN_CL_CACHE_KEY_BYTES]);

/* Starts the cache of one program: opens and checks rt's cache folder
 * when it exists.  c is always usable afterwards (a cache that is off,
 * missing or refused just finds nothing). */
void attn_cl_cache_open(const attn_cl_runtime *rt,
                        const unsigned char key[ATTN_CL_CACHE_KEY_BYTES],
                        attn_cl_cache *c);
/* The binary of the program's entry (malloc'd, *n bytes), or NULL: no
 * entry, or one that is refused or corrupt (logged). */
unsigned char *attn_cl_cache_read(attn_cl_cache *c, size_t *n);
/* Removes the entry read (it held a wrong program).  Logs a failure. */
void attn_cl_cache_remove(attn_cl_cache *c);
/* Writes the program's entry (the folder is created first when missing),
 * unless the folder or the entry was refused.  Atomic: a temporary file of
 * this call, flushed and renamed into place.  Failures are logged; the
 * program just stays uncached. */
void attn_cl_cache_write(attn_cl_cache *c, const unsigned char *bin, size_t n);
/* Ends the cache of one program (closes the folder). */
void attn_cl_cache_close(attn_cl_cache *c);

#endif /* ATTN_OPENCL_PROGRAM_CACHE_H */
