#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Hostile LUKS2 headers on image files (issue #8), host tier: every case of
# tests/hostile/kc-hostile, made from a volume `kmscrypt format` wrote, goes
# through `kmscrypt dump`, `kmscrypt attach` (as far as a host without
# device-mapper gets: everything up to the key is read before the first dm
# call) and `kmscrypt config check`.  A refused image: a non-zero exit, one
# line on stderr naming the problem, the image byte-identical.  A repaired one
# (a stale checksum on one copy: libcryptsetup rewrites it from the other):
# both copies valid again, their JSON the original's, no byte past the two
# headers touched.  Cases whose refusal needs a key or a device-mapper (a
# token of another volume, a segment past the device's end) are refused in the
# vm tier: tests/vm/guest/hostile-attach.sh.  The images also seed the
# luks2-header fuzzer (tests/fuzz/corpus/luks2-header/hostile-*).
. "$(dirname "$0")/../cli/lib.sh"

command -v cryptsetup >/dev/null || { echo "SKIP: cryptsetup is needed"; exit 77; }
[ "$(id -u)" = 0 ] || [ -w /run/cryptsetup ] || { echo "SKIP: libcryptsetup needs /run/cryptsetup (root)"; exit 77; }
HOSTILE=$top_builddir/tests/hostile/kc-hostile
[ -x "$HOSTILE" ] || { echo "no $HOSTILE"; exit 99; }

FAST="--pbkdf pbkdf2 --pbkdf-force-iterations 1000"
sum() { sha256sum "$1" | cut -d' ' -f1; }

expect 0 "create key" key create --alias alias/pg
truncate -s 32M "$T/good.img" "$T/donor.img"
printf 'recovery words' > "$T/recovery"
expect 0 "format the good volume" format "$T/good.img" --key alias/pg --context db-id=db-1,volume-id=vol-1 \
        --recovery-passphrase-file "$T/recovery" $FAST
expect 0 "format the donor volume" format "$T/donor.img" --key alias/pg --context db-id=db-1,volume-id=vol-2 $FAST
check "kc-hostile verify accepts the good volume" "$HOSTILE" verify "$T/good.img"

# Every case has a line here (a case kc-hostile adds without one fails below).
#   case|dump exit|what dump and config check say|what attach says ("-": not refused before dm on the host)
# A dump exit of "repair" means: accepted and repaired.
cat > "$T/cases" <<'EOF'
csum-primary|repair|-|-
csum-secondary|repair|-|-
csum-both|5|is not a LUKS2 device|is not a LUKS2 device
json-malformed|5|is not a LUKS2 device|is not a LUKS2 device
json-wrong-type|5|is not a LUKS2 device|is not a LUKS2 device
overlap-keyslots|5|is not a LUKS2 device|is not a LUKS2 device
overlap-segment|5|is not a LUKS2 device|is not a LUKS2 device
overflow-segment|0|-|-
overflow-keyslot-area|5|is not a LUKS2 device|is not a LUKS2 device
overflow-json-size|5|is not a LUKS2 device|is not a LUKS2 device
overflow-hdr-size|5|is not a LUKS2 device|is not a LUKS2 device
token-oversized|5|token JSON is larger than 8192 bytes|token JSON is larger than 8192 bytes
tokens-33|3|has no kmscrypt token|has no kmscrypt token
token-transplant|0|-|-
reencrypt-forged|0|-|cannot read the LUKS2 segment
EOF
"$HOSTILE" list | cut -f1 | LC_ALL=C sort > "$T/listed"
cut -d'|' -f1 "$T/cases" | LC_ALL=C sort > "$T/expected"
check "every case of kc-hostile has an expectation here" cmp -s "$T/listed" "$T/expected"

# refused NAME FILE WANT STATUS: the last kc refused with STATUS (or any non-zero for "any"), one line with WANT, FILE unchanged.
refused_unchanged() {
        name=$1 file=$2 want=$3 status=$4
        if [ "$status" = any ] && [ "$rc" != 0 ] || [ "$rc" = "$status" ]; then ok "$name: exit $rc"; else fail "$name: exit $rc, expected $status; stderr: $(cat "$T/err")"; fi
        check "$name: one line on stderr" one_error_line
        check "$name: says '$want'" grep -qF -- "$want" "$T/err"
        check "$name: image unchanged" test "$before" = "$(sum "$file")"
}

while IFS='|' read -r c dump_status dump_says attach_says; do
        img=$T/$c.img
        cp --sparse=always "$T/good.img" "$img"
        if ! "$HOSTILE" "$c" "$img" "$T/donor.img"; then
                fail "$c: kc-hostile could not make the image"
                continue
        fi
        check "$c: the image differs from the good one" sh -c "! cmp -s '$img' '$T/good.img'"
        # The fuzzer's seed: both headers and JSON areas (default 16 KiB metadata).
        head -c 32768 "$img" > "$T/seed-$c"
        before=$(sum "$img")

        case $dump_status in
        repair)
                kc dump "$img"
                check "$c: dump reads the good copy (exit $rc)" test "$rc" = 0
                check "$c: dump shows the token" grep -q "local:.*(version 1)" "$T/out"
                check "$c: both copies valid again" "$HOSTILE" verify "$img"
                check "$c: JSON area as the good volume's" cmp -s -i 4096:4096 -n 12288 "$img" "$T/good.img"
                check "$c: nothing past the headers touched" cmp -s -i 32768:32768 "$img" "$T/good.img"
                continue
                ;;
        0)
                kc dump "$img"
                check "$c: dump shows the header (exit $rc)" test "$rc" = 0
                check "$c: dump left the image unchanged" test "$before" = "$(sum "$img")"
                ;;
        *)
                kc dump "$img"
                refused_unchanged "$c: dump" "$img" "$dump_says" "$dump_status"
                printf 'kcbad %s db-id=db-1,volume-id=vol-1\n' "$img" > "$T/volumes"
                kc config check --volumes "$T/volumes"
                check "$c: config check fails (exit $rc)" test "$rc" != 0
                check "$c: config check says '$dump_says'" grep -qF -- "$dump_says" "$T/out" "$T/err"
                check "$c: config check left the image unchanged" test "$before" = "$(sum "$img")"
                ;;
        esac
        if [ "$attach_says" != - ]; then
                kc attach "$img" --name kcbad
                refused_unchanged "$c: attach" "$img" "$attach_says" any
        fi
done < "$T/cases"

# The cases are what they claim, as stock cryptsetup sees them.
check "reencrypt-forged: libcryptsetup loads a reencryption in progress" \
        sh -c "cryptsetup luksDump '$T/reencrypt-forged.img' | grep -q '^Requirements:.*online-reencrypt-v2'"
check "tokens-33: the JSON holds 33 tokens" sh -c "cryptsetup luksDump --dump-json-metadata '$T/tokens-33.img' |
        python3 -c 'import json, sys; sys.exit(len(json.load(sys.stdin)[\"tokens\"]) != 33)'"

# The segment offset near 2^64 is shown as it is on disk (it once came out
# as a negative number, through a signed overflow UBSan reported).
kc --json dump "$T/overflow-segment.img"
json_is 'j["DataOffset"]' 18446744073709547520

# The seeds in tests/fuzz/corpus/luks2-header/hostile-* are these images'
# first 32 KiB (both headers); each case must have one.
seeds=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/fuzz/corpus/luks2-header
# KC_HOSTILE_SEEDS=DIR writes them there (how the committed ones were made).
for s in "$T"/seed-*; do
        c=${s##*/seed-}
        [ -z "${KC_HOSTILE_SEEDS:-}" ] || cp "$s" "$KC_HOSTILE_SEEDS/hostile-$c"
        check "fuzz seed hostile-$c is committed" test -s "$seeds/hostile-$c"
done
expect 0 "the audit trail verifies" audit verify
finish
