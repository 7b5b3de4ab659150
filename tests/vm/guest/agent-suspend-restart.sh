# SPDX-License-Identifier: LGPL-2.1-or-later
# revoke=suspend across an agent restart: kmscryptd suspends a volume and
# wipes its key when its CMK is disabled, and remembers that under its
# state directory (KMSCRYPT_STATE_DIR).  Without the agent, `kmscrypt list`
# and `kmscrypt status` still show the volume, "suspended, key wiped".  A
# new agent finds the volume as the old one left it and, once the CMK is
# enabled again, resumes it with a fresh unwrap; data written before reads
# back.  The kernel keyring holds a copy of the mark, which alone does
# (its file lost, as to a full /var), for an agent whose session keyring
# does not link root's user keyring (this test's, as KeyringMode=private
# gives).  A suspension the kernel no longer shows is forgotten.  A CMK
# enabled while no agent ran: the next agent resumes the volume once its
# start is done, whatever its --revoke-interval.
# kcvm-programs: kmscrypt kmscryptd tests/bench/agent-mkvols tests/bench/agent-vmlib
. /kc/lib.sh
. /kc/bin/agent-vmlib

export KMSCRYPT_STATE_DIR="$KCVM_DIR/state"
mark=$KMSCRYPT_STATE_DIR/suspended/r1
agent_key rst
agent_volumes r 1 8 rst "revoke=suspend"
agent_start --revoke-interval 1
set -- $(agent_wait_ready 60)
expect_eq "attached" "$1 of $2" "1 of 1"
kcvm_mknodes
dev=/dev/mapper/r1
kcvm_pattern before 1048576
dd if=before of="$dev" bs=64k conv=fsync 2>/dev/null || die "write before the suspension failed"

kmscrypt -q key disable alias/rst || die "cannot disable the CMK"
agent_wait_log 'r1: .*suspended, key wiped' 15
[ -s "$mark" ] || die "the agent did not remember the suspension in $mark"
expect_eq "remembered dm UUID" "$(cat "$mark")" "$(dmsetup info -c --noheadings -o uuid r1)"
kmark="kmscrypt:suspended:r1:$KMSCRYPT_STATE_DIR"
kid=$(keyctl search @u user "$kmark") || die "no mark $kmark in the user keyring"
expect_eq "the kernel's copy of the mark" "$(keyctl pipe "$kid")" "$(cat "$mark")"
agent_stop
rm -f "$mark"

# ---- no agent: the CLI reads the kernel itself ----
dmsetup info r1 | grep -q '^State: *SUSPENDED' || die "r1 is not suspended after the agent stopped"
expect_eq "kmscrypt list without the agent" "$(kmscrypt list)" "r1"
kmscrypt status r1 >status 2>&1 || die "kmscrypt status r1 failed: $(cat status)"
grep -q '^/dev/mapper/r1 is suspended, key wiped' status || die "status without the agent: $(cat status)"
grep -q 'key location: wiped' status || die "status does not say where the key went: $(cat status)"
grep -q '"volume-id":"r1"' status || die "status lost the token facts of r1: $(cat status)"
kmscrypt --json status >status.json 2>&1 || die "kmscrypt --json status failed: $(cat status.json)"
grep -q '"KeyWiped": *true' status.json || die "JSON status has no KeyWiped: $(cat status.json)"

# ---- a new agent: still revoked, then enabled again ----
agent_start --revoke-interval 1
agent_wait_log 'r1: suspended with its key wiped by the revocation policy before this agent started' 30
kmscrypt status r1 >status 2>&1 || :
grep -q 'suspended.*key wiped' status || die "the new agent's status of r1: $(cat status)"
dmsetup info r1 | grep -q '^State: *SUSPENDED' || die "the new agent resumed r1 while its CMK is disabled"
kmscrypt -q key enable alias/rst || die "cannot enable the CMK"
agent_wait_log 'r1: .*enabled again; resumed' 15
agent_check_mappings r 1
[ ! -e "$mark" ] || die "$mark is left after the resume"
! keyctl search @u user "$kmark" >/dev/null 2>&1 || die "the kernel's mark $kmark is left after the resume"
kcvm_drop_caches
dd if="$dev" of=back bs=64k count=16 2>/dev/null
cmp -s before back || die "data written before the suspension differs after the resume"
expect_eq "the key's state in the table" "$(kmscrypt --json status r1 | grep -c '"KeyWiped": *false')" 1

# ---- a stale memory (resumed by hand meanwhile) is dropped, not acted on ----
agent_stop
printf '%s\n' "$(dmsetup info -c --noheadings -o uuid r1)" >"$mark"
agent_start --revoke-interval 1
set -- $(agent_wait_ready 60)
expect_eq "attached after a stale memory" "$1 of $2" "1 of 1"
i=0
while [ -e "$mark" ]; do
        i=$((i + 1))
        [ "$i" -lt 50 ] || die "the stale $mark was not dropped"
        sleep 0.2
done
! grep -q 'before this agent started' "$AGENT_LOG" || die "the agent took a stale memory for a suspension"
agent_check_mappings r 1

# ---- enabled while no agent ran: a new agent's first revocation pass, run
# once its start's attaches are done, resumes it (not an interval later) ----
kmscrypt -q key disable alias/rst || die "cannot disable the CMK"
agent_wait_log 'r1: .*suspended, key wiped' 15
agent_stop
kmscrypt -q key enable alias/rst || die "cannot enable the CMK"
agent_start --revoke-interval 3600
agent_wait_log 'r1: .*enabled again; resumed' 15
agent_check_mappings r 1
