# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Baseline with stock tools only (keyctl, dmsetup): a logon key referenced
# from a dm-crypt table works in this guest.  When this passes and a test
# of project code fails, the fault is in the project, not the guest.
. /kc/lib.sh

desc=kmscrypt:kcvm-baseline
name=kcvm-baseline
kcvm_loop 16
sectors=$(blockdev --getsz "$KCVM_LOOP")

serial=$(head -c 64 /dev/urandom | keyctl padd logon "$desc" @s) || die "keyctl padd logon failed"
defer "keyctl unlink $serial @s >/dev/null 2>&1"
dmsetup create "$name" --table "0 $sectors crypt aes-xts-plain64 :64:logon:$desc 0 $KCVM_LOOP 0 2 no_read_workqueue no_write_workqueue" ||
        die "dmsetup create with a logon key reference failed"
defer "dmsetup remove $name; kcvm_mknodes"
keyctl unlink "$serial" @s >/dev/null
kcvm_mknodes

[ -b "/dev/mapper/$name" ] || die "/dev/mapper/$name missing after dmsetup create"
kcvm_roundtrip "/dev/mapper/$name" "$KCVM_LOOP_FILE" 1

table=$(dmsetup table --showkeys "$name")
case $table in
*" :64:logon:$desc "*) ;;
*) die "table does not reference the logon key: $table" ;;
esac
! kcvm_has_hex_key "$table" || die "table shows a hex key"
grep -q xts-aes-aesni /proc/crypto || die "xts-aes-aesni not registered: no AES-NI fast path"
kcvm_no_key "$desc"
