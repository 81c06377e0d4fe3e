#!/bin/sh
# Installs the built libattn into a scratch prefix, then builds and runs
# examples/embed.c against the installed copy twice: through pkg-config and
# through find_package(attn) (shared and static targets).
# usage: install_test.sh BUILD_DIR SOURCE_DIR SCRATCH_DIR [PREFIX_PATH]
# PREFIX_PATH: the build's CMAKE_PREFIX_PATH (where its dependencies are).
set -eu
build=$1 src=$2 scratch=$3 deps=${4:-}
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
