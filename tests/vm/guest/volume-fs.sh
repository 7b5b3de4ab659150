# SPDX-License-Identifier: LGPL-2.1-or-later
# A filesystem on a kmscrypt volume survives detach and attach (issue #4):
# mkfs.ext4, files and their checksums, detach, attach, the same checksums.
# Along the way: the default mapping name (the context's volume-id),
# attaching an attached volume reports it without a second mapping, a name
# held by another device is refused, `status --json` and `list --json`
# against what the kernel and the header say, detach of a mounted volume
# refused (status 5), `detach --deferred` completing on unmount; -q prints
# nothing, --json of attach and detach (kmscrypt(8)).
# kcvm-programs: kmscrypt
. /kc/lib.sh

kcvm_kmscrypt_env
kmscrypt --json key create --alias alias/db >key.json || die "kmscrypt key create failed"

# jget KEY FILE: a scalar member of pretty-printed JSON (first match).
jget() {
        sed -n -e "s/^ *\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" -e t \
                -e "s/^ *\"$1\": \([^\",]*\),\{0,1\}\$/\1/p" "$2" | head -n1
}
key_id=$(jget KeyId key.json)
[ -n "$key_id" ] || die "no KeyId in: $(cat key.json)"

name=pgdata
mnt=$KCVM_DIR/mnt
mkdir -p "$mnt"
kcvm_loop 48
dev=$KCVM_LOOP
kmscrypt -q format "$dev" --key alias/db --context "db-id=db1,volume-id=$name" || die "format failed"
uuid=$(cryptsetup luksUUID "$dev")
defer "umount $mnt 2>/dev/null; dmsetup remove $name >/dev/null 2>&1; kcvm_mknodes"

kmscrypt attach "$dev" >out || die "attach failed: $(cat out)"
expect_eq "attach says" "$(cat out)" "$dev attached as /dev/mapper/$name"
[ -b "/dev/mapper/$name" ] || die "/dev/mapper/$name (the context's volume-id) missing after attach"

# ---- the filesystem, first life ----
mkfs.ext4 -q "/dev/mapper/$name" || die "mkfs.ext4 on /dev/mapper/$name failed"
mount -t ext4 "/dev/mapper/$name" "$mnt" || die "mount failed"
mkdir "$mnt/base"
for i in 1 2 3 4; do
        head -c $((i * 100000)) /dev/urandom >"$mnt/base/rel$i"
done
echo "checkpoint" >"$mnt/PG_VERSION"
(cd "$mnt" && find . -type f | LC_ALL=C sort | xargs sha256sum) >sums
[ "$(wc -l <sums)" = 5 ] || die "expected 5 checksummed files: $(cat sums)"

# ---- status while mounted ----
kmscrypt --json status "$name" >status.json || die "status --json failed"
expect_eq "status Name" "$(jget Name status.json)" "$name"
expect_eq "status Device" "$(jget Device status.json)" "$dev"
expect_eq "status LuksUuid" "$(jget LuksUuid status.json)" "$uuid"
expect_eq "status Provider" "$(jget Provider status.json)" local
case $(jget KeyId status.json) in
"$key_id"|"local:$key_id") ;;
*) die "status KeyId '$(jget KeyId status.json)' is not $key_id" ;;
esac
expect_eq "status KeyVersion" "$(jget KeyVersion status.json)" 1
expect_eq "status context db-id" "$(jget db-id status.json)" db1
expect_eq "status context volume-id" "$(jget volume-id status.json)" "$name"
expect_eq "status Cipher" "$(jget Cipher status.json)" aes-xts-plain64
expect_eq "status KeySize" "$(jget KeySize status.json)" 512
expect_eq "status KeyDescription" "$(jget KeyDescription status.json)" "kmscrypt:$uuid"
expect_eq "status SectorSize" "$(jget SectorSize status.json)" "$(blockdev --getss "/dev/mapper/$name")"
expect_eq "status Flags" "$(jget Flags status.json)" "no_read_workqueue,no_write_workqueue"
expect_eq "status ReadOnly" "$(jget ReadOnly status.json)" false
expect_eq "status OpenCount (mounted)" "$(jget OpenCount status.json)" 1
expect_eq "status Size" "$(jget Size status.json)" "$(blockdev --getsz "/dev/mapper/$name")"
expect_eq "status Offset" "$(jget Offset status.json)" $((16 * 2048))
expect_eq "status Size against the device" "$(jget Size status.json)" $(($(blockdev --getsz "$dev") - 16 * 2048))
kmscrypt status "$name" >status.txt || die "status failed"
grep -q "^/dev/mapper/$name is active and is in use" status.txt || die "status text: $(head -n1 status.txt)"

kmscrypt --json list >list.json || die "list --json failed"
expect_eq "list --json" "$(tr -d ' \n' <list.json)" "[\"$name\"]"
expect_eq "list" "$(kmscrypt list)" "$name"
kmscrypt -q status "$name" >out 2>&1 || die "status -q failed: $(cat out)"
expect_eq "status -q prints" "$(cat out)" ""
kmscrypt -q --json list >out 2>&1 || die "list -q --json failed: $(cat out)"
expect_eq "list -q --json prints" "$(cat out)" ""
rc=0
kmscrypt status no-such-volume >out 2>err || rc=$?
expect_eq "status of no such volume: exit status" "$rc" 3
expect_eq "status of no such volume: error lines" "$(wc -l <err)" 1
rc=0
kmscrypt detach no-such-volume 2>err || rc=$?
expect_eq "detach of no such volume: exit status" "$rc" 3

# ---- attached already: reported, no second mapping, under any name ----
maps_before=$(dmsetup ls | wc -l)
kmscrypt attach "$dev" >out 2>&1 || die "attaching an attached volume failed: $(cat out)"
expect_eq "second attach says" "$(cat out)" "$dev is already attached as /dev/mapper/$name"
kmscrypt attach "$dev" --name other >out 2>&1 || die "attaching an attached volume under another name failed: $(cat out)"
expect_eq "attach under another name says" "$(cat out)" "$dev is already attached as /dev/mapper/$name"
kmscrypt --json attach "$dev" >out || die "attach --json of an attached volume failed"
expect_eq "attach --json Name" "$(jget Name out)" "$name"
expect_eq "attach --json AlreadyAttached" "$(jget AlreadyAttached out)" true
expect_eq "mappings after attaching twice" "$(dmsetup ls | wc -l)" "$maps_before"
kcvm_no_key kmscrypt:

# ---- mounted: detach refused, --deferred waits for the unmount ----
rc=0
kmscrypt detach "$name" 2>err || rc=$?
expect_eq "detach of a mounted volume: exit status (busy)" "$rc" 5
grep -q "in use" err || die "detach of a mounted volume: '$(cat err)', expected 'in use'"
kmscrypt detach "$name" --deferred >out || die "detach --deferred failed"
expect_eq "detach --deferred says" "$(cat out)" "$name marked for deferred removal"
dmsetup info "$name" >/dev/null 2>&1 || die "detach --deferred removed a mounted volume at once"
umount "$mnt" || die "umount failed"
! dmsetup info "$name" >/dev/null 2>&1 || die "$name still there after the unmount that should end its deferred removal"
kcvm_mknodes
kcvm_no_key kmscrypt:

# ---- a name held by another device is refused ----
dmsetup create "$name" --table "0 8 error" || die "dmsetup create of an error device failed"
! kmscrypt attach "$dev" 2>err || die "attach took a name held by another device"
grep -q "in use by another device" err || die "name held by another device: '$(cat err)'"
expect_eq "error lines" "$(wc -l <err)" 1
expect_eq "target of $name after the refusal" "$(dmsetup table "$name" | cut -d' ' -f3)" error
dmsetup remove "$name"
kcvm_no_key kmscrypt:

# ---- second life ----
kmscrypt -q attach "$dev" || die "attach after detach failed"
mount -t ext4 -o ro "/dev/mapper/$name" "$mnt" || die "mount after re-attach failed"
(cd "$mnt" && sha256sum -c -s "$KCVM_DIR/sums") || die "checksums differ after detach and attach"
umount "$mnt"
kmscrypt --json detach "$name" >out || die "final detach failed"
expect_eq "detach --json Name" "$(jget Name out)" "$name"
expect_eq "detach --json Deferred" "$(jget Deferred out)" false
kcvm_mknodes
expect_eq "list after detach" "$(kmscrypt list)" ""
kcvm_no_key kmscrypt:
