#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Checks the exported surface of libattn.so (docs/ABI.md): the dynamic
# symbols it defines are exactly the ATTN_API functions of the public
# headers, each listed in the version script src/api/attn.map and bound to
# its version node, and the SONAME is libattn.so.<ATTN_ABI_VERSION>.
#
# usage: scripts/check_symbols.sh LIBRARY SOURCE_DIR [HEADER...]
#        (default headers: SOURCE_DIR/include/attn/attn.h and attn_cl.h)
#
# Exits 0 when all agree, 1 naming each difference, 77 when nm or readelf
# is missing (ctest: skipped).
set -eu
lib=$1 src=$2
shift 2
[ $# -gt 0 ] || set -- "$src/include/attn/attn.h" "$src/include/attn/attn_cl.h"
for tool in nm readelf; do
  if ! command -v $tool >/dev/null 2>&1; then
    echo "check_symbols: $tool not found (binutils)"
    exit 77
  fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Declared: "ATTN_API <type> name(" in the headers.
cat "$@" | sed -n 's/^ATTN_API[^(]*[ *]\(attn_[a-z0-9_]*\)(.*/\1/p' |
  sort -u >"$tmp/headers"
# Listed: the global names of the version script, and "name@@node" for
# each (the node it is listed under).
awk '/^ATTN_[0-9.]* *[{]/ { node = $1 }
     /^ *attn_[a-z0-9_]*;/ { sub(/^ */, ""); sub(/;.*/, ""); print $0 "@@" node }' \
  "$src/src/api/attn.map" | sort -u >"$tmp/map_nodes"
sed 's/@.*//' "$tmp/map_nodes" | sort -u >"$tmp/map"
# Exported: defined dynamic symbols other than the version node itself.
nm -D --defined-only "$lib" | awk '$2 != "A" { print $3 }' >"$tmp/raw"
sed 's/@.*//' "$tmp/raw" | sort -u >"$tmp/exported"
abi=$(sed -n 's/^#define ATTN_ABI_VERSION \([0-9]*\).*/\1/p' \
  "$src/include/attn/attn.h")
fail=0
if ! cmp -s "$tmp/headers" "$tmp/exported"; then
  echo "check_symbols: exported symbols differ from the headers' ATTN_API"
  echo "functions (< headers only, > exported only):"
  diff "$tmp/headers" "$tmp/exported" | grep '^[<>]' || true
  fail=1
fi
# The map may list functions of a backend this build leaves out.
if [ -n "$(comm -13 "$tmp/map" "$tmp/exported")" ]; then
  echo "check_symbols: exported but not in src/api/attn.map:"
  comm -13 "$tmp/map" "$tmp/exported"
  fail=1
fi
# Each symbol in a node of this ABI (ATTN_<abi>, or ATTN_<abi>.<n> for
# the functions added since), the node the version script lists it under.
unversioned=$(grep -v "@@ATTN_$abi\(\.[0-9]*\)\{0,1\}\$" "$tmp/raw" || true)
if [ -n "$unversioned" ]; then
  echo "check_symbols: symbols outside the version nodes of ATTN_$abi:"
  echo "$unversioned"
  fail=1
fi
misplaced=$(sort -u "$tmp/raw" | comm -23 - "$tmp/map_nodes")
if [ -n "$misplaced" ]; then
  echo "check_symbols: bound to another version node than src/api/attn.map's:"
  echo "$misplaced"
  fail=1
fi
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ "$soname" != "libattn.so.$abi" ]; then
  echo "check_symbols: SONAME is '$soname', not libattn.so.$abi"
  fail=1
fi
[ $fail -eq 0 ] || exit 1
echo "check_symbols: $(wc -l <"$tmp/exported") symbols, all attn_* of the" \
  "headers, in the version nodes of ATTN_$abi, SONAME $soname"
