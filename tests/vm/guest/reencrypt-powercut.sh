# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A power cut in the middle of an online reencryption, emulated at the block
# layer: the volume sits on a dm-linear device whose table is swapped to
# `error` mid-way; then every mapping goes, the linear table comes back, and
# kmscryptd, attaching the volume from its volumes file as at boot, finishes
# the reencryption before attaching (reencrypt-kill covers `kmscrypt
# attach` doing the same), while another volume attaches meanwhile.  The files synced before the cut checksum as written.
# kcvm-programs: kmscrypt kmscryptd tests/bench/agent-vmlib
. /kc/lib.sh
. /kc/bin/agent-vmlib
VOL=vol-cut
PC=kcvm-pc
MNT=$KCVM_DIR/mnt
mkdir -p "$MNT"

# Big enough that the rest of the reencryption, offline at the agent's
# start, takes a while (seconds) beside another volume's attach.
MIB=128
kcvm_loop $MIB
SECTORS=$((MIB * 2048))
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

kcvm_loop 20
OTHER=$KCVM_LOOP
kmscrypt format "$OTHER" --key alias/p --context db-id=db-p,volume-id=vol-other >/dev/null || die "format other"
defer "kmscrypt detach vol-other >/dev/null 2>&1; kcvm_mknodes"

echo "booting the agent with the volume configured"
echo "$VOL $DEV db-id=db-p,volume-id=$VOL" >"$AGENT_VOLUMES"
agent_start
# Another volume attaches while the reencryption runs: the agent finishes
# it in a kmscrypt child process, not under its own device-mapper lock,
# which every other attach would wait for.
agent_wait_log "$VOL: its data key replacement was interrupted" 120
t0=$(agent_cs)
kmscrypt attach "$OTHER" --name vol-other >"$KCVM_DIR/other" 2>&1 || die "attach of another volume: $(cat "$KCVM_DIR/other")"
t1=$(agent_cs)
echo "another volume attached in $(((t1 - t0) * 10)) ms while the reencryption of $VOL ran"
# Waiting for the lock, the attach would have returned with the reencryption's end.
[ $((t1 - t0)) -lt 500 ] && ! grep -q "$VOL: reencryption finished" "$AGENT_LOG" ||
        die "the other volume's attach waited for the reencryption of $VOL"

# reencrypt_helpers: pids of `kmscrypt reencrypt` processes.
reencrypt_helpers() {
        for _c in /proc/[0-9]*/cmdline; do
                tr '\0' ' ' <"$_c" 2>/dev/null | grep -q "^[^ ]*kmscrypt reencrypt " && echo "${_c%/cmdline}"
        done
}
# The agent stops meanwhile: its child stops between two chunks and goes
# with it; the header says how far it got, and the next start goes on.
[ -n "$(reencrypt_helpers)" ] || die "no kmscrypt reencrypt process while the agent finishes $VOL"
agent_stop
expect_eq "exit status of the agent stopped while it finished a reencryption" "$AGENT_STATUS" 0
expect_eq "kmscrypt reencrypt processes after the agent stopped" "$(reencrypt_helpers)" ""
cryptsetup luksDump "$DEV" | grep -q "online-reencrypt" || die "the reencryption ended instead of stopping"
grep -q "$VOL: reencryption finished" "$AGENT_LOG" && die "the stopped agent says the reencryption finished"
agent_start
agent_wait_log "$VOL: reencryption finished" 240
agent_wait_ready 60 >/dev/null
kcvm_mknodes
cryptsetup luksDump "$DEV" | grep -q "online-reencrypt" && die "reencryption still in progress after attach"
mount -o ro "/dev/mapper/$VOL" "$MNT" || die "mount after the cut"
(cd "$MNT" && md5sum -c "$KCVM_DIR/sums" >/dev/null) || die "data synced before the cut differs"
umount "$MNT"
