// SPDX-License-Identifier: Apache-2.0
/*
 * The public headers as a C++ program includes them: every initializer
 * macro (built with -Wall -Wextra -pedantic, and -Werror in CI, so that a
 * -Wmissing-field-initializers warning fails the build), each struct's
 * struct_size and the options' defaults checked, and a context created
 * from them.  Exits 1 naming what differs.
 */
#include "attn/attn.h"
#ifdef ATTN_TEST_CL
#include "attn/attn_cl.h"
#endif

#include <cstdio>
#include <cstring>

static int failures;

static void expect(bool ok, const char *what)
{
    if (!ok) {
        std::printf("FAIL %s\n", what);
        failures++;
    }
}

int main()
{
    attn_options o = ATTN_OPTIONS_INIT;
    attn_device_info devs[4] = {ATTN_DEVICE_INFO_INIT};
    attn_device_info di = ATTN_DEVICE_INFO_INIT;
    attn_mask_desc m = ATTN_MASK_DESC_INIT;
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    attn_mha_desc md = ATTN_MHA_DESC_INIT;
    attn_kv_cache kv = ATTN_KV_CACHE_INIT;
    attn_mha_grad mg = ATTN_MHA_GRAD_INIT;
    attn_context *ctx = NULL;

    expect(o.struct_size == sizeof o, "attn_options struct_size");
    expect(o.device && !std::strcmp(o.device, "auto"), "options.device auto");
    expect(o.allow_fallback == 1, "options.allow_fallback 1");
    expect(o.threads == 0 && o.queues == 0 && o.kernel == NULL &&
               o.log == NULL && o.precision == ATTN_PRECISION_EXACT,
           "options' other members 0");
    expect(devs[0].struct_size == sizeof di && devs[1].struct_size == 0,
           "device array: the first element sized, the rest zero");
    expect(di.struct_size == sizeof di, "attn_device_info struct_size");
    expect(m.struct_size == sizeof m && m.bias == NULL && m.causal == 0,
           "attn_mask_desc");
    expect(d.struct_size == sizeof d && d.batch == 0 && d.q_strides[0] == 0,
           "attn_sdpa_desc");
    expect(g.struct_size == sizeof g, "attn_sdpa_grad struct_size");
    expect(md.struct_size == sizeof md && md.wq == NULL, "attn_mha_desc");
    expect(kv.struct_size == sizeof kv && kv.k == NULL, "attn_kv_cache");
    expect(mg.struct_size == sizeof mg, "attn_mha_grad struct_size");
#ifdef ATTN_TEST_CL
    {
        attn_cl_buffers b = ATTN_CL_BUFFERS_INIT;
        attn_cl_grad_buffers gb = ATTN_CL_GRAD_BUFFERS_INIT;
        expect(b.struct_size == sizeof b && b.q == NULL, "attn_cl_buffers");
        expect(gb.struct_size == sizeof gb, "attn_cl_grad_buffers");
    }
#endif
    o.device = "native";
    expect(attn_context_create(&o, &ctx) == ATTN_OK,
           "a native context from ATTN_OPTIONS_INIT");
    attn_context_destroy(ctx);
    if (failures)
        return 1;
    std::printf("C++: every initializer as the C ones\n");
    return 0;
}
