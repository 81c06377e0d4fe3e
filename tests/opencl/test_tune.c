/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-tune as a user runs it: `attn-tune --quick -d cpu -o DIR` writes one
 * profile that parses cleanly; with ATTN_PLATFORM_DIR=DIR the profile of
 * the OpenCL CPU device carries the written fused.* values and names the
 * file among its sources; a context on "cpu" (fused path, no fallback)
 * logs that source and matches the native backend.
 *
 * Without an OpenCL CPU device the suite prints SKIP and exits 77.
 *
 * Usage: test_tune PATH-TO-attn-tune
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "opencl/discovery.h"
#include "opencl/profile.h"

static const char *tune;
static char dir[] = "/tmp/attn-tuneXXXXXX";
static char file[4096]; /* the written profile */
static attn_device_info cpu_dev;

static const char *const KEYS[] = {"fused.vw", "fused.nv", "fused.wg",
                                   "fused.tk", "fused.kb", "fused.cb"};

static void report(void *user, const char *msg)
{
    (void)user;
    printf("\n  profile: %s", msg);
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
        fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
        *len = fread(buf, 1, (size_t)n, f);
        buf[*len] = '\0';
    }
    fclose(f);
    return buf;
}

/* The value of "key = N" in text, or -1. */
static int file_value(const char *text, const char *key)
{
    const char *p = text;
    size_t kl = strlen(key);
    while ((p = strstr(p, key))) {
        if ((p == text || p[-1] == '\n') && (p[kl] == ' ' || p[kl] == '=')) {
            p += kl;
            while (*p == ' ' || *p == '=')
                p++;
            return atoi(p);
        }
        p += kl;
    }
    return -1;
}

static void test_run_and_load(void)
{
    char cmd[8192], *text;
    size_t len = 0, n_prof = 0;
    int st;
    DIR *d;
    struct dirent *e;
    attn_profile *p = malloc(sizeof *p);
    attn_profile_text t;
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);

    snprintf(cmd, sizeof cmd,
             "env -u ATTN_DEVICE -u ATTN_PLATFORM_DIR '%s' --quick -d cpu "
             "-o '%s'",
             tune, dir);
    st = system(cmd);
    CU_ASSERT_FATAL(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    CU_ASSERT_PTR_NOT_NULL_FATAL(d = opendir(dir));
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l > 5 && !strcmp(e->d_name + l - 5, ".prof")) {
            snprintf(file, sizeof file, "%s/%s", dir, e->d_name);
            n_prof++;
        }
    }
    closedir(d);
    CU_ASSERT_EQUAL_FATAL(n_prof, 1);

    text = read_all(file, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    t.name = file;
    t.data = text;
    t.len = len;
    CU_ASSERT_EQUAL(attn_profile_check(&t, report, NULL), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "GFLOP/s"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "[device \""));

    setenv("ATTN_PLATFORM_DIR", dir, 1);
    CU_ASSERT_EQUAL_FATAL(attn_profile_resolve(&cpu_dev, NULL, p, report, NULL),
                          ATTN_OK);
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++) {
        int want = file_value(text, KEYS[i]);
        HARNESS_EXPECT(want > 0, KEYS[i]);
        HARNESS_EXPECT(attn_profile_get_int(p, KEYS[i], 1, 1024, -1) == want,
                       KEYS[i]);
    }
    HARNESS_EXPECT(strstr(p->sources, file) != NULL, p->sources);
    free(text);
    free(p);
}

typedef struct log_state {
    int seen; /* a DEBUG line naming the profile file */
} log_state;

static void on_log(int level, const char *msg, void *user)
{
    log_state *ls = user;
    if (level == ATTN_LOG_DEBUG && strstr(msg, "profile") && strstr(msg, file))
        ls->seen = 1;
}

static void test_context_uses_it(void)
{
    attn_options o;
    attn_context *cl = NULL, *nat = NULL;
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    log_state ls = {0};
    attn_sdpa_desc d;
    size_t n, i;
    float *q, *k, *v, *o1, *o2;
    double diff = 0.0;
    unsigned long long seed = 42;

    CU_ASSERT_FATAL(file[0] != '\0');
    setenv("ATTN_PLATFORM_DIR", dir, 1);
    attn_options_init(&o);
    o.device = "cpu";
    o.path = ATTN_PATH_FUSED;
    o.allow_fallback = 0;
    o.log = on_log;
    o.log_user = &ls;
    o.log_level = ATTN_LOG_DEBUG;
    CU_ASSERT_EQUAL_FATAL(attn_context_create(&o, &cl), ATTN_OK);
    CU_ASSERT_EQUAL(attn_context_device(cl, &info), ATTN_OK);
    CU_ASSERT_EQUAL(info.kind, ATTN_DEVICE_CPU_OPENCL);
    HARNESS_EXPECT(ls.seen, "a DEBUG message names the profile file");
    attn_options_init(&o);
    o.device = "native";
    CU_ASSERT_EQUAL_FATAL(attn_context_create(&o, &nat), ATTN_OK);

    memset(&d, 0, sizeof d);
    d.batch = 2;
    d.heads_q = d.heads_kv = 3;
    d.seq_q = 77;
    d.seq_kv = 301;
    d.head_dim = d.head_dim_v = 64;
    d.dtype = ATTN_F32;
    n = (size_t)d.batch * d.heads_q * d.seq_kv * d.head_dim;
    q = malloc(n * sizeof *q);
    k = malloc(n * sizeof *k);
    v = malloc(n * sizeof *v);
    o1 = calloc(n, sizeof *o1);
    o2 = calloc(n, sizeof *o2);
    CU_ASSERT_FATAL(q && k && v && o1 && o2);
    for (i = 0; i < n; i++) {
        float *a[3] = {q, k, v};
        for (int j = 0; j < 3; j++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            a[j][i] = (float)((double)(seed >> 40) / 16777216.0 * 2.0 - 1.0);
        }
    }
    CU_ASSERT_EQUAL(attn_sdpa(cl, &d, q, k, v, o1, NULL), ATTN_OK);
    CU_ASSERT_EQUAL(attn_sdpa(nat, &d, q, k, v, o2, NULL), ATTN_OK);
    n = (size_t)d.batch * d.heads_q * d.seq_q * d.head_dim_v;
    for (i = 0; i < n; i++) {
        double e = fabs((double)o1[i] - (double)o2[i]);
        if (!(e <= diff))
            diff = isnan(e) ? INFINITY : e;
    }
    HARNESS_EXPECT(diff <= 1e-4, "fused on the tuned profile vs native");
    free(q);
    free(k);
    free(v);
    free(o1);
    free(o2);
    attn_context_destroy(cl);
    attn_context_destroy(nat);
}

/* The device "cpu" selects, or 0 when there is none. */
static int find_cpu(void)
{
    attn_cl_device *devs = NULL;
    attn_device_info *infos;
    attn_selection sel;
    attn_err err = {{0}};
    size_t n = 0;
    int ok = 0;
    if (attn_cl_discover(&devs, &n, &err) != ATTN_OK || n == 0) {
        free(devs);
        return 0;
    }
    if ((infos = calloc(n, sizeof *infos))) {
        for (size_t i = 0; i < n; i++)
            infos[i] = devs[i].info;
        if (attn_cl_select(infos, n, "cpu", 0, &sel, &err) == ATTN_OK &&
            !sel.native && sel.count > 0) {
            cpu_dev = infos[sel.index[0]];
            ok = 1;
        }
        free(infos);
    }
    free(devs);
    return ok;
}

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4096];
    if (!d)
        return;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            remove(path);
        }
    closedir(d);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    static const harness_test tests[] = {
        {"attn-tune --quick writes a profile that resolves", test_run_and_load},
        {"a context on cpu loads the profile and is right",
         test_context_uses_it},
        {NULL, NULL}};
    int rc;
    if (argc != 2) {
        fprintf(stderr, "usage: test_tune PATH-TO-attn-tune\n");
        return 2;
    }
    tune = argv[1];
    unsetenv("ATTN_DEVICE");
    unsetenv("ATTN_PLATFORM_DIR");
    if (!find_cpu()) {
        printf("SKIP: attn-tune: no OpenCL CPU device on this machine\n");
        return HARNESS_SKIP;
    }
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    rc = harness_main("attn-tune", NULL, NULL, tests);
    remove_dir();
    return rc;
}
