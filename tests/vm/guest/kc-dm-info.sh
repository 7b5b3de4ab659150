# SPDX-License-Identifier: LGPL-2.1-or-later
#
# kc_dm_info against the kernel: existence, size, target, dm UUID, device
# number and the open count as holders come and go; kc_dm_remove refuses
# an open device, and a deferred remove completes on the last close.
# kcvm-programs: tests/vm/kc-dm-smoke
. /kc/lib.sh

name=kcvm-info
kcvm_loop 8
defer "kc-dm-smoke remove $name >/dev/null 2>&1; kcvm_mknodes"
kc-dm-smoke create "$name" "$KCVM_LOOP" >created || die "kc-dm-smoke create failed"
kcvm_mknodes

kc-dm-smoke info "$name" >info || die "kc-dm-smoke info failed"
expect_eq exists "$(kv exists info)" 1
expect_eq size "$(kv size info)" "$(blockdev --getsz "$KCVM_LOOP")"
expect_eq "size against the created mapping" "$(kv size info)" "$(kv size created)"
expect_eq target "$(kv target info)" crypt
expect_eq uuid "$(kv uuid info)" "$(kv dm_uuid created)"
case $(kv uuid info) in CRYPT-LUKS2-*-"$name") ;; *) die "dm UUID '$(kv uuid info)' is not CRYPT-LUKS2-<uuid>-$name" ;; esac
expect_eq suspended "$(kv suspended info)" 0
expect_eq read_only "$(kv read_only info)" 0
dm=$(kcvm_dm_node "$name")
expect_eq "major:minor" "$(kv major info):$(kv minor info)" "$(cat "/sys/block/$dm/dev")"
expect_eq "open count, closed" "$(kv open_count info)" 0

exec 3<"/dev/mapper/$name"
expect_eq "open count, one holder" "$(kc-dm-smoke info "$name" | sed -n 's/^open_count=//p')" 1
exec 4<"/dev/mapper/$name"
expect_eq "open count, two holders" "$(kc-dm-smoke info "$name" | sed -n 's/^open_count=//p')" 2

! kc-dm-smoke remove "$name" 2>err || die "kc_dm_remove removed a device that is open"
grep -q 'busy' err || die "kc_dm_remove of an open device: $(cat err), expected busy"
exec 4<&-
kc-dm-smoke remove "$name" deferred || die "deferred kc_dm_remove failed"
expect_eq "still there while open" "$(kc-dm-smoke info "$name" | sed -n 's/^exists=//p')" 1
exec 3<&-
expect_eq "gone after the last close" "$(kc-dm-smoke info "$name")" "exists=0"
kcvm_mknodes
kcvm_no_key kmscrypt:
