/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The inline PTX that tensor-core kernels for NVIDIA GPUs issue from OpenCL
 * C, in one small kernel for the offline compile checks
 * (scripts/offline_compile.sh): clang to PTX, then ptxas for sm_80 and
 * sm_90, as every library program.  Not part of the library; it shows that
 * the path assembles the asm statements and refuses broken ones.  Written
 * as NVIDIA's compiler takes it: `asm volatile` with "r" (32-bit), "l"
 * (64-bit) and "f" (float) operands, f16 pairs held in uint, no
 * cl_khr_fp16.  One warp of 32 items:
 *   - ldmatrix: four 8x8 f16 matrices from local memory (the A fragment);
 *   - mma.sync m16n8k16 f16 x f16 + f32 (F16 storage);
 *   - cvt.rna.tf32.f32 and mma.sync m16n8k8 tf32 x tf32 + f32 (F32
 *     storage, TF32 precision);
 *   - shfl.sync.bfly: a maximum over the 4 items that share a row.
 * PROBE_BROKEN=1 misspells the mma's type, =2 hands it one B register too
 * few: ptxas must refuse both.
 */
#ifndef PROBE_BROKEN
#define PROBE_BROKEN 0
#endif
#if PROBE_BROKEN == 1
#define PROBE_MMA_F16 "mma.sync.aligned.m16n8k16.row.col.f32.f61.f16.f32 "
#else
#define PROBE_MMA_F16 "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
#endif
#if PROBE_BROKEN == 2
#define PROBE_B_F16 "{%8}, "
#else
#define PROBE_B_F16 "{%8, %9}, "
#endif

__kernel __attribute__((reqd_work_group_size(32, 1, 1))) void
probe_mma(__global const uint *a, __global const uint *b, __global float *d)
{
    __local uint tile[4 * 8 * 4]; /* four 8x8 f16 matrices */
    const int lane = (int)get_local_id(0);
    for (int u = 0; u < 4; u++)
        tile[u * 32 + lane] = a[u * 32 + lane];
    barrier(CLK_LOCAL_MEM_FENCE);

    /* A fragment: lane l gives the address of row l % 8 of matrix l / 8. */
    uint a0, a1, a2, a3;
    const ulong row = (ulong)(tile + lane * 4);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 "
                 "{%0, %1, %2, %3}, [%4];"
                 : "=r"(a0), "=r"(a1), "=r"(a2), "=r"(a3)
                 : "l"(row));
    const uint b0 = b[lane * 2], b1 = b[lane * 2 + 1];

    float c0 = 0.0f, c1 = 0.0f, c2 = 0.0f, c3 = 0.0f;
    asm volatile(PROBE_MMA_F16
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, " PROBE_B_F16
                 "{%0, %1, %2, %3};"
                 : "+f"(c0), "+f"(c1), "+f"(c2), "+f"(c3)
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));

    /* The f32 accumulators as TF32 operands of the tf32 product. */
    uint t0, t1, t2, t3, u0;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(t0) : "f"(c0));
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(t1) : "f"(c1));
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(t2) : "f"(c2));
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(t3) : "f"(c3));
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(u0) : "f"(as_float(b0)));
    float e0 = 0.0f, e1 = 0.0f, e2 = 0.0f, e3 = 0.0f;
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};"
                 : "+f"(e0), "+f"(e1), "+f"(e2), "+f"(e3)
                 : "r"(t0), "r"(t1), "r"(t2), "r"(t3), "r"(u0), "r"(t0));

    /* The row maximum over the 4 items of a row (lanes 4r .. 4r + 3). */
    float m = fmax(e0, e1), o;
    asm volatile("shfl.sync.bfly.b32 %0, %1, 1, 0x1f, 0xffffffff;"
                 : "=f"(o)
                 : "f"(m));
    m = fmax(m, o);
    asm volatile("shfl.sync.bfly.b32 %0, %1, 2, 0x1f, 0xffffffff;"
                 : "=f"(o)
                 : "f"(m));
    m = fmax(m, o);
    d[lane] = m + e2 + e3;
}
