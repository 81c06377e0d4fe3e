#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Builds libattn for valgrind and runs the test suites under memcheck: an
# invalid read or write, a use of an uninitialised value, a bad free or a
# leaked block (definitely, indirectly or possibly lost) fails the run.
# tests/opencl/valgrind-opencl.supp holds what the OpenCL driver (ocl-icd,
# PoCL and the LLVM it compiles with) reports of its own, each explained.
#
# usage: scripts/valgrind.sh [--quick] [BUILD_DIR]
#   --quick     leave out the entries that take minutes under memcheck
#               (below)
#   BUILD_DIR   default build-valgrind (a relative path is taken from the
#               repository root)
#   ATTN_VALGRIND_TESTS=REGEX   only the ctest entries REGEX matches
#
# - The build is the one scripts/test.sh tests (fault injection compiled
#   in), portable (ATTN_NATIVE_ARCH=OFF, the default) and with debug
#   information (RelWithDebInfo).  valgrind runs no AVX-512 and its CPUID
#   says so, so the native backend picks its avx2 kernels by itself.
# - Every ctest entry runs under memcheck (ctest starts the test programs
#   through BUILD_DIR/valgrind-test.sh, written below), and so do the
#   programs the suites start, attn-probe among them.  Not under memcheck:
#   install_consumer, a packaging test that runs cmake, the compiler and
#   pkg-config (its program makes the calls test_api makes); check_isa
#   and check_symbols, which read the library with readelf, objdump and
#   nm; check_spdx, which reads the sources; check_tools, a shell script
#   over the tools' command lines, and bench_cli, a CMake script over
#   attn-bench's options (their library calls are the suites' own); the
#   linker PoCL runs to link a kernel (not ours); attn-tune,
#   the tuning tool of bench/ that test_tune runs (it times hundreds of
#   kernel launches; the library calls it makes are the suites' own); and
#   attn-probe --bench (test_probe), which times N=1024 attention on every
#   device (the suites run those paths); test_ring_np* and
#   test_ring_cl_np*, started by mpiexec (not test programs ctest can wrap;
#   scripts/sanitize.sh runs them under ASan), and check_symbols_mpi, nm
#   over libattn_mpi.
# - Each process writes its report to BUILD_DIR/valgrind-logs/PID.log; the
#   reports with errors are printed at the end.
# - PoCL compiles kernels with LLVM, which is slow under valgrind, so the
#   suites first run once natively to fill PoCL's and libattn's program
#   caches (kept in BUILD_DIR/cache); the memcheck run then loads the
#   compiled kernels.  PoCL compiles for the host's CPU, but under valgrind
#   it sees the CPU valgrind emulates (AVX2, no AVX-512): both runs name
#   that target (POCL_LLVM_CPU_NAME, POCL_KERNELLIB_NAME) so that they
#   share the cached kernels, which valgrind can run.
# - Time: the whole suite takes about 40 minutes on two cores, most of it
#   in the long-sequence, non-finite-input and soak cases (their double
#   precision oracle and the kernels run 30 to 60 times slower under
#   memcheck).  --quick leaves out test_sdpa*, test_hostile*,
#   test_threads_opencl* (the thread suite stays on the native backend;
#   TSan runs the OpenCL ones), test_env (contexts under every bad environment value),
#   opencl_program, opencl_cache_*, opencl_variants (and its runs with a
#   GPU's local memory), opencl_kernels (10,000
#   calls, more than six minutes under memcheck), opencl_probe (attn-probe
#   on every device) and soak_smoke; and the runs that repeat another's
#   code under memcheck: *_isa_avx2 (the native backend's choice under
#   valgrind anyway), *_isa_avx512 (skipped: no AVX-512 under valgrind),
#   the matrix-unit variants at a second precision or storage type
#   (test_strides_mma_3xtf32, test_strides_amdmm_tf32,
#   test_strides_xmx_bf16, test_bf16_storage_{mma,amdmm,xmx}_*: the same
#   host code and the same buffer accesses as test_strides_mma_tf32,
#   test_strides_amdmm_wmma_tf32 and test_strides_xmx_tf32, which stay)
#   and the every-variant sweeps of test_varlen and test_bf16_storage
#   (test_strides_each_kernel stays, with test_varlen_opencl and the
#   test_bf16_storage runs on the three-kernel and fused paths), and
#   test_backward_opencl_auto_gpu_shape (the code of
#   test_backward_opencl_bwd_tiled, which stays), the layer's runs of the
#   matrix-unit variants (test_mha_matrix_tf32, test_mha_mma_3xtf32: the
#   host code of test_mha_each_kernel, which stays) and the device_
#   entries (they skip without ATTN_DEVICE).
set -eu
quick=""
if [ "${1:-}" = "--quick" ]; then
  quick=1
  shift
fi
build=${1:-build-valgrind}
cd "$(dirname "$0")/.."
src=$(pwd)
sh scripts/deps.sh
if ! command -v valgrind >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: valgrind"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    --no-install-recommends valgrind >/dev/null
fi
mkdir -p "$build"
build=$(cd "$build" && pwd)
logs=$build/valgrind-logs

launcher=$build/valgrind-test.sh
cat >"$launcher" <<LAUNCHER
#!/bin/sh
# Written by scripts/valgrind.sh: runs one test program under memcheck
# (ATTN_VALGRIND=0: natively, to fill the program caches).
[ "\${ATTN_VALGRIND:-1}" = 0 ] && exec "\$@"
exec valgrind --error-exitcode=97 --leak-check=full \\
  --errors-for-leak-kinds=definite,indirect,possible \\
  --show-leak-kinds=definite,indirect,possible --num-callers=40 \\
  --trace-children=yes \\
  --trace-children-skip='*/ld,*/ld.*,*-ld,*-ld.*,*/attn-tune' \\
  --trace-children-skip-by-arg='*--bench*' \\
  --suppressions='$src/tests/opencl/valgrind-opencl.supp' \\
  --log-file='$logs/%p.log' "\$@"
LAUNCHER
chmod +x "$launcher"

# CMake >= 3.29 starts test programs through CMAKE_TEST_LAUNCHER; older
# ones (Debian 12 has 3.25) through CMAKE_CROSSCOMPILING_EMULATOR.
version=$(cmake --version | sed -n 's/^cmake version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
major=${version% *}
minor=${version#* }
if [ "$major" -gt 3 ] || { [ "$major" -eq 3 ] && [ "$minor" -ge 29 ]; }; then
  prefix=-DCMAKE_TEST_LAUNCHER=$launcher
else
  prefix=-DCMAKE_CROSSCOMPILING_EMULATOR=$launcher
fi
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTN_NATIVE_ARCH=OFF \
  -DATTN_WERROR=ON -DATTN_FAULT_INJECTION=ON -DATTN_BUILD_EXAMPLES=OFF \
  "$prefix" >/dev/null
cmake --build "$build" -j"$(nproc)"

tests=${ATTN_VALGRIND_TESTS:-.}
exclude='^(install_consumer|check_isa|check_symbols|check_tools|check_spdx|bench_cli|check_symbols_mpi|test_ring_np.*|test_ring_cl_np.*)$'
if [ -n "$quick" ]; then
  exclude='^(install_consumer|check_isa|check_symbols|check_tools|check_spdx|bench_cli|check_symbols_mpi|test_ring_np.*|test_ring_cl_np.*|test_sdpa.*|test_hostile.*|test_threads_opencl.*|test_env|opencl_program|opencl_cache_.*|opencl_variants.*|opencl_kernels|opencl_probe|soak_smoke|.*_isa_avx2|.*_isa_avx512|test_strides_mma_3xtf32|test_strides_amdmm_tf32|test_strides_xmx_bf16|test_bf16_storage_(mma|amdmm|xmx)_.*|test_varlen_each_kernel|test_bf16_storage_each_kernel|test_backward_opencl_auto_gpu_shape|test_mha_matrix_tf32|test_mha_mma_3xtf32|device_.*)$'
fi
# Every selected entry must start under the launcher: one that did not
# would pass unchecked.
total=$(ctest --test-dir "$build" -N -R "$tests" -E "$exclude" |
  sed -n 's/^Total Tests: //p')
wrapped=$(ctest --test-dir "$build" --show-only=json-v1 -R "$tests" -E "$exclude" |
  grep -c "\"$launcher\"" || true)
if [ "${total:-0}" -eq 0 ] || [ "$wrapped" -ne "$total" ]; then
  echo "valgrind.sh: $wrapped of ${total:-0} tests start under $launcher" >&2
  exit 1
fi

export POCL_CACHE_DIR="$build/cache/pocl" ATTN_CACHE_DIR="$build/cache/attn"
if grep -qw avx2 /proc/cpuinfo; then
  export POCL_LLVM_CPU_NAME="${POCL_LLVM_CPU_NAME:-haswell}"
  export POCL_KERNELLIB_NAME="${POCL_KERNELLIB_NAME:-avx2}"
fi
start=$(date +%s)
echo "valgrind.sh: $total tests, run natively first to fill the program caches"
if ! ATTN_VALGRIND=0 ctest --test-dir "$build" -j2 -R "$tests" -E "$exclude" \
  >"$build/native-run.log" 2>&1; then
  cat "$build/native-run.log"
  exit 1
fi
echo "valgrind.sh: the same tests under memcheck"
rm -rf "$logs"
mkdir -p "$logs"
status=0
ctest --test-dir "$build" --output-on-failure -j2 -R "$tests" -E "$exclude" ||
  status=1
# A report from a process whose exit status no test checks (one started
# through a pipe, say) fails the run too.
bad=$(grep -l 'ERROR SUMMARY: [1-9]' "$logs"/*.log || true)
for f in $bad; do
  echo "==== $f"
  cat "$f"
  status=1
done
echo "valgrind.sh: $(ls "$logs" | wc -l) processes checked," \
  "$(echo $bad | wc -w) with errors, $(($(date +%s) - start)) s"
exit $status
