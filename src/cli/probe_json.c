/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-probe --json: one JSON object with every device, the native
 * backend and the selection; strings always valid UTF-8.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/probe.h"

/* Length of the valid UTF-8 sequence at p, 0 when it is not one. */
static size_t utf8_len(const unsigned char *p)
{
    unsigned c = p[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4;
    else
        return 0;
    /* No overlong forms, no surrogates, nothing above U+10FFFF. */
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return len;
}

/* A JSON string; bytes that are not UTF-8 (a driver's Latin-1, a name cut
 * by truncation) become U+FFFD so the output always parses. */
static void json_string(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    putchar('"');
    while (*p) {
        size_t len;
        if (*p == '"' || *p == '\\') {
            printf("\\%c", *p++);
        } else if (*p == '\n') {
            printf("\\n");
            p++;
        } else if (*p == '\t') {
            printf("\\t");
            p++;
        } else if (*p < 0x20) {
            printf("\\u%04x", (unsigned)*p++);
        } else if (*p < 0x80) {
            putchar(*p++);
        } else if ((len = utf8_len(p)) > 0) {
            fwrite(p, 1, len, stdout);
            p += len;
        } else {
            printf("\\ufffd");
            p++;
        }
    }
    putchar('"');
}

static const char *bool_str(int v)
{
    return v ? "true" : "false";
}

/* ", "extensions": [...]" (null when the query failed). */
static void json_extensions(const attn_tool_device *d)
{
    char *ext = NULL;
    const char *p;
    int first = 1;
    printf(", \"extensions\": ");
    if (attn_tool_device_extensions(d, &ext) != ATTN_OK) {
        printf("null");
        return;
    }
    printf("[");
    for (p = ext; *p;) {
        size_t len = strcspn(p, " ");
        if (len) {
            char word[256];
            snprintf(word, sizeof word, "%.*s", (int)len, p);
            printf("%s", first ? "" : ", ");
            json_string(word);
            first = 0;
        }
        p += len + (p[len] == ' ');
    }
    printf("]");
    free(ext);
}

static void json_device(const attn_tool_device *d, int verbose)
{
    static const struct {
        unsigned bit;
        const char *name;
    } qnames[] = {{ATTN_TOOL_Q_NAME, "name"},
                  {ATTN_TOOL_Q_VENDOR, "vendor"},
                  {ATTN_TOOL_Q_PLATFORM, "platform"},
                  {ATTN_TOOL_Q_DRIVER, "driver_version"},
                  {ATTN_TOOL_Q_CLC_VERSION, "opencl_c_version"},
                  {ATTN_TOOL_Q_COMPUTE_UNITS, "compute_units"},
                  {ATTN_TOOL_Q_CLOCK, "max_clock_mhz"},
                  {ATTN_TOOL_Q_GLOBAL_MEM, "global_mem_bytes"},
                  {ATTN_TOOL_Q_LOCAL_MEM, "local_mem_bytes"},
                  {ATTN_TOOL_Q_MAX_ALLOC, "max_alloc_bytes"},
                  {ATTN_TOOL_Q_WORK_GROUP, "max_work_group_size"},
                  {ATTN_TOOL_Q_FP16, "fp16"},
                  {ATTN_TOOL_Q_FP64, "fp64"},
                  {ATTN_TOOL_Q_UNIFIED, "unified_memory"},
                  {ATTN_TOOL_Q_TYPE, "kind"},
                  {ATTN_TOOL_Q_VERSION, "opencl_version"}};
    const attn_device_info *i = &d->info;
    int first = 1;
    printf("{\"platform\": ");
    json_string(i->platform);
    printf(", \"platform_index\": %d, \"device_index\": %d, \"name\": ",
           i->platform_index, i->device_index);
    json_string(i->name);
    printf(", \"vendor\": ");
    json_string(i->vendor);
    printf(", \"driver_version\": ");
    json_string(i->driver_version);
    printf(", \"opencl_version\": ");
    json_string(i->opencl_version);
    printf(", \"opencl_c_version\": ");
    json_string(i->opencl_c_version);
    printf(", \"kind\": \"%s\", \"compute_units\": %u, \"max_clock_mhz\": %u, "
           "\"global_mem_bytes\": %llu, \"local_mem_bytes\": %llu, "
           "\"max_alloc_bytes\": %llu, \"max_work_group_size\": %zu, "
           "\"fp16\": %s, \"fp64\": %s, \"unified_memory\": %s, "
           "\"has_binary\": %s, \"usable\": %s, \"reason\": ",
           attn_tool_kind_name(i->kind), i->compute_units, i->max_clock_mhz,
           (unsigned long long)i->global_mem_bytes,
           (unsigned long long)i->local_mem_bytes,
           (unsigned long long)i->max_alloc_bytes, i->max_work_group_size,
           bool_str(i->fp16), bool_str(i->fp64), bool_str(i->unified_memory),
           bool_str(d->has_binary), bool_str(i->usable));
    json_string(i->reason);
    printf(", \"rank\": %.3f, \"failed_queries\": [", i->rank);
    for (size_t k = 0; k < sizeof qnames / sizeof qnames[0]; k++) {
        if (d->query_failed & qnames[k].bit) {
            printf("%s\"%s\"", first ? "" : ", ", qnames[k].name);
            first = 0;
        }
    }
    printf("]");
    if (verbose)
        json_extensions(d);
    printf("}");
}

static void json_selected(const attn_tool_device *devs, size_t k,
                          const attn_tool_selection *sel)
{
    if (sel->native) {
        printf("{\"kind\": \"native\", \"name\": \"native\", "
               "\"platform_index\": -1, \"device_index\": -1}");
        return;
    }
    const attn_device_info *d = &devs[sel->index[k]].info;
    printf("{\"kind\": \"%s\", \"name\": ", attn_tool_kind_name(d->kind));
    json_string(d->name);
    printf(", \"platform_index\": %d, \"device_index\": %d}", d->platform_index,
           d->device_index);
}

void probe_json(const attn_tool_device *devs, size_t n, const char *spec,
                const attn_tool_selection *sel, const char *error,
                const probe_native *native, int verbose)
{
    printf("{\"version\": ");
    json_string(attn_version());
    printf(", \"opencl\": %s, \"icd_files\": %d, \"native\": {\"isa\": ",
           bool_str(n > 0), probe_icd_files(NULL, 0));
    json_string(native->isa);
    printf(", \"threads\": %d}, \"devices\": [", native->threads);
    for (size_t i = 0; i < n; i++) {
        printf("%s\n  ", i ? "," : "");
        json_device(&devs[i], verbose);
    }
    printf("],\n \"spec\": ");
    json_string(spec);
    if (error) {
        printf(", \"selected\": null, \"selected_devices\": [], \"why\": "
               "\"\", \"error\": ");
        json_string(error);
        printf("}\n");
        return;
    }
    printf(", \"selected\": ");
    json_selected(devs, 0, sel);
    printf(", \"selected_devices\": [");
    for (size_t k = 0; k < (sel->native ? 1 : sel->count); k++) {
        printf("%s", k ? ", " : "");
        json_selected(devs, k, sel);
    }
    printf("], \"why\": ");
    json_string(sel->why);
    printf("}\n");
}
