#!/bin/sh
# Builds libattn with AddressSanitizer and UndefinedBehaviorSanitizer and
# runs every test suite under them (native and OpenCL paths).
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTN_SANITIZE=ON \
  -DATTN_WERROR=ON -DATTN_BUILD_BENCH=OFF -DATTN_FAULT_INJECTION=ON >/dev/null
cmake --build build-asan -j"$(nproc)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j2
