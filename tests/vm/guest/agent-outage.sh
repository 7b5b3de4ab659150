# SPDX-License-Identifier: LGPL-2.1-or-later
# The KMS is away when kmscryptd starts (the keystore's folder is moved
# off): the volumes wait, `kmscrypt status` says why and since when, and
# once the KMS is back they attach without a restart.  A reload (SIGHUP)
# while they wait tells the service manager nothing: its first READY=1
# comes once they have settled, with their count.
# kcvm-programs: kmscrypt kmscryptd tests/bench/agent-mkvols tests/bench/agent-vmlib tests/bench/agent-floor
. /kc/lib.sh
. /kc/bin/agent-vmlib

N=3
agent_key agent
agent_volumes o "$N" 2 agent "timeout=120"
mv "$KCVM_DIR/kms" "$KCVM_DIR/kms.away"
defer "[ -d $KCVM_DIR/kms ] || mv $KCVM_DIR/kms.away $KCVM_DIR/kms"
agent-floor notify "$KCVM_DIR/notify" 300 >"$KCVM_DIR/notify.out" 2>&1 &
notify=$!
defer "kill $notify 2>/dev/null"
while [ ! -S "$KCVM_DIR/notify" ]; do sleep 0.05; done
NOTIFY_SOCKET=$KCVM_DIR/notify agent_start
agent_wait_log 'cannot attach yet, retrying' 30 "$N"
kill -HUP "$AGENT_PID"
agent_wait_log 'reloaded .*: [0-9]+ volumes' 30
sleep 0.5
kill -0 "$notify" 2>/dev/null || die "READY=1 before the volumes settled, after a reload: $(cat "$KCVM_DIR/notify.out")"

kmscrypt status >status || :
cat status
expect_eq "volumes waiting" "$(grep -c '^o[0-9]: waiting since' status)" "$N"
grep '^o1: waiting' status | grep -q 'keystore' || die "status does not say the keystore is why o1 waits"
grep '^o1: waiting' status | grep -q '(attempt [0-9]*, next try' || die "status does not say when o1 is tried next"
expect_eq "mappings while the KMS is away" "$(dmsetup ls | grep -c '^o' || :)" 0
kcvm_no_key kmscrypt:

mv "$KCVM_DIR/kms.away" "$KCVM_DIR/kms"
set -- $(agent_wait_ready 60)
expect_eq "volumes attached once the KMS came back" "$1 of $2" "$N of $N"
wait "$notify" || die "no READY=1 on the notify socket"
expect_eq "the first READY=1" "$(cat "$KCVM_DIR/notify.out")" "STATUS=$N of $N volumes attached"
kcvm_mknodes
agent_check_mappings o "$N"
kmscrypt status >status || die "kmscrypt status failed after the KMS came back"
! grep -q 'waiting' status || die "a volume still waits: $(grep waiting status)"
