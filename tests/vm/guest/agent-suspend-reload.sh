# SPDX-License-Identifier: LGPL-2.1-or-later
# revoke=suspend, then what comes after the suspension without the key:
# - a reload (SIGHUP) that makes the volume revoke=keep while its CMK is
#   still disabled: it stays suspended, and the agent says so ("suspended",
#   not "attached ... kept running"), no KeepVolume record; once the CMK
#   is enabled it is resumed with a fresh unwrap;
# - a suspended volume detached through the agent (`kmscrypt detach`),
#   attached again once its CMK is enabled: nothing of the old suspension
#   is "resumed" into the new mapping (no "key set" dm-crypt refuses, no
#   ResumeVolume records at every check), and its mark is gone;
# - an attach of the suspended volume: refused (status 4) as suspended with
#   its key wiped, not "already attached";
# - its mapping removed without the agent (dmsetup remove): "detached" with
#   the reason, one warning, no check of it at every pass, not attached
#   again until asked.
# kcvm-programs: kmscrypt kmscryptd tests/bench/agent-mkvols tests/bench/agent-vmlib
. /kc/lib.sh
. /kc/bin/agent-vmlib

export KMSCRYPT_STATE_DIR="$KCVM_DIR/state"
agent_key rel
agent_volumes p 1 8 rel "revoke=suspend"
agent_start --revoke-interval 1
set -- $(agent_wait_ready 60)
expect_eq "attached" "$1 of $2" "1 of 1"
kcvm_mknodes
dev=/dev/mapper/p1
log=$KMSCRYPT_AUDIT_LOG
kcvm_pattern before 1048576
dd if=before of="$dev" bs=64k conv=fsync 2>/dev/null || die "write before the suspension failed"

# ---- suspended, then the policy reloaded as keep under the disabled key ----
kmscrypt -q key disable alias/rel || die "cannot disable the CMK"
agent_wait_log 'p1: .*suspended, key wiped' 15
sed -i 's/revoke=suspend/revoke=keep/' "$AGENT_VOLUMES"
kill -HUP "$AGENT_PID"
agent_wait_log 'reloaded .*: [0-9]+ volumes' 30
sleep 3         # a few checks under the new policy
dmsetup info p1 | grep -q '^State: *SUSPENDED' || die "p1 is not suspended any more under a disabled key"
kmscrypt status >status 2>&1 || :
grep -q '^p1: suspended since .*suspended, key wiped' status || die "the agent's state of p1: $(cat status)"
! grep -q 'kept running' status || die "a suspended p1 is said to be kept running: $(cat status)"
expect_eq "KeepVolume records for a suspended volume" "$(grep -c '"KeepVolume"' "$log" || :)" 0
# An attach of it says what status says (suspended, key wiped, why), status 4, not "already attached".
rc=0; kmscrypt attach p1 >attach.out 2>&1 || rc=$?
expect_eq "status of an attach of the suspended p1" "$rc" 4
grep -q 'p1 is attached but suspended, its key wiped by the revocation policy' attach.out ||
        die "the attach of the suspended p1 said: $(cat attach.out)"
dmsetup info p1 | grep -q '^State: *SUSPENDED' || die "p1 is not suspended any more after an attach of it"
kmscrypt -q key enable alias/rel || die "cannot enable the CMK"
agent_wait_log 'p1: .*enabled again; resumed' 15
agent_check_mappings p 1
kcvm_drop_caches
dd if="$dev" of=back bs=64k count=16 2>/dev/null
cmp -s before back || die "data written before the suspension differs after the resume"

# ---- suspended, detached, attached anew: no resume of a suspension gone ----
sed -i 's/revoke=keep/revoke=suspend/' "$AGENT_VOLUMES"
kill -HUP "$AGENT_PID"
agent_wait_log 'reloaded .*: [0-9]+ volumes' 30 2
kmscrypt -q key disable alias/rel || die "cannot disable the CMK"
agent_wait_log 'p1: .*suspended, key wiped' 15 2
kmscrypt detach p1 || die "cannot detach the suspended p1"
[ ! -e "$KMSCRYPT_STATE_DIR/suspended/p1" ] || die "the mark of p1 is left after its detach"
kmscrypt -q key enable alias/rel || die "cannot enable the CMK"
resumes=$(grep -c '"ResumeVolume"' "$log" || :)
kmscrypt -q attach p1 || die "cannot attach p1 again"
sleep 3         # a few checks with the key enabled
! grep -q 'cannot give p1 its key back' "$AGENT_LOG" || die "the agent tried to resume the new mapping of p1"
expect_eq "ResumeVolume records after the new attach" "$(grep -c '"ResumeVolume"' "$log" || :)" "$resumes"
kmscrypt status >status 2>&1 || :
# An attached volume with nothing to report is the mapping's lines alone (print_agent_statuses()).
grep -q '^/dev/mapper/p1 is active' status && ! grep -q '^p1: ' status ||
        die "the agent's state of p1 after the new attach: $(cat status)"
agent_check_mappings p 1

# ---- removed behind the agent's back: detached, said once, not attached again ----
dmsetup remove p1 || die "cannot remove p1 with dmsetup"
agent_wait_log 'p1: mapping p1 was removed without the agent' 15
sleep 3         # a few passes more
expect_eq "warnings about the removed p1" \
        "$(grep -c 'p1: mapping p1 was removed without the agent' "$AGENT_LOG" || :)" 1
# One, when the removal fell between a pass's look at the mappings and its check of p1.
[ "$(grep -c 'p1: revocation check: no mapping' "$AGENT_LOG" || :)" -le 1 ] ||
        die "the agent checks the removed p1 at every pass"
! dmsetup info p1 >/dev/null 2>&1 || die "the agent attached p1 again on its own"
kmscrypt status >status 2>&1 || :
grep -q '^p1: detached since .*removed without the agent' status || die "the agent's state of p1: $(cat status)"
kmscrypt -q attach p1 || die "cannot attach p1 after its removal"
agent_check_mappings p 1
