/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The backend interface: what the plan and the scheduler ask of a backend
 * (native, OpenCL), as structs of function pointers and types free of any
 * device API.  The backends implement it; the layers above call through
 * it and never include a backend's own headers.  Not installed.
 *
 * Every hook may be called from several threads at once; a backend guards
 * its own shared state.  Hooks see only validated descriptors.  On failure
 * a hook writes a sentence into err and leaves the outputs untouched.
 */
#ifndef ATTN_CORE_BACKEND_H
#define ATTN_CORE_BACKEND_H

#include <stdint.h>

#include "core/core.h"

/* A group: a run of (batch item, kv head) units of a call that one queue
 * computes, as a sub-descriptor and slices of the call's tensors
 * (src/sched/split.c cuts them). */
typedef struct attn_group {
    attn_sdpa_desc d; /* the sub-call; mask and weight pointers shifted */
    int slot;         /* which queue (of which device) runs it */
    size_t q_off, k_off, v_off, o_off, lse_off; /* element offsets */
    size_t q_len, k_len, v_len, o_len, lse_len; /* elements */
    /* Where d's pointers sit in the call's arrays (elements), so that a
     * kept group can be pointed at another call's arrays. */
    size_t bias_off, kv_len_off, addw_off;
} attn_group;

/* A backend's launch state for one group shape on one device, prepared
 * before anything is allocated (the kernel variant, built and fitted, and
 * its launch geometry).  The bytes are the backend's; the sizes tell the
 * scheduler what the group needs on the device besides the tensors. */
#define ATTN_PREP_BYTES 160
typedef struct attn_prepared {
    int variant;              /* the backend's variant index */
    const char *name;         /* the variant's name (static storage) */
    uint64_t scratch;         /* device bytes of the group's scratch buffer */
    uint64_t inputs;          /* device bytes of its copies of mask.bias,
                                 mask.kv_len and additive_w */
    uint64_t largest;         /* the largest of those buffers */
    attn_precision precision; /* what its products compute at (attn.h) */
    _Alignas(8) unsigned char data[ATTN_PREP_BYTES];
} attn_prepared;

/* Uploads of one group: q, k, v and the copies of mask.bias, mask.kv_len
 * and additive_w. */
#define ATTN_EXEC_UPLOADS 6

/* An event of a device backend (a cl_event for OpenCL). */
typedef struct attn_event attn_event;

/* A device backend's state for one call on one device (its tensors). */
typedef struct attn_dev_call attn_dev_call;

typedef struct attn_backend attn_backend;

/* The part of a device backend the scheduler drives: devices, each with
 * in-order queues, that run groups.  A call runs in rounds (src/sched/
 * run.c): for every group, uploads and kernels; then waits; then the reads
 * of the results behind one gate per device, opened only when every kernel
 * succeeded, so that o and lse are written only by a call that succeeds.
 * Events handed out are released by the scheduler (event_release). */
typedef struct attn_exec_ops {
    int (*n_devices)(const attn_backend *b);
    int (*n_queues)(const attn_backend *b, int dev);
    double (*weight)(const attn_backend *b, int dev); /* relative speed */
    const attn_device_info *(*info)(const attn_backend *b, int dev);
    /* Changes whenever a prepared state may be stale (tuning changed). */
    unsigned (*epoch)(const attn_backend *b);

    /* The precision the context permits the kernels' products (attn.h),
     * told once before the backend is shared; NULL: kernels compute as
     * EXACT. */
    void (*ask)(attn_backend *b, attn_precision asked);

    /* Chooses and readies the kernel variant for d on device dev.
     * Errors: ATTN_ERR_UNSUPPORTED (no variant takes the shape, or the
     * forced one does not), ATTN_ERR_BUILD_FAILED, ATTN_ERR_DEVICE,
     * ATTN_ERR_OUT_OF_MEMORY. */
    attn_status (*prepare)(attn_backend *b, int dev, const attn_sdpa_desc *d,
                           attn_prepared *out, attn_err *err);

    /* Opens call c on device dev: checks that `total` bytes (largest in
     * one buffer) fit and gets its tensors (sizes sz, lse when c has it;
     * q, k and v that overlap in host memory, as a fused QKV projection's,
     * may share one device copy).  *out is set even on failure when
     * something must be closed. */
    attn_status (*call_open)(attn_backend *b, int dev,
                             const attn_sdpa_bytes *sz, const attn_sdpa_call *c,
                             uint64_t total, uint64_t largest,
                             attn_dev_call **out, attn_err *err);
    /* Enqueues group g's uploads (events in up[ATTN_EXEC_UPLOADS], NULL
     * where none) and kernels (the last one's event in *done) on queue
     * `queue` of the call's device.  Events made before a failure are
     * handed out too. */
    attn_status (*compute)(attn_dev_call *dc, int queue, const attn_group *g,
                           const attn_prepared *p, const attn_sdpa_call *c,
                           attn_event **up, attn_event **done, attn_err *err);
    /* A gate that holds the device's reads back; NULL on failure. */
    attn_event *(*gate_new)(attn_dev_call *dc, attn_err *err);
    /* Opens (ok) or fails the gate; 0 when an open gate could not be set. */
    int (*gate_set)(attn_event *gate, int ok);
    /* Enqueues the reads of g's slices of o and lse behind gate. */
    attn_status (*read)(attn_dev_call *dc, int queue, const attn_group *g,
                        const attn_sdpa_call *c, attn_event *gate,
                        attn_event **rd, attn_err *err);
    /* After the reads of the call's groups on this device succeeded:
     * puts what they read where it belongs (o, lse); NULL when the reads
     * write there directly. */
    void (*collect)(attn_dev_call *dc, const attn_group *g,
                    const attn_sdpa_call *c);
    /* Waits for ev; its failure as a status (what names it). */
    attn_status (*wait)(attn_dev_call *dc, attn_event *ev, const char *what,
                        attn_err *err);
    void (*event_release)(attn_event *ev);
    /* Finishes every queue of the device (nothing may still run). */
    void (*finish)(attn_dev_call *dc);
    /* Ends the call on the device: ok = the call succeeded there (its
     * buffers may be kept for the next call), else they are dropped. */
    void (*call_close)(attn_dev_call *dc, int ok);
} attn_exec_ops;

typedef struct attn_backend_ops {
    const char *name;
    void (*destroy)(attn_backend *b);
    void (*device_info)(const attn_backend *b, attn_device_info *out);
    /* A whole call on host memory, for backends without exec (native). */
    attn_status (*sdpa)(attn_backend *b, const attn_sdpa_call *c,
                        attn_err *err);
    /* The multi-head layer on device dev with the attention step's
     * prepared variant (p NULL for native); NULL: the native backend runs
     * the layer. */
    attn_status (*mha)(attn_backend *b, int dev, const attn_prepared *p,
                       const attn_mha_call *c, attn_err *err);
    /* Device backends: the scheduler's interface; NULL for native. */
    const attn_exec_ops *exec;
    /* A persistent layer's weights and biases (m's arrays) copied to
     * device dev once (attn_mha_create): *out is the backend's handle,
     * handed back to mha as c->resident[dev] and released by mha_drop.
     * NULL: the backend keeps nothing (mha reads m's arrays). */
    attn_status (*mha_hold)(attn_backend *b, int dev, const attn_mha_desc *m,
                            void **out, attn_err *err);
    void (*mha_drop)(attn_backend *b, int dev, void *held);
    /* The backward pass (attn_sdpa_backward) on device dev: prepare_bwd
     * chooses and readies its variant for d (grads: ATTN_BWD_* flags of
     * what is asked beyond dq, dk, dv; errors as exec->prepare), sdpa_bwd
     * runs the whole call on host memory with it, writing g's outputs only
     * on success; bwd_forced says whether a backward variant is forced by
     * name (options.kernel).  NULL: the native backend computes it. */
    attn_status (*prepare_bwd)(attn_backend *b, int dev,
                               const attn_sdpa_desc *d, unsigned grads,
                               attn_prepared *out, attn_err *err);
    attn_status (*sdpa_bwd)(attn_backend *b, int dev, const attn_prepared *p,
                            const attn_sdpa_desc *d, const attn_sdpa_grad *g,
                            attn_err *err);
    int (*bwd_forced)(const attn_backend *b);
} attn_backend_ops;

/* What a backward call asks beyond dq, dk and dv (prepare_bwd). */
enum { ATTN_BWD_DBIAS = 1, ATTN_BWD_DADDW = 2 };

struct attn_backend {
    const attn_backend_ops *ops;
    void *impl;
};

#endif /* ATTN_CORE_BACKEND_H */
