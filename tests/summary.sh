#!/bin/sh
# Sum the results of every test log into one line "N passed, N failed, N skipped".
# A Check program reports "NN%: Checks: C, Failures: F, Errors: E"; a script of
# the vm tier ends its log with "N passed, N failed".  A test program that
# crashed or timed out before reporting counts as one failure; a skipped
# program (exit 77) as one skip.
passed=0 failed=0 skipped=0
for log in "$@"; do
        trs=${log%.log}.trs
        [ -f "$log" ] || continue
        result=$(sed -n 's/^:test-result: //p' "$trs" 2>/dev/null | head -n1)
        if [ "$result" = SKIP ]; then
                skipped=$((skipped + 1)); continue
        fi
        line=$(grep -E '^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$log" | tail -n1)
        if [ -n "$line" ]; then
                c=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
                f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
                e=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
                passed=$((passed + c - f - e)); failed=$((failed + f + e))
        else
                line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n1)
                if [ -n "$line" ]; then
                        p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
                        f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
                        passed=$((passed + p)); failed=$((failed + f))
                        s=$(echo "$line" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p')
                        [ -n "$s" ] && skipped=$((skipped + s))
                fi
        fi
        # A program that failed without a count of its own still fails the total.
        if [ "$result" = FAIL ] || [ "$result" = ERROR ]; then
                [ -n "$line" ] && [ "${f:-0}${e:-0}" != 00 ] || failed=$((failed + 1))
        fi
done
echo "$passed passed, $failed failed, $skipped skipped"
