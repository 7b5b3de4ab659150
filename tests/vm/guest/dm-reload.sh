# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A table swap of dmsetup-helpers/ (kc_dm_replace_targets: how a
# reencryption ends, and how attach takes over after a killed one) does
# not freeze the file system on the mapping, so a busy database's dirty
# data is not forced out first.  ext4 on a linear mapping, with a long
# journal commit interval, holds a dirty file; kc-dm-smoke reload swaps the
# table for a copy of itself: no sector is written, the table is the same
# and the mapping is not left suspended.  Control: `dmsetup suspend`,
# which freezes, writes the file out.  The file reads back as written.
# kcvm-programs: tests/vm/kc-dm-smoke
. /kc/lib.sh

name=kcvm-reload
mnt=$KCVM_DIR/reload
kcvm_loop 32
dmsetup create "$name" --table "0 $(blockdev --getsz "$KCVM_LOOP") linear $KCVM_LOOP 0" ||
        die "dmsetup create $name"
defer "umount $mnt 2>/dev/null; dmsetup remove --force $name >/dev/null 2>&1; kcvm_mknodes"
kcvm_mknodes
# No lazy inode-table init: its background writes would count.
mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 "/dev/mapper/$name" || die "mkfs.ext4"
mkdir -p "$mnt"
mount -o commit=600 "/dev/mapper/$name" "$mnt" || die "mount /dev/mapper/$name"
node=$(kcvm_dm_node "$name")
table=$(dmsetup table "$name")

# Sectors written to the mapping so far, without the sync of kcvm_written.
written() {
        set -- $(cat "/sys/block/$node/stat")
        echo "$7"
}

sync
dd if=/dev/urandom of="$mnt/dirty" bs=64k count=64 2>/dev/null || die "cannot write $mnt/dirty"
sum=$(sha256sum <"$mnt/dirty")
before=$(written)
kc-dm-smoke reload "$name" || die "kc-dm-smoke reload $name failed"
expect_eq "sectors written during the swap" "$(written)" "$before"
expect_eq "table after the swap" "$(dmsetup table "$name")" "$table"
kc-dm-smoke info "$name" >info || die "kc-dm-smoke info $name failed"
expect_eq "suspended after the swap" "$(kv suspended info)" 0

dmsetup suspend "$name" && dmsetup resume "$name" || die "dmsetup suspend/resume $name failed"
[ "$(written)" -gt "$before" ] || die "a freezing suspend wrote nothing either: this test cannot tell"

umount "$mnt" || die "umount"
echo 3 >/proc/sys/vm/drop_caches
mount "/dev/mapper/$name" "$mnt" || die "mount again"
expect_eq "file after the swaps" "$(sha256sum <"$mnt/dirty")" "$sum"
