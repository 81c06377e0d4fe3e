#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# libattn_mpi's exported surface: the dynamic symbols it defines are
# exactly the ATTN_API functions of include/attn/attn_mpi.h (and
# attn_mpi_cl.h when built with OpenCL), each in the
# version node ATTN_MPI_1 (src/mpi/attn_mpi.map), and its SONAME is
# libattn_mpi.so.<ATTN_ABI_VERSION>.
# usage: check_symbols_mpi.sh LIBRARY SOURCE_DIR [cl]   (77 without nm/readelf)
set -eu
lib=$1 src=$2
for tool in nm readelf; do
  command -v $tool >/dev/null 2>&1 || { echo "$tool not found"; exit 77; }
done
# attn_mpi_cl.h's function where the library was built with OpenCL
# (third argument "cl").
headers="$src/include/attn/attn_mpi.h"
[ "${3:-}" = cl ] && headers="$headers $src/include/attn/attn_mpi_cl.h"
declared=$(sed -n 's/^ATTN_API[^(]*[ *]\(attn_[a-z0-9_]*\)(.*/\1/p' \
  $headers | sort -u)
raw=$(nm -D --defined-only "$lib" | awk '$2 != "A" { print $3 }' | sort -u)
exported=$(echo "$raw" | sed 's/@.*//' | sort -u)
fail=0
if [ "$declared" != "$exported" ]; then
  echo "check_symbols_mpi: exported symbols differ from attn_mpi.h's:"
  echo "declared: $declared" | tr '\n' ' '
  echo
  echo "exported: $exported" | tr '\n' ' '
  echo
  fail=1
fi
if echo "$raw" | grep -v '@@ATTN_MPI_1$' | grep -q .; then
  echo "check_symbols_mpi: symbols outside the node ATTN_MPI_1:"
  echo "$raw" | grep -v '@@ATTN_MPI_1$'
  fail=1
fi
abi=$(sed -n 's/^#define ATTN_ABI_VERSION \([0-9]*\).*/\1/p' \
  "$src/include/attn/attn.h")
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ "$soname" != "libattn_mpi.so.$abi" ]; then
  echo "check_symbols_mpi: SONAME is '$soname', not libattn_mpi.so.$abi"
  fail=1
fi
[ $fail -eq 0 ] || exit 1
echo "check_symbols_mpi: $(echo "$exported" | wc -l) symbols, those of" \
  "attn_mpi.h, in ATTN_MPI_1, SONAME $soname"
