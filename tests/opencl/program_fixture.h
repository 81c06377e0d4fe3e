/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fixtures of the program-cache suite (tests/opencl/test_program.c):
 * the cases every test runs and their references, a folder per test under
 * one mkdtemp'd root, the files of the cache (entries, their checksum),
 * the log captured at DEBUG, and contexts on the OpenCL CPU device.
 */
#ifndef ATTN_TEST_PROGRAM_FIXTURE_H
#define ATTN_TEST_PROGRAM_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "api/context.h"
#include "cases.h"

/* The entry layout of program_cache.c: magic 8 | key 32 | size 8 (little
 * endian) | SHA-256 of key, size and payload 32 | payload. */
#define ENTRY_HEADER  80
#define ENTRY_KEY_END 40 /* magic and key */
#define ENTRY_MAGIC   "ATTNPRG2"
#define LOG_CAP       32768

/* The root folder of the tests' folders: a mkdtemp template until main
 * makes it. */
extern char fixture_root[];
/* The problems the tests run (f32 causal, f16 not) and their references,
 * made by fixture_suite_init. */
extern sdpa_case fixture_f32_case, fixture_f16_case;
extern ref_sdpa_result fixture_f32_ref, fixture_f16_ref;
/* The OpenCL CPU device's name; it names the offline binaries. */
extern char fixture_device_name[256];

/* CUnit suite init and clean: make and free the cases above and find the
 * device name.  init returns non-zero on failure. */
int fixture_suite_init(void);
int fixture_suite_clean(void);
/* Only the cases and references of fixture_suite_init (what a child
 * process of the suite needs).  Non-zero on failure. */
int fixture_cases_init(void);

/* ---- files ---- */

/* Removes path and everything under it (write bits restored first).  0,
 * or -1 when something stayed. */
int fixture_remove_tree(const char *path);
/* A fresh folder fixture_root/name (path receives it).  mkdir's result. */
int fixture_test_dir(const char *name, char *path, size_t cap);
/* Number of files in dir whose name ends with suffix; the first one's path
 * goes to first (when not NULL).  -1 when dir cannot be read. */
int fixture_count_files(const char *dir, const char *suffix, char *first,
                        size_t cap);
/* The contents of path (malloc'd, *n bytes), or NULL. */
unsigned char *fixture_read_all(const char *path, size_t *n);
/* Writes n bytes of p to path.  0 or -1. */
int fixture_write_all(const char *path, const void *p, size_t n);
/* Fills the size and checksum fields of the entry e (n bytes in all, its
 * magic and key in place) for its payload. */
void fixture_seal_entry(unsigned char *e, size_t n);
/* 1 when path holds a well-formed entry: magic, a size that matches the
 * file and a checksum that matches the payload. */
int fixture_valid_entry(const char *path);

/* ---- logging and contexts ---- */

typedef struct log_capture {
    char text[LOG_CAP];
    size_t len;
} log_capture;

/* The log callback: appends "[level] msg" lines to the log_capture user. */
void fixture_capture(int level, const char *msg, void *user);
/* 1 when the captured log contains what. */
int fixture_logged(const log_capture *c, const char *what);
/* The text of a log another process saved into path (cap cleared first).
 * 0, or -1 when path cannot be read. */
int fixture_load_log(const char *path, log_capture *cap);
/* The options of fixture_make_ctx: device "cpu", the unfused path, the
 * cache in cache_dir, everything logged into cap (cleared). */
void fixture_options(attn_options *o, const char *cache_dir, int fallback,
                     log_capture *cap);
/* A context on the OpenCL CPU device with the cache in cache_dir, logging
 * everything into cap (cleared).  NULL (after a failed assertion) when it
 * cannot be created or landed on the native backend. */
attn_context *fixture_make_ctx(const char *cache_dir, int fallback,
                               log_capture *cap);
/* One call of c on a fresh context (cache in cache_dir); 1 when right. */
int fixture_run_case(const sdpa_case *c, const ref_sdpa_result *ref,
                     const char *cache_dir, log_capture *cap, const char *what);
/* fixture_run_case on the f32 case. */
int fixture_run_f32(const char *cache_dir, log_capture *cap, const char *what);

/* ---- planted entries ---- */

/* What a folder holds, to tell that nothing in it changed: its entries
 * (every file but . and ..) and the bytes of its only entry. */
typedef struct dir_snapshot {
    int files;
    char entry[1024];
    unsigned char *bytes;
    size_t n;
} dir_snapshot;

/* Fills dir (made when missing) with the entry of the f32 program, through
 * one call; entry receives its path.  0, or -1 when dir does not then hold
 * one valid entry. */
int fixture_fill(const char *dir, log_capture *cap, char *entry, size_t cap_n);
/* Takes a snapshot of dir holding one entry (.clbin).  0 or -1. */
int fixture_snapshot(const char *dir, dir_snapshot *s);
/* 1 when dir holds what s saw: as many files, the entry's bytes. */
int fixture_unchanged(const char *dir, const dir_snapshot *s);
void fixture_snapshot_free(dir_snapshot *s);
/* Runs the f32 call on dir and checks that the cache was not used: the
 * call is right, a warning names what (a path) and says why, the program
 * is built from source and nothing is cached. */
void fixture_expect_refused(const char *dir, log_capture *cap, const char *what,
                            const char *why);

/* ---- offline binaries ---- */

/* The offline binary of one program: <dir>/<"<device> <tag>" normalised>
 * .bin, tag "unfused_f32" or "unfused_f16" (runtime.h,
 * attn_cl_build_tagged). */
void fixture_binary_path(const char *dir, const char *tag, char *path,
                         size_t cap);
/* Writes the payload of dir's only entry as the binary of program tag.  0
 * or -1. */
int fixture_export_binary(const char *dir, const char *bin_dir,
                          const char *tag);

/* ---- main ---- */

#include "harness.h"

/* main of a cache suite: runs a child (argv[1] "--child",
 * program_child.h), or the suite: with ATTN_DEVICE, ATTN_CACHE_DIR and
 * ATTN_KERNEL_BINARY_DIR unset, skipped (exit 77, saying why) without a
 * usable OpenCL CPU device or when can_run (may be NULL) returns
 * non-zero after printing its reason, in a fresh fixture_root removed
 * at the end.  init: the suite's init (NULL: fixture_suite_init). */
int fixture_main(int argc, char **argv, const char *suite,
                 const harness_test *tests, int (*can_run)(void),
                 int (*init)(void));

#endif /* ATTN_TEST_PROGRAM_FIXTURE_H */
