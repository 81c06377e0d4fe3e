#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian packages libattn needs to build, test and run, when
# any is missing (and those named as arguments: scripts/python_test.sh
# adds python3-venv).  Uses sudo when not run as root.
set -eu
pkgs="build-essential cmake pkg-config ocl-icd-opencl-dev opencl-c-headers
pocl-opencl-icd libclblast-dev libcunit1-dev libopenmpi-dev openmpi-bin $*"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing:$missing"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
