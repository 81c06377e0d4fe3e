/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The on-disk program cache (program_cache.h): keys, entries, trust.
 *
 * The folder is opened once per program build and every entry is reached
 * through that descriptor (openat, renameat, unlinkat), so what was
 * checked is what is read and written even if a path changes meanwhile.
 * Entries are written to a temporary file of their own (O_EXCL, named for
 * the process and a per-process serial, so concurrent writers in one or
 * several processes never share one), flushed and renamed into place:
 * readers never see a partial entry.  A write that fails (full disk, file
 * size limit, read-only folder) removes its temporary file, is logged and
 * leaves any previous entry as it was.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "opencl/program_cache.h"

#define MAGIC "ATTNPRG2"

/* What c->state allows. */
enum {
    CACHE_OFF,     /* no cache folder, or it was refused: nothing */
    CACHE_ABSENT,  /* the folder does not exist yet: a write creates it */
    CACHE_OPEN,    /* the folder is open and trusted */
    CACHE_NO_ENTRY /* open, but the entry was refused: leave it alone */
};

/* ---- the key ---------------------------------------------------------- */

/* Adds one field: its length, then its bytes, so that no two lists of
 * fields hash the same bytes. */
static void key_field(attn_sha256_ctx *h, const void *p, size_t n)
{
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)n >> (8 * i));
    attn_sha256_update(h, len, sizeof len);
    attn_sha256_update(h, p, n);
}

/* Adds what the device or platform answers to one query, whatever its
 * length; a query that fails adds its error code instead. */
static void key_query(attn_sha256_ctx *h, const attn_cl_runtime *rt,
                      int platform, cl_uint param)
{
    unsigned char small[256], *buf = small;
    size_t n = 0;
    cl_int rc = platform ? clGetPlatformInfo(rt->platform, param, 0, NULL, &n)
                         : clGetDeviceInfo(rt->device, param, 0, NULL, &n);
    if (rc == CL_SUCCESS && n > sizeof small && !(buf = malloc(n)))
        rc = CL_OUT_OF_HOST_MEMORY;
    if (rc == CL_SUCCESS)
        rc = platform ? clGetPlatformInfo(rt->platform, param, n, buf, NULL)
                      : clGetDeviceInfo(rt->device, param, n, buf, NULL);
    if (rc == CL_SUCCESS) {
        key_field(h, buf, n);
    } else {
        char text[32];
        int w = snprintf(text, sizeof text, "query failed: %d", (int)rc);
        key_field(h, text, (size_t)w);
    }
    if (buf != small)
        free(buf);
}

void attn_cl_cache_key(const attn_cl_runtime *rt, const char *src,
                       size_t src_len, const char *options,
                       unsigned char key[ATTN_CL_CACHE_KEY_BYTES])
{
    static const cl_uint platform_q[] = {CL_PLATFORM_NAME, CL_PLATFORM_VENDOR,
                                         CL_PLATFORM_VERSION};
    static const cl_uint device_q[] = {
        CL_DEVICE_NAME,      CL_DEVICE_VENDOR,           CL_DEVICE_VENDOR_ID,
        CL_DEVICE_VERSION,   CL_DRIVER_VERSION,          CL_DEVICE_PROFILE,
        CL_DEVICE_TYPE,      CL_DEVICE_OPENCL_C_VERSION, CL_DEVICE_ADDRESS_BITS,
        CL_DEVICE_EXTENSIONS};
    static const char domain[] = "libattn program cache key 2";
    attn_sha256_ctx h;
    attn_sha256_init(&h);
    key_field(&h, domain, sizeof domain - 1);
    key_field(&h, attn_version(), strlen(attn_version()));
    key_field(&h, src, src_len);
    key_field(&h, options, strlen(options));
    for (size_t i = 0; i < sizeof platform_q / sizeof platform_q[0]; i++)
        key_query(&h, rt, 1, platform_q[i]);
    for (size_t i = 0; i < sizeof device_q / sizeof device_q[0]; i++)
        key_query(&h, rt, 0, device_q[i]);
    attn_sha256_final(&h, key);
}

/* ---- entries ---------------------------------------------------------- */

static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* The checksum of an entry: SHA-256 of its key, size field and binary. */
static void entry_sum(const unsigned char *key_and_size,
                      const unsigned char *bin, size_t n,
                      unsigned char sum[ATTN_SHA256_BYTES])
{
    attn_sha256_ctx h;
    attn_sha256_init(&h);
    attn_sha256_update(&h, key_and_size, ATTN_CL_CACHE_KEY_BYTES + 8);
    attn_sha256_update(&h, bin, n);
    attn_sha256_final(&h, sum);
}

/* "<folder>/<name>" for a message: a path too long for one is shortened
 * in the middle, so the reason after it still fits. */
static const char *shown(const attn_cl_cache *c, const char *name, char *buf,
                         size_t cap)
{
    const char *dir = c->rt->cache_dir;
    size_t n = strlen(dir);
    if (n > 200)
        snprintf(buf, cap, "%.80s...%s%s%s", dir, dir + n - 100,
                 name ? "/" : "", name ? name : "");
    else
        snprintf(buf, cap, "%s%s%s", dir, name ? "/" : "", name ? name : "");
    return buf;
}

/* Whether an open folder (is_dir) or entry may be used: owned by the
 * effective user and writable by no one else.  When not, *why says so. */
static int trusted(const struct stat *st, int is_dir, char *why, size_t cap)
{
    uid_t me = geteuid();
    if (is_dir ? !S_ISDIR(st->st_mode) : !S_ISREG(st->st_mode)) {
        snprintf(why, cap, "it is not a %s",
                 is_dir ? "folder" : "regular file");
        return 0;
    }
    if (st->st_uid != me) {
        snprintf(why, cap, "it is owned by uid %lu, not %lu",
                 (unsigned long)st->st_uid, (unsigned long)me);
        return 0;
    }
    if (st->st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(why, cap, "it is writable by group or others (mode %04o)",
                 (unsigned)(st->st_mode & 07777));
        return 0;
    }
    return 1;
}

/* Opens c's folder and checks it; CACHE_ABSENT when it does not exist
 * (yet), CACHE_OFF (logged) when it may not be used. */
static int open_dir(attn_cl_cache *c)
{
    char why[128], path[400];
    struct stat st;
    int fd =
        open(c->rt->cache_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        /* Linux says ENOTDIR for a link with O_DIRECTORY, ELOOP without. */
        int e = errno, link = (e == ELOOP || e == ENOTDIR) &&
                              lstat(c->rt->cache_dir, &st) == 0 &&
                              S_ISLNK(st.st_mode);
        if (!link && (e == ENOENT || e == ENOTDIR)) {
            errno = e;
            return CACHE_ABSENT;
        }
        if (link)
            snprintf(why, sizeof why, "it is a symbolic link");
        else
            snprintf(why, sizeof why, "it cannot be opened: %s", strerror(e));
    } else if (fstat(fd, &st) != 0) {
        snprintf(why, sizeof why, "fstat: %s", strerror(errno));
    } else if (trusted(&st, 1, why, sizeof why)) {
        c->dir_fd = fd;
        return CACHE_OPEN;
    }
    if (fd >= 0)
        close(fd);
    attn_log(c->rt->log, ATTN_LOG_WARN,
             "program cache folder %s is not used: %s; the program is built "
             "from source and not cached",
             shown(c, NULL, path, sizeof path), why);
    return CACHE_OFF;
}

void attn_cl_cache_open(const attn_cl_runtime *rt,
                        const unsigned char key[ATTN_CL_CACHE_KEY_BYTES],
                        attn_cl_cache *c)
{
    static const char hex[] = "0123456789abcdef";
    memset(c, 0, sizeof *c);
    c->rt = rt;
    c->dir_fd = -1;
    memcpy(c->key, key, ATTN_CL_CACHE_KEY_BYTES);
    for (int i = 0; i < ATTN_CL_CACHE_KEY_BYTES; i++) {
        c->name[2 * i] = hex[key[i] >> 4];
        c->name[2 * i + 1] = hex[key[i] & 15];
    }
    memcpy(c->name + 2 * ATTN_CL_CACHE_KEY_BYTES, ".clbin", 7);
    c->state = rt->cache_dir[0] ? open_dir(c) : CACHE_OFF;
}

void attn_cl_cache_close(attn_cl_cache *c)
{
    if (c->dir_fd >= 0)
        close(c->dir_fd);
    c->dir_fd = -1;
    c->state = CACHE_OFF;
}

/* Reads exactly n bytes at the file position.  0, or -1 (errno, or 0 at an
 * early end). */
static int read_full(int fd, void *p, size_t n)
{
    unsigned char *c = p;
    while (n > 0) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = 0;
            return -1;
        }
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Reads and checks the open entry fd (st from fstat).  The binary, or NULL
 * with *why saying what is wrong. */
static unsigned char *read_entry(const attn_cl_cache *c, int fd,
                                 const struct stat *st, size_t *size, char *why,
                                 size_t cap)
{
    unsigned char head[ATTN_CL_CACHE_HEADER], sum[ATTN_SHA256_BYTES], extra;
    unsigned char *bin;
    uint64_t n, held;
    if ((uint64_t)st->st_size < ATTN_CL_CACHE_HEADER) {
        snprintf(why, cap, "%lld bytes, shorter than a header",
                 (long long)st->st_size);
        return NULL;
    }
    held = (uint64_t)st->st_size - ATTN_CL_CACHE_HEADER;
    if (held > ATTN_CL_CACHE_ENTRY_MAX) {
        snprintf(why, cap,
                 "it holds %llu bytes, more than the %llu an entry "
                 "may hold",
                 (unsigned long long)held,
                 (unsigned long long)ATTN_CL_CACHE_ENTRY_MAX);
        return NULL;
    }
    if (read_full(fd, head, sizeof head) != 0) {
        snprintf(why, cap, "its header cannot be read");
        return NULL;
    }
    n = get_le64(head + 8 + ATTN_CL_CACHE_KEY_BYTES);
    if (memcmp(head, MAGIC, 8) != 0 ||
        memcmp(head + 8, c->key, ATTN_CL_CACHE_KEY_BYTES) != 0) {
        snprintf(why, cap, "not an entry of this key and format");
        return NULL;
    }
    if (n != held || n == 0) {
        snprintf(why, cap, "its header claims %llu bytes, the file holds %llu",
                 (unsigned long long)n, (unsigned long long)held);
        return NULL;
    }
    if (!(bin = malloc((size_t)n))) {
        snprintf(why, cap, "cannot allocate %llu bytes", (unsigned long long)n);
        return NULL;
    }
    if (read_full(fd, bin, (size_t)n) != 0 || read(fd, &extra, 1) != 0) {
        snprintf(why, cap, "its size changed while it was read");
        free(bin);
        return NULL;
    }
    entry_sum(head + 8, bin, (size_t)n, sum);
    if (memcmp(sum, head + 8 + ATTN_CL_CACHE_KEY_BYTES + 8, sizeof sum) != 0) {
        snprintf(why, cap, "its checksum does not match");
        free(bin);
        return NULL;
    }
    *size = (size_t)n;
    return bin;
}

unsigned char *attn_cl_cache_read(attn_cl_cache *c, size_t *n)
{
    char why[160], path[400];
    unsigned char *bin = NULL;
    struct stat st;
    int fd;
    if (c->state != CACHE_OPEN)
        return NULL;
    /* O_NONBLOCK: opening a FIFO does not wait for a writer (fstat then
     * refuses it); it changes nothing for a regular file. */
    fd = openat(c->dir_fd, c->name,
                O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return NULL;
        if (e == ELOOP)
            snprintf(why, sizeof why, "it is a symbolic link");
        else
            snprintf(why, sizeof why, "it cannot be opened: %s", strerror(e));
    } else if (fstat(fd, &st) != 0) {
        snprintf(why, sizeof why, "fstat: %s", strerror(errno));
    } else if (trusted(&st, 0, why, sizeof why)) {
        bin = read_entry(c, fd, &st, n, why, sizeof why);
        close(fd);
        if (!bin)
            attn_log(c->rt->log, ATTN_LOG_WARN,
                     "program cache entry %s is corrupt (%s); rebuilding it",
                     shown(c, c->name, path, sizeof path), why);
        return bin;
    }
    if (fd >= 0)
        close(fd);
    c->state = CACHE_NO_ENTRY;
    attn_log(c->rt->log, ATTN_LOG_WARN,
             "program cache entry %s is not read: %s; the program is built "
             "from source and the entry left as it is",
             shown(c, c->name, path, sizeof path), why);
    return NULL;
}

void attn_cl_cache_remove(attn_cl_cache *c)
{
    char path[400];
    if (c->state != CACHE_OPEN)
        return;
    if (unlinkat(c->dir_fd, c->name, 0) != 0 && errno != ENOENT)
        attn_log(c->rt->log, ATTN_LOG_WARN,
                 "cannot remove program cache entry %s (%s)",
                 shown(c, c->name, path, sizeof path), strerror(errno));
}

/* Creates dir and the folders above it that are missing, 0700 whatever
 * the umask (SECURITY.md).  0, or -1 with errno set. */
static int make_dirs(const char *dir)
{
    char path[1024];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char ch = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) == 0) {
            /* the umask may have taken bits mkdir asked for */
            if (chmod(path, 0700) != 0)
                return -1;
        } else if (errno != EEXIST) {
            return -1;
        }
        path[i] = ch;
    }
    return 0;
}

/* Writes all n bytes of p to fd.  0, or -1 with errno set. */
static int write_all(int fd, const void *p, size_t n)
{
    const unsigned char *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

void attn_cl_cache_write(attn_cl_cache *c, const unsigned char *bin, size_t n)
{
    static atomic_uint serial;
    char tmp[160], path[400];
    unsigned char head[ATTN_CL_CACHE_HEADER];
    const char *step;
    int fd = -1, e;
    if (c->state == CACHE_ABSENT) {
        /* EEXIST also stands for a file of that name, and for a folder
         * someone else made meanwhile: open_dir sorts them out. */
        e = make_dirs(c->rt->cache_dir) != 0 ? errno : 0;
        if (e == 0 && (c->state = open_dir(c)) == CACHE_ABSENT)
            e = errno;
        if (e != 0) {
            c->state = CACHE_OFF;
            attn_log(c->rt->log, ATTN_LOG_WARN,
                     "program cache %s cannot be created (%s); caching off",
                     shown(c, NULL, path, sizeof path), strerror(e));
            return;
        }
    }
    if (c->state != CACHE_OPEN)
        return;
    memcpy(head, MAGIC, 8);
    memcpy(head + 8, c->key, ATTN_CL_CACHE_KEY_BYTES);
    put_le64(head + 8 + ATTN_CL_CACHE_KEY_BYTES, n);
    entry_sum(head + 8, bin, n, head + 8 + ATTN_CL_CACHE_KEY_BYTES + 8);
    /* A temporary name of this process and call.  O_EXCL: never write into
     * a file someone else (another process, one that died, a link) left. */
    for (int tries = 0; fd < 0 && tries < 16; tries++) {
        snprintf(tmp, sizeof tmp, "%s.%ld.%u.tmp", c->name, (long)getpid(),
                 atomic_fetch_add(&serial, 1u));
        fd = openat(c->dir_fd, tmp,
                    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    /* 0600 whatever the umask (SECURITY.md): our own new file */
    if (fd >= 0 && fchmod(fd, 0600) != 0) {
        close(fd);
        unlinkat(c->dir_fd, tmp, 0);
        fd = -1;
    }
    if (fd < 0) {
        attn_log(c->rt->log, ATTN_LOG_WARN,
                 "program cache %s is not writable (%s)",
                 shown(c, NULL, path, sizeof path), strerror(errno));
        return;
    }
    /* Written, on disk, then renamed: the entry's name only ever stands for
     * a whole entry, even after a crash. */
    step = "write";
    if (write_all(fd, head, sizeof head) != 0 || write_all(fd, bin, n) != 0)
        goto fail;
    step = "fsync";
    if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP)
        goto fail;
    step = "close";
    e = close(fd);
    fd = -1;
    if (e != 0)
        goto fail;
    step = "rename";
    if (renameat(c->dir_fd, tmp, c->dir_fd, c->name) != 0)
        goto fail;
    attn_log(c->rt->log, ATTN_LOG_DEBUG, "cached program %s (%zu bytes)",
             shown(c, c->name, path, sizeof path), n);
    return;
fail:
    e = errno;
    if (fd >= 0)
        close(fd);
    unlinkat(c->dir_fd, tmp, 0);
    attn_log(c->rt->log, ATTN_LOG_WARN,
             "cannot write program cache entry %s (%s: %s); the program "
             "stays uncached",
             shown(c, c->name, path, sizeof path), step, strerror(e));
}
