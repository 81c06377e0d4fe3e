#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Checks that a portable libattn (ATTN_NATIVE_ARCH=OFF) runs on any x86-64
# CPU until the run-time dispatch (src/cpu/isa.c) picks wider code: every
# instruction that touches a zmm register lies in the avx512 copy of the hot
# code, every ymm one in the avx2 or avx512 copy, and no other function
# uses VEX or EVEX encoded instructions at all (mnemonics starting with v).
#
# usage: scripts/check_isa.sh [LIBRARY]     (default build/libattn.so)
#
# A function belongs to a copy when its name ends in _avx512 / _avx2 (the
# copies' external names, ATTN_ISA_FN) or when the symbol table lists it
# under the copy's source file (build/isa/*_avx512.c, *_avx2.c: the static
# functions).  The library must keep its symbol table (not stripped).
# Prints the instruction counts of each copy and the functions of the
# avx512 copy; exits 0 when the rules hold, 1 when one breaks (naming the
# functions), 77 when readelf or objdump is missing or the library is not
# x86 (ctest: skipped).
set -eu
lib=${1:-build/libattn.so}
for tool in readelf objdump; do
  if ! command -v $tool >/dev/null 2>&1; then
    echo "check_isa: $tool not found (binutils)"
    exit 77
  fi
done
if ! readelf -h "$lib" | grep -q 'X86-64\|80386'; then
  echo "check_isa: $lib is not an x86 library"
  exit 77
fi
syms=$(mktemp)
trap 'rm -f "$syms"' EXIT INT TERM

# "address copy name" for every function symbol; the copy from the name's
# suffix, else from the FILE symbol the local symbols follow.
readelf -sW "$lib" | awk '
  /^Symbol table/ { file = "" }
  $4 == "FILE" { file = $8; next }
  $4 == "FUNC" && $2 ~ /^[0-9a-f]+$/ {
    addr = $2; sub(/^0+/, "", addr)
    name = $8; sub(/@.*/, "", name)
    copy = "base"
    if (name ~ /_avx512$/ || ($5 == "LOCAL" && file ~ /_avx512\.c$/))
      copy = "avx512"
    else if (name ~ /_avx2$/ || ($5 == "LOCAL" && file ~ /_avx2\.c$/))
      copy = "avx2"
    print addr, copy, name
  }' >"$syms"
if [ ! -s "$syms" ]; then
  echo "check_isa: $lib has no function symbols (stripped?)"
  exit 1
fi

objdump -d --no-show-raw-insn "$lib" | awk -v syms="$syms" '
  BEGIN {
    while ((getline line < syms) > 0) {
      split(line, f, " ")
      copy_of[f[1]] = f[2]
    }
  }
  # a function header: "0000000000012340 <name>:"
  /^[0-9a-f]+ <.*>:$/ {
    addr = $1; sub(/^0+/, "", addr)
    fn = $2; gsub(/^<|>:$/, "", fn)
    copy = (addr in copy_of) ? copy_of[addr] : "base"
    next
  }
  /^ *[0-9a-f]+:\t/ && fn != "" {
    split($0, part, "\t")
    insn = part[2]
    z = insn ~ /%zmm/; y = insn ~ /%ymm/; v = insn ~ /^v/
    zmm[copy] += z; ymm[copy] += y; vex[copy] += v; n[copy]++
    if (z && copy == "avx512") zfn[fn]++
    bad = (z && copy != "avx512") || (y && copy == "base") ||
          (v && copy == "base")
    if (bad && !(fn in reported)) {
      reported[fn] = 1
      printf("check_isa: %s (%s code) uses %s: %s\n", fn, copy,
             z ? "zmm" : y ? "ymm" : "VEX/EVEX", insn)
      failed = 1
    }
  }
  END {
    printf("%-8s %12s %8s %8s %10s\n", "copy", "instructions", "zmm",
           "ymm", "v-prefixed")
    split("base avx2 avx512", order, " ")
    for (i = 1; i <= 3; i++) {
      c = order[i]
      printf("%-8s %12d %8d %8d %10d\n", c, n[c], zmm[c], ymm[c], vex[c])
    }
    print "zmm instructions per function of the avx512 copy:"
    for (k in zfn)
      printf("  %6d  %s\n", zfn[k], k) | "sort -rn"
    close("sort -rn")
    exit failed ? 1 : 0
  }'
