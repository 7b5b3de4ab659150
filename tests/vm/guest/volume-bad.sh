# SPDX-License-Identifier: LGPL-2.1-or-later
# Bad input to `kmscrypt attach` (issue #4): each refusal is one line on
# stderr and a non-zero exit, leaves no mapping and no kmscrypt key in the
# kernel, and the device unwritten: no sector written (the loop device's
# write counter) and its first 64 KiB, where the LUKS2 metadata lives,
# byte-identical; the good volume's first 16 MiB are also compared across
# every case run on it (a full hash per case costs seconds here).  Not
# LUKS2, LUKS1, no token, broken tokens (imported with stock cryptsetup),
# a context other than the expected one, a token copied from another
# volume, an edited context, a name held by another device, a device that
# vanishes while attach waits for its KMS, a disabled, pending-deletion
# and destroyed CMK; and format of a read-only device.
# kcvm-programs: kmscrypt tests/cli/fake-time.so
. /kc/lib.sh

export KMSCRYPT_CONFIG="$KCVM_DIR/empty.conf" KMSCRYPT_KEYSTORE="$KCVM_DIR/keystore" \
        KMSCRYPT_AUDIT_LOG="$KCVM_DIR/audit.log" KMSCRYPT_AUDIT_HEAD="$KCVM_DIR/audit.head"
: >"$KMSCRYPT_CONFIG"
kmscrypt -q key create --alias alias/db || die "kmscrypt key create failed"
kmscrypt -q key create --alias alias/db2 || die "kmscrypt key create failed"
defer "dmsetup remove kcbad >/dev/null 2>&1; dmsetup remove kcbad-lower >/dev/null 2>&1; kcvm_mknodes"

# hdr DEVICE [KIB]: sha256 of the first KIB (64) KiB.
hdr() { dd if="$1" bs=64k count=$((${2:-64} / 64)) 2>/dev/null | sha256sum | cut -d' ' -f1; }
# written LOOP: sectors written to a loop device so far, once flushed.
written() {
        sync
        set -- $(cat "/sys/block/${1#/dev/}/stat")
        echo "$7"
}
# maps: names of every mapping, from sysfs (quicker than dmsetup here).
maps() { cat /sys/block/dm-*/dm/name 2>/dev/null | LC_ALL=C sort | tr '\n' ' '; }

# bad WHAT DEVICE WANT [ATTACH-OPTION...]: `kmscrypt attach DEVICE --name
# kcbad` refused with one line containing WANT, and nothing changed.
bad() {
        what=$1 bdev=$2 want=$3
        shift 3
        before=$(hdr "$bdev") maps_before=$(maps) written_before=$(written "$bdev")
        ! kmscrypt attach "$bdev" --name kcbad "$@" >out 2>err || die "$what: attach succeeded"
        bad_check "$what" "$bdev" "$want"
}

# bad_check WHAT LOOP WANT: what bad() checks after the refusal.
bad_check() {
        [ "$(wc -l <err)" = 1 ] || die "$1: $(wc -l <err) lines on stderr: $(cat err)"
        grep -qF -- "$3" err || die "$1: says '$(cat err)', expected '$3'"
        [ ! -s out ] || die "$1: stdout has: $(cat out)"
        expect_eq "$1: mappings" "$(maps)" "$maps_before"
        [ ! -e /dev/mapper/kcbad ] || die "$1: /dev/mapper/kcbad left behind"
        kcvm_no_key kmscrypt:
        expect_eq "$1: sectors written" "$(written "$2")" "$written_before"
        expect_eq "$1: header bytes" "$(hdr "$2")" "$before"
        echo "refused as it should, $1: $(cat err)"
}

# The good volume, and a copy of it whose token the cases below replace.
kcvm_loop 20
good=$KCVM_LOOP
kmscrypt -q format "$good" --key alias/db --context db-id=db1,volume-id=vol-a || die "format failed"
kcvm_loop 20
scratch=$KCVM_LOOP
dd if="$good" of="$scratch" bs=1M 2>/dev/null || die "copying $good failed"
cryptsetup token export --token-id 0 "$good" >token.json || die "stock token export failed"
grep -q '^{"type":"kmscrypt",' token.json || die "unexpected token JSON: $(cat token.json)"

# ---- not LUKS2, LUKS1, LUKS2 without token, a token from another volume ----
kcvm_loop 20
other=$KCVM_LOOP
bad "not LUKS" "$other" "is not a LUKS2 device"
cryptsetup luksFormat -q --type luks1 --pbkdf-force-iterations 1000 --key-file token.json "$other" ||
        die "stock luksFormat --type luks1 failed"
bad "LUKS1" "$other" "is LUKS1"
cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file token.json "$other" ||
        die "stock luksFormat --type luks2 failed"
bad "LUKS2 without a kmscrypt token" "$other" "has no kmscrypt token"
cryptsetup token import --json-file token.json "$other" || die "stock token import failed"
bad "token copied from another volume" "$other" "does not match the LUKS2 header"

# ---- broken tokens ----
# token CASE SED-SCRIPT: the good token edited, in place of the scratch copy's token.
token() {
        sed "$2" token.json >"token-$1.json"
        cryptsetup token remove --token-id 0 "$scratch" 2>/dev/null
        cryptsetup token import --token-id 0 --json-file "token-$1.json" "$scratch" ||
                die "stock token import of the $1 token failed: $(cat "token-$1.json")"
}
token malformed 's/"wrapped_key":"[^"]*"/"wrapped_key":"not base64!"/'
bad "token wrapped_key not base64" "$scratch" "wrapped_key is not valid base64"
pad=$(head -c 9000 /dev/zero | tr '\0' x)
token oversized "s/}\$/,\"pad\":\"$pad\"}/"
bad "token JSON over 8 KiB" "$scratch" "larger than 8192 bytes"
token missing 's/"key_version":1,//'
bad "token without key_version" "$scratch" 'token has no "key_version"'
token type 's/"key_version":1/"key_version":"1"/'
bad "token key_version a string" "$scratch" '"key_version" is not'
token version 's/"kmscrypt_version":1/"kmscrypt_version":2/'
bad "token of an unknown version" "$scratch" "unsupported kmscrypt token version 2"
token context 's/"volume-id":"vol-a"/"volume-id":"vol-b"/'
bad "context edited in the token" "$scratch" "does not match this key or encryption context" \
        --expect-context db-id=db1,volume-id=vol-b

# ---- the good volume, refused by context and name ----
good_sum=$(hdr "$good" 16384)
bad "context other than expected" "$good" "expected {" --expect-context db-id=db1,volume-id=vol-b
dmsetup create kcbad --table "0 8 error" || die "dmsetup create of an error device failed"
maps_before=$(maps) before=$(hdr "$good") written_before=$(written "$good")
! kmscrypt attach "$good" --name kcbad >out 2>err || die "attach took a name held by another device"
bad_check "name held by another device" "$good" "in use by another device"
expect_eq "target of kcbad after the refusal" "$(dmsetup table kcbad | cut -d' ' -f3)" error
dmsetup remove kcbad

# A device that vanishes while attach waits for the KMS, after the header is
# read: the test holds the keystore lock, which the local KMS takes on
# first use, and pulls the device (a linear mapping over the scratch copy)
# once attach waits on it.
token good s/^//
sectors=$(blockdev --getsz "$scratch")
dmsetup create kcbad-lower --table "0 $sectors linear $scratch 0" || die "dmsetup create kcbad-lower failed"
kcvm_mknodes
before=$(hdr "$scratch") written_before=$(written "$scratch")
exec 9<>"$KMSCRYPT_KEYSTORE/.lock"
flock -x 9
# Not fd 9: a process that shares the lock's open file shares the lock.
kmscrypt attach /dev/mapper/kcbad-lower --name kcbad >out 2>err 9>&- &
attach_pid=$!
i=0
until grep -q "^[0-9]*: -> FLOCK .* $attach_pid " /proc/locks; do
        i=$((i + 1))
        [ "$i" -lt 300 ] || die "attach never waited for the keystore lock: $(cat err)"
        kill -0 "$attach_pid" 2>/dev/null || die "attach ended before it waited for the keystore lock: $(cat err)"
        sleep 0.1
done
echo "attach waits for the KMS; open count of kcbad-lower: $(dmsetup info -c --noheadings -o open kcbad-lower); fds: $(ls -l /proc/$attach_pid/fd | grep -c 'dm-\|mapper')"
if dmsetup remove kcbad-lower 2>/dev/null; then
        echo "kcbad-lower removed"
else
        # Held open: what a hot-unplugged disk leaves, no sectors that read.
        dmsetup suspend kcbad-lower && dmsetup reload kcbad-lower --table "0 8 error" &&
                dmsetup resume kcbad-lower || die "cannot pull kcbad-lower"
        echo "kcbad-lower is now 8 error sectors"
fi
maps_before=$(maps)
flock -u 9
exec 9>&-
wait "$attach_pid" && die "attach of a vanished device succeeded"
bad_check "device vanished during attach" "$scratch" "kcbad-lower"
dmsetup remove kcbad-lower 2>/dev/null || true
kcvm_mknodes

# ---- the CMK: disabled, pending deletion, destroyed ----
kmscrypt -q key disable alias/db || die "key disable failed"
bad "disabled CMK" "$good" "is disabled"
kmscrypt -q key enable alias/db || die "key enable failed"
kmscrypt -q key schedule-deletion alias/db --pending-window-in-days 7 || die "key schedule-deletion failed"
bad "CMK pending deletion" "$good" "pending deletion"
# Eight days later (time() only, through an LD_PRELOAD shim) the key is gone.
export LD_PRELOAD=/kc/bin/fake-time.so KC_TEST_TIME_OFFSET=$((8 * 86400))
bad "destroyed CMK" "$good" "has been destroyed"
unset LD_PRELOAD KC_TEST_TIME_OFFSET
expect_eq "first 16 MiB of the good volume after every refusal" "$(hdr "$good" 16384)" "$good_sum"

# ---- format of a read-only device ----
kcvm_loop 20
ro_file=$KCVM_LOOP_FILE
ro=$(losetup --find --show --read-only "$ro_file") || die "losetup --read-only failed"
defer "losetup -d $ro"
before=$(hdr "$ro") written_before=$(written "$ro")
! kmscrypt format "$ro" --key alias/db2 --context db-id=db1,volume-id=vol-ro >out 2>err ||
        die "format of a read-only device succeeded"
[ "$(wc -l <err)" = 1 ] || die "format of a read-only device: $(wc -l <err) lines: $(cat err)"
grep -q "read-only" err || die "format of a read-only device says: $(cat err)"
expect_eq "sectors written to the read-only device" "$(written "$ro")" "$written_before"
expect_eq "read-only device after format" "$(hdr "$ro")" "$before"
echo "refused as it should, format of a read-only device: $(cat err)"
