# SPDX-License-Identifier: LGPL-2.1-or-later
#
# SIGKILL at every step of attach and detach (issue #8): the step list
# below drives the test-only fault hook (lib/fault.h, KC_FAULT_STEP), which
# makes kmscrypt kill itself at that very point.  After each kill: no
# kmscrypt key in the kernel, the mapping in the state the step implies,
# a half-made one removed by the next attach, which succeeds; the data
# reads back with the checksum it was written with; the audit chain
# verifies.  Rewrap's steps are in fault-kill-rewrap.
# kcvm-programs: kmscrypt
. /kc/lib.sh

kcvm_kmscrypt_env
VOL=vol-kill
kmscrypt -q key create --alias alias/a || die "key create a"
kcvm_loop 24
dev=$KCVM_LOOP
defer "dmsetup remove --force $VOL >/dev/null 2>&1; kcvm_mknodes"
kmscrypt -q format "$dev" --key alias/a --context db-id=db-kill,volume-id=$VOL || die "format"
kcvm_seed "$dev" "$VOL"

# live_state: "live", "half-made" (device, no live table) or "none".
live_state() {
        if ! dmsetup info "$VOL" >/dev/null 2>&1; then
                echo none
        elif [ -n "$(dmsetup table "$VOL" 2>/dev/null)" ]; then
                echo live
        else
                echo half-made
        fi
}

# ---- attach: each step, then a plain attach that must succeed ----
for spec in attach:after-unwrap=none attach:after-key-add=none dm-create:after-create=half-made \
        dm-create:after-table-load=half-made attach:after-resume=live; do
        step=${spec%=*}
        kcvm_killed_at "$step" kmscrypt attach "$dev"
        expect_eq "mapping left by a kill at $step" "$(live_state)" "${spec#*=}"
        kmscrypt -q attach "$dev" || die "attach after a kill at $step: $(cat err)"
        kcvm_mknodes
        expect_eq "mapping after attach following a kill at $step" "$(live_state)" live
        dmsetup table "$VOL" | grep -q ":logon:kmscrypt:" || die "after $step: table references no logon key"
        kcvm_check_seed "attach after a kill at $step" "$VOL"
        kmscrypt -q detach "$VOL" || die "detach after $step"
        kcvm_mknodes
        echo "attach killed at $step: left $(echo "${spec#*=}"), next attach fine"
done

# ---- detach ----
kmscrypt -q attach "$dev" || die "attach before detach kills"
kcvm_mknodes
kcvm_killed_at detach:before-remove kmscrypt detach "$VOL"
expect_eq "mapping after a kill before remove" "$(live_state)" live
kcvm_check_seed "after a detach killed before remove" "$VOL"
kcvm_killed_at detach:after-remove kmscrypt detach "$VOL"
kcvm_mknodes
expect_eq "mapping after a kill after remove" "$(live_state)" none
echo "detach killed before and after remove: mapping kept, then gone"

kmscrypt audit verify >/dev/null || die "audit chain broken by the kills: $(kmscrypt audit verify 2>&1)"
kcvm_no_key kmscrypt:
