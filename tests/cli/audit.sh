#!/bin/sh
# kmscrypt audit list / verify.
. "$(dirname "$0")/lib.sh"

CTX=db-id=db-1,volume-id=vol-2
expect 0 "verify with no log yet" audit verify
expect 0 "create key" key create --alias alias/pg --json
ID=$(json 'j["KeyMetadata"]["KeyId"]')
expect 0 "create other key" key create --alias alias/other --json
ID2=$(json 'j["KeyMetadata"]["KeyId"]')
expect 0 "generate" kms generate-data-key --key alias/pg --context "$CTX" --json
BLOB=$(json 'j["CiphertextBlob"]')
expect 0 "decrypt" kms decrypt --ciphertext-blob "$BLOB" --context "$CTX"
expect 4 "refused decrypt" kms decrypt --ciphertext-blob "$BLOB" --context db-id=db-9
# Without --key, a refusal names the key the blob names, by id and version, as the decrypt allowed does.
check "refused decrypt without --key: the record names the blob's key" \
        sh -c "tail -n1 '$LOG' | grep -q '\"operation\":\"Decrypt\",\"key_id\":\"$ID\",\"key_version\":1,.*\"result\":\"error\"'"
expect 0 "rotate other" key rotate alias/other

expect 0 "audit list --json" --json audit list
N=$(json 'len(j["Records"])')
check "one record per call so far (got $N)" test "$N" -eq "$(wc -l < "$LOG")"
json_is '[r["seq"] for r in j["Records"]] == list(range(1, len(j["Records"]) + 1))' true
json_is '[r["operation"] for r in j["Records"] if r["operation"] in ("CreateKey", "GenerateDataKey", "Decrypt", "RotateKey") and r["result"] != "pending"]' \
        "['CreateKey', 'CreateKey', 'GenerateDataKey', 'Decrypt', 'Decrypt', 'RotateKey']"
# Changes are written ahead: each outcome follows its "pending" intent.
json_is '[(r["operation"], r["result"]) for r in j["Records"] if r["operation"] in ("CreateKey", "RotateKey")]' \
        "[('CreateKey', 'pending'), ('CreateKey', 'ok'), ('CreateKey', 'pending'), ('CreateKey', 'ok'), ('RotateKey', 'pending'), ('RotateKey', 'ok')]"
json_is '[r["result"] for r in j["Records"] if r["operation"] == "Decrypt"]' "['ok', 'error']"
json_is '[r["encryption_context"] for r in j["Records"] if r["operation"] == "GenerateDataKey"][0]' \
        "{'db-id': 'db-1', 'volume-id': 'vol-2'}"

expect 0 "audit list --key" audit list --key "$ID2" --json
json_is 'sorted(set(r["key_id"] for r in j["Records"]))' "['$ID2']"
json_is '"RotateKey" in [r["operation"] for r in j["Records"]]' true
expect 0 "audit list --key local:ID" audit list --key "local:$ID" --json
json_is 'sorted(set(r["key_id"] for r in j["Records"]))' "['$ID']"
# An alias, as every other --key takes it: the records of its key, which name it by id.
ks_before=$(snapshot "$KS")
lines=$(audit_lines)
expect 0 "audit list --key alias/NAME" audit list --key alias/other --json
json_is 'sorted(set(r["key_id"] for r in j["Records"]))' "['$ID2']"
json_is '{"CreateKey", "RotateKey"} <= {r["operation"] for r in j["Records"] if r["result"] == "ok"}' true
expect 0 "audit list --key local:alias/NAME" audit list --key local:alias/pg --json
json_is '[(r["operation"], r["key_id"], r["result"]) for r in j["Records"]]' \
        "[('CreateKey', '$ID', 'ok'), ('GenerateDataKey', '$ID', 'ok'), ('Decrypt', '$ID', 'ok'), ('Decrypt', '$ID', 'error')]"
check "audit list --key alias/NAME: keystore and audit log untouched" \
        test "$ks_before" = "$(snapshot "$KS")" -a "$(audit_lines)" = "$lines"
# A refusal of a key that exists names it by its id, as every other record does, however it was
# given: audit list --key ID finds it.
expect 4 "decrypt under another key's alias" kms decrypt --key alias/other --ciphertext-blob "$BLOB" --context "$CTX"
expect 0 "audit list --key alias/NAME, with a refusal of it" audit list --key alias/other --json
json_is '[(r["key_id"], r["result"]) for r in j["Records"] if r["operation"] == "Decrypt"]' "[('$ID2', 'error')]"
expect 0 "generate under other" kms generate-data-key --key alias/other --context "$CTX" --json
BLOB2=$(json 'j["CiphertextBlob"]')
expect 0 "disable other" key disable alias/other
expect 4 "decrypt without --key, the blob's key disabled" kms decrypt --ciphertext-blob "$BLOB2" --context "$CTX"
check "disabled, without --key: the record names the blob's key and version" \
        sh -c "tail -n1 '$LOG' | grep -q '\"operation\":\"Decrypt\",\"key_id\":\"$ID2\",\"key_version\":2,.*\"error\":\"key $ID2 is disabled\"'"
for ref in alias/other "local:$ID2" "$ID2" local:alias/other; do
        expect 4 "generate under the disabled key as $ref" kms generate-data-key --key "$ref" --context "$CTX"
        check "refused as $ref: the record names the key by its id" \
                sh -c "tail -n1 '$LOG' | grep -q '\"operation\":\"GenerateDataKey\",\"key_id\":\"$ID2\".*\"result\":\"error\"'"
done
# A refused re-encrypt names the key that refused, and its source as the one allowed does.
# last_record: the newest audit record, in $T/out for json_is.
last_record() { tail -n1 "$LOG" > "$T/out"; }
expect 4 "re-encrypt under the disabled key" kms re-encrypt --ciphertext-blob "$BLOB" --context "$CTX" \
        --destination-key local:alias/other
last_record
json_is '(j["operation"], j["key_id"], j["key_version"], j["result"])' "('ReEncrypt', '$ID2', None, 'error')"
json_is 'j["detail"]' "source $ID version 1"
expect 4 "re-encrypt from the disabled key" kms re-encrypt --ciphertext-blob "$BLOB2" --context "$CTX" \
        --destination-key alias/pg
last_record
json_is '(j["operation"], j["key_id"], j["key_version"], j["error"])' \
        "('ReEncrypt', '$ID2', 2, 'key $ID2 is disabled')"
json_is 'j["detail"]' "source $ID2 version 2"
expect 4 "re-encrypt from the disabled key, named" kms re-encrypt --key alias/other --ciphertext-blob "$BLOB2" \
        --context "$CTX" --destination-key alias/pg
last_record
json_is '(j["key_id"], j["detail"])' "('$ID2', 'source $ID2 version 2')"
# Refused by the source, the record names the source's context, not the destination's; refused by
# the destination, the destination's.
expect 4 "re-encrypt from the disabled key to another context" kms re-encrypt --ciphertext-blob "$BLOB2" \
        --context "$CTX" --destination-key alias/pg --destination-context db-id=db-new
last_record
json_is '(j["key_id"], j["encryption_context"])' "('$ID2', {'db-id': 'db-1', 'volume-id': 'vol-2'})"
expect 4 "re-encrypt to the disabled key in another context" kms re-encrypt --ciphertext-blob "$BLOB" \
        --context "$CTX" --destination-key alias/other --destination-context db-id=db-new
last_record
json_is '(j["key_id"], j["encryption_context"])' "('$ID2', {'db-id': 'db-new'})"
expect 4 "re-encrypt under a wrong source context, to the disabled key" kms re-encrypt --ciphertext-blob "$BLOB" \
        --context db-id=db-9 --destination-key alias/other
last_record
json_is '(j["key_id"], j["key_version"], j["detail"])' "('$ID', 1, 'source $ID version 1')"
expect 0 "audit list --key ID: the refusals of the disabled key" audit list --key "$ID2" --json
json_is '[r["operation"] for r in j["Records"] if r["result"] == "error" and r["operation"] != "Decrypt"]' \
        "['GenerateDataKey', 'GenerateDataKey', 'GenerateDataKey', 'GenerateDataKey', 'ReEncrypt', 'ReEncrypt', 'ReEncrypt', 'ReEncrypt', 'ReEncrypt']"
json_is '[(r["key_version"], r["result"]) for r in j["Records"] if r["operation"] == "Decrypt"]' \
        "[(None, 'error'), (2, 'error')]"
expect 0 "enable other" key enable alias/other
# A key pending deletion: the same.
expect 0 "create a key to delete" key create --alias alias/gone --json
ID3=$(json 'j["KeyMetadata"]["KeyId"]')
expect 0 "generate under it" kms generate-data-key --key alias/gone --context "$CTX" --json
BLOB3=$(json 'j["CiphertextBlob"]')
expect 0 "schedule its deletion" key schedule-deletion alias/gone --pending-window-in-days 7
expect 4 "decrypt without --key, the blob's key pending deletion" kms decrypt --ciphertext-blob "$BLOB3" --context "$CTX"
check "pending deletion, without --key: the record names the blob's key" \
        sh -c "tail -n1 '$LOG' | grep -q '\"operation\":\"Decrypt\",\"key_id\":\"$ID3\",\"key_version\":1,.*\"result\":\"error\"'"
expect 4 "re-encrypt from a key pending deletion" kms re-encrypt --ciphertext-blob "$BLOB3" --context "$CTX" \
        --destination-key alias/pg
last_record
json_is '(j["operation"], j["key_id"], j["key_version"], j["result"], j["detail"])' \
        "('ReEncrypt', '$ID3', 1, 'error', 'source $ID3 version 1')"
# A blob that names no key that can be read: no header (refused as tampered), or a key id that is not
# one (a key not found); the record names none.
NOT_AN_ID=$(python3 -c 'import base64, sys
b = bytearray(base64.b64decode(sys.argv[1])); b[6] = ord("!"); print(base64.b64encode(b).decode())' "$BLOB3")
for bad in "4 AAAA" "3 $NOT_AN_ID"; do
        expect "${bad%% *}" "decrypt without --key of a blob naming no key (${bad#* })" \
                kms decrypt --ciphertext-blob "${bad#* }" --context "$CTX"
        check "a blob naming no key: the record names none" \
                sh -c "tail -n1 '$LOG' | grep -q '\"operation\":\"Decrypt\",\"key_id\":null,\"key_version\":null,.*\"result\":\"error\"'"
done
# A key that does not exist is named as given: there is no id to name it by.
expect 3 "generate under an unknown alias" kms generate-data-key --key alias/no-such-key --context "$CTX"
check "unknown alias: the record names it as given" \
        sh -c "tail -n1 '$LOG' | grep -q '\"operation\":\"GenerateDataKey\",\"key_id\":\"alias/no-such-key\".*\"result\":\"error\"'"
# An alias that names no key: one line, not an empty list.
expect 3 "audit list --key of an unknown alias" audit list --key alias/no-such-key
check "unknown alias: one line naming it" sh -c "[ \$(wc -l < '$T/err') = 1 ] && grep -q '^kmscrypt: --key: .*alias/no-such-key' '$T/err'"
check "unknown alias: nothing on stdout" test ! -s "$T/out"
expect 1 "audit list --key of another provider's alias" audit list --key aws:alias/pg
check "another provider's alias: one line" one_error_line
expect 2 "audit list --key neither id nor alias" audit list --key "not a key"
check "neither id nor alias: one line" one_error_line

expect 0 "audit list --since the future" audit list --since 2999-01-01 --json
json_is 'len(j["Records"])' 0
expect 0 "audit list --since the past" audit list --since @1000000000 --json
json_is 'len(j["Records"]) >= '"$N" true
# @SECONDS counts from the epoch itself: @0 is every record, as no --since.
expect 0 "audit list --since @0" audit list --since @0 --json
json_is 'len(j["Records"]) >= '"$N" true
expect 0 "audit list --since 1970-01-01, the same moment" audit list --since 1970-01-01 --json
json_is 'len(j["Records"]) >= '"$N" true
expect 2 "audit list --since @-1" audit list --since @-1
check "--since @-1: one line" one_error_line
expect 0 "audit list --since date and time" audit list --since 2000-01-01T00:00:00Z --json
json_is 'len(j["Records"]) >= '"$N" true
# Only dates that exist, read as strictly as the records' own times: timegm() would take
# 2026-02-31 for March 3, and list from a day nobody asked for.
names_since() { one_error_line && grep -qF -- "--since: " "$T/err" && grep -qF -- "\"$t\"" "$T/err"; }
# A date and time without its Z, UTC or local to whoever typed it, is refused, as is anything after it.
for t in 2026-02-31 2025-02-29 2026-13-01 2026-00-10 2026-11-00 2026-11-27T24:00:00Z 2026-11-27T23:59:60Z \
         2026-1-5 " 2026-11-27" "" 2026-11-30T10:00:00 2026-11-30T10:00 2026-11-30T10:00:00z \
         2026-11-30T10:00:00ZZ "2026-11-30T10:00:00Z " 2026-11-30T10:00:00+00:00 2026-11-30x; do
        expect 2 "audit list --since '$t'" audit list --since "$t"
        check "--since '$t': one line naming it" names_since
        check "--since '$t': says the forms" grep -qF -- "expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or @SECONDS" "$T/err"
        check "--since '$t': nothing on stdout" test ! -s "$T/out"
done
expect 0 "audit list --since a leap day" audit list --since 2024-02-29 --json
json_is 'len(j["Records"]) >= '"$N" true

# --until: records before TIME, the same forms; with --since a half-open span.
expect 0 "audit list --until the past" audit list --until 2000-01-01 --json
json_is 'len(j["Records"])' 0
expect 0 "audit list --until the future" audit list --until 2999-01-01T00:00:00Z --json
json_is 'len(j["Records"]) >= '"$N" true
now=$(date +%s)
expect 0 "audit list --since and --until the same moment" audit list --since @$now --until @$now --json
json_is 'len(j["Records"])' 0
expect 0 "audit list --since the past --until the future" audit list --since @1000000000 --until 2999-01-01 --json
json_is 'len(j["Records"]) >= '"$N" true
names_until() { one_error_line && grep -qF -- "--until: " "$T/err" && grep -qF -- "\"$t\"" "$T/err"; }
for t in 2026-02-31 2026-11-30T10:00:00 2026-11-30T25:00:00Z 2026-11-30T10:00:00Zjunk ""; do
        expect 2 "audit list --until '$t'" audit list --until "$t"
        check "--until '$t': one line naming it" names_until
        check "--until '$t': nothing on stdout" test ! -s "$T/out"
done

expect 0 "audit list (table)" audit list
check "table has a header and a row per record" test "$(wc -l < "$T/out")" -ge $((N + 1))
check "table shows the refused decrypt" grep -q 'Decrypt .* error' "$T/out"

expect 0 "audit verify --json" audit verify --json
json_is 'j["Intact"]' true
json_is 'j["Records"] >= '"$N" true
expect 0 "audit verify (text)" audit verify
check "verify says intact" grep -q 'chain intact' "$T/out"

# Edit one record: verify names its line and exits 4.
cp "$LOG" "$T/log.bak"
sed -i '3s/"seq":3/"seq":3 /' "$LOG"
expect 4 "edited record" audit verify
check "edited record: one line naming line 3" sh -c "[ \$(wc -l < '$T/err') -eq 1 ] && grep -q ':3: ' '$T/err'"
expect 4 "edited record (json)" audit verify --json
json_is 'j["Intact"]' false
json_is 'j["BadLine"]' 3
cp "$T/log.bak" "$LOG"

# Remove a record in the middle, then the newest one.
sed -i '2d' "$LOG"
expect 4 "removed record" audit verify
check "removed record: one line" one_error_line
cp "$T/log.bak" "$LOG"
sed -i '$d' "$LOG"
expect 4 "truncated log (head ahead)" audit verify
check "truncated log: one line" one_error_line
cp "$T/log.bak" "$LOG"
expect 0 "restored log verifies" audit verify

# ---- Changes are written ahead (docs/audit.md) ----
# kc_limited BYTES ARGS...: kc with files limited to BYTES (RLIMIT_FSIZE,
# SIGXFSZ ignored): the audit log, larger than any keystore file, cannot grow
# past it, as on a full file system.
kc_limited() {
        limit=$1
        shift
        python3 -c 'import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
os.execv(sys.argv[2], sys.argv[2:])' "$limit" "$KMSCRYPT" --keystore "$KS" --audit-log "$LOG" "$@" > "$T/out" 2> "$T/err"
        rc=$?
}
size() { stat -c %s "$1"; }
largest=$(find "$KS" -type f -exec stat -c %s {} + | sort -n | tail -n 1)
check "the log is larger than every keystore file" test "$(size "$LOG")" -gt "$largest"

# No room for the intent record: nothing changes, one line names the audit log.
before=$(snapshot "$KS") lines=$(wc -l < "$LOG")
kc_limited "$(size "$LOG")" key disable alias/pg
check "no room for the intent: exit 5 (got $rc)" test "$rc" = 5
check "no room for the intent: one line naming the audit log" sh -c \
        "[ \$(wc -l < '$T/err') -eq 1 ] && grep -q 'DisableKey not done: its audit record could not be written' '$T/err'"
check "no room for the intent: keystore unchanged" test "$before" = "$(snapshot "$KS")"
check "no room for the intent: no record" test "$(wc -l < "$LOG")" -eq "$lines"

# Room for the intent but not the outcome: the change stands, exit 0, one warning line.
expect 0 "disable the twin key" key disable alias/other
intent=$(grep '"result":"pending"' "$LOG" | tail -n 1)
check "the twin's intent is its newest pending record" sh -c "echo '$intent' | grep -q '\"operation\":\"DisableKey\",\"key_id\":\"$ID2\"'"
# + 8: a pid a digit longer; the outcome needs hundreds more.
kc_limited $(($(size "$LOG") + ${#intent} + 1 + 8)) key disable alias/pg
check "no room for the outcome: exit 0 (got $rc)" test "$rc" = 0
check "no room for the outcome: one warning line saying so" sh -c \
        "[ \$(wc -l < '$T/err') -eq 1 ] && grep -q 'DisableKey done, but its outcome record could not be written' '$T/err'"
check "no room for the outcome: the log ends with the intent" sh -c \
        "tail -n 1 '$LOG' | grep -q '\"operation\":\"DisableKey\",\"key_id\":\"$ID\".*\"result\":\"pending\"'"
expect 0 "no room for the outcome: the change stands" --json key describe alias/pg
json_is 'j["KeyMetadata"]["KeyState"]' Disabled
expect 0 "no room for the outcome: the chain verifies" audit verify
expect 0 "enable again" key enable alias/pg

# A new log's name is as durable as the head that names its records: its
# directory is synced when it is made (here apart from the head's, as by
# default: /var/lib/kmscrypt against the keystore).
if command -v strace >/dev/null 2>&1; then
        mkdir "$T/logdir"
        # A fresh keystore, with the head in it as by default.
        env -u KMSCRYPT_AUDIT_HEAD strace -f -qq -e trace=openat,fsync -o "$T/trace" \
                "$KMSCRYPT" --keystore "$T/fresh-keystore" --audit-log "$T/logdir/audit.log" key list > "$T/out" 2> "$T/err"
        check "a new log: made (exit $?; $(cat "$T/err"))" test -s "$T/logdir/audit.log"
        check "a new log: its directory synced" awk -v d="\"$T/logdir\"" '
                index($0, d ", O_RDONLY") && /O_DIRECTORY/ { fd[$NF] = 1 }
                /fsync\(/ { n = $2; sub(/^fsync\(/, "", n); sub(/\).*/, "", n); if (n in fd && / = 0$/) found = 1 }
                END { exit !found }' "$T/trace"
else
        echo "# strace missing: the sync of a new log's directory is not checked"
fi

finish
