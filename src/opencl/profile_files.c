/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Platform profiles: where the texts come from.  The built-in files
 * (embedded by the build, or read from the source tree's platforms/ when
 * kernels are read from disk) and the *.prof files of ATTN_PLATFORM_DIR,
 * handed to attn_profile_resolve_texts (profile.c) in that order.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "opencl/profile.h"
#ifdef ATTN_EMBED_KERNELS
#include "opencl/embedded.h"
#endif

#define FILE_MAX  (1 << 20) /* bytes of a profile file */
#define DIR_MAX   256       /* *.prof files taken from one folder */
#define NAMES_MAX 65536     /* names looked at in one folder */

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

typedef struct text_list {
    attn_profile_text *v;
    char **own; /* per text: its name (and read data) in one block */
    size_t n, cap;
} text_list;

static void list_free(text_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->own[i]);
    free(l->v);
    free(l->own);
    memset(l, 0, sizeof *l);
}

/* Appends name (copied) with data: embedded (own_data NULL) or a buffer
 * that the list takes over. */
static attn_status list_add(text_list *l, const char *name, const char *data,
                            size_t len, char *own_data)
{
    size_t nlen = strlen(name);
    char *block;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        attn_profile_text *v = realloc(l->v, cap * sizeof *v);
        char **own;
        if (v)
            l->v = v;
        own = v ? realloc(l->own, cap * sizeof *own) : NULL;
        if (!own) {
            free(own_data);
            return ATTN_ERR_OUT_OF_MEMORY;
        }
        l->own = own;
        l->cap = cap;
    }
    block = malloc(nlen + 1 + (own_data ? len + 1 : 0));
    if (!block) {
        free(own_data);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    memcpy(block, name, nlen + 1);
    if (own_data) {
        memcpy(block + nlen + 1, own_data, len + 1);
        free(own_data);
        data = block + nlen + 1;
    }
    l->v[l->n] = (attn_profile_text){block, data, len};
    l->own[l->n++] = block;
    return ATTN_OK;
}

/* Reads a regular file of at most FILE_MAX bytes; NULL (and a message)
 * otherwise. */
static char *read_text(const char *path, const char *shown, size_t *len,
                       attn_profile_report_fn report, void *user)
{
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    /* O_NONBLOCK: a FIFO named x.prof must not hang the lookup. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) != 0) {
        say(report, user, "%s: cannot read: %s", shown, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > FILE_MAX) {
        say(report, user, "%s: not a regular file of at most %d bytes", shown,
            FILE_MAX);
        goto out;
    }
    if (!(buf = malloc((size_t)st.st_size + 1)))
        goto out;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r <= 0) {
            say(report, user, "%s: cannot read: %s", shown,
                r < 0 ? strerror(errno) : "file shrank");
            free(buf);
            buf = NULL;
            goto out;
        }
        got += (size_t)r;
    }
    buf[got] = '\0';
    *len = got;
out:
    if (fd >= 0)
        close(fd);
    return buf;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds every *.prof file of dir, in name order; messages call them
 * "<label>/<file>".  A folder that cannot be opened is reported (named as
 * from, e.g. "ATTN_PLATFORM_DIR=", then dir) and gives ATTN_ERR_IO with
 * nothing added. */
static attn_status add_dir(text_list *l, const char *dir, const char *label,
                           const char *from, attn_profile_report_fn report,
                           void *user)
{
    char **names = NULL;
    size_t n = 0, cap = 0;
    attn_status s = ATTN_OK;
    struct dirent *e;
    DIR *d = opendir(dir);
    if (!d) {
        say(report, user,
            "%s%s: cannot open the profile folder (%s); only the built-in "
            "profiles apply",
            from, dir, strerror(errno));
        return ATTN_ERR_IO;
    }
    /* every name (up to NAMES_MAX), sorted, then the first DIR_MAX by
     * name: which files apply does not depend on the folder's order */
    while ((e = readdir(d)) != NULL && n < NAMES_MAX) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len <= 5 ||
            strcmp(e->d_name + len - 5, ".prof"))
            continue;
        if (n == cap) {
            size_t c2 = cap ? 2 * cap : 64;
            char **nn = realloc(names, c2 * sizeof *nn);
            if (!nn) {
                s = ATTN_ERR_OUT_OF_MEMORY;
                break;
            }
            names = nn;
            cap = c2;
        }
        if (!(names[n] = malloc(len + 1))) {
            s = ATTN_ERR_OUT_OF_MEMORY;
            break;
        }
        memcpy(names[n++], e->d_name, len + 1);
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof names[0], by_name);
    if (n > DIR_MAX)
        say(report, user,
            "%s: more than %d profiles; %s and the later ones by name "
            "skipped",
            label, DIR_MAX, names[DIR_MAX]);
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX], shown[PATH_MAX + 64];
        size_t len = 0;
        char *data;
        if (s == ATTN_OK && i < DIR_MAX &&
            (size_t)snprintf(path, sizeof path, "%s/%s", dir, names[i]) <
                sizeof path) {
            snprintf(shown, sizeof shown, "%s/%s", label, names[i]);
            if ((data = read_text(path, shown, &len, report, user)) != NULL)
                s = list_add(l, shown, data, len, data);
        }
        free(names[i]);
    }
    free(names);
    return s;
}

static attn_status add_builtin(text_list *l, attn_profile_report_fn report,
                               void *user)
{
#ifdef ATTN_EMBED_KERNELS
    for (const attn_embedded_file *f = attn_embedded_files; f->name; f++) {
        size_t len = strlen(f->name);
        char name[256];
        attn_status s;
        if (len <= 5 || strcmp(f->name + len - 5, ".prof"))
            continue;
        snprintf(name, sizeof name, "platforms/%s", f->name);
        if ((s = list_add(l, name, f->data, f->size, NULL)))
            return s;
    }
    (void)report;
    (void)user;
    return ATTN_OK;
#else
    return add_dir(l, ATTN_CL_SOURCE_DIR "/../platforms", "platforms", "",
                   report, user);
#endif
}

attn_status attn_profile_resolve(const attn_device_info *dev,
                                 const char *extra_dir, attn_profile *out,
                                 attn_profile_report_fn report, void *user)
{
    text_list l = {0};
    const char *from = "";
    attn_status s;
    if (out)
        attn_profile_init(out);
    if (!dev || !out)
        return ATTN_ERR_INVALID_ARGUMENT;
    if (!extra_dir) {
        extra_dir = getenv("ATTN_PLATFORM_DIR");
        from = "ATTN_PLATFORM_DIR=";
    }
    s = add_builtin(&l, report, user);
    if (s != ATTN_ERR_OUT_OF_MEMORY && extra_dir && *extra_dir) {
        /* Messages name the variable with the files; a folder that
         * cannot be read adds nothing: the built-in profiles apply, with
         * the warning add_dir gave. */
        char label[PATH_MAX + 32];
        snprintf(label, sizeof label, "%s%s", from, extra_dir);
        s = add_dir(&l, extra_dir, label, from, report, user);
    }
    if (s != ATTN_ERR_OUT_OF_MEMORY)
        s = attn_profile_resolve_texts(dev, l.v, l.n, out, report, user);
    list_free(&l);
    return s;
}

attn_status attn_profile_check_builtin(size_t *files, size_t *bad,
                                       attn_profile_report_fn report,
                                       void *user)
{
    text_list l = {0};
    attn_status s;
    if (!files || !bad)
        return ATTN_ERR_INVALID_ARGUMENT;
    *files = *bad = 0;
    s = add_builtin(&l, report, user);
    for (size_t i = 0; s == ATTN_OK && i < l.n; i++)
        *bad += attn_profile_check(&l.v[i], report, user) != 0;
    *files = l.n;
    list_free(&l);
    return s;
}
