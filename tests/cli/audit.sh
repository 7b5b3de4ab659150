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

expect 0 "audit list --since the future" audit list --since 2999-01-01 --json
json_is 'len(j["Records"])' 0
expect 0 "audit list --since the past" audit list --since @1000000000 --json
json_is 'len(j["Records"]) >= '"$N" true
expect 0 "audit list --since date and time" audit list --since 2000-01-01T00:00:00Z --json
json_is 'len(j["Records"]) >= '"$N" true

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

finish
