# SPDX-License-Identifier: LGPL-2.1-or-later
# A volume that another tool suspended with its key in (`dmsetup suspend`,
# as a snapshot tool does) when its CMK is disabled, under revoke=suspend:
# - the agent wipes the key all the same (revocation), and its mark and
#   SuspendVolume record say the mapping was found suspended;
# - with the CMK enabled again it gives the key back (ResumeVolume) but
#   leaves the mapping suspended, for that tool;
# - that tool's `dmsetup resume` then works, and the data reads back.
# kcvm-programs: kmscrypt kmscryptd tests/bench/agent-mkvols tests/bench/agent-vmlib
. /kc/lib.sh
. /kc/bin/agent-vmlib

export KMSCRYPT_STATE_DIR="$KCVM_DIR/state"
agent_key sk
agent_volumes q 1 8 sk "revoke=suspend"
log=$KMSCRYPT_AUDIT_LOG
mark=$KMSCRYPT_STATE_DIR/suspended/q1

agent_start --revoke-interval 1
agent_wait_ready 60 >/dev/null
head -c 1048576 /dev/urandom >data
dd if=data of=/dev/mapper/q1 bs=1M oflag=direct status=none || die "cannot write to q1"
dmsetup suspend q1 || die "dmsetup suspend q1 failed"

kmscrypt -q key disable alias/sk || die "cannot disable the CMK"
kcvm_wait_for "grep -q 'found-suspended' '$mark' 2>/dev/null" "no found-suspended mark for q1: $(cat "$mark" 2>&1)"
kcvm_wait_for "grep -q '\"SuspendVolume\"' '$log'" "no SuspendVolume record"
grep '"SuspendVolume"' "$log" | grep -q 'suspended already, by another tool' ||
        die "the SuspendVolume record does not say q1 was found suspended: $(grep SuspendVolume "$log")"
dmsetup table --showkeys q1 | grep -q ':logon:' && die "q1's key was not wiped: $(dmsetup table --showkeys q1)"
dmsetup info q1 | grep -q '^State: *SUSPENDED' || die "q1 is not suspended"

kmscrypt -q key enable alias/sk || die "cannot enable the CMK"
kcvm_wait_for "grep -q '\"ResumeVolume\"' '$log'" "no ResumeVolume record"
kcvm_wait_for "[ ! -e '$mark' ]" "the agent kept its mark of q1"
grep '"ResumeVolume"' "$log" | grep -q 'not resumed' || die "the ResumeVolume record: $(grep ResumeVolume "$log")"
dmsetup table --showkeys q1 | grep -q ':64:logon:kmscrypt:' || die "q1 has no key back: $(dmsetup table --showkeys q1)"
dmsetup info q1 | grep -q '^State: *SUSPENDED' || die "the agent resumed a suspension that was not its own"

dmsetup resume q1 || die "dmsetup resume q1 failed with its key back"
dd if=/dev/mapper/q1 of=back bs=1M count=1 iflag=direct status=none || die "cannot read q1"
cmp -s data back || die "q1's data changed"
kcvm_no_key kmscrypt:
