/*
 * The --impl list and the libattn contexts of the OpenCL impls: each cl-*
 * impl is libattn through its public API (attn_options device, queues,
 * path), created once and reused for every case.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const NAMES[IMPL_COUNT] = {
    "native",  "cl-unfused", "cl-fused", "cl-decode", "cl-q2", "cl-q4",
    "cl-2dev", "clblast",    "ggml",     "numpy",     "torch"};

const char *impl_name(impl_id id)
{
    return id < IMPL_COUNT ? NAMES[id] : "?";
}

int impls_parse(const char *list, unsigned *out)
{
    char buf[512];
    if (strlen(list) >= sizeof buf)
        return -1;
    strcpy(buf, list);
    unsigned m = 1u << IMPL_NATIVE;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        if (strcmp(t, "all") == 0) {
            m |= (1u << IMPL_COUNT) - 1;
            continue;
        }
        int found = 0;
        for (int i = 0; i < IMPL_COUNT; i++)
            if (strcmp(t, NAMES[i]) == 0) {
                m |= 1u << i;
                found = 1;
            }
        if (!found) {
            fprintf(stderr,
                    "attn-bench: unknown implementation '%s' in --impl "
                    "(see --help)\n",
                    t);
            return -1;
        }
    }
    *out = m;
    return 0;
}

static int is_cl(impl_id id)
{
    return id >= IMPL_CL_UNFUSED && id <= IMPL_CL_2DEV;
}

void impls_attn_options(const options *opt, impl_id id, attn_options *ao)
{
    attn_options_init(ao);
    ao->threads = opt->threads;
    ao->allow_fallback = 0; /* a failure must show, not run natively */
    ao->queues = 1;
    switch (id) {
    case IMPL_NATIVE:
        ao->device = "native";
        break;
    case IMPL_CL_UNFUSED:
        ao->device = opt->device;
        ao->path = ATTN_PATH_UNFUSED;
        break;
    case IMPL_CL_DECODE:
        ao->device = opt->device;
        ao->path = ATTN_PATH_AUTO; /* AUTO picks the decode kernel */
        break;
    case IMPL_CL_Q2:
    case IMPL_CL_Q4:
        ao->device = opt->device;
        ao->path = ATTN_PATH_FUSED;
        ao->queues = id == IMPL_CL_Q2 ? 2 : 4;
        break;
    case IMPL_CL_2DEV:
        ao->device = "all";
        ao->path = ATTN_PATH_FUSED;
        break;
    default:
        ao->device = opt->device;
        ao->path = ATTN_PATH_FUSED;
        break;
    }
}

void impls_open(const options *opt, cl_impls *ci)
{
    memset(ci, 0, sizeof *ci);
    size_t n_dev = 0;
    attn_status ds = attn_devices(NULL, 0, &n_dev);
    attn_device_info *devs = NULL;
    if (ds == ATTN_OK && n_dev > 0) {
        devs = calloc(n_dev, sizeof *devs);
        if (devs && attn_devices(devs, n_dev, &n_dev) != ATTN_OK)
            n_dev = 0;
    }
    size_t n_usable = 0;
    for (size_t i = 0; devs && i < n_dev; i++)
        n_usable += devs[i].usable != 0;
    free(devs);
    for (int i = 0; i < IMPL_COUNT; i++) {
        impl_id id = (impl_id)i;
        if (!is_cl(id) || !opt_has(opt, id))
            continue;
        if (n_dev == 0) {
            snprintf(ci->why[i], sizeof ci->why[i],
                     "skipped: no OpenCL device (attn_devices found none)");
            continue;
        }
        if (id == IMPL_CL_2DEV && n_usable < 2) {
            snprintf(ci->why[i], sizeof ci->why[i],
                     "skipped: %zu usable OpenCL device%s, needs 2 (with PoCL: "
                     "POCL_DEVICES=\"pthread pthread\")",
                     n_usable, n_usable == 1 ? "" : "s");
            continue;
        }
        attn_options ao;
        impls_attn_options(opt, id, &ao);
        attn_status st = attn_context_create(&ao, &ci->ctx[i]);
        if (st != ATTN_OK) {
            snprintf(ci->why[i], sizeof ci->why[i],
                     "skipped: attn_context_create(device=%s): %s: %.300s",
                     ao.device, attn_status_string(st), attn_last_error());
            ci->ctx[i] = NULL;
            continue;
        }
        attn_device_info di;
        memset(&di, 0, sizeof di);
        attn_context_device(ci->ctx[i], &di);
        snprintf(ci->desc[i], sizeof ci->desc[i],
                 "%s: device=%s -> '%.60s'%s, "
                 "%d queue%s, path %s",
                 NAMES[i], ao.device, di.name,
                 id == IMPL_CL_2DEV ? " and the other devices" : "", ao.queues,
                 ao.queues == 1 ? "" : "s",
                 ao.path == ATTN_PATH_FUSED     ? "FUSED"
                 : ao.path == ATTN_PATH_UNFUSED ? "UNFUSED"
                                                : "AUTO");
    }
}

void impls_close(cl_impls *ci)
{
    for (int i = 0; i < IMPL_COUNT; i++) {
        attn_context_destroy(ci->ctx[i]);
        ci->ctx[i] = NULL;
    }
}

double impls_s_bytes(int seq_q, int seq_kv)
{
    return (double)HEADS * seq_q * seq_kv * sizeof(float);
}
