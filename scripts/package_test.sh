#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The Debian package as a user gets it: configures a release build for
# /usr (no tests), makes the .deb with CPack, checks what it holds,
# installs it with dpkg, builds examples/embed.c against the installed
# package with CMake (find_package(attn), shared and static targets) and
# with pkg-config, runs the installed tools, then removes the package and
# checks that nothing is left.  Uses sudo when not root.  Refuses to run
# when a package named libattn is already installed.
#
# usage: sh scripts/package_test.sh [BUILD_DIR]    (default build-pkg)
set -eu
cd "$(dirname "$0")/.."
src=$(pwd)
build=${1:-build-pkg}
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
werror=OFF
[ "${CI:-}" = "true" ] && werror=ON
if dpkg-query -W -f='${Status}' libattn 2>/dev/null | grep -q "ok installed"; then
  echo "package_test: libattn is already installed; remove it first" >&2
  exit 1
fi

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
  -DATTN_BUILD_TESTS=OFF -DATTN_WERROR=$werror >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
rm -f "$build"/libattn_*.deb
(cd "$build" && cpack -G DEB >/dev/null 2>&1)
deb=$(ls "$build"/libattn_*.deb)
echo "package_test: $deb"
dpkg-deb -f "$deb" Package Version Depends | sed 's/^/  /'
dpkg-deb -c "$deb" | awk '{ print $6 }' >"$build/deb-contents.txt"
for want in '/libattn\.so\.1$' '/libattn\.a$' '/include/attn/attn\.h$' \
  '/include/attn/attn_cl\.h$' '/bin/attn-probe$' '/bin/attn-bench$' \
  '/bin/attn-tune$' '/bin/attn-demo$' '/pkgconfig/attn\.pc$' \
  '/cmake/attn/attnConfig\.cmake$' '/cmake/attn/attnStaticTargets\.cmake$' \
  '/man1/attn-probe\.1$' '/man1/attn-bench\.1$' '/man1/attn-tune\.1$' \
  '/man1/attn-demo\.1$' '/doc/attn/README\.md$' '/doc/attn/ABI\.md$' \
  '/doc/attn/LICENSE$' '/doc/attn/NOTICE$' \
  '/share/attn/peer_numpy\.py$'; do
  grep -q "$want" "$build/deb-contents.txt" || {
    echo "package_test: the package lacks $want" >&2
    exit 1
  }
done

scratch=$(mktemp -d)
cleanup() {
  $sudo dpkg --purge libattn >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap cleanup EXIT
$sudo dpkg -i "$deb" >/dev/null

# An external project: its own folder, nothing of this tree on its paths.
mkdir "$scratch/consumer"
cp "$src/examples/embed.c" "$scratch/"
cp "$src/examples/consumer/CMakeLists.txt" "$scratch/consumer/"
cmake -S "$scratch/consumer" -B "$scratch/build" >"$scratch/cmake.log"
cmake --build "$scratch/build" >>"$scratch/cmake.log"
"$scratch/build/embed" | grep -q '^libattn '
"$scratch/build/embed_static" | grep -q '^libattn '
echo "package_test: find_package(attn) consumer (shared, static): ok"
cc -std=c11 -Wall -Wextra -Werror -o "$scratch/embed_pc" "$scratch/embed.c" \
  $(pkg-config --cflags --libs attn)
"$scratch/embed_pc" | grep -q '^libattn '
echo "package_test: pkg-config consumer: ok"

# The tools from /usr/bin.
attn-probe --version | grep -q '^attn-probe (libattn) '
attn-probe --device=native | grep -q '^Selected (native)'
attn-demo --seq 32 --device native | grep -q '^checksum: '
attn-bench -s32 --no-peers -inative -r1 -w0 | grep -q '^ *32 '
attn-tune --help | grep -q '^usage: attn-tune'
echo "package_test: installed tools: ok"

$sudo dpkg --purge libattn >/dev/null
for f in $(grep -v '/$' "$build/deb-contents.txt" | sed 's/^\.//'); do
  if [ -e "$f" ]; then
    echo "package_test: $f is left after removal" >&2
    exit 1
  fi
done
echo "package_test: removed: ok"
