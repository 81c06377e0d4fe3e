#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# libattn_mpi's exported surface: the dynamic symbols it defines are
# exactly the ATTN_API functions of include/attn/attn_mpi.h (and
# attn_mpi_cl.h when built with OpenCL), each in the
# version node of src/mpi/attn_mpi.map that added it (ATTN_MPI_1, then
# ATTN_MPI_1.1 for attn_sdpa_ring_backward, ATTN_MPI_1.2 for
# attn_sdpa_ring_cl_backward), and its SONAME is
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
# Each symbol in its node: those of ABI 1's first release in ATTN_MPI_1,
# the backward in ATTN_MPI_1.1, the device ring's backward in ATTN_MPI_1.2.
node_of() {
  case $1 in
    attn_sdpa_ring_backward) echo ATTN_MPI_1.1 ;;
    attn_sdpa_ring_cl_backward) echo ATTN_MPI_1.2 ;;
    *) echo ATTN_MPI_1 ;;
  esac
}
for s in $raw; do
  want="${s%%@*}@@$(node_of "${s%%@*}")"
  if [ "$s" != "$want" ]; then
    echo "check_symbols_mpi: $s is not $want"
    fail=1
  fi
done
abi=$(sed -n 's/^#define ATTN_ABI_VERSION \([0-9]*\).*/\1/p' \
  "$src/include/attn/attn.h")
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ "$soname" != "libattn_mpi.so.$abi" ]; then
  echo "check_symbols_mpi: SONAME is '$soname', not libattn_mpi.so.$abi"
  fail=1
fi
[ $fail -eq 0 ] || exit 1
echo "check_symbols_mpi: $(echo "$exported" | wc -l) symbols, those of" \
  "attn_mpi.h, in their nodes (ATTN_MPI_1, ATTN_MPI_1.1, ATTN_MPI_1.2)," \
  "SONAME $soname"
