/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kernel programs: sources embedded at build time, offline binaries, and
 * building, through the on-disk cache of built programs (program_cache.c).
 *
 * A cached program is used only when it builds from its binary and has
 * every kernel the program must have (the caller's list, or the kernels its
 * sources define); otherwise the entry is removed and the program is built
 * from source once and cached again.  A cache that cannot be read or
 * written only costs time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opencl/program_cache.h"
#include "opencl/runtime.h"
#ifdef ATTN_EMBED_KERNELS
#include "opencl/embedded.h"
#endif

#define LOG_EXCERPT 600

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
    if (s == ATTN_ERR_IO) {
        /* A program without its source is one that does not build: with
         * fallback on, the native backend runs the call. */
        char why[ATTN_MSG_MAX];
        snprintf(why, sizeof why, "%s", err->msg);
        s = attn_fail(err, ATTN_ERR_BUILD_FAILED,
                      "%.400s (this build reads its kernel sources from "
                      "there: ATTN_EMBED_KERNELS=OFF)",
                      why);
    }
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

/* ---- the kernels a program must have ---------------------------------- */

#define MAX_KERNELS     16
#define KERNEL_NAME_MAX 64

typedef struct kernel_list {
    size_t n;
    const char *name[MAX_KERNELS];
    char found[MAX_KERNELS][KERNEL_NAME_MAX]; /* names read from sources */
} kernel_list;

static int ident_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int ident_char(char c)
{
    return ident_start(c) || (c >= '0' && c <= '9');
}

/* The index of the first character from i that is neither blank nor in a
 * comment. */
static size_t skip_blank(const char *s, size_t n, size_t i)
{
    for (;;) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' ||
                         s[i] == '\r' || s[i] == '\f' || s[i] == '\v'))
            i++;
        if (i + 1 < n && s[i] == '/' && s[i + 1] == '/') {
            while (i < n && s[i] != '\n')
                i++;
        } else if (i + 1 < n && s[i] == '/' && s[i + 1] == '*') {
            for (i += 2; i + 1 < n && !(s[i] == '*' && s[i + 1] == '/'); i++)
                ;
            i = i + 2 < n ? i + 2 : n;
        } else {
            return i;
        }
    }
}

/* After "__kernel" at i: the kernel's name (the first identifier followed
 * by "(", past any __attribute__((...))) into k.  The index after it. */
static size_t kernel_after(const char *s, size_t n, size_t i, kernel_list *k)
{
    for (;;) {
        size_t next, b = i = skip_blank(s, n, i);
        if (i >= n || !ident_start(s[i]))
            return i;
        while (i < n && ident_char(s[i]))
            i++;
        if (i - b == 13 && !memcmp(s + b, "__attribute__", 13)) {
            int depth = 0;
            for (i = skip_blank(s, n, i); i < n; i++) {
                depth += s[i] == '(' ? 1 : s[i] == ')' ? -1 : 0;
                if (depth <= 0) {
                    i++;
                    break;
                }
            }
            continue;
        }
        next = skip_blank(s, n, i);
        if (next < n && s[next] == '(') {
            if (k->n < MAX_KERNELS && i - b < KERNEL_NAME_MAX) {
                memcpy(k->found[k->n], s + b, i - b);
                k->found[k->n][i - b] = '\0';
                k->name[k->n] = k->found[k->n];
                k->n++;
            }
            return i;
        }
    }
}

/* The kernels the sources define: "__kernel" or "kernel", outside
 * comments, literals and preprocessor lines, then the name.  A kernel the
 * preprocessor leaves out is still listed (the build after the sources
 * notices: such a program is not cached). */
static void source_kernels(const char *s, size_t n, kernel_list *k)
{
    size_t i = 0;
    int line_start = 1;
    k->n = 0;
    while (i < n) {
        size_t j = skip_blank(s, n, i), b;
        if (j >= n)
            break;
        if (memchr(s + i, '\n', j - i))
            line_start = 1;
        i = j;
        if (s[i] == '#' && line_start) {
            while (i < n && s[i] != '\n')
                i += (s[i] == '\\' && i + 1 < n) ? 2 : 1;
            continue;
        }
        line_start = 0;
        if (s[i] == '"' || s[i] == '\'') {
            char q = s[i++];
            while (i < n && s[i] != q)
                i += (s[i] == '\\' && i + 1 < n) ? 2 : 1;
            i++;
            continue;
        }
        if (!ident_start(s[i])) {
            i++;
            continue;
        }
        for (b = i; i < n && ident_char(s[i]); i++)
            ;
        if ((i - b == 8 && !memcmp(s + b, "__kernel", 8)) ||
            (i - b == 6 && !memcmp(s + b, "kernel", 6)))
            i = kernel_after(s, n, i, k);
    }
}

/* The first kernel of k that prog does not have, or NULL. */
static const char *missing_kernel(cl_program prog, const kernel_list *k)
{
    for (size_t i = 0; i < k->n; i++) {
        cl_int rc;
        cl_kernel kern = clCreateKernel(prog, k->name[i], &rc);
        if (rc != CL_SUCCESS)
            return k->name[i];
        clReleaseKernel(kern);
    }
    return NULL;
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

/* The program of the cache entry c holds, when it builds and has every
 * kernel of k; otherwise the entry is removed (logged).  NULL on a miss. */
static cl_program from_cache(attn_cl_runtime *rt, attn_cl_cache *c,
                             const char *opts, const kernel_list *k)
{
    cl_program prog = NULL;
    attn_err why = {{0}};
    const char *lacks = NULL;
    size_t n = 0;
    unsigned char *bin = attn_cl_cache_read(c, &n);
    if (!bin)
        return NULL;
    if (from_binary(rt, bin, n, opts, &prog, &why) == ATTN_OK &&
        !(lacks = missing_kernel(prog, k))) {
        free(bin);
        attn_log(rt->log, ATTN_LOG_DEBUG, "program cache hit on %s",
                 rt->info.name);
        return prog;
    }
    free(bin);
    if (lacks) {
        clReleaseProgram(prog);
        attn_log(rt->log, ATTN_LOG_WARN,
                 "cached program rejected (it has no kernel %s); removing it "
                 "and rebuilding",
                 lacks);
    } else {
        attn_log(rt->log, ATTN_LOG_WARN,
                 "cached program rejected (%s); removing it and rebuilding",
                 why.msg);
    }
    attn_cl_cache_remove(c);
    return NULL;
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
    return attn_cl_build_program(rt, NULL, names, n_names, options, NULL, 0,
                                 out, err);
}

attn_status attn_cl_build_tagged(attn_cl_runtime *rt, const char *tag,
                                 const char *const *names, size_t n_names,
                                 const char *options, cl_program *out,
                                 attn_err *err)
{
    return attn_cl_build_program(rt, tag, names, n_names, options, NULL, 0, out,
                                 err);
}

attn_status attn_cl_build_program(attn_cl_runtime *rt, const char *tag,
                                  const char *const *names, size_t n_names,
                                  const char *options,
                                  const char *const *kernels, size_t n_kernels,
                                  cl_program *out, attn_err *err)
{
    char *src = NULL, opts[1024], tag_buf[256];
    const char *text, *lacks;
    size_t len, bin_len;
    unsigned char *bin, key[ATTN_CL_CACHE_KEY_BYTES];
    kernel_list *want;
    attn_cl_cache cache;
    cl_program prog = NULL;
    cl_int rc;
    attn_status s;
    char path[1200], bin_name[600];

    if (!rt || !names || n_names == 0 || !out || (n_kernels && !kernels) ||
        n_kernels > MAX_KERNELS)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "attn_cl_build_program: bad arguments");
    if (!tag) {
        default_tag(names, n_names, tag_buf, sizeof tag_buf);
        tag = tag_buf;
    }
    attn_cl_program_options(options, opts, sizeof opts);
    /* FPGAs (and any device given offline binaries) take the binary of
     * this program: "<device name> <tag>" normalised, plus the extension. */
    snprintf(bin_name, sizeof bin_name, "%.300s %.200s", rt->info.name, tag);
    if (tag[0] &&
        attn_cl_find_binary(attn_cl_binary_dir(), bin_name, path, sizeof path))
        return attn_cl_build_binary_file(rt, path, opts, out, err);
    if (!(want = calloc(1, sizeof *want)))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY, "out of memory");
    if ((s = attn_cl_load_sources(names, n_names, &src, &len, err))) {
        free(want);
        return s;
    }
    if (kernels) {
        want->n = n_kernels;
        for (size_t i = 0; i < n_kernels; i++)
            want->name[i] = kernels[i];
    } else {
        source_kernels(src, len, want);
    }
    pthread_mutex_lock(&rt->build_lock);
    attn_cl_cache_key(rt, src, len, opts, key);
    attn_cl_cache_open(rt, key, &cache);
    if ((prog = from_cache(rt, &cache, opts, want))) {
        s = ATTN_OK;
        goto done;
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
    if ((lacks = missing_kernel(prog, want)))
        /* The caller's list or the scan of the sources is wrong: an entry
         * of this program would only ever be rejected. */
        attn_log(rt->log, ATTN_LOG_WARN,
                 "program %s has no kernel %s; it is not cached",
                 tag[0] ? tag : names[n_names - 1], lacks);
    else if (rt->cache_dir[0] && (bin = program_binary(prog, &bin_len))) {
        attn_cl_cache_write(&cache, bin, bin_len);
        free(bin);
    }
done:
    attn_cl_cache_close(&cache);
    pthread_mutex_unlock(&rt->build_lock);
    free(src);
    free(want);
    if (s == ATTN_OK)
        *out = prog;
    return s;
}
