/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gfx target of an AMD GPU and the matrix units it has (discovery.h),
 * for the matrix-core kernel variant amdmm (src/opencl/variants/amdmm.c)
 * and attn-probe.
 */
#include <stdlib.h>
#include <string.h>

#include "discovery.h"

int attn_cl_gfx_of(const char *name)
{
    int v = 0, n = 0;
    if (!name || strncmp(name, "gfx", 3) != 0)
        return 0;
    for (const char *p = name + 3; *p && *p != ':'; p++, n++) {
        const char c = *p;
        int x;
        if (c >= '0' && c <= '9')
            x = c - '0';
        else if (c >= 'a' && c <= 'f')
            x = c - 'a' + 10;
        else
            return 0;
        if (n >= 5) /* no gfx target has more than 5 digits */
            return 0;
        v = v * 16 + x;
    }
    return n >= 3 ? v : 0;
}

int attn_cl_amd_matrix_unit(int gfx)
{
    switch (gfx) {
    case 0x908: /* MI100 */
    case 0x90a: /* MI200 */
    case 0x940: /* MI300 */
    case 0x941:
    case 0x942:
        return ATTN_CL_AMD_MFMA;
    default:
        /* RDNA3 and RDNA3.5 (gfx11xx) have WMMA; RDNA4 (gfx12) has
         * other builtins. */
        return gfx >> 8 == 0x11 ? ATTN_CL_AMD_WMMA : 0;
    }
}

int attn_cl_amd_xf32(int gfx)
{
    return gfx == 0x940 || gfx == 0x941 || gfx == 0x942;
}

/* A string property of device, NUL-terminated in buf (cap > 0); 0 when
 * the query fails. */
static int query(cl_device_id device, cl_device_info what, char *buf,
                 size_t cap)
{
    if (clGetDeviceInfo(device, what, cap, buf, NULL) != CL_SUCCESS)
        return 0;
    buf[cap - 1] = '\0';
    return 1;
}

int attn_cl_amd_gfx(cl_device_id device)
{
    char name[256], vendor[256];
    cl_device_type type = 0;
    if (!query(device, CL_DEVICE_VENDOR, vendor, sizeof vendor) ||
        (!strstr(vendor, "Advanced Micro Devices") && !strstr(vendor, "AMD")) ||
        clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof type, &type, NULL) !=
            CL_SUCCESS ||
        !(type & CL_DEVICE_TYPE_GPU) ||
        !query(device, CL_DEVICE_NAME, name, sizeof name))
        return 0;
    return attn_cl_gfx_of(name);
}
