# SPDX-License-Identifier: LGPL-2.1-or-later
# revoke=keep, the default: when its CMK is disabled, kmscryptd notices
# within the check interval and leaves the attached volumes running (not
# suspended, the key reference still in the table, writes complete), says
# why in status, writes one KeepVolume audit record per volume (not one per
# check), and refuses new attaches; with the CMK enabled again, status
# clears and the volume attaches.
# kcvm-programs: kmscrypt kmscryptd tests/bench/agent-mkvols tests/bench/agent-vmlib
. /kc/lib.sh
. /kc/bin/agent-vmlib

agent_key keep
agent_volumes k 2 8 keep
agent_start --revoke-interval 1
set -- $(agent_wait_ready 60)
expect_eq "attached" "$1 of $2" "2 of 2"
kcvm_mknodes
log=$KMSCRYPT_AUDIT_LOG

kmscrypt -q key disable alias/keep || die "cannot disable the CMK"
agent_wait_log 'k1: .*kept running \(revoke=keep\)' 15
agent_wait_log 'k2: .*kept running \(revoke=keep\)' 15

dmsetup info k1 | grep -q '^State: *ACTIVE' || die "k1 is not active: $(dmsetup info k1 | grep State)"
set -- $(dmsetup table k1)
case $5 in
:64:logon:kmscrypt:*) ;;
*) die "k1's table lost its key reference: $5" ;;
esac
kcvm_pattern data 1048576
timeout 20 dd if=data of=/dev/mapper/k1 bs=64k conv=fsync 2>/dev/null || die "a write to the kept volume k1 failed"
kcvm_drop_caches
dd if=/dev/mapper/k1 of=back bs=64k count=16 2>/dev/null
cmp -s data back || die "data written to the kept volume does not read back"
kmscrypt status k1 >status 2>&1 || :
grep -q '^k1: attached since .*kept running (revoke=keep)' status || die "status does not say why k1 is kept: $(cat status)"
grep -q 'key state: *Disabled' status || die "status does not show k1's key state: $(cat status)"
kmscrypt status --json k1 >status.json 2>&1 || :
expect_eq "objects named k1 in status --json" "$(grep -o '"Name": *"k1"' status.json | wc -l)" 1
grep -q '"AgentReason": *"[^"]*kept running' status.json || die "status --json lacks the agent's reason: $(cat status.json)"

# Several checks later, still one record for each volume.
sleep 3
expect_eq "KeepVolume records" "$(grep -c '"KeepVolume"' "$log")" 2
grep '"KeepVolume"' "$log" | grep -q '"result":"ok"' || die "KeepVolume record: $(grep '"KeepVolume"' "$log" | head -n 1)"
# The CMK both volumes share is described once a pass, not once a volume:
# the record is the pass's, naming no volume.
grep '"operation":"DescribeKey"' "$log" >described || :
grep -q '"detail":"revocation check"' described || die "no DescribeKey record of a revocation pass: $(tail -n 2 described)"
expect_eq "DescribeKey records naming k1 or k2" "$(grep -c '"volume":"k[12]"' described)" 0
# So is it once by a status of both volumes.
status_lookups() { grep '"operation":"DescribeKey"' "$log" | grep -c '"detail":"status"'; }
before=$(status_lookups)
kmscrypt status >status 2>&1 || :
expect_eq "volumes whose key state status shows" "$(grep -c 'key state: *Disabled' status)" 2
expect_eq "DescribeKey records of one status of k1 and k2" "$(($(status_lookups) - before))" 1

# A new attach needs the key: refused, nothing left behind.
kmscrypt -q detach k2 || die "detach k2 failed"
kcvm_fails "attach of k2 under a disabled CMK" kmscrypt attach k2
grep -qi 'disabled' err || die "the refusal does not say the CMK is disabled: $(cat err)"
[ ! -e /dev/mapper/k2 ] || die "k2 is attached under a disabled CMK"

kmscrypt -q key enable alias/keep || die "cannot enable the CMK"
kmscrypt -q attach k2 || die "attach of k2 failed once the CMK was enabled"
i=0
while kmscrypt status k1 2>&1 | grep -q 'kept running'; do
        i=$((i + 1))
        [ "$i" -lt 50 ] || die "status still says k1 is kept 10 s after the CMK was enabled"
        sleep 0.2
done
kcvm_mknodes
agent_check_mappings k 2
kcvm_no_key kmscrypt:
