#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The GPU cases of libattn's targets, measured side by side with CLBlast and
# PyTorch on the same card, into one CSV, one PNG and one log:
#
#   sh bench/gpu_targets.sh ATTN_BENCH OUT_PREFIX
#
# writes OUT_PREFIX.csv (every row of the runs below), OUT_PREFIX.png
# (bench/plot.py; needs matplotlib) and OUT_PREFIX.txt (the tables).
# ATTN_BENCH_DEVICE (default gpu) is the OpenCL device, ATTN_BENCH_REPS
# (default 10) the timed runs per case; extra attn-bench options may follow
# OUT_PREFIX and go to every run.  The runs:
#   1. B=1 H=8 N=16384, d=64 and 128, f32, causal and not, resident (kernel
#      time by OpenCL events): native (the reference, timed once), cl-auto,
#      the unfused, fused and tiled variants forced, CLBlast, torch-cuda;
#   2. the same in f16 (no CLBlast: its half GEMM needs cl_khr_fp16);
#   3. decode: seq_q 1, B 8, 32 query / 8 kv heads, seq_kv 32768, d 128,
#      f16, resident: native, cl-decode (AUTO), decode and tiled forced,
#      torch-cuda, with GB/s of K/V read;
#   4. host pointers, B=1 H=8 N=16384 d=64 f32 non-causal: cl-auto and the
#      fused and tiled variants (uploads and downloads included);
#   5. the matrix units: the tensor-core variant mma at ATTN_PRECISION=tf32
#      (f32: TF32 products; f16: f16 products) and 3xtf32 (f32), B=1 H=8
#      N=16384, d=64 and 128, causal and not, resident, with torch-cuda;
#   6. the tiled variant of run 1 with its row reductions through local
#      memory (tiled.sg = 0, a profile in ATTN_PLATFORM_DIR) where run 1's
#      take the device's subgroup shuffles: written apart, to
#      OUT_PREFIX.tiled_sg0.csv (its rows read as run 1's tiled ones);
#   7. the backward pass on device buffers (attn-bwd-bench beside
#      ATTN_BENCH, --resident: kernel time by OpenCL events), B=1 H=8
#      d=64 f32, N 4096 and 16384, causal and not, with the variants
#      bwd_tiled and bwd_fused forced, beside PyTorch's SDPA forward and
#      backward on CUDA tensors (--torch-cuda): into OUT_PREFIX.txt.
set -eu
if [ $# -lt 2 ]; then
  echo "usage: sh bench/gpu_targets.sh ATTN_BENCH OUT_PREFIX [attn-bench options]" >&2
  exit 2
fi
bench=$1
out=$2
shift 2
dev=${ATTN_BENCH_DEVICE:-gpu}
reps=${ATTN_BENCH_REPS:-10}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: >"$out.txt"

failed=""
run() {
  name=$1
  shift
  echo "== attn-bench $*" | tee -a "$out.txt"
  { "$bench" --device "$dev" --native-reps 1 --reps "$reps" \
      --csv "$tmp/$name.csv" "$@"; echo $? >"$tmp/$name.rc"; } 2>&1 |
    tee -a "$out.txt"
  [ "$(cat "$tmp/$name.rc")" = 0 ] || failed="$failed $name"
}

run f32 --resident --impl native,cl-auto,clblast,torch-cuda \
  --kernel unfused,fused,tiled --sizes 16384 --head-dim 64,128 \
  --max-mem 9000 "$@"
run f16 --resident --dtype f16 --impl native,cl-auto,torch-cuda \
  --kernel fused,tiled --sizes 16384 --head-dim 64,128 "$@"
run decode --resident --decode-only --dtype f16 --batch 8 --heads 32 \
  --kv-heads 8 --head-dim 128 --sizes 32768 --seq-q 1 --causal no \
  --impl native,cl-decode,torch-cuda --kernel decode,tiled "$@"
run host --impl native,cl-auto --kernel fused,tiled --sizes 16384 \
  --head-dim 64 --causal no "$@"
for prec in tf32 3xtf32; do
  for dt in f32 f16; do
    [ "$prec/$dt" = 3xtf32/f16 ] && continue
    export ATTN_PRECISION="$prec"
    run "mma_${prec}_$dt" --resident --dtype "$dt" \
      --impl native,torch-cuda --kernel mma --sizes 16384 --head-dim 64,128 \
      "$@"
  done
done
unset ATTN_PRECISION
mkdir -p "$tmp/sg0"
printf '[default]\ntiled.sg = 0\n' >"$tmp/sg0/tiled_sg0.prof"
echo "== tiled.sg = 0: row reductions through local memory" | tee -a "$out.txt"
saved_dir=${ATTN_PLATFORM_DIR-}
ATTN_PLATFORM_DIR="$tmp/sg0"
export ATTN_PLATFORM_DIR
run tiled_sg0 --resident --impl native --kernel tiled --sizes 16384 \
  --head-dim 64,128 "$@"
if [ -n "$saved_dir" ]; then ATTN_PLATFORM_DIR=$saved_dir; else unset ATTN_PLATFORM_DIR; fi
[ ! -f "$tmp/tiled_sg0.csv" ] || cp "$tmp/tiled_sg0.csv" "$out.tiled_sg0.csv"

first=1
for f in f32 f16 decode host mma_tf32_f32 mma_tf32_f16 mma_3xtf32_f32; do
  [ -f "$tmp/$f.csv" ] || continue
  if [ $first = 1 ]; then
    cat "$tmp/$f.csv" >"$out.csv"
    first=0
  else
    tail -n +2 "$tmp/$f.csv" >>"$out.csv"
  fi
done
echo "wrote $out.csv and $out.txt"
python3 "$here/plot.py" "$out.csv" "$out.png" && echo "wrote $out.png" ||
  echo "no plot (python3 $here/plot.py $out.csv $out.png needs matplotlib)"
# 7, after the CSV is written (a time limit around the script then costs
# only these lines).
bwd=$(dirname "$bench")/attn-bwd-bench
for k in bwd_tiled bwd_fused; do
  echo "== attn-bwd-bench --device $dev --resident --kernel $k" | tee -a "$out.txt"
  { "$bwd" --device "$dev" --resident --torch-cuda --kernel "$k" \
      --n 4096,16384 --both --reps 5; echo $? >"$tmp/bwd_$k.rc"; } 2>&1 |
    tee -a "$out.txt"
  [ "$(cat "$tmp/bwd_$k.rc")" = 0 ] || failed="$failed bwd_$k"
done

if [ -n "$failed" ]; then
  echo "failed runs:$failed (see $out.txt)"
  exit 1
fi
