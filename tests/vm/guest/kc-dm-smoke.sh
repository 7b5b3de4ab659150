# SPDX-License-Identifier: LGPL-2.1-or-later
#
# dm-crypt through project code only: kc-dm-smoke adds a random 64-byte
# logon key (kernel-keyring/), builds the table and creates the mapping
# (dmsetup-helpers/), unlinks the key; data written through the mapping
# reads back and is ciphertext on the backing device; the table references
# the key and never shows it; kc_dm_remove removes the mapping; no key
# is left in the kernel.
# kcvm-programs: tests/vm/kc-dm-smoke
. /kc/lib.sh

name=kcvm-smoke
kcvm_loop 16
defer "kc-dm-smoke remove $name >/dev/null 2>&1; kcvm_mknodes"
kc-dm-smoke create "$name" "$KCVM_LOOP" >created || die "kc-dm-smoke create failed"
# Without udev, kc_dm_create has libdevmapper make the node itself.
[ -b "/dev/mapper/$name" ] || die "/dev/mapper/$name missing when kc_dm_create returned"
desc=$(kv description created)
case $desc in kmscrypt:*) ;; *) die "key description '$desc' lacks the kmscrypt: prefix" ;; esac

# The key was unlinked right after the table load: dm-crypt holds its own copy.
kcvm_no_key kmscrypt:
kcvm_roundtrip "/dev/mapper/$name" "$KCVM_LOOP_FILE" 2

set -- $(dmsetup table --showkeys "$name")
expect_eq "table start and length" "$1 $2" "0 $(blockdev --getsz "$KCVM_LOOP")"
expect_eq "target" "$3" crypt
expect_eq "cipher" "$4" aes-xts-plain64
expect_eq "key field of 'dmsetup table --showkeys'" "$5" ":64:logon:$desc"
expect_eq "backing device" "$7" "$(cat "/sys/block/${KCVM_LOOP#/dev/}/dev")"
table="$*"
! kcvm_has_hex_key "$table" || die "'dmsetup table --showkeys' shows a hex key: $table"
expect_eq "kc_dm_table against the kernel's table" "$(kc-dm-smoke table "$name")" "$(dmsetup table "$name" | cut -d' ' -f3-)"

kc-dm-smoke remove "$name" || die "kc-dm-smoke remove failed"
! dmsetup info "$name" >/dev/null 2>&1 || die "$name still exists after kc_dm_remove"
[ ! -e "/dev/mapper/$name" ] || die "/dev/mapper/$name left when kc_dm_remove returned"
kcvm_no_key kmscrypt:
