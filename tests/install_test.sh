#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Installs the built libattn into a scratch prefix, then builds and runs
# examples/embed.c against the installed copy: through pkg-config, through
# find_package(attn) (shared and static targets), and through
# find_package(attn) with CLBlast and OpenCL hidden (the shared target
# alone needs neither).  Then runs the installed tools from the prefix,
# and from a copy of it elsewhere, with no LD_LIBRARY_PATH: their RUNPATH
# ($ORIGIN/../lib) finds the prefix's library.
# usage: install_test.sh BUILD_DIR SOURCE_DIR SCRATCH_DIR [PREFIX_PATH [TOOLS]]
# PREFIX_PATH: the build's CMAKE_PREFIX_PATH (where its dependencies are);
# TOOLS: the tools the build makes (default: attn-probe attn-bench
# attn-tune attn-demo), each of which must be installed and run.
set -eu
build=$1 src=$2 scratch=$3 deps=${4:-}
tools=${5-attn-probe attn-bench attn-tune attn-demo}
libpath=${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
rm -rf "$scratch"
mkdir -p "$scratch"
prefix=$scratch/prefix
cmake --install "$build" --prefix "$prefix" >"$scratch/install.log"
libdir=$(find "$prefix" -name attn.pc -path '*pkgconfig*' -exec dirname {} \; | head -n1)
libdir=$(dirname "$libdir")

# pkg-config
PKG_CONFIG_PATH=$libdir/pkgconfig
export PKG_CONFIG_PATH
${CC:-cc} -std=c11 -Wall -Wextra -Werror -o "$scratch/embed_pc" "$src/examples/embed.c" \
  $(pkg-config --cflags --libs attn)
LD_LIBRARY_PATH=$libdir$libpath "$scratch/embed_pc" | grep -q '^libattn '
echo "pkg-config build: ok"

# find_package
cmake -S "$src/examples/consumer" -B "$scratch/consumer" \
  -DCMAKE_PREFIX_PATH="$prefix${deps:+;$deps}" >"$scratch/consumer.log"
cmake --build "$scratch/consumer" >>"$scratch/consumer.log"
LD_LIBRARY_PATH=$libdir$libpath "$scratch/consumer/embed" | grep -q '^libattn '
"$scratch/consumer/embed_static" | grep -q '^libattn '
if ldd "$scratch/consumer/embed_static" | grep -q libattn; then
  echo "embed_static is linked to the shared library" >&2
  exit 1
fi
echo "find_package build (shared and static): ok"

# find_package with neither CLBlast nor OpenCL to be found: attn::attn
# still works.
cmake -S "$src/examples/consumer" -B "$scratch/consumer_shared" \
  -DATTN_CONSUMER_STATIC=OFF -DCMAKE_DISABLE_FIND_PACKAGE_CLBlast=ON \
  -DCMAKE_DISABLE_FIND_PACKAGE_OpenCL=ON \
  -DCMAKE_PREFIX_PATH="$prefix${deps:+;$deps}" >"$scratch/consumer_shared.log"
cmake --build "$scratch/consumer_shared" >>"$scratch/consumer_shared.log"
LD_LIBRARY_PATH=$libdir$libpath "$scratch/consumer_shared/embed" | grep -q '^libattn '
echo "find_package without CLBlast and OpenCL (shared): ok"

# The tools, from the prefix and from a moved copy of it.
unset LD_LIBRARY_PATH
cp -a "$prefix" "$scratch/moved"
for p in "$prefix" "$scratch/moved"; do
  for t in $tools; do
    [ -x "$p/bin/$t" ] || {
      echo "$t: built but not installed in $p/bin" >&2
      exit 1
    }
    readelf -d "$p/bin/$t" | grep -q 'RUNPATH.*\$ORIGIN/\.\./' || {
      echo "$t: no RUNPATH \$ORIGIN/../lib" >&2
      exit 1
    }
    [ -f "$p/share/man/man1/$t.1" ] || {
      echo "$t: no manual page in $p/share/man/man1" >&2
      exit 1
    }
  done
  has() { case " $tools " in *" $1 "*) return 0 ;; esac; return 1; }
  if has attn-demo; then
    "$p/bin/attn-demo" --seq 32 --device native | grep -q '^checksum: '
  fi
  if has attn-probe; then
    "$p/bin/attn-probe" --device=native | grep -q '^Selected (native)'
  fi
  if has attn-tune; then
    "$p/bin/attn-tune" --version | grep -q '^attn-tune (libattn) '
  fi
  if has attn-bench; then
    "$p/bin/attn-bench" -s32 --no-peers -inative -r1 -w0 | grep -q '^ *32 '
    [ -f "$p/share/attn/peer_numpy.py" ]
  fi
done
echo "installed tools (from the prefix and a moved copy): ok"
