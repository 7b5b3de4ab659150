# SPDX-License-Identifier: LGPL-2.1-or-later
#
# snapshot, backup and restore --context: copies are taken from the backing
# device while the volume is mounted, hold no plaintext, and a restored copy
# rebound to its own volume-id attaches with the original's data; a copy of
# /dev/mapper is refused, and so is rebinding an attached device (with the
# exit statuses of kmscrypt(8)).
# kcvm-programs: kmscrypt
. /kc/lib.sh

export KMSCRYPT_KEYSTORE=$KCVM_DIR/keystore KMSCRYPT_AUDIT_LOG=$KCVM_DIR/audit.log
CTX=db-id=db-copy,volume-id=vol-orig
MNT=$KCVM_DIR/mnt
mkdir -p "$MNT"

kcvm_loop 24
ORIG=$KCVM_LOOP
kcvm_loop 24
CLONE=$KCVM_LOOP
defer "umount $MNT 2>/dev/null; kmscrypt detach vol-orig >/dev/null 2>&1; kmscrypt detach vol-clone >/dev/null 2>&1; kcvm_mknodes"

kmscrypt key create --alias alias/pg >/dev/null || die "key create"
kmscrypt format "$ORIG" --key alias/pg --context "$CTX" >/dev/null || die "format"
kmscrypt attach "$ORIG" >/dev/null || die "attach"
kcvm_mknodes
mkfs.ext4 -q /dev/mapper/vol-orig || die "mkfs"
mount /dev/mapper/vol-orig "$MNT" || die "mount"
kcvm_pattern "$MNT/data" 1048576
md5=$(md5sum <"$MNT/data")

kmscrypt snapshot vol-orig "$KCVM_DIR/snap.img" || die "snapshot while mounted"
kmscrypt backup vol-orig "$KCVM_DIR/backup.img" || die "backup while mounted"
grep -qF "$KCVM_TAG" "$KCVM_DIR/snap.img" && die "plaintext in the snapshot"
grep -qF "$KCVM_TAG" "$KCVM_DIR/backup.img" && die "plaintext in the backup"
# Refused with the statuses kmscrypt(8) gives: a mapping holds plaintext (4), an attached device is busy (5).
rc=0
kmscrypt backup /dev/mapper/vol-orig "$KCVM_DIR/plain.img" 2>/dev/null || rc=$?
expect_eq "backup of the mapping: exit status" "$rc" 4
[ ! -s "$KCVM_DIR/plain.img" ] || die "a copy of the mapping was written"
rc=0
kmscrypt backup "$ORIG" "$KCVM_DIR/busy.img" 2>/dev/null || rc=$?
expect_eq "backup of the device of an attached volume: exit status" "$rc" 5
rc=0
kmscrypt rebind "$ORIG" --context volume-id=vol-x 2>/dev/null || rc=$?
expect_eq "rebind of an attached device: exit status" "$rc" 5
echo ok >"$MNT/after" && sync || die "the volume is not writable after the snapshot (not resumed?)"

umount "$MNT"
kmscrypt detach vol-orig >/dev/null
kcvm_mknodes

kmscrypt restore "$KCVM_DIR/backup.img" "$CLONE" --context volume-id=vol-clone || die "restore --context"
kmscrypt attach "$CLONE" --expect-context db-id=db-copy,volume-id=vol-clone >/dev/null || die "attach the rebound clone"
kcvm_mknodes
mount -o ro /dev/mapper/vol-clone "$MNT" || die "mount the clone"
expect_eq "clone data" "$(md5sum <"$MNT/data")" "$md5"
umount "$MNT"
kmscrypt detach vol-clone >/dev/null
kcvm_mknodes
# The original keeps its own identity; the clone's token no longer claims it.
kmscrypt attach "$CLONE" --expect-context "$CTX" 2>/dev/null && die "the clone still attaches as the original"
kmscrypt audit list | grep -q RebindVolume || die "no RebindVolume audit record"
kcvm_mknodes
