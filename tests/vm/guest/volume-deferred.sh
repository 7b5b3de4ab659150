# SPDX-License-Identifier: LGPL-2.1-or-later
# No deferred removal is left armed on a volume in use.  An attach that
# finds the mapping in place cancels a pending deferred removal
# (`kmscrypt detach --deferred` of the mounted volume, then attach: the
# mapping outlives the unmount).  With the device in place, neither
# `kmscrypt-hotplug detach-volume NAME` (the ExecStop of
# kmscrypt-NAME.service), which refuses, nor `kmscrypt-hotplug detach
# MAJ:MIN` (kmscrypt-attach@.service), which leaves it and succeeds (at
# shutdown it stops before the unmounts; the volume's unit detaches it
# after them), arms a deferred removal on an open mapping (what a
# `systemctl restart` of a mounted volume once did: the volume vanished at
# its next unmount); both remove it once it is closed.
# kcvm-programs: kmscrypt kmscrypt-hotplug
. /kc/lib.sh

kcvm_kmscrypt_env
kmscrypt -q key create --alias alias/db || die "kmscrypt key create failed"
name=kcdefer
mnt=$KCVM_DIR/mnt
mkdir -p "$mnt"
kcvm_loop 32
dev=$KCVM_LOOP
majmin=$(printf '%d:%d' "0x$(stat -c %t "$dev")" "0x$(stat -c %T "$dev")")
kmscrypt -q format "$dev" --key alias/db --context "db-id=db1,volume-id=$name" || die "format failed"
defer "umount $mnt 2>/dev/null; dmsetup remove $name >/dev/null 2>&1; kcvm_mknodes"
kmscrypt -q attach "$dev" || die "attach failed"
mkfs.ext4 -q "/dev/mapper/$name" || die "mkfs.ext4 failed"
mount -t ext4 "/dev/mapper/$name" "$mnt" || die "mount failed"

# ---- an attach cancels a pending deferred removal ----
kmscrypt -q detach "$name" --deferred || die "detach --deferred failed"
kmscrypt attach "$dev" >out 2>err || die "attach of the attached volume failed: $(cat err)"
expect_eq "attach says" "$(cat out)" "$dev is already attached as /dev/mapper/$name"
umount "$mnt" || die "umount failed"
sleep 0.2     # the kernel removes a deferred mapping at its last close
dmsetup info "$name" >/dev/null 2>&1 || die "the unmount removed $name: attach left its deferred removal armed"

# ---- a stop with the device in place: no deferred removal ----
mount -t ext4 "/dev/mapper/$name" "$mnt" || die "second mount failed"
! kmscrypt-hotplug detach-volume "$name" 2>err || die "detach-volume of a mounted volume succeeded"
grep -q "in use" err || die "detach-volume of a mounted volume says: $(cat err)"
kmscrypt-hotplug detach "$majmin" 2>err || die "detach $majmin of a mounted volume failed: $(cat err)"
grep -q "$name is in use and stays attached" err || die "detach $majmin of a mounted volume says: $(cat err)"
dmsetup info "$name" | grep -q '^State: *ACTIVE' || die "detach $majmin took the mounted $name away"
umount "$mnt" || die "second umount failed"
sleep 0.2     # the kernel removes a deferred mapping at its last close
dmsetup info "$name" >/dev/null 2>&1 || die "a refused stop left a deferred removal: $name went at the unmount"
kmscrypt-hotplug detach "$majmin" 2>err || die "detach $majmin of a closed volume failed: $(cat err)"
! dmsetup info "$name" >/dev/null 2>&1 || die "$name still there after detach $majmin"
kmscrypt -q attach "$dev" || die "attach after detach $majmin failed"
kmscrypt-hotplug detach-volume "$name" 2>err || die "detach-volume of a closed volume failed: $(cat err)"
! dmsetup info "$name" >/dev/null 2>&1 || die "$name still there after detach-volume"
