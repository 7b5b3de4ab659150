# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Rewrap while the volume is attached, mounted and being written to: key
# rotate --rewrap, rewrap to another CMK, kill -9 at random points of
# rewraps; afterwards the volume re-attaches, every file checksums as
# written, and the token names the key the last completed rewrap chose.
# kcvm-programs: kmscrypt
. /kc/lib.sh

export KMSCRYPT_KEYSTORE=$KCVM_DIR/keystore KMSCRYPT_AUDIT_LOG=$KCVM_DIR/audit.log
CTX=db-id=db-rot,volume-id=vol-rot
VOL=vol-rot
MNT=$KCVM_DIR/mnt
mkdir -p "$MNT"

kcvm_loop 64
defer "umount $MNT 2>/dev/null; kmscrypt detach $VOL >/dev/null 2>&1; kcvm_mknodes"

kmscrypt key create --alias alias/a >/dev/null || die "key create a"
kmscrypt key create --alias alias/b >/dev/null || die "key create b"
kmscrypt format "$KCVM_LOOP" --key alias/a --context "$CTX" >/dev/null || die "format"
kcvm_attach_mount "$KCVM_LOOP" "$VOL" "$MNT"

# A writer that keeps the volume busy for the whole test.
(
        i=0
        while [ ! -e "$KCVM_DIR/stop" ]; do
                head -c 65536 /dev/urandom >"$MNT/f$i" && sync
                i=$((i + 1))
                [ $i -lt 200 ] || i=0
        done
) &
writer=$!
defer "touch $KCVM_DIR/stop; kill $writer 2>/dev/null"

out=$(kmscrypt key rotate alias/a --rewrap "$KCVM_LOOP") || die "key rotate --rewrap: $out"
echo "$out"
case $out in *"version 1 -> "*"version 2"*) ;; *) die "rotate --rewrap did not rewrap to version 2: $out" ;; esac
kmscrypt --json dump "$KCVM_LOOP" | grep -q '"KeyVersion": 2' || die "token not at version 2"

kmscrypt rewrap "$KCVM_LOOP" --key alias/b || die "rewrap to alias/b while mounted"
kmscrypt key usage alias/b "$KCVM_LOOP" | grep -q "version 1:" || die "key usage does not list the volume"
# Now alias/a may go: nothing known uses it.
kmscrypt key usage alias/a "$KCVM_LOOP" | grep -q "$KCVM_LOOP" && die "key usage still lists the volume under alias/a"

# kill -9 at several points of rewraps that alternate between the keys.
for d in 0 0.01 0.02 0.05 0.1 0.2; do
        kmscrypt rewrap "$KCVM_LOOP" --key alias/a >/dev/null 2>&1 &
        pid=$!
        sleep "$d"
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        # Whatever the moment, the header holds a token that opens the volume.
        kmscrypt rewrap "$KCVM_LOOP" --dry-run --always >/dev/null || die "after kill -9 at ${d}s: token does not open the volume"
done
kmscrypt audit verify >/dev/null || die "audit chain broken by the kills"

touch "$KCVM_DIR/stop"
wait "$writer" 2>/dev/null || true
sync
(cd "$MNT" && md5sum f* >"$KCVM_DIR/sums") || die "checksums"
umount "$MNT"
kmscrypt detach "$VOL" >/dev/null || die "detach"
kcvm_mknodes
kmscrypt attach "$KCVM_LOOP" >/dev/null || die "re-attach after rewraps"
kcvm_mknodes
mount -o ro "/dev/mapper/$VOL" "$MNT" || die "mount after re-attach"
(cd "$MNT" && md5sum -c "$KCVM_DIR/sums" >/dev/null) || die "data changed across rewraps"
umount "$MNT"
kmscrypt status "$VOL" | grep -q "key state:    Enabled" || die "status has no key state line"
kmscrypt detach "$VOL" >/dev/null
kcvm_mknodes
