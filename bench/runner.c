/*
 * One case of attn-bench: every implementation asked for is prepared and
 * warmed up, then their timed runs are interleaved (native, cl-*, CLBlast,
 * ggml, native, ...) so that load changes on a shared machine hit all of
 * them alike; then the python peers run as subprocesses, and the decode
 * case (seq_q = --seq-q) runs when cl-decode is asked for.  Every output is
 * compared with native's, native's with the f64 reference.
 */
#include "bench.h"

#ifdef ATTN_BENCH_HAVE_CLBLAST
#include "peer_clblast.h"
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_ENTRIES = 16 };

typedef enum { EX_ATTN, EX_GGML, EX_CLBLAST } exec_kind;

/* One implementation being timed. */
typedef struct entry {
    exec_kind kind;
    row *r;
    attn_context *ctx; /* EX_ATTN */
    const attn_sdpa_desc *d;
    float *o; /* EX_ATTN, EX_CLBLAST: where the output lands */
    int own_o;
    ggml_peer_case *gc;
    void *cc; /* clblast_case * */
    double *t;
    int alive;
    char why[400];
} entry;

static int entry_exec(entry *e, const void *q, const void *k, const void *v)
{
    switch (e->kind) {
    case EX_ATTN: {
        attn_status st = attn_sdpa(e->ctx, e->d, q, k, v, e->o, NULL);
        if (st != ATTN_OK) {
            snprintf(e->why, sizeof e->why, "attn_sdpa: %s: %.300s",
                     attn_status_string(st), attn_context_last_error(e->ctx));
            return -1;
        }
        return 0;
    }
    case EX_GGML:
        if (ggml_peer_exec(e->gc) != 0) {
            snprintf(e->why, sizeof e->why, "graph compute failed");
            return -1;
        }
        return 0;
    case EX_CLBLAST:
#ifdef ATTN_BENCH_HAVE_CLBLAST
        return clblast_case_exec(e->cc, e->why, sizeof e->why);
#else
        return -1;
#endif
    }
    return -1;
}

static void entry_free(entry *e)
{
    if (e->gc)
        ggml_peer_case_free(e->gc);
#ifdef ATTN_BENCH_HAVE_CLBLAST
    if (e->cc)
        clblast_case_free(e->cc);
#endif
    if (e->own_o)
        free(e->o);
    free(e->t);
    memset(e, 0, sizeof *e);
}

/* Warm-up, then reps interleaved rounds; fills each alive entry's row with
 * its median and min, or its note when it failed. */
static void time_entries(const options *opt, entry *es, int n_es, int reps,
                         const void *q, const void *k, const void *v)
{
    for (int i = 0; i < n_es; i++) {
        entry *e = &es[i];
        e->t = calloc((size_t)reps, sizeof *e->t);
        e->alive = e->t != NULL;
        if (!e->t)
            snprintf(e->why, sizeof e->why, "out of memory");
        for (int w = 0; w < opt->warmup && e->alive; w++)
            if (entry_exec(e, q, k, v) != 0)
                e->alive = 0;
    }
    for (int r = 0; r < reps; r++)
        for (int i = 0; i < n_es; i++) {
            entry *e = &es[i];
            if (!e->alive)
                continue;
            if (n_es > 1)
                util_pause_ms(5); /* let the other pools' workers sleep */
            double t0 = util_now_ms();
            int rc = entry_exec(e, q, k, v);
            e->t[r] = util_now_ms() - t0;
            if (rc != 0)
                e->alive = 0;
        }
    for (int i = 0; i < n_es; i++) {
        entry *e = &es[i];
        if (!e->alive) {
            e->r->ok = 0;
            e->r->note = e->why;
            continue;
        }
        e->r->ok = 1;
        e->r->min_ms = util_min(e->t, reps);
        e->r->median_ms = util_median(e->t, reps);
    }
}

static float *alloc_out(size_t cnt)
{
    return malloc(cnt * sizeof(float));
}

static void add_attn(entry *es, int *n_es, row *rows, int *n_rows, impl_id id,
                     const char *label, attn_context *ctx,
                     const attn_sdpa_desc *d, float *o, size_t cnt)
{
    row *r = &rows[(*n_rows)++];
    r->impl = id == IMPL_NATIVE ? "libattn" : "cl";
    r->id = id;
    util_scopy(r->label, sizeof r->label, label);
    entry *e = &es[(*n_es)++];
    e->kind = EX_ATTN;
    e->r = r;
    e->ctx = ctx;
    e->d = d;
    e->o = o ? o : alloc_out(cnt);
    e->own_o = o == NULL;
    if (!e->o) {
        (*n_es)--;
        r->note = "out of memory";
    }
}

static void skip_row(row *rows, int *n_rows, impl_id id, const char *label,
                     const char *note)
{
    row *r = &rows[(*n_rows)++];
    r->impl = "cl";
    r->id = id;
    util_scopy(r->label, sizeof r->label, label);
    r->note = note;
}

#ifdef ATTN_BENCH_HAVE_CLBLAST
static clblast_peer *clblast_get(peer_state *ps)
{
    if (!ps->clblast_tried) {
        ps->clblast_tried = 1;
        clblast_peer *p = NULL;
        if (clblast_peer_open(&p, ps->clblast_why, sizeof ps->clblast_why) ==
            0) {
            ps->clblast = p;
            printf("# clblast: CLBlast %s on %s\n", "SgemmStridedBatched",
                   clblast_peer_device(p));
        }
    }
    return ps->clblast;
}
#endif

void runner_cleanup(peer_state *ps)
{
#ifdef ATTN_BENCH_HAVE_CLBLAST
    clblast_peer_close(ps->clblast);
#endif
    ps->clblast = NULL;
}

static const impl_id CL_SQUARE[] = {IMPL_CL_UNFUSED, IMPL_CL_FUSED, IMPL_CL_Q2,
                                    IMPL_CL_Q4, IMPL_CL_2DEV};

/* The decode case: seq_q = --seq-q, seq_kv = n; native and cl-decode. */
static void decode_case(const options *opt, attn_context *ctx,
                        const cl_impls *ci, int n, int causal, const float *q,
                        const float *k, const float *v, float *o_nat)
{
    int sq = opt->seq_q;
    size_t cnt = (size_t)HEADS * sq * HEAD_DIM;
    /* Q: the last sq rows of each head of q, as a decode step would see */
    float *qd = malloc(cnt * sizeof *qd);
    row rows[2];
    memset(rows, 0, sizeof rows);
    entry es[2];
    memset(es, 0, sizeof es);
    int n_es = 0, n_rows = 0;
    char lab[96];
    attn_sdpa_desc d;
    memset(&d, 0, sizeof d);
    d.batch = 1;
    d.heads_q = d.heads_kv = HEADS;
    d.seq_q = sq;
    d.seq_kv = n;
    d.head_dim = d.head_dim_v = HEAD_DIM;
    d.mask.causal = causal;
    if (!qd) {
        fprintf(stderr, "attn-bench: out of memory (decode)\n");
        return;
    }
    for (int h = 0; h < HEADS; h++)
        memcpy(qd + (size_t)h * sq * HEAD_DIM,
               q + ((size_t)h * n + (size_t)(n - sq)) * HEAD_DIM,
               (size_t)sq * HEAD_DIM * sizeof *qd);
    snprintf(lab, sizeof lab, "libattn native seq_q=%d", sq);
    add_attn(es, &n_es, rows, &n_rows, IMPL_NATIVE, lab, ctx, &d, o_nat, cnt);
    snprintf(lab, sizeof lab, "libattn cl-decode seq_q=%d (AUTO)", sq);
    add_attn(es, &n_es, rows, &n_rows, IMPL_CL_DECODE, lab,
             ci->ctx[IMPL_CL_DECODE], &d, NULL, cnt);
    /* many cheap calls: more reps than the square case */
    time_entries(opt, es, n_es, opt->reps ? opt->reps : 31, qd, k, v);
    rows[0].diff = NAN;
    if (n_es == 2 && rows[0].ok && rows[1].ok)
        rows[1].diff = util_max_abs_diff(o_nat, es[1].o, cnt);
    for (int i = 0; i < n_rows; i++)
        report_row(n, causal, 0, &rows[i], rows[0].ok ? rows[0].median_ms : 0,
                   sq);
    for (int i = 0; i < n_es; i++)
        entry_free(&es[i]);
    free(qd);
}

/* --dtype f16: binary16 copies of q, k, v and the floats they hold. */
typedef struct f16_inputs {
    uint16_t *half[3];
    float *rounded[3];
} f16_inputs;

static void f16_inputs_free(f16_inputs *h)
{
    for (int i = 0; i < 3; i++) {
        free(h->half[i]);
        free(h->rounded[i]);
    }
}

static int f16_inputs_make(f16_inputs *h, const float *q, const float *k,
                           const float *v, size_t cnt)
{
    const float *src[3] = {q, k, v};
    for (int i = 0; i < 3; i++) {
        h->half[i] = malloc(cnt * sizeof(uint16_t));
        h->rounded[i] = malloc(cnt * sizeof(float));
        if (!h->half[i] || !h->rounded[i])
            return -1;
        for (size_t j = 0; j < cnt; j++) {
            h->half[i][j] = util_to_half(src[i][j]);
            h->rounded[i][j] = util_from_half(h->half[i][j]);
        }
    }
    return 0;
}

/* o holds cnt binary16 values in its first half: makes them floats. */
static int f16_widen(float *o, size_t cnt)
{
    uint16_t *tmp = malloc(cnt * sizeof *tmp);
    if (!tmp)
        return -1;
    memcpy(tmp, o, cnt * sizeof *tmp);
    for (size_t j = 0; j < cnt; j++)
        o[j] = util_from_half(tmp[j]);
    free(tmp);
    return 0;
}

int runner_case(const options *opt, attn_context *ctx, const cl_impls *ci,
                peer_state *ps, int n, int causal, const float *q,
                const float *k, const float *v, float *o_lib, float *o_peer,
                const char *in_path, const char *out_path)
{
    int reps = options_reps(opt, n);
    size_t cnt = (size_t)HEADS * n * HEAD_DIM;
    double s_mib = impls_s_bytes(n, n) / 1048576.0;
    attn_sdpa_desc d;
    memset(&d, 0, sizeof d);
    d.batch = 1;
    d.heads_q = d.heads_kv = HEADS;
    d.seq_q = d.seq_kv = n;
    d.head_dim = d.head_dim_v = HEAD_DIM;
    d.mask.causal = causal;
    d.dtype = opt->f16 ? ATTN_F16 : ATTN_F32;
    /* f16: libattn gets binary16 copies, the reference their values */
    f16_inputs h;
    memset(&h, 0, sizeof h);
    const void *in[3] = {q, k, v};
    if (opt->f16) {
        if (f16_inputs_make(&h, q, k, v, cnt) != 0) {
            fprintf(stderr, "attn-bench: out of memory (f16 inputs)\n");
            f16_inputs_free(&h);
            return -1;
        }
        for (int i = 0; i < 3; i++)
            in[i] = h.half[i];
        q = h.rounded[0];
        k = h.rounded[1];
        v = h.rounded[2];
    }

    static char notes[MAX_ENTRIES][600];
    row rows[MAX_ENTRIES];
    entry es[MAX_ENTRIES];
    int n_rows = 0, n_es = 0, n_notes = 0;
    memset(rows, 0, sizeof rows);
    memset(es, 0, sizeof es);

    add_attn(es, &n_es, rows, &n_rows, IMPL_NATIVE, "libattn native", ctx, &d,
             o_lib, cnt);

    for (size_t i = 0; i < sizeof CL_SQUARE / sizeof CL_SQUARE[0]; i++) {
        impl_id id = CL_SQUARE[i];
        if (!opt_has(opt, id))
            continue;
        char lab[96];
        snprintf(lab, sizeof lab, "libattn %s", impl_name(id));
        if (!ci->ctx[id]) {
            skip_row(rows, &n_rows, id, lab, ci->why[id]);
            continue;
        }
        if (id == IMPL_CL_UNFUSED && s_mib > opt->max_mem_mib) {
            snprintf(notes[n_notes], sizeof notes[0],
                     "skipped: S [8, N, N] f32 = %.0f MiB > --max-mem %.0f MiB",
                     s_mib, opt->max_mem_mib);
            skip_row(rows, &n_rows, id, lab, notes[n_notes++]);
            continue;
        }
        add_attn(es, &n_es, rows, &n_rows, id, lab, ci->ctx[id], &d, NULL, cnt);
    }

    if (opt_has(opt, IMPL_CLBLAST)) {
        const char *lab = "CLBlast gemm+softmax+gemm";
        row *r = &rows[n_rows++];
        r->impl = "clblast";
        r->id = IMPL_CLBLAST;
        util_scopy(r->label, sizeof r->label, lab);
#ifdef ATTN_BENCH_HAVE_CLBLAST
        if (s_mib > opt->max_mem_mib) {
            snprintf(notes[n_notes], sizeof notes[0],
                     "skipped: S [8, N, N] f32 = %.0f MiB > --max-mem %.0f MiB",
                     s_mib, opt->max_mem_mib);
            r->note = notes[n_notes++];
        } else if (!clblast_get(ps)) {
            r->note = ps->clblast_why;
        } else {
            entry *e = &es[n_es];
            e->kind = EX_CLBLAST;
            e->r = r;
            e->o = alloc_out(cnt);
            e->own_o = 1;
            clblast_case *cc = NULL;
            if (!e->o) {
                r->note = "out of memory";
                e->own_o = 0;
            } else if (clblast_case_prepare(
                           ps->clblast, HEADS, n, HEAD_DIM, causal, q, k, v,
                           e->o, &cc, notes[n_notes], sizeof notes[0]) != 0) {
                r->note = notes[n_notes++];
                free(e->o);
                memset(e, 0, sizeof *e);
            } else {
                e->cc = cc;
                n_es++;
            }
        }
#else
        r->note = "not built (CLBlast or OpenCL not found at configure time)";
#endif
    }

    /* ggml cases, prepared before timing */
    static char gwhy[2][256];
    for (int t = 0; t < 2; t++) {
        if (!ps->g || !(opt->ggml_kv & (1 << t)))
            continue;
        row *gr = &rows[n_rows++];
        gr->impl = "ggml";
        gr->id = IMPL_GGML;
        snprintf(gr->label, sizeof gr->label, "ggml flash_attn_ext (K/V %s)",
                 t == 0 ? "f16" : "f32");
        if (!ps->ggml_ok[t]) {
            gr->note = ps->ggml_why[t];
            continue;
        }
        ggml_peer_case *gc = NULL;
        if (ggml_peer_prepare(ps->g, HEADS, n, HEAD_DIM, causal, t == 0,
                              opt->threads, q, k, v, &gc, gwhy[t],
                              sizeof gwhy[t]) != 0) {
            gr->note = gwhy[t];
            continue;
        }
        entry *e = &es[n_es++];
        e->kind = EX_GGML;
        e->r = gr;
        e->gc = gc;
    }

    time_entries(opt, es, n_es, reps, in[0], in[1], in[2]);

    /* diffs: native against the f64 reference, the rest against native */
    for (int i = 0; i < n_es; i++) {
        entry *e = &es[i];
        if (!e->r->ok)
            continue;
        if (opt->f16 && e->kind == EX_ATTN && f16_widen(e->o, cnt) != 0) {
            e->r->diff = NAN;
            continue;
        }
        if (e->r->id == IMPL_NATIVE) {
            e->r->diff =
                util_check_rows(q, k, v, o_lib, n, causal, n >= 4096 ? 8 : 16);
        } else if (e->kind == EX_GGML) {
            ggml_peer_output(e->gc, o_peer);
            e->r->diff = util_max_abs_diff(o_lib, o_peer, cnt);
        } else {
            e->r->diff = util_max_abs_diff(o_lib, e->o, cnt);
        }
    }
    double lib_ms = rows[0].ok ? rows[0].median_ms : 0;
    int lib_ok = rows[0].ok;
    for (int i = 0; i < n_es; i++)
        entry_free(&es[i]);
    f16_inputs_free(&h);
    if (!lib_ok) {
        fprintf(stderr, "attn-bench: native (N=%d): %s\n", n,
                rows[0].note ? rows[0].note : "failed");
        return -1;
    }

    /* numpy, then torch: subprocesses */
    static char pnotes[4][600];
    int py_jobs = 0;
    struct {
        const char *backend;
        int unset;
    } jobs[3];
    /* numpy holds one head's S and exp(S) at a time */
    double py_mib = 2.0 * impls_s_bytes(n, n) / HEADS / 1048576.0;
    if (ps->numpy_ok && in_path) {
        jobs[py_jobs].backend = "numpy";
        jobs[py_jobs++].unset = 0;
        if (ps->numpy_variants == 2) {
            jobs[py_jobs].backend = "numpy";
            jobs[py_jobs++].unset = 1;
        }
    }
    if (ps->torch_ok && in_path) {
        jobs[py_jobs].backend = "torch";
        jobs[py_jobs++].unset = 0;
    }
    for (int j = 0; j < py_jobs; j++) {
        int is_torch = strcmp(jobs[j].backend, "torch") == 0;
        if ((is_torch && !ps->torch_ok) || (!is_torch && !ps->numpy_ok))
            continue;
        if (!is_torch && py_mib > opt->max_mem_mib) {
            row *pr_row = &rows[n_rows++];
            pr_row->impl = "numpy";
            pr_row->id = IMPL_NUMPY;
            util_scopy(pr_row->label, sizeof pr_row->label,
                       "numpy matmul+softmax");
            snprintf(pnotes[j], sizeof pnotes[j],
                     "skipped: S and exp(S) of one head = %.0f MiB > "
                     "--max-mem %.0f MiB",
                     py_mib, opt->max_mem_mib);
            pr_row->note = pnotes[j];
            continue;
        }
        py_result pr;
        python_peer_run(opt, n, causal, reps, in_path, out_path,
                        jobs[j].backend, jobs[j].unset, &pr);
        if (is_torch && !pr.ok && pr.fatal) {
            ps->torch_ok = 0; /* not installed: leave torch out quietly */
            continue;
        }
        row *pr_row = &rows[n_rows++];
        pr_row->impl = jobs[j].backend;
        pr_row->id = is_torch ? IMPL_TORCH : IMPL_NUMPY;
        if (is_torch)
            util_scopy(pr_row->label, sizeof pr_row->label,
                       pr.ok ? pr.impl : "torch sdpa");
        else if (ps->numpy_variants == 2)
            snprintf(pr_row->label, sizeof pr_row->label,
                     "numpy matmul+softmax (OPENBLAS_* %s)",
                     jobs[j].unset ? "unset" : "as-is");
        else
            snprintf(pr_row->label, sizeof pr_row->label,
                     "numpy matmul+softmax");
        if (!pr.ok) {
            snprintf(pnotes[j], sizeof pnotes[j], "failed: %s", pr.error);
            pr_row->note = pnotes[j];
            if (pr.fatal && !is_torch) {
                ps->numpy_ok = 0;
                util_scopy(ps->numpy_why, sizeof ps->numpy_why, pr.error);
            }
            continue;
        }
        if (!is_torch) {
            util_scopy(ps->blas_seen[jobs[j].unset], sizeof ps->blas_seen[0],
                       pr.blas);
            util_scopy(ps->numpy_impl, sizeof ps->numpy_impl, pr.impl);
        }
        pr_row->ok = 1;
        pr_row->median_ms = pr.median_ms;
        pr_row->min_ms = pr.min_ms;
        if (out_path && python_peer_read(out_path, o_peer, cnt) == 0)
            pr_row->diff = util_max_abs_diff(o_lib, o_peer, cnt);
        else
            pr_row->diff = NAN;
    }

    (void)n_notes;
    for (int i = 0; i < n_rows; i++)
        report_row(n, causal, i == 0, &rows[i], lib_ms, n);
    fflush(stdout);

    if (opt_has(opt, IMPL_CL_DECODE)) {
        if (!ci->ctx[IMPL_CL_DECODE]) {
            row r;
            memset(&r, 0, sizeof r);
            r.impl = "cl";
            r.id = IMPL_CL_DECODE;
            snprintf(r.label, sizeof r.label, "libattn cl-decode seq_q=%d",
                     opt->seq_q);
            r.note = ci->why[IMPL_CL_DECODE];
            report_row(n, causal, 0, &r, 0, opt->seq_q);
        } else {
            decode_case(opt, ctx, ci, n, causal, q, k, v, o_peer);
        }
        fflush(stdout);
    }
    return 0;
}
