/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-cl-dump DIR: writes every OpenCL program libattn builds on the
 * devices of cl_program_devices() into DIR, for offline compilers
 * (scripts/offline_compile.sh).  Per program NAME ("fused_f32-nvidia": the
 * launcher's tag and the first device that builds it; "tiled_f32_d64-
 * nvidia" for a variant built per head size):
 *     NAME.cl    the concatenated sources, byte for byte what attn_cl_build
 *                hands to clCreateProgramWithSource;
 *     NAME.opts  its build options, what clBuildProgram gets (no newline);
 * and index.tsv, one line per program: NAME, sources, options, and the
 * labels of the devices that build it.  Programs that two devices build
 * alike are written once.  Exit status 0, or 1 with a message on stderr.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core.h"
#include "cl_programs.h"
#include "opencl/runtime.h"

#define MAX_PROGRAMS 512
#define PATH_MAX_LEN 1200

typedef struct dumped {
    char name[CL_PROGRAM_NAME_MAX + 16];
    const char *tag;
    int head_dim;
    char sources[256]; /* the file names, space-separated */
    char options[CL_PROGRAM_OPTIONS_MAX];
    char labels[256]; /* devices that build it, space-separated */
} dumped;

typedef struct dump_run {
    const char *dir;
    const char *label; /* of the device being enumerated */
    dumped prog[MAX_PROGRAMS];
    size_t n;
} dump_run;

static int write_file(const char *dir, const char *name, const char *ext,
                      const char *data, size_t n)
{
    char path[PATH_MAX_LEN];
    FILE *f;
    int ok;
    if ((size_t)snprintf(path, sizeof path, "%s/%s%s", dir, name, ext) >=
        sizeof path) {
        fprintf(stderr, "attn-cl-dump: path too long: %s/%s%s\n", dir, name,
                ext);
        return -1;
    }
    if (!(f = fopen(path, "wb"))) {
        fprintf(stderr, "attn-cl-dump: cannot create %s: %s\n", path,
                strerror(errno));
        return -1;
    }
    ok = fwrite(data, 1, n, f) == n;
    ok = (fclose(f) == 0) && ok;
    if (!ok)
        fprintf(stderr, "attn-cl-dump: cannot write %s\n", path);
    return ok ? 0 : -1;
}

/* Writes a program not written yet; a known one gets the device's label.
 * 1 on failure (said on stderr). */
static int dump_one(const cl_program_desc *p, void *user)
{
    dump_run *r = user;
    dumped *d;
    char *src = NULL;
    size_t len = 0, used;
    attn_err err = {{0}};
    for (size_t i = 0; i < r->n; i++) {
        d = &r->prog[i];
        if (!strcmp(d->tag, p->tag) && d->head_dim == p->head_dim &&
            !strcmp(d->options, p->options)) {
            used = strlen(d->labels);
            snprintf(d->labels + used, sizeof d->labels - used, " %s",
                     r->label);
            return 0;
        }
    }
    if (r->n == MAX_PROGRAMS) {
        fprintf(stderr, "attn-cl-dump: more than %d programs\n", MAX_PROGRAMS);
        return 1;
    }
    d = &r->prog[r->n];
    memset(d, 0, sizeof *d);
    /* One file per head size where the variant builds one per head size. */
    if (p->head_dim)
        snprintf(d->name, sizeof d->name, "%s_d%d-%s", p->tag, p->head_dim,
                 r->label);
    else
        snprintf(d->name, sizeof d->name, "%s-%s", p->tag, r->label);
    d->tag = p->tag;
    d->head_dim = p->head_dim;
    /* The names are the callback's to reuse: kept as text. */
    for (size_t i = 0, w = 0; i < p->n_sources && w < sizeof d->sources; i++)
        w += (size_t)snprintf(d->sources + w, sizeof d->sources - w, "%s%s",
                              i ? " " : "", p->sources[i]);
    snprintf(d->options, sizeof d->options, "%s", p->options);
    snprintf(d->labels, sizeof d->labels, "%s", r->label);
    if (attn_cl_load_sources(p->sources, p->n_sources, &src, &len, &err)) {
        fprintf(stderr, "attn-cl-dump: %s: %s\n", d->name, err.msg);
        return 1;
    }
    if (write_file(r->dir, d->name, ".cl", src, len) ||
        write_file(r->dir, d->name, ".opts", d->options, strlen(d->options))) {
        free(src);
        return 1;
    }
    free(src);
    r->n++;
    return 0;
}

static int write_index(const dump_run *r)
{
    char path[PATH_MAX_LEN];
    FILE *f;
    int ok = 1;
    snprintf(path, sizeof path, "%s/index.tsv", r->dir);
    if (!(f = fopen(path, "w"))) {
        fprintf(stderr, "attn-cl-dump: cannot create %s: %s\n", path,
                strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < r->n; i++) {
        const dumped *d = &r->prog[i];
        fprintf(f, "%s\t%s\t%s\t%s\n", d->name, d->sources, d->options,
                d->labels);
        printf("%-28s %s\n", d->name, d->labels);
    }
    if (ferror(f))
        ok = 0;
    if (fclose(f) != 0)
        ok = 0;
    if (!ok)
        fprintf(stderr, "attn-cl-dump: cannot write %s\n", path);
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    size_t n_dev;
    const cl_program_device *dev = cl_program_devices(&n_dev);
    dump_run *r;
    int rc = 0;
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: attn-cl-dump DIR\n"
                        "writes every OpenCL program of libattn (sources "
                        "and build options) into DIR\n");
        return 1;
    }
    if (mkdir(argv[1], 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "attn-cl-dump: cannot create %s: %s\n", argv[1],
                strerror(errno));
        return 1;
    }
    if (!(r = calloc(1, sizeof *r))) {
        fprintf(stderr, "attn-cl-dump: out of memory\n");
        return 1;
    }
    r->dir = argv[1];
    /* Every GPU a profile names has fused multiply-add (CL_FP_FMA). */
    for (size_t i = 0; i < n_dev && rc == 0; i++) {
        r->label = dev[i].label;
        if ((rc = cl_programs_for_device(&dev[i].info, 1, dump_one, r)) == -1)
            fprintf(stderr, "attn-cl-dump: the programs of %s do not fit\n",
                    dev[i].label);
    }
    if (rc == 0)
        rc = write_index(r);
    free(r);
    return rc == 0 ? 0 : 1;
}
