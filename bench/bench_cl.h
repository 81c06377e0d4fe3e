/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-bench's OpenCL helpers (resident.c), shared with the CLBlast peer:
 * the device libattn picks for a spec, and a gate that times a run of
 * commands by OpenCL event profiling.  Built only with OpenCL
 * (ATTN_BENCH_HAVE_CL).
 */
#ifndef ATTN_BENCH_BENCH_CL_H
#define ATTN_BENCH_BENCH_CL_H

#include <attn/attn_cl.h>

#include <stddef.h>

/* The first OpenCL device that libattn selects for spec (as
 * attn_options.device; fallback off).  Returns 0, or -1 and why. */
int bench_cl_device(const char *spec, cl_device_id *out, char *why,
                    size_t why_len);

/* Holds a run of commands back until all are enqueued, so that the device
 * runs them back to back: a user event, and a 4-byte fill of mark waiting
 * on it whose end is the start of the timed run.  The queue needs
 * CL_QUEUE_PROFILING_ENABLE and must be in order. */
typedef struct bench_gate {
    cl_event user, start;
} bench_gate;

/* Returns 0, or -1 and why (nothing is left held). */
int bench_gate_open(cl_context ctx, cl_command_queue queue, cl_mem mark,
                    bench_gate *g, char *why, size_t why_len);
/* Lets the commands run, waits for last (the run's final event, released
 * here) and gives the milliseconds from the end of the gate's fill to the
 * end of last.  Returns 0, or -1 and why. */
int bench_gate_close(bench_gate *g, cl_event last, double *ms, char *why,
                     size_t why_len);
/* Lets the commands run without timing them (after a failed enqueue). */
void bench_gate_abort(bench_gate *g);

#endif
