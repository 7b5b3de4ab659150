#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The benchmarks' guest scripts (tests/vm/guest/*-bench.sh) skip in make
# check, so nothing ran them when kc-floor's `attach` became `pair`, and
# aws-bench failed for weeks on an unknown command.  Here every command a
# guest script runs of kc-floor or agent-floor is checked against the
# commands the program's own usage line lists (run without arguments).
set -u
src=${top_srcdir:-.}
bld=${top_builddir:-.}
fails=0

for prog in kc-floor agent-floor; do
        usage=$("$bld/tests/bench/$prog" 2>&1 >/dev/null)
        case $usage in
        "usage: $prog "*) ;;
        *) echo "FAIL - $prog without arguments prints no usage line: $usage"; fails=$((fails + 1)); continue ;;
        esac
        # "usage: kc-floor time|attach|pair|profile ..." or "usage: agent-floor dm ... | unwrap ... | notify ...".
        known=$(echo "${usage#usage: $prog }" | tr '|' '\n' | awk '{ print $1 }')
        used=$(grep -hv '^[[:space:]]*#' "$src"/tests/vm/guest/*.sh | grep -o "$prog [a-z][a-z]*" | awk '{ print $2 }' | sort -u)
        [ -n "$used" ] || { echo "FAIL - no guest script runs $prog (renamed?)"; fails=$((fails + 1)); }
        for cmd in $used; do
                if echo "$known" | grep -qx "$cmd"; then
                        echo "ok - $prog $cmd"
                else
                        echo "FAIL - a guest script runs '$prog $cmd', which $prog does not have ($usage)"
                        fails=$((fails + 1))
                fi
        done
done
# bench-audit runs nowhere else: a short run must print its three rows, each with a rate.
rows=$("$bld/tests/bench/bench-audit" 0.05 "${TMPDIR:-/tmp}" 4 2>&1 | grep -cE '^(floor|kc_audit_write).* [0-9]+ +[0-9.]+ +[0-9.]+x$')
if [ "$rows" = 3 ]; then
        echo "ok - bench-audit"
else
        echo "FAIL - bench-audit printed $rows of its 3 rows"
        fails=$((fails + 1))
fi
[ "$fails" = 0 ]
