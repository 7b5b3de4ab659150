# SPDX-License-Identifier: LGPL-2.1-or-later
#
# kill -9 of kmscrypt in the middle of an online reencryption of a mounted
# volume: the volume is left on libcryptsetup's device stack, rewrap
# and an online resume refuse with instructions, and once the stack is
# taken down `kmscrypt attach` finishes the reencryption and attaches; the
# files checksum as written and the header has no keyslot left.
# kcvm-programs: kmscrypt
. /kc/lib.sh

export KMSCRYPT_KEYSTORE=$KCVM_DIR/keystore KMSCRYPT_AUDIT_LOG=$KCVM_DIR/audit.log
VOL=vol-kill
MNT=$KCVM_DIR/mnt
mkdir -p "$MNT"

kcvm_loop 40
defer "umount $MNT 2>/dev/null; kmscrypt detach $VOL >/dev/null 2>&1; kcvm_mknodes"
kmscrypt key create --alias alias/k >/dev/null || die "key create"
kmscrypt format "$KCVM_LOOP" --key alias/k --context db-id=db-k,volume-id=$VOL >/dev/null || die "format"
kmscrypt attach "$KCVM_LOOP" >/dev/null || die "attach"
kcvm_mknodes
mkfs.ext4 -q "/dev/mapper/$VOL" || die "mkfs"
mount "/dev/mapper/$VOL" "$MNT" || die "mount"
for i in 1 2 3 4 5 6; do head -c 2097152 /dev/urandom >"$MNT/f$i"; done
sync
(cd "$MNT" && md5sum f* >"$KCVM_DIR/sums")

# 24 MiB at 4 MiB/s; killed a second after libcryptsetup's stack appears (no header lock needed to see it).
kmscrypt reencrypt "$VOL" --rate-limit 4 >"$KCVM_DIR/out" 2>&1 &
pid=$!
n=0
until dmsetup ls | grep -q -- "$VOL-overlay"; do
        n=$((n + 1))
        [ $n -lt 240 ] && kill -0 "$pid" 2>/dev/null || die "the reencryption never started: $(cat "$KCVM_DIR/out")"
        sleep 0.25
done
sleep 1
kill -9 "$pid"
wait "$pid" 2>/dev/null || true

# Killed in the middle of a chunk, the hotzone device stays suspended: fail its
# I/O, as libcryptsetup does on a fatal error, so that the unmount can finish.
if dmsetup info "$VOL-hotzone-forward" | grep -q SUSPENDED; then
        echo "killed inside a chunk"
        dmsetup wipe_table "$VOL-hotzone-forward" || die "wipe_table"
fi
kmscrypt rewrap "$KCVM_LOOP" >"$KCVM_DIR/out" 2>&1 && die "rewrap accepted a volume being reencrypted"
grep -q "reencrypt --resume" "$KCVM_DIR/out" || die "rewrap refusal does not name --resume: $(cat "$KCVM_DIR/out")"
kmscrypt reencrypt --resume "$KCVM_LOOP" >"$KCVM_DIR/out" 2>&1 && die "online resume on the stack of a killed run"
grep -q "then attach" "$KCVM_DIR/out" || die "resume refusal says no way out: $(cat "$KCVM_DIR/out")"

umount "$MNT" 2>/dev/null || umount -l "$MNT"
dmsetup remove "$VOL" && dmsetup remove "$VOL-overlay" && dmsetup remove "$VOL-hotzone-forward" ||
        die "cannot take down the stack: $(dmsetup ls)"
kcvm_mknodes
kmscrypt attach "$KCVM_LOOP" >"$KCVM_DIR/out" 2>"$KCVM_DIR/err" || die "attach after kill: $(tail -n 3 "$KCVM_DIR/err")"
grep -q "finishing it first" "$KCVM_DIR/err" || die "attach did not finish the reencryption"
kcvm_mknodes
dmsetup table --showkeys "$VOL" | grep -q ":64:logon:kmscrypt:" || die "mapping is not on a kmscrypt logon key"
[ "$(cryptsetup luksDump "$KCVM_LOOP" | grep -c '^  [0-9]*: luks2')" = 0 ] || die "temporary keyslots left"
mount -o ro "/dev/mapper/$VOL" "$MNT" || die "mount after attach"
(cd "$MNT" && md5sum -c "$KCVM_DIR/sums" >/dev/null) || die "data changed across kill -9 and resume"
umount "$MNT"
