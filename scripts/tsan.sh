#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Builds libattn with ThreadSanitizer (ATTN_SANITIZE=thread) and runs the
# multi-threaded suites under it: test_api (per-thread errors), the thread
# suite on the native backend and on the OpenCL CPU device (three-kernel
# and fused paths, two queues), the program-cache suite (two threads
# racing to fill one cache), and libattn_mpi's ring, forward and
# backward.  The first report stops the suite and fails it.
# tests/tsan.supp lists the OpenCL driver's libraries, which are not
# built with TSan, and two reports of Open MPI's own; libattn itself is
# never suppressed.
# usage: scripts/tsan.sh [--all] [BUILD_DIR]
#   --all       every ctest entry (about 2.5 minutes on two cores with
#               warm program caches, against 40 s for the threaded ones)
#   BUILD_DIR   default build-tsan (a relative path is taken from the
#               repository root)
set -eu
# The suites whose calls run on several threads at once; with MPI, the
# ring's (each step's blocks on a thread beside the one that moves the
# messages: 2 ranks, the OpenCL CPU device, and MPI_THREAD_SINGLE).
suites='^(test_api|test_threads|test_threads_opencl.*|opencl_program|test_ring_np2|test_ring_np2_opencl|test_ring_np3_single)$'
if [ "${1:-}" = "--all" ]; then
  suites=.
  shift
fi
build=${1:-build-tsan}
cd "$(dirname "$0")/.."
sh scripts/deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTN_SANITIZE=thread \
  -DATTN_WERROR=ON -DATTN_BUILD_BENCH=OFF -DATTN_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j"$(nproc)"
[ -n "$(ctest --test-dir "$build" -N -R "$suites" | grep 'Test *#')" ] || {
  echo "tsan.sh: no test matches $suites" >&2
  exit 1
}
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 history_size=4 suppressions=$(pwd)/tests/tsan.supp" \
  ctest --test-dir "$build" --output-on-failure -j2 -R "$suites"
