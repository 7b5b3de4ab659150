# SPDX-License-Identifier: LGPL-2.1-or-later
# A volume copied block for block (a snapshot) attaches under the same CMK
# and reads the same plaintext, beside its original (same LUKS UUID, other
# device) as well as alone; `--expect-context` naming another volume-id
# refuses it, leaving no mapping and no key.  Attached at once under their
# shared default name, one of the two gets it.
# kcvm-programs: kmscrypt
. /kc/lib.sh

kcvm_kmscrypt_env
kmscrypt -q key create --alias alias/db || die "kmscrypt key create failed"

sum() { dd if="$1" bs=64k skip=16 count=16 2>/dev/null | sha256sum | cut -d' ' -f1; }

kcvm_loop 20
orig=$KCVM_LOOP orig_file=$KCVM_LOOP_FILE
kmscrypt -q format "$orig" --key alias/db --context db-id=db1,volume-id=vol-a || die "format failed"
defer "dmsetup remove vol-a >/dev/null 2>&1; dmsetup remove vol-a-snap >/dev/null 2>&1; kcvm_mknodes"
kmscrypt -q attach "$orig" || die "attach of the original failed"
kcvm_pattern plain 1048576
dd if=plain of=/dev/mapper/vol-a bs=64k seek=16 conv=fsync 2>/dev/null || die "write through vol-a failed"
want=$(sha256sum <plain | cut -d' ' -f1)

# The snapshot: every block of the device, header and ciphertext, taken
# while the original is attached (what a storage snapshot does).
kcvm_loop 20
snap=$KCVM_LOOP
kcvm_drop_caches
dd if="$orig" of="$snap" bs=1M 2>/dev/null || die "copying $orig to $snap failed"
expect_eq "LUKS UUID of the snapshot" "$(cryptsetup luksUUID "$snap")" "$(cryptsetup luksUUID "$orig")"

# Refused under another volume's context, with the original attached or not.
refuse() {
        ! kmscrypt attach "$snap" --name vol-a-snap --expect-context db-id=db1,volume-id=vol-b 2>err ||
                die "a snapshot of vol-a attached while vol-b was expected"
        expect_eq "error lines" "$(wc -l <err)" 1
        grep -q 'bound to context .*vol-a.*expected .*vol-b' err || die "refusal says: $(cat err)"
        ! dmsetup info vol-a-snap >/dev/null 2>&1 || die "a refused attach left vol-a-snap behind"
        kcvm_no_key kmscrypt:
}
refuse

# Beside the original: another device, so another volume, not "already attached".
kmscrypt attach "$snap" --name vol-a-snap --expect-context db-id=db1,volume-id=vol-a >out 2>&1 ||
        die "attach of the snapshot beside its original failed: $(cat out)"
expect_eq "attach of the snapshot says" "$(cat out)" "$snap attached as /dev/mapper/vol-a-snap"
set -- $(dmsetup table vol-a-snap)
expect_eq "backing device of vol-a-snap" "$7" "$(cat "/sys/block/${snap#/dev/}/dev")"
expect_eq "plaintext of the snapshot" "$(sum /dev/mapper/vol-a-snap)" "$want"
kmscrypt -q detach vol-a-snap || die "detach vol-a-snap failed"
kmscrypt -q detach vol-a || die "detach vol-a failed"
kcvm_mknodes

# Alone, under its default name (the original's volume-id: same context).
refuse
kmscrypt -q attach "$snap" || die "attach of the snapshot alone failed"
kcvm_drop_caches
expect_eq "plaintext of the snapshot, alone" "$(sum /dev/mapper/vol-a)" "$want"
set -- $(dmsetup table vol-a)
expect_eq "backing device of vol-a" "$7" "$(cat "/sys/block/${snap#/dev/}/dev")"
kmscrypt -q detach vol-a || die "detach failed"
kcvm_mknodes
kcvm_no_key kmscrypt:

# The original and the snapshot at once, under their shared default name:
# one attaches, the other is refused (the name is another device's), and
# the mapping reads from the device whose attach succeeded.  Attaches of
# one name take turns; racing, one could resume the other's table and
# both report success.
for round in 1 2 3 4 5 6 7 8; do
        kmscrypt -q attach "$orig" 2>err-orig & a=$!
        kmscrypt -q attach "$snap" 2>err-snap & b=$!
        ok=0 winner=
        wait $a && ok=$((ok + 1)) winner=$orig
        wait $b && ok=$((ok + 1)) winner=$snap
        expect_eq "round $round: attaches that succeeded" "$ok" 1
        cat err-orig err-snap >err
        grep -q 'is in use by another device' err || die "round $round: the loser says: $(cat err)"
        kcvm_mknodes
        set -- $(dmsetup table vol-a)
        expect_eq "round $round: backing device of vol-a" "$7" "$(cat "/sys/block/${winner#/dev/}/dev")"
        kmscrypt -q detach vol-a || die "round $round: detach failed"
        kcvm_mknodes
done
kcvm_no_key kmscrypt:
