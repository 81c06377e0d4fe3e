#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Builds libattn and runs every test suite (ctest), from a fresh clone.
# With CI=true, compiler warnings are errors.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
werror=OFF
[ "${CI:-}" = "true" ] && werror=ON
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Release -DATTN_WERROR=$werror \
  -DATTN_FAULT_INJECTION=ON >/dev/null
cmake --build build-test -j"$(nproc)"
ctest --test-dir build-test --output-on-failure -j2
