#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The main job from a fresh clone: install the packages, build, list the
# devices and run a demo multi-head self-attention layer.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
if [ -x build/src/cli/attn-probe ]; then build/src/cli/attn-probe; fi
build/examples/attn-demo "$@"
