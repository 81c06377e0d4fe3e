# SPDX-License-Identifier: Apache-2.0
# attn-bench's command line, checked for behaviour only (exit status, the
# CSV's columns, which rows appear); never its timings.  Run by ctest:
#   cmake -DBENCH=path/to/attn-bench -DOUT=dir [-DHAVE_CL=OFF] -P check_bench.cmake
# On a machine without an OpenCL device the cl rows say "skipped" and the
# checks that need them are left out; HAVE_CL=OFF (a build without the
# OpenCL backend, hence no kernel variants) leaves out --kernel too.
if(NOT BENCH OR NOT OUT)
  message(FATAL_ERROR "usage: cmake -DBENCH=... -DOUT=... -P check_bench.cmake")
endif()
file(MAKE_DIRECTORY ${OUT})

function(run_bench name expect_rc)
  execute_process(COMMAND ${BENCH} ${ARGN} RESULT_VARIABLE rc
                  OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL expect_rc)
    message(FATAL_ERROR "${name}: exit status ${rc}, expected ${expect_rc}\n"
                        "${out}\n${err}")
  endif()
  set(bench_out "${out}" PARENT_SCOPE)
endfunction()

# The columns of the CSV header, in order.
set(columns n causal impl median_ms min_ms gflops libattn_x_faster
    max_abs_diff note key seq_q kernel tflops head_dim batch heads kv_heads
    dtype timing wall_ms kv_bytes kv_gbps device precision triad_gbps triad_pct)
string(REPLACE ";" "," header "${columns}")

# The CSV's lines whose key column is `key` (lines as a list).
function(csv_rows file key var)
  file(STRINGS ${file} lines)
  set(hits "")
  foreach(l IN LISTS lines)
    if(l MATCHES ",${key},[0-9]+,")
      list(APPEND hits "${l}")
    endif()
  endforeach()
  set(${var} "${hits}" PARENT_SCOPE)
endfunction()

function(check_header file)
  file(STRINGS ${file} first LIMIT_COUNT 1)
  if(NOT first STREQUAL header)
    message(FATAL_ERROR "${file}: header\n  ${first}\nexpected\n  ${header}")
  endif()
endfunction()

# 1. bad options: exit status 2
if(DEFINED HAVE_CL AND NOT HAVE_CL)
  set(no_device 1)
  set(kernels "")
else()
  # One variant: every variant would only add program builds (seconds
  # each on a CPU device) to what is checked.
  set(kernels --kernel fused)
endif()
run_bench(bad-option 2 --no-such-option)
run_bench(bad-kernel 2 --kernel no-such-variant)
run_bench(bad-kv-heads 2 --heads 4 --kv-heads 3)
run_bench(bad-seq-q 2 --seq-q 17)

# 2. every new option at once, host pointers: shapes, forced variants,
# decode rows; the CSV says which variant each libattn row ran.
set(csv ${OUT}/host.csv)
run_bench(host 0 --no-peers --impl native,cl-fused,cl-decode ${kernels}
          --sizes 32 --reps 1 --warmup 0 --head-dim 16,32 --heads 4
          --kv-heads 2 --batch 2 --seq-q 2 --csv ${csv})
check_header(${csv})
csv_rows(${csv} native nat)
list(LENGTH nat n_nat)
# 2 head sizes x 2 masks x (square + decode)
if(NOT n_nat EQUAL 8)
  message(FATAL_ERROR "host: ${n_nat} native rows, expected 8")
endif()
foreach(l IN LISTS nat)
  if(NOT l MATCHES ",native,[0-9]+,native,[0-9.e+-]+,(16|32),2,4,2,f32,host,")
    message(FATAL_ERROR "host: native row without its kernel or shape: ${l}")
  endif()
endforeach()
# 2b. ATTN_PRECISION: the preamble says what was asked, each libattn row
# what it ran at (every kernel of this release: exact).
set(ENV{ATTN_PRECISION} tf32)
set(pcsv ${OUT}/precision.csv)
run_bench(precision 0 --no-peers --impl native,cl-fused --sizes 32 --reps 1
          --warmup 0 --head-dim 16 --causal no --csv ${pcsv})
unset(ENV{ATTN_PRECISION})
if(NOT bench_out MATCHES "precision: tf32 asked")
  message(FATAL_ERROR "precision: the preamble does not say tf32 was asked")
endif()
check_header(${pcsv})
csv_rows(${pcsv} native pnat)
csv_rows(${pcsv} cl-fused pfused)
foreach(l IN LISTS pnat pfused)
  if(NOT l MATCHES ",exact,[^,]*,[^,]*$" AND
     NOT l MATCHES "skipped: no OpenCL device")
    message(FATAL_ERROR "precision: row without the precision run: ${l}")
  endif()
endforeach()
# 2c. ATTN_DEVICE names the cl-* impls' device and no other: the native
# row runs on the native backend (kernel "native"), never on the device.
set(ENV{ATTN_DEVICE} cpu)
set(dcsv ${OUT}/device.csv)
run_bench(attn-device 0 --no-peers --impl native,cl-fused --sizes 32 --reps 1
          --warmup 0 --head-dim 16 --causal no --csv ${dcsv})
unset(ENV{ATTN_DEVICE})
csv_rows(${dcsv} native dnat)
if(NOT dnat MATCHES "^[^,]*,[^,]*,[^,]*,[^,]*,[^,]*,[^,]*,[^,]*,[^,]*,[^,]*,native,[^,]*,native,")
  message(FATAL_ERROR "ATTN_DEVICE=cpu: the native row ran elsewhere: ${dnat}")
endif()
csv_rows(${csv} cl:fused fused_rows)
list(LENGTH fused_rows n_fused)
if(kernels AND NOT n_fused EQUAL 8)
  message(FATAL_ERROR "host: ${n_fused} cl:fused rows, expected 8")
endif()
csv_rows(${csv} cl-decode dec_rows)
foreach(l IN LISTS fused_rows dec_rows)
  if(l MATCHES "skipped: no OpenCL device")
    set(no_device 1)
  elseif(l MATCHES ",cl:fused,[0-9]+,fused,[0-9.e+-]+,")
  elseif(l MATCHES ",cl-decode,2,decode,[0-9.e+-]+,.*,[0-9]+,[0-9.]+,\"")
    # decode rows carry the K/V bytes and GB/s
  else()
    message(FATAL_ERROR "host: row without the variant that ran: ${l}")
  endif()
endforeach()

# 3. --resident: the OpenCL rows are timed by events and have a wall time.
if(NOT no_device)
  set(csv ${OUT}/resident.csv)
  run_bench(resident 0 --no-peers --resident --impl native,cl-fused,cl-q2
            --kernel fused --sizes 32 --reps 2 --warmup 0 --causal yes
            --head-dim 32 --dtype f16 --csv ${csv})
  check_header(${csv})
  csv_rows(${csv} cl-fused rows)
  csv_rows(${csv} cl:fused krows)
  foreach(l IN LISTS rows krows)
    if(NOT l MATCHES ",fused,[0-9.e+-]+,32,1,8,8,f16,event,[0-9.]+,")
      message(FATAL_ERROR "resident: row not timed by events: ${l}")
    endif()
  endforeach()
  csv_rows(${csv} cl-q2 q2)
  if(NOT q2 MATCHES "skipped: --resident")
    message(FATAL_ERROR "resident: cl-q2 not skipped: ${q2}")
  endif()
  # 4. decode only
  set(csv ${OUT}/decode.csv)
  run_bench(decode 0 --no-peers --decode-only --impl native,cl-decode
            --sizes 64 --reps 1 --warmup 0 --causal no --heads 4 --kv-heads 1
            --batch 2 --head-dim 64 --csv ${csv})
  csv_rows(${csv} native nat)
  csv_rows(${csv} cl-decode dec)
  list(LENGTH nat n_nat)
  list(LENGTH dec n_dec)
  if(NOT n_nat EQUAL 1 OR NOT n_dec EQUAL 1 OR NOT dec MATCHES ",decode,")
    message(FATAL_ERROR "decode-only: rows\n${nat}\n${dec}")
  endif()
endif()

# 5. openvino and onnxruntime (bench/peer_runtimes.py).  First as on a
# machine without them: modules of those names that fail to import come
# first on PYTHONPATH, so every row must say why it was skipped (or that
# python3 / numpy is missing) and the run must still succeed.
set(fake ${OUT}/no-runtimes)
foreach(m openvino onnxruntime)
  file(WRITE ${fake}/${m}/__init__.py
       "raise ImportError('hidden by check_bench.cmake')\n")
endforeach()
set(csv ${OUT}/no-runtimes.csv)
execute_process(COMMAND ${CMAKE_COMMAND} -E env PYTHONPATH=${fake}
                ${BENCH} --impl native,openvino,onnxruntime --sizes 32
                --reps 1 --warmup 0 --causal no --csv ${csv}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "no-runtimes: exit status ${rc}\n${out}\n${err}")
endif()
csv_rows(${csv} openvino ov)
csv_rows(${csv} onnxruntime ort)
list(LENGTH ov n_ov)
list(LENGTH ort n_ort)
if(NOT n_ov EQUAL 1 OR NOT n_ort EQUAL 2)
  message(FATAL_ERROR "no-runtimes: ${n_ov} openvino and ${n_ort} "
                      "onnxruntime rows, expected 1 and 2:\n${out}")
endif()
foreach(l IN LISTS ov ort)
  if(NOT l MATCHES "\"skipped: [^\"]*(is not installed|cannot run)")
    message(FATAL_ERROR "no-runtimes: row without the reason: ${l}")
  endif()
endforeach()
if(NOT out MATCHES "\nopenvino: skipped: " OR
   NOT out MATCHES "\nort-attention: skipped: ")
  message(FATAL_ERROR "no-runtimes: the header does not say why:\n${out}")
endif()

# Then as installed, if they are: GQA, both masks, a square case and a
# decode case (F16, seq_q 1 and 2; the triad column); a peer that cannot
# take a case says why, the others are checked against native and timed.
set(csv ${OUT}/runtimes.csv)
run_bench(runtimes 0 --impl native,openvino,onnxruntime --sizes 32
          --reps 1 --warmup 0 --heads 4 --kv-heads 2 --head-dim 16
          --csv ${csv})
csv_rows(${csv} openvino ov)
csv_rows(${csv} onnxruntime ort)
set(timed 0)
foreach(l IN LISTS ov ort)
  if(l MATCHES ",f32,python,,,,\"CPU\",,,$")
    math(EXPR timed "${timed} + 1")
  elseif(NOT l MATCHES "\"skipped: ")
    message(FATAL_ERROR "runtimes: neither timed nor skipped: ${l}")
  endif()
endforeach()
if(bench_out MATCHES "\nopenvino: openvino-")
  set(have_rt 1)
  # MultiHeadAttention takes no GQA under a causal mask: 5 of 6 timed
  if(NOT timed EQUAL 5 OR NOT ort MATCHES "skipped: MultiHeadAttention")
    message(FATAL_ERROR "runtimes: ${timed} rows timed, expected 5:\n"
                        "${bench_out}")
  endif()
endif()
foreach(sq 1 2)
  set(csv ${OUT}/runtimes-decode-${sq}.csv)
  run_bench(runtimes-decode 0 --impl native,openvino,onnxruntime
            --decode-only --sizes 64 --seq-q ${sq} --reps 1 --warmup 0
            --causal yes --heads 4 --kv-heads 2 --head-dim 16 --dtype f16
            --triad-mib 8 --csv ${csv})
  if(NOT bench_out MATCHES "\nmemory: STREAM triad [0-9.]+ GB/s")
    message(FATAL_ERROR "runtimes-decode: no triad line:\n${bench_out}")
  endif()
  csv_rows(${csv} native nat)
  if(NOT nat MATCHES
     ",f16,host,,[0-9]+,[0-9.]+,\"[^\"]*\",exact,[0-9.]+,[0-9.]+$")
    message(FATAL_ERROR "runtimes-decode: native row without K/V GB/s and "
                        "% of triad: ${nat}")
  endif()
  csv_rows(${csv} openvino ov)
  csv_rows(${csv} onnxruntime ort)
  foreach(l IN LISTS ov ort)
    if(have_rt AND sq EQUAL 1 AND
       NOT l MATCHES "no-mask.*,f16,python,,[0-9]+,[0-9.]+,\"CPU\",,[0-9.]+,")
      message(FATAL_ERROR "runtimes-decode: seq_q 1 row not timed: ${l}")
    elseif(have_rt AND sq EQUAL 2 AND NOT l MATCHES "skipped: the op's causal")
      message(FATAL_ERROR "runtimes-decode: seq_q 2 row not skipped: ${l}")
    endif()
  endforeach()
endforeach()

if(no_device)
  message(STATUS "attn-bench checks passed (no OpenCL device: the "
                 "--resident and --decode-only checks were left out)")
else()
  message(STATUS "attn-bench checks passed")
endif()
