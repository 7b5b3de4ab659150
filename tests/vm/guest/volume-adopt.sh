# SPDX-License-Identifier: LGPL-2.1-or-later
# A LUKS2 volume made and filled by stock cryptsetup is adopted (its volume
# key wrapped under a CMK, stored in a kmscrypt token), attaches through
# kmscrypt to the same plaintext, its ciphertext untouched by the adoption,
# and its passphrase keyslot still opens it with stock cryptsetup.
# kcvm-programs: kmscrypt
. /kc/lib.sh

kcvm_kmscrypt_env
kmscrypt -q key create --alias alias/db || die "kmscrypt key create failed"

# region DEVICE: sha256 of 1 MiB at 1 MiB into a mapping.
region() { dd if="$1" bs=64k skip=16 count=16 2>/dev/null | sha256sum | cut -d' ' -f1; }
# ciphertext DEVICE: sha256 of everything past the 16 MiB LUKS2 header.
ciphertext() { dd if="$1" bs=1M skip=16 2>/dev/null | sha256sum | cut -d' ' -f1; }

kcvm_loop 20
dev=$KCVM_LOOP
printf 'stock passphrase' >pass
cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
        --key-file pass "$dev" || die "stock luksFormat failed"
cryptsetup open --key-file pass "$dev" stock || die "stock open failed"
defer "dmsetup remove stock >/dev/null 2>&1; dmsetup remove vol-ad >/dev/null 2>&1; kcvm_mknodes"
kcvm_pattern plain 1048576
dd if=plain of=/dev/mapper/stock bs=64k seek=16 conv=fsync 2>/dev/null || die "write through stock failed"
want=$(sha256sum <plain | cut -d' ' -f1)
cryptsetup close stock
kcvm_drop_caches
data_before=$(ciphertext "$dev")

kmscrypt -q adopt "$dev" --key alias/db --context db-id=db1,volume-id=vol-ad --key-file pass ||
        die "kmscrypt adopt failed"
cryptsetup luksDump "$dev" >dump
grep -q '^  [0-9]*: kmscrypt$' dump || die "luksDump lists no kmscrypt token after adopt"
grep -q '^  [0-9]*: luks2$' dump || die "adopt removed the passphrase keyslot without --remove-passphrase"
kcvm_drop_caches
expect_eq "ciphertext after adopt" "$(ciphertext "$dev")" "$data_before"

kmscrypt -q attach "$dev" --expect-context db-id=db1,volume-id=vol-ad || die "attach of the adopted volume failed"
[ -b /dev/mapper/vol-ad ] || die "/dev/mapper/vol-ad missing after attach"
expect_eq "plaintext through kmscrypt" "$(region /dev/mapper/vol-ad)" "$want"
table=$(dmsetup table --showkeys vol-ad)
case " $table " in
*" :64:logon:kmscrypt:$(cryptsetup luksUUID "$dev") "*) ;;
*) die "table of the adopted volume does not reference its logon key: $table" ;;
esac
kcvm_no_key kmscrypt:
kmscrypt -q detach vol-ad || die "detach failed"

cryptsetup open --key-file pass "$dev" stock || die "the kept passphrase keyslot no longer opens the volume"
expect_eq "plaintext through stock cryptsetup after adopt" "$(region /dev/mapper/stock)" "$want"
cryptsetup close stock
kcvm_mknodes
kcvm_no_key kmscrypt:
