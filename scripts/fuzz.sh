#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Builds the libFuzzer harness (tests/fuzz) with clang, ASan and UBSan into
# build-fuzz and runs it for a bounded time over the seed corpus
# tests/fuzz/corpus (new inputs go to build-fuzz/corpus).  Installs nothing:
# it needs clang and its libFuzzer runtime (Debian bookworm: the packages
# clang and libclang-rt-14-dev) beside the packages of scripts/deps.sh.
#
#   sh scripts/fuzz.sh [SECONDS]      # default 60 (or FUZZ_TIME)
#
# PoCL shows two CPU devices (POCL_DEVICES="pthread pthread", unless set),
# so that the harness also runs a context on two devices.  The build is a
# test build (ATTN_FAULT_INJECTION, no fault armed), whose knob
# ATTN_TEST_DRIVER_CACHE lets the harness fuzz the default cache folder's
# rules on PoCL, where a product build does not use that folder.
#
# Exits non-zero on a crash, a sanitizer report, a leak, an input running
# longer than 10 s or a failed check of the harness; the input is then in
# build-fuzz/artifacts/ (replay: build-fuzz/tests/fuzz/attn-fuzz FILE).
set -eu
cd "$(dirname "$0")/.."
seconds=${1:-${FUZZ_TIME:-60}}
cc=${CC:-clang}
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "fuzz.sh: $cc not found (apt-get install clang libclang-rt-14-dev)" >&2
  exit 2
fi
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTN_FUZZ=ON -DATTN_FAULT_INJECTION=ON \
  -DATTN_BUILD_TESTS=OFF \
  -DATTN_BUILD_BENCH=OFF -DATTN_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target attn-fuzz
mkdir -p build-fuzz/corpus build-fuzz/artifacts
log=build-fuzz/fuzz.log
# intercept_tls_get_addr=0: as in scripts/sanitize.sh (LeakSanitizer's
# tracer otherwise crashes now and then, "Tracer caught signal 11").
ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:allocator_may_return_null=0:intercept_tls_get_addr=0 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0" \
ATTN_FUZZ_STATS=1 POCL_DEVICES="${POCL_DEVICES:-pthread pthread}" \
  build-fuzz/tests/fuzz/attn-fuzz -max_total_time="$seconds" -timeout=10 \
  -rss_limit_mb=2048 -max_len=512 -print_final_stats=1 \
  -artifact_prefix=build-fuzz/artifacts/ \
  build-fuzz/corpus tests/fuzz/corpus >"$log" 2>&1 && rc=0 || rc=$?
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
grep '^fuzz_attn:' "$log" || true
if [ "$rc" -ne 0 ]; then
  tail -n 60 "$log"
  echo "fuzz.sh: FAILED (exit $rc) after ${execs:-?} executions; input in build-fuzz/artifacts/, log in $log" >&2
  exit 1
fi
echo "fuzz.sh: clean: ${execs:-?} executions in ${seconds} s (${rate:-?} per second)"
