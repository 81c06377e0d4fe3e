/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The library's live OpenCL objects, counted by link-time wrappers
 * (-Wl,--wrap=SYMBOL for each of ATTN_CL_COUNT_WRAPPED in
 * tests/opencl/CMakeLists.txt): cl_mem, cl_kernel and cl_program
 * references (created, retained, released) and cl_event references (the
 * events enqueues, user events, markers and CLBlast's GEMMs hand back,
 * retained, released).  The fault suites compare the counts before and
 * after a failed call: a failure must leave no object behind.
 */
#ifndef ATTN_TESTS_CL_COUNT_H
#define ATTN_TESTS_CL_COUNT_H

typedef struct cl_live {
    long mem, kernel, program, event;
} cl_live;

/* The counts now. */
cl_live cl_live_now(void);
/* 1 when the counts are those of a; else prints both and returns 0. */
int cl_live_same(cl_live a);

#endif
