# SPDX-License-Identifier: LGPL-2.1-or-later
# `kmscrypt attach` options reach the real mapping (issue #4): --read-only
# (the kernel refuses writes, no sector of the device is written, status
# says so), --allow-discards and --perf-options (the table's optional
# flags, and the defaults without them); a volume named by UUID=, LABEL=,
# PARTUUID= or PARTLABEL= maps that very device, also beside a suspended
# dm-crypt mapping (which the lookup must not read), an unknown one fails
# and leaves nothing;
# and a device another holder has open exclusively (as a mounted file
# system does) is refused with no mapping, empty or not, and no key left.
# kcvm-programs: kmscrypt tests/vm/kc-dm-smoke
. /kc/lib.sh

kcvm_kmscrypt_env
kmscrypt -q key create --alias alias/db || die "kmscrypt key create failed"
defer "dmsetup remove kcopt >/dev/null 2>&1; dmsetup remove kcbad >/dev/null 2>&1; kcvm_mknodes"

kcvm_loop 20
dev=$KCVM_LOOP
kmscrypt -q format "$dev" --key alias/db --context db-id=db1,volume-id=vol-o --label pgopt ||
        die "format failed"
uuid=$(cryptsetup luksUUID "$dev") || die "cryptsetup luksUUID failed"
majmin=$(cat "/sys/class/block/${dev#/dev/}/dev")

# table_of NAME: the optional parameters of its crypt table (after the 8th field).
opts_of() { dmsetup table "$1" | cut -d' ' -f9-; }
# device_of NAME: the MAJ:MIN its crypt table maps.
device_of() { dmsetup table "$1" | cut -d' ' -f7; }

# ---- read-only ----
written=$(kcvm_written "$dev")
kmscrypt -q attach "$dev" --name kcopt --read-only || die "attach --read-only failed"
kcvm_mknodes
expect_eq "read-only: blockdev --getro" "$(blockdev --getro /dev/mapper/kcopt)" 1
dmsetup info kcopt | grep -q '^State: *ACTIVE (READ-ONLY)' || die "read-only: $(dmsetup info kcopt | grep State)"
! dd if=/dev/zero of=/dev/mapper/kcopt bs=4k count=1 oflag=direct 2>/dev/null ||
        die "read-only: a write to the mapping succeeded"
kmscrypt status kcopt --json >status || die "status --json kcopt failed"
grep -q '"ReadOnly": *true' status || die "read-only: status says $(grep ReadOnly status)"
expect_eq "read-only: sectors written to the device" "$(kcvm_written "$dev")" "$written"
kmscrypt -q detach kcopt || die "detach failed"

# ---- the table's optional flags ----
kmscrypt -q attach "$dev" --name kcopt || die "attach failed"
case " $(opts_of kcopt) " in
*" no_read_workqueue no_write_workqueue "*) ;;
*) die "default flags: the table has '$(opts_of kcopt)'" ;;
esac
case " $(opts_of kcopt) " in *allow_discards*) die "default flags allow discards: $(opts_of kcopt)" ;; esac
kmscrypt -q detach kcopt || die "detach failed"

kmscrypt -q attach "$dev" --name kcopt --allow-discards --perf-options none || die "attach --allow-discards failed"
o=" $(opts_of kcopt) "
case $o in *" allow_discards "*) ;; *) die "--allow-discards: the table has '$o'" ;; esac
case $o in
*workqueue*|*same_cpu_crypt*|*submit_from_crypt_cpus*) die "--perf-options none: the table has '$o'" ;;
esac
kmscrypt -q detach kcopt || die "detach failed"

# ---- by UUID= and LABEL= ----
kmscrypt -q attach "UUID=$uuid" --name kcopt || die "attach UUID=$uuid failed"
expect_eq "UUID=: the device mapped" "$(device_of kcopt)" "$majmin"
kmscrypt -q detach kcopt || die "detach failed"
kmscrypt -q attach LABEL=pgopt --name kcopt || die "attach LABEL=pgopt failed"
expect_eq "LABEL=: the device mapped" "$(device_of kcopt)" "$majmin"
kmscrypt -q detach kcopt || die "detach failed"
kcvm_fails "attach of an unknown UUID" kmscrypt attach UUID=00000000-0000-4000-8000-000000000000 --name kcbad
grep -qF "no device with UUID=00000000-0000-4000-8000-000000000000" err || die "unknown UUID: $(cat err)"

# ---- by tag beside a suspended dm-crypt mapping ----
# No udev here: a tag is found by probing every block device.  A read of a
# suspended mapping would block for good (SIGKILL too), as the agent's did
# with a revoke=suspend volume suspended and an absent UUID= to look for.
kcvm_loop 20
other=$KCVM_LOOP
kmscrypt -q format "$other" --key alias/db --context db-id=db1,volume-id=vol-s || die "format of the other volume failed"
kmscrypt -q attach "$other" --name kcsus || die "attach of the other volume failed"
defer "dmsetup resume kcsus >/dev/null 2>&1; dmsetup remove kcsus >/dev/null 2>&1; kcvm_mknodes"
dmsetup suspend kcsus || die "dmsetup suspend kcsus failed"
# within WHAT COMMAND...: COMMAND's exit status, or die if it has not ended after 30 s.
within() {
        _what=$1
        shift
        "$@" >out 2>err &
        _pid=$!
        _i=0
        while kill -0 "$_pid" 2>/dev/null; do
                _i=$((_i + 1))
                [ "$_i" -lt 300 ] || die "$_what: still running after 30 s, blocked on the suspended mapping?"
                sleep 0.1
        done
        wait "$_pid"
}
within "attach UUID= beside a suspended mapping" kmscrypt -q attach "UUID=$uuid" --name kcopt ||
        die "attach UUID=$uuid beside a suspended mapping failed: $(cat err)"
expect_eq "UUID= beside a suspended mapping: the device mapped" "$(device_of kcopt)" "$majmin"
kmscrypt -q detach kcopt || die "detach failed"
within "attach LABEL= beside a suspended mapping" kmscrypt -q attach LABEL=pgopt --name kcopt ||
        die "attach LABEL=pgopt beside a suspended mapping failed: $(cat err)"
kmscrypt -q detach kcopt || die "detach failed"
! within "attach of an unknown UUID beside a suspended mapping" \
        kmscrypt attach UUID=00000000-0000-4000-8000-000000000000 --name kcbad || die "attach of an unknown UUID succeeded"
grep -qF "no device with UUID=00000000-0000-4000-8000-000000000000" err || die "unknown UUID: $(cat err)"
# PARTUUID= and PARTLABEL=: a GPT partition's entry, read from the table of its disk.
truncate -s 40M "$KCVM_DIR/gpt.img"
printf 'label: gpt\nsize=32M, type=L, name=kc-part\n' | sfdisk -q "$KCVM_DIR/gpt.img" || die "sfdisk failed"
gpt=$(losetup --find --show --partscan "$KCVM_DIR/gpt.img") || die "losetup --partscan failed"
defer "losetup -d $gpt; rm -f $KCVM_DIR/gpt.img"
defer "dmsetup remove kcpart >/dev/null 2>&1; kcvm_mknodes"
kcvm_wait_for "[ -b ${gpt}p1 ]" "no ${gpt}p1 after losetup --partscan"
kmscrypt -q format "${gpt}p1" --key alias/db --context db-id=db1,volume-id=vol-p || die "format of the partition failed"
partuuid=$(blkid -p -s PART_ENTRY_UUID -o value "${gpt}p1") || die "blkid finds no PART_ENTRY_UUID"
pmm=$(cat "/sys/class/block/${gpt#/dev/}p1/dev")
for tag in "PARTUUID=$partuuid" PARTLABEL=kc-part; do
        within "attach $tag beside a suspended mapping" kmscrypt -q attach "$tag" --name kcpart ||
                die "attach $tag beside a suspended mapping failed: $(cat err)"
        expect_eq "$tag: the device mapped" "$(device_of kcpart)" "$pmm"
        kmscrypt -q detach kcpart || die "detach failed"
done
dmsetup info kcsus | grep -q '^State: *SUSPENDED' || die "kcsus is no longer suspended"
dmsetup resume kcsus || die "dmsetup resume kcsus failed"
kmscrypt -q detach kcsus || die "detach of kcsus failed"
kcvm_mknodes

# ---- a device another holder has open exclusively ----
kc-dm-smoke hold "$dev" >held &
holder=$!
defer "kill $holder 2>/dev/null"
i=0
until grep -q held held; do
        i=$((i + 1))
        [ "$i" -lt 100 ] || die "kc-dm-smoke hold never held $dev"
        sleep 0.1
done
kcvm_attach_refused "device held open exclusively" "$dev" "busy"
dmsetup info kcbad >/dev/null 2>&1 && die "an (empty) kcbad mapping was left behind"
kill "$holder"
wait "$holder" 2>/dev/null || :
kmscrypt -q attach "$dev" --name kcopt || die "attach failed once the holder let go"
kmscrypt -q detach kcopt || die "detach failed"
kcvm_no_key kmscrypt:
