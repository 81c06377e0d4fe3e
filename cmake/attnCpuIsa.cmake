# SPDX-License-Identifier: Apache-2.0
# The native backend's hot code built once per instruction set, chosen at run
# time (src/cpu/isa.c).
#
# attn_cpu_isa_sources(OUT_SOURCES OUT_DEFINITIONS) generates, for every
# instruction set the compiler can target, one small C file per per-ISA
# source (build/isa/<name>_<isa>.c: it defines ATTN_ISA_SUFFIX and includes
# the source), gives it that instruction set's flags, and returns the files
# in OUT_SOURCES and the ATTN_HAVE_ISA_* definitions src/cpu/isa.c needs in
# OUT_DEFINITIONS.  Each copy has its own file name, so the symbol table of
# the library says which copy a function comes from (scripts/check_isa.sh).
#
#   generic  the compiler's default target (baseline x86-64: SSE2)
#   avx2     AVX2, FMA and F16C (Haswell and later, Zen)
#   avx512   AVX-512 F, BW, DQ and VL, plus the above (Skylake-SP and later,
#            Zen 4)
#
# The avx512 copy also gets the BF16 micro-kernels (src/cpu/sdpa_kern_bf16.c,
# VDPBF16PS) when the compiler takes -mavx512bf16: only that file is built
# with the flag, every file of the copy sees ATTN_ISA_BF16 defined, and
# ATTN_HAVE_ISA_AVX512_BF16 tells src/cpu/isa.c.  They run only where
# CPUID reports AVX512_BF16 (attn_cpu_bf16_available).  With them, when the
# compiler also takes -mamx-tile -mamx-bf16, the AMX micro-kernels
# (src/cpu/sdpa_kern_amx.c, TDPBF16PS) likewise: that file alone takes
# those flags, the copy sees ATTN_ISA_AMX and isa.c
# ATTN_HAVE_ISA_AVX512_AMX; they run only where attn_cpu_amx_available
# holds.
#
# Only x86 gets avx2 and avx512; elsewhere the generic copy is the only one.
include(CheckCSourceCompiles)

# Compiled once per instruction set.
set(ATTN_ISA_COMMON_SOURCES
  src/cpu/sdpa_tile.c
  src/cpu/sdpa_dec.c
  src/cpu/sdpa_bwd_tile.c
  src/cpu/mha.c
  src/cpu/gemm.c
  src/cpu/posenc.c
  src/cpu/half.c
  src/cpu/kern_table.c)
# Written in the compiler's vector extension with a * b + c for an FMA:
# built with -ffp-contract=fast (C11 mode leaves it off), and without the
# warning that 64-byte vectors pass differently with and without AVX-512
# (the file's vector functions are static).
set(ATTN_ISA_CONTRACT_SOURCES src/cpu/sdpa_dec.c src/cpu/sdpa_bwd_tile.c)
# The attention micro-kernels of each instruction set.
set(ATTN_ISA_KERNEL_generic src/cpu/sdpa_kern_generic.c)
set(ATTN_ISA_KERNEL_avx2 src/cpu/sdpa_kern_avx2.c)
set(ATTN_ISA_KERNEL_avx512 src/cpu/sdpa_kern_avx512.c)
set(ATTN_ISA_FLAGS_generic "")
set(ATTN_ISA_FLAGS_avx2 -mavx2 -mfma -mf16c)
set(ATTN_ISA_FLAGS_avx512 -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2
    -mfma -mf16c)
# The BF16 kernels of the avx512 copy: their file alone takes this flag.
set(ATTN_ISA_BF16_SOURCE src/cpu/sdpa_kern_bf16.c)
set(ATTN_ISA_BF16_FLAGS -mavx512bf16)
# The AMX kernels of the avx512 copy (with the BF16 ones).
set(ATTN_ISA_AMX_SOURCE src/cpu/sdpa_kern_amx.c)
set(ATTN_ISA_AMX_FLAGS -mavx512bf16 -mamx-tile -mamx-bf16)

# What the compiler must accept under each set's flags.
set(ATTN_ISA_PROBE_avx2 "#include <immintrin.h>
int main(void)
{
    __m256 x = _mm256_fmadd_ps(_mm256_set1_ps(1.0f), _mm256_set1_ps(2.0f),
                               _mm256_cvtph_ps(_mm_setzero_si128()));
    return (int)_mm256_cvtss_f32(x);
}")
set(ATTN_ISA_PROBE_avx512 "#include <immintrin.h>
int main(void)
{
    __m512 x = _mm512_fmadd_ps(_mm512_set1_ps(1.0f), _mm512_set1_ps(2.0f),
                               _mm512_setzero_ps());
    __mmask16 m = _mm512_cmp_ps_mask(x, x, _CMP_EQ_OQ);
    return (int)m + (int)_mm512_reduce_add_ps(x);
}")
set(ATTN_ISA_PROBE_bf16 "#include <immintrin.h>
int main(void)
{
    __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1.0f),
                                     _mm512_set1_ps(2.0f));
    __m512 x = _mm512_dpbf16_ps(_mm512_setzero_ps(), a, a);
    return (int)_mm512_reduce_add_ps(x);
}")

set(ATTN_ISA_PROBE_amx "#include <immintrin.h>
int main(void)
{
    static float c[16 * 16];
    static unsigned short a[16 * 32];
    _tile_loadd(1, a, 64);
    _tile_loadd(2, a, 64);
    _tile_zero(0);
    _tile_dpbf16ps(0, 1, 2);
    _tile_stored(0, c, 64);
    _tile_release();
    return (int)c[0];
}")

function(attn_cpu_isa_sources out_sources out_definitions)
  set(isas generic)
  set(defs "")
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|i[3-6]86|x86)$")
    foreach(isa avx2 avx512)
      string(REPLACE ";" " " CMAKE_REQUIRED_FLAGS "${ATTN_ISA_FLAGS_${isa}}")
      set(CMAKE_REQUIRED_QUIET ON)
      check_c_source_compiles("${ATTN_ISA_PROBE_${isa}}" ATTN_CC_HAS_${isa})
      if(ATTN_CC_HAS_${isa})
        list(APPEND isas ${isa})
        string(TOUPPER ${isa} up)
        list(APPEND defs ATTN_HAVE_ISA_${up})
      else()
        message(WARNING "the compiler cannot target ${isa}: the native "
                        "backend is built without its kernels")
      endif()
    endforeach()
  endif()
  set(bf16 "")
  set(amx "")
  if("avx512" IN_LIST isas)
    string(REPLACE ";" " " CMAKE_REQUIRED_FLAGS
                   "${ATTN_ISA_FLAGS_avx512};${ATTN_ISA_BF16_FLAGS}")
    set(CMAKE_REQUIRED_QUIET ON)
    check_c_source_compiles("${ATTN_ISA_PROBE_bf16}" ATTN_CC_HAS_bf16)
    if(ATTN_CC_HAS_bf16)
      list(APPEND defs ATTN_HAVE_ISA_AVX512_BF16)
      set(bf16 "#define ATTN_ISA_BF16 1\n")
      string(REPLACE ";" " " CMAKE_REQUIRED_FLAGS
                     "${ATTN_ISA_FLAGS_avx512};${ATTN_ISA_AMX_FLAGS}")
      check_c_source_compiles("${ATTN_ISA_PROBE_amx}" ATTN_CC_HAS_amx)
      if(ATTN_CC_HAS_amx)
        list(APPEND defs ATTN_HAVE_ISA_AVX512_AMX)
        set(amx "#define ATTN_ISA_AMX 1\n")
      else()
        message(WARNING "the compiler cannot target AMX-BF16: the native "
                        "backend is built without its AMX kernels")
      endif()
    else()
      message(WARNING "the compiler cannot target AVX512_BF16: the native "
                      "backend is built without its bf16 kernels")
    endif()
  endif()
  set(sources "")
  foreach(isa IN LISTS isas)
    set(extra "")
    set(srcs ${ATTN_ISA_COMMON_SOURCES} ${ATTN_ISA_KERNEL_${isa}})
    if(isa STREQUAL "avx512" AND bf16)
      set(extra "${bf16}${amx}")
      list(APPEND srcs ${ATTN_ISA_BF16_SOURCE})
      if(amx)
        list(APPEND srcs ${ATTN_ISA_AMX_SOURCE})
      endif()
    endif()
    foreach(src IN LISTS srcs)
      get_filename_component(base ${src} NAME_WE)
      set(out ${PROJECT_BINARY_DIR}/isa/${base}_${isa}.c)
      file(CONFIGURE OUTPUT ${out} CONTENT
"/* Generated by cmake/attnCpuIsa.cmake: ${src} for the ${isa} kernels. */
#define ATTN_ISA_SUFFIX _${isa}
${extra}#include \"${PROJECT_SOURCE_DIR}/${src}\"
")
      set(opts ${ATTN_ISA_FLAGS_${isa}})
      if(src STREQUAL ATTN_ISA_BF16_SOURCE)
        list(APPEND opts ${ATTN_ISA_BF16_FLAGS})
      elseif(src STREQUAL ATTN_ISA_AMX_SOURCE)
        list(APPEND opts ${ATTN_ISA_AMX_FLAGS})
      endif()
      if(src IN_LIST ATTN_ISA_CONTRACT_SOURCES)
        list(APPEND opts -ffp-contract=fast -Wno-psabi)
      endif()
      set_source_files_properties(${out} PROPERTIES COMPILE_OPTIONS "${opts}")
      list(APPEND sources ${out})
    endforeach()
  endforeach()
  if(amx)
    message(STATUS "libattn native kernels: ${isas} (avx512 with bf16, amx)")
  elseif(bf16)
    message(STATUS "libattn native kernels: ${isas} (avx512 with bf16)")
  else()
    message(STATUS "libattn native kernels: ${isas}")
  endif()
  set(${out_sources} ${sources} PARENT_SCOPE)
  set(${out_definitions} ${defs} PARENT_SCOPE)
endfunction()
