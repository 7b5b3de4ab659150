#!/bin/sh
# The test command: from a fresh Debian machine to every test tier passing.
#   contrib/dev/check.sh
# Installs the build and test dependencies, configures with --enable-werror
# in ./build and runs `make check` (unit, CLI, fuzz-regression and agent
# tests, then the QEMU vm tier with real dm-crypt), then the unit tier again
# under ASan+UBSan (./build-asan) and the CLI under valgrind memcheck.
# Ends with one line summing every tier: "N passed, N failed, N skipped".
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"

sh contrib/dev/install-deps.sh
autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure --enable-werror
make -j"$(nproc)"

rc=0
make -j"$(nproc)" check VERBOSE=1 2>&1 | tee check.log || true
# A failing `make check` stops before its closing line: count the logs here.
tail -n 1 check.log | grep -qE '^[0-9]+ passed, [0-9]+ failed' ||
        sh "$top/tests/summary.sh" $(find tests -name '*.trs' | sed 's/\.trs$/.log/') | tee -a check.log
grep -qE '^[0-9]+ passed, 0 failed' check.log && [ -z "$(grep -E '^# (FAIL|ERROR): +[1-9]' check.log)" ] || rc=1

cd "$top"
JOBS="$(nproc)" sh tests/sanitize.sh "$top/build-asan" | tee build/sanitize.log || rc=1
sh tests/valgrind-cli.sh "$top/build" > build/valgrind-cli.log 2>&1 || rc=1
grep -A 30 -E '^FAIL' build/valgrind-cli.log || true
echo "valgrind memcheck (CLI): $(tail -n 1 build/valgrind-cli.log)"

# One closing line over the three runs.
tail -q -n 1 build/check.log build/sanitize.log build/valgrind-cli.log | awk '
        { for (i = 1; i < NF; i++) {
                if ($(i + 1) ~ /^passed/) p += $i
                if ($(i + 1) ~ /^failed/) f += $i
                if ($(i + 1) ~ /^skipped/) s += $i } }
        END { printf "%d passed, %d failed, %d skipped\n", p, f, s }'
exit $rc
