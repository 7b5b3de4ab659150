#!/bin/sh
# The test command: from a fresh Debian machine to every test tier passing.
#   contrib/dev/check.sh
# Installs the build and test dependencies, configures with --enable-werror
# in ./build and runs `make check` (unit tier, then the QEMU vm tier), then
# the unit and CLI tiers again under ASan+UBSan in ./build-asan
# (tests/sanitize.sh) and the CLI paths under valgrind memcheck
# (tests/valgrind-cli.sh).  Each part prints its own "N passed, N failed".
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

# Robustness tiers: run both, fail if either failed.
cd "$top"
rc=0
JOBS="$(nproc)" sh tests/sanitize.sh "$top/build-asan" || rc=1
sh tests/valgrind-cli.sh "$top/build" > build/valgrind-cli.log 2>&1 || rc=1
grep -A 30 -E '^FAIL' build/valgrind-cli.log || true
echo "valgrind memcheck (CLI): $(tail -n 1 build/valgrind-cli.log)"
exit $rc
