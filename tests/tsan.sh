#!/bin/sh
# The code that runs in more than one thread, under ThreadSanitizer, in a
# build directory of its own:
#   tests/tsan.sh [BUILD_DIR]        (default: ./build-tsan)
# kmscryptd attaches volumes from many threads at once, through libraries
# that keep process globals (libcryptsetup, libdevmapper; see
# dmsetup-helpers/dm.c).  This builds everything with -fsanitize=thread and
# runs the unit tests that start threads on this host, then the vm tests in
# which kmscryptd attaches, retries, suspends and restarts volumes from its
# worker threads, with halt_on_error: a data race in our code, or on a file
# descriptor (TSan sees close() racing an ioctl() even inside an
# uninstrumented library), ends the program and fails its test.
# Ends with "N passed, N failed".
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build-tsan}
jobs=${JOBS:-2}
export TSAN_OPTIONS="halt_on_error=1:exitcode=66:${TSAN_OPTIONS:-}"
# Check's per-test timeouts are set for a plain build; under ThreadSanitizer
# test-luks's test_bad_token takes 10 s of its 30 on an idle CPU.
export CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-8}

mkdir -p "$build"
cd "$build"
[ -f Makefile ] || "$top/configure" --enable-sanitizers=thread --enable-werror > configure.log
make -j"$jobs" > make.log 2>&1 || { tail -n 30 make.log; exit 1; }

rc=0
# test-audit: kmscryptd's attach threads share one audit chain and batch their records.
units="tests/unit/test-luks tests/unit/test-keyring tests/unit/test-mapper tests/unit/test-manager tests/unit/test-audit"
make -j"$jobs" check TESTS="$units" > check.log 2>&1 || rc=1
grep -E '^(FAIL|ERROR|XPASS):' check.log || true
unit=$(sh "$top/tests/summary.sh" tests/unit/test-luks.log tests/unit/test-keyring.log tests/unit/test-mapper.log \
        tests/unit/test-manager.log tests/unit/test-audit.log)

# The guest gets TSAN_OPTIONS through the kernel command line (run.sh).
KC_VM_CACHE=${KC_VM_CACHE:-$top/build/tests/vm/cache} \
KC_VM_TESTS="agent-start agent-mapper agent-outage agent-suspend agent-kill agent-restart" \
KC_VM_CMDLINE="TSAN_OPTIONS=$TSAN_OPTIONS" \
        top_builddir=. top_srcdir="$top" sh "$top/tests/vm/run.sh" > vm.log 2>&1 || rc=1
grep -E '^FAIL|ThreadSanitizer' vm.log || true
vm=$(tail -n 1 vm.log)
echo "$unit" "$vm" | awk '{ for (i = 1; i < NF; i++) { if ($(i + 1) ~ /^passed/) p += $i; if ($(i + 1) ~ /^failed/) f += $i; if ($(i + 1) ~ /^skipped/) s += $i } }
        END { printf "ThreadSanitizer (%s): %d passed, %d failed, %d skipped\n", "'"$build"'", p, f, s }'
exit $rc
