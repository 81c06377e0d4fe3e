/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Classification, ranking and selection on synthetic machines: pure
 * functions, no OpenCL device needed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "opencl/discovery.h"

#define KIB 1024ull
#define MIB (1024ull * 1024ull)
#define GIB (1024ull * 1024ull * 1024ull)

/* A device as discovery would probe it, then classified. */
typedef struct spec {
    const char *name;
    unsigned long long type;
    int unified;
    unsigned cu, mhz;
    const char *clc;
    unsigned long long local, alloc;
    size_t wg;
    int fpga_platform, has_binary;
} spec;

static attn_device_info make(int p, int d, spec s)
{
    attn_device_info i;
    memset(&i, 0, sizeof i);
    snprintf(i.name, sizeof i.name, "%s", s.name);
    snprintf(i.opencl_c_version, sizeof i.opencl_c_version, "%s",
             s.clc ? s.clc : "OpenCL C 1.2");
    i.platform_index = p;
    i.device_index = d;
    i.compute_units = s.cu;
    i.max_clock_mhz = s.mhz;
    i.local_mem_bytes = s.local ? s.local : 64 * KIB;
    i.max_alloc_bytes = s.alloc ? s.alloc : 1 * GIB;
    i.global_mem_bytes = 4 * i.max_alloc_bytes;
    i.max_work_group_size = s.wg ? s.wg : 1024;
    i.unified_memory = s.unified;
    attn_cl_classify(&i, s.type, s.fpga_platform, s.has_binary);
    return i;
}

static const spec DGPU = {"NVIDIA GeForce RTX 4090",
                          CL_DEVICE_TYPE_GPU,
                          0,
                          128,
                          2520,
                          NULL,
                          48 * KIB,
                          4 * GIB,
                          1024,
                          0,
                          0};
static const spec IGPU = {"Intel(R) UHD Graphics 770",
                          CL_DEVICE_TYPE_GPU,
                          1,
                          32,
                          1450,
                          NULL,
                          64 * KIB,
                          2 * GIB,
                          512,
                          0,
                          0};
static const spec CPU = {"pthread-skylake-avx512",
                         CL_DEVICE_TYPE_CPU,
                         1,
                         16,
                         2100,
                         NULL,
                         512 * KIB,
                         2 * GIB,
                         4096,
                         0,
                         0};
static const spec FPGA_BIN = {"Intel(R) FPGA Emulation Device",
                              CL_DEVICE_TYPE_ACCELERATOR,
                              0,
                              1,
                              300,
                              NULL,
                              8 * KIB,
                              1 * GIB,
                              16,
                              1,
                              1};

/* Selects and expects ATTN_OK with the given device indices (native when
 * count is -1). */
static void expect(const attn_device_info *devs, size_t n, const char *s,
                   int beats, int count, const size_t *want)
{
    attn_selection sel;
    attn_err err = {{0}};
    attn_status st = attn_cl_select(devs, n, s, beats, &sel, &err);
    CU_ASSERT_EQUAL(st, ATTN_OK);
    if (st != ATTN_OK) {
        printf("\n  spec \"%s\": %s\n", s ? s : "(null)", err.msg);
        return;
    }
    CU_ASSERT(sel.why[0] != '\0');
    if (count < 0) {
        CU_ASSERT_EQUAL(sel.native, 1);
        CU_ASSERT_EQUAL(sel.count, 0);
        return;
    }
    CU_ASSERT_EQUAL(sel.native, 0);
    CU_ASSERT_EQUAL(sel.count, (size_t)count);
    for (int k = 0; k < count && (size_t)k < sel.count; k++)
        CU_ASSERT_EQUAL(sel.index[k], want[k]);
}

/* Expects status st and a message holding every non-NULL fragment. */
static void expect_fail(const attn_device_info *devs, size_t n, const char *s,
                        attn_status want, const char *frag1, const char *frag2)
{
    attn_selection sel;
    attn_err err = {{0}};
    attn_status st = attn_cl_select(devs, n, s, 0, &sel, &err);
    CU_ASSERT_EQUAL(st, want);
    CU_ASSERT_EQUAL(sel.count, 0);
    CU_ASSERT_EQUAL(sel.native, 0);
    CU_ASSERT(!frag1 || strstr(err.msg, frag1) != NULL);
    CU_ASSERT(!frag2 || strstr(err.msg, frag2) != NULL);
    if ((frag1 && !strstr(err.msg, frag1)) ||
        (frag2 && !strstr(err.msg, frag2)))
        printf("\n  spec \"%s\": message \"%s\"\n", s, err.msg);
}

static void test_kinds_and_ranks(void)
{
    spec other = CPU, fpga_cpu = CPU, huge_cpu = CPU, tiny_gpu = DGPU;
    spec unusable_gpu = DGPU, no_clock = DGPU;
    attn_device_info g, ig, f, c, o, fc, hc, tg, ug, nc, again;

    other.type = CL_DEVICE_TYPE_CUSTOM;
    fpga_cpu.fpga_platform = 1; /* a CPU-typed device on an FPGA platform */
    fpga_cpu.has_binary = 1;
    huge_cpu.cu = 100000;
    huge_cpu.mhz = 100000;
    tiny_gpu.cu = 1;
    tiny_gpu.mhz = 1;
    unusable_gpu.clc = "OpenCL C 1.1";
    no_clock.mhz = 0;

    g = make(0, 0, DGPU);
    ig = make(0, 1, IGPU);
    f = make(1, 0, FPGA_BIN);
    c = make(2, 0, CPU);
    o = make(3, 0, other);
    fc = make(4, 0, fpga_cpu);
    hc = make(2, 1, huge_cpu);
    tg = make(0, 2, tiny_gpu);
    ug = make(0, 3, unusable_gpu);
    nc = make(0, 4, no_clock);

    CU_ASSERT_EQUAL(g.kind, ATTN_DEVICE_GPU);
    CU_ASSERT_EQUAL(ig.kind, ATTN_DEVICE_IGPU);
    CU_ASSERT_EQUAL(f.kind, ATTN_DEVICE_FPGA);
    CU_ASSERT_EQUAL(c.kind, ATTN_DEVICE_CPU_OPENCL);
    CU_ASSERT_EQUAL(o.kind, ATTN_DEVICE_OTHER);
    CU_ASSERT_EQUAL(fc.kind, ATTN_DEVICE_FPGA);
    CU_ASSERT(g.usable && ig.usable && f.usable && c.usable && o.usable);
    CU_ASSERT(nc.usable);
    CU_ASSERT_FALSE(ug.usable);
    CU_ASSERT(strncmp(g.reason, "usable", 6) == 0);

    /* Classes never cross: the biggest CPU stays below the smallest GPU,
     * and any usable device beats any unusable one. */
    CU_ASSERT(g.rank > ig.rank && ig.rank > f.rank && f.rank > c.rank &&
              c.rank > o.rank);
    CU_ASSERT(hc.rank > c.rank && hc.rank < f.rank);
    CU_ASSERT(tg.rank < g.rank && tg.rank > ig.rank);
    CU_ASSERT(ug.rank > 0.0 && ug.rank < o.rank);
    CU_ASSERT(nc.rank > ig.rank && nc.rank < g.rank);
    CU_ASSERT(g.rank >= 4000.0 && g.rank < 4500.0);
    CU_ASSERT(c.rank >= 1000.0 && c.rank < 1500.0);

    again = make(0, 0, DGPU);
    CU_ASSERT_EQUAL(memcmp(&again, &g, sizeof g), 0);
    attn_cl_classify(NULL, 0, 0, 0); /* no crash */
}

static void test_refusals(void)
{
    spec old = DGPU, small_local = DGPU, small_wg = IGPU, small_alloc = CPU;
    spec no_bin = FPGA_BIN, unknown = CPU, v2 = CPU, v3 = DGPU, many = DGPU;
    attn_device_info d;

    old.clc = "OpenCL C 1.1";
    d = make(0, 0, old);
    CU_ASSERT_FALSE(d.usable);
    CU_ASSERT_PTR_NOT_NULL(strstr(d.reason, "OpenCL C 1.1 < 1.2"));

    small_local.local = 8 * KIB;
    d = make(0, 0, small_local);
    CU_ASSERT_FALSE(d.usable);
    CU_ASSERT_PTR_NOT_NULL(strstr(d.reason, "local memory 8 KiB < 16 KiB"));

    small_wg.wg = 32;
    d = make(0, 0, small_wg);
    CU_ASSERT_FALSE(d.usable);
    CU_ASSERT_PTR_NOT_NULL(strstr(d.reason, "work-group size 32 < 64"));

    small_alloc.alloc = 8 * MIB;
    d = make(0, 0, small_alloc);
    CU_ASSERT_FALSE(d.usable);
    CU_ASSERT_PTR_NOT_NULL(strstr(d.reason, "max allocation 8 MiB"));

    /* An FPGA is not held to the local memory and work-group minimums
     * (FPGA_BIN has 8 KiB and 16) but needs its binary. */
    d = make(0, 0, FPGA_BIN);
    CU_ASSERT(d.usable);
    no_bin.has_binary = 0;
    d = make(0, 0, no_bin);
    CU_ASSERT_FALSE(d.usable);
    CU_ASSERT_PTR_NOT_NULL(strstr(d.reason, "binary"));

    unknown.clc = "";
    d = make(0, 0, unknown);
    CU_ASSERT_FALSE(d.usable);
    CU_ASSERT_PTR_NOT_NULL(strstr(d.reason, "unknown"));

    v2.clc = "OpenCL C 2.0 beignet";
    CU_ASSERT(make(0, 0, v2).usable);
    v3.clc = "OpenCL C 3.0 ";
    CU_ASSERT(make(0, 0, v3).usable);

    /* Every failing requirement is named, not only the first. */
    many.clc = "OpenCL C 1.0";
    many.local = 1 * KIB;
    d = make(0, 0, many);
    CU_ASSERT_PTR_NOT_NULL(strstr(d.reason, "OpenCL C 1.0"));
    CU_ASSERT_PTR_NOT_NULL(strstr(d.reason, "; local memory 1 KiB"));
}

static void test_gpu_igpu_cpu(void)
{
    /* Listed in discovery order, which is not rank order. */
    attn_device_info m[3];
    m[0] = make(0, 0, CPU);
    m[1] = make(1, 0, IGPU);
    m[2] = make(2, 0, DGPU);
    const size_t dgpu[] = {2}, igpu[] = {1}, cpu[] = {0};
    const size_t all[] = {2, 1, 0}, list[] = {0, 2}, list2[] = {1, 2, 0};

    expect(m, 3, "auto", 0, 1, dgpu);
    expect(m, 3, NULL, 0, 1, dgpu);
    expect(m, 3, "", 0, 1, dgpu);
    expect(m, 3, "  AUTO ", 1, 1, dgpu);
    expect(m, 3, "gpu", 0, 1, dgpu);
    expect(m, 3, "GPU", 0, 1, dgpu);
    expect(m, 3, "igpu", 0, 1, igpu);
    expect(m, 3, "cpu", 1, 1, cpu); /* explicit: native_beats_cpu ignored */
    expect(m, 3, "all", 0, 3, all);
    expect(m, 3, "1:0", 0, 1, igpu);
    expect(m, 3, " 0:0 ", 0, 1, cpu);
    expect(m, 3, "geforce", 0, 1, dgpu);
    expect(m, 3, "UHD graphics", 0, 1, igpu);
    expect(m, 3, "Pthread", 0, 1, cpu);
    expect(m, 3, "cpu, gpu ,cpu", 0, 2, list);
    expect(m, 3, "igpu,auto,all", 0, 3, list2);
    expect(m, 3, "auto,,", 0, 1, dgpu);

    /* The GPU keyword falls back to an integrated GPU. */
    expect(m, 2, "gpu", 0, 1, igpu);
}

static void test_fpga(void)
{
    spec no_bin = FPGA_BIN;
    attn_device_info m[2];
    const size_t fpga[] = {0}, cpu[] = {1};
    m[0] = make(0, 0, FPGA_BIN);
    m[1] = make(1, 0, CPU);
    expect(m, 2, "auto", 0, 1, fpga);
    expect(m, 2, "fpga", 0, 1, fpga);

    no_bin.has_binary = 0;
    m[0] = make(0, 0, no_bin);
    expect(m, 2, "auto", 0, 1, cpu);
    expect_fail(m, 2, "fpga", ATTN_ERR_NO_DEVICE, "not usable", "binary");
    expect_fail(m, 2, "0:0", ATTN_ERR_NO_DEVICE, "0:0", "binary");
}

static void test_cpu_only(void)
{
    attn_device_info m[1];
    attn_selection sel;
    const size_t cpu[] = {0};
    m[0] = make(0, 0, CPU);
    expect(m, 1, "auto", 0, 1, cpu);
    CU_ASSERT_EQUAL(attn_cl_select(m, 1, "auto", 0, &sel, NULL), ATTN_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(sel.why, "best-ranked usable device"));
    CU_ASSERT_PTR_NOT_NULL(strstr(sel.why, "cpu"));

    expect(m, 1, "auto", 1, -1, NULL);
    CU_ASSERT_EQUAL(attn_cl_select(m, 1, "auto", 1, &sel, NULL), ATTN_OK);
    CU_ASSERT_STRING_EQUAL(sel.why,
                           "auto: the native backend beats the OpenCL CPU "
                           "device here");
    expect(m, 1, "native", 0, -1, NULL);
    expect(m, 1, "cpu", 1, 1, cpu);
}

static void test_nothing(void)
{
    attn_selection sel;
    expect(NULL, 0, "auto", 0, -1, NULL);
    expect(NULL, 0, NULL, 1, -1, NULL);
    expect(NULL, 0, "native", 0, -1, NULL);
    expect(NULL, 0, "NATIVE , native", 0, -1, NULL);
    CU_ASSERT_EQUAL(attn_cl_select(NULL, 0, "auto", 0, &sel, NULL), ATTN_OK);
    CU_ASSERT_STRING_EQUAL(sel.why, "auto: no usable OpenCL device");
    expect_fail(NULL, 0, "gpu", ATTN_ERR_NO_DEVICE, "matches no device",
                "devices: native");
    expect_fail(NULL, 0, "all", ATTN_ERR_NO_DEVICE, "no usable", "native");
    expect_fail(NULL, 0, "0:0", ATTN_ERR_NO_DEVICE, "matches no device", NULL);
}

static void test_unknown_and_bad(void)
{
    attn_device_info m[2];
    m[0] = make(0, 0, DGPU);
    m[1] = make(0, 1, CPU);
    expect_fail(m, 2, "tpu-9000", ATTN_ERR_NO_DEVICE, "\"tpu-9000\"",
                "0:0 gpu NVIDIA GeForce RTX 4090, 0:1 cpu "
                "pthread-skylake-avx512, native");
    expect_fail(m, 2, "9:9", ATTN_ERR_NO_DEVICE, "matches no device",
                "0:1 cpu");
    expect_fail(m, 2, "x:y", ATTN_ERR_NO_DEVICE, "matches no device", NULL);
    expect_fail(m, 2, "0:", ATTN_ERR_NO_DEVICE, "matches no device", NULL);
    expect_fail(m, 2, "99999999999999999999:0", ATTN_ERR_NO_DEVICE,
                "matches no device", NULL);
    expect_fail(m, 2, "igpu", ATTN_ERR_NO_DEVICE, "\"igpu\"", NULL);
    expect_fail(m, 2, "fpga", ATTN_ERR_NO_DEVICE, "matches no device", NULL);
    /* One bad item fails the whole list and names the item. */
    expect_fail(m, 2, "gpu,nonesuch", ATTN_ERR_NO_DEVICE, "\"nonesuch\"", NULL);
    expect_fail(m, 2, "native,gpu", ATTN_ERR_INVALID_ARGUMENT, "native", NULL);
    expect_fail(m, 2, "auto, Native", ATTN_ERR_INVALID_ARGUMENT, "native",
                NULL);
    /* A list with no item names no device: an error, not "auto" ("" is
     * the default, auto). */
    expect_fail(m, 2, ",", ATTN_ERR_INVALID_ARGUMENT, "empty list", NULL);
    expect_fail(m, 2, " , ,,", ATTN_ERR_INVALID_ARGUMENT, "empty list", NULL);
    expect_fail(m, 2, "  ", ATTN_ERR_INVALID_ARGUMENT, "empty list", NULL);
    expect_fail(NULL, 0, ",", ATTN_ERR_INVALID_ARGUMENT, "empty list", NULL);
}

/* Which specs need no OpenCL device at all (the native backend alone). */
static void test_spec_native(void)
{
    CU_ASSERT_TRUE(attn_cl_spec_native("native"));
    CU_ASSERT_TRUE(attn_cl_spec_native(" NATIVE , native,"));
    CU_ASSERT_FALSE(attn_cl_spec_native(NULL));
    CU_ASSERT_FALSE(attn_cl_spec_native(""));
    CU_ASSERT_FALSE(attn_cl_spec_native(","));
    CU_ASSERT_FALSE(attn_cl_spec_native("auto"));
    CU_ASSERT_FALSE(attn_cl_spec_native("native,gpu"));
    CU_ASSERT_FALSE(attn_cl_spec_native("natives"));
}

static void test_unusable_refused(void)
{
    spec old = DGPU, tiny = IGPU;
    attn_device_info m[3];
    const size_t cpu[] = {2};
    old.clc = "OpenCL C 1.1";
    tiny.local = 4 * KIB;
    m[0] = make(0, 0, old);
    m[1] = make(0, 1, tiny);
    m[2] = make(1, 0, CPU);
    expect(m, 3, "auto", 0, 1, cpu);
    expect(m, 3, "all", 0, 1, cpu);
    /* The best-ranked unusable match explains the refusal. */
    expect_fail(m, 3, "gpu", ATTN_ERR_NO_DEVICE, "0:0", "OpenCL C 1.1 < 1.2");
    expect_fail(m, 3, "igpu", ATTN_ERR_NO_DEVICE, "not usable",
                "local memory 4 KiB < 16 KiB");
    expect_fail(m, 3, "0:1", ATTN_ERR_NO_DEVICE, "local memory", NULL);
    expect_fail(m, 3, "geforce", ATTN_ERR_NO_DEVICE, "OpenCL C 1.1", NULL);
    /* Everything unusable: auto falls back to native, all fails. */
    expect(m, 2, "auto", 0, -1, NULL);
    expect_fail(m, 2, "all", ATTN_ERR_NO_DEVICE, "no usable", NULL);
}

static void test_ties_and_limits(void)
{
    attn_device_info m[20];
    attn_selection sel;
    attn_err err = {{0}};
    const size_t first[] = {0}, both[] = {0, 1}, swapped[] = {1, 0};
    for (int i = 0; i < 20; i++)
        m[i] = make(0, i, CPU);
    expect(m, 2, "auto", 0, 1, first);
    expect(m, 2, "all", 0, 2, both);
    expect(m, 2, "pthread", 0, 1, first);
    expect(m, 2, "0:1,pthread", 0, 2, swapped);
    CU_ASSERT_EQUAL(attn_cl_select(m, 20, "all", 0, &sel, &err), ATTN_OK);
    CU_ASSERT_EQUAL(sel.count, 16);
    for (size_t k = 0; k < sel.count; k++)
        CU_ASSERT_EQUAL(sel.index[k], k);
    CU_ASSERT_EQUAL(attn_cl_select(m, 2, "auto", 0, NULL, &err),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_cl_select(NULL, 2, "auto", 0, &sel, &err),
                    ATTN_ERR_INVALID_ARGUMENT);
}

static void test_binary_lookup(void)
{
    char name[256], path[4096], dir[] = "/tmp/attn-binXXXXXX", file[4200];
    FILE *f;

    CU_ASSERT_EQUAL(attn_cl_binary_name("Intel(R) FPGA Emulation Device", name,
                                        sizeof name),
                    strlen("intel_r_fpga_emulation_device"));
    CU_ASSERT_STRING_EQUAL(name, "intel_r_fpga_emulation_device");
    attn_cl_binary_name("  --xilinx_u250_gen3x16_xdma_shell_4_1--  ", name,
                        sizeof name);
    CU_ASSERT_STRING_EQUAL(name, "xilinx_u250_gen3x16_xdma_shell_4_1");
    attn_cl_binary_name("ABCDEF", name, 4);
    CU_ASSERT_STRING_EQUAL(name, "abc");
    CU_ASSERT_EQUAL(attn_cl_binary_name("", name, sizeof name), 0);

    CU_ASSERT(attn_cl_is_fpga_platform("Intel(R) FPGA SDK for OpenCL(TM)"));
    CU_ASSERT(attn_cl_is_fpga_platform("Xilinx"));
    CU_ASSERT_FALSE(attn_cl_is_fpga_platform("Portable Computing Language"));
    CU_ASSERT_FALSE(attn_cl_is_fpga_platform(NULL));
    CU_ASSERT_STRING_EQUAL(attn_cl_kind_name(ATTN_DEVICE_CPU_OPENCL), "cpu");
    CU_ASSERT_STRING_EQUAL(attn_cl_kind_name((attn_device_kind)99), "other");

    if (!mkdtemp(dir)) {
        CU_FAIL("mkdtemp failed");
        return;
    }
    CU_ASSERT_FALSE(attn_cl_find_binary(dir, "My FPGA", path, sizeof path));
    CU_ASSERT_FALSE(attn_cl_find_binary(NULL, "My FPGA", NULL, 0));
    CU_ASSERT_FALSE(attn_cl_find_binary("", "My FPGA", NULL, 0));
    snprintf(file, sizeof file, "%s/my_fpga.xclbin", dir);
    f = fopen(file, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fclose(f);
    CU_ASSERT(attn_cl_find_binary(dir, "My FPGA", path, sizeof path));
    CU_ASSERT_STRING_EQUAL(path, file);
    CU_ASSERT(attn_cl_find_binary(dir, "MY-FPGA", NULL, 0));
    CU_ASSERT_FALSE(attn_cl_find_binary(dir, "My FPGA 2", NULL, 0));
    remove(file);
    rmdir(dir);

    /* The environment names the directory. */
    setenv("ATTN_KERNEL_BINARY_DIR", "/opt/bitstreams", 1);
    CU_ASSERT_STRING_EQUAL(attn_cl_binary_dir(), "/opt/bitstreams");
    unsetenv("ATTN_KERNEL_BINARY_DIR");
}

/* The gfx target from the device name AMD's OpenCL reports, and which
 * matrix units the amdmm variant finds there. */
static void test_amd_gfx(void)
{
    static const struct {
        const char *name;
        int gfx, unit, xf32;
    } cases[] = {
        {"gfx90a:sramecc+:xnack-", 0x90a, ATTN_CL_AMD_MFMA, 0},
        {"gfx908", 0x908, ATTN_CL_AMD_MFMA, 0},
        {"gfx942:sramecc+:xnack-", 0x942, ATTN_CL_AMD_MFMA, 1},
        {"gfx940", 0x940, ATTN_CL_AMD_MFMA, 1},
        {"gfx1100", 0x1100, ATTN_CL_AMD_WMMA, 0},
        {"gfx1151", 0x1151, ATTN_CL_AMD_WMMA, 0},
        {"gfx1030", 0x1030, 0, 0},
        {"gfx1201", 0x1201, 0, 0},
        {"gfx906:sramecc-:xnack-", 0x906, 0, 0},
        {"AMD Radeon RX 7900 XTX", 0, 0, 0},
        {"gfx", 0, 0, 0},
        {"gfx90", 0, 0, 0},
        {"gfx90g", 0, 0, 0},
        {"gfx123456", 0, 0, 0},
        {"Intel(R) Arc(TM) A770 Graphics", 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int gfx = attn_cl_gfx_of(cases[i].name);
        HARNESS_EXPECT(gfx == cases[i].gfx, cases[i].name);
        HARNESS_EXPECT(attn_cl_amd_matrix_unit(gfx) == cases[i].unit,
                       cases[i].name);
        HARNESS_EXPECT(attn_cl_amd_xf32(gfx) == cases[i].xf32, cases[i].name);
    }
    CU_ASSERT_EQUAL(attn_cl_gfx_of(NULL), 0);
}

int main(void)
{
    static const harness_test tests[] = {
        {"kinds and ranks", test_kinds_and_ranks},
        {"refusals keep the reason", test_refusals},
        {"dGPU + iGPU + CPU", test_gpu_igpu_cpu},
        {"FPGA with and without a binary", test_fpga},
        {"CPU only", test_cpu_only},
        {"nothing at all", test_nothing},
        {"unknown and malformed specs", test_unknown_and_bad},
        {"specs that need no OpenCL device", test_spec_native},
        {"unusable devices refused", test_unusable_refused},
        {"ties, the 16-device limit, arguments", test_ties_and_limits},
        {"offline binary lookup and names", test_binary_lookup},
        {"AMD gfx targets and their matrix units", test_amd_gfx},
        {NULL, NULL}};
    return harness_main("opencl_select", NULL, NULL, tests);
}
