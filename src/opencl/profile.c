/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Platform profiles: parsing, matching and layering of the platforms/ files
 * (format and rules in profile.h and platforms/README.md).
 *
 * A text is parsed once to check it (errors reported, the file dropped
 * when there is any) and then once per level to apply the sections of that
 * level that match the device: texts are a few KiB, so parsing again costs
 * less than keeping a parsed form around, and nothing is allocated.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "opencl/profile.h"
#include "opencl/variant.h"

#define LINE_CAP    1024 /* bytes of a line, with the NUL */
#define PATTERN_CAP 128  /* bytes of a header pattern, with the NUL */
#define MAX_REPORTS 8    /* errors reported per file; all are counted */

enum { LVL_DEFAULT, LVL_VENDOR, LVL_ARCH, LVL_DEVICE, LVL_COUNT };

/* Header conditions and the level each gives a section. */
enum { C_VENDOR, C_PLATFORM, C_KIND, C_DRIVER, C_ARCH, C_DEVICE, C_COUNT };
static const struct {
    const char *word;
    int level;
} CONDS[C_COUNT] = {{"vendor", LVL_VENDOR}, {"platform", LVL_VENDOR},
                    {"kind", LVL_VENDOR},   {"driver", LVL_VENDOR},
                    {"arch", LVL_ARCH},     {"device", LVL_DEVICE}};

typedef enum val_type { V_INT, V_PATH, V_STR, V_ORDER, V_STAGING } val_type;

typedef struct key_spec {
    const char *key;
    size_t off; /* of the int field, or of the text for V_STR / V_ORDER */
    val_type type;
    int min, max;
} key_spec;

static const key_spec KEYS[] = {
    {"queues", offsetof(attn_profile, queues), V_INT, 1, 8},
    {"path", offsetof(attn_profile, path), V_PATH, 0, 2},
    {"path.order", offsetof(attn_profile, order), V_ORDER, 0, 0},
    {"native_beats_opencl", offsetof(attn_profile, native_beats_opencl), V_INT,
     0, 1},
    {"weight", offsetof(attn_profile, weight), V_INT, 1, 1000000},
    {"staging", offsetof(attn_profile, staging), V_STAGING, 0, 1},
    {"build_options", offsetof(attn_profile, build_options), V_STR, 0, 0}};
#define N_KEYS (sizeof KEYS / sizeof KEYS[0])

/* Earlier names of kernel parameters, still read. */
static const char *const ALIASES[][2] = {
    {"fused_min_seq", "fused.min_seq_kv"},
    {"decode_max_seq_q", "decode.max_seq_q"}};

static const char *const PATH_NAME[] = {"auto", "fused", "unfused"};
static const char *const STAGING_NAME[] = {"direct", "pinned"};
/* PoCL's CPU drivers prefix the LLVM CPU name with the driver's. */
static const char *const POCL_PREFIX[] = {"pthread-", "cpu-minimal-", "cpu-",
                                          "basic-", "tbb-"};

/* ---- text --------------------------------------------------------------- */

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static int is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v' ||
           c == '\n';
}

static int starts_ci(const char *s, const char *prefix)
{
    for (; *prefix; s++, prefix++)
        if (lower((unsigned char)*s) != *prefix)
            return 0;
    return 1;
}

static int starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Lower case, trademark marks dropped, white space runs made one space and
 * trimmed; strip_pocl drops a PoCL driver prefix of a device name. */
static void normalise(const char *in, char *out, size_t cap, int strip_pocl)
{
    static const char *const MARKS[] = {"(r)", "(tm)", "(c)"};
    size_t o = 0;
    int space = 0;
    while (*in) {
        size_t skip = 0;
        for (size_t m = 0; m < 3 && !skip; m++)
            if (starts_ci(in, MARKS[m]))
                skip = strlen(MARKS[m]);
        if (skip || is_space((unsigned char)*in)) {
            space |= !skip;
            in += skip ? skip : 1;
            continue;
        }
        if (space && o > 0 && o + 1 < cap)
            out[o++] = ' ';
        space = 0;
        if (o + 1 < cap)
            out[o++] = (char)lower((unsigned char)*in);
        in++;
    }
    if (cap > 0)
        out[o < cap ? o : cap - 1] = '\0';
    for (size_t i = 0; strip_pocl && i < sizeof POCL_PREFIX / sizeof(char *);
         i++)
        if (starts(out, POCL_PREFIX[i])) {
            size_t n = strlen(POCL_PREFIX[i]);
            memmove(out, out + n, strlen(out + n) + 1);
            break;
        }
}

/* ---- devices ------------------------------------------------------------ */

typedef struct dev_norm {
    char name[256], vendor[256], platform[256], driver[128], clc[64];
    attn_device_kind kind;
} dev_norm;

static void dev_normalise(const attn_device_info *d, dev_norm *n)
{
    normalise(d->name, n->name, sizeof n->name, 1);
    normalise(d->vendor, n->vendor, sizeof n->vendor, 0);
    normalise(d->platform, n->platform, sizeof n->platform, 0);
    normalise(d->driver_version, n->driver, sizeof n->driver, 0);
    normalise(d->opencl_c_version, n->clc, sizeof n->clc, 0);
    n->kind = d->kind;
}

/* The kind a kind pattern names, or -1.  "gpu" also takes integrated. */
static int kind_of(const char *pat, attn_device_kind k)
{
    static const struct {
        const char *word;
        attn_device_kind kind;
    } K[] = {{"gpu", ATTN_DEVICE_GPU},
             {"igpu", ATTN_DEVICE_IGPU},
             {"fpga", ATTN_DEVICE_FPGA},
             {"cpu", ATTN_DEVICE_CPU_OPENCL},
             {"other", ATTN_DEVICE_OTHER}};
    for (size_t i = 0; i < sizeof K / sizeof K[0]; i++)
        if (!strcmp(pat, K[i].word))
            return k == K[i].kind ||
                   (K[i].kind == ATTN_DEVICE_GPU && k == ATTN_DEVICE_IGPU);
    return -1;
}

static int cond_holds(const dev_norm *d, int c, const char *pat)
{
    switch (c) {
    case C_VENDOR:
        return strstr(d->vendor, pat) != NULL;
    case C_PLATFORM:
        return strstr(d->platform, pat) != NULL;
    case C_KIND:
        return kind_of(pat, d->kind) == 1;
    case C_DRIVER:
        return strstr(d->driver, pat) != NULL;
    case C_ARCH:
        return strstr(d->name, pat) || strstr(d->driver, pat) ||
               strstr(d->clc, pat);
    default:
        return strstr(d->name, pat) != NULL;
    }
}

/* ---- parsing ------------------------------------------------------------ */

typedef struct parser {
    const attn_profile_text *t;
    attn_profile_report_fn report; /* NULL: quiet */
    void *user;
    int errors;
    /* Applying (dev not NULL): sections of `level` that match go to out. */
    const dev_norm *dev;
    int level;
    attn_profile *out;
    int in_section, active;
} parser;

static void say(attn_profile_report_fn report, void *user, const char *fmt, ...)
    ATTN_PRINTF(3, 4);
static void say(attn_profile_report_fn report, void *user, const char *fmt, ...)
{
    char msg[ATTN_MSG_MAX];
    va_list ap;
    if (!report)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    report(user, msg);
}

/* Counts and reports an error; returns -1 for `return perr(...)`. */
static int perr(parser *p, unsigned line, const char *fmt, ...)
    ATTN_PRINTF(3, 4);
static int perr(parser *p, unsigned line, const char *fmt, ...)
{
    char msg[ATTN_MSG_MAX - 64];
    va_list ap;
    if (++p->errors > MAX_REPORTS)
        return -1;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    say(p->report, p->user, "%s:%u: %s", p->t->name, line, msg);
    return -1;
}

static char *trim(char *s)
{
    size_t n;
    while (is_space((unsigned char)*s))
        s++;
    n = strlen(s);
    while (n > 0 && is_space((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static void add_source(attn_profile *out, const char *name, unsigned line)
{
    char piece[256];
    size_t used = strlen(out->sources), room = sizeof out->sources - 4;
    int n =
        snprintf(piece, sizeof piece, "%s%s:%u", used ? "; " : "", name, line);
    if (n < 0 || used >= room || (size_t)n >= sizeof piece ||
        used + (size_t)n >= room) {
        if (used < 3 || strcmp(out->sources + used - 3, "..."))
            memcpy(out->sources + used, "...", 4);
        return;
    }
    memcpy(out->sources + used, piece, (size_t)n + 1);
}

/* "[default]" or "[word "pattern" word "pattern" ...]". */
static int header(parser *p, char *s, unsigned line)
{
    char pat[C_COUNT][PATTERN_CAP];
    int has[C_COUNT] = {0}, level = LVL_DEFAULT, n_cond = 0;
    size_t len = strlen(s);
    p->in_section = 1;
    p->active = 0;
    if (s[len - 1] != ']')
        return perr(p, line, "section header without a closing ']'");
    s[len - 1] = '\0';
    s = trim(s + 1);
    if (!strcmp(s, "default"))
        goto done;
    while (*s) {
        char *w = s, *q;
        int c = -1;
        while (*s >= 'a' && *s <= 'z')
            s++;
        for (int i = 0; i < C_COUNT; i++)
            if ((size_t)(s - w) == strlen(CONDS[i].word) &&
                !strncmp(w, CONDS[i].word, (size_t)(s - w)))
                c = i;
        if (c < 0 && !strncmp(w, "default", 7) && (size_t)(s - w) == 7)
            return perr(p, line, "[default] takes no pattern");
        if (c < 0) {
            while (*s && !is_space((unsigned char)*s) && *s != '"')
                s++;
            *s = '\0';
            return perr(p, line,
                        "unknown section kind '%s' (default, vendor, "
                        "platform, kind, driver, arch, device)",
                        w);
        }
        if (has[c])
            return perr(p, line, "'%s' given twice", CONDS[c].word);
        while (is_space((unsigned char)*s))
            s++;
        if (*s != '"' || !(q = strchr(s + 1, '"')))
            return perr(p, line, "'%s' needs a \"quoted\" pattern",
                        CONDS[c].word);
        *q = '\0';
        normalise(s + 1, pat[c], sizeof pat[c], 0);
        if (!pat[c][0] || q - s > PATTERN_CAP)
            return perr(p, line, "'%s' pattern empty or over %d bytes",
                        CONDS[c].word, PATTERN_CAP - 1);
        if (c == C_KIND && kind_of(pat[c], ATTN_DEVICE_OTHER) < 0)
            return perr(p, line,
                        "unknown kind \"%s\" (gpu, igpu, fpga, "
                        "cpu, other)",
                        pat[c]);
        has[c] = 1;
        n_cond++;
        if (CONDS[c].level > level)
            level = CONDS[c].level;
        s = q + 1;
        if (*s && !is_space((unsigned char)*s))
            return perr(p, line, "expected a space after \"%s\"", pat[c]);
        while (is_space((unsigned char)*s))
            s++;
    }
    if (!n_cond)
        return perr(p, line, "empty section header");
done:
    if (!p->dev || level != p->level)
        return 0;
    for (int c = 0; c < C_COUNT; c++)
        if (has[c] && !cond_holds(p->dev, c, pat[c]))
            return 0;
    p->active = 1;
    add_source(p->out, p->t->name, line);
    return 0;
}

static int parse_int(const char *v, int min, int max, int *out)
{
    char *end;
    long x;
    errno = 0;
    x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < min || x > max)
        return 0;
    *out = (int)x;
    return 1;
}

static void set_extra(parser *p, unsigned line, const char *key,
                      const char *value)
{
    attn_profile *o = p->out;
    size_t i = 0;
    while (i < o->n_extra && strcmp(o->extra[i].key, key))
        i++;
    if (i == ATTN_PROFILE_MAX_EXTRA) {
        say(p->report, p->user,
            "%s:%u: more than %d kernel and quirk. "
            "keys: '%s' not applied",
            p->t->name, line, ATTN_PROFILE_MAX_EXTRA, key);
        return;
    }
    if (i == o->n_extra)
        o->n_extra++;
    snprintf(o->extra[i].key, sizeof o->extra[i].key, "%s", key);
    snprintf(o->extra[i].value, sizeof o->extra[i].value, "%s", value);
}

/* Build options a profile may give: they trade precision or speed for the
 * same kernels (attn.h says what -cl-finite-math-only and
 * -cl-fast-relaxed-math do to non-finite inputs).  Anything else (-D, -I,
 * -cl-std, -x, ...) could change what the kernels compute, or where their
 * sources come from, and is dropped. */
static const char *const BUILD_OPTIONS[] = {"-cl-mad-enable",
                                            "-cl-no-signed-zeros",
                                            "-cl-unsafe-math-optimizations",
                                            "-cl-finite-math-only",
                                            "-cl-fast-relaxed-math",
                                            "-cl-denorms-are-zero",
                                            "-cl-nv-verbose"};
#define NV_MAXRREG "-cl-nv-maxrregcount="

int attn_profile_build_option_ok(const char *opt, size_t len)
{
    const size_t nv = sizeof NV_MAXRREG - 1;
    for (size_t i = 0; i < sizeof BUILD_OPTIONS / sizeof BUILD_OPTIONS[0]; i++)
        if (strlen(BUILD_OPTIONS[i]) == len &&
            !strncmp(opt, BUILD_OPTIONS[i], len))
            return 1;
    /* -cl-nv-maxrregcount=N, N in 1..999: a register budget. */
    if (len > nv && len <= nv + 3 && !strncmp(opt, NV_MAXRREG, nv) &&
        opt[nv] != '0') {
        for (size_t i = nv; i < len; i++)
            if (opt[i] < '0' || opt[i] > '9')
                return 0;
        return 1;
    }
    return 0;
}

/* The allowed options of value into out (as many bytes as value); each
 * refused one reported with file:line when checking (not when applying,
 * which parses the file again per level). */
static void filter_build_options(parser *p, const char *value, unsigned line,
                                 char *out)
{
    size_t used = 0;
    for (const char *w = value; *w;) {
        size_t n = 0;
        while (is_space((unsigned char)*w))
            w++;
        while (w[n] && !is_space((unsigned char)w[n]))
            n++;
        if (n == 0)
            break;
        if (attn_profile_build_option_ok(w, n)) {
            if (used)
                out[used++] = ' ';
            memcpy(out + used, w, n);
            used += n;
        } else if (!p->dev) {
            say(p->report, p->user,
                "%s:%u: build option '%.*s' is not allowed and is dropped "
                "(allowed: -cl-mad-enable, -cl-no-signed-zeros, "
                "-cl-unsafe-math-optimizations, -cl-finite-math-only, "
                "-cl-fast-relaxed-math, -cl-denorms-are-zero, "
                "-cl-nv-verbose, -cl-nv-maxrregcount=N)",
                p->t->name, line, n > 64 ? 64 : (int)n, w);
        }
        w += n;
    }
    out[used] = '\0';
}

/* path.order: kernel variant names, separated by spaces or commas, each
 * once.  0 (after reporting) when it is not. */
static int order_ok(parser *p, const char *value, unsigned line)
{
    char buf[ATTN_PROFILE_VALUE_MAX], *save = NULL;
    int seen[ATTN_CL_MAX_VARIANTS] = {0}, n = 0;
    snprintf(buf, sizeof buf, "%s", value);
    for (char *w = strtok_r(buf, " ,\t", &save); w;
         w = strtok_r(NULL, " ,\t", &save)) {
        const int v = attn_cl_variant_find(w);
        char names[256];
        if (v < 0 || v >= ATTN_CL_MAX_VARIANTS) {
            attn_cl_variant_names(names, sizeof names);
            perr(p, line, "path.order: '%s' is not a kernel variant (%s)", w,
                 names);
            return 0;
        }
        if (seen[v]++) {
            perr(p, line, "path.order names '%s' twice", w);
            return 0;
        }
        n++;
    }
    if (n == 0) {
        perr(p, line, "path.order names no kernel variant");
        return 0;
    }
    return 1;
}

/* A key that is not in KEYS: "<variant>.<parameter>", checked against the
 * variant's schema, or "quirk.<name>"; kept as text. */
static int other_key(parser *p, const char *key, const char *value,
                     unsigned line)
{
    const char *dot = strchr(key, '.');
    if (!dot || !dot[1])
        return perr(p, line, "unknown key '%s'", key);
    if (strlen(key) >= ATTN_PROFILE_KEY_MAX)
        return perr(p, line, "key '%s' over %d bytes", key,
                    ATTN_PROFILE_KEY_MAX - 1);
    if (strncmp(key, "quirk.", 6) != 0) {
        char name[ATTN_PROFILE_KEY_MAX];
        const attn_cl_variant *v;
        int vi, pi, x;
        snprintf(name, sizeof name, "%.*s", (int)(dot - key), key);
        if ((vi = attn_cl_variant_find(name)) < 0)
            return perr(p, line, "unknown key '%s'", key);
        v = attn_cl_variants[vi];
        if ((pi = attn_cl_param_find(v, dot + 1)) < 0) {
            char list[512];
            size_t used = 0;
            list[0] = '\0';
            for (int i = 0; i < v->n_params && used < sizeof list; i++)
                used +=
                    (size_t)snprintf(list + used, sizeof list - used, "%s%s",
                                     i ? ", " : "", v->params[i].name);
            return perr(p, line,
                        "kernel variant '%s' has no parameter '%s' (it has "
                        "%s)",
                        v->name, dot + 1, list);
        }
        if (!parse_int(value, v->params[pi].min, v->params[pi].max, &x) ||
            ((v->params[pi].flags & ATTN_CL_PARAM_POW2) && (x & (x - 1))))
            return perr(p, line,
                        "'%s' must be an integer in %d..%d%s, not '%s'", key,
                        v->params[pi].min, v->params[pi].max,
                        (v->params[pi].flags & ATTN_CL_PARAM_POW2)
                            ? " and a power of two"
                            : "",
                        value);
    }
    if (p->active)
        set_extra(p, line, key, value);
    return 0;
}

static int entry(parser *p, char *s, unsigned line)
{
    char *eq = strchr(s, '='), *key, *value;
    const key_spec *k = NULL;
    int x = 0;
    if (!eq)
        return perr(p, line, "expected 'key = value' or a [section]");
    *eq = '\0';
    key = trim(s);
    value = trim(eq + 1);
    if (!p->in_section)
        return perr(p, line, "'%s' outside a section", key);
    for (const char *c = key; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
              *c == '_' || *c == '.' || *c == '-'))
            return perr(p, line, "bad character in key '%s'", key);
    if (*value == '"') {
        size_t n = strlen(value);
        if (n < 2 || value[n - 1] != '"' || memchr(value + 1, '"', n - 2))
            return perr(p, line, "unbalanced quotes in the value of '%s'", key);
        value[n - 1] = '\0';
        value++;
    } else if (strchr(value, '"')) {
        return perr(p, line, "stray '\"' in the value of '%s'", key);
    }
    if (strlen(value) >= ATTN_PROFILE_VALUE_MAX)
        return perr(p, line, "value of '%s' over %d bytes", key,
                    ATTN_PROFILE_VALUE_MAX - 1);
    for (size_t i = 0; i < sizeof ALIASES / sizeof ALIASES[0]; i++)
        if (!strcmp(key, ALIASES[i][0]))
            key = (char *)ALIASES[i][1];
    for (size_t i = 0; i < N_KEYS && !k; i++)
        if (!strcmp(key, KEYS[i].key))
            k = &KEYS[i];
    if (!k)
        return other_key(p, key, value, line);
    switch (k->type) {
    case V_STR: {
        char kept[ATTN_PROFILE_VALUE_MAX];
        filter_build_options(p, value, line, kept);
        if (p->active) {
            memcpy((char *)p->out + k->off, kept, strlen(kept) + 1);
            p->out->build_options_set = 1;
        }
        return 0;
    }
    case V_ORDER:
        if (!order_ok(p, value, line))
            return 0;
        if (p->active)
            memcpy((char *)p->out + k->off, value, strlen(value) + 1);
        return 0;
    case V_PATH:
    case V_STAGING:
        x = -1;
        for (int i = 0; i < (k->type == V_PATH ? 3 : 2); i++)
            if (!strcmp(value,
                        k->type == V_PATH ? PATH_NAME[i] : STAGING_NAME[i]))
                x = i;
        if (x < 0)
            return perr(p, line, "'%s' must be %s", key,
                        k->type == V_PATH ? "auto, fused or unfused"
                                          : "direct or pinned");
        break;
    case V_INT:
        if (!parse_int(value, k->min, k->max, &x))
            return perr(p, line, "'%s' must be an integer in %d..%d, not '%s'",
                        key, k->min, k->max, value);
        break;
    }
    if (p->active)
        memcpy((char *)p->out + k->off, &x, sizeof x);
    return 0;
}

static int line_of(parser *p, const char *text, size_t n, unsigned line)
{
    char buf[LINE_CAP], *s;
    int quoted = 0;
    if (n >= LINE_CAP)
        return perr(p, line, "line longer than %d bytes", LINE_CAP - 1);
    if (memchr(text, '\0', n))
        return perr(p, line, "NUL byte");
    memcpy(buf, text, n);
    buf[n] = '\0';
    for (s = buf; *s; s++) {
        if (*s == '"')
            quoted = !quoted;
        else if (*s == '#' && !quoted) {
            *s = '\0';
            break;
        }
    }
    s = trim(buf);
    if (!*s)
        return 0;
    return *s == '[' ? header(p, s, line) : entry(p, s, line);
}

/* Parses p->t; returns its number of errors. */
static int parse(parser *p)
{
    const char *d = p->t->data;
    size_t len = p->t->len, pos = 0;
    unsigned line = 0;
    while (pos < len) {
        const char *nl = memchr(d + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - d) : len;
        line_of(p, d + pos, end - pos, ++line);
        pos = end + 1;
    }
    return p->errors;
}

int attn_profile_check(const attn_profile_text *text,
                       attn_profile_report_fn report, void *user)
{
    parser p = {.t = text, .report = report, .user = user};
    int errors;
    if (!text || !text->name || (!text->data && text->len))
        return 1;
    errors = parse(&p);
    if (errors)
        say(report, user, "%s: ignored (%d error%s)", text->name, errors,
            errors == 1 ? "" : "s");
    return errors;
}

/* ---- resolution --------------------------------------------------------- */

void attn_profile_init(attn_profile *p)
{
    memset(p, 0, sizeof *p);
    for (size_t i = 0; i < N_KEYS; i++)
        if (KEYS[i].type != V_STR && KEYS[i].type != V_ORDER)
            memset((char *)p + KEYS[i].off, 0xff, sizeof(int));
}

attn_status attn_profile_resolve_texts(const attn_device_info *dev,
                                       const attn_profile_text *texts, size_t n,
                                       attn_profile *out,
                                       attn_profile_report_fn report,
                                       void *user)
{
    dev_norm dn;
    if (out)
        attn_profile_init(out);
    if (!dev || !out || (!texts && n))
        return ATTN_ERR_INVALID_ARGUMENT;
    for (size_t i = 0; i < n; i++)
        if (!texts[i].name || (!texts[i].data && texts[i].len))
            return ATTN_ERR_INVALID_ARGUMENT;
    dev_normalise(dev, &dn);
    for (size_t i = 0; i < n; i++)
        attn_profile_check(&texts[i], report, user);
    for (int level = 0; level < LVL_COUNT; level++)
        for (size_t i = 0; i < n; i++) {
            parser p = {.t = &texts[i],
                        .dev = &dn,
                        .level = level,
                        .out = out,
                        .report = report,
                        .user = user};
            parser quiet = {.t = &texts[i]};
            if (parse(&quiet) == 0)
                parse(&p);
        }
    return ATTN_OK;
}

/* ---- queries ------------------------------------------------------------ */

const char *attn_profile_get(const attn_profile *p, const char *key)
{
    if (!p || !key)
        return NULL;
    for (size_t i = 0; i < p->n_extra && i < ATTN_PROFILE_MAX_EXTRA; i++)
        if (!strcmp(p->extra[i].key, key))
            return p->extra[i].value;
    return NULL;
}

int attn_profile_get_int(const attn_profile *p, const char *key, int min,
                         int max, int fallback)
{
    const char *v = attn_profile_get(p, key);
    int x;
    return v && parse_int(v, min, max, &x) ? x : fallback;
}

int attn_profile_quirk(const attn_profile *p, const char *name)
{
    char key[ATTN_PROFILE_KEY_MAX];
    const char *v;
    if (!name ||
        (size_t)snprintf(key, sizeof key, "quirk.%s", name) >= sizeof key)
        return 0;
    v = attn_profile_get(p, key);
    return v && *v && strcmp(v, "0") && strcmp(v, "off") && strcmp(v, "no");
}

attn_status attn_profile_tuning(const attn_profile *p, int variant,
                                attn_cl_tuning *t)
{
    const attn_cl_variant *v;
    if (!p || !t || variant < 0 || variant >= attn_cl_n_variants)
        return ATTN_ERR_INVALID_ARGUMENT;
    v = attn_cl_variants[variant];
    attn_cl_tuning_default(v, t);
    if (p->build_options_set)
        snprintf(t->options, sizeof t->options, "%s", p->build_options);
    for (int i = 0; i < v->n_params; i++) {
        char key[ATTN_PROFILE_KEY_MAX];
        snprintf(key, sizeof key, "%s.%s", v->name, v->params[i].name);
        t->v[i] = attn_profile_get_int(p, key, v->params[i].min,
                                       v->params[i].max, t->v[i]);
    }
    return attn_cl_tuning_check(v, t, NULL) == ATTN_OK
               ? ATTN_OK
               : ATTN_ERR_INVALID_ARGUMENT;
}

int attn_profile_order(const attn_profile *p, int *order, int cap)
{
    char buf[ATTN_PROFILE_VALUE_MAX], *save = NULL;
    int n = 0;
    if (!p || !p->order[0])
        return 0;
    snprintf(buf, sizeof buf, "%s", p->order);
    for (char *w = strtok_r(buf, " ,\t", &save); w && n < cap;
         w = strtok_r(NULL, " ,\t", &save)) {
        const int v = attn_cl_variant_find(w);
        if (v >= 0)
            order[n++] = v;
    }
    return n;
}

/* Appends "key = value\n", quoting values that need it. */
static void emit(char *buf, size_t cap, size_t *used, const char *key,
                 const char *value)
{
    size_t n = strlen(value);
    int q = !n || strchr(value, '#') || is_space((unsigned char)value[0]) ||
            is_space((unsigned char)value[n - 1]);
    int w = snprintf(*used < cap ? buf + *used : NULL,
                     *used < cap ? cap - *used : 0, "%s = %s%s%s\n", key,
                     q ? "\"" : "", value, q ? "\"" : "");
    if (w > 0)
        *used += (size_t)w;
}

size_t attn_profile_format(const attn_profile *p, char *buf, size_t cap)
{
    size_t used = 0;
    if (cap > 0)
        buf[0] = '\0';
    if (!p)
        return 0;
    for (size_t i = 0; i < N_KEYS; i++) {
        char num[16];
        int x;
        if (KEYS[i].type == V_STR) {
            if (p->build_options_set)
                emit(buf, cap, &used, KEYS[i].key, p->build_options);
            continue;
        }
        if (KEYS[i].type == V_ORDER) {
            if (p->order[0])
                emit(buf, cap, &used, KEYS[i].key, p->order);
            continue;
        }
        memcpy(&x, (const char *)p + KEYS[i].off, sizeof x);
        if (x < 0)
            continue;
        snprintf(num, sizeof num, "%d", x);
        emit(buf, cap, &used, KEYS[i].key,
             KEYS[i].type == V_PATH && x <= 2      ? PATH_NAME[x]
             : KEYS[i].type == V_STAGING && x <= 1 ? STAGING_NAME[x]
                                                   : num);
    }
    for (size_t i = 0; i < p->n_extra && i < ATTN_PROFILE_MAX_EXTRA; i++)
        emit(buf, cap, &used, p->extra[i].key, p->extra[i].value);
    return used;
}
