# SPDX-License-Identifier: LGPL-2.1-or-later
# kmscryptd stopped (SIGTERM) and started again while a filesystem on one
# of its volumes is mounted and written: the mount stays, writes go on
# with the agent away, the new agent finds both volumes attached and
# leaves their tables alone (no reload: dm event counters unchanged).
# kcvm-programs: kmscrypt kmscryptd tests/bench/agent-mkvols tests/bench/agent-vmlib
. /kc/lib.sh
. /kc/bin/agent-vmlib

agent_key agent
agent_volumes r 2 24 agent
agent_start
set -- $(agent_wait_ready 60)
expect_eq "attached" "$1 of $2" "2 of 2"
kcvm_mknodes

mkfs.ext4 -q /dev/mapper/r1 || die "mkfs.ext4 on r1 failed"
mkdir -p mnt
mount /dev/mapper/r1 mnt || die "cannot mount r1"
defer "umount $KCVM_DIR/mnt 2>/dev/null"
(i=0; while :; do echo "line $i" >>mnt/log; i=$((i + 1)); sleep 0.1; done) &
writer=$!
defer "kill $writer 2>/dev/null"

tables() { dmsetup info -c --noheadings -o name,events,attr r1 r2; dmsetup table r1 r2; }
before=$(tables)
sleep 0.5
agent_stop
expect_eq "exit status after SIGTERM" "$AGENT_STATUS" 0
grep -q " $KCVM_DIR/mnt ext4 " /proc/mounts || die "r1 was unmounted when the agent stopped"
n1=$(wc -l <mnt/log)
sleep 1
n2=$(wc -l <mnt/log)
[ "$n2" -gt "$n1" ] || die "writes stopped with the agent: $n1 then $n2 lines"
sync

agent_start
set -- $(agent_wait_ready 60)
expect_eq "attached after the restart" "$1 of $2" "2 of 2"
grep -q 'r1: already attached as /dev/mapper/r1' "$AGENT_LOG" || die "the new agent did not find r1 attached"
expect_eq "dm events, state and tables after the restart" "$(tables)" "$before"
n3=$(wc -l <mnt/log)
sleep 1
[ "$(wc -l <mnt/log)" -gt "$n3" ] || die "writes stopped after the restart"
agent_stop
kill "$writer"
wait "$writer" 2>/dev/null || :
umount mnt || die "cannot unmount r1"
