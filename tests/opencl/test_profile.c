/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Platform profiles (src/opencl/profile.c) on synthetic devices: lookup
 * order, name normalisation, ATTN_PLATFORM_DIR, malformed files, kernel
 * parameters checked against the variants' schemas, the embedded files,
 * the tuning helper.  No OpenCL device needed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "opencl/discovery.h"
#include "opencl/profile.h"
#include "opencl/variant.h"

/* ---- helpers ------------------------------------------------------------ */

typedef struct reports {
    int n;
    char all[8192]; /* every message, one a line */
} reports;

static void collect(void *user, const char *msg)
{
    reports *r = user;
    size_t used = strlen(r->all);
    r->n++;
    snprintf(r->all + used, sizeof r->all - used, "%s\n", msg);
}

static attn_device_info dev(const char *name, const char *vendor,
                            const char *platform, attn_device_kind kind)
{
    attn_device_info d;
    memset(&d, 0, sizeof d);
    snprintf(d.name, sizeof d.name, "%s", name);
    snprintf(d.vendor, sizeof d.vendor, "%s", vendor);
    snprintf(d.platform, sizeof d.platform, "%s", platform);
    snprintf(d.driver_version, sizeof d.driver_version, "1.0");
    snprintf(d.opencl_c_version, sizeof d.opencl_c_version, "OpenCL C 1.2");
    d.kind = kind;
    return d;
}

static attn_profile_text text(const char *name, const char *data)
{
    return (attn_profile_text){name, data, strlen(data)};
}

/* Resolves over the given texts (no built-in file); returns the number of
 * messages. */
static int resolve(const attn_device_info *d, const attn_profile_text *t,
                   size_t n, attn_profile *p, reports *r)
{
    memset(r, 0, sizeof *r);
    CU_ASSERT_EQUAL(attn_profile_resolve_texts(d, t, n, p, collect, r),
                    ATTN_OK);
    return r->n;
}

static int has(const reports *r, const char *s)
{
    return strstr(r->all, s) != NULL;
}

/* The int value of key in p, -1 when unset. */
static int pint(const attn_profile *p, const char *key)
{
    return attn_profile_get_int(p, key, 0, 1 << 30, -1);
}

/* ---- lookup order ------------------------------------------------------- */

/* Sections in reverse level order across files, so that only the level can
 * explain the result. */
static const char *const DEVICE_FIRST = "[device \"widget 9000\"]\n"
                                        "queues = 4\n";
static const char *const ARCH = "[arch \"zen9\"]\n"
                                "queues = 3\n"
                                "quirk.x = arch\n"
                                "[arch \"zen8\"]\n" /* not this device */
                                "queues = 7\n";
static const char *const VENDOR = "[vendor \"acme\"]\n"
                                  "queues = 2\n"
                                  "unfused.sc_tk = 16\n"
                                  "quirk.x = vendor\n"
                                  "quirk.y = vendor\n"
                                  "[vendor \"other corp\"]\n"
                                  "unfused.sc_tk = 128\n";
static const char *const DEFAULT = "[default]\n"
                                   "queues = 1\n"
                                   "unfused.sc_tq = 8\n"
                                   "unfused.sc_tk = 8\n"
                                   "path = fused\n"
                                   "quirk.x = default\n";

static void test_lookup_order(void)
{
    attn_profile_text t[] = {text("d.prof", DEVICE_FIRST), text("a.prof", ARCH),
                             text("v.prof", VENDOR), text("0.prof", DEFAULT)};
    attn_device_info full = dev("ACME  Widget(TM) 9000 zen9", "Acme Corp.",
                                "Acme OpenCL", ATTN_DEVICE_GPU);
    attn_device_info plain =
        dev("ACME Gizmo", "ACME corp", "Acme OpenCL", ATTN_DEVICE_GPU);
    attn_device_info stranger =
        dev("Other Thing zen9", "Other Corp", "x", ATTN_DEVICE_GPU);
    attn_profile p;
    reports r;

    CU_ASSERT_EQUAL(resolve(&full, t, 4, &p, &r), 0);
    CU_ASSERT_EQUAL(p.queues, 4); /* device */
    CU_ASSERT_STRING_EQUAL(attn_profile_get(&p, "quirk.x"), "arch");
    CU_ASSERT_STRING_EQUAL(attn_profile_get(&p, "quirk.y"), "vendor");
    CU_ASSERT_EQUAL(pint(&p, "unfused.sc_tk"), 16); /* vendor */
    CU_ASSERT_EQUAL(pint(&p, "unfused.sc_tq"), 8);  /* default */
    CU_ASSERT_EQUAL(p.path, ATTN_PATH_FUSED);       /* default */
    CU_ASSERT_EQUAL(pint(&p, "unfused.sc_td"), -1); /* nobody */
    CU_ASSERT_EQUAL(pint(&p, "fused.min_seq_kv"), -1);
    CU_ASSERT_FALSE(p.build_options_set);
    CU_ASSERT_PTR_NULL(attn_profile_get(&p, "quirk.z"));
    /* Sections listed level by level: default, vendor, arch, device. */
    CU_ASSERT_STRING_EQUAL(p.sources, "0.prof:1; v.prof:1; a.prof:1; d.prof:1");

    CU_ASSERT_EQUAL(resolve(&plain, t, 4, &p, &r), 0);
    CU_ASSERT_EQUAL(p.queues, 2);
    CU_ASSERT_STRING_EQUAL(attn_profile_get(&p, "quirk.x"), "vendor");

    CU_ASSERT_EQUAL(resolve(&stranger, t, 4, &p, &r), 0);
    CU_ASSERT_EQUAL(p.queues, 3); /* arch matches without the vendor */
    CU_ASSERT_EQUAL(pint(&p, "unfused.sc_tk"), 128);
    CU_ASSERT_STRING_EQUAL(attn_profile_get(&p, "quirk.x"), "arch");
    CU_ASSERT_PTR_NULL(attn_profile_get(&p, "quirk.y"));
}

static void test_same_level_later_wins(void)
{
    attn_profile_text t[] = {
        text("a.prof", "[vendor \"acme\"]\nqueues = 2\nweight = 10\n"
                       "[vendor \"acme\" kind \"gpu\"]\nqueues = 3\n"),
        text("b.prof", "[platform \"acme opencl\"]\nweight = 20\n")};
    attn_device_info d = dev("Gizmo", "ACME", "Acme OpenCL", ATTN_DEVICE_GPU);
    attn_profile p;
    reports r;
    CU_ASSERT_EQUAL(resolve(&d, t, 2, &p, &r), 0);
    CU_ASSERT_EQUAL(p.queues, 3);
    CU_ASSERT_EQUAL(p.weight, 20);
    /* An extra condition that fails drops the whole section. */
    d.kind = ATTN_DEVICE_FPGA;
    CU_ASSERT_EQUAL(resolve(&d, t, 2, &p, &r), 0);
    CU_ASSERT_EQUAL(p.queues, 2);
}

/* ---- normalisation and conditions ---------------------------------------- */

static void test_normalisation(void)
{
    attn_profile_text t[] = {
        text("n.prof", "[device \"skylake-avx512-intel xeon\"]\nqueues = 5\n"
                       "[device \"pthread\"]\nweight = 1\n"
                       "[arch \"  Skylake-AVX512 \"]\nquirk.a = 1\n"
                       "[device \"Geforce RTX 4090\"]\nqueues = 6\n"
                       "[device \"haswell\"]\nqueues = 7\n"
                       "[arch \"8.1.2\"]\nquirk.drv = 1\n")};
    attn_device_info pocl =
        dev("pthread-skylake-avx512-Intel(R) Xeon(R) Processor", "GenuineIntel",
            "Portable Computing Language", ATTN_DEVICE_CPU_OPENCL);
    attn_device_info pocl4 =
        dev("cpu-haswell-AMD EPYC", "AuthenticAMD",
            "Portable Computing Language", ATTN_DEVICE_CPU_OPENCL);
    attn_device_info gpu = dev("NVIDIA   GeForce\tRTX 4090 ", "NVIDIA",
                               "NVIDIA CUDA", ATTN_DEVICE_GPU);
    attn_profile p;
    reports r;
    CU_ASSERT_EQUAL(resolve(&pocl, t, 1, &p, &r), 0);
    CU_ASSERT_EQUAL(p.queues, 5);
    CU_ASSERT_EQUAL(p.weight, -1); /* the prefix is gone */
    CU_ASSERT_PTR_NOT_NULL(attn_profile_get(&p, "quirk.a"));
    CU_ASSERT_EQUAL(resolve(&pocl4, t, 1, &p, &r), 0);
    CU_ASSERT_EQUAL(p.queues, 7);
    CU_ASSERT_EQUAL(resolve(&gpu, t, 1, &p, &r), 0);
    CU_ASSERT_EQUAL(p.queues, 6);
    CU_ASSERT_PTR_NULL(attn_profile_get(&p, "quirk.drv"));
    /* arch also looks at the driver version. */
    snprintf(gpu.driver_version, sizeof gpu.driver_version, "8.1.2 (beta)");
    CU_ASSERT_EQUAL(resolve(&gpu, t, 1, &p, &r), 0);
    CU_ASSERT_PTR_NOT_NULL(attn_profile_get(&p, "quirk.drv"));
}

static void test_kind_condition(void)
{
    attn_profile_text t[] = {text("k.prof", "[kind \"gpu\"]\nqueues = 2\n"
                                            "[kind \"igpu\"]\nweight = 3\n"
                                            "[kind \"fpga\"]\nqueues = 8\n")};
    attn_device_info d = dev("x", "y", "z", ATTN_DEVICE_IGPU);
    attn_profile p;
    reports r;
    CU_ASSERT_EQUAL(resolve(&d, t, 1, &p, &r), 0);
    CU_ASSERT_EQUAL(p.queues, 2); /* "gpu" takes integrated ones too */
    CU_ASSERT_EQUAL(p.weight, 3);
    d.kind = ATTN_DEVICE_GPU;
    CU_ASSERT_EQUAL(resolve(&d, t, 1, &p, &r), 0);
    CU_ASSERT_EQUAL(p.queues, 2);
    CU_ASSERT_EQUAL(p.weight, -1);
    d.kind = ATTN_DEVICE_CPU_OPENCL;
    CU_ASSERT_EQUAL(resolve(&d, t, 1, &p, &r), 0);
    CU_ASSERT_EQUAL(p.queues, -1);
}

static void test_syntax(void)
{
    attn_profile_text t[] = {text(
        "s.prof", "# comment\r\n\r\n  [ default ]   # trailing\r\n"
                  "build_options = \"-cl-mad-enable # -cl-no-signed-zeros\""
                  "\r\n"
                  "quirk.on = yes it is # a comment\r\n"
                  "quirk.off = off\r\n"
                  "path = unfused\r\n"
                  "quirk.n = 12\r\n"
                  "quirk.bad = 12x\r\n"
                  "fused_min_seq = 96\r\n" /* the earlier name */
                  "path.order = decode,  unfused fused\r\n"
                  "staging = pinned\r\n"
                  "unfused.sm_wg = 128")}; /* no final newline */
    attn_device_info d = dev("x", "y", "z", ATTN_DEVICE_GPU);
    attn_profile p;
    reports r;
    /* Quoted, '#' is no comment: what follows it is an option; '#' itself
     * is none (reported and dropped, the only report). */
    CU_ASSERT_EQUAL(resolve(&d, t, 1, &p, &r), 1);
    CU_ASSERT_TRUE(has(&r, "s.prof:4: build option '#' is not allowed"));
    CU_ASSERT_TRUE(p.build_options_set);
    CU_ASSERT_STRING_EQUAL(p.build_options,
                           "-cl-mad-enable -cl-no-signed-zeros");
    CU_ASSERT_STRING_EQUAL(attn_profile_get(&p, "quirk.on"), "yes it is");
    CU_ASSERT_TRUE(attn_profile_quirk(&p, "on"));
    CU_ASSERT_FALSE(attn_profile_quirk(&p, "off"));
    CU_ASSERT_FALSE(attn_profile_quirk(&p, "absent"));
    CU_ASSERT_EQUAL(p.path, ATTN_PATH_UNFUSED);
    CU_ASSERT_EQUAL(pint(&p, "unfused.sm_wg"), 128);
    CU_ASSERT_EQUAL(pint(&p, "fused.min_seq_kv"), 96);
    CU_ASSERT_EQUAL(p.staging, 1);
    CU_ASSERT_STRING_EQUAL(p.order, "decode,  unfused fused");
    {
        int order[8];
        CU_ASSERT_EQUAL(attn_profile_order(&p, order, 8), 3);
        CU_ASSERT_STRING_EQUAL(attn_cl_variants[order[0]]->name, "decode");
        CU_ASSERT_STRING_EQUAL(attn_cl_variants[order[1]]->name, "unfused");
        CU_ASSERT_STRING_EQUAL(attn_cl_variants[order[2]]->name, "fused");
    }
    CU_ASSERT_EQUAL(attn_profile_get_int(&p, "quirk.n", 1, 64, 7), 12);
    CU_ASSERT_EQUAL(attn_profile_get_int(&p, "quirk.n", 1, 8, 7), 7);
    CU_ASSERT_EQUAL(attn_profile_get_int(&p, "quirk.bad", 1, 64, 7), 7);
    CU_ASSERT_EQUAL(attn_profile_get_int(&p, "quirk.none", 1, 64, 7), 7);
}

/* ---- malformed files ------------------------------------------------------
 */

static void test_malformed(void)
{
    static const struct {
        const char *body, *where, *what;
    } BAD[] = {
        {"[default]\nqueues = 2\n[colour \"red\"]\n",
         "bad.prof:3:", "unknown section kind"},
        {"[default]\nqueues 2\n", "bad.prof:2:", "key = value"},
        {"[default]\n\nqueues = 9\n", "bad.prof:3:", "1..8"},
        {"[default]\nqueues = two\n", "bad.prof:2:", "integer"},
        {"[default]\nunfused.sm_wg = 48\n", "bad.prof:2:", "power of two"},
        {"[default]\nunfused.sc_tq = 0\n", "bad.prof:2:", "1..1024"},
        {"[default]\nqueue = 2\n", "bad.prof:2:", "unknown key 'queue'"},
        {"[default]\nfused. = 2\n", "bad.prof:2:", "unknown key"},
        {"[default]\nfused.vw = 3\n", "bad.prof:2:", "power of two"},
        {"[default]\nfused.speed = 3\n",
         "bad.prof:2:", "kernel variant 'fused' has no parameter 'speed'"},
        {"[default]\nwarp.size = 32\n",
         "bad.prof:2:", "unknown key 'warp.size'"},
        {"[default]\ndecode.max_seq_q = 65\n", "bad.prof:2:", "0..64"},
        {"[default]\ndecode_max_seq_q = 65\n", "bad.prof:2:", "0..64"},
        {"[default]\npath.order = fused turbo\n",
         "bad.prof:2:", "'turbo' is not a kernel variant"},
        {"[default]\npath.order = fused fused\n", "bad.prof:2:", "twice"},
        {"[default]\npath.order = \" \"\n",
         "bad.prof:2:", "names no kernel variant"},
        {"[default]\nstaging = fast\n", "bad.prof:2:", "direct or pinned"},
        {"queues = 2\n", "bad.prof:1:", "outside a section"},
        {"[vendor acme]\n", "bad.prof:1:", "quoted"},
        {"[vendor \"acme\"\n", "bad.prof:1:", "']'"},
        {"[kind \"tpu\"]\n", "bad.prof:1:", "unknown kind"},
        {"[vendor \"\"]\n", "bad.prof:1:", "empty"},
        {"[]\n", "bad.prof:1:", "empty section"},
        {"[default \"x\"]\n", "bad.prof:1:", "no pattern"},
        {"[vendor \"a\" vendor \"b\"]\n", "bad.prof:1:", "twice"},
        {"[default]\npath = fast\n", "bad.prof:2:", "auto, fused or unfused"},
        {"[default]\nquirk.x = a\"b\n", "bad.prof:2:", "stray"},
        {"[default]\nquirk.x = \"ab\n", "bad.prof:2:", "unbalanced"},
        {"[default]\nQueues = 2\n", "bad.prof:2:", "bad character"},
    };
    attn_device_info d = dev("acme gizmo", "acme", "acme", ATTN_DEVICE_GPU);
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        attn_profile_text t[] = {
            text("good.prof", "[default]\nweight = 5\n"
                              "queues = 1\n"),
            text("bad.prof", BAD[i].body),
            text("late.prof", "[default]\nfused.kb = 1\n")};
        attn_profile p;
        reports r;
        int n = resolve(&d, t, 3, &p, &r);
        HARNESS_EXPECT(n == 2, BAD[i].body);
        HARNESS_EXPECT(has(&r, BAD[i].where), BAD[i].body);
        HARNESS_EXPECT(has(&r, BAD[i].what), BAD[i].body);
        HARNESS_EXPECT(has(&r, "bad.prof: ignored (1 error)"), BAD[i].body);
        /* The bad file gives nothing, the others still apply. */
        HARNESS_EXPECT(p.queues == 1 && p.weight == 5, BAD[i].body);
        HARNESS_EXPECT(attn_profile_get(&p, "fused.kb") != NULL, BAD[i].body);
        HARNESS_EXPECT(attn_profile_check(&t[1], NULL, NULL) == 1, BAD[i].body);
    }
}

static void test_malformed_many(void)
{
    char big[2048];
    char body[16384] = "[default]\n";
    attn_profile_text t;
    reports r = {0};
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int i = 0; i < 20; i++)
        strcat(body, "nope = 1\n");
    strcat(body, big); /* line 22: too long */
    t = text("many.prof", body);
    CU_ASSERT_EQUAL(attn_profile_check(&t, collect, &r), 21);
    /* The first errors are reported, the count covers them all. */
    CU_ASSERT_TRUE(has(&r, "many.prof:2: unknown key 'nope'"));
    CU_ASSERT_FALSE(has(&r, "many.prof:22:"));
    CU_ASSERT_TRUE(has(&r, "many.prof: ignored (21 errors)"));
    CU_ASSERT_TRUE(r.n <= 9);
    /* A NUL byte inside a line. */
    t = (attn_profile_text){"nul.prof", "[default]\nque\0ues = 1\n", 22};
    memset(&r, 0, sizeof r);
    CU_ASSERT_EQUAL(attn_profile_check(&t, collect, &r), 1);
    CU_ASSERT_TRUE(has(&r, "nul.prof:2: NUL byte"));
}

/* ---- the shipped files --------------------------------------------------- */

static void test_builtin_clean(void)
{
    attn_device_info devs[] = {
        dev("NVIDIA H100 80GB HBM3", "NVIDIA Corporation", "NVIDIA CUDA",
            ATTN_DEVICE_GPU),
        dev("NVIDIA GeForce RTX 4090", "NVIDIA Corporation", "NVIDIA CUDA",
            ATTN_DEVICE_GPU),
        dev("gfx90a:sramecc+:xnack-", "Advanced Micro Devices, Inc.",
            "AMD Accelerated Parallel Processing", ATTN_DEVICE_GPU),
        dev("gfx1100", "Advanced Micro Devices, Inc.",
            "AMD Accelerated Parallel Processing", ATTN_DEVICE_GPU),
        dev("Intel(R) Arc(TM) A770 Graphics", "Intel(R) Corporation",
            "Intel(R) OpenCL Graphics", ATTN_DEVICE_GPU),
        dev("Intel(R) UHD Graphics 770", "Intel(R) Corporation",
            "Intel(R) OpenCL Graphics", ATTN_DEVICE_IGPU),
        dev("pthread-skylake-avx512-Intel(R) Xeon(R) Processor", "GenuineIntel",
            "Portable Computing Language", ATTN_DEVICE_CPU_OPENCL),
        dev("pac_a10 : Intel PAC Platform (pac_ee00000)",
            "Intel(R) Corporation", "Intel(R) FPGA SDK for OpenCL(TM)",
            ATTN_DEVICE_FPGA),
        dev("xilinx_u250_gen3x16_xdma_shell_4_1", "Xilinx", "Xilinx",
            ATTN_DEVICE_FPGA),
        dev("Some Future Device", "Nobody", "Nowhere", ATTN_DEVICE_GPU),
    };
    enum { H100, RTX, MI200, RDNA3, ARC, UHD, POCL, PAC, U250, UNKNOWN };
    size_t files = 0, bad = 0;
    reports r = {0};
    CU_ASSERT_EQUAL(attn_profile_check_builtin(&files, &bad, collect, &r),
                    ATTN_OK);
    CU_ASSERT_TRUE(files >= 7);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(r.n, 0);
    if (r.n)
        printf("\n%s", r.all);
    for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) {
        attn_profile p[1];
        attn_cl_tuning t;
        memset(&r, 0, sizeof r);
        CU_ASSERT_EQUAL(attn_profile_resolve(&devs[i], "", p, collect, &r),
                        ATTN_OK);
        HARNESS_EXPECT(r.n == 0, devs[i].name);
        HARNESS_EXPECT(p->queues >= 1 && p->path >= 0 &&
                           p->native_beats_opencl >= 0 &&
                           pint(p, "decode.max_seq_q") >= 0 &&
                           pint(p, "fused.min_seq_kv") >= 0 && p->order[0],
                       devs[i].name);
        /* Every variant's tuning on every device keeps its rules. */
        for (int v = 0; v < attn_cl_n_variants; v++)
            HARNESS_EXPECT(attn_profile_tuning(p, v, &t) == ATTN_OK,
                           devs[i].name);
        attn_profile_tuning(p, attn_cl_variant_find("unfused"), &t);
        HARNESS_EXPECT(strstr(p->sources, "platforms/default.prof:") ==
                           p->sources,
                       devs[i].name);
        switch (i) {
        case H100:
            CU_ASSERT_EQUAL(p->queues, 3);
            /* the GPU-shaped kernels before the three-kernel path, the
             * fused kernel (measured slower) left out */
            CU_ASSERT_STRING_EQUAL(p->order,
                                   "splitkv decode mma tiled unfused");
            CU_ASSERT_EQUAL(pint(p, "unfused.sc_wq"), 16);
            CU_ASSERT_STRING_EQUAL(t.options, "-cl-mad-enable");
            CU_ASSERT_TRUE(attn_profile_quirk(p, "spin_wait"));
            break;
        case RTX:
            CU_ASSERT_EQUAL(p->queues, 2);
            break;
        case MI200:
            CU_ASSERT_EQUAL(p->queues, 3);
            CU_ASSERT_EQUAL(pint(p, "unfused.sm_wg"), 256);
            break;
        case RDNA3:
            CU_ASSERT_EQUAL(attn_profile_get_int(p, "fused.wg", 1, 1024, 0),
                            32);
            break;
        case ARC:
        case UHD:
            CU_ASSERT_EQUAL(p->queues, i == ARC ? 2 : 1);
            CU_ASSERT_EQUAL(pint(p, "unfused.sm_wg"), 128);
            break;
        case POCL:
            CU_ASSERT_EQUAL(p->native_beats_opencl, 1);
            CU_ASSERT_EQUAL(p->queues, 1);
            break;
        case PAC:
        case U250:
            CU_ASSERT_EQUAL(p->path, ATTN_PATH_UNFUSED);
            CU_ASSERT_EQUAL(pint(p, "decode.max_seq_q"), 0);
            CU_ASSERT_TRUE(attn_profile_quirk(p, "offline_binary"));
            break;
        case UNKNOWN:
            CU_ASSERT_EQUAL(p->queues, 1);
            CU_ASSERT_EQUAL(p->path, ATTN_PATH_AUTO);
            CU_ASSERT_EQUAL(p->native_beats_opencl, 0);
            CU_ASSERT_EQUAL(pint(p, "unfused.sc_tq"), -1);
            break;
        default:
            break;
        }
    }
}

/* ---- ATTN_PLATFORM_DIR ----------------------------------------------------
 */

static void write_file(const char *dir, const char *name, const char *body)
{
    char path[1024];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(body, f);
    fclose(f);
}

static void remove_file(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

/* A folder of more than 256 profiles: the first 256 by name apply,
 * whatever order the folder lists them in, and the warning names the
 * first one left out; a file that is no regular file is reported under
 * ATTN_PLATFORM_DIR. */
static void test_platform_dir_many(void)
{
    char dir[] = "/tmp/attn-profiles-XXXXXX", name[32], sub[1100];
    attn_device_info rtx = dev("NVIDIA GeForce RTX 4090", "NVIDIA Corporation",
                               "NVIDIA CUDA", ATTN_DEVICE_GPU);
    attn_profile p;
    reports r = {0};
    const char *old = getenv("ATTN_PLATFORM_DIR");
    char *saved = old ? strdup(old) : NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    /* written last to first: a folder often lists files as created */
    for (int i = 299; i >= 0; i--) {
        snprintf(name, sizeof name, "p%03d.prof", i);
        write_file(dir, name,
                   i == 0     ? "[vendor \"NVIDIA\"]\nqueues = 5\n"
                   : i == 299 ? "[vendor \"NVIDIA\"]\nqueues = 7\n"
                              : "# empty\n");
    }
    snprintf(sub, sizeof sub, "%s/p000a.prof", dir); /* a folder */
    CU_ASSERT_EQUAL_FATAL(mkdir(sub, 0700), 0);
    CU_ASSERT_EQUAL(setenv("ATTN_PLATFORM_DIR", dir, 1), 0);
    CU_ASSERT_EQUAL(attn_profile_resolve(&rtx, NULL, &p, collect, &r), ATTN_OK);
    CU_ASSERT_EQUAL(p.queues, 5); /* p000 applies, p299 does not */
    CU_ASSERT(has(&r, "more than 256 profiles; p255.prof and the later"));
    snprintf(sub, sizeof sub, "ATTN_PLATFORM_DIR=%s/p000a.prof: not a regular",
             dir);
    CU_ASSERT(has(&r, sub));
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "p%03d.prof", i);
        remove_file(dir, name);
    }
    snprintf(sub, sizeof sub, "%s/p000a.prof", dir);
    rmdir(sub);
    rmdir(dir);
    if (saved) {
        setenv("ATTN_PLATFORM_DIR", saved, 1);
        free(saved);
    } else {
        unsetenv("ATTN_PLATFORM_DIR");
    }
}

static void test_platform_dir(void)
{
    char dir[] = "/tmp/attn-profile-XXXXXX";
    char where[1100];
    attn_device_info h100 = dev("NVIDIA H100 80GB HBM3", "NVIDIA Corporation",
                                "NVIDIA CUDA", ATTN_DEVICE_GPU);
    attn_device_info rtx = dev("NVIDIA GeForce RTX 4090", "NVIDIA Corporation",
                               "NVIDIA CUDA", ATTN_DEVICE_GPU);
    attn_profile p;
    reports r = {0};
    const char *old = getenv("ATTN_PLATFORM_DIR");
    char *saved = old ? strdup(old) : NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    write_file(dir, "a.prof",
               "[vendor \"NVIDIA\"]\nqueues = 7\n"
               "unfused.sc_tq = 32\n");
    write_file(dir, "b.prof", "[device \"rtx 4090\"]\nweight = 82\n");
    write_file(dir, "zz.prof", "[default]\nqueues = 1\nbogus = 1\n");
    write_file(dir, "notes.txt", "not a profile\n");
    CU_ASSERT_EQUAL(setenv("ATTN_PLATFORM_DIR", dir, 1), 0);

    /* A vendor section of the folder beats the embedded vendor section ... */
    CU_ASSERT_EQUAL(attn_profile_resolve(&rtx, NULL, &p, collect, &r), ATTN_OK);
    CU_ASSERT_EQUAL(p.queues, 7);
    CU_ASSERT_EQUAL(pint(&p, "unfused.sc_tq"), 32);
    CU_ASSERT_EQUAL(pint(&p, "unfused.sc_tk"), 64); /* still nvidia.prof's */
    CU_ASSERT_EQUAL(p.weight, 82);
    /* ... and the malformed file is reported and ignored. */
    CU_ASSERT_EQUAL(r.n, 2);
    snprintf(where, sizeof where, "%s/zz.prof:3: unknown key 'bogus'", dir);
    CU_ASSERT_TRUE(has(&r, where));
    CU_ASSERT_TRUE(strstr(p.sources, "a.prof:1") != NULL);

    /* ... but not an embedded architecture section. */
    CU_ASSERT_EQUAL(attn_profile_resolve(&h100, NULL, &p, NULL, NULL), ATTN_OK);
    CU_ASSERT_EQUAL(p.queues, 3);
    write_file(dir, "c.prof", "[device \"H100\"]\nqueues = 5\n");
    CU_ASSERT_EQUAL(attn_profile_resolve(&h100, NULL, &p, NULL, NULL), ATTN_OK);
    CU_ASSERT_EQUAL(p.queues, 5);

    /* An explicit folder wins over the variable; "" means none. */
    CU_ASSERT_EQUAL(attn_profile_resolve(&h100, "", &p, NULL, NULL), ATTN_OK);
    CU_ASSERT_EQUAL(p.queues, 3);
    memset(&r, 0, sizeof r);
    CU_ASSERT_EQUAL(
        attn_profile_resolve(&h100, "/nonexistent/attn", &p, collect, &r),
        ATTN_OK);
    CU_ASSERT_EQUAL(r.n, 1);
    CU_ASSERT_TRUE(has(&r, "/nonexistent/attn: cannot open"));
    CU_ASSERT_EQUAL(p.queues, 3);

    remove_file(dir, "a.prof");
    remove_file(dir, "b.prof");
    remove_file(dir, "c.prof");
    remove_file(dir, "zz.prof");
    remove_file(dir, "notes.txt");
    CU_ASSERT_EQUAL(rmdir(dir), 0);
    if (saved)
        setenv("ATTN_PLATFORM_DIR", saved, 1);
    else
        unsetenv("ATTN_PLATFORM_DIR");
    free(saved);
}

/* ---- helpers of the API ----------------------------------------------------
 */

static void test_tuning(void)
{
    const int u = attn_cl_variant_find("unfused");
    const attn_cl_variant *v = attn_cl_variants[u];
    attn_cl_tuning def, t;
    attn_profile_text txt;
    attn_profile p;
    reports r;
    attn_device_info d = dev("x", "y", "z", ATTN_DEVICE_GPU);
    CU_ASSERT_TRUE_FATAL(u >= 0);
    attn_cl_tuning_default(v, &def);
    attn_profile_init(&p);
    CU_ASSERT_EQUAL(attn_profile_tuning(&p, u, &t), ATTN_OK);
    CU_ASSERT_EQUAL(memcmp(&t, &def, sizeof t), 0);

    txt = text("t.prof", "[default]\nunfused.sc_tq = 64\nunfused.sc_wq = 16\n"
                         "unfused.ag_tj = 8\nunfused.sm_wg = 256\n"
                         "build_options = -cl-mad-enable\n");
    CU_ASSERT_EQUAL(resolve(&d, &txt, 1, &p, &r), 0);
    CU_ASSERT_EQUAL(attn_profile_tuning(&p, u, &t), ATTN_OK);
    CU_ASSERT_EQUAL(t.v[attn_cl_param_find(v, "sc_tq")], 64);
    CU_ASSERT_EQUAL(t.v[attn_cl_param_find(v, "sc_wq")], 16);
    CU_ASSERT_EQUAL(t.v[attn_cl_param_find(v, "ag_tj")], 8);
    CU_ASSERT_EQUAL(t.v[attn_cl_param_find(v, "sm_wg")], 256);
    CU_ASSERT_EQUAL(t.v[attn_cl_param_find(v, "sc_tk")],
                    def.v[attn_cl_param_find(v, "sc_tk")]);
    CU_ASSERT_STRING_EQUAL(t.options, "-cl-mad-enable");

    /* 48 rows on 16-row work-groups is fine, 40 is not (a rule across
     * parameters, checked when applied). */
    txt = text("t.prof", "[default]\nunfused.sc_tq = 40\nunfused.sc_wq = 16\n");
    CU_ASSERT_EQUAL(resolve(&d, &txt, 1, &p, &r), 0);
    CU_ASSERT_EQUAL(attn_profile_tuning(&p, u, &t), ATTN_ERR_INVALID_ARGUMENT);
    txt = text("t.prof", "[default]\nunfused.sc_tq = 48\nunfused.sc_wq = 16\n");
    CU_ASSERT_EQUAL(resolve(&d, &txt, 1, &p, &r), 0);
    CU_ASSERT_EQUAL(attn_profile_tuning(&p, u, &t), ATTN_OK);
    CU_ASSERT_EQUAL(attn_profile_tuning(NULL, u, &t),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_profile_tuning(&p, u, NULL),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_profile_tuning(&p, attn_cl_n_variants, &t),
                    ATTN_ERR_INVALID_ARGUMENT);
}

/* The tiled variant's row reductions (TL_SG) as its defines hook builds
 * them: the device's shuffles by default (NVIDIA's shfl.sync only on
 * work-groups of whole warps), local memory when asked or when a row is
 * one item, the emulated shuffles when asked. */
static void test_tiled_shuffles(void)
{
    static const struct {
        int shuffle, tr, tc, sg, want;
    } cases[] = {
        {ATTN_CL_SHUFFLE_NONE, 16, 8, 1, 0},
        {ATTN_CL_SHUFFLE_PTX, 16, 8, 1, 1},
        {ATTN_CL_SHUFFLE_PTX, 4, 4, 1, 0},  /* 16 items: half a warp */
        {ATTN_CL_SHUFFLE_PTX, 1, 64, 1, 0}, /* a row wider than a warp */
        {ATTN_CL_SHUFFLE_PTX, 2, 16, 1, 1},
        {ATTN_CL_SHUFFLE_INTEL, 16, 8, 1, 2},
        {ATTN_CL_SHUFFLE_INTEL, 4, 4, 1, 2},
        {ATTN_CL_SHUFFLE_KHR, 16, 8, 1, 3},
        {ATTN_CL_SHUFFLE_PTX, 16, 8, 0, 0},
        {ATTN_CL_SHUFFLE_INTEL, 16, 8, 0, 0},
        {ATTN_CL_SHUFFLE_NONE, 16, 8, 2, 4},
        {ATTN_CL_SHUFFLE_PTX, 16, 8, 2, 4},
        {ATTN_CL_SHUFFLE_PTX, 128, 1, 1, 0}, /* nothing to reduce */
        {ATTN_CL_SHUFFLE_NONE, 128, 1, 2, 0},
    };
    const int vi = attn_cl_variant_find("tiled");
    CU_ASSERT_TRUE_FATAL(vi >= 0);
    const attn_cl_variant *v = attn_cl_variants[vi];
    attn_sdpa_desc d;
    memset(&d, 0, sizeof d);
    d.batch = d.heads_q = d.heads_kv = 1;
    d.seq_q = d.seq_kv = 64;
    d.head_dim = d.head_dim_v = 64;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        attn_cl_limits lim;
        attn_cl_tuning t;
        attn_err err = {{0}};
        char buf[256] = "", want[32];
        memset(&lim, 0, sizeof lim);
        lim.wg = 1024;
        lim.items[0] = lim.items[1] = 1024;
        lim.local_mem = 1 << 20;
        lim.shuffle = cases[i].shuffle;
        attn_cl_tuning_default(v, &t);
        t.v[attn_cl_param_find(v, "tr")] = cases[i].tr;
        t.v[attn_cl_param_find(v, "tc")] = cases[i].tc;
        t.v[attn_cl_param_find(v, "sg")] = cases[i].sg;
        CU_ASSERT_EQUAL(v->supports(&lim, &t, &d, &err), ATTN_OK);
        v->defines(&lim, &t, &d, buf, sizeof buf);
        snprintf(want, sizeof want, " -DTL_SG=%d", cases[i].want);
        if (!strstr(buf, want))
            printf("\n  case %zu: \"%s\" lacks \"%s\"\n", i, buf, want);
        CU_ASSERT_PTR_NOT_NULL(strstr(buf, want));
    }
}

/* A profile written out and read back under [device] is the same. */
static void test_format_round_trip(void)
{
    attn_device_info d = dev("NVIDIA H100 80GB HBM3", "NVIDIA Corporation",
                             "NVIDIA CUDA", ATTN_DEVICE_GPU);
    attn_profile a, b;
    char body[8192], file[8300], small[16];
    size_t need;
    CU_ASSERT_EQUAL(attn_profile_resolve(&d, "", &a, NULL, NULL), ATTN_OK);
    need = attn_profile_format(&a, body, sizeof body);
    CU_ASSERT_TRUE(need > 0 && need < sizeof body);
    CU_ASSERT_EQUAL(strlen(body), need);
    CU_ASSERT_PTR_NOT_NULL(strstr(body, "queues = 3\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(body, "path = auto\n"));
    snprintf(file, sizeof file, "[device \"h100\"]\n%s", body);
    {
        attn_profile_text t = text("round.prof", file);
        reports r;
        CU_ASSERT_EQUAL(resolve(&d, &t, 1, &b, &r), 0);
    }
    CU_ASSERT_EQUAL(a.queues, b.queues);
    CU_ASSERT_EQUAL(a.path, b.path);
    CU_ASSERT_STRING_EQUAL(a.order, b.order);
    CU_ASSERT_EQUAL(a.staging, b.staging);
    CU_ASSERT_EQUAL(a.native_beats_opencl, b.native_beats_opencl);
    CU_ASSERT_EQUAL(a.weight, b.weight);
    CU_ASSERT_EQUAL(a.build_options_set, b.build_options_set);
    CU_ASSERT_STRING_EQUAL(a.build_options, b.build_options);
    CU_ASSERT_EQUAL(a.n_extra, b.n_extra);
    for (size_t i = 0; i < a.n_extra; i++)
        CU_ASSERT_STRING_EQUAL(attn_profile_get(&b, a.extra[i].key),
                               a.extra[i].value);
    /* A short buffer is cut and terminated; the length is still whole. */
    CU_ASSERT_EQUAL(attn_profile_format(&a, small, sizeof small), need);
    CU_ASSERT_EQUAL(strlen(small), sizeof small - 1);
}

static void test_arguments(void)
{
    attn_device_info d = dev("x", "y", "z", ATTN_DEVICE_GPU);
    attn_profile p;
    attn_profile_text bad = {NULL, "", 0};
    size_t files, n_bad;
    CU_ASSERT_EQUAL(attn_profile_resolve(NULL, "", &p, NULL, NULL),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(p.queues, -1);
    CU_ASSERT_EQUAL(attn_profile_resolve(&d, "", NULL, NULL, NULL),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_profile_resolve_texts(&d, NULL, 1, &p, NULL, NULL),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_profile_resolve_texts(&d, &bad, 1, &p, NULL, NULL),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_profile_resolve_texts(&d, NULL, 0, &p, NULL, NULL),
                    ATTN_OK);
    CU_ASSERT_EQUAL(attn_profile_check_builtin(NULL, &n_bad, NULL, NULL),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_profile_check_builtin(&files, NULL, NULL, NULL),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_PTR_NULL(attn_profile_get(NULL, "quirk.x"));
    CU_ASSERT_FALSE(attn_profile_quirk(&p, NULL));
    CU_ASSERT_EQUAL(attn_profile_format(NULL, NULL, 0), 0);
}

/* More extra keys than the store holds: the rest are reported. */
static void test_extra_capacity(void)
{
    char body[16384] = "[default]\n", missing[64];
    attn_device_info d = dev("x", "y", "z", ATTN_DEVICE_GPU);
    attn_profile p;
    attn_profile_text t;
    reports r;
    for (int i = 0; i < ATTN_PROFILE_MAX_EXTRA + 2; i++) {
        char line[64];
        snprintf(line, sizeof line, "quirk.k%d = %d\nquirk.k%d = %d\n", i, i, i,
                 i + 1);
        strcat(body, line);
    }
    t = text("cap.prof", body);
    CU_ASSERT_EQUAL(resolve(&d, &t, 1, &p, &r), 4);
    CU_ASSERT_EQUAL(p.n_extra, ATTN_PROFILE_MAX_EXTRA);
    CU_ASSERT_PTR_NOT_NULL_FATAL(attn_profile_get(&p, "quirk.k0"));
    CU_ASSERT_STRING_EQUAL(attn_profile_get(&p, "quirk.k0"), "1");
    snprintf(missing, sizeof missing, "'quirk.k%d' not applied",
             ATTN_PROFILE_MAX_EXTRA);
    CU_ASSERT_TRUE(has(&r, missing));
}

/* The devices of this machine (PoCL on the test machines) resolve with no
 * message; a PoCL CPU device takes pocl.prof. */
static void test_discovered(void)
{
    attn_cl_device *devs = NULL;
    size_t n = 0;
    if (attn_cl_discover(&devs, &n, NULL) != ATTN_OK)
        n = 0;
    for (size_t i = 0; i < n; i++) {
        const attn_device_info *d = &devs[i].info;
        attn_profile p;
        reports r = {0};
        CU_ASSERT_EQUAL(attn_profile_resolve(d, "", &p, collect, &r), ATTN_OK);
        HARNESS_EXPECT(r.n == 0, d->name);
        if (strstr(d->platform, "Portable Computing Language") &&
            d->kind == ATTN_DEVICE_CPU_OPENCL) {
            HARNESS_EXPECT(strstr(p.sources, "pocl.prof") != NULL, d->name);
            HARNESS_EXPECT(p.native_beats_opencl == 1, d->name);
        }
    }
    free(devs);
}

int main(void)
{
    static const harness_test tests[] = {
        {"lookup order", test_lookup_order},
        {"same level: later wins", test_same_level_later_wins},
        {"name normalisation", test_normalisation},
        {"kind condition", test_kind_condition},
        {"syntax", test_syntax},
        {"malformed files", test_malformed},
        {"many errors", test_malformed_many},
        {"shipped files", test_builtin_clean},
        {"ATTN_PLATFORM_DIR", test_platform_dir},
        {"ATTN_PLATFORM_DIR with 300 profiles", test_platform_dir_many},
        {"kernel tuning", test_tuning},
        {"tiled reductions", test_tiled_shuffles},
        {"format round trip", test_format_round_trip},
        {"arguments", test_arguments},
        {"extra capacity", test_extra_capacity},
        {"discovered devices", test_discovered},
        {NULL, NULL}};
    return harness_main("profile", NULL, NULL, tests);
}
