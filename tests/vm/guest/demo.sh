# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The README's main job end to end, as an operator would type it: a
# customer master key, a database volume whose data key the KMS generates
# under the volume's encryption context, attached through the kernel
# keyring, a filesystem on it, the audit trail of every use of the key.
# contrib/dev/demo.sh runs this test alone and shows its transcript; on a
# host with device-mapper it runs it on the host itself (KCVM_LIB names
# tests/vm/lib.sh there; the guest has it at /kc/lib.sh).
# kcvm-programs: kmscrypt
. "${KCVM_LIB:-/kc/lib.sh}"

export KMSCRYPT_KEYSTORE=$KCVM_DIR/keystore KMSCRYPT_AUDIT_LOG=$KCVM_DIR/audit.log
CTX=db-id=db-CQYSMDPBRZ7BPMH7Y3RTDG5QY,volume-id=vol-ad8c6542
VOL=vol-ad8c6542
mkdir -p "$KCVM_DIR/mnt"

# Show each command, then run it; any failure fails the demo with its name.
run() {
        echo "# $*"
        "$@" || die "'$*' failed"
}

kcvm_loop 64
defer "umount $KCVM_DIR/mnt 2>/dev/null; kmscrypt detach $VOL >/dev/null 2>&1; kcvm_mknodes"

run kmscrypt key create --alias alias/pgdata --description "PostgreSQL data volumes"
run kmscrypt format "$KCVM_LOOP" --key alias/pgdata --context "$CTX" --label pgdata
run kmscrypt dump "$KCVM_LOOP"
run kmscrypt attach "$KCVM_LOOP" --expect-context "$CTX"
kcvm_mknodes
run kmscrypt status "$VOL"

echo "# mkfs.ext4 /dev/mapper/$VOL && mount && write"
mkfs.ext4 -q "/dev/mapper/$VOL" || die "mkfs.ext4 failed"
mount "/dev/mapper/$VOL" "$KCVM_DIR/mnt" || die "mount failed"
echo "SELECT 'hello from an encrypted volume';" >"$KCVM_DIR/mnt/hello.sql"
sync
grep -q "hello from an encrypted" "$KCVM_LOOP_FILE" && die "plaintext reached the backing device"
echo "(the backing device holds only ciphertext)"

run dmsetup table --showkeys "$VOL"
echo "# grep kmscrypt /proc/keys"
grep kmscrypt /proc/keys && die "a kmscrypt key is left in the kernel keyring"
echo "(none: dm-crypt holds its own copy; userspace never can read it)"

run umount "$KCVM_DIR/mnt"
run kmscrypt detach "$VOL"
kcvm_mknodes
run kmscrypt attach "$KCVM_LOOP"
kcvm_mknodes
run mount -o ro "/dev/mapper/$VOL" "$KCVM_DIR/mnt"
run cat "$KCVM_DIR/mnt/hello.sql"
run umount "$KCVM_DIR/mnt"
run kmscrypt detach "$VOL"
kcvm_mknodes

echo "# a copy of the volume claiming to be another volume is refused:"
kmscrypt attach "$KCVM_LOOP" --expect-context db-id=db-CQYSMDPBRZ7BPMH7Y3RTDG5QY,volume-id=vol-other &&
        die "attach with the wrong expected context succeeded"
run kmscrypt audit list
run kmscrypt audit verify
