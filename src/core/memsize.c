/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sizes of memory in messages, the host's memory, and size arithmetic
 * that cannot overflow (attn_mul_size, core.h).
 */
#include "core/memsize.h"

#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "core/core.h"

int attn_mul_size(size_t *r, size_t a, size_t b)
{
    if (a != 0 && b > SIZE_MAX / a)
        return 0;
    *r = a * b;
    return 1;
}

int attn_mul_sizes(size_t *r, int n, const size_t *f)
{
    size_t acc = 1;
    for (int i = 0; i < n; i++)
        if (!attn_mul_size(&acc, acc, f[i]))
            return 0;
    *r = acc;
    return 1;
}

uint64_t attn_host_memory_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0)
        return 0;
    return (uint64_t)pages * (uint64_t)page;
}

const char *attn_bytes_text(char *buf, size_t cap, uint64_t bytes)
{
    static const char *const unit[] = {"KiB", "MiB", "GiB",
                                       "TiB", "PiB", "EiB"};
    double x = (double)bytes;
    int u = -1;
    while (x >= 1024.0 && u < 5) {
        x /= 1024.0;
        u++;
    }
    if (u < 0)
        snprintf(buf, cap, "%llu bytes", (unsigned long long)bytes);
    else
        snprintf(buf, cap, "%llu bytes (%.1f %s)", (unsigned long long)bytes, x,
                 unit[u]);
    return buf;
}
