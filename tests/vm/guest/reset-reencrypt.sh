# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A hard reset of the machine in the middle of an online reencryption
# (issue #7), on a persistent disk, checked in a second boot.
#   boot 1: a mounted volume with files synced, a writer adding synced
#           files, `kmscrypt reencrypt` rate-limited; once the header says
#           a third of the data is under the new key, the machine resets
#           (sysrq b: no sync, no unmount).
#   boot 2: `kmscrypt attach` finishes the interrupted reencryption, then
#           attaches on a kmscrypt logon key with no temporary keyslot left;
#           the files synced before the reset, the writer's included,
#           checksum as written; on the raw disk no 4 KiB sector of the data
#           area begins as it did under the old key, and the plaintext
#           pattern written through the mapping is nowhere.
# The keystore, the audit log, the checksums and the old sector prints live on
# a second persistent disk (ext4), written and synced before the reset.
# kcvm-programs: kmscrypt
# kcvm-disk: 16M 48M
# kcvm-boots: 2
. /kc/lib.sh

STATE=$KCVM_DIR/state
MNT=$KCVM_DIR/mnt
VOL=vol-reset
mkdir -p "$MNT"
kcvm_state "$(kcvm_disk 1)" "$STATE"
DEV=$(kcvm_disk 2)
export KMSCRYPT_KEYSTORE=$STATE/keystore KMSCRYPT_AUDIT_LOG=$STATE/audit.log
defer "umount $MNT 2>/dev/null; kmscrypt detach $VOL >/dev/null 2>&1; kcvm_mknodes"

# sector_prints FILE: the first 16 bytes of every 4 KiB of the data area of
# the raw disk, one line each, in order.  A sector rewritten under another
# key (or with other data) begins with other bytes; one left alone does not.
sector_prints() {
        kcvm_drop_caches
        dd if="$DEV" bs=1M skip=$(($(segment0 offset) >> 20)) 2>/dev/null | hexdump -v -e '16/1 "%02x" 1020/4 "" "\n"' >"$1" ||
                die "cannot read the data area of $DEV"
}

# segment0 FIELD: offset or length (bytes) of data segment 0 in the header;
# its length is what a forward reencryption has done (0 before the first
# chunk, when it is still the "whole device").
segment0() {
        cryptsetup luksDump "$DEV" 2>/dev/null |
                awk -v f="$1:" '/^  0: crypt/ { s = 1 } s && $1 == f { print ($2 ~ /^[0-9]+$/) ? $2 : 0; exit }'
}

if [ "$KCVM_BOOT" = 1 ]; then
        kmscrypt key create --alias alias/r >/dev/null || die "key create"
        kmscrypt format "$DEV" --key alias/r --context db-id=db-r,volume-id=$VOL >/dev/null || die "format"
        kcvm_attach_mount "$DEV" "$VOL" "$MNT"
        kcvm_pattern "$MNT/plain" 2097152
        echo "$KCVM_TAG" >"$STATE/tag"
        for i in 1 2 3 4; do head -c 2097152 /dev/urandom >"$MNT/f$i"; done
        (cd "$MNT" && md5sum plain f*) >"$STATE/sums"
        : >"$STATE/written"
        sync
        sector_prints "$STATE/before"
        sync

        # The writer: a new file, synced, then its checksum on the state
        # disk, synced by the next round's sync.  A line there names a file
        # that reached the disk before it.
        (
                i=0
                while :; do
                        i=$((i + 1))
                        head -c 131072 /dev/urandom >"$KCVM_DIR/w"
                        cp "$KCVM_DIR/w" "$MNT/w$i" && sync || exit 1
                        echo "$(md5sum <"$KCVM_DIR/w" | cut -d' ' -f1)  w$i" >>"$STATE/written"
                        sleep 0.2
                done
        ) &
        kmscrypt reencrypt "$VOL" --rate-limit 4 >"$KCVM_DIR/out" 2>&1 &
        pid=$!
        total=$(($(blockdev --getsize64 "$DEV") - $(segment0 offset)))
        n=0
        while :; do
                d=$(segment0 length)
                [ "${d:-0}" -lt $((total / 3)) ] || break
                n=$((n + 1))
                [ $n -lt 200 ] && kill -0 "$pid" 2>/dev/null ||
                        die "the reencryption never got a third of the way: $(tail -n 3 "$KCVM_DIR/out")"
                sleep 0.25
        done
        kcvm_reset "online reencryption at $((d * 100 / total))% ($((d >> 20)) of $((total >> 20)) MiB)," \
                "$(wc -l <"$STATE/written") writer files synced"
fi

# ---- boot 2: the same disks, nothing attached ----
[ -s "$STATE/sums" ] && [ -s "$STATE/before" ] || die "the state disk lost what boot 1 synced"
echo "after the reset: $(segment0 length) bytes under the new key in the header"
kmscrypt attach "$DEV" >"$KCVM_DIR/out" 2>"$KCVM_DIR/err" || die "attach after the reset: $(tail -n 3 "$KCVM_DIR/err")"
grep -q "finishing it first" "$KCVM_DIR/err" || die "attach did not finish the reencryption: $(cat "$KCVM_DIR/err")"
kcvm_mknodes
dmsetup table --showkeys "$VOL" | grep -q ":64:logon:kmscrypt:" || die "the mapping is not on a kmscrypt logon key"
[ "$(cryptsetup luksDump "$DEV" | grep -c '^  [0-9]*: luks2')" = 0 ] || die "temporary keyslots left"
mount "/dev/mapper/$VOL" "$MNT" || die "mount after the reset"
(cd "$MNT" && md5sum -c "$STATE/sums" >/dev/null) || die "files synced before the reencryption changed"
grep -E '^[0-9a-f]{32}  w[0-9]+$' "$STATE/written" >"$KCVM_DIR/written" || true
nw=$(wc -l <"$KCVM_DIR/written")
[ "$nw" -gt 0 ] || die "the writer synced no file before the reset"
(cd "$MNT" && md5sum -c "$KCVM_DIR/written" >/dev/null) || die "files the writer synced before the reset changed"
echo "the 5 files synced before and the $nw the writer synced during the reencryption checksum as written"
umount "$MNT"
kmscrypt detach "$VOL" >/dev/null || die "detach"
kcvm_mknodes

# ---- nothing of the old key's ciphertext nor of the plaintext on the raw disk ----
sector_prints "$KCVM_DIR/after"
expect_eq "4 KiB sectors in the data area" "$(wc -l <"$KCVM_DIR/after")" "$(wc -l <"$STATE/before")"
same=$(awk 'NR == FNR { old[FNR] = $0; next } old[FNR] == $0' "$STATE/before" "$KCVM_DIR/after" | wc -l)
expect_eq "4 KiB sectors of the data area still as they were under the old key" "$same" 0
kcvm_drop_caches
! grep -qF "$(cat "$STATE/tag")" "$DEV" || die "the plaintext pattern is on the raw disk"
echo "all $(wc -l <"$KCVM_DIR/after") sectors of 4 KiB rewritten, no plaintext on $DEV"
