# SPDX-License-Identifier: LGPL-2.1-or-later
# A volume on a logical volume that gets a snapshot, built with dmsetup the
# way LVM builds it (the LV's table moves to LV-real, the LV becomes a
# snapshot-origin of it, the snapshot reads LV-real through its COW): the
# origin, LV-real and the snapshot all carry the volume's LUKS UUID.
# LV-real is a part of the other two and no candidate, as LVM's udev rules
# make it; but the origin and the snapshot are two devices, so UUID= names
# no one: attach refuses it with one line, and changes nothing; the origin
# by its path attaches and reads its data; once the snapshot is gone, UUID=
# attaches again.  And a volume under a multipath-like map (the whole disk
# mapped at offset 0) is the map's by UUID=, not the disk's as well.
# Without udev the devices are found by a scan of every block device (with
# udev, by its link's claimants: tests/system).
# kcvm-programs: kmscrypt
# kcvm-modules: dm-snapshot
. /kc/lib.sh

kcvm_kmscrypt_env
kmscrypt -q key create --alias alias/db || die "kmscrypt key create failed"

# The "physical volume": the LV starts 1 MiB in, as LVM's first extent does,
# so that the disk itself carries no LUKS header.
kcvm_loop 24
pv=$KCVM_LOOP
lv_sectors=$((20 * 2048))
defer "for m in kcdb-vol kcdb-snap kcdb-lv kcdb-lv-real; do dmsetup remove \$m >/dev/null 2>&1; done; kcvm_mknodes"
dmsetup create kcdb-lv --table "0 $lv_sectors linear $pv 2048" || die "dmsetup create kcdb-lv failed"
kcvm_mknodes
lv=/dev/mapper/kcdb-lv
kmscrypt -q format "$lv" --key alias/db --context db-id=db1,volume-id=vol-lv || die "format of the LV failed"
uuid=$(cryptsetup luksUUID "$lv") || die "cryptsetup luksUUID failed"

# One device carries the UUID: it attaches by it.
kmscrypt -q attach "UUID=$uuid" --name kcdb-vol || die "attach by UUID= of the LV alone failed"
kcvm_mknodes
kcvm_pattern plain 1048576
dd if=plain of=/dev/mapper/kcdb-vol bs=64k conv=fsync 2>/dev/null || die "write through kcdb-vol failed"
want=$(sha256sum <plain | cut -d' ' -f1)
kmscrypt -q detach kcdb-vol || die "detach failed"
kcvm_mknodes

# The snapshot, as lvcreate --snapshot makes it.
kcvm_loop 8
cow=$KCVM_LOOP
dmsetup create kcdb-lv-real --table "$(dmsetup table kcdb-lv)" || die "dmsetup create kcdb-lv-real failed"
kcvm_mknodes
dmsetup suspend kcdb-lv || die "dmsetup suspend kcdb-lv failed"
dmsetup load kcdb-lv --table "0 $lv_sectors snapshot-origin /dev/mapper/kcdb-lv-real" ||
        die "loading the snapshot-origin table failed"
dmsetup create kcdb-snap --table "0 $lv_sectors snapshot /dev/mapper/kcdb-lv-real $cow P 8" ||
        die "dmsetup create kcdb-snap failed"
dmsetup resume kcdb-lv || die "dmsetup resume kcdb-lv failed"
kcvm_mknodes
expect_eq "LUKS UUID of the snapshot" "$(cryptsetup luksUUID /dev/mapper/kcdb-snap)" "$uuid"

# UUID= is the origin's and the snapshot's now: refused, naming both, nothing changed.
lv_dm=/dev/$(dmsetup info -c --noheadings -o blkdevname kcdb-lv)
kcvm_refusal_begin "$lv_dm"
! kmscrypt attach "UUID=$uuid" --name kcdb-vol >out 2>err || die "attach by UUID= succeeded beside a snapshot"
kcvm_refused "attach by UUID= beside a snapshot" "$lv_dm" "2 devices carry UUID=$uuid"
grep -q 'cryptsetup luksUUID' err || die "the refusal says nothing of what to do: $(cat err)"
# Each by the name it was given (/dev/mapper/NAME), not as /dev/dm-N.
grep -Eq '\((/dev/mapper/kcdb-lv, /dev/mapper/kcdb-snap|/dev/mapper/kcdb-snap, /dev/mapper/kcdb-lv)\)' err ||
        die "the refusal does not name the origin and the snapshot by their /dev/mapper names: $(cat err)"

# kmscrypt config check says the same of a volume configured by UUID=.
printf 'kcdb-vol UUID=%s db-id=db1,volume-id=vol-lv\n' "$uuid" >volumes
! kmscrypt config check --volumes volumes >out 2>&1 || die "config check passed a UUID= two devices carry"
grep -q '2 devices carry UUID=' out || die "config check says: $(cat out)"

# By its path the origin attaches, and reads what was written before the snapshot.
kmscrypt -q attach "$lv" --name kcdb-vol || die "attach of the origin by its path failed"
kcvm_mknodes
kcvm_drop_caches
expect_eq "plaintext through the origin" "$(head -c 1048576 /dev/mapper/kcdb-vol | sha256sum | cut -d' ' -f1)" "$want"
kmscrypt status kcdb-vol >out || die "kmscrypt status kcdb-vol failed"
grep -Eq '^ *device: +/dev/mapper/kcdb-lv$' out || die "status does not name the origin by its path: $(cat out)"
kmscrypt -q detach kcdb-vol || die "detach of the origin failed"
kcvm_mknodes

# The snapshot removed (lvremove: the origin's table back, LV-real gone): UUID= is the LV's again.
dmsetup remove kcdb-snap || die "dmsetup remove kcdb-snap failed"
dmsetup suspend kcdb-lv || die "dmsetup suspend kcdb-lv failed"
dmsetup load kcdb-lv --table "$(dmsetup table kcdb-lv-real)" || die "restoring the LV's table failed"
dmsetup resume kcdb-lv || die "dmsetup resume kcdb-lv failed"
dmsetup remove kcdb-lv-real || die "dmsetup remove kcdb-lv-real failed"
kcvm_mknodes
kmscrypt -q attach "UUID=$uuid" --name kcdb-vol || die "attach by UUID= after the snapshot's removal failed"
kcvm_mknodes
set -- $(dmsetup table kcdb-vol)
expect_eq "kcdb-vol reads from" "$7" "$(cat "/sys/block/${lv_dm#/dev/}/dev")"
kmscrypt -q detach kcdb-vol || die "detach failed"
kcvm_mknodes
kcvm_no_key kmscrypt:

# A multipath-like map of a whole disk: the disk carries the header too, but
# it is the map's part, and UUID= is the map's alone.
kcvm_loop 20
disk=$KCVM_LOOP
kmscrypt -q format "$disk" --key alias/db --context db-id=db1,volume-id=vol-mp || die "format of the disk failed"
mp_uuid=$(cryptsetup luksUUID "$disk") || die "cryptsetup luksUUID failed"
dmsetup create kcdb-mp --table "0 $(cat "/sys/class/block/${disk#/dev/}/size") linear $disk 0" || die "dmsetup create kcdb-mp failed"
defer "dmsetup remove kcdb-mp >/dev/null 2>&1"
kcvm_mknodes
kmscrypt attach "UUID=$mp_uuid" --name kcdb-vol >out 2>&1 || die "attach by UUID= under a map of the disk failed: $(cat out)"
expect_eq "attach by UUID= under a map says" "$(cat out)" "/dev/mapper/kcdb-mp attached as /dev/mapper/kcdb-vol"
kcvm_mknodes
kmscrypt -q detach kcdb-vol || die "detach failed"
kcvm_mknodes
kcvm_no_key kmscrypt:
