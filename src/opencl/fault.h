/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fault injection for the OpenCL backend: failures that look exactly like
 * the driver's, at the calls where a device can fail, so that tests can
 * walk every error path (release of what was created, moving work to
 * another device, the native fallback, outputs left untouched).  Not
 * installed.
 *
 * Compiled in only with the CMake option ATTN_FAULT_INJECTION (a test
 * build); otherwise ATTN_CL(fn) is plain fn and nothing here exists.
 *
 * Points, and what an injected fault returns:
 *   build    clBuildProgram (source builds and cached / offline binaries)
 *            -> CL_BUILD_PROGRAM_FAILURE
 *   alloc    clCreateBuffer -> NULL, CL_MEM_OBJECT_ALLOCATION_FAILURE
 *   enqueue  clEnqueueNDRangeKernel and the CLBlast GEMMs of the
 *            multi-head layer -> CL_OUT_OF_RESOURCES
 *   read     clEnqueueReadBuffer, clEnqueueReadBufferRect
 *            -> CL_OUT_OF_RESOURCES
 *   write    clEnqueueWriteBuffer, clEnqueueWriteBufferRect,
 *            clEnqueueCopyBufferRect, clEnqueueFillBuffer (the padding
 *            rows of q_start on the caller's buffers) -> CL_OUT_OF_RESOURCES
 * A fault (unless late, "!" below) does not make the call: nothing is
 * created or enqueued.
 *
 * The spec (environment variable ATTN_FAULTS, or attn_fault_set):
 *
 *   spec     = item { "," item }
 *   item     = rule | "seed=" N
 *   rule     = point { modifier }
 *   point    = "build" | "alloc" | "enqueue" | "read" | "write"
 *   modifier = "@" N         only the N-th call (1-based) at this point
 *            | "@" N "+"     the N-th call and every later one
 *            | "%" P         each (selected) call with probability P in
 *                            [0, 1], drawn from a generator seeded by
 *                            "seed=" (default 1): the same spec fails the
 *                            same calls on every run
 *            | ":dev" D      count and fail only calls on OpenCL device D
 *                            (its position in its platform's device list,
 *                            clGetDeviceIDs order)
 *            | "!"           late: the command is enqueued and fails when
 *                            it would run (its event ends with a negative
 *                            status), as a device fault during execution
 *                            does; the failure is delivered from the
 *                            library's thread (attn_fault_deliver) once
 *                            everything before the command is done;
 *                            enqueue, read and write (blocking calls and
 *                            CLBlast calls fail at once)
 *
 * A rule without "@" or "%" fails every call at its point.  Counts are per
 * rule and start when the spec is set.  Examples:
 *   ATTN_FAULTS=alloc@3                the third buffer allocation fails
 *   ATTN_FAULTS=enqueue%0.2,seed=7     each launch fails with p = 0.2
 *   ATTN_FAULTS=enqueue:dev1           every launch on device 1 fails
 *   ATTN_FAULTS=read!@2+,build         reads from the second on fail when
 *                                      they run; every build fails
 * An invalid ATTN_FAULTS is reported once on stderr and ignored.
 */
#ifndef ATTN_OPENCL_FAULT_H
#define ATTN_OPENCL_FAULT_H

#include "opencl/discovery.h"

typedef enum attn_fault_point {
    ATTN_FAULT_BUILD = 0,
    ATTN_FAULT_ALLOC,
    ATTN_FAULT_ENQUEUE,
    ATTN_FAULT_READ,
    ATTN_FAULT_WRITE,
    ATTN_FAULT_POINTS
} attn_fault_point;

#ifdef ATTN_FAULT_INJECTION

/* ATTN_CL(clCreateBuffer)(...) calls the OpenCL function through the fault
 * layer (same arguments, same results). */
#define ATTN_CL(fn)              attn_fault_##fn
#define ATTN_FAULT_DELIVER(wait) attn_fault_deliver(wait)

/* Replaces the active spec (and ATTN_FAULTS) with spec; NULL or "" injects
 * nothing.  Resets every count.  Errors: ATTN_ERR_INVALID_ARGUMENT (a
 * sentence in err; the previous spec stays). */
attn_status attn_fault_set(const char *spec, attn_err *err);
/* Reads ATTN_FAULTS again (as at start-up) and resets every count. */
void attn_fault_reset(void);
/* Calls seen at point p (on every device) and faults injected there since
 * the spec was set. */
unsigned long attn_fault_calls(attn_fault_point p);
unsigned long attn_fault_fired(attn_fault_point p);

/* Fails the commands of the late faults armed so far whose predecessors
 * are done; with wait, first waits for the predecessors of every one.
 * The library calls it (ATTN_FAULT_DELIVER) where a launch opens its gate
 * (wait 0), and before it waits for the device or finishes a queue
 * (wait 1); a caller of attn_sdpa_cl calls it once the events it made the
 * call wait for are complete. */
void attn_fault_deliver(int wait);
/* Late faults armed and not delivered yet. */
unsigned long attn_fault_pending(void);

/* A call at point p on dev that the caller makes itself: CL_SUCCESS, or
 * the error to fail it with (late faults are immediate here). */
cl_int attn_fault_code(attn_fault_point p, cl_device_id dev);

cl_int attn_fault_clBuildProgram(cl_program prog, cl_uint n_dev,
                                 const cl_device_id *devs, const char *options,
                                 void(CL_CALLBACK *notify)(cl_program, void *),
                                 void *user);
cl_mem attn_fault_clCreateBuffer(cl_context context, cl_mem_flags flags,
                                 size_t size, void *host, cl_int *rc);
cl_int attn_fault_clEnqueueNDRangeKernel(cl_command_queue q, cl_kernel k,
                                         cl_uint dims, const size_t *offset,
                                         const size_t *global,
                                         const size_t *local, cl_uint n_wait,
                                         const cl_event *wait, cl_event *ev);
cl_int attn_fault_clEnqueueReadBuffer(cl_command_queue q, cl_mem buf,
                                      cl_bool blocking, size_t offset,
                                      size_t size, void *ptr, cl_uint n_wait,
                                      const cl_event *wait, cl_event *ev);
cl_int attn_fault_clEnqueueWriteBuffer(cl_command_queue q, cl_mem buf,
                                       cl_bool blocking, size_t offset,
                                       size_t size, const void *ptr,
                                       cl_uint n_wait, const cl_event *wait,
                                       cl_event *ev);
cl_int attn_fault_clEnqueueWriteBufferRect(
    cl_command_queue q, cl_mem buf, cl_bool blocking, const size_t *buf_origin,
    const size_t *host_origin, const size_t *region, size_t buf_row,
    size_t buf_slice, size_t host_row, size_t host_slice, const void *ptr,
    cl_uint n_wait, const cl_event *wait, cl_event *ev);
cl_int attn_fault_clEnqueueCopyBufferRect(cl_command_queue q, cl_mem src,
                                          cl_mem dst, const size_t *src_origin,
                                          const size_t *dst_origin,
                                          const size_t *region, size_t src_row,
                                          size_t src_slice, size_t dst_row,
                                          size_t dst_slice, cl_uint n_wait,
                                          const cl_event *wait, cl_event *ev);
cl_int attn_fault_clEnqueueReadBufferRect(
    cl_command_queue q, cl_mem buf, cl_bool blocking, const size_t *buf_origin,
    const size_t *host_origin, const size_t *region, size_t buf_row,
    size_t buf_slice, size_t host_row, size_t host_slice, void *ptr,
    cl_uint n_wait, const cl_event *wait, cl_event *ev);
cl_int attn_fault_clEnqueueFillBuffer(cl_command_queue q, cl_mem buf,
                                      const void *pattern, size_t pattern_size,
                                      size_t offset, size_t size,
                                      cl_uint n_wait, const cl_event *wait,
                                      cl_event *ev);

/* Test hooks on a context (src/api/testing.c).  attn_fault_set_mem_limits
 * overrides the global memory and largest allocation recorded for device
 * i (0 = the primary) of ctx's OpenCL backend, which the size checks
 * compare calls with; 0 keeps a value.  Errors: ATTN_ERR_INVALID_ARGUMENT
 * (no OpenCL backend, no device i). */
attn_status attn_fault_set_mem_limits(attn_context *ctx, int device,
                                      uint64_t global_mem, uint64_t max_alloc);
/* Releases the idle buffers of the pools of ctx's devices, so that the
 * next call allocates what it needs (and each allocation can be failed);
 * returns how many. */
size_t attn_fault_trim(attn_context *ctx);
/* Device buffers ctx's pools created and reused so far, and the plans its
 * cache made and found. */
void attn_fault_counts(attn_context *ctx, unsigned long *created,
                       unsigned long *reused, unsigned long *plans_made,
                       unsigned long *plans_hit);

#else

#define ATTN_CL(fn)              fn
#define ATTN_FAULT_DELIVER(wait) ((void)0)

#endif /* ATTN_FAULT_INJECTION */

#endif /* ATTN_OPENCL_FAULT_H */
