/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The parts of one attn-bench case shared by runner.c (the in-process
 * implementations, timed side by side) and runner_py.c (the python peers,
 * run as subprocesses).
 */
#ifndef ATTN_BENCH_RUNNER_H
#define ATTN_BENCH_RUNNER_H

#include "bench.h"

enum { MAX_ROWS = 48 };

/* The rows of one case, in the order they are printed. */
typedef struct case_rows {
    row r[MAX_ROWS];
    char note[MAX_ROWS][600]; /* note storage of row i */
    int n;
} case_rows;

/* How an entry of the timed loop runs. */
typedef enum {
    EX_ATTN,     /* attn_sdpa on host pointers */
    EX_RESIDENT, /* attn_sdpa_cl_buffers, event timing (resident.c) */
    EX_GGML,
    EX_CLBLAST,
    EX_SERVE /* a python peer kept up for the case (peer_serve.c) */
} exec_kind;

/* One implementation being timed. */
typedef struct timed_entry {
    exec_kind kind;
    row *r;
    attn_context *ctx; /* EX_ATTN, EX_RESIDENT */
    const attn_sdpa_desc *d;
    void *o; /* EX_ATTN, EX_CLBLAST: where the output lands */
    int own_o;
    res_buf *dev_o; /* EX_RESIDENT: the output on the device */
    ggml_peer_case *gc;
    void *cc;        /* clblast_case * */
    int resident_cb; /* EX_CLBLAST on device buffers */
    serve_peer *sp;  /* EX_SERVE */
    int reps;
    double *t, *w; /* per timed run: the time shown, the host wall time */
    int alive;
    char why[400];
} timed_entry;

/* The device inputs of a resident case. */
typedef struct res_inputs {
    resident *res;
    res_buf *q, *k, *v;
} res_inputs;

/* A new row (zeroed, labelled, keyed with impl_name(id)); NULL when the
 * case already holds MAX_ROWS. */
row *case_row_add(case_rows *cr, const case_inputs *in, int causal, impl_id id,
                  const char *impl, const char *label);
/* Sets the note of row r from a format, stored in cr. */
void case_row_note(case_rows *cr, row *r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The python peers of the case (numpy, torch, torch-cuda), rows appended
 * to cr; o_lib: native's output as float, o_peer: scratch of as many
 * floats. */
void runner_python(const options *opt, peer_state *ps, const case_inputs *in,
                   int causal, int reps, const float *o_lib, float *o_peer,
                   case_rows *cr);

/* ---- entries.c ---- */

/* Releases what an entry holds (its output, ggml or CLBlast case, python
 * peer) and zeroes it. */
void entry_free(timed_entry *e);
/* Warm-up runs of every entry; then, when the case has python peers kept
 * up (EX_SERVE), native's output (es[0]; run once more when there was no
 * warm-up) and theirs are compared before they are timed; then
 * interleaved rounds (an entry runs in round r while r < its reps).  Fills
 * each alive entry's row with its median and min, or its note when it
 * failed. */
void time_entries(const options *opt, timed_entry *es, int n_es,
                  const res_inputs *ri, const case_inputs *in);
/* o holds cnt binary16 values in its first half: makes them floats.  0, or
 * -1 when out of memory. */
int f16_widen(void *o, size_t cnt, int kind);

/* ---- runner_rt.c ---- */

/* Adds the rows of the openvino and onnxruntime peers to cr and, for those
 * that take the case, an EX_SERVE entry whose peer is started (inputs
 * read, model compiled); rows that cannot run say why. */
void runner_runtimes_add(const options *opt, const peer_state *ps,
                         timed_entry *es, int *n_es, case_rows *cr,
                         const case_inputs *in, int causal, int reps);
/* Before timing: every alive EX_SERVE entry makes one call's output and
 * it is compared with ref (native's, as floats); beyond the tolerance
 * the entry is not timed and its row says so.  The difference is kept in
 * the row. */
void runner_runtimes_check(const case_inputs *in, timed_entry *es, int n_es,
                           const float *ref);

#endif
