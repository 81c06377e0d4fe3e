#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Compiles every OpenCL program of libattn with other vendors' offline
# compilers, no GPU needed: Intel's ocloc for a Gen12 (Xe-LP, tgllp) and an
# Xe-HPG (Arc, acm-g10) GPU; clang for AMD's CDNA (gfx90a) and RDNA 2
# (gfx1030) GPUs, the first as OpenCL C 2.0 and the second as 1.2 (--all:
# both as both), linked with the ROCm device libraries as AMD's driver
# does, and for CDNA 3 (gfx940) and RDNA 3 (gfx1100), which take only the
# programs built for their matrix units (the amdmm variant's, -DAM_EMU=0:
# those go to their own gfx targets only, and must show v_mfma / v_wmma
# instructions in the assembly); and for NVIDIA's Ampere (sm_80) and Hopper (sm_90) GPUs, clang to
# PTX (nvptx64-nvidia-nvcl, OpenCL C 1.2, built-ins from libclc) once per
# program, then NVIDIA's ptxas to machine code for each.  The programs are
# what attn-cl-dump (tests/tools) writes: each program's sources and build
# options exactly as the library hands them to the driver, for the default
# tuning and for each vendor's profile in platforms/ (the default tuning on
# every target, a vendor's tuning on that vendor's targets).  The NVIDIA
# targets also take tests/tools/ptx_probe.cl, inline PTX (ldmatrix,
# mma.sync f16 and tf32, shfl.sync) of the kind tensor-core kernels issue,
# as it is and broken on purpose twice (ok when ptxas refuses those).
# The XMX kernel's build for Arc's matrix units (Intel's Arc section)
# compiles for acm-g10 only, and its machine code must hold DPAS
# instructions (ocloc disasm).
#
#   sh scripts/offline_compile.sh [--build-dir DIR] [--jobs N] [--all]
#                                 [--only GLOB]
#
# --only: the programs whose names match the shell pattern GLOB only
# (e.g. 'backward_*').  --build-dir: a configured build tree to build attn-cl-dump in (default
# build-offline, configured here).  Prints a table (program x target: ok,
# warn, ERROR), then the first warning or error line of each cell that is
# not ok; the logs (registers, spills and memory per kernel) and the table
# are in DIR/offline-compile/.  Exits non-zero on any error.  Warnings
# (register spills, a loop left rolled) do not fail.
#
# Installs what is missing with apt-get (through sudo when not root):
# clang-15 and rocm-device-libs for AMD, libclc-15 for NVIDIA, libllvm14
# and libclang-cpp14 for ocloc (python3-pip too where python3 has no pip).
# ocloc itself comes from Debian's intel-opencl-icd, which is NOT installed:
# its packages are downloaded and unpacked into .offline-tools/ (installing
# them would register Intel's OpenCL driver with the ICD loader).  ptxas
# comes from PyPI's nvidia-cuda-nvcc-cu12, installed with pip --target into
# .offline-tools/nvidia (never system-wide).
set -eu
cd "$(dirname "$0")/.."
root=$PWD

# ---- one compile (run through xargs): --one TARGET PROGRAM -------------
if [ "${1:-}" = "--one" ]; then
  target=$2 prog=$3
  src=$OC_OUT/dump/$prog.cl
  opts=$(cat "$OC_OUT/dump/$prog.opts")
  log=$OC_OUT/logs/$prog.$target.log
  work=$OC_OUT/bin/$target
  mkdir -p "$work"
  rc=0
  # The status of target $1 from its log $2 and exit status $3.  A
  # program with a .xfail file (a broken probe) must fail: "ok" when it
  # does, an error when it compiles.
  finish() {
    if [ -f "$OC_OUT/dump/$prog.xfail" ]; then
      if [ "$3" -ne 0 ]; then
        echo "ok" >"$OC_OUT/logs/$prog.$1.status"
      else
        echo "ERROR compiled, but is broken on purpose: $(cat "$OC_OUT/dump/$prog.xfail")" \
          >"$OC_OUT/logs/$prog.$1.status"
      fi
    elif [ "$3" -ne 0 ]; then
      line=$(grep -m1 -i 'error' "$2" || true)
      [ -n "$line" ] || line=$(grep -m1 . "$2" || echo "exit status $3")
      echo "ERROR $line" >"$OC_OUT/logs/$prog.$1.status"
    elif line=$(grep -m1 -i 'warning' "$2"); then
      echo "warn $line" >"$OC_OUT/logs/$prog.$1.status"
    else
      echo "ok" >"$OC_OUT/logs/$prog.$1.status"
    fi
  }
  case $target in
    intel-*)
      LD_LIBRARY_PATH=$OC_INTEL_LIB "$OC_OCLOC" compile -file "$src" \
        -device "${target#intel-}" -options "$opts" -out_dir "$work" \
        -output "$prog" >"$log" 2>&1 || rc=$?
      # The XMX kernel built for the matrix units (XM_EMU=0): its machine
      # code must hold DPAS instructions (ocloc's disassembler, IGA).
      case $opts in *-DXM_EMU=0*)
        if [ "$rc" -eq 0 ]; then
          dis=$work/$prog.dis
          LD_LIBRARY_PATH=$OC_INTEL_LIB:$OC_IGA_LIB "$OC_OCLOC" disasm \
            -file "$(ls "$work/${prog}_"*.bin | head -n1)" -dump "$dis" \
            >/dev/null 2>&1 || true
          n=$(cat "$dis"/*.asm 2>/dev/null | grep -c 'dpas' || true)
          echo "kernel attn_xmx: $n dpas instructions in the machine code" >>"$log"
          [ "$n" -gt 0 ] || {
            echo "error: no dpas instruction in the XMX kernel's machine code" >>"$log"
            rc=1
          }
        fi ;;
      esac
      ;;
    amd-*)
      rest=${target#amd-}
      mcpu=${rest%%-*}
      std=$(echo "${rest#*-}" | tr '[:lower:]' '[:upper:]')
      # The options as a driver splits them (on spaces), the standard
      # swapped for the target's.
      set -f
      # shellcheck disable=SC2046
      set -- $(echo "$opts" | sed "s/-cl-std=CL1\.2/-cl-std=$std/")
      set +f
      (cd "$OC_OUT/dump" &&
        "$OC_CLANG" -x cl "$@" -target amdgcn-amd-amdhsa -mcpu="$mcpu" \
          --rocm-device-lib-path="$OC_ROCM_LIB" \
          -Xclang -finclude-default-header -S -o "$work/$prog.s" "$prog.cl") \
        >"$log" 2>&1 || rc=$?
      # A program built for a matrix unit must use it: its assembly must
      # hold the unit's instructions (else the builtins were lost).
      if [ "$rc" -eq 0 ]; then
        case " $opts " in
          *" -DAM_EMU=0 "*)
            n=$(grep -c -E '^[[:space:]]*v_(mfma|wmma)_' "$work/$prog.s" || true)
            echo "matrix instructions (v_mfma / v_wmma): $n" >>"$log"
            [ "$n" -gt 0 ] || {
              echo "error: no v_mfma / v_wmma instruction in the assembly" >>"$log"
              rc=1
            } ;;
        esac
      fi
      if [ "$rc" -eq 0 ]; then
        # Register use per kernel.  VGPR spills (to scratch memory) count
        # as a warning, as ocloc's spill reports do; SGPR spills go to
        # VGPR lanes and are only logged.
        awk '/^[ \t]+\.name:/ {n = $2}
             /^[ \t]+\.private_segment_fixed_size:/ {p = $2}
             /^[ \t]+\.sgpr_spill_count:/ {ss = $2}
             /^[ \t]+\.vgpr_count:/ {v = $2}
             /^[ \t]+\.vgpr_spill_count:/ {
               printf "kernel %s: %s VGPRs (%s spilled), %s SGPRs spilled, %s bytes of private memory\n", n, v, $2, ss, p
               if ($2 > 0)
                 printf "warning: kernel %s spilled %d VGPRs to scratch memory\n", n, $2
             }' "$work/$prog.s" >>"$log"
      fi
      ;;
    nvidia)
      # One job for every NVIDIA target: the PTX once, then ptxas for each
      # GPU, each with a log and a status of its own.  NVIDIA's compiler
      # takes `asm` as a keyword in OpenCL C (inline PTX), clang only with
      # -fgnu-keywords.  clang leaves reqd_work_group_size out of the PTX,
      # so its .reqntid (which bounds ptxas's registers per item as the
      # driver's compiler does) comes from the front end's metadata.
      set -f
      # shellcheck disable=SC2086
      set -- $opts -fgnu-keywords
      set +f
      (cd "$OC_OUT/dump" &&
        "$OC_CLANG" -x cl "$@" -target nvptx64-nvidia-nvcl \
          -Xclang -finclude-default-header -Xclang -disable-llvm-passes \
          -S -emit-llvm -o "$work/$prog.ll" "$prog.cl" &&
        "$OC_CLANG" -x cl "$@" -target nvptx64-nvidia-nvcl -march=sm_80 \
          -Xclang -finclude-default-header \
          -Xclang -mlink-builtin-bitcode -Xclang "$OC_CLC_NVPTX" \
          -Wno-linker-warnings -S -o "$work/$prog.raw.ptx" "$prog.cl") \
        >"$work/$prog.clang.log" 2>&1 || rc=$?
      if [ "$rc" -eq 0 ]; then
        # "KERNEL X, Y, Z" per reqd_work_group_size, then that .reqntid
        # between each such entry's parameter list and its body.
        awk '/^define .*spir_kernel .*!reqd_work_group_size !/ {
               match($0, /@[A-Za-z0-9_]+/); k = substr($0, RSTART + 1, RLENGTH - 1)
               match($0, /!reqd_work_group_size ![0-9]+/)
               split(substr($0, RSTART, RLENGTH), w, " "); md[w[2]] = k
             }
             ($1 in md) && split($0, v, /i32 /) == 4 {
               print md[$1], (v[2] + 0) ", " (v[3] + 0) ", " (v[4] + 0)
             }' "$work/$prog.ll" >"$work/$prog.wg" &&
          awk 'FILENAME == ARGV[1] { k = $1; sub(/^[^ ]+ /, ""); r[k] = $0; next }
               /^(\.visible )?\.entry / { e = $NF; sub(/\(.*/, "", e) }
               /^\{/ && e != "" { if (e in r) print ".reqntid " r[e]; e = "" }
               { print }' "$work/$prog.wg" "$work/$prog.raw.ptx" \
            >"$work/$prog.ptx" || rc=$?
      fi
      for arch in $OC_NV_ARCHS; do
        t=nvidia-$arch
        log=$OC_OUT/logs/$prog.$t.log
        cp "$work/$prog.clang.log" "$log"
        r=$rc
        if [ "$r" -eq 0 ]; then
          "$OC_PTXAS" -arch="$arch" -v -o "$work/$prog.$arch.cubin" \
            "$work/$prog.ptx" >"$work/$prog.$arch.ptxas" 2>&1 || r=$?
          cat "$work/$prog.$arch.ptxas" >>"$log"
        fi
        if [ "$r" -eq 0 ]; then
          # Registers per kernel; a spill to local memory is a warning.
          awk '/Compiling entry function/ {k = $(NF - 2); gsub(/\047/, "", k)
                                          st = 0; ss = 0; sl = 0}
               /Function properties for/ {f = $NF}
               /bytes stack frame/ && f == k {st = $1; ss = $5; sl = $9}
               /Used [0-9]+ registers/ {
                 sm = 0
                 for (i = 1; i < NF; i++) if ($(i + 1) ~ /^bytes$/ && $(i + 2) ~ /^smem/) sm = $i
                 printf "kernel %s: %s registers, %s bytes of stack (spills: %s bytes stored, %s loaded), %s bytes of __local memory\n", k, $5, st, ss, sl, sm
                 if (ss > 0 || sl > 0)
                   printf "warning: kernel %s spilled registers (%s bytes stored, %s loaded)\n", k, ss, sl
               }' "$work/$prog.$arch.ptxas" >>"$log"
        fi
        finish "$t" "$log" "$r"
      done
      exit 0
      ;;
    *) echo "unknown target $target" >"$log"; rc=2 ;;
  esac
  finish "$target" "$log" "$rc"
  exit 0
fi

# ---- arguments ----------------------------------------------------------
build="build-offline"
all=0
only="*"
jobs=$(nproc 2>/dev/null || echo 2)
while [ $# -gt 0 ]; do
  case $1 in
    --build-dir) build=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --all) all=1; shift ;;
    --only) only=$2; shift 2 ;;
    *) echo "usage: sh scripts/offline_compile.sh [--build-dir DIR] [--jobs N] [--all] [--only GLOB]" >&2
       exit 2 ;;
  esac
done
# Each OpenCL C version on one AMD target (the sources are the same; the
# version changes the front end): --all compiles both on both.  The NVIDIA
# targets are the GPUs ptxas assembles each program's one PTX for.
OC_NV_ARCHS="sm_80 sm_90"
nv_targets="nvidia-sm_80 nvidia-sm_90"
# gfx940 (clang 15 does not know gfx942, MI300's: the same MFMA
# instructions) and gfx1100 take the matrix-core programs of their
# devices only.
amd_mm="amd-gfx940-cl1.2 amd-gfx1100-cl1.2"
targets="intel-tgllp intel-acm-g10 amd-gfx90a-cl2.0 amd-gfx1030-cl1.2
$amd_mm $nv_targets"
[ "$all" -eq 0 ] || targets="intel-tgllp intel-acm-g10 amd-gfx90a-cl1.2
amd-gfx90a-cl2.0 amd-gfx1030-cl1.2 amd-gfx1030-cl2.0 $amd_mm $nv_targets"
t0=$(date +%s)

# ---- tools --------------------------------------------------------------
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"
}
updated=0
apt_update() {
  [ "$updated" -eq 1 ] || $sudo apt-get update -qq
  updated=1
}
sh scripts/deps.sh
missing=""
for p in clang-15 rocm-device-libs libclc-15 libllvm14 libclang-cpp14; do
  installed "$p" || missing="$missing $p"
done
command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 ||
  missing="$missing python3-pip"
if [ -n "$missing" ]; then
  echo "installing:$missing"
  apt_update
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    --no-install-recommends $missing >/dev/null
fi
OC_CLANG=$(command -v clang-15)
OC_ROCM_LIB=$(dirname "$(dpkg -L rocm-device-libs | grep -m1 '/ocml\.bc$')")
# Debian's device libraries (ROCm 5.2) predate gfx1100: their folder,
# linked into .offline-tools/amd-bitcode, plus the one file a target needs
# of its own, the ISA version constant, made here for gfx1100.
if [ ! -f "$OC_ROCM_LIB/oclc_isa_version_1100.bc" ]; then
  bc=$root/.offline-tools/amd-bitcode
  if [ ! -f "$bc/oclc_isa_version_1100.bc" ]; then
    rm -rf "$bc"
    mkdir -p "$bc"
    ln -s "$OC_ROCM_LIB"/*.bc "$bc/"
    printf '%s\n' 'target triple = "amdgcn-amd-amdhsa"' \
      '@__oclc_ISA_version = linkonce_odr hidden local_unnamed_addr addrspace(4) constant i32 11000, align 4' \
      >"$bc/isa1100.ll"
    "$(command -v clang-15)" -c -emit-llvm -nogpulib -target amdgcn-amd-amdhsa \
      -o "$bc/oclc_isa_version_1100.bc" "$bc/isa1100.ll"
  fi
  OC_ROCM_LIB=$bc
fi
OC_CLC_NVPTX=$(dpkg -L libclc-15 | grep -m1 '/nvptx64--nvidiacl\.bc$')

# ptxas: PyPI's CUDA compiler wheel, installed (pip --target) into
# .offline-tools/nvidia, a version fixed so that the figures in the logs
# move only with the kernels.
nv_tools=$root/.offline-tools/nvidia
nv_pkg="nvidia-cuda-nvcc-cu12==12.9.86"
OC_PTXAS=$(find "$nv_tools" -type f -name ptxas 2>/dev/null | head -n1)
nv_skip=""
if [ -z "$OC_PTXAS" ] || [ ! -f "$nv_tools/.$nv_pkg" ]; then
  echo "installing ptxas ($nv_pkg) into $nv_tools"
  rm -rf "$nv_tools"
  if PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --no-deps \
    --disable-pip-version-check --target "$nv_tools" "$nv_pkg"; then
    touch "$nv_tools/.$nv_pkg"
    OC_PTXAS=$(find "$nv_tools" -type f -name ptxas | head -n1)
  fi
fi
# Without PyPI (no network) the NVIDIA targets are left out, said loudly
# here and under the table; the others still run.
if [ -z "$OC_PTXAS" ]; then
  nv_skip="NVIDIA targets NOT compiled: ptxas ($nv_pkg) could not be installed from PyPI"
  echo "offline_compile: $nv_skip" >&2
  targets=$(echo "$targets" | tr ' ' '\n' | grep -v '^nvidia-' | tr '\n' ' ')
fi

# ocloc: Debian's intel-opencl-icd and the compiler libraries it loads,
# unpacked (never installed) into .offline-tools/intel.
tools=$root/.offline-tools/intel
intel_debs="intel-opencl-icd libigc1 libigdfcl1 libigdgmm12 libopencl-clang14
libllvmspirvlib14"
if [ ! -x "$tools/usr/bin/ocloc" ]; then
  dl=$(mktemp -d)
  echo "unpacking ocloc into $tools"
  # As root, apt would hand the download to its _apt user, which cannot
  # write into a private temporary folder.
  sandbox=""
  [ "$(id -u)" -ne 0 ] || sandbox="-o APT::Sandbox::User=root"
  # shellcheck disable=SC2086
  (cd "$dl" && apt-get download -q $sandbox $intel_debs) || {
    apt_update
    (cd "$dl" && apt-get download -q $sandbox $intel_debs)
  }
  rm -rf "$tools"
  mkdir -p "$tools"
  for deb in "$dl"/*.deb; do dpkg -x "$deb" "$tools"; done
  rm -rf "$dl"
fi
OC_OCLOC=$tools/usr/bin/ocloc
OC_INTEL_LIB=$(dirname "$(find "$tools/usr/lib" -name 'libocloc.so' | head -n1)")

# ---- the programs ---------------------------------------------------------
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DATTN_BUILD_BENCH=OFF \
    -DATTN_BUILD_EXAMPLES=OFF >/dev/null
fi
cmake --build "$build" -j"$jobs" --target attn-cl-dump >/dev/null
OC_OUT=$root/$build/offline-compile
case $build in /*) OC_OUT=$build/offline-compile ;; esac
rm -rf "$OC_OUT"
mkdir -p "$OC_OUT/logs" "$OC_OUT/iga"
# ocloc's disassembler loads libiga64.so, which the package ships only
# with its version in the name.
OC_IGA_LIB=$OC_OUT/iga
iga=$(find "$tools/usr/lib" -name 'libiga64.so.*' | head -n1)
[ -z "$iga" ] || ln -sf "$iga" "$OC_IGA_LIB/libiga64.so"
"$build/tests/tools/attn-cl-dump" "$OC_OUT/dump" >/dev/null
# The inline-PTX probe (tests/tools/ptx_probe.cl), for the NVIDIA targets
# only: as it is, and broken on purpose twice (PROBE_BROKEN), which ptxas
# must refuse (a .xfail file says why).
probe() { # NAME PROBE_BROKEN WHAT-IS-BROKEN
  cp tests/tools/ptx_probe.cl "$OC_OUT/dump/$1-nvidia.cl"
  o="-cl-std=CL1.2 -DPROBE_BROKEN=$2"
  echo "$o" >"$OC_OUT/dump/$1-nvidia.opts"
  printf '%s\tptx_probe.cl\t%s\tnvidia\n' "$1-nvidia" "$o" \
    >>"$OC_OUT/dump/index.tsv"
  [ -z "$3" ] || echo "$3" >"$OC_OUT/dump/$1-nvidia.xfail"
}
probe ptx_probe 0 ""
probe ptx_probe_typo 1 "a misspelled mma type"
probe ptx_probe_operands 2 "an mma short of a B register"
progs=""
for p in $(cut -f1 "$OC_OUT/dump/index.tsv"); do
  # shellcheck disable=SC2254
  case $p in $only) progs="$progs $p" ;; esac
done
export OC_OUT OC_CLANG OC_ROCM_LIB OC_OCLOC OC_INTEL_LIB OC_IGA_LIB \
  OC_CLC_NVPTX OC_PTXAS OC_NV_ARCHS

# The gfx target each AMD device of attn-cl-dump (tests/tools/cl_programs.c)
# stands for.
amd_gfx() {
  case $1 in
    amd-cdna) echo gfx90a ;;
    amd-cdna3) echo gfx940 ;;
    amd-rdna) echo gfx1030 ;;
    amd-rdna3) echo gfx1100 ;;
  esac
}

# Whether target $1 compiles program $2: the programs of the default
# tuning on every target, those of a vendor's profile on that vendor's
# targets only ("-" in the table); a program built for an AMD matrix unit
# (-DAM_EMU=0) on the gfx targets of its devices only, and the targets
# of $amd_mm nothing else; those of Intel's Arc section (the XMX kernel
# built for its matrix units) on intel-acm-g10 only.
applies() {
  labels=" $(awk -F'\t' -v p="$2" '$1 == p {print $4}' \
    "$OC_OUT/dump/index.tsv") "
  case " $(cat "$OC_OUT/dump/$2.opts") " in
    *" -DAM_EMU=0 "*)
      case $1 in amd-*) ;; *) return 1 ;; esac
      mcpu=${1#amd-}
      mcpu=${mcpu%%-*}
      for l in $labels; do
        [ "$(amd_gfx "$l")" != "$mcpu" ] || return 0
      done
      return 1 ;;
  esac
  case " $amd_mm " in *" $1 "*) return 1 ;; esac
  case $labels in *" default "*) return 0 ;; esac
  case $1 in
    # Arc's programs (the XMX kernel's DPAS) on the Xe-HPG target only:
    # Gen12 has no matrix units.
    intel-*) case $labels in *" intel "* | *" intel-max "*) return 0 ;; esac
      case $1$labels in intel-acm-g10*" intel-arc "*) return 0 ;; esac ;;
    amd-*) case $labels in *" amd"*) return 0 ;; esac ;;
    nvidia-*) case $labels in *" nvidia"*) return 0 ;; esac ;;
  esac
  return 1
}

# ---- compile, the slowest programs (the CPU-shaped fused tuning) first ---
t1=$(date +%s)
# The NVIDIA targets share one job per program (one PTX, every GPU).
for p in $progs; do
  case $p in fused_*-default) w=0 ;; *) w=1 ;; esac
  nv=0
  for t in $targets; do
    if ! applies "$t" "$p"; then echo "-" >"$OC_OUT/logs/$p.$t.status"
    else case $t in nvidia-*) nv=1 ;; *) echo "$w $t $p" ;; esac; fi
  done
  [ "$nv" -eq 0 ] || echo "$w nvidia $p"
done | sort -s -k1,1 | cut -d' ' -f2- |
  xargs -P "$jobs" -n 2 sh "$root/scripts/offline_compile.sh" --one

# ---- the table --------------------------------------------------------------
table=$OC_OUT/table.txt
errors=0 warns=0 total=0
{
  printf '%-28s' program
  for t in $targets; do printf ' %-17s' "${t#*-}"; done
  echo
  for p in $progs; do
    printf '%-28s' "$p"
    for t in $targets; do
      st=$(cut -d' ' -f1 "$OC_OUT/logs/$p.$t.status" 2>/dev/null || echo ERROR)
      printf ' %-17s' "$st"
    done
    echo
  done
} >"$table"
notes=""
for p in $progs; do
  for t in $targets; do
    total=$((total + 1))
    f=$OC_OUT/logs/$p.$t.status
    st=$(cat "$f" 2>/dev/null || echo "ERROR no result")
    case $st in
      -) total=$((total - 1)) ;;
      ok) ;;
      warn*) warns=$((warns + 1)); notes="$notes
$p $t: ${st#warn }" ;;
      *) errors=$((errors + 1)); notes="$notes
$p $t: ${st#ERROR }" ;;
    esac
  done
done
[ -z "$notes" ] || printf '%s\n' "$notes" | sed '1d' >>"$table"
t2=$(date +%s)
echo "$total compiles ($jobs at a time): $errors with errors, $warns with" \
  "warnings; $((t2 - t1)) s compiling, $((t2 - t0)) s in all" \
  "(logs: $OC_OUT/logs)" >>"$table"
[ -z "$nv_skip" ] || echo "$nv_skip" >>"$table"
cat "$table"
[ "$errors" -eq 0 ]
