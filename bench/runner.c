/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One case of attn-bench: every in-process implementation asked for is
 * prepared and warmed up, then their timed runs are interleaved (native,
 * cl-*, CLBlast, ggml, openvino, onnxruntime, native, ...; entries.c) so
 * that load changes on a shared machine hit all of them alike; then the
 * other python peers run as subprocesses (runner_py.c).  Every output is
 * compared with native's, native's with the f64 reference.  The square case
 * (seq_q = seq_kv = N) and the decode case (seq_q = --seq-q) run through the
 * same code with different implementations.
 */
#include "runner.h"

#ifdef ATTN_BENCH_HAVE_CLBLAST
#include "peer_clblast.h"
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Adds a libattn entry (native, cl-*, cl:<variant>): asks which kernel
 * variant the shape runs first, so that a variant that does not take it
 * shows as a skipped row. */
static void add_attn(timed_entry *es, int *n_es, case_rows *cr,
                     const case_inputs *in, int causal, impl_id id,
                     const char *key, const char *label, attn_context *ctx,
                     const attn_sdpa_desc *d, void *o, size_t o_bytes,
                     const res_inputs *ri, int reps)
{
    row *r = case_row_add(cr, in, causal, id,
                          id == IMPL_NATIVE ? "libattn" : "cl", label);
    if (!r)
        return;
    if (key)
        util_scopy(r->key, sizeof r->key, key);
    attn_device_info di;
    memset(&di, 0, sizeof di);
    attn_context_device(ctx, &di);
    util_scopy(r->device, sizeof r->device, di.name);
    attn_status st = attn_sdpa_kernel(ctx, d, r->kernel, sizeof r->kernel);
    if (st != ATTN_OK) {
        r->kernel[0] = '\0';
        case_row_note(cr, r, "%s: %.500s",
                      st == ATTN_ERR_UNSUPPORTED ? "unsupported"
                                                 : attn_status_string(st),
                      attn_context_last_error(ctx));
        return;
    }
    attn_precision ran = ATTN_PRECISION_EXACT;
    if ((st = attn_sdpa_precision(ctx, d, NULL, &ran)) != ATTN_OK) {
        case_row_note(cr, r, "%s: %.500s", attn_status_string(st),
                      attn_context_last_error(ctx));
        return;
    }
    util_scopy(r->precision, sizeof r->precision, attn_precision_name(ran));
    timed_entry *e = &es[*n_es];
    memset(e, 0, sizeof *e);
    e->r = r;
    e->ctx = ctx;
    e->d = d;
    e->reps = reps;
    e->kind = ri && id != IMPL_NATIVE ? EX_RESIDENT : EX_ATTN;
    /* host outputs hold floats: binary16 results are widened in place */
    e->o = o ? o : malloc(o_bytes * (d->dtype == ATTN_F32 ? 1 : 2));
    e->own_o = o == NULL;
    if (!e->o) {
        r->note = "out of memory";
        return;
    }
    if (e->kind == EX_RESIDENT) {
        r->timing = "event";
        if (res_buf_create(ctx, o_bytes, NULL, &e->dev_o, e->why,
                           sizeof e->why) != 0) {
            case_row_note(cr, r, "%s", e->why);
            entry_free(e);
            return;
        }
    }
    (*n_es)++;
}

#ifdef ATTN_BENCH_HAVE_CLBLAST
static clblast_peer *clblast_get(const options *opt, peer_state *ps)
{
    if (!ps->clblast_tried) {
        ps->clblast_tried = 1;
        clblast_peer *p = NULL;
        if (clblast_peer_open(&p, opt->device, opt->resident, ps->clblast_why,
                              sizeof ps->clblast_why) == 0) {
            ps->clblast = p;
            printf("# clblast: CLBlast %s on %s%s\n", "SgemmStridedBatched",
                   clblast_peer_device(p),
                   opt->resident ? ", device buffers, event timing" : "");
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

static const impl_id CL_SQUARE[] = {IMPL_CL_UNFUSED, IMPL_CL_FUSED,
                                    IMPL_CL_Q2,      IMPL_CL_Q4,
                                    IMPL_CL_2DEV,    IMPL_CL_AUTO};

/* Adds the CLBlast entry of a square case. */
static void add_clblast(const options *opt, peer_state *ps, timed_entry *es,
                        int *n_es, case_rows *cr, const case_inputs *in,
                        int causal, int reps)
{
    row *r = case_row_add(cr, in, causal, IMPL_CLBLAST, "clblast",
                          "CLBlast gemm+softmax+gemm");
    if (!r)
        return;
    double s_mib = impls_s_bytes(&in->s) / 1048576.0;
#ifdef ATTN_BENCH_HAVE_CLBLAST
    clblast_peer *p;
    if (in->s.kv_heads != in->s.heads) {
        r->note = "skipped: this peer takes kv heads = heads (no GQA)";
    } else if (s_mib > opt->max_mem_mib) {
        case_row_note(cr, r,
                      "skipped: S [%d, N, N] f32 = %.0f MiB > --max-mem %.0f "
                      "MiB",
                      in->s.batch * in->s.heads, s_mib, opt->max_mem_mib);
    } else if (!(p = clblast_get(opt, ps))) {
        r->note = ps->clblast_why;
    } else {
        util_scopy(r->device, sizeof r->device, clblast_peer_device(p));
        timed_entry *e = &es[*n_es];
        memset(e, 0, sizeof *e);
        e->kind = EX_CLBLAST;
        e->r = r;
        e->reps = reps;
        e->resident_cb = opt->resident;
        r->timing = opt->resident ? "event" : "host";
        size_t cnt = shape_q_count(&in->s);
        e->o = malloc(cnt * sizeof(float));
        e->own_o = 1;
        clblast_case *cc = NULL;
        if (!e->o) {
            r->note = "out of memory";
            entry_free(e);
        } else if (clblast_case_prepare(p, in->s.batch * in->s.heads,
                                        in->s.seq_q, in->s.head_dim, causal,
                                        in->q, in->k, in->v, e->o, &cc, e->why,
                                        sizeof e->why) != 0) {
            case_row_note(cr, r, "%s", e->why);
            entry_free(e);
        } else {
            e->cc = cc;
            (*n_es)++;
        }
    }
#else
    (void)opt;
    (void)ps;
    (void)es;
    (void)n_es;
    (void)reps;
    (void)s_mib;
    r->note = "not built (CLBlast or OpenCL not found at configure time)";
#endif
}

/* Adds the ggml entries of a square case (one per K/V type). */
static void add_ggml(const options *opt, peer_state *ps, timed_entry *es,
                     int *n_es, case_rows *cr, const case_inputs *in,
                     int causal, int reps)
{
    for (int t = 0; t < 2; t++) {
        if (!ps->g || !(opt->ggml_kv & (1 << t)))
            continue;
        char lab[96];
        snprintf(lab, sizeof lab, "ggml flash_attn_ext (K/V %s)",
                 t == 0 ? "f16" : "f32");
        row *r = case_row_add(cr, in, causal, IMPL_GGML, "ggml", lab);
        if (!r)
            return;
        util_scopy(r->device, sizeof r->device, "CPU");
        if (!ps->ggml_ok[t]) {
            r->note = ps->ggml_why[t];
            continue;
        }
        if (in->s.kv_heads != in->s.heads) {
            r->note = "skipped: this peer takes kv heads = heads (no GQA)";
            continue;
        }
        timed_entry *e = &es[*n_es];
        memset(e, 0, sizeof *e);
        if (ggml_peer_prepare(ps->g, in->s.batch * in->s.heads, in->s.seq_q,
                              in->s.head_dim, causal, t == 0, opt->threads,
                              in->q, in->k, in->v, &e->gc, e->why,
                              sizeof e->why) != 0) {
            case_row_note(cr, r, "%s", e->why);
            memset(e, 0, sizeof *e);
            continue;
        }
        e->kind = EX_GGML;
        e->r = r;
        e->reps = reps;
        (*n_es)++;
    }
}

/* The device inputs of a resident case, on the first resident context. */
static int res_inputs_make(const cl_impls *ci, const case_inputs *in,
                           attn_context *ctx, res_inputs *ri, char *why,
                           size_t why_len)
{
    size_t el = in->f16 ? 2 : 4;
    memset(ri, 0, sizeof *ri);
    ri->res = ci->res;
    if (res_buf_create(ctx, shape_q_count(&in->s) * el, in->lq, &ri->q, why,
                       why_len) != 0 ||
        res_buf_create(ctx, shape_kv_count(&in->s) * el, in->lk, &ri->k, why,
                       why_len) != 0 ||
        res_buf_create(ctx, shape_kv_count(&in->s) * el, in->lv, &ri->v, why,
                       why_len) != 0)
        return -1;
    return 0;
}

static void res_inputs_free(res_inputs *ri)
{
    res_buf_free(ri->q);
    res_buf_free(ri->k);
    res_buf_free(ri->v);
    memset(ri, 0, sizeof *ri);
}

/* The libattn OpenCL impls of the case: their contexts, keys and labels. */
typedef struct cl_want {
    impl_id id;
    attn_context *ctx;
    const char *why;
    char key[48], label[96];
} cl_want;

static int cl_wanted(const options *opt, const cl_impls *ci,
                     const case_inputs *in, cl_want *w)
{
    int n = 0;
    char sq[32] = "";
    if (in->decode)
        snprintf(sq, sizeof sq, " seq_q=%d", in->s.seq_q);
    if (in->decode && opt_has(opt, IMPL_CL_DECODE)) {
        w[n].id = IMPL_CL_DECODE;
        w[n].ctx = ci->ctx[IMPL_CL_DECODE];
        w[n].why = ci->why[IMPL_CL_DECODE];
        util_scopy(w[n].key, sizeof w[n].key, "cl-decode");
        snprintf(w[n].label, sizeof w[n].label, "libattn cl-decode%s (AUTO)",
                 sq);
        n++;
    }
    for (size_t i = 0; !in->decode && i < sizeof CL_SQUARE / sizeof *CL_SQUARE;
         i++) {
        impl_id id = CL_SQUARE[i];
        if (!opt_has(opt, id))
            continue;
        w[n].id = id;
        w[n].ctx = ci->ctx[id];
        w[n].why = ci->why[id];
        util_scopy(w[n].key, sizeof w[n].key, impl_name(id));
        snprintf(w[n].label, sizeof w[n].label, "libattn %s", impl_name(id));
        n++;
    }
    for (int j = 0; j < opt->n_kernels; j++) {
        w[n].id = IMPL_CL_KERNEL;
        w[n].ctx = ci->kctx[j];
        w[n].why = ci->kwhy[j];
        snprintf(w[n].key, sizeof w[n].key, "cl:%s", opt->kernels[j]);
        snprintf(w[n].label, sizeof w[n].label, "libattn cl:%s%s",
                 opt->kernels[j], sq);
        n++;
    }
    return n;
}

int runner_case(const options *opt, attn_context *ctx, const cl_impls *ci,
                peer_state *ps, const case_inputs *in, int causal, float *o_lib,
                float *o_peer)
{
    /* many cheap decode calls: more reps than the square case */
    int reps = in->decode ? (opt->reps ? opt->reps : 31)
                          : options_reps(opt, in->s.seq_kv);
    int nat_reps = opt->native_reps ? opt->native_reps : reps;
    size_t cnt = shape_q_count(&in->s);
    size_t o_bytes = cnt * (in->f16 ? 2 : 4);
    double s_mib = impls_s_bytes(&in->s) / 1048576.0;
    attn_sdpa_desc d;
    shape_desc(&in->s, causal, in->f16, &d);

    static case_rows cr;
    timed_entry es[MAX_ROWS];
    int n_es = 0;
    memset(&cr, 0, sizeof cr);
    memset(es, 0, sizeof es);
    res_inputs ri;
    memset(&ri, 0, sizeof ri);
    int have_ri = 0;

    char lab[96];
    snprintf(lab, sizeof lab, "libattn native");
    if (in->decode)
        snprintf(lab, sizeof lab, "libattn native seq_q=%d", in->s.seq_q);
    add_attn(es, &n_es, &cr, in, causal, IMPL_NATIVE, NULL, lab, ctx, &d, o_lib,
             o_bytes, NULL, nat_reps);

    cl_want want[IMPL_COUNT + MAX_KERNELS];
    int n_want = cl_wanted(opt, ci, in, want);
    for (int i = 0; i < n_want; i++) {
        cl_want *w = &want[i];
        if (!w->ctx) {
            row *r = case_row_add(&cr, in, causal, w->id, "cl", w->label);
            if (r) {
                util_scopy(r->key, sizeof r->key, w->key);
                r->note = w->why;
            }
            continue;
        }
        int unfused =
            w->id == IMPL_CL_UNFUSED || strcmp(w->key, "cl:unfused") == 0;
        if (unfused && s_mib > opt->max_mem_mib) {
            row *r = case_row_add(&cr, in, causal, w->id, "cl", w->label);
            if (r) {
                util_scopy(r->key, sizeof r->key, w->key);
                case_row_note(&cr, r,
                              "skipped: S [%d, N, N] f32 = %.0f MiB > "
                              "--max-mem %.0f MiB",
                              in->s.batch * in->s.heads, s_mib,
                              opt->max_mem_mib);
            }
            continue;
        }
        if (ci->res && !have_ri) {
            char why[400];
            if (res_inputs_make(ci, in, w->ctx, &ri, why, sizeof why) != 0) {
                res_inputs_free(&ri);
                row *r = case_row_add(&cr, in, causal, w->id, "cl", w->label);
                if (r) {
                    util_scopy(r->key, sizeof r->key, w->key);
                    case_row_note(&cr, r, "inputs on the device: %s", why);
                }
                continue;
            }
            have_ri = 1;
        }
        add_attn(es, &n_es, &cr, in, causal, w->id, w->key, w->label, w->ctx,
                 &d, NULL, o_bytes, ci->res ? &ri : NULL, reps);
    }

    if (!in->decode && opt_has(opt, IMPL_CLBLAST))
        add_clblast(opt, ps, es, &n_es, &cr, in, causal, reps);
    if (!in->decode)
        add_ggml(opt, ps, es, &n_es, &cr, in, causal, reps);
    runner_runtimes_add(opt, ps, es, &n_es, &cr, in, causal, reps);

    time_entries(opt, es, n_es, have_ri ? &ri : NULL, in);

    /* outputs back from the device */
    for (int i = 0; i < n_es; i++) {
        timed_entry *e = &es[i];
        if (!e->r->ok)
            continue;
        int rc = 0;
        if (e->kind == EX_RESIDENT)
            rc = res_buf_read(ci->res, e->dev_o, e->o, o_bytes, e->why,
                              sizeof e->why);
#ifdef ATTN_BENCH_HAVE_CLBLAST
        else if (e->resident_cb)
            rc = clblast_case_read(e->cc, e->why, sizeof e->why);
#endif
        if (rc != 0) {
            e->r->ok = 0;
            e->r->note = e->why;
        }
    }
    /* diffs: native against the f64 reference, the rest against native */
    for (int i = 0; i < n_es; i++) {
        timed_entry *e = &es[i];
        if (!e->r->ok || e->kind == EX_SERVE) /* checked before timing */
            continue;
        if (in->f16 && (e->kind == EX_ATTN || e->kind == EX_RESIDENT) &&
            f16_widen(e->o, cnt, in->f16) != 0) {
            e->r->diff = NAN;
            continue;
        }
        if (e->r->id == IMPL_NATIVE) {
            e->r->diff = util_check_rows(&in->s, in->q, in->k, in->v, o_lib,
                                         causal, in->s.seq_q >= 4096 ? 8 : 16);
        } else if (e->kind == EX_GGML) {
            ggml_peer_output(e->gc, o_peer);
            e->r->diff = util_max_abs_diff(o_lib, o_peer, cnt);
        } else {
            e->r->diff = util_max_abs_diff(o_lib, e->o, cnt);
        }
    }
    double lib_ms = cr.r[0].ok ? cr.r[0].median_ms : 0;
    int lib_ok = cr.r[0].ok;
    /* A failed row's reason lives in its entry, which entry_free clears:
     * the row keeps a copy. */
    for (int i = 0; i < n_es; i++)
        if (es[i].r && es[i].r->note == es[i].why)
            case_row_note(&cr, es[i].r, "%s", es[i].why);
    for (int i = 0; i < n_es; i++)
        entry_free(&es[i]);
    if (have_ri)
        res_inputs_free(&ri);
    if (!lib_ok) {
        fprintf(stderr, "attn-bench: native (N=%d): %s\n", in->s.seq_kv,
                cr.r[0].note ? cr.r[0].note : "failed");
        return -1;
    }

    runner_python(opt, ps, in, causal, reps, o_lib, o_peer, &cr);

    for (int i = 0; i < cr.n; i++)
        report_row(opt, i == 0, &cr.r[i], lib_ms);
    fflush(stdout);
    return 0;
}
