# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A power cut in the middle of an online reencryption, emulated at the block
# layer: the volume sits on a dm-linear device whose table is swapped to
# `error` mid-way; then every mapping goes, the linear table comes back, and
# kmscryptd, attaching the volume from its volumes file as at boot, finishes
# the reencryption before attaching (reencrypt-kill covers `kmscrypt
# attach` doing the same).  The files synced before the cut checksum as
# written.
# kcvm-programs: kmscrypt kmscryptd tests/bench/agent-vmlib
. /kc/lib.sh
. /kc/bin/agent-vmlib
VOL=vol-cut
PC=kcvm-pc
MNT=$KCVM_DIR/mnt
mkdir -p "$MNT"

kcvm_loop 40
SECTORS=$((40 * 2048))
dmsetup create "$PC" --table "0 $SECTORS linear $KCVM_LOOP 0" || die "dm-linear"
defer "dmsetup remove $PC 2>/dev/null"
defer "umount $MNT 2>/dev/null; kmscrypt detach $VOL >/dev/null 2>&1; kcvm_mknodes"
kcvm_mknodes
DEV=/dev/mapper/$PC

kmscrypt key create --alias alias/p >/dev/null || die "key create"
kmscrypt format "$DEV" --key alias/p --context db-id=db-p,volume-id=$VOL >/dev/null || die "format"
kcvm_attach_mount "$DEV" "$VOL" "$MNT"
for i in 1 2 3 4 5 6; do head -c 2097152 /dev/urandom >"$MNT/f$i"; done
sync
(cd "$MNT" && md5sum f* >"$KCVM_DIR/sums")

kmscrypt reencrypt "$VOL" --rate-limit 4 --resilience journal >"$KCVM_DIR/out" 2>&1 &
pid=$!
# Once the header says the reencryption runs (after the KMS calls and keyslots), a little more.
n=0
until dmsetup ls | grep -q -- "$VOL-overlay"; do
        n=$((n + 1))
        [ $n -lt 240 ] && kill -0 "$pid" 2>/dev/null || die "the reencryption never started: $(cat "$KCVM_DIR/out" 2>/dev/null)"
        sleep 0.25
done
sleep 1
# The cut: from now on every read and write of the disk fails, and a moment
# later the process dies with the power.
echo "cutting the power"
dmsetup suspend --noflush "$PC" && dmsetup load "$PC" --table "0 $SECTORS error" && dmsetup resume "$PC" ||
        die "cannot swap in the error table"
sleep 2
kill -9 "$pid" 2>/dev/null || true
# Every mapping above the disk fails its I/O (a suspended one would hold a
# dying process and the unmount forever).
# Bottom up: a flushing suspend above a suspended device would wait forever.
echo "failing the stack"
for m in $VOL-hotzone-forward $VOL-overlay $VOL; do
        dmsetup info "$m" >/dev/null 2>&1 && dmsetup wipe_table --noflush --nolockfs "$m" 2>/dev/null
done
wait "$pid" 2>/dev/null || true
echo "reencrypt at the cut: $(tail -n 1 "$KCVM_DIR/out")"

# Power comes back: nothing of the old boot survives but the disk.
echo "unmounting"
umount "$MNT" 2>/dev/null || umount -l "$MNT"
echo "removing the mappings: $(dmsetup ls | awk '{print $1}' | tr '\n' ' ')"
for m in $VOL $VOL-overlay $VOL-hotzone-forward; do
        dmsetup info "$m" >/dev/null 2>&1 && { dmsetup remove "$m" || die "cannot remove $m"; }
done
echo "restoring the disk"
dmsetup load "$PC" --table "0 $SECTORS linear $KCVM_LOOP 0" && dmsetup resume "$PC" ||
        die "cannot restore the linear table"
kcvm_mknodes
cryptsetup luksDump "$DEV" | grep -q "online-reencrypt" || die "the cut came too late: no reencryption in progress"

echo "booting the agent with the volume configured"
echo "$VOL $DEV db-id=db-p,volume-id=$VOL" >"$AGENT_VOLUMES"
agent_start
agent_wait_log "$VOL: reencryption finished" 240
agent_wait_ready 60 >/dev/null
kcvm_mknodes
cryptsetup luksDump "$DEV" | grep -q "online-reencrypt" && die "reencryption still in progress after attach"
mount -o ro "/dev/mapper/$VOL" "$MNT" || die "mount after the cut"
(cd "$MNT" && md5sum -c "$KCVM_DIR/sums" >/dev/null) || die "data synced before the cut differs"
umount "$MNT"
