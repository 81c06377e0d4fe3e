/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Device selection: a device spec (options.device / ATTN_DEVICE) resolved
 * against discovered or synthetic device descriptions.  Pure: no OpenCL
 * call, no environment, no allocation, so tests can feed it any machine.
 */
#include <stdio.h>
#include <string.h>

#include "discovery.h"

#define SEL_MAX  (sizeof((attn_selection *)0)->index / sizeof(size_t))
#define SPEC_MAX 64 /* characters of a spec quoted in messages */

typedef enum item_type {
    ITEM_AUTO,
    ITEM_NATIVE,
    ITEM_ALL,
    ITEM_KIND,
    ITEM_INDEX,
    ITEM_NAME
} item_type;

/* One item of a comma list, pointing into the spec. */
typedef struct item {
    item_type type;
    const char *text;
    size_t len;
    attn_device_kind kind; /* ITEM_KIND */
    long platform, device; /* ITEM_INDEX */
} item;

const char *attn_cl_kind_name(attn_device_kind kind)
{
    switch (kind) {
    case ATTN_DEVICE_GPU:
        return "gpu";
    case ATTN_DEVICE_IGPU:
        return "igpu";
    case ATTN_DEVICE_FPGA:
        return "fpga";
    case ATTN_DEVICE_CPU_OPENCL:
        return "cpu";
    case ATTN_DEVICE_NATIVE:
        return "native";
    case ATTN_DEVICE_OTHER:
        break;
    }
    return "other";
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static int is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
           c == '\v';
}

/* The item text equals the keyword, ignoring case. */
static int keyword(const item *it, const char *kw)
{
    size_t i = 0;
    for (; i < it->len && kw[i]; i++)
        if (lower((unsigned char)it->text[i]) != kw[i])
            return 0;
    return i == it->len && kw[i] == '\0';
}

static int name_contains(const char *name, const char *needle, size_t n)
{
    for (; *name; name++) {
        size_t i = 0;
        while (i < n && name[i] &&
               lower((unsigned char)name[i]) == lower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return 0;
}

/* digits ':' digits, nothing else; out-of-range numbers stay valid syntax
 * and simply match no device. */
static int parse_index(item *it)
{
    long v[2] = {0, 0};
    int part = 0, digits = 0;
    for (size_t i = 0; i < it->len; i++) {
        char c = it->text[i];
        if (c >= '0' && c <= '9') {
            if (v[part] < 1000000)
                v[part] = v[part] * 10 + (c - '0');
            digits++;
        } else if (c == ':' && part == 0 && digits > 0) {
            part = 1;
            digits = 0;
        } else {
            return 0;
        }
    }
    if (part != 1 || digits == 0)
        return 0;
    it->platform = v[0];
    it->device = v[1];
    return 1;
}

static void classify_item(item *it)
{
    static const struct {
        const char *kw;
        item_type type;
        attn_device_kind kind;
    } words[] = {{"auto", ITEM_AUTO, ATTN_DEVICE_OTHER},
                 {"native", ITEM_NATIVE, ATTN_DEVICE_NATIVE},
                 {"all", ITEM_ALL, ATTN_DEVICE_OTHER},
                 {"gpu", ITEM_KIND, ATTN_DEVICE_GPU},
                 {"igpu", ITEM_KIND, ATTN_DEVICE_IGPU},
                 {"fpga", ITEM_KIND, ATTN_DEVICE_FPGA},
                 {"cpu", ITEM_KIND, ATTN_DEVICE_CPU_OPENCL}};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (keyword(it, words[i].kw)) {
            it->type = words[i].type;
            it->kind = words[i].kind;
            return;
        }
    }
    it->type = parse_index(it) ? ITEM_INDEX : ITEM_NAME;
}

/* Splits at the next comma starting from *p, trims spaces; 0 at the end. */
static int next_item(const char **p, item *it)
{
    const char *b = *p, *e;
    if (!b)
        return 0;
    e = strchr(b, ',');
    *p = e ? e + 1 : NULL;
    if (!e)
        e = b + strlen(b);
    while (b < e && is_space((unsigned char)*b))
        b++;
    while (e > b && is_space((unsigned char)e[-1]))
        e--;
    memset(it, 0, sizeof *it);
    it->text = b;
    it->len = (size_t)(e - b);
    if (it->len > 0)
        classify_item(it);
    return 1;
}

static int matches(const item *it, const attn_device_info *d)
{
    switch (it->type) {
    case ITEM_AUTO:
    case ITEM_ALL:
        return 1;
    case ITEM_KIND:
        /* "gpu" means any GPU, discrete ones first by rank. */
        return d->kind == it->kind ||
               (it->kind == ATTN_DEVICE_GPU && d->kind == ATTN_DEVICE_IGPU);
    case ITEM_INDEX:
        return d->platform_index == it->platform &&
               d->device_index == it->device;
    case ITEM_NAME:
        return name_contains(d->name, it->text, it->len);
    case ITEM_NATIVE:
        break;
    }
    return 0;
}

/* 1 when a ranks before b (index ia, ib): higher rank, then earlier. */
static int before(const attn_device_info *devs, size_t ia, size_t ib)
{
    if (devs[ia].rank != devs[ib].rank)
        return devs[ia].rank > devs[ib].rank;
    return ia < ib;
}

/* The best-ranked device matching it (usable ones only when usable is set)
 * not already in sel; n when none. */
static size_t best(const attn_device_info *devs, size_t n, const item *it,
                   int usable, const attn_selection *sel)
{
    size_t found = n;
    for (size_t i = 0; i < n; i++) {
        int taken = 0;
        if (!matches(it, &devs[i]) || (usable && !devs[i].usable))
            continue;
        for (size_t k = 0; sel && k < sel->count; k++)
            taken |= sel->index[k] == i;
        if (!taken && (found == n || before(devs, i, found)))
            found = i;
    }
    return found;
}

static void add(attn_selection *sel, size_t i)
{
    for (size_t k = 0; k < sel->count; k++)
        if (sel->index[k] == i)
            return;
    if (sel->count < SEL_MAX)
        sel->index[sel->count++] = i;
}

/* How messages name the failing item: the spec alone when it is one item,
 * else the spec and the item. */
static void name_item(char *buf, size_t cap, const char *spec, const item *it)
{
    int len = (int)(it->len < SPEC_MAX ? it->len : SPEC_MAX);
    if (strchr(spec, ','))
        snprintf(buf, cap, "device \"%.*s\": \"%.*s\"", SPEC_MAX, spec, len,
                 it->text);
    else
        snprintf(buf, cap, "device \"%.*s\"", len, it->text);
}

/* The message for a spec that names nothing: every device as "P:D kind
 * name", then native.  Truncated with "..." when it does not fit. */
static attn_status no_match(const attn_device_info *devs, size_t n,
                            const char *spec, const item *it, attn_err *err)
{
    char list[ATTN_MSG_MAX], what[2 * SPEC_MAX + 32];
    size_t len = 0;
    int w;
    list[0] = '\0';
    for (size_t i = 0; i < n && len + 1 < sizeof list; i++) {
        w = snprintf(list + len, sizeof list - len, "%d:%d %s %.64s, ",
                     devs[i].platform_index, devs[i].device_index,
                     attn_cl_kind_name(devs[i].kind), devs[i].name);
        len = w < 0 ? len : len + (size_t)w;
    }
    if (len + 1 < sizeof list)
        snprintf(list + len, sizeof list - len, "native");
    if (len + 1 >= sizeof list)
        memcpy(list + sizeof list - 4, "...", 4);
    name_item(what, sizeof what, spec, it);
    return attn_fail(err, ATTN_ERR_NO_DEVICE, "%s %s; devices: %s", what,
                     it->type == ITEM_ALL ? "finds no usable OpenCL device"
                                          : "matches no device",
                     list);
}

static attn_status refused(const attn_device_info *d, const char *spec,
                           const item *it, attn_err *err)
{
    char what[2 * SPEC_MAX + 32];
    name_item(what, sizeof what, spec, it);
    return attn_fail(err, ATTN_ERR_NO_DEVICE,
                     "%s matches only unusable devices; %d:%d %.64s is not "
                     "usable: %s",
                     what, d->platform_index, d->device_index, d->name,
                     d->reason);
}

/* Resolves "auto": the best usable device, or native (*native set) when
 * there is none or the native backend beats the OpenCL CPU device. */
static size_t resolve_auto(const attn_device_info *devs, size_t n,
                           int native_beats_cpu, char *why, size_t cap)
{
    static const item any = {ITEM_AUTO, "auto", 4, ATTN_DEVICE_OTHER, 0, 0};
    size_t b = best(devs, n, &any, 1, NULL);
    if (b == n) {
        if (n == 0)
            snprintf(why, cap, "auto: no usable OpenCL device");
        else
            snprintf(why, cap,
                     "auto: no usable OpenCL device (%zu found, all "
                     "refused)",
                     n);
        return n;
    }
    if (native_beats_cpu && devs[b].kind == ATTN_DEVICE_CPU_OPENCL) {
        snprintf(why, cap,
                 "auto: the native backend beats the OpenCL CPU device "
                 "here");
        return n;
    }
    snprintf(why, cap, "auto: best-ranked usable device (%s, %u compute units)",
             attn_cl_kind_name(devs[b].kind), devs[b].compute_units);
    return b;
}

/* Adds the devices of one item to sel, or fails naming what is wrong. */
static attn_status resolve_item(const attn_device_info *devs, size_t n,
                                const char *spec, const item *it,
                                int native_beats_cpu, attn_selection *sel,
                                char *why, size_t cap, attn_err *err)
{
    size_t b;
    if (it->type == ITEM_AUTO) {
        b = resolve_auto(devs, n, native_beats_cpu, why, cap);
        if (b < n)
            add(sel, b);
        return ATTN_OK;
    }
    if (it->type == ITEM_ALL) {
        size_t before_count = sel->count;
        while ((b = best(devs, n, it, 1, sel)) < n && sel->count < SEL_MAX)
            add(sel, b);
        if (best(devs, n, it, 1, NULL) == n)
            return no_match(devs, n, spec, it, err);
        snprintf(why, cap, "all: %zu usable device%s, best first",
                 sel->count - before_count,
                 sel->count - before_count == 1 ? "" : "s");
        return ATTN_OK;
    }
    b = best(devs, n, it, 1, NULL);
    if (b == n) {
        size_t u = best(devs, n, it, 0, NULL);
        return u < n ? refused(&devs[u], spec, it, err)
                     : no_match(devs, n, spec, it, err);
    }
    add(sel, b);
    if (it->type == ITEM_INDEX)
        snprintf(why, cap, "%ld:%ld: asked for by index (%s, %u compute units)",
                 it->platform, it->device, attn_cl_kind_name(devs[b].kind),
                 devs[b].compute_units);
    else if (it->type == ITEM_KIND)
        snprintf(why, cap,
                 "%s: best-ranked usable %s device (%s, %u compute "
                 "units)",
                 attn_cl_kind_name(it->kind), attn_cl_kind_name(it->kind),
                 attn_cl_kind_name(devs[b].kind), devs[b].compute_units);
    else
        snprintf(why, cap,
                 "\"%.*s\": best-ranked usable device with that in its name "
                 "(%s, %u compute units)",
                 (int)(it->len < SPEC_MAX ? it->len : SPEC_MAX), it->text,
                 attn_cl_kind_name(devs[b].kind), devs[b].compute_units);
    return ATTN_OK;
}

int attn_cl_spec_native(const char *spec)
{
    const char *p = spec;
    item it;
    size_t natives = 0;
    if (!spec)
        return 0;
    while (next_item(&p, &it)) {
        if (it.len == 0)
            continue;
        if (it.type != ITEM_NATIVE)
            return 0;
        natives++;
    }
    return natives > 0;
}

attn_status attn_cl_select(const attn_device_info *devs, size_t n,
                           const char *spec, int native_beats_cpu,
                           attn_selection *sel, attn_err *err)
{
    const char *p;
    item it;
    size_t items = 0, natives = 0;
    char why[sizeof sel->why] = "";
    attn_status s;

    if (!sel)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "attn_cl_select: sel is NULL");
    memset(sel, 0, sizeof *sel);
    if (!devs && n > 0)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "attn_cl_select: devs is NULL with n = %zu", n);
    if (!spec)
        spec = "auto";

    /* First pass: "native" must stand alone, so check before resolving. */
    for (p = spec; next_item(&p, &it);) {
        if (it.len == 0)
            continue;
        items++;
        natives += it.type == ITEM_NATIVE;
    }
    if (natives > 0 && natives < items)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "device \"%.*s\": \"native\" cannot be combined "
                         "with OpenCL devices",
                         SPEC_MAX, spec);
    if (items == 0 && spec[0])
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "device \"%.*s\" is an empty list: it names no "
                         "device (use \"auto\", \"native\" or a device)",
                         SPEC_MAX, spec);
    if (natives > 0) {
        sel->native = 1;
        snprintf(sel->why, sizeof sel->why,
                 "native: the built-in C backend was asked for");
        return ATTN_OK;
    }
    if (items == 0) {
        size_t b =
            resolve_auto(devs, n, native_beats_cpu, sel->why, sizeof sel->why);
        sel->native = b == n;
        if (b < n)
            sel->index[sel->count++] = b;
        return ATTN_OK;
    }

    for (p = spec; next_item(&p, &it);) {
        if (it.len == 0)
            continue;
        s = resolve_item(devs, n, spec, &it, native_beats_cpu, sel, why,
                         sizeof why, err);
        if (s) {
            memset(sel, 0, sizeof *sel);
            return s;
        }
    }
    if (sel->count == 0) {
        /* Only "auto" items, and auto chose native. */
        sel->native = 1;
        snprintf(sel->why, sizeof sel->why, "%s", why);
    } else if (items == 1) {
        snprintf(sel->why, sizeof sel->why, "%s", why);
    } else {
        snprintf(sel->why, sizeof sel->why, "%zu device%s from \"%.*s\"",
                 sel->count, sel->count == 1 ? "" : "s", SPEC_MAX, spec);
    }
    return ATTN_OK;
}
