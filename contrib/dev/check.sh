#!/bin/sh
# The test command: from a fresh Debian machine to every test tier passing.
#   contrib/dev/check.sh
# Installs the build and test dependencies, configures with --enable-werror
# in ./build and runs `make check` (unit tier, then the QEMU vm tier).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"

sh contrib/dev/install-deps.sh
autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure --enable-werror
make -j"$(nproc)"
make -j"$(nproc)" check VERBOSE=1
