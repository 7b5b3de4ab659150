#!/bin/sh
# The unit, CLI and fuzz-replay tiers under AddressSanitizer and
# UndefinedBehaviorSanitizer, in a build directory of their own:
#   tests/sanitize.sh [BUILD_DIR]        (default: ./build-asan)
# Configures BUILD_DIR with --enable-sanitizers once, builds, and runs
# `make check` there on every test outside the vm tier (which boots a guest
# with its own kernel: nothing a userspace sanitizer sees).  A sanitizer
# report aborts the program (-fno-sanitize-recover=all), so it fails its test;
# leaks are reported by LeakSanitizer at exit.  Ends with "N passed, N failed".
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build-asan}
jobs=${JOBS:-2}

# The CLI tests LD_PRELOAD a time shim, which then precedes gcc's libasan in
# the link order; harmless here, so do not let ASan refuse to start over it.
export ASAN_OPTIONS="verify_asan_link_order=0:detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
# Check's per-test timeouts are set for a plain build; ASan makes the slowest
# unit test (test-volume-header) nearly 5 s of its 30, more on a loaded host.
export CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-4}

mkdir -p "$build"
cd "$build"
[ -f Makefile ] || "$top/configure" --enable-sanitizers --enable-werror > configure.log
make -j"$jobs" > make.log 2>&1 || { tail -n 30 make.log; exit 1; }

# Every entry of TESTS but the vm tier's.
tests=$(printf 'print-tests:\n\t@echo $(TESTS)\n' | make -s --no-print-directory -f Makefile -f - print-tests |
        tr ' ' '\n' | grep -v '^tests/vm/' |
        # The aws tests time retries in tens of milliseconds: under ASan on a
        # loaded host they miss them; they run in the plain tier.
        grep -v '^tests/aws/test-aws-kms.py$' | tr '\n' ' ')
rc=0
make -j"$jobs" check TESTS="$tests" > check.log 2>&1 || rc=$?
grep -E '^(FAIL|ERROR|XPASS):' check.log || true
summary=$(tail -n 1 check.log)
# A failing `make check` stops before its closing line: sum the logs here.
echo "$summary" | grep -qE '^[0-9]+ passed, [0-9]+ failed' ||
        summary=$(sh "$top/tests/summary.sh" $(find tests -name '*.trs' | sed 's/\.trs$/.log/'))
echo "sanitizers (ASan+UBSan, $build): $summary"
exit $rc
