#!/bin/sh
# The test command: from a fresh Debian machine to every test tier passing.
#   contrib/dev/check.sh
# Installs the build and test dependencies, configures with --enable-werror
# in ./build and runs `make check` (unit, CLI, fuzz-regression and agent
# tests, then the QEMU vm tier with real dm-crypt), then the unit tier again
# under ASan+UBSan (./build-asan), the threaded tests and kmscryptd's vm
# tests under ThreadSanitizer (./build-tsan), the CLI under valgrind
# memcheck, and the system tier (`make check-system`: a Debian guest with systemd, udev and
# PostgreSQL).
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
# Not through a pipe: sh has no pipefail, and tee's status would hide a failure.
JOBS="$(nproc)" sh tests/sanitize.sh "$top/build-asan" > build/sanitize.log 2>&1 || rc=1
cat build/sanitize.log
JOBS="$(nproc)" sh tests/tsan.sh "$top/build-tsan" > build/tsan.log 2>&1 || rc=1
cat build/tsan.log
sh tests/valgrind-cli.sh "$top/build" > build/valgrind-cli.log 2>&1 || rc=1
grep -A 30 -E '^FAIL' build/valgrind-cli.log || true
echo "valgrind memcheck (CLI): $(tail -n 1 build/valgrind-cli.log)"

# The system tier: a Debian guest with systemd, udev and PostgreSQL under
# QEMU, scenarios a-e of issue #6.  About 6 minutes on a nearly idle 2-core
# machine the first time, 70 s of it debootstrap, whose root is cached in
# build/tests/system/cache afterwards; three times that under heavy load.  Its log ends with its own counts;
# a run that could not start (exit 77) counts as one skip, one that died
# before counting as one failure.
st=0
(cd build && make -s check-system) > build/check-system.log 2>&1 || st=1
grep -E '^  [a-z]+ FAIL ' build/check-system.log || true
counts=$(grep -E '^system tier: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped' build/check-system.log | tail -n 1)
if grep -q '^system: SKIP' build/check-system.log; then
        counts="system tier: 0 passed, 0 failed, 1 skipped"
        # CI must run it: a host that cannot is a failure there, not a pass.
        [ "${KC_REQUIRE_SYSTEM:-0}" != 1 ] || { rc=1; grep '^system: SKIP' build/check-system.log; }
elif [ $st -ne 0 ]; then
        rc=1
        [ -n "$counts" ] || counts="system tier: 0 passed, 1 failed, 0 skipped"
fi
# make's own error line would otherwise be the log's last.
echo "$counts" >> build/check-system.log
grep -E '^system tier timings:' build/check-system.log || true
echo "$counts"

# One closing line over the five runs.
tail -q -n 1 build/check.log build/sanitize.log build/tsan.log build/valgrind-cli.log build/check-system.log | awk '
        { for (i = 1; i < NF; i++) {
                if ($(i + 1) ~ /^passed/) p += $i
                if ($(i + 1) ~ /^failed/) f += $i
                if ($(i + 1) ~ /^skipped/) s += $i } }
        END { printf "%d passed, %d failed, %d skipped\n", p, f, s }'
exit $rc
