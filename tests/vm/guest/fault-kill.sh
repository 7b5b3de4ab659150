# SPDX-License-Identifier: LGPL-2.1-or-later
#
# SIGKILL at every step of attach, rewrap and detach (issues #7, #8): the
# step list below drives the test-only fault hook (lib/fault.h,
# KC_FAULT_STEP), which makes kmscrypt kill itself at that very point.
# After each kill: no kmscrypt key in the kernel, no mapping the kill left
# half-made survives the next attach, which succeeds; the header holds the
# old token (kill before the write) or the new one (after it); the data
# reads back with the checksum it was written with; the audit chain verifies.
# kcvm-programs: kmscrypt
. /kc/lib.sh

kcvm_kmscrypt_env
VOL=vol-kill
kmscrypt -q key create --alias alias/a || die "key create a"
kmscrypt -q key create --alias alias/b || die "key create b"
kcvm_loop 24
dev=$KCVM_LOOP
defer "dmsetup remove --force $VOL >/dev/null 2>&1; kcvm_mknodes"
kmscrypt -q format "$dev" --key alias/a --context db-id=db-kill,volume-id=$VOL || die "format"
key_a=$(kmscrypt --json dump "$dev" | sed -n 's/.*"key_id": "\(.*\)".*/\1/p')

# 1 MiB of random data through the mapping; its checksum is the reference.
kmscrypt -q attach "$dev" || die "first attach"
kcvm_mknodes
kcvm_seed "$VOL"
kmscrypt -q detach "$VOL" || die "first detach"
kcvm_mknodes

# killed_at STEP COMMAND...: COMMAND dies of SIGKILL at STEP (so the step exists and was reached).
killed_at() {
        _step=$1
        shift
        _rc=0
        KC_FAULT_STEP=$_step "$@" >out 2>err || _rc=$?
        expect_eq "exit status of '$*' killed at $_step" "$_rc" 137
        kcvm_no_key kmscrypt:
}

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
        killed_at "$step" kmscrypt attach "$dev"
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
killed_at detach:before-remove kmscrypt detach "$VOL"
expect_eq "mapping after a kill before remove" "$(live_state)" live
kcvm_check_seed "after a detach killed before remove" "$VOL"
killed_at detach:after-remove kmscrypt detach "$VOL"
kcvm_mknodes
expect_eq "mapping after a kill after remove" "$(live_state)" none
echo "detach killed before and after remove: mapping kept, then gone"

# ---- rewrap, while attached: before the write the old token stays, after it the new one ----
kmscrypt -q attach "$dev" || die "attach before rewrap kills"
kcvm_mknodes
token_key() { kmscrypt --json dump "$dev" | sed -n 's/.*"key_id": "\(.*\)".*/\1/p'; }
for spec in rewrap:after-reencrypt=old rewrap:after-prove=old rewrap:after-write=new; do
        step=${spec%=*}
        before=$(token_key)
        if [ "$before" = "$key_a" ]; then to=alias/b; else to=alias/a; fi
        killed_at "$step" kmscrypt rewrap "$dev" --key "$to"
        after=$(token_key)
        if [ "${spec#*=}" = old ]; then
                expect_eq "token key after a rewrap killed at $step" "$after" "$before"
        else
                [ "$after" != "$before" ] || die "token key after a rewrap killed at $step: still the old $before"
        fi
        kmscrypt rewrap "$dev" --dry-run --always >/dev/null || die "after a rewrap killed at $step: token does not open the volume"
        kcvm_check_seed "attached volume after a rewrap killed at $step" "$VOL"
        echo "rewrap killed at $step: token has the ${spec#*=} key"
done
kmscrypt -q detach "$VOL" || die "detach after rewrap kills"
kcvm_mknodes
kmscrypt -q attach "$dev" || die "attach with the token the rewrap kills left"
kcvm_mknodes
kcvm_check_seed "re-attach after rewrap kills" "$VOL"
kmscrypt -q detach "$VOL"
kcvm_mknodes

kmscrypt audit verify >/dev/null || die "audit chain broken by the kills: $(kmscrypt audit verify 2>&1)"
kcvm_no_key kmscrypt:
