# SPDX-License-Identifier: LGPL-2.1-or-later
#
# ENOSPC and EIO under the audit log and the keystore (issue #8): each
# operation that needs to write there fails closed, with one line on
# stderr and a non-zero exit: no mapping, no key in the kernel, the volume
# header unwritten.  Once the space is freed (or the device works again)
# the audit chain verifies, no temp file is left, the keystore's keys still
# unwrap the volume, and its data checksums as written.
#   - ENOSPC: audit log and keystore each on a small tmpfs, filled up;
#   - EIO: both on ext4 over a mapping whose table becomes a dm error
#     target (reads and writes fail), then dm-flakey error_writes (writes
#     fail), then linear again (unmounted and mounted across).
# kcvm-programs: kmscrypt
# kcvm-modules: dm-flakey
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

# fill DIR: no byte left on its file system.
fill() {
        dd if=/dev/zero of="$1/fill" bs=4k 2>/dev/null || :
        ! head -c 1 /dev/zero >"$1/probe" 2>/dev/null || [ ! -s "$1/probe" ] || die "$1 still has room"
        rm -f "$1/probe"
}

# fails WHAT COMMAND...: COMMAND exits non-zero with one line on stderr; its mappings and keys as before.
fails() {
        _what=$1
        shift
        _maps=$(kcvm_maps)
        _rc=0
        "$@" >out 2>err || _rc=$?
        [ "$_rc" != 0 ] || die "$_what: '$*' succeeded"
        [ "$(wc -l <err)" = 1 ] || die "$_what: $(wc -l <err) lines on stderr: $(cat err)"
        expect_eq "$_what: mappings" "$(kcvm_maps)" "$_maps"
        kcvm_no_key kmscrypt:
        echo "$_what: exit $_rc: $(cat err)"
}

# intact WHAT: the chain verifies, no temp file lies about, the volume attaches, data as written.
intact() {
        kmscrypt audit verify >out 2>err || die "$1: audit verify: $(cat out err)"
        left=$(find "$KCVM_DIR/a" "$KMSCRYPT_KEYSTORE" -name '*tmp*' 2>/dev/null)
        [ -z "$left" ] || die "$1: temp files left: $left"
        kmscrypt -q attach "$dev" || die "$1: attach failed afterwards"
        kcvm_mknodes
        kcvm_check_seed "$1" "$VOL"
        kmscrypt -q detach "$VOL" || die "$1: detach"
        kcvm_mknodes
        echo "$1: chain verifies, keys unwrap the volume, data intact"
}

# ---- ENOSPC under the audit log ----
records=$(kmscrypt audit verify | sed -n 's/.*: \([0-9]*\) records.*/\1/p')
fill "$KCVM_DIR/a"
kcvm_refusal_begin "$dev"
! kmscrypt attach "$dev" >out 2>err || die "attach with a full audit log file system succeeded"
kcvm_refused "attach, audit log full" "$dev" "audit"
fails "rewrap, audit log full" kmscrypt rewrap "$dev" --always
expect_eq "header after the refused rewrap" "$(kcvm_head_sum "$dev")" "$_kcvm_sum"
fails "key create, audit log full" kmscrypt key create --alias alias/full
rm -f "$KCVM_DIR/a/fill"
intact "after ENOSPC under the audit log"
now=$(kmscrypt audit verify | sed -n 's/.*: \([0-9]*\) records.*/\1/p')
# One record more: the Decrypt of the attach in intact; the refusals wrote none.
expect_eq "audit records after the refusals and one attach" "$now" $((records + 1))

# ---- ENOSPC under the keystore ----
fill "$KCVM_DIR/k"
fails "key create, keystore full" kmscrypt key create --alias alias/full2
fails "key rotate, keystore full" kmscrypt key rotate alias/a
rm -f "$KCVM_DIR/k/fill"
kmscrypt key list >out 2>err || die "key list after ENOSPC: $(cat err)"
for a in alias/full alias/full2; do
        grep -q "$a" out || continue
        kmscrypt -q key describe "$a" || die "$a is listed but cannot be described"
        echo "note: $a exists though its create failed"
done
intact "after ENOSPC under the keystore"

# ---- EIO: a dm error target under the file system of both ----
kcvm_loop 16
fsdev=$KCVM_LOOP
fssz=$(blockdev --getsz "$fsdev")
dmsetup create kcfs --table "0 $fssz linear $fsdev 0" || die "dmsetup create kcfs"
defer "umount $KCVM_DIR/eio 2>/dev/null; dmsetup remove --force kcfs; kcvm_mknodes"
kcvm_mknodes
mkfs.ext4 -q /dev/mapper/kcfs || die "mkfs.ext4"
mkdir -p "$KCVM_DIR/eio"
mount /dev/mapper/kcfs "$KCVM_DIR/eio" || die "mount kcfs"
cp -a "$KMSCRYPT_KEYSTORE" "$KCVM_DIR/eio/keystore"
cp -a "$KMSCRYPT_AUDIT_LOG" "$KMSCRYPT_AUDIT_HEAD" "$KCVM_DIR/eio/"
export KMSCRYPT_KEYSTORE="$KCVM_DIR/eio/keystore" KMSCRYPT_AUDIT_LOG="$KCVM_DIR/eio/audit.log" \
        KMSCRYPT_AUDIT_HEAD="$KCVM_DIR/eio/audit.head"
sync
kmscrypt audit verify >/dev/null || die "the copied audit chain does not verify"
kcfs_table() {
        dmsetup suspend kcfs && dmsetup reload kcfs --table "$1" && dmsetup resume kcfs ||
                die "cannot swap kcfs to $1"
}
# Reads and writes fail (error target), then only writes (dm-flakey error_writes).
for t in "0 $fssz error" "0 $fssz flakey $fsdev 0 0 3600 1 error_writes"; do
        what="keystore and audit log on a disk that fails with EIO (${t#* * })"
        kcfs_table "$t"
        kcvm_drop_caches
        fails "attach, $what" kmscrypt attach "$dev"
        fails "key rotate, $what" kmscrypt key rotate alias/a
        umount "$KCVM_DIR/eio" || die "cannot unmount the failed file system"
        kcfs_table "0 $fssz linear $fsdev 0"
        mount /dev/mapper/kcfs "$KCVM_DIR/eio" || die "mount kcfs after the fault"
        intact "$what, then fixed"
done
