# SPDX-License-Identifier: LGPL-2.1-or-later
# A kmscrypt volume through stock tools (issue #4, interoperability), with
# 4096- and 512-byte sectors: luksDump lists the token, `cryptsetup status`
# reads the mapping as LUKS2 aes-xts-plain64 with the right sector size,
# the table references the logon key and never shows it, no kmscrypt key
# stays in the kernel, `cryptsetup close` removes the mapping; and (512)
# the recovery passphrase opens the volume with stock cryptsetup to the
# same plaintext, which kmscrypt then reads again.
# kcvm-programs: kmscrypt
. /kc/lib.sh

kcvm_kmscrypt_env
kmscrypt -q key create --alias alias/db || die "kmscrypt key create failed"
printf 'correct horse battery staple\n' >recovery
printf 'correct horse battery staple' >recovery.raw

# field LABEL TEXT: the value after "LABEL:" in `cryptsetup status` output.
field() {
        printf '%s\n' "$2" | sed -n "s/^ *$1: *//p"
}

# interop SECTOR_SIZE [recovery]: the stock tools on a mapping of that
# sector size; with "recovery", the recovery keyslot's plaintext too.
interop() {
        ss=$1 name=vi-$1 rec=vi-rec-$1
        kcvm_loop 20
        dev=$KCVM_LOOP
        if [ "${2:-}" = recovery ]; then
                set -- --recovery-passphrase-file recovery --pbkdf pbkdf2 --pbkdf-force-iterations 1000
        else
                set --
        fi
        kmscrypt -q format "$dev" --key alias/db --context "db-id=db1,volume-id=vol-$ss" \
                --sector-size "$ss" "$@" || die "format ($ss) failed"
        uuid=$(cryptsetup luksUUID "$dev") || die "stock cryptsetup reads no LUKS UUID after format"
        cryptsetup luksDump "$dev" >dump
        grep -q '^  0: kmscrypt$' dump || die "luksDump lists no kmscrypt token: $(sed -n '/^Tokens:/,/^Digests:/p' dump)"

        kmscrypt -q attach "$dev" --name "$name" || die "attach ($ss) failed"
        defer "dmsetup remove $name >/dev/null 2>&1; kcvm_mknodes"
        [ -b "/dev/mapper/$name" ] || die "/dev/mapper/$name missing when attach returned"
        kcvm_no_key kmscrypt:

        st=$(cryptsetup status "$name") || die "cryptsetup status $name failed: $st"
        expect_eq "cryptsetup status type ($ss)" "$(field type "$st")" LUKS2
        expect_eq "cryptsetup status cipher ($ss)" "$(field cipher "$st")" aes-xts-plain64
        # libcryptsetup 2.6 knows a volume key's size from keyslots only:
        # without a recovery keyslot, stock status shows "0 bits".
        [ $# = 0 ] || expect_eq "cryptsetup status keysize ($ss)" "$(field keysize "$st")" "512 bits"
        expect_eq "cryptsetup status sector size ($ss)" "$(field 'sector size' "$st")" "$ss"
        expect_eq "cryptsetup status device ($ss)" "$(field device "$st")" "$dev"
        expect_eq "logical block size ($ss)" "$(blockdev --getss "/dev/mapper/$name")" "$ss"

        table=$(dmsetup table --showkeys "$name")
        case " $table " in
        *" :64:logon:kmscrypt:$uuid "*) ;;
        *) die "table does not reference :64:logon:kmscrypt:$uuid: $table" ;;
        esac
        ! kcvm_has_hex_key "$table" || die "'dmsetup table --showkeys' shows a hex key"
        if [ $# = 0 ]; then
                cryptsetup close "$name" || die "cryptsetup close $name failed"
                kcvm_mknodes
                ! dmsetup info "$name" >/dev/null 2>&1 || die "$name still exists after cryptsetup close"
                kcvm_no_key kmscrypt:
                return 0
        fi

        # 1 MiB of plaintext through kmscrypt's mapping, 1 MiB in.
        kcvm_pattern plain 1048576
        dd if=plain of="/dev/mapper/$name" bs=64k seek=16 conv=fsync 2>/dev/null || die "write through $name failed"
        want=$(sha256sum <plain | cut -d' ' -f1)

        cryptsetup close "$name" || die "cryptsetup close $name failed"
        kcvm_mknodes
        ! dmsetup info "$name" >/dev/null 2>&1 || die "$name still exists after cryptsetup close"
        kcvm_no_key kmscrypt:

        # No KMS from here on: the recovery keyslot alone.
        cryptsetup open --key-file recovery.raw "$dev" "$rec" || die "stock cryptsetup open with the recovery passphrase failed"
        defer "cryptsetup close $rec >/dev/null 2>&1; kcvm_mknodes"
        kcvm_drop_caches
        got=$(dd if="/dev/mapper/$rec" bs=64k skip=16 count=16 2>/dev/null | sha256sum | cut -d' ' -f1)
        expect_eq "plaintext through the recovery keyslot ($ss)" "$got" "$want"
        cryptsetup close "$rec" || die "cryptsetup close $rec failed"

        # And kmscrypt again, removed by kmscrypt this time.
        kmscrypt -q attach "$dev" --name "$name" || die "second attach ($ss) failed"
        kcvm_drop_caches
        got=$(dd if="/dev/mapper/$name" bs=64k skip=16 count=16 2>/dev/null | sha256sum | cut -d' ' -f1)
        expect_eq "plaintext through kmscrypt after stock open ($ss)" "$got" "$want"
        kmscrypt -q detach "$name" || die "detach ($ss) failed"
        [ ! -e "/dev/mapper/$name" ] || die "/dev/mapper/$name left when detach returned"
        kcvm_no_key kmscrypt:
        rm -f plain
}

interop 4096
interop 512 recovery
