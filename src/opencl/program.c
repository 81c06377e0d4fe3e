/*
 * Kernel programs: sources embedded at build time, offline binaries, and an
 * on-disk cache of built programs.
 *
 * A cache entry is keyed by a 128-bit hash of everything that could change
 * the binary: library version, source text, build options, platform
 * version, vendor id, device name and driver version.  An entry is
 *     magic "ATTNPRG1" | key (16 bytes) | size (u64) | checksum (u64) | binary
 * and is written to a temporary file of its own (created with O_EXCL, named
 * for the process and a per-process serial, so concurrent writers in one or
 * several processes never share one), flushed to disk and renamed into
 * place, so readers never see a partial entry.  A write that fails (full
 * disk, file size limit, read-only folder) removes its temporary file, is
 * logged as a warning and leaves any previous entry as it was.  Anything
 * that does not check out (short file, wrong key or checksum, a binary the
 * driver rejects) is rebuilt from source and rewritten.  A cache that cannot
 * be written only costs time.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "opencl/runtime.h"
#ifdef ATTN_EMBED_KERNELS
#include "opencl/embedded.h"
#endif

#define MAGIC        "ATTNPRG1"
#define HEADER_BYTES (8 + 16 + 8 + 8)
#define LOG_EXCERPT  600

/* ---- sources ---------------------------------------------------------- */

static attn_status read_file(const char *path, char **out, size_t *len,
                             attn_err *err)
{
    FILE *f = fopen(path, "rb");
    long n;
    char *buf = NULL;
    if (!f)
        return attn_fail(err, ATTN_ERR_IO, "cannot open %s: %s", path,
                         strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0)
        goto io;
    buf = malloc((size_t)n + 1);
    if (!buf) {
        fclose(f);
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate %ld bytes for %s", n, path);
    }
    if (fread(buf, 1, (size_t)n, f) != (size_t)n)
        goto io;
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    *len = (size_t)n;
    return ATTN_OK;
io:
    free(buf);
    fclose(f);
    return attn_fail(err, ATTN_ERR_IO, "cannot read %s", path);
}

static attn_status source_text(const char *name, char **owned,
                               const char **text, size_t *len, attn_err *err)
{
    *owned = NULL;
#ifdef ATTN_EMBED_KERNELS
    for (const attn_embedded_file *f = attn_embedded_files; f->name; f++)
        if (!strcmp(f->name, name)) {
            *text = f->data;
            *len = f->size;
            return ATTN_OK;
        }
    return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                     "no embedded kernel source named %s", name);
#else
    char path[1024];
    attn_status s;
    snprintf(path, sizeof path, "%s/%s", ATTN_CL_SOURCE_DIR, name);
    s = read_file(path, owned, len, err);
    *text = *owned;
    return s;
#endif
}

attn_status attn_cl_load_sources(const char *const *names, size_t n, char **out,
                                 size_t *len, attn_err *err)
{
    char *buf = NULL, *owned = NULL;
    const char *text = NULL;
    size_t used = 0, piece = 0;
    attn_status s;
    for (size_t i = 0; i < n; i++) {
        char *grown;
        if ((s = source_text(names[i], &owned, &text, &piece, err)))
            goto fail;
        grown = realloc(buf, used + piece + 2);
        if (!grown) {
            free(owned);
            s = attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                          "cannot allocate kernel sources");
            goto fail;
        }
        buf = grown;
        memcpy(buf + used, text, piece);
        used += piece;
        buf[used++] = '\n';
        buf[used] = '\0';
        free(owned);
    }
    if (!buf && !(buf = calloc(1, 1)))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY, "out of memory");
    *out = buf;
    *len = used;
    return ATTN_OK;
fail:
    free(buf);
    return s;
}

/* ---- hashing ---------------------------------------------------------- */

typedef struct key128 {
    uint64_t a, b;
} key128;

/* Two FNV-1a streams with different offsets: not cryptographic, but a
 * stale entry also has to pass the checksum and the driver. */
static void hash_bytes(key128 *k, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        k->a = (k->a ^ p[i]) * 0x100000001b3ull;
        k->b = (k->b ^ p[i]) * 0x100000001b3ull;
        k->b ^= k->b >> 29;
    }
    /* a separator so that ("ab","c") and ("a","bc") differ */
    k->a = (k->a ^ 0xffu) * 0x100000001b3ull;
    k->b = (k->b ^ 0xfeu) * 0x100000001b3ull;
}

static void hash_str(key128 *k, const char *s)
{
    hash_bytes(k, s, strlen(s));
}

static uint64_t checksum(const unsigned char *p, size_t n)
{
    key128 k = {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull};
    hash_bytes(&k, p, n);
    return k.a ^ (k.b << 1);
}

static void cache_key(const attn_cl_runtime *rt, const char *src,
                      size_t src_len, const char *options, key128 *k)
{
    char buf[256];
    cl_uint vendor_id = 0;
    k->a = 0xcbf29ce484222325ull;
    k->b = 0x6c62272e07bb0142ull;
    hash_str(k, attn_version());
    hash_bytes(k, src, src_len);
    hash_str(k, options);
    buf[0] = '\0';
    clGetPlatformInfo(rt->platform, CL_PLATFORM_VERSION, sizeof buf, buf, NULL);
    buf[sizeof buf - 1] = '\0';
    hash_str(k, buf);
    clGetDeviceInfo(rt->device, CL_DEVICE_VENDOR_ID, sizeof vendor_id,
                    &vendor_id, NULL);
    hash_bytes(k, &vendor_id, sizeof vendor_id);
    hash_str(k, rt->info.name);
    hash_str(k, rt->info.driver_version);
}

/* ---- cache files ------------------------------------------------------ */

static void entry_path(const attn_cl_runtime *rt, const key128 *k, char *out,
                       size_t cap)
{
    snprintf(out, cap, "%s/%016llx%016llx.clbin", rt->cache_dir,
             (unsigned long long)k->a, (unsigned long long)k->b);
}

/* The binary of a valid entry, or NULL (missing or corrupt). */
static unsigned char *cache_read(const attn_cl_runtime *rt, const key128 *k,
                                 size_t *size)
{
    char path[1200];
    unsigned char head[HEADER_BYTES], *bin = NULL;
    uint64_t n, sum;
    FILE *f;
    entry_path(rt, k, path, sizeof path);
    if (!(f = fopen(path, "rb")))
        return NULL;
    if (fread(head, 1, sizeof head, f) != sizeof head ||
        memcmp(head, MAGIC, 8) != 0 || memcmp(head + 8, &k->a, 8) != 0 ||
        memcmp(head + 16, &k->b, 8) != 0)
        goto bad;
    memcpy(&n, head + 24, 8);
    memcpy(&sum, head + 32, 8);
    if (n == 0 || n > ((uint64_t)1 << 31) || !(bin = malloc((size_t)n)) ||
        fread(bin, 1, (size_t)n, f) != n || fgetc(f) != EOF ||
        checksum(bin, (size_t)n) != sum)
        goto bad;
    fclose(f);
    *size = (size_t)n;
    return bin;
bad:
    attn_log(rt->log, ATTN_LOG_WARN,
             "program cache entry %s is corrupt; rebuilding it", path);
    free(bin);
    fclose(f);
    return NULL;
}

static int make_dirs(const char *dir)
{
    char path[1024];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path)
        return -1;
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char c = path[i];
        path[i] = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return -1;
        path[i] = c;
    }
    /* EEXIST also stands for a file of that name. */
    struct stat st;
    if (stat(dir, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/* Writes all n bytes of p to fd.  0, or -1 with errno set. */
static int write_all(int fd, const void *p, size_t n)
{
    const unsigned char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static void cache_write(const attn_cl_runtime *rt, const key128 *k,
                        const unsigned char *bin, size_t n)
{
    static atomic_uint serial;
    char path[1200], tmp[1300];
    unsigned char head[HEADER_BYTES];
    uint64_t n64 = n, sum = checksum(bin, n);
    const char *step;
    int fd = -1, e;
    if (make_dirs(rt->cache_dir) != 0) {
        attn_log(rt->log, ATTN_LOG_WARN,
                 "program cache %s cannot be created (%s); caching off",
                 rt->cache_dir, strerror(errno));
        return;
    }
    entry_path(rt, k, path, sizeof path);
    memcpy(head, MAGIC, 8);
    memcpy(head + 8, &k->a, 8);
    memcpy(head + 16, &k->b, 8);
    memcpy(head + 24, &n64, 8);
    memcpy(head + 32, &sum, 8);
    /* A temporary name of this process and call.  O_EXCL: never write into
     * a file someone else (another process, one that died, a link) left. */
    for (int tries = 0; fd < 0 && tries < 16; tries++) {
        snprintf(tmp, sizeof tmp, "%s.%ld.%u.tmp", path, (long)getpid(),
                 atomic_fetch_add(&serial, 1u));
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        attn_log(rt->log, ATTN_LOG_WARN,
                 "program cache %s is not writable (%s)", rt->cache_dir,
                 strerror(errno));
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
    if (rename(tmp, path) != 0)
        goto fail;
    attn_log(rt->log, ATTN_LOG_DEBUG, "cached program %s (%zu bytes)", path, n);
    return;
fail:
    e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    attn_log(rt->log, ATTN_LOG_WARN,
             "cannot write program cache entry %s (%s: %s); the program "
             "stays uncached",
             path, step, strerror(e));
}

/* ---- building --------------------------------------------------------- */

/* Builds prog for the runtime's device; on failure hands the build log to
 * the logger and an excerpt to err. */
static attn_status build(attn_cl_runtime *rt, cl_program prog,
                         const char *options, attn_err *err)
{
    cl_int rc =
        ATTN_CL(clBuildProgram)(prog, 1, &rt->device, options, NULL, NULL);
    size_t n = 0;
    char *log;
    if (rc == CL_SUCCESS)
        return ATTN_OK;
    clGetProgramBuildInfo(prog, rt->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &n);
    log = n ? malloc(n + 1) : NULL;
    if (log && clGetProgramBuildInfo(prog, rt->device, CL_PROGRAM_BUILD_LOG, n,
                                     log, NULL) == CL_SUCCESS) {
        log[n] = '\0';
        attn_log(rt->log, ATTN_LOG_ERROR,
                 "kernel build failed on %s (options \"%s\"):\n%s",
                 rt->info.name, options, log);
    } else if (log) {
        log[0] = '\0';
    }
    attn_fail(err, ATTN_ERR_BUILD_FAILED,
              "kernel build failed on %s: %s (%d): %.*s", rt->info.name,
              attn_cl_error_name(rc), (int)rc, LOG_EXCERPT, log ? log : "");
    free(log);
    return ATTN_ERR_BUILD_FAILED;
}

static attn_status from_binary(attn_cl_runtime *rt, const unsigned char *bin,
                               size_t n, const char *options, cl_program *out,
                               attn_err *err)
{
    cl_int rc, bin_status = CL_SUCCESS;
    cl_program prog = clCreateProgramWithBinary(rt->context, 1, &rt->device, &n,
                                                &bin, &bin_status, &rc);
    if (rc != CL_SUCCESS || bin_status != CL_SUCCESS) {
        if (prog)
            clReleaseProgram(prog);
        return attn_fail(
            err, ATTN_ERR_BUILD_FAILED,
            "the device rejected a program binary: %s",
            attn_cl_error_name(rc != CL_SUCCESS ? rc : bin_status));
    }
    if (build(rt, prog, options, err) != ATTN_OK) {
        clReleaseProgram(prog);
        return ATTN_ERR_BUILD_FAILED;
    }
    *out = prog;
    return ATTN_OK;
}

attn_status attn_cl_build_binary_file(attn_cl_runtime *rt, const char *path,
                                      const char *options, cl_program *out,
                                      attn_err *err)
{
    char *bin = NULL;
    size_t n = 0;
    attn_status s = read_file(path, &bin, &n, err);
    if (s)
        return s;
    s = from_binary(rt, (const unsigned char *)bin, n, options, out, err);
    if (s == ATTN_OK)
        attn_log(rt->log, ATTN_LOG_INFO, "loaded program binary %s", path);
    free(bin);
    return s;
}

/* The binary of a built program (single device), or NULL. */
static unsigned char *program_binary(cl_program prog, size_t *n)
{
    unsigned char *bin;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof *n, n, NULL) !=
            CL_SUCCESS ||
        *n == 0 || !(bin = malloc(*n)))
        return NULL;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) !=
        CL_SUCCESS) {
        free(bin);
        return NULL;
    }
    return bin;
}

/* "score_softmax_aggregate": the stems of the sources, the default tag. */
static void default_tag(const char *const *names, size_t n, char *tag,
                        size_t cap)
{
    size_t used = 0;
    tag[0] = '\0';
    for (size_t i = 0; i < n && used + 1 < cap; i++) {
        size_t stem = strcspn(names[i], ".");
        int w = snprintf(tag + used, cap - used, "%s%.*s", i ? "_" : "",
                         (int)stem, names[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

int attn_cl_program_options(const char *options, char *buf, size_t cap)
{
    return snprintf(buf, cap, "-cl-std=CL1.2 %s", options ? options : "");
}

attn_status attn_cl_build(attn_cl_runtime *rt, const char *const *names,
                          size_t n_names, const char *options, cl_program *out,
                          attn_err *err)
{
    char tag[256];
    default_tag(names, n_names, tag, sizeof tag);
    return attn_cl_build_tagged(rt, tag, names, n_names, options, out, err);
}

attn_status attn_cl_build_tagged(attn_cl_runtime *rt, const char *tag,
                                 const char *const *names, size_t n_names,
                                 const char *options, cl_program *out,
                                 attn_err *err)
{
    char *src = NULL, opts[1024];
    const char *text;
    size_t len, bin_len;
    unsigned char *bin;
    key128 key;
    cl_program prog = NULL;
    cl_int rc;
    attn_status s;
    char path[1200], bin_name[600];

    attn_cl_program_options(options, opts, sizeof opts);
    /* FPGAs (and any device given offline binaries) take the binary of
     * this program: "<device name> <tag>" normalised, plus the extension. */
    snprintf(bin_name, sizeof bin_name, "%.300s %.200s", rt->info.name, tag);
    if (attn_cl_find_binary(attn_cl_binary_dir(), bin_name, path, sizeof path))
        return attn_cl_build_binary_file(rt, path, opts, out, err);
    if ((s = attn_cl_load_sources(names, n_names, &src, &len, err)))
        return s;
    pthread_mutex_lock(&rt->build_lock);
    cache_key(rt, src, len, opts, &key);
    if (rt->cache_dir[0] && (bin = cache_read(rt, &key, &bin_len))) {
        s = from_binary(rt, bin, bin_len, opts, &prog, err);
        free(bin);
        if (s == ATTN_OK) {
            attn_log(rt->log, ATTN_LOG_DEBUG, "program cache hit on %s",
                     rt->info.name);
            goto done;
        }
        attn_log(rt->log, ATTN_LOG_WARN,
                 "cached program rejected (%s); "
                 "rebuilding",
                 err->msg);
    }
    text = src;
    prog = clCreateProgramWithSource(rt->context, 1, &text, &len, &rc);
    if (rc != CL_SUCCESS) {
        s = attn_fail(err, attn_cl_status(rc),
                      "clCreateProgramWithSource failed: %s",
                      attn_cl_error_name(rc));
        prog = NULL;
        goto done;
    }
    if ((s = build(rt, prog, opts, err))) {
        clReleaseProgram(prog);
        prog = NULL;
        goto done;
    }
    attn_log(rt->log, ATTN_LOG_DEBUG, "built program on %s", rt->info.name);
    if (rt->cache_dir[0] && (bin = program_binary(prog, &bin_len))) {
        cache_write(rt, &key, bin, bin_len);
        free(bin);
    }
done:
    pthread_mutex_unlock(&rt->build_lock);
    free(src);
    if (s == ATTN_OK)
        *out = prog;
    return s;
}
