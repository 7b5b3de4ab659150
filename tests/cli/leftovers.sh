#!/bin/sh
# A command that fails on bad input leaves nothing behind.  Opening the KMS
# creates the keystore directory and the audit log (and its head), so every
# command that takes a device refuses a device (or header) that is not there
# before it opens the KMS: the same line and status as on a host whose
# keystore exists, and no keystore, log or head made for a typo.
. "$(dirname "$0")/lib.sh"

# gone NAME STATUS WANT ARGS...: on a host without keystore, log or head, refused with STATUS and the
# one line WANT; nothing created.
gone() {
        name=$1 want=$2 line=$3
        shift 3
        rm -rf "$KS" "$LOG" "$T/audit.head"
        expect "$want" "$name" "$@"
        check "$name: one line" one_error_line
        check "$name: says '$line'" grep -qxF -- "kmscrypt: $line" "$T/err"
        check "$name: no keystore, log or head made" test ! -e "$KS" -a ! -e "$LOG" -a ! -e "$T/audit.head"
}

D=$T/typo
CTX=db-id=db-1,volume-id=vol-1
printf 'secret\n' > "$T/pass"
: > "$T/image"
printf '# name device context\npgdata %s db-id=db-1,volume-id=pgdata\n' "$D" > "$T/volumes"
NOENT="No such file or directory"

# ---- a host without the keystore and audit directories (the report this test is for) ----
# The head in the keystore, where it is by default: opening the KMS makes the keystore directory for it.
unset KMSCRYPT_AUDIT_HEAD
"$KMSCRYPT" --keystore "$T/nonexist" --audit-log "$T/no-dir/audit.log" attach "$D" > "$T/out" 2> "$T/err"
rc=$?
check "no keystore or audit directory: attach of a missing device is not found (exit $rc)" test "$rc" = 3
check "no keystore or audit directory: says the device is missing, not the KMS" \
        grep -qxF "kmscrypt: cannot attach $D: device $D: $NOENT" "$T/err"
check "no keystore or audit directory: keystore directory not created" test ! -e "$T/nonexist"

# A KMS that cannot open (its audit log's directory is missing) takes back the keystore directory it made.
for args in "key list" "key create --alias alias/pg"; do
        "$KMSCRYPT" --keystore "$T/nonexist" --audit-log "$T/no-dir/audit.log" $args > "$T/out" 2> "$T/err"
        rc=$?
        check "no audit directory: $args is unavailable (exit $rc)" test "$rc" = 5
        check "no audit directory: $args names the audit log" \
                grep -qxF "kmscrypt: cannot open the KMS: cannot open audit log $T/no-dir/audit.log: $NOENT" "$T/err"
        check "no audit directory: $args leaves no keystore directory" test ! -e "$T/nonexist"
done
mkdir -m 700 "$T/existing"
"$KMSCRYPT" --keystore "$T/existing" --audit-log "$T/no-dir/audit.log" key list > "$T/out" 2> "$T/err"
check "no audit directory: a keystore directory that was there stays" test -d "$T/existing"
rmdir "$T/existing"
export KMSCRYPT_AUDIT_HEAD=$T/audit.head

# ---- every command that takes a device ----
gone "attach DEVICE" 3 "cannot attach $D: device $D: $NOENT" attach "$D"
gone "attach VOLUME whose device is missing" 3 "cannot attach pgdata: device $D: $NOENT" \
        attach pgdata --volumes "$T/volumes"
gone "attach --header missing" 3 "cannot attach $T/image: header $T/nohdr: $NOENT" \
        attach "$T/image" --header "$T/nohdr"
gone "format" 3 "format: device $D: $NOENT" format "$D" --key alias/pg --context "$CTX"
# A device with no room for data after the LUKS2 header (libcryptsetup's 16 MiB, or none with --header):
# status 5, and neither the device (which libcryptsetup would grow to 16 MiB) nor a header file written.
"$KMSCRYPT" format --help > "$T/out"
check "format --help says it refuses a device too small" grep -qF "Refuses a device too small for the LUKS2 header" "$T/out"
S=$T/small.img
for size in 16777216 1048576; do
        truncate -s "$size" "$S"
        gone "format of a $size-byte device" 5 \
                "format: device $S is $size bytes; it needs at least 16777728 (16777216 for the LUKS2 header, 512 for one sector of data)" \
                format "$S" --key alias/pg --context "$CTX"
        check "format of a $size-byte device: not grown" test "$(stat -c %s "$S")" = "$size"
        check "format of a $size-byte device: nothing written" cmp -s -n "$size" "$S" /dev/zero
        rm -f "$S"
done
truncate -s 16777728 "$S"
gone "format --sector-size 4096 of a device with one 512-byte sector of data" 5 \
        "format: device $S is 16777728 bytes; it needs at least 16781312 (16777216 for the LUKS2 header, 4096 for one sector of data)" \
        format "$S" --key alias/pg --context "$CTX" --sector-size 4096
: > "$S"
gone "format --header of an empty device" 5 \
        "format: device $S is 0 bytes; it needs at least 512 (one sector of data; the header is detached)" \
        format "$S" --header "$T/new.hdr" --key alias/pg --context "$CTX"
check "format --header of an empty device: no header file made" test ! -e "$T/new.hdr"
rm -f "$S"
# --sector-size below the logical block size (512 on a 4Kn disk): refused before the KMS makes (and audits) a key.
truncate -s 20M "$S"
if [ "$(id -u)" = 0 ] && [ -e /dev/loop-control ] && K4=$(losetup -b 4096 -f --show "$S" 2>/dev/null); then
        gone "format --sector-size 512 of a 4Kn device" 2 \
                "format: sector size 512 is below the 4096-byte logical block size of $K4" \
                format "$K4" --key alias/pg --context "$CTX" --sector-size 512
        check "format --sector-size 512 of a 4Kn device: nothing written" cmp -s -n 20971520 "$S" /dev/zero
        losetup -d "$K4"
else
        echo "ok - format --sector-size 512 of a 4Kn device: skipped, no loop device with 4096-byte sectors # SKIP"
fi
rm -f "$S"
gone "adopt" 3 "adopt: device $D: $NOENT" adopt "$D" --key alias/pg --context "$CTX" --passphrase-file "$T/pass"
gone "adopt --header missing" 3 "adopt: header $T/nohdr: $NOENT" \
        adopt "$T/image" --header "$T/nohdr" --key alias/pg --context "$CTX" --passphrase-file "$T/pass"
gone "rebind" 3 "rebind: device $D: $NOENT" rebind "$D" --context volume-id=vol-2
gone "reencrypt DEVICE" 3 "cannot reencrypt $D: device $D: $NOENT" reencrypt "$D"
gone "reencrypt VOLUME whose device is missing" 3 "cannot reencrypt pgdata: device $D: $NOENT" \
        reencrypt pgdata --volumes "$T/volumes"
gone "rewrap DEVICE" 3 "$D: cannot rewrap: device $D: $NOENT" rewrap "$D"
gone "rewrap --header missing" 3 "$T/image: cannot rewrap: header $T/nohdr: $NOENT" \
        rewrap "$T/image" --header "$T/nohdr"
# --all with a DEVICE that is not there: that DEVICE was asked for, not a volume found missing (a warning).
gone "rewrap --all DEVICE" 3 "$D: cannot rewrap: device $D: $NOENT" rewrap --all "$D" --volumes "$T/volumes"
gone "backup" 3 "backup: device $D: $NOENT" backup "$D" "$T/backup"
check "backup: no backup file made" test ! -e "$T/backup"
gone "key usage KEY DEVICE" 3 "$D: cannot read: device $D: $NOENT" key usage alias/pg "$D" \
        --volumes "$T/volumes"
# key rotate reads no --volumes: KMSCRYPT_VOLUMES.
export KMSCRYPT_VOLUMES=$T/volumes
gone "key rotate --rewrap DEVICE" 3 "$D: cannot rewrap: device $D: $NOENT" key rotate alias/pg --rewrap "$D"

# ---- a device that is there, but that the command refuses from its header alone ----
# Opening the KMS waits until the header shows a volume to work on: no keystore, log or head for these either.
if command -v cryptsetup >/dev/null; then
        P=$T/plain.img L2=$T/luks2.img L1=$T/luks1.img KC=$T/kc.img
        truncate -s 1M "$P"
        truncate -s 24M "$L2" "$KC"
        truncate -s 8M "$L1"
        cryptsetup luksFormat --type luks2 --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
                --key-file "$T/pass" "$L2"
        # A kmscrypt volume, made under a keystore of its own.
        other() { KMSCRYPT_AUDIT_HEAD=$T/other.head "$KMSCRYPT" --keystore "$T/other" --audit-log "$T/other.log" "$@"; }
        other -q key create --alias alias/pg && other -q format "$KC" --key alias/pg --context "$CTX"
        check "a kmscrypt volume image to refuse" test -s "$T/other.log"
        NOT_LUKS="is not a LUKS2 device (no valid LUKS header)"
        printf 'plain %s db-id=db-1,volume-id=plain\n' "$P" > "$T/volumes.plain"

        gone "attach, not LUKS2" 5 "cannot attach $P: $P $NOT_LUKS" attach "$P"
        gone "attach, LUKS2 without a kmscrypt token" 3 "cannot attach $L2: $L2 has no kmscrypt token" attach "$L2"
        gone "attach --header, not LUKS2" 5 "cannot attach $L2: $P $NOT_LUKS" attach "$L2" --header "$P"
        gone "attach VOLUME, not LUKS2" 5 "cannot attach plain: $P $NOT_LUKS" attach plain --volumes "$T/volumes.plain"
        gone "attach of a kmscrypt image file" 1 \
                "cannot attach $KC: $KC is not a block device; attach a loop device of it (losetup --find --show $KC)" \
                attach "$KC"
        gone "attach -q --all, not LUKS2" 5 "plain: $P $NOT_LUKS" -q attach --all --volumes "$T/volumes.plain"
        gone "format over LUKS2" 1 "format: $L2 carries a crypto_LUKS signature (crypto); --force destroys it" \
                format "$L2" --key alias/pg --context "$CTX"
        gone "format, --header over LUKS2" 1 "format: $L2 carries a crypto_LUKS signature (crypto); --force destroys it" \
                format "$P" --header "$L2" --key alias/pg --context "$CTX"
        gone "adopt, not LUKS2" 5 "adopt: $P $NOT_LUKS" \
                adopt "$P" --key alias/pg --context "$CTX" --passphrase-file "$T/pass"
        gone "adopt of a kmscrypt volume" 1 "adopt: $KC already has a kmscrypt token" \
                adopt "$KC" --key alias/pg --context "$CTX" --passphrase-file "$T/pass"
        gone "rewrap, not LUKS2" 5 "$P: cannot rewrap: $P $NOT_LUKS" rewrap "$P"
        gone "rewrap, no kmscrypt token" 3 "$L2: cannot rewrap: $L2 has no kmscrypt token" rewrap "$L2"
        gone "reencrypt, not LUKS2" 5 "cannot reencrypt $P: $P $NOT_LUKS" reencrypt "$P"
        gone "reencrypt, no kmscrypt token" 3 "cannot reencrypt $L2: $L2 has no kmscrypt token" reencrypt "$L2"
        gone "rebind, no kmscrypt token" 3 "rebind: $L2 has no kmscrypt token" rebind "$L2" --context volume-id=vol-2
        if cryptsetup luksFormat --type luks1 --batch-mode --pbkdf-force-iterations 1000 \
                --key-file "$T/pass" "$L1" >/dev/null 2>&1; then
                LUKS1="is LUKS1; kmscrypt needs LUKS2 (see cryptsetup convert)"
                gone "attach, LUKS1" 5 "cannot attach $L1: $L1 $LUKS1" attach "$L1"
                gone "adopt, LUKS1" 5 "adopt: $L1 $LUKS1" \
                        adopt "$L1" --key alias/pg --context "$CTX" --passphrase-file "$T/pass"
                gone "rewrap, LUKS1" 5 "$L1: cannot rewrap: $L1 $LUKS1" rewrap "$L1"
        else
                echo "ok - LUKS1: skipped, cryptsetup cannot make one # SKIP"
        fi
        if mkfs.ext4 -q -F "$P" >/dev/null 2>&1; then
                gone "format over a file system" 1 "format: $P carries a ext4 signature (filesystem); --force destroys it" \
                        format "$P" --key alias/pg --context "$CTX"
        else
                echo "ok - format over a file system: skipped, no mkfs.ext4 # SKIP"
        fi
        RO=
        if [ "$(id -u)" = 0 ] && [ -e /dev/loop-control ] && RO=$(losetup -r -f --show "$L2" 2>/dev/null); then
                gone "format of a read-only device" 5 "format: device $RO is a read-only block device" \
                        format "$RO" --key alias/pg --context "$CTX" --force
                losetup -d "$RO"
        else
                echo "ok - format of a read-only device: skipped, no read-only loop device # SKIP"
        fi
else
        echo "ok - headers refused: skipped, no cryptsetup to make a LUKS2 image # SKIP"
fi

# ---- with a keystore: a DEVICE named is one asked for, not a volume found missing ----
expect 0 "key create" key create --alias alias/pg
lines=$(audit_lines)
export KMSCRYPT_VOLUMES=$T/empty.conf
expect 3 "key usage KEY DEVICE, DEVICE missing" key usage alias/pg "$D"
check "key usage: one line naming it" grep -qxF "kmscrypt: $D: cannot read: device $D: $NOENT" "$T/err"
check "key usage: nothing on stdout" test ! -s "$T/out"
# The rotation must not come before a failure that the DEVICE's check would have told.
expect 3 "key rotate --rewrap DEVICE, DEVICE missing" key rotate alias/pg --rewrap "$D"
check "key rotate --rewrap: one line naming it" grep -qxF "kmscrypt: $D: cannot rewrap: device $D: $NOENT" "$T/err"
check "key rotate --rewrap: nothing audited" test "$(audit_lines)" = "$lines"
kc key describe alias/pg --json
json_is 'j["KeyMetadata"]["KeyVersion"]' 1
# A volume found missing stays a warning: key usage lists it apart, status 0.
expect 0 "key usage, a configured volume missing" key usage alias/pg --volumes "$T/volumes"
check "key usage: lists it apart" grep -qF "unknown: pgdata ($D)" "$T/out"
# Why, on the next line, indented under it: not labelled "unknown:" a second time.
check "key usage: why it is unreadable, under it" \
        sh -c "grep -A1 -xF '  unknown: pgdata ($D)' '$T/out' | tail -n1 | grep -qxF '    not readable: device $D: $NOENT'"
unset KMSCRYPT_VOLUMES

finish
