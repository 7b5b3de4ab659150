# Shared helpers of the CLI tests (sourced).  Each test runs kmscrypt from
# $top_builddir against a keystore, audit log and configuration of its own in
# a temporary directory, counts its checks and ends with "N passed, N failed".
# The helpers keep their own variables local (dash, bash and busybox sh have
# local): a helper that takes NAME and calls check "$NAME: ..." several times
# would otherwise label each check with the one before.

top_builddir=${top_builddir:-$(cd "$(dirname "$0")/../.." && pwd)}
KMSCRYPT=$top_builddir/kmscrypt
[ -x "$KMSCRYPT" ] || { echo "no $KMSCRYPT"; exit 99; }
command -v python3 >/dev/null || { echo "SKIP: python3 is needed to read JSON"; exit 77; }

T=$(mktemp -d "${TMPDIR:-/tmp}/kmscrypt-cli.XXXXXX")
trap 'rm -rf "$T"' EXIT
KS=$T/keystore
LOG=$T/audit.log
: > "$T/empty.conf"
# Keep the environment and /etc out of the tests; the chain head goes beside the
# log so that the keystore directory changes only when a key does.
unset KMSCRYPT_KEYSTORE KMSCRYPT_AUDIT_LOG KMSCRYPT_ROOT_KEY_FILE
export KMSCRYPT_CONFIG=$T/empty.conf
export KMSCRYPT_AUDIT_HEAD=$T/audit.head

passed=0 failed=0

ok() { passed=$((passed + 1)); echo "ok - $*"; }
fail() { failed=$((failed + 1)); echo "FAIL - $*"; }

# kc ARGS...: kmscrypt on this test's keystore and audit log; stdout in $T/out, stderr in $T/err, status in $rc.
kc() {
        "$KMSCRYPT" --keystore "$KS" --audit-log "$LOG" "$@" > "$T/out" 2> "$T/err"
        rc=$?
}

# expect STATUS NAME ARGS...: run kc ARGS and check the exit status.
expect() {
        local want="$1" name="$2"
        shift 2
        kc "$@"
        if [ "$rc" = "$want" ]; then
                ok "$name (exit $rc)"
        else
                fail "$name: exit $rc, expected $want; stderr: $(cat "$T/err")"
        fi
}

# check NAME COMMAND...: a shell condition.
check() {
        local name="$1"
        shift
        if "$@"; then ok "$name"; else fail "$name"; fi
}

# json EXPR: evaluate a Python expression on the JSON in $T/out (bound to j); prints the result.
json() {
        python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); r = eval(sys.argv[2]); print(r if not isinstance(r, bool) else str(r).lower())' "$T/out" "$1"
}

# json_is EXPR VALUE: check that EXPR on $T/out prints VALUE.
json_is() {
        local got
        got=$(json "$1" 2>/dev/null || echo "(no JSON on stdout)")
        if [ "$got" = "$2" ]; then ok "json $1 = $2"; else fail "json $1 = '$got', expected '$2'"; fi
}

# One line on stderr, starting with "kmscrypt: ".
one_error_line() {
        [ "$(wc -l < "$T/err")" -eq 1 ] && grep -q '^kmscrypt: ' "$T/err"
}

# Checksums and modes of every file under a directory, in a stable order.
snapshot() {
        (cd "$1" && find . -type f -print | LC_ALL=C sort | while read -r f; do
                printf '%s %s\n' "$(stat -c %a "$f")" "$(sha256sum "$f")"
        done)
}

audit_lines() {
        if [ -f "$LOG" ]; then wc -l < "$LOG"; else echo 0; fi
}

# refused STATUS NAME OPERATION ARGS...: a refusal the KMS audits; keystore unchanged.
refused() {
        local want="$1" name="$2" op="$3" before lines
        shift 3
        before=$(snapshot "$KS")
        lines=$(audit_lines)
        expect "$want" "$name" "$@"
        check "$name: one line on stderr" one_error_line
        check "$name: nothing on stdout" test ! -s "$T/out"
        check "$name: keystore unchanged" test "$before" = "$(snapshot "$KS")"
        # A change refused by the KMS itself was written ahead: its intent record comes first.
        check "$name: refusal audited" sh -c "[ \$(wc -l < '$LOG') -eq $((lines + 1)) ] ||
                { [ \$(wc -l < '$LOG') -eq $((lines + 2)) ] &&
                  tail -n2 '$LOG' | head -n1 | grep -q '\"operation\":\"$op\".*\"result\":\"pending\"'; }"
        check "$name: record says $op failed" sh -c "tail -n1 '$LOG' | grep -q '\"operation\":\"$op\".*\"result\":\"error\"'"
}

# sum FILE: its sha256, to check that a refusal left a file byte-identical.
sum() { sha256sum "$1" | cut -d' ' -f1; }

# bad NAME STATUS FILE WANT ARGS...: refused with STATUS, one line naming WANT, FILE unchanged.
bad() {
        local name="$1" want="$2" file="$3" what="$4" before
        shift 4
        before=$(sum "$file")
        expect "$want" "$name" "$@"
        check "$name: one line on stderr" one_error_line
        check "$name: says '$what'" grep -qF -- "$what" "$T/err"
        check "$name: image unchanged" test "$before" = "$(sum "$file")"
}

finish() {
        echo "$passed passed, $failed failed"
        [ "$failed" -eq 0 ]
        exit $?
}
