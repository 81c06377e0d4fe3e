/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Recursive-descent JSON reader; see mini_json.h.  Strict on purpose: the
 * test must fail when attn-probe writes anything a real parser refuses.
 */
#include "mini_json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MJ_MAX_DEPTH 64

typedef struct parser {
    const char *p;
    const char *start;
    char *err;
    size_t cap;
    int failed;
} parser;

static int fail(parser *ps, const char *fmt, ...)
{
    va_list ap;
    if (!ps->failed && ps->err && ps->cap > 0) {
        int w = snprintf(ps->err, ps->cap,
                         "offset %ld: ", (long)(ps->p - ps->start));
        if (w >= 0 && (size_t)w < ps->cap) {
            va_start(ap, fmt);
            vsnprintf(ps->err + w, ps->cap - (size_t)w, fmt, ap);
            va_end(ap);
        }
    }
    ps->failed = 1;
    return 0;
}

static void skip_ws(parser *ps)
{
    while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')
        ps->p++;
}

static void free_value(mj *v)
{
    free(v->str);
    for (size_t i = 0; i < v->n; i++) {
        free_value(&v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    memset(v, 0, sizeof *v);
}

void mj_free(mj *v)
{
    if (v) {
        free_value(v);
        free(v);
    }
}

static int hex4(parser *ps, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = *ps->p++;
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return fail(ps, "bad \\u escape");
    }
    *out = v;
    return 1;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ps->p is at the opening quote.  Decoded text never exceeds the raw
 * length, so one allocation of that size suffices. */
static int parse_string(parser *ps, char **out)
{
    const char *q = ++ps->p;
    char *s, *o;
    while (*q && *q != '"')
        q += *q == '\\' && q[1] ? 2 : 1;
    if (*q != '"')
        return fail(ps, "unterminated string");
    if (!(s = malloc((size_t)(q - ps->p) + 1)))
        return fail(ps, "out of memory");
    o = s;
    while (*ps->p != '"') {
        unsigned char c = (unsigned char)*ps->p++;
        unsigned cp = 0, lo = 0;
        if (c < 0x20) {
            free(s);
            return fail(ps, "raw control character in string");
        }
        if (c != '\\') {
            *o++ = (char)c;
            continue;
        }
        switch (*ps->p++) {
        case '"':
            *o++ = '"';
            break;
        case '\\':
            *o++ = '\\';
            break;
        case '/':
            *o++ = '/';
            break;
        case 'b':
            *o++ = '\b';
            break;
        case 'f':
            *o++ = '\f';
            break;
        case 'n':
            *o++ = '\n';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'u':
            if (!hex4(ps, &cp)) {
                free(s);
                return 0;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (ps->p[0] != '\\' || ps->p[1] != 'u') {
                    free(s);
                    return fail(ps, "lone high surrogate");
                }
                ps->p += 2;
                if (!hex4(ps, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                    free(s);
                    return fail(ps, "bad low surrogate");
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                free(s);
                return fail(ps, "lone low surrogate");
            }
            o += put_utf8(o, cp);
            break;
        default:
            free(s);
            return fail(ps, "bad escape");
        }
    }
    ps->p++;
    *o = '\0';
    *out = s;
    return 1;
}

static int digits(parser *ps)
{
    const char *b = ps->p;
    while (*ps->p >= '0' && *ps->p <= '9')
        ps->p++;
    return ps->p > b;
}

static int parse_number(parser *ps, mj *v)
{
    const char *b = ps->p;
    if (*ps->p == '-')
        ps->p++;
    if (*ps->p == '0')
        ps->p++;
    else if (!digits(ps))
        return fail(ps, "bad number");
    if (*ps->p == '.') {
        ps->p++;
        if (!digits(ps))
            return fail(ps, "bad fraction");
    }
    if (*ps->p == 'e' || *ps->p == 'E') {
        ps->p++;
        if (*ps->p == '+' || *ps->p == '-')
            ps->p++;
        if (!digits(ps))
            return fail(ps, "bad exponent");
    }
    v->type = MJ_NUM;
    v->num = strtod(b, NULL);
    return 1;
}

static int parse_value(parser *ps, mj *v, int depth);

/* Arrays and objects: items separated by commas, close is ']' or '}'. */
static int parse_list(parser *ps, mj *v, int depth, int object)
{
    char close = object ? '}' : ']';
    size_t cap = 0;
    v->type = object ? MJ_OBJ : MJ_ARR;
    ps->p++;
    skip_ws(ps);
    if (*ps->p == close) {
        ps->p++;
        return 1;
    }
    for (;;) {
        char *key = NULL;
        if (v->n == cap) {
            size_t nc = cap ? 2 * cap : 8;
            mj *ni = realloc(v->items, nc * sizeof *ni);
            if (!ni)
                return fail(ps, "out of memory");
            v->items = ni;
            if (object) {
                char **nk = realloc(v->keys, nc * sizeof *nk);
                if (!nk)
                    return fail(ps, "out of memory");
                v->keys = nk;
            }
            cap = nc;
        }
        skip_ws(ps);
        if (object) {
            if (*ps->p != '"')
                return fail(ps, "expected a member name");
            if (!parse_string(ps, &key))
                return 0;
            skip_ws(ps);
            if (*ps->p++ != ':') {
                free(key);
                return fail(ps, "expected ':'");
            }
        }
        memset(&v->items[v->n], 0, sizeof v->items[0]);
        if (object)
            v->keys[v->n] = key;
        v->n++;
        if (!parse_value(ps, &v->items[v->n - 1], depth + 1))
            return 0;
        skip_ws(ps);
        if (*ps->p == ',') {
            ps->p++;
            continue;
        }
        if (*ps->p == close) {
            ps->p++;
            return 1;
        }
        return fail(ps, "expected ',' or '%c'", close);
    }
}

static int parse_value(parser *ps, mj *v, int depth)
{
    if (depth > MJ_MAX_DEPTH)
        return fail(ps, "nested too deeply");
    skip_ws(ps);
    switch (*ps->p) {
    case '{':
        return parse_list(ps, v, depth, 1);
    case '[':
        return parse_list(ps, v, depth, 0);
    case '"':
        v->type = MJ_STR;
        return parse_string(ps, &v->str);
    case 't':
    case 'f':
    case 'n': {
        static const struct {
            const char *word;
            mj_type type;
            int boolean;
        } words[] = {
            {"true", MJ_BOOL, 1}, {"false", MJ_BOOL, 0}, {"null", MJ_NULL, 0}};
        for (size_t i = 0; i < 3; i++) {
            size_t n = strlen(words[i].word);
            if (!strncmp(ps->p, words[i].word, n)) {
                ps->p += n;
                v->type = words[i].type;
                v->boolean = words[i].boolean;
                return 1;
            }
        }
        return fail(ps, "bad literal");
    }
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9'))
            return parse_number(ps, v);
        return fail(ps, "unexpected character 0x%02x",
                    (unsigned)(unsigned char)*ps->p);
    }
}

mj *mj_parse(const char *text, char *err, size_t cap)
{
    parser ps = {text, text, err, cap, 0};
    mj *v = calloc(1, sizeof *v);
    if (err && cap > 0)
        err[0] = '\0';
    if (!v || !text) {
        free(v);
        return NULL;
    }
    if (parse_value(&ps, v, 0)) {
        skip_ws(&ps);
        if (*ps.p == '\0')
            return v;
        fail(&ps, "text after the value");
    }
    mj_free(v);
    return NULL;
}

const mj *mj_get(const mj *v, const char *key)
{
    if (!v || v->type != MJ_OBJ)
        return NULL;
    for (size_t i = 0; i < v->n; i++)
        if (v->keys[i] && !strcmp(v->keys[i], key))
            return &v->items[i];
    return NULL;
}
