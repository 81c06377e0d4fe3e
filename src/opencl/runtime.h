/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The OpenCL runtime of one device: its context, queues, the kernel
 * variants' tuning and choice, the built programs, the program cache on
 * disk and the pool of reusable device buffers.  Shared by the driver of
 * the kernel variants (driver.c), the layer (mha_cl.c) and the backend
 * (backend_cl.c, exec_cl.c).  Not installed.
 *
 * Locking: `lock` guards the built programs and their pools of kernel
 * objects (progcache.c), the dummy buffer, the tuning and the choice;
 * build_lock is taken while a program is built or read from the disk
 * cache.  A launch sets the arguments of kernel objects of its own (taken
 * from the program's pool) and needs no lock to enqueue.  The buffer pool
 * has a lock of its own (pool.c).
 */
#ifndef ATTN_OPENCL_RUNTIME_H
#define ATTN_OPENCL_RUNTIME_H

#include <pthread.h>

#include "opencl/discovery.h"
#include "opencl/fault.h"

/* Calls an OpenCL function that returns cl_int; on failure records the call,
 * file and line in err and jumps to label.  Names the variables it uses:
 * `rc` (cl_int) and `err` (attn_err *) must be in scope. */
#define ATTN_CL_CHECK(call, label)                                             \
    do {                                                                       \
        rc = (call);                                                           \
        if (rc != CL_SUCCESS) {                                                \
            attn_fail(err, ATTN_ERR_DEVICE, "%s failed: %s (%d) at %s:%d",     \
                      #call, attn_cl_error_name(rc), (int)rc, __FILE__,        \
                      __LINE__);                                               \
            goto label;                                                        \
        }                                                                      \
    } while (0)

/* OpenCL error code -> its name ("CL_OUT_OF_RESOURCES"). */
const char *attn_cl_error_name(cl_int rc);
/* The status an OpenCL error maps to (allocation errors -> OUT_OF_MEMORY,
 * build errors -> BUILD_FAILED, the rest -> DEVICE). */
attn_status attn_cl_status(cl_int rc);

/* Concatenates the named kernel sources (cl/NAME) into *out (malloc'd,
 * NUL-terminated, the caller frees it).  The sources are embedded at build
 * time; with ATTN_EMBED_KERNELS=OFF they are read from the source tree.
 * Errors: ATTN_ERR_INVALID_ARGUMENT (unknown name), ATTN_ERR_IO,
 * ATTN_ERR_OUT_OF_MEMORY. */
attn_status attn_cl_load_sources(const char *const *names, size_t n, char **out,
                                 size_t *len, attn_err *err);

/* The options attn_cl_build hands to clBuildProgram for a launcher's
 * options (NULL for none): "-cl-std=CL1.2 " and them.  Returns what
 * snprintf returns (the length the full text needs). */
int attn_cl_program_options(const char *options, char *buf, size_t cap);

/* Builds a program from an offline binary file (FPGA bitstreams, or a
 * binary another run of the same driver produced).  Errors:
 * ATTN_ERR_IO (unreadable), ATTN_ERR_BUILD_FAILED (rejected binary). */
struct attn_cl_runtime;
attn_status attn_cl_build_binary_file(struct attn_cl_runtime *rt,
                                      const char *path, const char *options,
                                      cl_program *out, attn_err *err);

#define ATTN_CL_MAX_QUEUES   8
#define ATTN_CL_MAX_VARIANTS 16
/* The longest program cache folder path, in bytes; a longer one turns the
 * cache off with a warning. */
#define ATTN_CL_CACHE_DIR_MAX 1022

struct attn_cl_prog_entry;
struct attn_cl_pool;
struct attn_cl_tuning;

/* How the runtime chooses a kernel variant for a shape (driver.c). */
typedef struct attn_cl_choice {
    attn_path path; /* options.path, or the profile's for AUTO */
    int forced;     /* a variant forced by name (options.kernel), or -1 */
    int bwd_forced; /* a backward variant forced so (bwd_cl.h), or -1 */
    int order[ATTN_CL_MAX_VARIANTS]; /* path.order: variant indices */
    int n_order;
} attn_cl_choice;

typedef struct attn_cl_runtime {
    cl_context context;
    cl_device_id device;
    cl_platform_id platform;
    cl_command_queue queue; /* the library's own in-order queue */
    /* In-order queues for the scheduler; queues[0] == queue. */
    cl_command_queue queues[ATTN_CL_MAX_QUEUES];
    int n_queues;
    int owns_context; /* 0 when the caller handed the context in */
    attn_device_info info;
    const attn_logger *log;
    char cache_dir[ATTN_CL_CACHE_DIR_MAX + 1]; /* "" = no program cache */
    pthread_mutex_t lock;
    pthread_mutex_t build_lock;
    /* Read once at creation: what the variants' hooks fit to. */
    size_t dev_wg, dev_items[3];
    uint64_t local_mem;
    int fma, cl_major;
    int nv_sm; /* NVIDIA compute capability, 10 * major + minor; 0: none */
    /* AMD gfx target (attn_cl_amd_gfx), 0: none */
    int amd_gfx;
    int intel_xmx; /* attn_cl_intel_xmx of the device */
    /* ATTN_CL_SHUFFLE_* the device's compiler takes (attn_cl_shuffle; on
     * NVIDIA, PTX, and KHR only once attn_cl_shuffle_builds built them) */
    int shuffle;
    /* The context's precision (attn.h), set before the runtime is shared
     * (the backend's ask). */
    attn_precision precision;
    /* Set before the runtime is shared (profile, options); tuning and
     * choice may change later under `lock` (attn_cl_set_tuning), which
     * bumps epoch. */
    struct attn_cl_tuning *tuning; /* one per variant (driver.c) */
    attn_cl_choice choice;
    unsigned epoch;
    int pinned; /* stage host copies through pinned host memory */
    /* Guarded by `lock`: built programs (progcache.c), the dummy buffer
     * bound to absent optional arguments. */
    struct attn_cl_prog_entry *progs;
    cl_mem dummy;
    struct attn_cl_pool *pool; /* reusable device buffers (pool.c) */
    void *mha;                 /* state of the multi-head layer (mha_cl.c) */
    void (*mha_free)(void *mha);
    void *bwd; /* the backward pass's programs (bwd_cl.c) */
    void (*bwd_free)(void *bwd);
    /* Releases what the backend built on the runtime (its variants'
     * programs, the pool; backend_cl.c), before the queues go. */
    void (*parts_free)(struct attn_cl_runtime *rt);
} attn_cl_runtime;

/* Creates a runtime on a discovered device: a new context and queue.  A NULL
 * cache_dir means ATTN_CACHE_DIR or $XDG_CACHE_HOME/libattn or
 * $HOME/.cache/libattn (XDG_CACHE_HOME and HOME only when they are
 * absolute paths; that default folder not on PoCL, whose driver keeps
 * compiled kernels itself); "" disables the cache.  A cache path longer than
 * ATTN_CL_CACHE_DIR_MAX disables it too, with a warning. */
attn_status attn_cl_runtime_create(const attn_cl_device *dev,
                                   const char *cache_dir,
                                   const attn_logger *log,
                                   attn_cl_runtime **out, attn_err *err);
/* The same on the caller's context and device (retained, not owned). */
attn_status attn_cl_runtime_create_from(cl_context context, cl_device_id device,
                                        const char *cache_dir,
                                        const attn_logger *log,
                                        attn_cl_runtime **out, attn_err *err);
void attn_cl_runtime_destroy(attn_cl_runtime *rt); /* NULL is a no-op */

/* Gives the runtime n in-order queues in all (1 .. ATTN_CL_MAX_QUEUES;
 * queues[0] stays the library's queue).  Call before the runtime is
 * shared.  Errors: ATTN_ERR_INVALID_ARGUMENT, ATTN_ERR_DEVICE. */
attn_status attn_cl_runtime_set_queues(attn_cl_runtime *rt, int n,
                                       attn_err *err);

/* Builds (or loads from the cache) a program from the concatenation of the
 * named embedded sources, with build options (the library adds
 * -cl-std=CL1.2).  A failed build's log goes to the logger at ERROR level
 * and, shortened, into err.  A cached program is used only when it builds
 * from its binary and has every kernel its sources define; otherwise the
 * entry is removed and the program built from source once (program_cache.h
 * says which folders and entries are trusted).  Errors:
 * ATTN_ERR_BUILD_FAILED, ATTN_ERR_DEVICE, ATTN_ERR_OUT_OF_MEMORY.
 * Thread-safe. */
attn_status attn_cl_build(attn_cl_runtime *rt, const char *const *names,
                          size_t n_names, const char *options, cl_program *out,
                          attn_err *err);

/* attn_cl_build with the program's name for offline binaries: when
 * ATTN_KERNEL_BINARY_DIR holds a binary named for "<device name> <tag>"
 * (normalised as attn_cl_binary_name does, e.g.
 * "intel_r_fpga_emulation_device_unfused_f32.aocx"), the program is loaded
 * from it instead of built.  attn_cl_build's tag is the source stems joined
 * by '_' ("posenc_heads").  An empty tag: always built from source (a
 * program whose build depends on the shape has no one binary). */
attn_status attn_cl_build_tagged(attn_cl_runtime *rt, const char *tag,
                                 const char *const *names, size_t n_names,
                                 const char *options, cl_program *out,
                                 attn_err *err);

/* attn_cl_build_tagged (tag NULL: attn_cl_build's) with the kernels the
 * program must have: kernels[0 .. n_kernels-1], at most 16; NULL and 0:
 * the kernels its sources define.  A cached program that lacks one is
 * removed and rebuilt; a program built from source that lacks one is
 * returned but not cached (a warning says so).  Errors: those of
 * attn_cl_build, and ATTN_ERR_INVALID_ARGUMENT. */
attn_status attn_cl_build_program(attn_cl_runtime *rt, const char *tag,
                                  const char *const *names, size_t n_names,
                                  const char *options,
                                  const char *const *kernels, size_t n_kernels,
                                  cl_program *out, attn_err *err);

/* The device's global memory and largest allocation as recorded in
 * rt->info (what the size checks compare a call with), queried from the
 * device where the record is empty. */
void attn_cl_mem_limits(const attn_cl_runtime *rt, uint64_t *global_mem,
                        uint64_t *max_alloc);

#endif /* ATTN_OPENCL_RUNTIME_H */
