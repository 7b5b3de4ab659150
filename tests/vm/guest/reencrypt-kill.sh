# SPDX-License-Identifier: LGPL-2.1-or-later
#
# kill -9 of kmscrypt in the middle of an online reencryption of a mounted
# volume, then `reencrypt --resume`: the reencryption completes online, the
# files checksum as written, the mapping is back on a kmscrypt logon key and
# the header has no keyslot left.
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

# 24 MiB at 4 MiB/s: killed a second or so after it starts.
kmscrypt reencrypt "$VOL" --rate-limit 4 >"$KCVM_DIR/out" 2>&1 &
pid=$!
# Once the header says the reencryption runs (after the KMS calls and keyslots), a little more.
n=0
until cryptsetup luksDump "$KCVM_LOOP" 2>/dev/null | grep -q "online-reencrypt"; do
        n=$((n + 1))
        [ $n -lt 240 ] && kill -0 "$pid" 2>/dev/null || die "the reencryption never started: $(cat "$KCVM_DIR/out" 2>/dev/null)"
        sleep 0.25
done
sleep 1
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
cryptsetup luksDump "$KCVM_LOOP" | grep -q "online-reencrypt" || die "kill -9 came too late: no reencryption in progress"
kmscrypt rewrap "$KCVM_LOOP" >"$KCVM_DIR/out" 2>&1 && die "rewrap accepted a volume being reencrypted"
grep -q "reencrypt --resume" "$KCVM_DIR/out" || die "rewrap refusal does not name --resume: $(cat "$KCVM_DIR/out")"

if ! kmscrypt --verbose reencrypt --resume "$KCVM_LOOP" >"$KCVM_DIR/out" 2>"$KCVM_DIR/err"; then
        grep -i "libcryptsetup" "$KCVM_DIR/err" | tail -n 40
        dmsetup ls
        dmsetup info -c
        cryptsetup luksDump "$KCVM_LOOP" | head -n 30
        die "resume: $(tail -n 1 "$KCVM_DIR/err")"
fi
grep -q "resumed and finished" "$KCVM_DIR/out" || die "resume: $(cat "$KCVM_DIR/out")"
dmsetup table --showkeys "$VOL" | grep -q ":64:logon:kmscrypt:" || die "mapping is not back on a kmscrypt logon key"
[ "$(cryptsetup luksDump "$KCVM_LOOP" | grep -c '^  [0-9]*: luks2')" = 0 ] || die "temporary keyslots left"
kcvm_drop_caches
(cd "$MNT" && md5sum -c "$KCVM_DIR/sums" >/dev/null) || die "data changed across kill -9 and resume"
umount "$MNT"
kmscrypt detach "$VOL" >/dev/null || die "detach"
kcvm_mknodes
kmscrypt attach "$KCVM_LOOP" >/dev/null || die "attach with the new key"
kcvm_mknodes
mount -o ro "/dev/mapper/$VOL" "$MNT" || die "mount after re-attach"
(cd "$MNT" && md5sum -c "$KCVM_DIR/sums" >/dev/null) || die "data differs after re-attach"
umount "$MNT"
