# SPDX-License-Identifier: LGPL-2.1-or-later
# Bad headers and tokens given to `kmscrypt attach` (issue #4): each
# refusal is one line on
# stderr and a non-zero exit, leaves no mapping and no kmscrypt key in the
# kernel, and the device unwritten: no sector written (the block device's
# write counter) and its first 64 KiB, where the LUKS2 metadata lives,
# byte-identical (kcvm_refused in lib.sh).  Not LUKS2, LUKS1, LUKS2
# without a kmscrypt token, a token copied from another volume (the digest
# check refuses it), tokens broken in every way (imported with stock
# cryptsetup): not base64, over 8 KiB, a member missing, a member of the
# wrong type, an unknown version, a context edited (the KMS refuses it).
# The other refusals are in volume-bad-attach.
# kcvm-programs: kmscrypt
. /kc/lib.sh

kcvm_kmscrypt_env
kmscrypt -q key create --alias alias/db || die "kmscrypt key create failed"
defer "dmsetup remove kcbad >/dev/null 2>&1; kcvm_mknodes"

# The good volume's header, whose token the cases below replace.
kcvm_loop 20
scratch=$KCVM_LOOP
kmscrypt -q format "$scratch" --key alias/db --context db-id=db1,volume-id=vol-a || die "format failed"
cryptsetup token export --token-id 0 "$scratch" >token.json || die "stock token export failed"
grep -q '^{"type":"kmscrypt",' token.json || die "unexpected token JSON: $(cat token.json)"

# ---- not LUKS2, LUKS1, LUKS2 without token, a token from another volume ----
kcvm_loop 20
other=$KCVM_LOOP
kcvm_attach_refused "not LUKS" "$other" "is not a LUKS2 device"
cryptsetup luksFormat -q --type luks1 --pbkdf-force-iterations 1000 --key-file token.json "$other" ||
        die "stock luksFormat --type luks1 failed"
kcvm_attach_refused "LUKS1" "$other" "is LUKS1"
# The same volume key as LUKS2 (quicker than a second luksFormat).
cryptsetup convert -q --type luks2 "$other" || die "stock cryptsetup convert --type luks2 failed"
kcvm_attach_refused "LUKS2 without a kmscrypt token" "$other" "has no kmscrypt token"
cryptsetup token import --json-file token.json "$other" || die "stock token import failed"
kcvm_attach_refused "token copied from another volume" "$other" "does not match the LUKS2 header"

# ---- broken tokens ----
# token CASE SED-SCRIPT: the good token edited, in place of the volume's own.
token() {
        sed "$2" token.json >"token-$1.json"
        cryptsetup token remove --token-id 0 "$scratch" 2>/dev/null
        cryptsetup token import --token-id 0 --json-file "token-$1.json" "$scratch" ||
                die "stock token import of the $1 token failed: $(cat "token-$1.json")"
}
token malformed 's/"wrapped_key":"[^"]*"/"wrapped_key":"not base64!"/'
kcvm_attach_refused "token wrapped_key not base64" "$scratch" "wrapped_key is not valid base64"
pad=$(head -c 9000 /dev/zero | tr '\0' x)
token oversized "s/}\$/,\"pad\":\"$pad\"}/"
kcvm_attach_refused "token JSON over 8 KiB" "$scratch" "larger than 8192 bytes"
token missing 's/"key_version":1,//'
kcvm_attach_refused "token without key_version" "$scratch" 'token has no "key_version"'
token type 's/"key_version":1/"key_version":"1"/'
kcvm_attach_refused "token key_version a string" "$scratch" '"key_version" is not'
token version 's/"kmscrypt_version":1/"kmscrypt_version":2/'
kcvm_attach_refused "token of an unknown version" "$scratch" "unsupported kmscrypt token version 2"
token context 's/"volume-id":"vol-a"/"volume-id":"vol-b"/'
kcvm_attach_refused "context edited in the token" "$scratch" "does not match this key or encryption context" \
        --expect-context db-id=db1,volume-id=vol-b
