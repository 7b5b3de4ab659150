# SPDX-License-Identifier: LGPL-2.1-or-later
#
# snapshot, backup and restore --context: copies are taken from the backing
# device while the volume is mounted, hold no plaintext, and a restored copy
# rebound to its own volume-id attaches with the original's data; a copy of
# /dev/mapper is refused, and so is rebinding an attached device (with the
# exit statuses of kmscrypt(8)).  A snapshot onto the volume itself is
# refused before it suspends anything; one stopped by SIGTERM while it
# copies resumes the volume first; a device another mapping holds is not
# backed up; restore does not create a missing /dev path as a file.  A
# detached-header volume is backed up with its header, and only so.
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

# DEST on the volume it suspends would wait for ever: refused before the suspend.
rc=0
timeout 60 kmscrypt snapshot vol-orig "$MNT/self.img" 2>err || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || die "snapshot onto the volume itself: exit status $rc"
grep -q "is on vol-orig itself" err || die "snapshot onto the volume itself says: $(cat err)"
[ ! -e "$MNT/self.img" ] || die "snapshot onto the volume itself left a file"

# Stopped while it copies (SIGTERM once the volume is suspended; SIGINT is
# ignored in a background job), a snapshot stops the copy and resumes the
# volume before the signal ends it; no copy is left.
kcvm_loop 256
BIG=$KCVM_LOOP
kmscrypt format "$BIG" --key alias/pg --context db-id=db-copy,volume-id=vol-big >/dev/null || die "format vol-big"
kmscrypt attach "$BIG" >/dev/null || die "attach vol-big"
defer "kmscrypt detach vol-big >/dev/null 2>&1"
kcvm_mknodes
suspended() { dmsetup info -c --noheadings -o attr "$1" | cut -c3; }
kmscrypt snapshot vol-big "$KCVM_DIR/int.img" 2>/dev/null &
p=$!
i=0
until [ "$(suspended vol-big)" = s ]; do
        i=$((i + 1))
        [ "$i" -lt 500 ] && kill -0 "$p" 2>/dev/null || die "the snapshot of vol-big was not seen suspended"
        sleep 0.01
done
kill -TERM "$p"
rc=0
wait "$p" || rc=$?
expect_eq "exit status of the stopped snapshot (SIGTERM)" "$rc" 143
expect_eq "vol-big suspended after the interrupted snapshot" "$(suspended vol-big)" "-"
[ ! -e "$KCVM_DIR/int.img" ] || die "the interrupted snapshot left its copy"
[ -z "$(ls "$KCVM_DIR" | grep '\.int\.img\.tmp-')" ] || die "the interrupted snapshot left its temporary file"
kmscrypt detach vol-big >/dev/null || die "detach vol-big"
kcvm_mknodes

umount "$MNT"
kmscrypt detach vol-orig >/dev/null
kcvm_mknodes

# Held by another tool (here a linear mapping over it), a device is not backed up: the copy would be torn.
dmsetup create kcvm-holder --table "0 $(blockdev --getsz "$ORIG") linear $ORIG 0" || die "dmsetup create kcvm-holder"
rc=0
kmscrypt backup "$ORIG" "$KCVM_DIR/held.img" 2>err || rc=$?
dmsetup remove kcvm-holder || die "dmsetup remove kcvm-holder"
kcvm_mknodes
expect_eq "backup of a device another mapping holds: exit status" "$rc" 5
grep -q "is in use by dm-" err || die "backup of a held device says: $(cat err)"
[ ! -e "$KCVM_DIR/held.img" ] || die "backup of a held device wrote a file"
# A mistyped device is not created as a file in /dev.
! kmscrypt restore "$KCVM_DIR/backup.img" /dev/kcvm-nosuch 2>err || die "restore to a missing device succeeded"
grep -q "/dev/kcvm-nosuch does not exist" err || die "restore to a missing device says: $(cat err)"
[ ! -e /dev/kcvm-nosuch ] || die "restore created /dev/kcvm-nosuch"

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

# A detached-header volume, attached and mounted: its data device alone is
# not a backup (status 4, no file); with --header, snapshot and backup write
# FILE and FILE.header, no plaintext in either, and restore --header gives a
# pair that attaches with the same data.
kcvm_loop 24
DDATA=$KCVM_LOOP
kcvm_loop 24
DCOPY=$KCVM_LOOP
HDR=$KCVM_DIR/detached.hdr
truncate -s 16M "$HDR"
kmscrypt format "$DDATA" --header "$HDR" --key alias/pg --context db-id=db-copy,volume-id=vol-det >/dev/null ||
        die "format with a detached header"
kmscrypt attach "$DDATA" --header "$HDR" --name vol-det >/dev/null || die "attach with a detached header"
defer "umount $MNT 2>/dev/null; kmscrypt detach vol-det >/dev/null 2>&1; kmscrypt detach vol-detcopy >/dev/null 2>&1"
kcvm_mknodes
mkfs.ext4 -q /dev/mapper/vol-det || die "mkfs vol-det"
mount /dev/mapper/vol-det "$MNT" || die "mount vol-det"
kcvm_pattern "$MNT/data" 1048576
md5=$(md5sum <"$MNT/data")
rc=0
kmscrypt backup vol-det "$KCVM_DIR/det.img" 2>err || rc=$?
expect_eq "backup of a detached-header volume without --header: exit status" "$rc" 4
grep -q -- "--header" err || die "backup without --header says: $(cat err)"
[ ! -e "$KCVM_DIR/det.img" ] || die "backup without --header wrote a file"
kmscrypt snapshot vol-det "$KCVM_DIR/det-snap.img" --header "$HDR" >/dev/null || die "snapshot --header while mounted"
kmscrypt backup vol-det "$KCVM_DIR/det.img" --header "$HDR" >/dev/null || die "backup --header while mounted"
for f in det-snap.img det-snap.img.header det.img det.img.header; do
        [ -s "$KCVM_DIR/$f" ] || die "no $f"
        grep -qF "$KCVM_TAG" "$KCVM_DIR/$f" && die "plaintext in $f"
done
umount "$MNT"
kmscrypt restore "$KCVM_DIR/det.img" "$DCOPY" --header "$KCVM_DIR/detcopy.hdr" || die "restore --header"
cmp -s "$HDR" "$KCVM_DIR/detcopy.hdr" || die "the restored header differs from the original"
kmscrypt detach vol-det >/dev/null || die "detach vol-det"
kcvm_mknodes
kmscrypt attach "$DCOPY" --header "$KCVM_DIR/detcopy.hdr" --name vol-detcopy >/dev/null || die "attach the restored pair"
kcvm_mknodes
mount -o ro /dev/mapper/vol-detcopy "$MNT" || die "mount the restored pair"
expect_eq "restored detached-header data" "$(md5sum <"$MNT/data")" "$md5"
umount "$MNT"
kmscrypt detach vol-detcopy >/dev/null
kcvm_mknodes
