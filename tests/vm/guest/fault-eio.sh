# SPDX-License-Identifier: LGPL-2.1-or-later
#
# EIO under the audit log and the keystore (issue #8): both live on ext4
# over a mapping whose table becomes a dm error target (reads and writes
# fail), then dm-flakey error_writes (writes fail).  attach and key rotate
# fail closed, with one line on stderr and a non-zero exit, no mapping and
# no key in the kernel.  With the table linear again (unmounted and
# mounted across) the audit chain verifies, no temp file is left, the
# keystore's key still unwraps the volume, and its data checksums as written.
# kcvm-programs: kmscrypt
# kcvm-modules: dm-flakey
. /kc/lib.sh

VOL=vol-eio
kcvm_loop 16
fsdev=$KCVM_LOOP
fssz=$(blockdev --getsz "$fsdev")
dmsetup create kcfs --table "0 $fssz linear $fsdev 0" || die "dmsetup create kcfs"
defer "umount $KCVM_DIR/eio 2>/dev/null; dmsetup remove --force kcfs; kcvm_mknodes"
kcvm_mknodes
mkfs.ext4 -q /dev/mapper/kcfs || die "mkfs.ext4"
mkdir -p "$KCVM_DIR/eio"
mount /dev/mapper/kcfs "$KCVM_DIR/eio" || die "mount kcfs"
kcvm_kmscrypt_env
export KMSCRYPT_KEYSTORE="$KCVM_DIR/eio/keystore" KMSCRYPT_AUDIT_LOG="$KCVM_DIR/eio/audit.log" \
        KMSCRYPT_AUDIT_HEAD="$KCVM_DIR/eio/audit.head"

kmscrypt -q key create --alias alias/a || die "key create"
kcvm_loop 24
dev=$KCVM_LOOP
defer "dmsetup remove --force $VOL >/dev/null 2>&1; kcvm_mknodes"
kmscrypt -q format "$dev" --key alias/a --context db-id=db-eio,volume-id=$VOL || die "format"
kcvm_seed "$dev" "$VOL"
sync

kcfs_table() {
        dmsetup suspend kcfs && dmsetup reload kcfs --table "$1" && dmsetup resume kcfs ||
                die "cannot swap kcfs to $1"
}

for t in "0 $fssz error" "0 $fssz flakey $fsdev 0 0 3600 1 error_writes"; do
        what="keystore and audit log on a disk that fails with EIO (${t#* * })"
        kcfs_table "$t"
        kcvm_drop_caches
        kcvm_fails "attach, $what" kmscrypt attach "$dev"
        kcvm_fails "key rotate, $what" kmscrypt key rotate alias/a
        umount "$KCVM_DIR/eio" || die "cannot unmount the failed file system"
        kcfs_table "0 $fssz linear $fsdev 0"
        mount /dev/mapper/kcfs "$KCVM_DIR/eio" || die "mount kcfs after the fault"
        kcvm_intact "$what, then fixed" "$dev" "$VOL"
done
