/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The --impl and --kernel lists and the libattn contexts of the OpenCL
 * impls: each cl-* impl is libattn through its public API (attn_options
 * device, queues, path, kernel), created once and reused for every case;
 * with --resident on a cl_context of attn-bench's own (resident.c).
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const NAMES[IMPL_COUNT] = {
    "native",     "cl-unfused", "cl-fused",    "cl-decode",   "cl-q2", "cl-q4",
    "cl-2dev",    "cl-auto",    "clblast",     "ggml",        "numpy", "torch",
    "torch-cuda", "openvino",   "onnxruntime", "cl:<variant>"};

const char *impl_name(impl_id id)
{
    return id < IMPL_COUNT ? NAMES[id] : "?";
}

int impls_add_kernel(const char *name, options *o)
{
    if (strcmp(name, "all") == 0) {
        const char *k;
        for (int i = 0; (k = attn_kernel_name(i)) != NULL; i++)
            if (impls_add_kernel(k, o) != 0)
                return -1;
        return 0;
    }
    int known = 0;
    const char *k;
    for (int i = 0; (k = attn_kernel_name(i)) != NULL; i++)
        known |= strcmp(k, name) == 0;
    if (!known && !attn_kernel_name(0)) {
        fprintf(stderr,
                "attn-bench: no kernel variant '%s': this libattn has no "
                "OpenCL kernel variants (built without OpenCL)\n",
                name);
        return -1;
    }
    if (!known) {
        fprintf(stderr,
                "attn-bench: unknown kernel variant '%s' (known:", name);
        for (int i = 0; (k = attn_kernel_name(i)) != NULL; i++)
            fprintf(stderr, " %s", k);
        fprintf(stderr, ")\n");
        return -1;
    }
    for (int i = 0; i < o->n_kernels; i++)
        if (strcmp(o->kernels[i], name) == 0)
            return 0; /* named twice: one impl */
    if (o->n_kernels == MAX_KERNELS) {
        fprintf(stderr, "attn-bench: more than %d kernel variants\n",
                MAX_KERNELS);
        return -1;
    }
    util_scopy(o->kernels[o->n_kernels++], sizeof o->kernels[0], name);
    return 0;
}

int impls_parse(const char *list, options *o)
{
    char buf[512];
    if (strlen(list) >= sizeof buf)
        return -1;
    strcpy(buf, list);
    unsigned m = 1u << IMPL_NATIVE;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        if (strcmp(t, "all") == 0) {
            m |= ((1u << IMPL_COUNT) - 1) & ~(1u << IMPL_CL_KERNEL);
            continue;
        }
        if (strncmp(t, "cl:", 3) == 0) {
            if (impls_add_kernel(t + 3, o) != 0)
                return -1;
            continue;
        }
        int found = 0;
        for (int i = 0; i < IMPL_COUNT; i++)
            if (i != IMPL_CL_KERNEL && strcmp(t, NAMES[i]) == 0) {
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
    o->impls = m;
    return 0;
}

int impls_is_cl(impl_id id)
{
    return (id >= IMPL_CL_UNFUSED && id <= IMPL_CL_AUTO) ||
           id == IMPL_CL_KERNEL;
}

void impls_attn_options(const options *opt, impl_id id, const char *kernel,
                        attn_options *ao)
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
    case IMPL_CL_AUTO:
        ao->device = opt->device;
        ao->path = ATTN_PATH_AUTO;
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
    case IMPL_CL_KERNEL:
        ao->device = opt->device;
        ao->path = ATTN_PATH_AUTO;
        ao->kernel = kernel;
        break;
    default:
        ao->device = opt->device;
        ao->path = ATTN_PATH_FUSED;
        break;
    }
}

static const char *path_name(attn_path p)
{
    return p == ATTN_PATH_FUSED     ? "FUSED"
           : p == ATTN_PATH_UNFUSED ? "UNFUSED"
                                    : "AUTO";
}

/* Creates one impl's context (host pointers or resident); 0, or -1 with
 * why. */
static int open_one(const options *opt, cl_impls *ci, impl_id id,
                    const char *kernel, const char *label, attn_context **ctx,
                    char *why, size_t why_len, char *desc, size_t desc_len)
{
    attn_options ao;
    impls_attn_options(opt, id, kernel, &ao);
    attn_status st;
    if (ci->res) {
        st = resident_context(ci->res, &ao, ctx);
        if (st != ATTN_OK) {
            snprintf(why, why_len,
                     "skipped: attn_context_create_cl(%.100s): %s: %.300s",
                     resident_device(ci->res), attn_status_string(st),
                     attn_last_error());
            *ctx = NULL;
            return -1;
        }
    } else {
        st = attn_context_create(&ao, ctx);
        if (st != ATTN_OK) {
            snprintf(why, why_len,
                     "skipped: attn_context_create(device=%s): %s: %.300s",
                     ao.device, attn_status_string(st), attn_last_error());
            *ctx = NULL;
            return -1;
        }
    }
    attn_device_info di = ATTN_DEVICE_INFO_INIT;
    attn_context_device(*ctx, &di);
    snprintf(desc, desc_len, "%s: device=%s -> '%.60s'%s, %d queue%s, %s%s%s",
             label, ci->res ? "resident" : ao.device, di.name,
             id == IMPL_CL_2DEV ? " and the other devices" : "", ao.queues,
             ao.queues == 1 ? "" : "s", kernel ? "kernel " : "path ",
             kernel ? kernel : path_name(ao.path),
             ci->res ? ", device buffers, event timing" : "");
    return 0;
}

void impls_open(const options *opt, cl_impls *ci)
{
    memset(ci, 0, sizeof *ci);
    int any_cl = 0;
    for (int i = 0; i < IMPL_COUNT; i++)
        any_cl |= impls_is_cl((impl_id)i) && opt_has(opt, (impl_id)i);
    if (!any_cl)
        return;
    size_t n_dev = 0;
    attn_status ds = attn_devices(NULL, 0, &n_dev);
    attn_device_info *devs = NULL;
    if (ds == ATTN_OK && n_dev > 0) {
        devs = calloc(n_dev, sizeof *devs);
        /* attn_devices walks the array by devs[0].struct_size. */
        if (devs)
            attn_device_info_init(&devs[0]);
        if (devs && attn_devices(devs, n_dev, &n_dev) != ATTN_OK)
            n_dev = 0;
    }
    size_t n_usable = 0;
    for (size_t i = 0; devs && i < n_dev; i++)
        n_usable += devs[i].usable != 0;
    free(devs);
    if (n_dev > 0 && opt->resident) {
        char w[400];
        if (resident_open(opt->device, &ci->res, w, sizeof w) != 0)
            snprintf(ci->res_why, sizeof ci->res_why, "skipped: --resident: %s",
                     w);
    }
    for (int i = 0; i < IMPL_COUNT; i++) {
        impl_id id = (impl_id)i;
        if (!impls_is_cl(id) || id == IMPL_CL_KERNEL || !opt_has(opt, id))
            continue;
        if (n_dev == 0) {
            snprintf(ci->why[i], sizeof ci->why[i],
                     "skipped: no OpenCL device (attn_devices found none)");
            continue;
        }
        if (opt->resident && !ci->res) {
            util_scopy(ci->why[i], sizeof ci->why[i], ci->res_why);
            continue;
        }
        if (opt->resident &&
            (id == IMPL_CL_Q2 || id == IMPL_CL_Q4 || id == IMPL_CL_2DEV)) {
            snprintf(ci->why[i], sizeof ci->why[i],
                     "skipped: --resident runs every call on one queue of "
                     "one device");
            continue;
        }
        if (id == IMPL_CL_2DEV && n_usable < 2) {
            snprintf(ci->why[i], sizeof ci->why[i],
                     "skipped: %zu usable OpenCL device%s, needs 2 (with PoCL: "
                     "POCL_DEVICES=\"pthread pthread\")",
                     n_usable, n_usable == 1 ? "" : "s");
            continue;
        }
        open_one(opt, ci, id, NULL, NAMES[i], &ci->ctx[i], ci->why[i],
                 sizeof ci->why[i], ci->desc[i], sizeof ci->desc[i]);
    }
    for (int j = 0; j < opt->n_kernels; j++) {
        char label[48];
        snprintf(label, sizeof label, "cl:%s", opt->kernels[j]);
        if (n_dev == 0) {
            snprintf(ci->kwhy[j], sizeof ci->kwhy[j],
                     "skipped: no OpenCL device (attn_devices found none)");
            continue;
        }
        if (opt->resident && !ci->res) {
            util_scopy(ci->kwhy[j], sizeof ci->kwhy[j], ci->res_why);
            continue;
        }
        open_one(opt, ci, IMPL_CL_KERNEL, opt->kernels[j], label, &ci->kctx[j],
                 ci->kwhy[j], sizeof ci->kwhy[j], ci->kdesc[j],
                 sizeof ci->kdesc[j]);
    }
}

void impls_close(cl_impls *ci)
{
    for (int i = 0; i < IMPL_COUNT; i++) {
        attn_context_destroy(ci->ctx[i]);
        ci->ctx[i] = NULL;
    }
    for (int j = 0; j < MAX_KERNELS; j++) {
        attn_context_destroy(ci->kctx[j]);
        ci->kctx[j] = NULL;
    }
    resident_close(ci->res);
    ci->res = NULL;
}

double impls_s_bytes(const shape *s)
{
    return (double)s->batch * s->heads * s->seq_q * s->seq_kv * sizeof(float);
}
