# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Data key replacement while the volume is attached, mounted and written
# to: every file checksums as written afterwards, the mapping is back on a
# kmscrypt logon key, the header has the keyslots it had (the recovery
# keyslot, now for the new key; the temporary ones gone), the token names
# a new blob and no reencryption, the plaintext written before is nowhere
# on the backing device, and the volume re-attaches with the new key.
# kcvm-programs: kmscrypt
. /kc/lib.sh

export KMSCRYPT_KEYSTORE=$KCVM_DIR/keystore KMSCRYPT_AUDIT_LOG=$KCVM_DIR/audit.log
CTX=db-id=db-re,volume-id=vol-re
VOL=vol-re
MNT=$KCVM_DIR/mnt
FAST="--pbkdf pbkdf2 --pbkdf-force-iterations 1000"
mkdir -p "$MNT"

kcvm_loop 32
defer "umount $MNT 2>/dev/null; kmscrypt detach $VOL >/dev/null 2>&1; kcvm_mknodes"

kmscrypt key create --alias alias/re >/dev/null || die "key create"
printf 'recovery words\n' >"$KCVM_DIR/recovery"
kmscrypt format "$KCVM_LOOP" --key alias/re --context "$CTX" --recovery-passphrase-file "$KCVM_DIR/recovery" \
        $FAST >/dev/null || die "format"
kcvm_attach_mount "$KCVM_LOOP" "$VOL" "$MNT"
kcvm_pattern "$MNT/pattern" 1048576
sync
blob_before=$(kmscrypt --json dump "$KCVM_LOOP" | sed -n 's/.*"CiphertextBlob": "\(.*\)".*/\1/p')

(
        i=0
        while [ ! -e "$KCVM_DIR/stop" ]; do
                head -c 32768 /dev/urandom >"$MNT/f$i" && sync
                i=$((i + 1))
                [ $i -lt 100 ] || i=0
        done
) &
writer=$!
defer "touch $KCVM_DIR/stop; kill $writer 2>/dev/null"

kmscrypt reencrypt "$VOL" --recovery-passphrase-file "$KCVM_DIR/recovery" $FAST >"$KCVM_DIR/out" 2>"$KCVM_DIR/err" ||
        die "reencrypt: $(tail -n 3 "$KCVM_DIR/err")"
cat "$KCVM_DIR/out"
grep -q "online as $VOL" "$KCVM_DIR/out" || die "reencrypt did not run online: $(cat "$KCVM_DIR/out")"
grep -q "MiB/s" "$KCVM_DIR/err" || die "no progress line on stderr"

touch "$KCVM_DIR/stop"
wait "$writer" 2>/dev/null || true
sync
(cd "$MNT" && md5sum pattern f* >"$KCVM_DIR/sums") || die "checksums"

dmsetup table --showkeys "$VOL" | grep -q ":64:logon:kmscrypt:" || die "mapping is not back on a kmscrypt logon key"
kmscrypt status "$VOL" >/dev/null || die "status does not recognise the mapping"
[ -z "$(dmsetup ls | grep -e '-overlay' -e '-hotzone')" ] || die "libcryptsetup helper devices left: $(dmsetup ls)"
slots=$(cryptsetup luksDump "$KCVM_LOOP" | sed -n '/^Keyslots:/,/^Tokens:/p' | grep -c '^  [0-9]*: luks2')
expect_eq "keyslots after reencrypt" "$slots" 1
printf 'recovery words' | cryptsetup open --test-passphrase "$KCVM_LOOP" || die "recovery passphrase no longer opens"
cryptsetup token export --token-id 0 "$KCVM_LOOP" | grep -q kmscrypt_reencrypt && die "token still has its reencrypt member"
blob_after=$(kmscrypt --json dump "$KCVM_LOOP" | sed -n 's/.*"CiphertextBlob": "\(.*\)".*/\1/p')
[ -n "$blob_after" ] && [ "$blob_after" != "$blob_before" ] || die "token blob unchanged"
kmscrypt audit verify >/dev/null || die "audit chain"
grep -q '"ReencryptVolume"' "$KMSCRYPT_AUDIT_LOG" || die "no ReencryptVolume audit record"

umount "$MNT"
kcvm_drop_caches
! grep -qF "$KCVM_TAG" "$KCVM_LOOP_FILE" || die "plaintext found on the backing device"
kmscrypt detach "$VOL" >/dev/null || die "detach"
kcvm_mknodes
kmscrypt attach "$KCVM_LOOP" >/dev/null || die "re-attach with the new key"
kcvm_mknodes
mount -o ro "/dev/mapper/$VOL" "$MNT" || die "mount after re-attach"
(cd "$MNT" && md5sum -c "$KCVM_DIR/sums" >/dev/null) || die "data changed across the reencryption"
umount "$MNT"
kmscrypt detach "$VOL" >/dev/null
kcvm_mknodes
