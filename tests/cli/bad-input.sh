#!/bin/sh
# Bad input: one line on stderr, the right exit status, an audit record of each
# refusal, and a keystore directory byte-identical before and after.
. "$(dirname "$0")/lib.sh"

CTX=db-id=db-1,volume-id=vol-2
expect 0 "create key" key create --alias alias/pg --json
ID=$(json 'j["KeyMetadata"]["KeyId"]')
expect 0 "create second key" key create --alias alias/doomed --json
expect 0 "generate" kms generate-data-key --key alias/pg --context "$CTX" --json
BLOB=$(json 'j["CiphertextBlob"]')
expect 0 "generate under the doomed key" kms generate-data-key --key alias/doomed --context "$CTX" --json
BLOB_D=$(json 'j["CiphertextBlob"]')

# Rewrite a base64 blob: python3 expression over the bytes b.
mangle() {
        python3 -c 'import base64, sys; b = bytearray(base64.b64decode(sys.argv[1])); b = eval(sys.argv[2]); print(base64.b64encode(bytes(b)).decode())' "$1" "$2"
}

refused 4 "wrong context" Decrypt kms decrypt --ciphertext-blob "$BLOB" --context db-id=db-1,volume-id=vol-3
refused 4 "missing pair in context" Decrypt kms decrypt --ciphertext-blob "$BLOB" --context db-id=db-1
TAMPERED=$(mangle "$BLOB" 'b[:-20] + bytes([b[-20] ^ 1]) + b[-19:]')
refused 4 "tampered blob" Decrypt kms decrypt --ciphertext-blob "$TAMPERED" --context "$CTX"
TAMPERED_HDR=$(mangle "$BLOB" 'b[:-50] + bytes([b[-50] ^ 0x80]) + b[-49:]')
refused 4 "tampered blob (nonce)" Decrypt kms decrypt --ciphertext-blob "$TAMPERED_HDR" --context "$CTX"
TRUNCATED=$(mangle "$BLOB" 'b[:-7]')
refused 4 "truncated blob" Decrypt kms decrypt --ciphertext-blob "$TRUNCATED" --context "$CTX"
refused 4 "truncated blob, re-encrypt" ReEncrypt kms re-encrypt --ciphertext-blob "$TRUNCATED" --context "$CTX"
refused 4 "blob of another key (--key)" Decrypt kms decrypt --ciphertext-blob "$BLOB" --context "$CTX" --key alias/doomed

# A blob made by another keystore names a key this one does not have.
KMSCRYPT_AUDIT_HEAD=$T/audit2.head "$KMSCRYPT" --keystore "$T/ks2" --audit-log "$T/audit2.log" \
        key create --alias alias/pg --quiet
KMSCRYPT_AUDIT_HEAD=$T/audit2.head "$KMSCRYPT" --keystore "$T/ks2" --audit-log "$T/audit2.log" --json \
        kms generate-data-key --key alias/pg --context "$CTX" > "$T/out" 2>/dev/null
FOREIGN=$(json 'j["CiphertextBlob"]')
refused 3 "blob from another keystore" Decrypt kms decrypt --ciphertext-blob "$FOREIGN" --context "$CTX"

refused 3 "unknown alias (generate)" GenerateDataKey kms generate-data-key --key alias/nope --context "$CTX"
refused 3 "unknown alias (describe)" DescribeKey key describe alias/nope
refused 3 "unknown key id" DescribeKey key describe 00000000-0000-4000-8000-000000000000
refused 3 "unknown alias (disable)" DisableKey key disable alias/nope

expect 0 "disable" key disable alias/pg
refused 4 "disabled key (generate)" GenerateDataKey kms generate-data-key --key alias/pg --context "$CTX"
refused 4 "disabled key (decrypt)" Decrypt kms decrypt --ciphertext-blob "$BLOB" --context "$CTX"
refused 4 "disabled key (rotate)" RotateKey key rotate alias/pg
expect 0 "enable" key enable alias/pg

expect 0 "schedule deletion" key schedule-deletion alias/doomed --pending-window-in-days 7
refused 4 "pending deletion (generate)" GenerateDataKey kms generate-data-key --key alias/doomed --context "$CTX"
refused 4 "pending deletion (decrypt)" Decrypt kms decrypt --ciphertext-blob "$BLOB_D" --context "$CTX"
refused 4 "pending deletion (enable)" EnableKey key enable alias/doomed
refused 4 "pending deletion (schedule again)" ScheduleKeyDeletion key schedule-deletion alias/doomed

# Usage errors: exit 2, one line, no audit record, keystore untouched.
usage_error() {
        name=$1
        shift
        before=$(snapshot "$KS")
        lines=$(audit_lines)
        expect 2 "$name" "$@"
        check "$name: one line on stderr" one_error_line
        check "$name: keystore unchanged, nothing audited" \
                test "$before" = "$(snapshot "$KS")" -a "$(audit_lines)" -eq "$lines"
}
usage_error "unknown command" frobnicate
usage_error "unknown subcommand" key frobnicate
usage_error "unknown option" key list --frob
usage_error "unknown global option before the command" --frob key list
usage_error "flag given a value" key list --json=yes
usage_error "option without its value" key create --alias
usage_error "missing argument" key describe
usage_error "too many arguments" key describe alias/pg alias/pg
usage_error "window out of range" key schedule-deletion alias/pg --pending-window-in-days 6
usage_error "number of bytes zero" kms generate-data-key --key alias/pg --context "$CTX" --number-of-bytes 0
usage_error "number of bytes too large" kms generate-data-key --key alias/pg --context "$CTX" --number-of-bytes 1025
usage_error "number of bytes not a number" kms generate-data-key --key alias/pg --context "$CTX" --number-of-bytes 32x
usage_error "no key" kms generate-data-key --context "$CTX"
usage_error "no context" kms generate-data-key --key alias/pg
usage_error "empty context" kms generate-data-key --key alias/pg --context-json '{}'
usage_error "malformed context" kms generate-data-key --key alias/pg --context db-id
usage_error "duplicate context key" kms generate-data-key --key alias/pg --context-json '{"a":"1","a":"2"}'
usage_error "both context forms" kms decrypt --ciphertext-blob "$BLOB" --context "$CTX" --context-json '{"a":"b"}'
usage_error "blob not base64" kms decrypt --ciphertext-blob 'not*base64' --context "$CTX"
usage_error "no blob" kms decrypt --context "$CTX"
usage_error "both blob forms" kms decrypt --ciphertext-blob "$BLOB" --ciphertext-blob-file "$T/x" --context "$CTX"
usage_error "bad --since" audit list --since yesterday
usage_error "blob file missing" kms decrypt --ciphertext-blob-file "$T/nonexistent" --context "$CTX"
check "blob file missing: names the option and the file" \
        grep -qxF "kmscrypt: --ciphertext-blob-file $T/nonexistent: No such file or directory" "$T/err"

# A file that an option names for reading and that is not there is a bad argument (2), whichever
# option and command, as kmscrypt(8) EXIT STATUS says; the line names the file.  Not --header:
# part of the volume, a missing one is 3 like a missing device; not --audit-log nor --root-key-file,
# which the keystore creates.  Every other FILE option of every command's --help is tried here.
NOFILE=$T/nonexistent
file_options() {
        for c in $("$KMSCRYPT" --help | sed -n '/^Commands:/,/^$/p' | awk 'NF && !/:$/ { print $1 }'); do
                subs=$("$KMSCRYPT" $c --help | sed -n '/^Commands:/,/^$/p' | awk 'NF && !/:$/ { print $1 }')
                for s in ${subs:-""}; do
                        "$KMSCRYPT" $c $s --help | sed -n 's/^ *\(-., \)\{0,1\}--\([a-z-]*\) FILE .*/\2/p'
                done
        done | grep -vx 'header\|audit-log\|root-key-file' | sort -u
}
tried=""
# missing_file OPTION ARGS...: kmscrypt ARGS, in which --OPTION names $NOFILE.
missing_file() {
        local option="$1" name
        shift
        name="--$option missing ($(echo "$*" | sed "s|$T/||g"))"
        usage_error "$name" "$@"
        check "$name: the line names the file" grep -qF "$NOFILE" "$T/err"
        tried="$tried $option"
}
missing_file config --config "$NOFILE" key list
missing_file volumes config check --volumes "$NOFILE"
missing_file volumes key usage alias/pg --volumes "$NOFILE"
missing_file volumes key schedule-deletion alias/pg --volumes "$NOFILE"
missing_file volumes rewrap --all --volumes "$NOFILE"
missing_file ciphertext-blob-file kms decrypt --ciphertext-blob-file "$NOFILE" --context "$CTX"
missing_file ciphertext-blob-file kms re-encrypt --ciphertext-blob-file "$NOFILE" --context "$CTX"
missing_file recovery-passphrase-file format "$T/no-device" --key alias/pg --context "$CTX" \
        --recovery-passphrase-file "$NOFILE"
missing_file recovery-passphrase-file reencrypt "$T/no-device" --recovery-passphrase-file "$NOFILE"
missing_file passphrase-file adopt "$T/no-device" --key alias/pg --context "$CTX" --passphrase-file "$NOFILE"
missing_file key-file adopt "$T/no-device" --key alias/pg --context "$CTX" --key-file "$NOFILE"
file_options > "$T/file-options"
check "FILE options found in --help" grep -qx passphrase-file "$T/file-options"
for o in $(cat "$T/file-options"); do
        check "missing --$o FILE tried above" sh -c "echo '$tried' | grep -qw -- '$o'"
done

corrupt_line() { one_error_line && grep -q 'is corrupted' "$T/err"; }

# A corrupted keystore file: the KMS is unavailable (5), nothing is repaired or rewritten.
# corrupted_refused WHAT PYTHON: a copy of the keystore, the file of alias/pg (which every
# command below needs) changed by PYTHON (b: its bytes), and each command refused.
corrupted_refused() {
        what=$1
        rm -rf "$T/ks-corrupt"
        cp -a "$KS" "$T/ks-corrupt"
        f=$T/ks-corrupt/keys/$ID.json
        check "key file of alias/pg exists" test -f "$f"
        python3 -c 'import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); exec(sys.argv[2]); open(p, "wb").write(b)' "$f" "$2"
        before=$(snapshot "$T/ks-corrupt")
        for args in "key list" "key describe alias/pg" "kms decrypt --ciphertext-blob $BLOB --context $CTX"; do
                "$KMSCRYPT" --keystore "$T/ks-corrupt" --audit-log "$LOG" $args > "$T/out" 2> "$T/err"
                rc=$?
                check "$what, $args: exit 5 (got $rc)" test "$rc" = 5
                check "$what, $args: one line naming the corruption" corrupt_line
                check "$what, $args: the line names the file" grep -qF "$f" "$T/err"
                check "$what, $args: no output" test ! -s "$T/out"
        done
        check "$what: keystore left as it was" test "$before" = "$(snapshot "$T/ks-corrupt")"
}
corrupted_refused "corrupted keystore file" 'b[len(b) // 2] ^= 0x01'
# Every value as written, so the MAC holds, and text after the object: not the file kmscrypt wrote.
corrupted_refused "keystore file with text after it" 'b += b"\n{\"state\": \"Enabled\"}\n"'
check "text after it: the line says so" grep -qF 'data after the object' "$T/err"

# The audit log cannot be written: fail closed, no key released, keystore untouched.
mkdir "$T/logdir"
for bad in "$T/logdir" /dev/full "$T/empty.conf/sub"; do
        before=$(snapshot "$KS")
        "$KMSCRYPT" --keystore "$KS" --audit-log "$bad" kms generate-data-key --key alias/pg --context "$CTX" \
                > "$T/out" 2> "$T/err"
        rc=$?
        check "audit log $bad: exit 5 (got $rc)" test "$rc" = 5
        check "audit log $bad: one line" one_error_line
        check "audit log $bad: no plaintext printed" test ! -s "$T/out"
        check "audit log $bad: keystore unchanged" test "$before" = "$(snapshot "$KS")"
done

# An audit log whose newest record was removed no longer matches its head: refuse to append.
cp "$LOG" "$T/log.bak"
sed -i '$d' "$LOG"
before=$(snapshot "$KS")
expect 5 "truncated audit log: key use refused" kms decrypt --ciphertext-blob "$BLOB" --context "$CTX"
check "truncated audit log: one line" one_error_line
check "truncated audit log: no plaintext" test ! -s "$T/out"
check "truncated audit log: keystore unchanged" test "$before" = "$(snapshot "$KS")"
cp "$T/log.bak" "$LOG"
expect 0 "restored audit log verifies" audit verify

finish
