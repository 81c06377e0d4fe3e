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

#endif
