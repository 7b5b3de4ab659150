#!/bin/sh
# kmscrypt reencrypt and rebind --reencrypt on image files (offline: no
# device-mapper here): the token names a new key the KMS unwraps and the
# LUKS2 digest accepts, no keyslot is left, --json reports it; refusals
# (nothing to resume, a bad --resilience or --rate-limit, another context
# expected, a recovery keyslot without its passphrase) are one line and leave the image byte-identical.
. "$(dirname "$0")/../cli/lib.sh"

command -v cryptsetup >/dev/null || { echo "SKIP: cryptsetup is needed"; exit 77; }
[ "$(id -u)" = 0 ] || [ -w /run/cryptsetup ] || { echo "SKIP: libcryptsetup needs /run/cryptsetup (root)"; exit 77; }

CTX=db-id=db-1,volume-id=vol-1
FAST="--pbkdf pbkdf2 --pbkdf-force-iterations 1000"
blob() { kc --json dump "$1" && json 'j["KmscryptToken"]["CiphertextBlob"]'; }
slots() { cryptsetup luksDump "$1" | sed -n '/^Keyslots:/,/^Tokens:/p' | grep -c '^  [0-9]*: luks2'; }

expect 0 "create key" key create --alias alias/pg
V=$T/v.img
truncate -s 24M "$V"
expect 0 "format" format "$V" --key alias/pg --context "$CTX"
old=$(blob "$V")

bad "resume with nothing in progress" 3 "$V" "no reencryption in progress" reencrypt --resume "$V"
bad "bad resilience" 2 "$V" "checksum or journal" reencrypt "$V" --resilience none
bad "bad rate limit" 2 "$V" "rate-limit" reencrypt "$V" --rate-limit fast
bad "another context expected" 4 "$V" "bound to another context than expected" \
        reencrypt "$V" --expect-context db-id=db-1,volume-id=vol-2
bad "both forms of the expected context" 2 "$V" "not both" \
        reencrypt "$V" --expect-context "$CTX" --expect-context-json '{"db-id":"db-1","volume-id":"vol-1"}'

expect 0 "reencrypt --json" --json reencrypt "$V" --expect-context-json '{"db-id":"db-1","volume-id":"vol-1"}'
json_is 'j["Finished"]' true
json_is 'j["Online"]' false
json_is 'j["Resumed"]' false
json_is 'j["RecoveryKeyslot"]' -1
new=$(blob "$V")
check "the token names a new blob" test -n "$new" -a "$new" != "$old"
expect 0 "rewrap --dry-run proves the new token against the digest" rewrap "$V" --dry-run --always
check "no keyslot left" test "$(slots "$V")" = 0
check "no reencrypt member left" sh -c "! cryptsetup token export --token-id 0 '$V' | grep -q kmscrypt_reencrypt"
expect 0 "audit chain intact" audit verify
# Start and finish, each written ahead: an intent ("pending"), then its outcome.
check "ReencryptVolume audited twice, written ahead" sh -c \
        "[ \$(grep -c '\"operation\":\"ReencryptVolume\"' '$LOG') = 4 ] &&
         [ \$(grep '\"operation\":\"ReencryptVolume\"' '$LOG' | grep -c '\"result\":\"pending\"') = 2 ]"

# A recovery keyslot goes with the old key: refused without its passphrase, re-created with it.
R=$T/r.img
truncate -s 24M "$R"
printf 'recovery words\n' >"$T/recovery"
expect 0 "format with recovery" format "$R" --key alias/pg --context db-id=db-1,volume-id=vol-r \
        --recovery-passphrase-file "$T/recovery" $FAST
bad "recovery keyslot without its passphrase" 4 "$R" "recovery keyslot" reencrypt "$R"
expect 0 "reencrypt keeping recovery" reencrypt "$R" --recovery-passphrase-file "$T/recovery" $FAST
check "one keyslot, as before" test "$(slots "$R")" = 1
check "the recovery passphrase opens the new key" \
        sh -c "printf 'recovery words' | cryptsetup open --test-passphrase '$R'"

# A clone gets its own context, then its own key.
C=$T/c.img
cp "$V" "$C"
expect 0 "rebind --reencrypt" rebind "$C" --context volume-id=clone-1 --reencrypt
check "clone and original no longer share a blob" test "$(blob "$C")" != "$(blob "$V")"
kc --json dump "$C"
json_is 'j["KmscryptToken"]["EncryptionContext"]["volume-id"]' clone-1
expect 0 "the clone's token proves against its digest" rewrap "$C" --dry-run --always

finish
