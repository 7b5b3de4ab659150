# SPDX-License-Identifier: LGPL-2.1-or-later
# revoke=suspend: when its CMK is disabled, kmscryptd suspends the volume
# within the check interval and wipes its key (a writer blocks, the table
# shows a zeroed key, status says why); when the CMK is enabled again it
# resumes with a fresh unwrap, the writer completes, and the data written
# before and during the suspension reads back intact.  Both actions are
# audited, ResumeVolume after the fresh Decrypt.
# kcvm-programs: kmscrypt kmscryptd tests/bench/agent-mkvols tests/bench/agent-vmlib
. /kc/lib.sh
. /kc/bin/agent-vmlib

agent_key susp
agent_volumes s 1 8 susp "revoke=suspend"
agent_start --revoke-interval 1
set -- $(agent_wait_ready 60)
expect_eq "attached" "$1 of $2" "1 of 1"
kcvm_mknodes
dev=/dev/mapper/s1

kcvm_pattern before 1048576
dd if=before of="$dev" bs=64k conv=fsync 2>/dev/null || die "write before the suspension failed"
kcvm_pattern during 1048576

kmscrypt -q key disable alias/susp || die "cannot disable the CMK"
agent_wait_log 's1: .*suspended, key wiped' 15
dmsetup info s1 | grep -q '^State: *SUSPENDED' || die "s1 is not suspended: $(dmsetup info s1 | grep State)"
set -- $(dmsetup table --showkeys s1)
case $5 in
:*) die "the table still references the key after the wipe: $5" ;;
esac
[ -z "$(printf '%s' "$5" | tr -d 0)" ] || die "the key field is not zeroed after the wipe"
kmscrypt status s1 >status 2>&1 || :
grep -q 'suspended.*key wiped' status || die "status does not say s1 is suspended: $(cat status)"

# A writer now blocks: dm holds its I/O while suspended.
(dd if=during of="$dev" bs=64k seek=32 conv=fsync 2>/dev/null; echo $? >writer.rc) &
sleep 2
[ ! -e writer.rc ] || die "a write completed while s1 was suspended"

kmscrypt -q key enable alias/susp || die "cannot enable the CMK"
agent_wait_log 's1: .*enabled again; resumed' 15
i=0
while [ ! -e writer.rc ]; do
        i=$((i + 1))
        [ "$i" -lt 100 ] || die "the blocked writer did not complete within 10 s of the resume"
        sleep 0.1
done
expect_eq "the blocked writer's exit status" "$(cat writer.rc)" 0
agent_check_mappings s 1

kcvm_drop_caches
dd if="$dev" of=back bs=64k count=16 2>/dev/null
cmp -s before back || die "data written before the suspension differs after the resume"
dd if="$dev" of=back bs=64k skip=32 count=16 2>/dev/null
cmp -s during back || die "data written during the suspension differs after the resume"

log=$KMSCRYPT_AUDIT_LOG
grep -q '"SuspendVolume"' "$log" || die "no SuspendVolume record"
resume=$(grep -n '"ResumeVolume"' "$log" | tail -n 1 | cut -d: -f1)
[ -n "$resume" ] || die "no ResumeVolume record"
expect_eq "Decrypt records (attach, fresh unwrap)" "$(grep -c '"Decrypt"' "$log")" 2
decrypt=$(grep -n '"Decrypt"' "$log" | tail -n 1 | cut -d: -f1)
[ "$decrypt" -lt "$resume" ] || die "the fresh Decrypt is not recorded before ResumeVolume"
