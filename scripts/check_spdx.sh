#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Every source file of the repository (C and headers, OpenCL C, CMake,
# shell, python, linker script, device profiles, suppression files, manual
# pages) carries "SPDX-License-Identifier: Apache-2.0" in its first three
# lines.
#
# usage: scripts/check_spdx.sh [--fix] [SOURCE_DIR]   (default: this tree)
#   --fix   adds the line where it is missing, as a comment of the file's
#           language (after a #! line), instead of failing
# Lists the files without it and exits 1; exits 0 when all have it.
set -eu
fix=""
if [ "${1:-}" = "--fix" ]; then
  fix=1
  shift
fi
cd "${1:-$(dirname "$0")/..}"
if command -v git >/dev/null 2>&1 && git rev-parse --git-dir >/dev/null 2>&1; then
  files=$(git ls-files)
else
  files=$(find . -path ./build\* -prune -o -type f -print | sed 's|^\./||')
fi
tag='SPDX-License-Identifier: Apache-2.0'
missing=0 checked=0
for f in $files; do
  case $f in
  *.c | *.h | *.cl | *.map) line="/* $tag */" ;;
  *.1) line=".\\\" $tag" ;;
  *.cmake | *.in | *.sh | *.py | *.pyi | *.toml | *.prof | *.supp | CMakeLists.txt | \
    */CMakeLists.txt | .ci/run | .clang-format) line="# $tag" ;;
  *) continue ;;
  esac
  [ -f "$f" ] || continue
  checked=$((checked + 1))
  head -n 3 "$f" | grep -q "$tag" && continue
  if [ -n "$fix" ]; then
    tmp=$(mktemp)
    if head -n 1 "$f" | grep -q '^#!'; then
      { head -n 1 "$f"; echo "$line"; tail -n +2 "$f"; } >"$tmp"
    else
      { echo "$line"; cat "$f"; } >"$tmp"
    fi
    cat "$tmp" >"$f"
    rm -f "$tmp"
    echo "check_spdx: added to $f"
  else
    echo "check_spdx: no SPDX-License-Identifier line: $f"
    missing=$((missing + 1))
  fi
done
[ "$missing" -eq 0 ] || exit 1
echo "check_spdx: $checked source files, each with $tag"
