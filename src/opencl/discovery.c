/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OpenCL device discovery: enumerate every platform and device, probe
 * what libattn needs to know, sort (ICD order is not stable between runs or
 * machines), classify, admit or refuse by capability and rank.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "discovery.h"

#ifndef CL_PLATFORM_NOT_FOUND_KHR
#define CL_PLATFORM_NOT_FOUND_KHR -1001
#endif

/* Minimums below which the kernels in cl/ cannot run as written. */
#define MIN_CLC_MAJOR   1
#define MIN_CLC_MINOR   2
#define MIN_LOCAL_MEM   (16u * 1024u)
#define MIN_WORK_GROUP  64u
#define MIN_ALLOC_BYTES (16u * 1024u * 1024u)

/* Rank: a class base plus a within-class score below the smallest gap
 * between bases, so a class never overtakes another.  Unusable devices keep
 * their order among themselves but are scaled below every usable one. */
#define SCORE_MAX      499.0
#define SCORE_HALF     65536.0 /* compute units x MHz scoring SCORE_MAX/2 */
#define UNUSABLE_SCALE 0.01

/* ---- pure helpers ------------------------------------------------------- */

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static int is_alnum(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9');
}

static int contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] &&
               lower((unsigned char)hay[i]) == lower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return n == 0;
}

/* 1 when the space-separated list holds word as a whole word. */
static int has_word(const char *list, const char *word)
{
    size_t n = strlen(word);
    const char *p = list;
    while ((p = strstr(p, word)) != NULL) {
        int starts = p == list || p[-1] == ' ';
        int ends = p[n] == '\0' || p[n] == ' ';
        if (starts && ends)
            return 1;
        p += n;
    }
    return 0;
}

int attn_cl_is_fpga_platform(const char *platform_name)
{
    if (!platform_name)
        return 0;
    return contains_ci(platform_name, "FPGA") ||
           contains_ci(platform_name, "Xilinx");
}

const char *attn_cl_binary_dir(void)
{
    const char *dir = getenv("ATTN_KERNEL_BINARY_DIR");
    if (dir && *dir)
        return dir;
#ifdef ATTN_KERNEL_BINARY_DIR
    return ATTN_KERNEL_BINARY_DIR[0] ? ATTN_KERNEL_BINARY_DIR : NULL;
#else
    return NULL;
#endif
}

size_t attn_cl_binary_name(const char *device_name, char *out, size_t cap)
{
    size_t len = 0;
    int gap = 0;
    if (!out || cap == 0)
        return 0;
    for (const char *p = device_name ? device_name : ""; *p; p++) {
        if (!is_alnum((unsigned char)*p)) {
            gap = len > 0;
            continue;
        }
        if (gap && len + 1 < cap)
            out[len++] = '_';
        gap = 0;
        if (len + 1 < cap)
            out[len++] = (char)lower((unsigned char)*p);
    }
    out[len] = '\0';
    return len;
}

int attn_cl_find_binary(const char *dir, const char *device_name, char *path,
                        size_t cap)
{
    static const char *const exts[] = {".aocx", ".xclbin", ".bin"};
    char name[256], full[4096];
    struct stat st;
    if (!dir || !*dir ||
        attn_cl_binary_name(device_name, name, sizeof name) == 0)
        return 0;
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        int w = snprintf(full, sizeof full, "%s/%s%s", dir, name, exts[i]);
        if (w < 0 || (size_t)w >= sizeof full)
            return 0;
        if (stat(full, &st) == 0 && S_ISREG(st.st_mode)) {
            if (path && cap > 0)
                snprintf(path, cap, "%s", full);
            return 1;
        }
    }
    return 0;
}

/* Reads "OpenCL C <major>.<minor> ..." into *major, *minor; 0 when the
 * string does not have that shape. */
static int parse_clc_version(const char *s, int *major, int *minor)
{
    static const char prefix[] = "OpenCL C ";
    int ma = 0, mi = 0;
    const char *p;
    if (strncmp(s, prefix, sizeof prefix - 1) != 0)
        return 0;
    p = s + sizeof prefix - 1;
    if (*p < '0' || *p > '9')
        return 0;
    while (*p >= '0' && *p <= '9' && ma < 1000)
        ma = ma * 10 + (*p++ - '0');
    if (*p++ != '.' || *p < '0' || *p > '9')
        return 0;
    while (*p >= '0' && *p <= '9' && mi < 1000)
        mi = mi * 10 + (*p++ - '0');
    *major = ma;
    *minor = mi;
    return 1;
}

/* Appends one clause to a reason, separated by "; ". */
static void add_reason(char *buf, size_t cap, const char *fmt, ...)
    ATTN_PRINTF(3, 4);
static void add_reason(char *buf, size_t cap, const char *fmt, ...)
{
    size_t len = strlen(buf);
    va_list ap;
    if (len > 0 && len + 2 < cap) {
        memcpy(buf + len, "; ", 3);
        len += 2;
    }
    if (len + 1 >= cap)
        return;
    va_start(ap, fmt);
    vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}

/* Bytes as the largest whole unit among B, KiB, MiB, GiB. */
static void fmt_bytes(char *buf, size_t cap, uint64_t v)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB"};
    int u = 0;
    while (u < 3 && v >= 1024 && v % 1024 == 0) {
        v /= 1024;
        u++;
    }
    snprintf(buf, cap, "%llu %s", (unsigned long long)v, units[u]);
}

static attn_device_kind kind_of(unsigned long long type, int fpga_platform,
                                int unified)
{
    if ((type & CL_DEVICE_TYPE_ACCELERATOR) || fpga_platform)
        return ATTN_DEVICE_FPGA;
    if (type & CL_DEVICE_TYPE_GPU)
        return unified ? ATTN_DEVICE_IGPU : ATTN_DEVICE_GPU;
    if (type & CL_DEVICE_TYPE_CPU)
        return ATTN_DEVICE_CPU_OPENCL;
    return ATTN_DEVICE_OTHER;
}

static double rank_of(const attn_device_info *info)
{
    static const double base[] = {
        [ATTN_DEVICE_GPU] = 4000.0,  [ATTN_DEVICE_IGPU] = 3000.0,
        [ATTN_DEVICE_FPGA] = 2000.0, [ATTN_DEVICE_CPU_OPENCL] = 1000.0,
        [ATTN_DEVICE_OTHER] = 500.0, [ATTN_DEVICE_NATIVE] = 0.0};
    /* An unknown clock counts as 1 MHz: the device still orders by its
     * compute units and is never favoured for a failed query. */
    double mhz = info->max_clock_mhz ? (double)info->max_clock_mhz : 1.0;
    double x = (double)info->compute_units * mhz;
    double r = base[info->kind] + SCORE_MAX * x / (x + SCORE_HALF);
    return info->usable ? r : r * UNUSABLE_SCALE;
}

/* The whole classification; attn_cl_classify is the capability part alone
 * (available and compiler set), discovery adds what the device reports. */
static void classify(attn_device_info *info, unsigned long long type,
                     int fpga_platform, int has_binary, int available,
                     int compiler)
{
    char why[sizeof info->reason] = "", a[32], b[32];
    int major = 0, minor = 0, fpga;

    info->kind = kind_of(type, fpga_platform, info->unified_memory);
    fpga = info->kind == ATTN_DEVICE_FPGA;
    if (!available)
        add_reason(why, sizeof why, "the device reports it is unavailable");
    if (!compiler && !fpga)
        add_reason(why, sizeof why, "no OpenCL C compiler available");
    if (!parse_clc_version(info->opencl_c_version, &major, &minor))
        add_reason(why, sizeof why, "OpenCL C version unknown (\"%.40s\")",
                   info->opencl_c_version);
    else if (major < MIN_CLC_MAJOR ||
             (major == MIN_CLC_MAJOR && minor < MIN_CLC_MINOR))
        add_reason(why, sizeof why, "OpenCL C %d.%d < %d.%d", major, minor,
                   MIN_CLC_MAJOR, MIN_CLC_MINOR);
    if (!fpga && info->local_mem_bytes < MIN_LOCAL_MEM) {
        fmt_bytes(a, sizeof a, info->local_mem_bytes);
        add_reason(why, sizeof why, "local memory %s < 16 KiB", a);
    }
    if (!fpga && info->max_work_group_size < MIN_WORK_GROUP)
        add_reason(why, sizeof why, "max work-group size %zu < %u",
                   info->max_work_group_size, MIN_WORK_GROUP);
    if (info->max_alloc_bytes < MIN_ALLOC_BYTES) {
        fmt_bytes(a, sizeof a, info->max_alloc_bytes);
        add_reason(why, sizeof why, "max allocation %s < 16 MiB", a);
    }
    if (fpga && !has_binary)
        add_reason(why, sizeof why,
                   "FPGA without an offline kernel binary "
                   "(ATTN_KERNEL_BINARY_DIR/<name>.aocx|.xclbin|.bin)");

    info->usable = why[0] == '\0';
    if (info->usable) {
        fmt_bytes(a, sizeof a, info->local_mem_bytes);
        fmt_bytes(b, sizeof b, info->max_alloc_bytes);
        if (fpga)
            snprintf(why, sizeof why,
                     "usable: OpenCL C %d.%d, offline binary found, max "
                     "allocation %s",
                     major, minor, b);
        else
            snprintf(why, sizeof why,
                     "usable: OpenCL C %d.%d, %s local memory, work-group "
                     "%zu, max allocation %s",
                     major, minor, a, info->max_work_group_size, b);
    }
    snprintf(info->reason, sizeof info->reason, "%s", why);
    info->rank = rank_of(info);
}

void attn_cl_classify(attn_device_info *info, unsigned long long cl_type,
                      int fpga_platform, int has_binary)
{
    if (info)
        classify(info, cl_type, fpga_platform, has_binary, 1, 1);
}

/* ---- probing ------------------------------------------------------------ */

/* One getter type for platform and device strings, without casting
 * function pointers of different types. */
typedef cl_int (*info_fn)(void *obj, cl_uint param, size_t size, void *value,
                          size_t *ret);

static cl_int platform_info(void *obj, cl_uint param, size_t size, void *value,
                            size_t *ret)
{
    return clGetPlatformInfo((cl_platform_id)obj, param, size, value, ret);
}

static cl_int device_info(void *obj, cl_uint param, size_t size, void *value,
                          size_t *ret)
{
    return clGetDeviceInfo((cl_device_id)obj, param, size, value, ret);
}

/* *out = a malloc'ed, NUL-terminated copy of a string property with the
 * surrounding spaces some drivers pad names with removed.  Returns 0, 1
 * when the query failed (*out = NULL), -1 when out of memory. */
static int query_string(info_fn fn, void *obj, cl_uint param, char **out)
{
    size_t size = 0, b = 0, e;
    char *s;
    *out = NULL;
    if (fn(obj, param, 0, NULL, &size) != CL_SUCCESS || size == 0)
        return 1;
    if (!(s = malloc(size + 1)))
        return -1;
    if (fn(obj, param, size, s, NULL) != CL_SUCCESS) {
        free(s);
        return 1;
    }
    s[size] = '\0';
    e = strlen(s);
    while (e > 0 && (s[e - 1] == ' ' || s[e - 1] == '\n'))
        s[--e] = '\0';
    while (s[b] == ' ')
        b++;
    memmove(s, s + b, e - b + 1);
    *out = s;
    return 0;
}

/* A string property copied (truncated) into dst; a failed query sets bit in
 * *failed and leaves "".  Returns -1 only when out of memory. */
static int probe_string(cl_device_id d, cl_device_info param, char *dst,
                        size_t cap, unsigned *failed, unsigned bit)
{
    char *s = NULL;
    int rc = query_string(device_info, d, param, &s);
    dst[0] = '\0';
    if (rc < 0)
        return -1;
    if (rc > 0)
        *failed |= bit;
    else
        snprintf(dst, cap, "%s", s);
    free(s);
    return 0;
}

/* A fixed-size property; the size check catches drivers that answer with
 * a different width than the specification says. */
static int probe_fixed(cl_device_id d, cl_device_info param, void *value,
                       size_t size)
{
    size_t got = 0;
    memset(value, 0, size);
    if (clGetDeviceInfo(d, param, size, value, &got) != CL_SUCCESS ||
        got != size) {
        memset(value, 0, size);
        return 0;
    }
    return 1;
}

static int probe_device(cl_platform_id p, const char *platform_name,
                        cl_device_id d, attn_cl_device *out)
{
    attn_device_info *info = &out->info;
    unsigned *failed = &out->query_failed;
    cl_uint cu = 0, mhz = 0;
    cl_ulong gmem = 0, lmem = 0, alloc = 0, fp64cfg = 0;
    size_t wg = 0;
    cl_bool unified = 0, available = 1, compiler = 1;
    cl_device_type type = 0;
    char *ext = NULL;
    int rc, fpga_platform, ext_ok, cfg_ok;

    memset(out, 0, sizeof *out);
    out->platform = p;
    out->device = d;
    if (platform_name)
        snprintf(info->platform, sizeof info->platform, "%s", platform_name);
    else
        *failed |= ATTN_CL_Q_PLATFORM;
    if (probe_string(d, CL_DEVICE_NAME, info->name, sizeof info->name, failed,
                     ATTN_CL_Q_NAME) ||
        probe_string(d, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor,
                     failed, ATTN_CL_Q_VENDOR) ||
        probe_string(d, CL_DRIVER_VERSION, info->driver_version,
                     sizeof info->driver_version, failed, ATTN_CL_Q_DRIVER) ||
        probe_string(d, CL_DEVICE_OPENCL_C_VERSION, info->opencl_c_version,
                     sizeof info->opencl_c_version, failed,
                     ATTN_CL_Q_CLC_VERSION) ||
        probe_string(d, CL_DEVICE_VERSION, info->opencl_version,
                     sizeof info->opencl_version, failed, ATTN_CL_Q_VERSION))
        return -1;
    if (!probe_fixed(d, CL_DEVICE_MAX_COMPUTE_UNITS, &cu, sizeof cu))
        *failed |= ATTN_CL_Q_COMPUTE_UNITS;
    if (!probe_fixed(d, CL_DEVICE_MAX_CLOCK_FREQUENCY, &mhz, sizeof mhz))
        *failed |= ATTN_CL_Q_CLOCK;
    if (!probe_fixed(d, CL_DEVICE_GLOBAL_MEM_SIZE, &gmem, sizeof gmem))
        *failed |= ATTN_CL_Q_GLOBAL_MEM;
    if (!probe_fixed(d, CL_DEVICE_LOCAL_MEM_SIZE, &lmem, sizeof lmem))
        *failed |= ATTN_CL_Q_LOCAL_MEM;
    if (!probe_fixed(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, &alloc, sizeof alloc))
        *failed |= ATTN_CL_Q_MAX_ALLOC;
    if (!probe_fixed(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, &wg, sizeof wg))
        *failed |= ATTN_CL_Q_WORK_GROUP;
    if (!probe_fixed(d, CL_DEVICE_HOST_UNIFIED_MEMORY, &unified,
                     sizeof unified))
        *failed |= ATTN_CL_Q_UNIFIED;
    if (!probe_fixed(d, CL_DEVICE_TYPE, &type, sizeof type))
        *failed |= ATTN_CL_Q_TYPE;
    /* Unknown availability or compiler: assume yes; a real problem shows
     * up when the program is built, and refusing a device for a failed
     * query would hide it. */
    if (!probe_fixed(d, CL_DEVICE_AVAILABLE, &available, sizeof available))
        available = 1;
    if (!probe_fixed(d, CL_DEVICE_COMPILER_AVAILABLE, &compiler,
                     sizeof compiler))
        compiler = 1;

    rc = query_string(device_info, d, CL_DEVICE_EXTENSIONS, &ext);
    if (rc < 0)
        return -1;
    ext_ok = rc == 0;
    cfg_ok =
        probe_fixed(d, CL_DEVICE_DOUBLE_FP_CONFIG, &fp64cfg, sizeof fp64cfg);
    info->fp16 = ext_ok && has_word(ext, "cl_khr_fp16");
    info->fp64 = (ext_ok && has_word(ext, "cl_khr_fp64")) || fp64cfg != 0;
    if (!ext_ok)
        *failed |= ATTN_CL_Q_FP16;
    if (!ext_ok && !cfg_ok)
        *failed |= ATTN_CL_Q_FP64;
    free(ext);

    info->compute_units = cu;
    info->max_clock_mhz = mhz;
    info->global_mem_bytes = gmem;
    info->local_mem_bytes = lmem;
    info->max_alloc_bytes = alloc;
    info->max_work_group_size = wg;
    info->unified_memory = unified != 0;

    fpga_platform = attn_cl_is_fpga_platform(platform_name);
    if (kind_of(type, fpga_platform, 0) == ATTN_DEVICE_FPGA) {
        /* Usable when the program every call needs is there. */
        char name[sizeof info->name + 32];
        snprintf(name, sizeof name, "%s %s", info->name,
                 ATTN_CL_REQUIRED_PROGRAM);
        out->has_binary =
            attn_cl_find_binary(attn_cl_binary_dir(), name, NULL, 0);
    }
    classify(info, type, fpga_platform, out->has_binary, available != 0,
             compiler != 0);
    out->nv_sm = attn_cl_nv_sm(d);
    out->amd_gfx = attn_cl_amd_gfx(d);
    out->intel_xmx = attn_cl_intel_xmx(d);
    out->shuffle = attn_cl_shuffle(d);
    return 0;
}

/* The NVIDIA compute capability of device as 10 * major + minor, through
 * cl_nv_device_attribute_query; 0 on other devices. */
int attn_cl_nv_sm(cl_device_id device)
{
    enum { CC_MAJOR_NV = 0x4000, CC_MINOR_NV = 0x4001 };
    cl_uint major = 0, minor = 0;
    size_t n = 0;
    char *ext;
    int has = 0;
    if (clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, 0, NULL, &n) !=
            CL_SUCCESS ||
        n == 0 || !(ext = malloc(n + 1)))
        return 0;
    if (clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, n, ext, NULL) ==
        CL_SUCCESS) {
        ext[n] = '\0';
        has = strstr(ext, "cl_nv_device_attribute_query") != NULL;
    }
    free(ext);
    if (!has ||
        clGetDeviceInfo(device, CC_MAJOR_NV, sizeof major, &major, NULL) !=
            CL_SUCCESS ||
        clGetDeviceInfo(device, CC_MINOR_NV, sizeof minor, &minor, NULL) !=
            CL_SUCCESS ||
        major > 100 || minor > 9)
        return 0;
    return (int)(major * 10 + minor);
}

/* Whether the device lists extension name (a whole word). */
static int has_extension(cl_device_id device, const char *name)
{
    size_t n = 0, len = strlen(name);
    char *ext;
    int has = 0;
    if (clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, 0, NULL, &n) !=
            CL_SUCCESS ||
        n == 0 || !(ext = malloc(n + 1)))
        return 0;
    if (clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, n, ext, NULL) ==
        CL_SUCCESS) {
        ext[n] = '\0';
        for (const char *p = ext; !has && (p = strstr(p, name)) != NULL;
             p += len)
            has =
                (p == ext || p[-1] == ' ') && (p[len] == '\0' || p[len] == ' ');
    }
    free(ext);
    return has;
}

int attn_cl_intel_xmx(cl_device_id device)
{
    enum { SUB_GROUP_SIZES_INTEL = 0x4108 };
    size_t sizes[16], n = 0, least = 0;
    if (!has_extension(device,
                       "cl_intel_subgroup_matrix_multiply_accumulate") ||
        clGetDeviceInfo(device, SUB_GROUP_SIZES_INTEL, sizeof sizes, sizes,
                        &n) != CL_SUCCESS)
        return 0;
    for (size_t i = 0; i < n / sizeof sizes[0] && i < 16; i++)
        if (sizes[i] && (!least || sizes[i] < least))
            least = sizes[i];
    return least == 8 || least == 16 ? (int)least : 0;
}

int attn_cl_shuffle(cl_device_id device)
{
    if (has_extension(device, "cl_intel_subgroups"))
        return ATTN_CL_SHUFFLE_INTEL;
    if (has_extension(device, "cl_khr_subgroups") &&
        has_extension(device, "cl_khr_subgroup_shuffle"))
        return ATTN_CL_SHUFFLE_KHR;
    return ATTN_CL_SHUFFLE_NONE;
}

int attn_cl_shuffle_builds(cl_context context, cl_device_id device, int shuffle)
{
    const char *src;
    cl_int rc;
    cl_program p;
    switch (shuffle) {
    case ATTN_CL_SHUFFLE_PTX:
        src = "__kernel void attn_shfl_probe(__global uint *x)\n"
              "{\n"
              "    uint y;\n"
              "    asm volatile(\"shfl.sync.bfly.b32 %0, %1, 1, 0x1f, "
              "0xffffffff;\"\n"
              "                 : \"=r\"(y) : \"r\"(x[get_local_id(0)]));\n"
              "    x[get_local_id(0)] = y;\n"
              "}\n";
        break;
    case ATTN_CL_SHUFFLE_KHR:
        src = "#pragma OPENCL EXTENSION cl_khr_subgroups : enable\n"
              "#pragma OPENCL EXTENSION cl_khr_subgroup_shuffle : enable\n"
              "__kernel void attn_shfl_probe(__global uint *x)\n"
              "{\n"
              "    x[get_local_id(0)] = sub_group_shuffle_xor("
              "x[get_local_id(0)], 1u);\n"
              "}\n";
        break;
    case ATTN_CL_SHUFFLE_INTEL:
        src = "#pragma OPENCL EXTENSION cl_intel_subgroups : enable\n"
              "__kernel void attn_shfl_probe(__global uint *x)\n"
              "{\n"
              "    x[get_local_id(0)] = intel_sub_group_shuffle_xor("
              "x[get_local_id(0)], 1u);\n"
              "}\n";
        break;
    default:
        return 0;
    }
    p = clCreateProgramWithSource(context, 1, &src, NULL, &rc);
    if (rc != CL_SUCCESS || !p)
        return 0;
    rc = clBuildProgram(p, 1, &device, "-cl-std=CL1.2", NULL, NULL);
    clReleaseProgram(p);
    return rc == CL_SUCCESS;
}

int attn_cl_ptx_target_of(const char *bin, size_t n)
{
    static const char dir[] = ".target";
    const size_t len = sizeof dir - 1;
    /* Each line: blanks, then the directive (not one in a comment). */
    for (size_t i = 0; bin && i < n; i++) {
        size_t j;
        int sm = 0, digits = 0;
        if (i > 0 && bin[i - 1] != '\n')
            continue;
        while (i < n && (bin[i] == ' ' || bin[i] == '\t'))
            i++;
        if (i + len >= n || memcmp(bin + i, dir, len) != 0)
            continue;
        j = i + len;
        while (j < n && (bin[j] == ' ' || bin[j] == '\t'))
            j++;
        if (j == i + len || j + 3 > n || memcmp(bin + j, "sm_", 3) != 0)
            continue;
        for (j += 3; j < n && bin[j] >= '0' && bin[j] <= '9' && digits < 4;
             j++, digits++)
            sm = sm * 10 + (bin[j] - '0');
        if (digits > 0 && digits < 4)
            return sm;
    }
    return 0;
}

int attn_cl_ptx_target(cl_program p)
{
    size_t n = 0;
    char *bin;
    int t = -1;
    if (clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof n, &n, NULL) !=
            CL_SUCCESS ||
        n == 0 || !(bin = malloc(n)))
        return -1;
    if (clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) ==
        CL_SUCCESS)
        t = attn_cl_ptx_target_of(bin, n);
    free(bin);
    return t;
}

attn_status attn_cl_probe(cl_device_id d, attn_cl_device *out, attn_err *err)
{
    cl_platform_id p = NULL;
    char *pname = NULL;
    cl_int rc = clGetDeviceInfo(d, CL_DEVICE_PLATFORM, sizeof p, &p, NULL);
    int ok;
    if (rc != CL_SUCCESS)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "the device handle is not valid (CL error %d)",
                         (int)rc);
    if (query_string(platform_info, p, CL_PLATFORM_NAME, &pname) < 0)
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "out of memory probing the device");
    ok = probe_device(p, pname, d, out) == 0;
    free(pname);
    if (!ok)
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "out of memory probing the device");
    out->info.platform_index = out->info.device_index = -1;
    return ATTN_OK;
}

/* ---- enumeration and order ---------------------------------------------- */

typedef struct plat_rec {
    cl_platform_id id;
    char *name, *vendor, *version; /* NULL when the query failed */
    cl_uint icd_index;
} plat_rec;

typedef struct dev_rec {
    attn_cl_device dev;
    cl_uint icd_index;
} dev_rec;

static int cmp_str(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "");
}

static int cmp_platform(const void *pa, const void *pb)
{
    const plat_rec *a = pa, *b = pb;
    int c;
    if ((c = cmp_str(a->name, b->name)) ||
        (c = cmp_str(a->vendor, b->vendor)) ||
        (c = cmp_str(a->version, b->version)))
        return c;
    return (a->icd_index > b->icd_index) - (a->icd_index < b->icd_index);
}

static int cmp_device(const void *pa, const void *pb)
{
    const dev_rec *a = pa, *b = pb;
    int c = strcmp(a->dev.info.name, b->dev.info.name);
    if (c)
        return c;
    return (a->icd_index > b->icd_index) - (a->icd_index < b->icd_index);
}

/* Appends the devices of one platform, sorted, to *all.  Returns ATTN_OK;
 * a platform whose device list cannot be read adds nothing. */
static attn_status add_platform(const plat_rec *p, int platform_index,
                                attn_cl_device **all, size_t *count,
                                attn_err *err)
{
    cl_uint nd = 0, got = 0;
    cl_device_id *ids = NULL;
    dev_rec *recs = NULL;
    attn_cl_device *grown;
    attn_status s = ATTN_OK;
    cl_int rc;

    rc = clGetDeviceIDs(p->id, CL_DEVICE_TYPE_ALL, 0, NULL, &nd);
    if (rc != CL_SUCCESS || nd == 0)
        return ATTN_OK; /* CL_DEVICE_NOT_FOUND or a broken platform */
    ids = malloc(nd * sizeof *ids);
    recs = calloc(nd, sizeof *recs);
    if (!ids || !recs) {
        s = attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                      "cannot allocate %u OpenCL device records", nd);
        goto done;
    }
    /* The list may have shrunk since it was counted; never grown past the
     * arrays (the count is the caller's capacity, not the answer's). */
    rc = clGetDeviceIDs(p->id, CL_DEVICE_TYPE_ALL, nd, ids, &got);
    if (rc != CL_SUCCESS)
        goto done;
    if (got < nd)
        nd = got;
    for (cl_uint i = 0; i < nd; i++) {
        recs[i].icd_index = i;
        if (probe_device(p->id, p->name, ids[i], &recs[i].dev) < 0) {
            s = attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                          "out of memory probing an OpenCL device");
            goto done;
        }
    }
    qsort(recs, nd, sizeof *recs, cmp_device);
    grown = realloc(*all, (*count + nd) * sizeof **all);
    if (!grown) {
        s = attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                      "cannot allocate %zu OpenCL device records", *count + nd);
        goto done;
    }
    *all = grown;
    for (cl_uint i = 0; i < nd; i++) {
        recs[i].dev.info.platform_index = platform_index;
        recs[i].dev.info.device_index = (int)i;
        (*all)[(*count)++] = recs[i].dev;
    }
done:
    free(recs);
    free(ids);
    return s;
}

attn_status attn_cl_discover(attn_cl_device **out, size_t *count, attn_err *err)
{
    cl_uint np = 0, got = 0;
    cl_platform_id *ids = NULL;
    plat_rec *plats = NULL;
    attn_cl_device *all = NULL;
    size_t n = 0;
    attn_status s = ATTN_OK;
    cl_int rc;

    if (!out || !count)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "attn_cl_discover: out and count must not be NULL");
    *out = NULL;
    *count = 0;
    rc = clGetPlatformIDs(0, NULL, &np);
    if (rc == CL_PLATFORM_NOT_FOUND_KHR || (rc == CL_SUCCESS && np == 0))
        return ATTN_OK;
    if (rc != CL_SUCCESS)
        return attn_fail(err, ATTN_ERR_DEVICE,
                         "clGetPlatformIDs failed with OpenCL error %d",
                         (int)rc);
    ids = malloc(np * sizeof *ids);
    plats = calloc(np, sizeof *plats);
    if (!ids || !plats) {
        s = attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                      "cannot allocate %u OpenCL platform records", np);
        goto done;
    }
    rc = clGetPlatformIDs(np, ids, &got);
    if (rc != CL_SUCCESS) {
        s = attn_fail(err, ATTN_ERR_DEVICE,
                      "clGetPlatformIDs failed with OpenCL error %d", (int)rc);
        goto done;
    }
    if (got < np)
        np = got;
    for (cl_uint i = 0; i < np; i++) {
        plats[i].id = ids[i];
        plats[i].icd_index = i;
        if (query_string(platform_info, ids[i], CL_PLATFORM_NAME,
                         &plats[i].name) < 0 ||
            query_string(platform_info, ids[i], CL_PLATFORM_VENDOR,
                         &plats[i].vendor) < 0 ||
            query_string(platform_info, ids[i], CL_PLATFORM_VERSION,
                         &plats[i].version) < 0) {
            s = attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                          "out of memory probing an OpenCL platform");
            goto done;
        }
    }
    qsort(plats, np, sizeof *plats, cmp_platform);
    for (cl_uint i = 0; i < np; i++)
        if ((s = add_platform(&plats[i], (int)i, &all, &n, err)))
            goto done;
    *out = all;
    *count = n;
    all = NULL;
done:
    free(all);
    for (cl_uint i = 0; plats && i < np; i++) {
        free(plats[i].name);
        free(plats[i].vendor);
        free(plats[i].version);
    }
    free(plats);
    free(ids);
    return s;
}
