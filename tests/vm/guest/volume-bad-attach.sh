# SPDX-License-Identifier: LGPL-2.1-or-later
# Refusals of a good volume by `kmscrypt attach` (issue #4): each is one
# line on
# stderr and a non-zero exit, leaves no mapping and no kmscrypt key in the
# kernel, and the device unwritten: no sector written (the block device's
# write counter) and its first 64 KiB, where the LUKS2 metadata lives,
# byte-identical (kcvm_refused in lib.sh).  A context other than
# the expected one, a token of a KMS provider kms= does not allow, a
# device locked by another process for 20 s, a name
# held by another device, a device that vanishes
# while attach waits for its KMS (after the header is read), a disabled,
# pending-deletion and destroyed CMK (fake time); the volume's image file
# in place of a block device; and format of a read-only device.  Bad headers and tokens are in volume-bad.
# kcvm-programs: kmscrypt tests/cli/fake-time.so
. /kc/lib.sh

kcvm_kmscrypt_env
kmscrypt -q key create --alias alias/db || die "kmscrypt key create failed"
defer "dmsetup remove kcbad >/dev/null 2>&1; dmsetup remove kcbad-lower >/dev/null 2>&1; kcvm_mknodes"

kcvm_loop 20
good=$KCVM_LOOP good_file=$KCVM_LOOP_FILE
kmscrypt -q format "$good" --key alias/db --context db-id=db1,volume-id=vol-a || die "format failed"

# ---- the volume's image file itself: dm-crypt maps block devices only ----
# (an attach of the file once hung: libcryptsetup's load locks a file itself)
file_sum=$(kcvm_head_sum "$good_file") maps=$(kcvm_maps)
! timeout 60 kmscrypt attach "$good_file" --name kcbad >out 2>err || die "attach of an image file succeeded"
[ "$(wc -l <err)" = 1 ] || die "attach of an image file: $(wc -l <err) lines on stderr: $(cat err)"
grep -qF "is not a block device; attach a loop device of it" err || die "attach of an image file says: $(cat err)"
expect_eq "mappings after attaching an image file" "$(kcvm_maps)" "$maps"
kcvm_no_key kmscrypt:
expect_eq "header bytes of the image file" "$(kcvm_head_sum "$good_file")" "$file_sum"

# ---- the good volume, refused by context and name ----
good_sum=$(kcvm_head_sum "$good" 16384)
kcvm_attach_refused "context other than expected" "$good" "expected {" --expect-context db-id=db1,volume-id=vol-b

# A volumes entry that allows only another KMS provider than the token's (kms=): refused and audited.
printf 'kcbad %s db-id=db1,volume-id=vol-a kms=aws\n' "$good" >"$KCVM_DIR/volumes-kms"
records=$(wc -l <"$KMSCRYPT_AUDIT_LOG")
kcvm_refusal_begin "$good"
! KMSCRYPT_VOLUMES=$KCVM_DIR/volumes-kms kmscrypt attach kcbad >out 2>err || die "attach despite kms=aws"
kcvm_refused "token of a provider its kms= does not allow" "$good" "which this volume does not allow (kms=aws)"
tail -n "+$((records + 1))" "$KMSCRYPT_AUDIT_LOG" | grep -q '"operation":"Attach".*"result":"error".*kms=aws' ||
        die "the refusal by kms= is not in the audit log"

# Anyone who may read the device can lock it (flock): the attach waits 20 s
# for such a holder, not for ever, then fails, busy, leaving nothing.
flock --no-fork -s "$good" sleep 120 &
holder=$!
defer "kill $holder 2>/dev/null"
sleep 0.5
t0=$(date +%s)
kcvm_attach_refused "volume locked by another process" "$good" "is locked by another process (flock)"
expect_eq "seconds waited for the lock" "$(( $(date +%s) - t0 >= 19 && $(date +%s) - t0 <= 40 ))" 1
kill "$holder"
wait "$holder" 2>/dev/null || :
dmsetup create kcbad --table "0 8 error" || die "dmsetup create of an error device failed"
kcvm_refusal_begin "$good"
! kmscrypt attach "$good" --name kcbad >out 2>err || die "attach took a name held by another device"
kcvm_refused "name held by another device" "$good" "in use by another device"
expect_eq "target of kcbad after the refusal" "$(dmsetup table kcbad | cut -d' ' -f3)" error
dmsetup remove kcbad

# A device that vanishes while attach waits for the KMS, after the header is
# read: the test holds the keystore lock, which the local KMS takes on
# first use, and pulls the device (a linear mapping over the good volume)
# once attach waits on it.
sectors=$(blockdev --getsz "$good")
dmsetup create kcbad-lower --table "0 $sectors linear $good 0" || die "dmsetup create kcbad-lower failed"
kcvm_mknodes
kcvm_refusal_begin "$good"
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
_kcvm_maps=$(kcvm_maps)  # kcbad-lower stays (pulled), the refusal adds nothing
flock -u 9
exec 9>&-
wait "$attach_pid" && die "attach of a vanished device succeeded"
kcvm_refused "device vanished during attach" "$good" "kcbad-lower"
dmsetup remove kcbad-lower 2>/dev/null || true
kcvm_mknodes

# ---- format of a read-only device ----
kcvm_loop 20
ro_file=$KCVM_LOOP_FILE
ro=$(losetup --find --show --read-only "$ro_file") || die "losetup --read-only failed"
defer "losetup -d $ro"
kcvm_refusal_begin "$ro"
! kmscrypt format "$ro" --key alias/db --context db-id=db1,volume-id=vol-ro >out 2>err ||
        die "format of a read-only device succeeded"
kcvm_refused "format of a read-only device" "$ro" "read-only"


# ---- the CMK: disabled, pending deletion, destroyed ----
kmscrypt -q key disable alias/db || die "key disable failed"
kcvm_attach_refused "disabled CMK" "$good" "is disabled"
kmscrypt -q key enable alias/db || die "key enable failed"
kmscrypt -q key schedule-deletion alias/db --pending-window-in-days 7 || die "key schedule-deletion failed"
kcvm_attach_refused "CMK pending deletion" "$good" "pending deletion"
# Eight days later (time() only, through an LD_PRELOAD shim) the key is gone.
export LD_PRELOAD=/kc/bin/fake-time.so KC_TEST_TIME_OFFSET=$((8 * 86400))
kcvm_attach_refused "destroyed CMK" "$good" "has been destroyed"
unset LD_PRELOAD KC_TEST_TIME_OFFSET
expect_eq "first 16 MiB of the good volume after every refusal" "$(kcvm_head_sum "$good" 16384)" "$good_sum"
