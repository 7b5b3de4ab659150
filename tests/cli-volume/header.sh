#!/bin/sh
# kmscrypt format / adopt / dump on sparse image files: success paths, interop
# with stock cryptsetup, and bad headers (one line on stderr, a non-zero exit,
# the image byte-identical).
. "$(dirname "$0")/../cli/lib.sh"

command -v cryptsetup >/dev/null || { echo "SKIP: cryptsetup is needed"; exit 77; }
[ "$(id -u)" = 0 ] || [ -w /run/cryptsetup ] || { echo "SKIP: libcryptsetup needs /run/cryptsetup (root)"; exit 77; }

CTX=db-id=db-1,volume-id=vol-1
FAST="--pbkdf pbkdf2 --pbkdf-force-iterations 1000"

img() { truncate -s 32M "$T/$1" && echo "$T/$1"; }
# The volume key as stock cryptsetup shows it, in lower-case hex.
stock_key() {
        cryptsetup luksDump --dump-volume-key --batch-mode --key-file "$2" "$1" |
                sed -n '/^MK dump:/,$p' | sed 's/^MK dump://' | tr -d ' \t\n'
}
# The key the KMS unwraps from a volume's token, in hex (from `dump --json`).
kms_key() {
        kc --json dump "$1"
        blob=$(json 'j["KmscryptToken"]["CiphertextBlob"]')
        ctx=$(json '__import__("json").dumps(j["KmscryptToken"]["EncryptionContext"])')
        kc --json kms decrypt --ciphertext-blob "$blob" --context-json "$ctx"
        json '__import__("base64").b64decode(j["Plaintext"]).hex()'
}

expect 0 "create key" key create --alias alias/pg --json
KEY_ID=$(json 'j["KeyMetadata"]["KeyId"]')

# ---- format ----
V=$(img v.img)
printf 'recovery words\n' > "$T/recovery"
expect 0 "format" --json format "$V" --key alias/pg --context "$CTX" --label pgdata \
        --recovery-passphrase-file "$T/recovery" $FAST
json_is 'j["LuksUuid"]' "$(cryptsetup luksUUID "$V")"
json_is 'j["KeyId"]' "$KEY_ID"
json_is 'j["RecoveryKeyslot"]' 0
# The names every other command prints (kmscrypt(8) JSON OUTPUT): no snake_case.
json_is 'sorted(j)' "['Device', 'KeyId', 'KeyVersion', 'LuksUuid', 'RecoveryKeyslot', 'TokenId']"
check "stock luksDump lists the kmscrypt token" sh -c "cryptsetup luksDump '$V' | grep -q '^  0: kmscrypt'"
# The passphrase file's trailing newline is not part of the passphrase: typed at a prompt, it opens.
check "recovery passphrase opens with stock cryptsetup" \
        sh -c "printf 'recovery words\n' | cryptsetup open --test-passphrase '$V'"
printf 'recovery words' > "$T/recovery.raw"
check "the KMS unwraps the key the recovery keyslot opens" \
        test "$(kms_key "$V")" = "$(stock_key "$V" "$T/recovery.raw")"

expect 0 "dump" dump "$V"
check "dump: the token's key" grep -q "local:$KEY_ID (version 1)" "$T/out"
check "dump: the context" grep -q '{"db-id":"db-1","volume-id":"vol-1"}' "$T/out"
check "dump: blob length, not the blob" sh -c "grep -q 'Wrapped key: *[0-9]* bytes' '$T/out' && ! grep -q S0NX '$T/out'"
expect 0 "dump --json" --json dump "$V"
json_is 'j["SectorSize"]' 4096
json_is 'j["Label"]' pgdata
json_is 'j["KmscryptToken"]["KeyVersion"]' 1
json_is 'j["KmscryptToken"]["CiphertextBlobLength"] > 0' true
json_is 'j["LuksUuid"]' "$(cryptsetup luksUUID "$V")"
json_is 'j["Cipher"]' aes-xts-plain64
json_is 'j["Keyslots"][0]["Kdf"]' pbkdf2
json_is 'j["KeySize"]' 512
json_is 'j["KmscryptToken"]["KeyId"]' "$KEY_ID"
json_is 'j["KmscryptToken"]["EncryptionContext"]["volume-id"]' vol-1
json_is '[k for o in [j, j["KmscryptToken"]] + j["Keyslots"] + j["Tokens"] for k in o if not k[0].isupper() or "_" in k]' '[]'

D=$(img data.img)
expect 0 "format, detached header" format "$D" --header "$T/hdr" --key alias/pg --context "$CTX" --sector-size 512
check "detached: data device still all zeros" cmp -s "$D" "$(img zeros.img)"
expect 0 "dump, detached header" --json dump "$D" --header "$T/hdr"
json_is 'j["SectorSize"]' 512
json_is 'j["DataOffset"]' 0

# ---- format refusals ----
bad "format over LUKS" 1 "$V" "crypto_LUKS signature" format "$V" --key alias/pg --context "$CTX"
bad "format without volume-id" 2 "$V" "must name volume-id" format "$V" --key alias/pg --context db-id=db-1
bad "format with an unknown key" 3 "$D" "alias/none" format "$D" --header "$T/hdr2" --key alias/none --context "$CTX"
check "a failed format leaves no header file" test ! -e "$T/hdr2"
bad "format, odd sector size" 2 "$D" "512 or 4096" format "$D" --key alias/pg --context "$CTX" --sector-size 1024
# PBKDF costs libcryptsetup refuses are refused before the header is written: the image stays
# blank, and the same format with costs it takes then succeeds.
for costs in "--pbkdf pbkdf2 --pbkdf-force-iterations 999" "--pbkdf argon2i --pbkdf-force-iterations 3" \
             "--pbkdf-force-iterations 3" "--pbkdf pbkdf2 --pbkdf-memory 64"; do
        N=$(img costs.img)
        bad "format, refused PBKDF costs ($costs)" 2 "$N" "--pbkdf" format "$N" --key alias/pg --context "$CTX" \
                --recovery-passphrase-file "$T/recovery" $costs
        expect 0 "format after the refused costs ($costs)" format "$N" --key alias/pg --context "$CTX" \
                --recovery-passphrase-file "$T/recovery" $FAST
        rm -f "$N"
done

# ---- bad headers, for dump and adopt ----
Z=$(img zero.img)
bad "dump: not LUKS" 5 "$Z" "not a LUKS2 device" dump "$Z"
# Shorter than any LUKS2 header: libcryptsetup's reads fail with EIO, which is no disk error.
printf 'short' > "$T/short.img"
bad "dump: too small for LUKS2" 5 "$T/short.img" "short.img is not a LUKS2 device (too small for a LUKS2 header)" \
        dump "$T/short.img"
L1=$(img luks1.img)
printf 'old passphrase' > "$T/old"
cryptsetup luksFormat --type luks1 --batch-mode --pbkdf-force-iterations 1000 --key-file "$T/old" "$L1"
bad "dump: LUKS1" 5 "$L1" "is LUKS1" dump "$L1"
bad "adopt: LUKS1" 5 "$L1" "is LUKS1" adopt "$L1" --key alias/pg --context "$CTX" --passphrase-file "$T/old"

P=$(img plain.img)
cryptsetup luksFormat --type luks2 --batch-mode $FAST --key-file "$T/old" "$P"
before=$(sum "$P")
expect 3 "dump: LUKS2 without a kmscrypt token" dump "$P"
check "dump without token: one line on stderr" one_error_line
check "dump without token: names the problem" grep -q "has no kmscrypt token" "$T/err"
check "dump without token: the header facts still on stdout" grep -q "^Keyslots: *0: luks2" "$T/out"
check "dump without token: image unchanged" test "$before" = "$(sum "$P")"

# Tokens that libcryptsetup stores but kmscrypt refuses.  token import checks only type/keyslots.
G='"type":"kmscrypt","keyslots":[]'
OK_REST='"provider":"local","key_id":"k","context":{"db-id":"d","volume-id":"v"},"wrapped_key":"AAAA"'
PAD=$(python3 -c 'print("x" * 9000)')
i=0
while IFS='|' read -r what json; do
        i=$((i + 1))
        cp "$P" "$T/t$i.img"
        printf '%s' "$json" > "$T/t$i.json"
        cryptsetup token import --token-id 0 --json-file "$T/t$i.json" "$T/t$i.img"
        bad "dump: bad token $i" 5 "$T/t$i.img" "$what" dump "$T/t$i.img"
        bad "adopt: bad token $i" 5 "$T/t$i.img" "$what" adopt "$T/t$i.img" --key alias/pg --context "$CTX" --passphrase-file "$T/old"
done <<EOF
no "provider"|{$G,"kmscrypt_version":1}
unsupported kmscrypt token version 2|{$G,"kmscrypt_version":2,$OK_REST,"key_version":1}
"key_version" is not an integer|{$G,"kmscrypt_version":1,$OK_REST,"key_version":"1"}
not valid base64|{$G,"kmscrypt_version":1,"provider":"local","key_id":"k","key_version":1,"context":{"db-id":"d","volume-id":"v"},"wrapped_key":"AA*A"}
unknown member "extra"|{$G,"kmscrypt_version":1,$OK_REST,"key_version":1,"extra":true}
larger than 8192 bytes|{$G,"kmscrypt_version":1,"x":"$PAD"}
EOF

# ---- adopt ----
A=$(img adopt.img)
cryptsetup luksFormat --type luks2 --batch-mode $FAST --key-file "$T/old" "$A"
OLD_KEY=$(stock_key "$A" "$T/old")
printf 'wrong' > "$T/wrong"
bad "adopt: wrong passphrase" 4 "$A" "no keyslot" adopt "$A" --key alias/pg --context "$CTX" --passphrase-file "$T/wrong"
bad "adopt: no passphrase" 2 "$A" "exactly one of" adopt "$A" --key alias/pg --context "$CTX"
expect 0 "adopt" --json adopt "$A" --key alias/pg --context "$CTX" --key-file "$T/old"
json_is 'j["RemovedKeyslots"]' 0
json_is 'sorted(j)' "['Device', 'KeyId', 'KeyVersion', 'LuksUuid', 'RemovedKeyslots', 'TokenId']"
check "adopt: the KMS unwraps the volume's own key" test "$(kms_key "$A")" = "$OLD_KEY"
check "adopt: the passphrase still opens" cryptsetup open --test-passphrase --key-file "$T/old" "$A"
bad "adopt twice" 1 "$A" "already has a kmscrypt token" adopt "$A" --key alias/pg --context "$CTX" --key-file "$T/old"

R=$(img remove.img)
cryptsetup luksFormat --type luks2 --batch-mode $FAST --key-file "$T/old" "$R"
OLD_KEY=$(stock_key "$R" "$T/old")
expect 0 "adopt --remove-passphrase" --json adopt "$R" --key alias/pg --context "$CTX" --passphrase-file "$T/old" --remove-passphrase
json_is 'j["RemovedKeyslots"]' 1
check "removed: no keyslot left" sh -c "! cryptsetup open --test-passphrase --key-file '$T/old' '$R' 2>/dev/null"
check "removed: the KMS still unwraps the key" test "$(kms_key "$R")" = "$OLD_KEY"

expect 0 "the audit trail verifies" audit verify
finish
