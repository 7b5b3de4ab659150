#!/bin/sh
# Regression tier of the fuzzers, part of `make check`: every seed in
# tests/fuzz/corpus/<target>/ and every kept crash input in
# tests/fuzz/regressions/<target>/ is fed once to tests/fuzz/replay-<target>
# (the target linked with standalone-main.c).  A crash, sanitizer report or
# failed invariant on any input fails it.  Ends with "N passed, N failed".
set -u
src=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/fuzz
bin=${top_builddir:-.}/tests/fuzz
passed=0 failed=0

for dir in "$src"/corpus/*/ "$src"/regressions/*/; do
        [ -d "$dir" ] || continue
        target=$(basename "$dir")
        replay=$bin/replay-$target
        # Set by make check: a target this configuration leaves out (aws-response
        # --without-aws) is skipped; one it builds must be there.
        case " ${KC_FUZZ_TARGETS:-$target} " in
        *" $target "*) ;;
        *) echo "SKIP: $target is not built in this configuration"; continue ;;
        esac
        if [ ! -x "$replay" ]; then
                echo "FAIL: $dir has no target $replay"
                failed=$((failed + 1))
                continue
        fi
        for input in "$dir"*; do
                [ -f "$input" ] || continue
                if "$replay" "$input" >/dev/null 2>"$bin/replay.err"; then
                        passed=$((passed + 1))
                else
                        echo "FAIL: $target: $input"
                        sed 's/^/    /' "$bin/replay.err"
                        failed=$((failed + 1))
                fi
        done
done
rm -f "$bin/replay.err"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
