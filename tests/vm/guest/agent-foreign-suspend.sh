# SPDX-License-Identifier: LGPL-2.1-or-later
# A volume that `cryptsetup luksSuspend` left suspended (its key wiped)
# before kmscryptd started, under revoke=suspend:
# - the agent's state says suspended, not by the agent, as `kmscrypt
#   status` shows it, not "attached";
# - with its CMK disabled and enabled again, the agent neither claims the
#   suspension (no mark, no SuspendVolume record) nor resumes it;
# - once `cryptsetup luksResume` gives it its key back (a key of
#   cryptsetup's own: no kmscrypt mapping any more), a pass finds it
#   running, and kmscrypt status shows the agent's "attached" line for it.
# kcvm-programs: kmscrypt kmscryptd tests/bench/agent-mkvols tests/bench/agent-vmlib
. /kc/lib.sh
. /kc/bin/agent-vmlib

export KMSCRYPT_STATE_DIR="$KCVM_DIR/state"
agent_key fs
agent_volumes p 1 8 fs "revoke=suspend" -k
log=$KMSCRYPT_AUDIT_LOG
dev=$(agent_device p1)
kmscrypt -q attach "$dev" --name p1 || die "cannot attach p1 without the agent"
cryptsetup luksSuspend p1 || die "cryptsetup luksSuspend p1 failed"

agent_start --revoke-interval 1
agent_wait_ready 60 >/dev/null
agent_wait_log 'p1: suspended, key wiped, not by this agent' 15
kmscrypt status >status 2>&1 || :
grep -q '^p1: suspended since .*not by this agent' status || die "the agent's state of p1: $(cat status)"

kmscrypt -q key disable alias/fs || die "cannot disable the CMK"
sleep 3         # a few passes under the disabled key
[ ! -e "$KMSCRYPT_STATE_DIR/suspended/p1" ] || die "the agent marked p1's suspension as its own"
expect_eq "SuspendVolume records" "$(grep -c '"SuspendVolume"' "$log" || :)" 0
kmscrypt -q key enable alias/fs || die "cannot enable the CMK"
sleep 3         # a few passes with the key enabled
dmsetup info p1 | grep -q '^State: *SUSPENDED' || die "the agent resumed a suspension that was not its own"
expect_eq "ResumeVolume records" "$(grep -c '"ResumeVolume"' "$log" || :)" 0
expect_eq "warnings about p1's suspension" "$(grep -c 'p1: suspended, key wiped, not by this agent' "$AGENT_LOG")" 1

printf '%s' "${AGENT_MKVOLS_PASSPHRASE:-kcvm}" | cryptsetup luksResume p1 --key-file - ||
        die "cryptsetup luksResume p1 failed"
i=0
until kmscrypt status >status 2>&1 && grep -q '^p1: attached since ' status; do
        i=$((i + 1))
        [ "$i" -lt 50 ] || die "the agent's state of p1 after luksResume: $(cat status)"
        sleep 0.2
done
dmsetup info p1 | grep -q '^State: *ACTIVE' || die "p1 is not active after luksResume"
