/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The table of one copy of the native backend's hot code (cpu_impl.h,
 * "instruction sets"): what isa.c hands to an attn_cpu.
 */
#include "cpu/cpu_impl.h"
#include "cpu/sdpa_bwd.h"
#include "cpu/sdpa_job.h"

const attn_cpu_kern ATTN_ISA_FN(attn_cpu_kern) = {
    attn_sdpa_item,   attn_sdpa_dec_item, attn_sdpa_dec_combine,
    attn_cpu_mha,     attn_sdpa_bwd_prep, attn_sdpa_bwd_item,
    attn_sdpa_bwd_dq, attn_cpu_gemm_nt,
};
