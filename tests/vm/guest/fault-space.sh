# SPDX-License-Identifier: LGPL-2.1-or-later
#
# ENOSPC under the audit log and the keystore (issue #8), each on a small
# tmpfs, filled up: each operation that needs to write there fails closed,
# with one line on stderr and a non-zero exit: no mapping, no key in the
# kernel, the volume header unwritten, no audit record from the refusals.
# Key changes (create, rotate, disable, schedule-deletion) are written
# ahead: with no room for their intent record they change nothing, the
# keystore stays byte-identical and no key appears.
# Once the space is freed the audit chain verifies, no temp file is left,
# the keystore's keys still unwrap the volume, and its data checksums as
# written.  EIO is fault-eio.
# kcvm-programs: kmscrypt
. /kc/lib.sh

VOL=vol-space
roomy=$KCVM_DIR/roomy
mkdir -p "$roomy" "$KCVM_DIR/a" "$KCVM_DIR/k"
mount -t tmpfs -o size=1m tmpfs "$KCVM_DIR/a" || die "mount tmpfs for the audit log"
defer "umount $KCVM_DIR/a"
mount -t tmpfs -o size=1m tmpfs "$KCVM_DIR/k" || die "mount tmpfs for the keystore"
defer "umount $KCVM_DIR/k"
export KMSCRYPT_CONFIG="$KCVM_DIR/empty.conf" KMSCRYPT_KEYSTORE="$KCVM_DIR/k/keystore" \
        KMSCRYPT_AUDIT_LOG="$KCVM_DIR/a/audit.log" KMSCRYPT_AUDIT_HEAD="$KCVM_DIR/a/audit.head"
: >"$KMSCRYPT_CONFIG"

kmscrypt -q key create --alias alias/a || die "key create"
kcvm_loop 24
dev=$KCVM_LOOP
defer "dmsetup remove --force $VOL >/dev/null 2>&1; kcvm_mknodes"
kmscrypt -q format "$dev" --key alias/a --context db-id=db-space,volume-id=$VOL || die "format"
kcvm_seed "$dev" "$VOL"

# keystore_sum: one checksum over every file of the keystore, names included.
keystore_sum() {
        (cd "$KMSCRYPT_KEYSTORE" && find . -type f | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -d' ' -f1
}

# fill DIR: no byte left on its file system.
fill() {
        dd if=/dev/zero of="$1/fill" bs=4k 2>/dev/null || :
        ! head -c 1 /dev/zero >"$1/probe" 2>/dev/null || [ ! -s "$1/probe" ] || die "$1 still has room"
        rm -f "$1/probe"
}

# ---- ENOSPC under the audit log ----
# A record that fits in the unused rest of the log's last page takes no new
# block, and is rightly written on a full file system.  Top the log up with
# the shortest records there are (ListKeys) until not even one fits: every
# record the operations below write (Decrypt, DescribeKey, CreateKey) is
# longer and needs a block the file system no longer has.
kmscrypt -q key list >/dev/null || die "key list"
short=$(tail -n 1 "$KMSCRYPT_AUDIT_LOG" | wc -c)
while [ $((4096 - $(stat -c %s "$KMSCRYPT_AUDIT_LOG") % 4096)) -ge "$short" ]; do
        kmscrypt -q key list >/dev/null || die "key list"
done
records=$(kmscrypt audit verify | sed -n 's/.*: \([0-9]*\) records.*/\1/p')
fill "$KCVM_DIR/a"
kcvm_refusal_begin "$dev"
! kmscrypt attach "$dev" >out 2>err || die "attach with a full audit log file system succeeded"
kcvm_refused "attach, audit log full" "$dev" "audit"
kcvm_fails "rewrap, audit log full" kmscrypt rewrap "$dev" --always
expect_eq "header after the refused rewrap" "$(kcvm_head_sum "$dev")" "$_kcvm_sum"
ks=$(keystore_sum)
for change in "key create --alias alias/full" "key rotate alias/a" "key disable alias/a" \
              "key schedule-deletion alias/a --pending-window-in-days 7"; do
        kcvm_fails "$change, audit log full" kmscrypt $change
        grep -q "audit record could not be written" err || die "$change: says '$(cat err)', expected the audit log named"
        expect_eq "keystore after the refused $change" "$(keystore_sum)" "$ks"
done
rm -f "$KCVM_DIR/a/fill"
kcvm_intact "after ENOSPC under the audit log" "$dev" "$VOL"
now=$(kmscrypt audit verify | sed -n 's/.*: \([0-9]*\) records.*/\1/p')
# One record more: the Decrypt of the attach in intact; the refusals wrote none.
expect_eq "audit records after the refusals and one attach" "$now" $((records + 1))

# ---- ENOSPC under the keystore ----
fill "$KCVM_DIR/k"
kcvm_fails "key create, keystore full" kmscrypt key create --alias alias/full2
kcvm_fails "key rotate, keystore full" kmscrypt key rotate alias/a
rm -f "$KCVM_DIR/k/fill"
kmscrypt key list >out 2>err || die "key list after ENOSPC: $(cat err)"
for a in alias/full alias/full2; do
        ! grep -q "$a" out || die "$a exists though its create failed"
done
kmscrypt --json key describe alias/a >out 2>err || die "key describe after ENOSPC: $(cat err)"
grep -q '"KeyState": "Enabled"' out || die "alias/a changed state though every change failed: $(cat out)"
grep -q '"KeyVersion": 1,' out || die "alias/a was rotated though every rotate failed: $(cat out)"
kcvm_intact "after ENOSPC under the keystore" "$dev" "$VOL"

