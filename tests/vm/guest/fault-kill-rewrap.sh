# SPDX-License-Identifier: LGPL-2.1-or-later
#
# SIGKILL at every step of rewrap while the volume is attached (issues #7,
# #8), driven by the test-only fault hook (lib/fault.h, KC_FAULT_STEP):
# after ReEncrypt, between the proof and the header write, after the
# write.  A kill before the write leaves the old token, after it the new
# one, which opens the volume; no kmscrypt key stays in the kernel; after
# the kills the volume re-attaches and its data checksums as written; the
# audit chain verifies, also after a kill between an audit log line and
# the chain head's update (audit:after-append).
# kcvm-programs: kmscrypt
. /kc/lib.sh

kcvm_kmscrypt_env
VOL=vol-kill-rw
kmscrypt -q key create --alias alias/a || die "key create a"
kmscrypt -q key create --alias alias/b || die "key create b"
kcvm_loop 24
dev=$KCVM_LOOP
defer "dmsetup remove --force $VOL >/dev/null 2>&1; kcvm_mknodes"
kmscrypt -q format "$dev" --key alias/a --context db-id=db-kill,volume-id=$VOL || die "format"
key_a=$(kmscrypt --json dump "$dev" | sed -n 's/.*"KeyId": "\(.*\)".*/\1/p')
kcvm_seed "$dev" "$VOL"

# ---- rewrap, while attached: before the write the old token stays, after it the new one ----
kmscrypt -q attach "$dev" || die "attach before rewrap kills"
kcvm_mknodes
token_key() { kmscrypt --json dump "$dev" | sed -n 's/.*"KeyId": "\(.*\)".*/\1/p'; }
before=$(token_key)
for spec in rewrap:after-reencrypt=old rewrap:after-prove=old rewrap:after-write=new; do
        step=${spec%=*}
        if [ "$before" = "$key_a" ]; then to=alias/b; else to=alias/a; fi
        kcvm_killed_at "$step" kmscrypt rewrap "$dev" --key "$to"
        after=$(token_key)
        if [ "${spec#*=}" = old ]; then
                expect_eq "token key after a rewrap killed at $step" "$after" "$before"
        else
                [ "$after" != "$before" ] || die "token key after a rewrap killed at $step: still the old $before"
                # The new token unwraps to the key the LUKS2 digest accepts.
                kmscrypt rewrap "$dev" --dry-run --always >/dev/null ||
                        die "after a rewrap killed at $step: the new token does not open the volume"
        fi
        before=$after
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

# ---- the audit chain killed between its log line and its head ----
records() { kmscrypt audit verify | sed -n 's/.*: \([0-9]*\) records.*/\1/p'; }
n0=$(records)
kcvm_killed_at audit:after-append kmscrypt key create --alias alias/k
kmscrypt audit verify >out 2>err || die "audit chain after a kill between log and head: $(cat out err)"
n1=$(records)
# The first record of a create is its intent (written ahead): the kill came before the keystore was touched.
if [ "$n1" -gt "$n0" ]; then
        tail -n 1 "$KMSCRYPT_AUDIT_LOG" | grep -q '"operation":"CreateKey".*"result":"pending"' ||
                die "the record the kill kept is not CreateKey's intent: $(tail -n 1 "$KMSCRYPT_AUDIT_LOG")"
fi
! kmscrypt -q key describe alias/k 2>/dev/null || die "alias/k exists though its create was killed before the keystore"
kmscrypt -q key list >/dev/null || die "key list after the kill"
n2=$(records)
# verify itself is not audited; describe (refused) and list add one record each after whatever the kill left.
expect_eq "records after the next audited calls" "$n2" $((n1 + 2))
echo "audit killed between log line and head: $((n1 - n0)) record(s) kept, chain verifies, next record chains on"
