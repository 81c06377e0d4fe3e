#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The Python package as a user gets it: a fresh virtual environment
# (build-python/venv), `pip install ./python` (which builds the library
# with the project's CMake through scikit-build-core, and installs numpy
# and cffi from PyPI), the import, the example, then the pytest suite
# (python/tests) against the installed package.  Installs the Debian
# packages it needs first (scripts/deps.sh, plus python3-venv).
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh python3 python3-venv
venv=build-python/venv
rm -rf "$venv"
python3 -m venv "$venv"
py=$(pwd)/$venv/bin/python
"$py" -m pip install -q --disable-pip-version-check ./python pytest
# Outside the source tree, so that the installed package is the one used.
cd /tmp
"$py" -c "import libattn; print(libattn.devices())"
cd - >/dev/null
"$py" python/examples/compare.py
cd python/tests
"$py" -m pytest -q -p no:cacheprovider .
