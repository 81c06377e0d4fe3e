/* SPDX-License-Identifier: Apache-2.0 */
/*
 * peer_ggml: ggml's ggml_flash_attn_ext on the CPU, called through dlopen()
 * so that attn-bench never depends on ggml at build time.
 */
#ifndef ATTN_BENCH_PEER_GGML_H
#define ATTN_BENCH_PEER_GGML_H

#include <stddef.h>

typedef struct ggml_peer ggml_peer;           /* a loaded libggml */
typedef struct ggml_peer_case ggml_peer_case; /* one prepared graph */

/* Finds the libggml to load, without loading it: explicit_path (a file or a
 * directory; may be NULL) wins, then the environment variable
 * ATTN_BENCH_GGML, then the lib/ folder of the python package llama_cpp
 * (llama-cpp-python) or ggml (ggml-python); python names the interpreter
 * asked (NULL: "python3").  Returns 0 with the file in path; 1 with path
 * "libggml.so" (left to the dynamic loader's search) when none of those
 * gave one; -1 and a sentence in why when the named path is unusable. */
int ggml_peer_find(const char *explicit_path, const char *python, char *path,
                   size_t path_len, char *why, size_t why_len);

/* dlopen()s path and looks up the functions used.  Returns 0 and *out on
 * success; otherwise non-zero and a sentence in why.  A libggml built for
 * another CPU may die of SIGILL right here, so attn-bench tries it in a
 * child process first. */
int ggml_peer_load(const char *path, ggml_peer **out, char *why,
                   size_t why_len);
void ggml_peer_close(ggml_peer *g);

/* The file that was loaded and how ggml runs the graph. */
const char *ggml_peer_path(const ggml_peer *g);
const char *ggml_peer_compute_api(const ggml_peer *g);

/* Builds the graph for one batch item: heads query heads (= kv heads),
 * seq_q = seq_kv = n, head_dim d.  q, k, v are float [heads, n, d] (the
 * libattn layout); K and V are stored as f16 when kv_f16, as f32 otherwise
 * (conversion is done here, outside the timed part).  causal adds an f16
 * mask [n, pad(n, 64)] of 0 / -inf.  Returns 0 on success. */
int ggml_peer_prepare(ggml_peer *g, int heads, int n, int d, int causal,
                      int kv_f16, int threads, const float *q, const float *k,
                      const float *v, ggml_peer_case **out, char *why,
                      size_t why_len);

/* Runs the prepared graph once (the timed part).  Returns 0 on success. */
int ggml_peer_exec(ggml_peer_case *c);

/* Copies the result to o in the libattn layout [heads, n, d] (ggml's result
 * is [n, heads, d]). */
void ggml_peer_output(const ggml_peer_case *c, float *o);

void ggml_peer_case_free(ggml_peer_case *c);

/* IEEE binary16 from float, round to nearest even. */
unsigned short bench_f32_to_f16(float f);

#endif
