#!/bin/sh
# kmscrypt kms ...: generate-data-key, decrypt, re-encrypt; base64 in and out.
. "$(dirname "$0")/lib.sh"

CTX=db-id=db-1,volume-id=vol-2
expect 0 "create key" key create --alias alias/pg --json
ID=$(json 'j["KeyMetadata"]["KeyId"]')
expect 0 "create second key" key create --alias alias/other --json
ID2=$(json 'j["KeyMetadata"]["KeyId"]')

expect 0 "generate-data-key --json" --json kms generate-data-key --key alias/pg --context "$CTX"
json_is 'j["KeyId"]' "$ID"
json_is 'j["KeyVersion"]' 1
json_is 'j["EncryptionContext"]' "{'db-id': 'db-1', 'volume-id': 'vol-2'}"
json_is 'len(__import__("base64").b64decode(j["Plaintext"], validate=True))' 32
PT=$(json 'j["Plaintext"]')
BLOB=$(json 'j["CiphertextBlob"]')
check "blob is base64 of more than the key" test "$(printf %s "$BLOB" | base64 -d | wc -c)" -gt 32

expect 0 "generate-data-key --number-of-bytes 64" kms generate-data-key --key "$ID" --context "$CTX" --number-of-bytes 64 --json
json_is 'len(__import__("base64").b64decode(j["Plaintext"]))' 64
expect 0 "generate-data-key --context-json" kms generate-data-key --key alias/pg --json \
        --context-json '{"volume-id":"vol-2","db-id":"db-1","aws:rds:db-id":"x,y=z"}'
json_is 'sorted(j["EncryptionContext"].items())' "[('aws:rds:db-id', 'x,y=z'), ('db-id', 'db-1'), ('volume-id', 'vol-2')]"
BLOB3=$(json 'j["CiphertextBlob"]')
PT3=$(json 'j["Plaintext"]')
expect 0 "decrypt with the same context given as k=v (escaped)" kms decrypt --json \
        --ciphertext-blob "$BLOB3" --context 'db-id=db-1,volume-id=vol-2,aws:rds:db-id=x\,y\=z'
json_is 'j["Plaintext"]' "$PT3"

expect 0 "decrypt" --json kms decrypt --ciphertext-blob "$BLOB" --context "$CTX"
json_is 'j["Plaintext"]' "$PT"
json_is 'j["KeyId"]' "$ID"
json_is 'j["KeyVersion"]' 1
expect 0 "decrypt with --key alias" kms decrypt --ciphertext-blob "$BLOB" --context "$CTX" --key alias/pg --json
json_is 'j["Plaintext"]' "$PT"
expect 0 "decrypt (text)" kms decrypt --ciphertext-blob "$BLOB" --context "$CTX"
check "text output carries the plaintext" grep -q "^Plaintext: *$PT\$" "$T/out"

printf '%s\n' "$BLOB" > "$T/blob.b64"
expect 0 "decrypt --ciphertext-blob-file" kms decrypt --ciphertext-blob-file "$T/blob.b64" --context "$CTX" --json
json_is 'j["Plaintext"]' "$PT"
"$KMSCRYPT" --keystore "$KS" --audit-log "$LOG" kms decrypt --ciphertext-blob-file - --context "$CTX" --json \
        < "$T/blob.b64" > "$T/out" 2> "$T/err"
check "decrypt from stdin" test "$(json 'j["Plaintext"]')" = "$PT"

# Rotation: re-encrypt to the newest version of the same key, without the plaintext.
expect 0 "rotate" key rotate alias/pg
expect 0 "re-encrypt to the newest version" --json kms re-encrypt --ciphertext-blob "$BLOB" --context "$CTX"
json_is 'j["KeyVersion"]' 2
json_is 'j["KeyId"]' "$ID"
json_is '"Plaintext" in j' false
BLOB_V2=$(json 'j["CiphertextBlob"]')
expect 0 "decrypt the re-encrypted blob" kms decrypt --ciphertext-blob "$BLOB_V2" --context "$CTX" --json
json_is 'j["Plaintext"]' "$PT"
json_is 'j["KeyVersion"]' 2
expect 0 "old blob still decrypts after rotation" kms decrypt --ciphertext-blob "$BLOB" --context "$CTX" --json
json_is 'j["KeyVersion"]' 1

# Another key and another context (a clone re-bound to its new volume id).
expect 0 "re-encrypt to another key and context" kms re-encrypt --json --ciphertext-blob "$BLOB" --context "$CTX" \
        --destination-key alias/other --destination-context db-id=db-1,volume-id=vol-9
json_is 'j["KeyId"]' "$ID2"
json_is 'j["EncryptionContext"]["volume-id"]' vol-9
BLOB_O=$(json 'j["CiphertextBlob"]')
expect 0 "decrypt under the new key and context" kms decrypt --ciphertext-blob "$BLOB_O" --json \
        --context-json '{"db-id":"db-1","volume-id":"vol-9"}'
json_is 'j["Plaintext"]' "$PT"
expect 4 "the old context no longer opens it" kms decrypt --ciphertext-blob "$BLOB_O" --context "$CTX"

# A plaintext never appears in the audit log.
check "plaintext not in the audit log" sh -c "! grep -qF '$PT' '$LOG'"
expect 0 "audit chain intact" audit verify

finish
