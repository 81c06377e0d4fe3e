/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Python peers kept up for one case (bench/peer_runtimes.py --serve): the
 * script reads its inputs and compiles its model once, then makes one call
 * per "run" line on its stdin and answers with that call's time, so that
 * attn-bench can alternate its calls with libattn's.  Also the one
 * --check of those peers before the first case.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct serve_peer {
    child_proc c;
    char last[512]; /* the last line that was no answer (a traceback's) */
};

static const char *const BACKENDS[RT_COUNT] = {"openvino", "ort-mha",
                                               "ort-attention"};

const char *rt_backend(rt_peer p)
{
    return p < RT_COUNT ? BACKENDS[p] : "?";
}

/* The peer's next line that starts with one of answers. */
static int answer(serve_peer *p, const char *const *answers, char *line,
                  size_t len)
{
    return child_answer(&p->c, answers, line, len, p->last, sizeof p->last);
}

/* Why the peer stopped answering: its last words. */
static void gone(serve_peer *p, char *why, size_t why_len)
{
    snprintf(why, why_len, "the peer exited%s%.400s", p->last[0] ? ": " : "",
             p->last);
}

int serve_start(const options *opt, const serve_job *job, serve_peer **out,
                char *impl, size_t impl_len, char *how, size_t how_len,
                char *why, size_t why_len)
{
    *out = NULL;
    impl[0] = how[0] = '\0';
    const shape *sh = &job->s;
    char v[9][32];
    snprintf(v[0], sizeof v[0], "%d", sh->seq_kv);
    snprintf(v[1], sizeof v[1], "%d", job->causal);
    snprintf(v[2], sizeof v[2], "%d", opt->threads);
    snprintf(v[3], sizeof v[3], "%d", sh->batch);
    snprintf(v[4], sizeof v[4], "%d", sh->heads);
    snprintf(v[5], sizeof v[5], "%d", sh->kv_heads);
    snprintf(v[6], sizeof v[6], "%d", sh->head_dim);
    snprintf(v[7], sizeof v[7], "%d", sh->seq_q);
    const char *argv[32] = {
        opt->python,   job->script,  job->backend,
        v[0],          v[1],         "0",
        "--serve",     "--threads",  v[2],
        "--batch",     v[3],         "--heads",
        v[4],          "--kv-heads", v[5],
        "--dim",       v[6],         "--seq-q",
        v[7],          "--dtype",    util_dtype_name(job->f16),
        "--in",        job->in_path, "--out",
        job->out_path, NULL};
    serve_peer *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    if (child_start(&p->c, argv, NULL, 1, why, why_len) != 0) {
        free(p);
        return -1;
    }
    static const char *const first[] = {"READY", "SKIP ", "ERROR ", NULL};
    char line[1024];
    if (answer(p, first, line, sizeof line) != 0) {
        gone(p, why, why_len);
        serve_stop(p);
        return -1;
    }
    if (strncmp(line, "READY", 5) == 0) {
        util_field(line, "impl=", impl, impl_len);
        util_field(line, "how=", how, how_len);
        if (strcmp(how, "-") == 0)
            how[0] = '\0';
        *out = p;
        return 0;
    }
    int skip = strncmp(line, "SKIP ", 5) == 0;
    util_scopy(why, why_len, line + (skip ? 5 : 6));
    serve_stop(p);
    return skip ? 1 : -1;
}

int serve_run(serve_peer *p, double *ms, char *why, size_t why_len)
{
    static const char *const got[] = {"TIME ", "ERROR ", NULL};
    char line[1024];
    if (fputs("run\n", p->c.to) == EOF || fflush(p->c.to) != 0 ||
        answer(p, got, line, sizeof line) != 0) {
        gone(p, why, why_len);
        return -1;
    }
    if (strncmp(line, "ERROR ", 6) == 0) {
        util_scopy(why, why_len, line + 6);
        return -1;
    }
    char v[64];
    util_field(line, "ms=", v, sizeof v);
    *ms = strtod(v, NULL);
    if (!(*ms > 0)) {
        snprintf(why, why_len, "unreadable answer: %.400s", line);
        return -1;
    }
    return 0;
}

int serve_output(serve_peer *p, char *why, size_t why_len)
{
    static const char *const got[] = {"DONE", "ERROR ", NULL};
    char line[1024];
    if (fputs("out\n", p->c.to) == EOF || fflush(p->c.to) != 0 ||
        answer(p, got, line, sizeof line) != 0) {
        gone(p, why, why_len);
        return -1;
    }
    if (strncmp(line, "ERROR ", 6) == 0) {
        util_scopy(why, why_len, line + 6);
        return -1;
    }
    return 0;
}

void serve_stop(serve_peer *p)
{
    if (!p)
        return;
    if (p->c.to)
        fputs("quit\n", p->c.to); /* EOF ends it too */
    child_wait(&p->c);
    free(p);
}

void serve_check(const options *opt, peer_state *ps)
{
    int want[RT_COUNT] = {opt_has(opt, IMPL_OPENVINO),
                          opt_has(opt, IMPL_ONNXRUNTIME),
                          opt_has(opt, IMPL_ONNXRUNTIME)};
    char list[128] = "";
    for (int i = 0; i < RT_COUNT; i++) {
        ps->rt_ok[i] = 0;
        snprintf(ps->rt_why[i], sizeof ps->rt_why[i],
                 "skipped: peer_runtimes.py --check gave no answer");
        if (want[i])
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                     list[0] ? "," : "", BACKENDS[i]);
    }
    if (!list[0])
        return;
    if (!opt->rt_script) {
        for (int i = 0; i < RT_COUNT; i++)
            snprintf(ps->rt_why[i], sizeof ps->rt_why[i],
                     "skipped: peer_runtimes.py not found (beside attn-bench "
                     "or in the source tree)");
        return;
    }
    const char *argv[] = {opt->python, opt->rt_script, "--check", list, NULL};
    child_proc c;
    char why[512], last[512] = "";
    if (child_start(&c, argv, NULL, 0, why, sizeof why) != 0) {
        for (int i = 0; i < RT_COUNT; i++)
            snprintf(ps->rt_why[i], sizeof ps->rt_why[i], "skipped: %.480s",
                     why);
        return;
    }
    static const char *const got[] = {"OK ", "NO ", "ERROR ", NULL};
    char line[1024];
    while (child_answer(&c, got, line, sizeof line, last, sizeof last) == 0) {
        if (strncmp(line, "ERROR ", 6) == 0) {
            for (int i = 0; i < RT_COUNT; i++)
                snprintf(ps->rt_why[i], sizeof ps->rt_why[i], "skipped: %.500s",
                         line + 6);
            continue;
        }
        int ok = line[0] == 'O';
        const char *rest = line + 3;
        for (int i = 0; i < RT_COUNT; i++) {
            size_t l = strlen(BACKENDS[i]);
            if (strncmp(rest, BACKENDS[i], l) != 0 || rest[l] != ' ')
                continue;
            ps->rt_ok[i] = ok;
            if (ok)
                util_scopy(ps->rt_impl[i], sizeof ps->rt_impl[i], rest + l + 1);
            else
                snprintf(ps->rt_why[i], sizeof ps->rt_why[i], "skipped: %.500s",
                         rest + l + 1);
        }
    }
    if (last[0])
        for (int i = 0; i < RT_COUNT; i++)
            if (!ps->rt_ok[i] && strstr(ps->rt_why[i], "no answer"))
                snprintf(ps->rt_why[i], sizeof ps->rt_why[i],
                         "skipped: %s %s --check: %.400s", opt->python,
                         opt->rt_script, last);
    child_wait(&c);
}
