#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Times two builds of libattn.so against each other on the native backend:
# the same attn-bench and attn-demo binaries load one library or the other
# (LD_LIBRARY_PATH comes before their RUNPATH), in alternating rounds so
# that the load of a shared machine hits both alike.  Prints, per case, the
# median over the rounds of each library's median time (and its GFLOP/s),
# the median of the per-round ratios B/A, and the fastest time of each over
# all rounds with their ratio, which a burst of load on a shared machine
# moves least.  Ratios above 1: A is faster.
#
# usage: bench/compare_libs.sh [-n ROUNDS] LIBDIR_A LIBDIR_B
#   LIBDIR_*      folders holding libattn.so.N, N the ABI's major version
#                 (build folders)
#   -n ROUNDS     rounds (default 7); each runs both libraries once
#   ATTN_BENCH    attn-bench to run (default build/bench/attn-bench)
#   ATTN_DEMO     attn-demo to run (default build/examples/attn-demo)
#   COMPARE_SIZES attn-bench --sizes (default 1024,4096)
#
# Cases: attn-bench --no-peers --impl native at B=1 H=8 d=64, f32 and f16,
# causal and not; the demo layer on the native backend (attn-demo --device
# native, its own best-of-3 time).  The binaries themselves must take the
# same public ABI as both libraries.
set -eu
rounds=7
if [ "${1:-}" = "-n" ]; then
  rounds=$2
  shift 2
fi
if [ $# -ne 2 ]; then
  sed -n '2,/^set -eu/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
a=$(cd "$1" && pwd)
b=$(cd "$2" && pwd)
bench=${ATTN_BENCH:-build/bench/attn-bench}
demo=${ATTN_DEMO:-build/examples/attn-demo}
sizes=${COMPARE_SIZES:-1024,4096}
# The library's SONAME link in folder $1 (libattn.so.1 for ABI 1).
lib_in() {
  for f in "$1"/libattn.so.[0-9] "$1"/libattn.so.[0-9][0-9]; do
    [ -e "$f" ] && { echo "$f"; return; }
  done
  echo "$1/libattn.so.N"
}
lib_a=$(lib_in "$a")
lib_b=$(lib_in "$b")
for f in "$lib_a" "$lib_b" "$bench" "$demo"; do
  [ -e "$f" ] || { echo "compare_libs: $f not found" >&2; exit 2; }
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT INT TERM

# one round of one library: tag A or B, round r
run_one() {
  for dt in f32 f16; do
    LD_LIBRARY_PATH=$2 "$bench" --no-peers --impl native --dtype $dt \
      --sizes "$sizes" --causal both |
      awk -v tag="$1" -v r="$3" -v dt=$dt '
        $3 == "libattn" && $4 == "native" {
          # N causal libattn native KERNEL median-ms min-ms TFLOP/s ...
          print tag, r, dt "/N=" $1 "/" ($2 == "yes" ? "causal" : "full"),
                $6, $8 * 1000, $7 }' >>"$out/rows"
  done
  LD_LIBRARY_PATH=$2 "$demo" --device native |
    awk -v tag="$1" -v r="$3" '$1 == "time:" {
      print tag, r, "demo-layer", $2, "-", $2 }' >>"$out/rows"
}

echo "A: $lib_a"
echo "B: $lib_b"
echo "$rounds rounds (A B, then B A, ...); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
r=1
while [ $r -le "$rounds" ]; do
  if [ $((r % 2)) -eq 1 ]; then
    run_one A "$a" $r
    run_one B "$b" $r
  else
    run_one B "$b" $r
    run_one A "$a" $r
  fi
  r=$((r + 1))
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# rows: tag round case median-ms gflops min-ms
awk '
  function median(list,    n, v, i, j, t) {
    n = split(list, v, " ")
    for (i = 2; i <= n; i++)
      for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) {
        t = v[j]; v[j] = v[j - 1]; v[j - 1] = t
      }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  }
  {
    key = $3
    if (!(key in seen)) { seen[key] = 1; order[++nk] = key }
    ms[$1, key] = ms[$1, key] " " $4
    gf[$1, key] = gf[$1, key] " " $5
    t[$1, key, $2] = $4
    rounds[key, $2] = 1
    if (!(($1, key) in lo) || $6 + 0 < lo[$1, key]) lo[$1, key] = $6 + 0
  }
  END {
    printf("%-20s %9s %9s %8s %8s %7s %9s %9s %7s\n", "case", "A ms",
           "B ms", "A GF/s", "B GF/s", "B/A", "A min", "B min", "B/A")
    printf("%-20s %9s %9s %8s %8s %7s %9s %9s %7s\n", "", "median",
           "median", "", "", "median", "ms", "ms", "min")
    for (i = 1; i <= nk; i++) {
      k = order[i]; rl = ""
      for (rk in rounds) {
        split(rk, p, SUBSEP)
        if (p[1] == k && ((("A", k, p[2]) in t) && (("B", k, p[2]) in t)))
          rl = rl " " t["B", k, p[2]] / t["A", k, p[2]]
      }
      ga = k == "demo-layer" ? "-" : sprintf("%.1f", median(gf["A", k]))
      gb = k == "demo-layer" ? "-" : sprintf("%.1f", median(gf["B", k]))
      printf("%-20s %9.3f %9.3f %8s %8s %7.3f %9.3f %9.3f %7.3f\n", k,
             median(ms["A", k]), median(ms["B", k]), ga, gb, median(rl),
             lo["A", k], lo["B", k], lo["B", k] / lo["A", k])
    }
  }' "$out/rows"
