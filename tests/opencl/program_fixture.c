/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fixtures of the program-cache suite (program_fixture.h).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "opencl/discovery.h"
#include "program_child.h"
#include "program_fixture.h"
#include "core/sha256.h"

char fixture_root[] = "/tmp/attn-test-program-XXXXXX";
sdpa_case fixture_f32_case, fixture_f16_case;
ref_sdpa_result fixture_f32_ref, fixture_f16_ref;
char fixture_device_name[256];

/* ---- files ----------------------------------------------------------- */

int fixture_remove_tree(const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *e;
    int rc = 0;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode))
        return unlink(path);
    chmod(path, 0700); /* a test may have taken the write bit away */
    if (!(d = opendir(path)))
        return -1;
    while ((e = readdir(d))) {
        char sub[4096];
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        rc |= fixture_remove_tree(sub);
    }
    closedir(d);
    return rmdir(path) | rc;
}

/* A fresh folder fixture_root/name (path receives it). */
int fixture_test_dir(const char *name, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", fixture_root, name);
    fixture_remove_tree(path);
    return mkdir(path, 0755);
}

/* Number of files in dir whose name ends with suffix; the first one's path
 * goes to first (when not NULL).  -1 when dir cannot be read. */
int fixture_count_files(const char *dir, const char *suffix, char *first,
                        size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t ls = strlen(suffix);
    int n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < ls || strcmp(e->d_name + l - ls, suffix) != 0)
            continue;
        if (n++ == 0 && first)
            snprintf(first, cap, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    return n;
}

unsigned char *fixture_read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long len;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 &&
        fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)len + 1)) &&
        fread(buf, 1, (size_t)len, f) == (size_t)len) {
        *n = (size_t)len;
    } else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

int fixture_write_all(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    int ok;
    if (!f)
        return -1;
    ok = fwrite(p, 1, n, f) == n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* program_cache.c's size and checksum fields; fixture_valid_entry checks
 * that the two agree on an entry the library wrote, so a change of format
 * shows as such instead of as a puzzling rebuild. */
static void entry_fields(const unsigned char *e, size_t n, unsigned char *size,
                         unsigned char *sum)
{
    attn_sha256_ctx h;
    uint64_t payload = n - ENTRY_HEADER;
    for (int i = 0; i < 8; i++)
        size[i] = (unsigned char)(payload >> (8 * i));
    attn_sha256_init(&h);
    attn_sha256_update(&h, e + 8, ENTRY_KEY_END - 8);
    attn_sha256_update(&h, size, 8);
    attn_sha256_update(&h, e + ENTRY_HEADER, n - ENTRY_HEADER);
    attn_sha256_final(&h, sum);
}

void fixture_seal_entry(unsigned char *e, size_t n)
{
    entry_fields(e, n, e + ENTRY_KEY_END, e + ENTRY_KEY_END + 8);
}

/* 1 when path holds a well-formed entry: magic, a size that matches the
 * file and a checksum that matches the payload. */
int fixture_valid_entry(const char *path)
{
    size_t n = 0;
    unsigned char *e = fixture_read_all(path, &n);
    unsigned char size[8], sum[ATTN_SHA256_BYTES];
    int ok;
    if (!e)
        return 0;
    ok = n > ENTRY_HEADER && memcmp(e, ENTRY_MAGIC, 8) == 0;
    if (ok) {
        entry_fields(e, n, size, sum);
        ok = !memcmp(size, e + ENTRY_KEY_END, 8) &&
             !memcmp(sum, e + ENTRY_KEY_END + 8, sizeof sum);
    }
    free(e);
    return ok;
}

/* ---- logging and contexts --------------------------------------------- */

void fixture_capture(int level, const char *msg, void *user)
{
    log_capture *c = user;
    int n = snprintf(c->text + c->len, sizeof c->text - c->len, "[%d] %s\n",
                     level, msg);
    if (n > 0)
        c->len += (size_t)n < sizeof c->text - c->len
                      ? (size_t)n
                      : sizeof c->text - c->len - 1;
}

int fixture_logged(const log_capture *c, const char *what)
{
    return strstr(c->text, what) != NULL;
}

/* The options of fixture_make_ctx. */
void fixture_options(attn_options *o, const char *cache_dir, int fallback,
                     log_capture *cap)
{
    memset(cap, 0, sizeof *cap);
    attn_options_init(o);
    o->device = "cpu";
    o->allow_fallback = fallback;
    o->cache_dir = cache_dir;
    o->path = ATTN_PATH_UNFUSED;
    o->log = fixture_capture;
    o->log_user = cap;
    o->log_level = ATTN_LOG_DEBUG;
}

/* The text of a log another process saved into path (cap cleared first).
 * 0, or -1 when path cannot be read. */
int fixture_load_log(const char *path, log_capture *cap)
{
    size_t n = 0;
    unsigned char *t = fixture_read_all(path, &n);
    memset(cap, 0, sizeof *cap);
    if (!t)
        return -1;
    cap->len = n < sizeof cap->text ? n : sizeof cap->text - 1;
    memcpy(cap->text, t, cap->len);
    free(t);
    return 0;
}

/* A context on the OpenCL CPU device with the cache in cache_dir, logging
 * everything into cap (cleared).  NULL (after a failed assertion) when it
 * cannot be created or landed on the native backend. */
attn_context *fixture_make_ctx(const char *cache_dir, int fallback,
                               log_capture *cap)
{
    attn_options o;
    attn_context *ctx = NULL;
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    attn_status s;
    fixture_options(&o, cache_dir, fallback, cap);
    s = attn_context_create(&o, &ctx);
    HARNESS_EXPECT(s == ATTN_OK, "attn_context_create on \"cpu\"");
    if (s != ATTN_OK) {
        printf("\n  attn_context_create: %s: %s\n", attn_status_string(s),
               attn_last_error());
        return NULL;
    }
    s = attn_context_device(ctx, &info);
    HARNESS_EXPECT(s == ATTN_OK && info.kind == ATTN_DEVICE_CPU_OPENCL,
                   "the context runs on the OpenCL CPU device");
    if (s != ATTN_OK || info.kind != ATTN_DEVICE_CPU_OPENCL) {
        attn_context_destroy(ctx);
        return NULL;
    }
    return ctx;
}

/* One call of c on a fresh context (cache in cache_dir); 1 when right. */
int fixture_run_case(const sdpa_case *c, const ref_sdpa_result *ref,
                     const char *cache_dir, log_capture *cap, const char *what)
{
    attn_context *ctx = fixture_make_ctx(cache_dir, 0, cap);
    int ok;
    if (!ctx)
        return 0;
    ok = sdpa_case_check(ctx, c, ref, 1, NULL, what);
    attn_context_destroy(ctx);
    return ok;
}

int fixture_run_f32(const char *cache_dir, log_capture *cap, const char *what)
{
    return fixture_run_case(&fixture_f32_case, &fixture_f32_ref, cache_dir, cap,
                            what);
}

/* ---- planted entries -------------------------------------------------- */

int fixture_fill(const char *dir, log_capture *cap, char *entry, size_t cap_n)
{
    mkdir(dir, 0755);
    if (!fixture_run_f32(dir, cap, "fill a cache folder") ||
        fixture_count_files(dir, ".clbin", entry, cap_n) != 1)
        return -1;
    return fixture_valid_entry(entry) ? 0 : -1;
}

int fixture_snapshot(const char *dir, dir_snapshot *s)
{
    memset(s, 0, sizeof *s);
    s->files = fixture_count_files(dir, "", NULL, 0) - 2; /* . and .. */
    if (fixture_count_files(dir, ".clbin", s->entry, sizeof s->entry) != 1)
        return -1;
    s->bytes = fixture_read_all(s->entry, &s->n);
    return s->bytes ? 0 : -1;
}

int fixture_unchanged(const char *dir, const dir_snapshot *s)
{
    size_t n = 0;
    unsigned char *now = fixture_read_all(s->entry, &n);
    int same = now && n == s->n && !memcmp(now, s->bytes, n) &&
               fixture_count_files(dir, "", NULL, 0) - 2 == s->files;
    free(now);
    return same;
}

void fixture_snapshot_free(dir_snapshot *s)
{
    free(s->bytes);
    s->bytes = NULL;
}

void fixture_expect_refused(const char *dir, log_capture *cap, const char *what,
                            const char *why)
{
    HARNESS_EXPECT(fixture_run_f32(dir, cap, what), what);
    if (!fixture_logged(cap, what) || !fixture_logged(cap, why))
        printf("\n  log lacks \"%s\" or \"%s\":\n%s", what, why, cap->text);
    HARNESS_EXPECT(fixture_logged(cap, "[2] program cache "), what);
    HARNESS_EXPECT(fixture_logged(cap, what), what);
    HARNESS_EXPECT(fixture_logged(cap, why), what);
    HARNESS_EXPECT(fixture_logged(cap, "built program"), what);
    HARNESS_EXPECT(!fixture_logged(cap, "cache hit"), what);
    HARNESS_EXPECT(!fixture_logged(cap, "cached program"), what);
}

/* The offline binary of one program: <dir>/<"<device> <tag>" normalised>
 * .bin, tag "unfused_f32" or "unfused_f16" (runtime.h,
 * attn_cl_build_tagged). */
void fixture_binary_path(const char *dir, const char *tag, char *path,
                         size_t cap)
{
    char full[600], name[512];
    snprintf(full, sizeof full, "%s %s", fixture_device_name, tag);
    attn_cl_binary_name(full, name, sizeof name);
    snprintf(path, cap, "%s/%s.bin", dir, name);
}

/* Writes the payload of dir's only entry as the binary of program tag. */
int fixture_export_binary(const char *dir, const char *bin_dir, const char *tag)
{
    char entry[1024], path[1400];
    unsigned char *e;
    size_t n = 0;
    int rc;
    if (fixture_count_files(dir, ".clbin", entry, sizeof entry) != 1 ||
        !(e = fixture_read_all(entry, &n)))
        return -1;
    fixture_binary_path(bin_dir, tag, path, sizeof path);
    rc = n > ENTRY_HEADER
             ? fixture_write_all(path, e + ENTRY_HEADER, n - ENTRY_HEADER)
             : -1;
    free(e);
    return rc;
}

/* ---- suite ------------------------------------------------------------ */

int fixture_cases_init(void)
{
    attn_sdpa_desc d;
    memset(&d, 0, sizeof d);
    d.batch = 2;
    d.heads_q = 4;
    d.heads_kv = 2;
    d.seq_q = 19;
    d.seq_kv = 33;
    d.head_dim = 16;
    d.head_dim_v = 8;
    d.mask.causal = 1;
    if (sdpa_case_init(&fixture_f32_case, &d, 41, 1.0, 0.0, 0) ||
        ref_sdpa(&fixture_f32_case.d, fixture_f32_case.q, fixture_f32_case.k,
                 fixture_f32_case.v, &fixture_f32_ref))
        return 1;
    d.dtype = ATTN_F16;
    d.mask.causal = 0;
    if (sdpa_case_init(&fixture_f16_case, &d, 42, 1.0, 0.0, 0) ||
        ref_sdpa(&fixture_f16_case.d, fixture_f16_case.q, fixture_f16_case.k,
                 fixture_f16_case.v, &fixture_f16_ref))
        return 1;
    return 0;
}

int fixture_suite_init(void)
{
    attn_context *ctx;
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    attn_options o;
    if (fixture_cases_init())
        return 1;
    /* The device name names the offline binary. */
    attn_options_init(&o);
    o.device = "cpu";
    o.cache_dir = "";
    if (attn_context_create(&o, &ctx) != ATTN_OK)
        return 1;
    if (attn_context_device(ctx, &info) == ATTN_OK)
        snprintf(fixture_device_name, sizeof fixture_device_name, "%s",
                 info.name);
    attn_context_destroy(ctx);
    return fixture_device_name[0] == '\0';
}

int fixture_suite_clean(void)
{
    sdpa_case_free(&fixture_f32_case);
    sdpa_case_free(&fixture_f16_case);
    ref_sdpa_free(&fixture_f32_ref);
    ref_sdpa_free(&fixture_f16_ref);
    return 0;
}

/* ---- main ------------------------------------------------------------- */

int fixture_main(int argc, char **argv, const char *suite,
                 const harness_test *tests, int (*can_run)(void),
                 int (*init)(void))
{
    attn_device_info devs[16] = {ATTN_DEVICE_INFO_INIT};
    size_t n = 0, usable = 0;
    int rc;

    /* The test decides where programs come from. */
    unsetenv("ATTN_DEVICE");
    unsetenv("ATTN_CACHE_DIR");
    unsetenv("ATTN_KERNEL_BINARY_DIR");
    if (argc > 1 && !strcmp(argv[1], "--child"))
        return child_main(argc, argv);
    child_init_self(argv[0]);
    if (attn_devices(devs, 16, &n) == ATTN_OK)
        for (size_t i = 0; i < n && i < 16; i++)
            usable += devs[i].usable && devs[i].kind == ATTN_DEVICE_CPU_OPENCL;
    if (usable == 0) {
        printf("SKIP: %s: no usable OpenCL CPU device on this machine\n",
               suite);
        return HARNESS_SKIP;
    }
    if (can_run && can_run() != 0)
        return HARNESS_SKIP;
    if (!mkdtemp(fixture_root)) {
        perror("mkdtemp");
        return 1;
    }
    rc = harness_main(suite, init ? init : fixture_suite_init,
                      fixture_suite_clean, tests);
    if (fixture_remove_tree(fixture_root) != 0) {
        fprintf(stderr, "cannot remove %s\n", fixture_root);
        rc = 1;
    }
    return rc;
}
