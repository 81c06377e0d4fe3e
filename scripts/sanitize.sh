#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Builds libattn with AddressSanitizer and UndefinedBehaviorSanitizer and
# runs every test suite under them (native and OpenCL paths; below, the
# one pair left out).
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTN_SANITIZE=ON \
  -DATTN_WERROR=ON -DATTN_BUILD_BENCH=OFF -DATTN_FAULT_INJECTION=ON >/dev/null
cmake --build build-asan -j"$(nproc)"
# tests/fuzz/lsan.supp: what PoCL, LLVM and CLBlast keep for good when they
# compile a kernel that is not in PoCL's cache yet (a fresh machine).
# intercept_tls_get_addr=0: LeakSanitizer's tracer (GCC 12's runtime)
# otherwise crashes at exit now and then ("Tracer caught signal 11"), seen
# on the ring's OpenCL runs, an upstream bug of its dynamic-TLS handling.
# Leaks are still found with it (a strided copy the ring did not free was).
# A suite that fails is run once more (--repeat until-pass:2): on this
# shared 2-core machine LeakSanitizer's own tracer was seen to crash
# (signal 11 inside it, after every assert had passed) while PoCL's threads
# exited; a real report repeats and still fails.  Left out: the
# opencl_variants runs with a GPU's local memory (opencl_variants_local48k*),
# whose host code is opencl_variants' own and whose minutes go to PoCL
# compiling their kernels.  (No comment line may stand inside the
# command below: it would end the command there, and the options before
# it would not reach ctest.)
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:intercept_tls_get_addr=0 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0" \
  ctest --test-dir build-asan --output-on-failure -j2 --repeat until-pass:2 \
  -E '^opencl_variants_local48k'
