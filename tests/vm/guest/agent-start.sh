# SPDX-License-Identifier: LGPL-2.1-or-later
# kmscryptd attaches the 20 volumes of its volumes file at start, in
# parallel: every mapping references its own logon key and shows none, no
# key is left in any keyring, `kmscrypt list` and `status` (through the
# agent) agree, data round-trips, the socket and audit log are private,
# and SIGTERM stops the agent with every volume still attached.
# kcvm-programs: kmscrypt kmscryptd tests/bench/agent-mkvols tests/bench/agent-vmlib
. /kc/lib.sh
. /kc/bin/agent-vmlib

N=20
agent_key agent
agent_volumes st "$N" 2 agent
agent_start
set -- $(agent_wait_ready 60)
expect_eq "volumes attached when ready" "$1 of $2" "$N of $N"
echo "$N volumes attached $3 s after the agent started"
kcvm_mknodes

agent_check_mappings st "$N"
kcvm_no_key kmscrypt:
expect_eq "mappings listed by kmscrypt list" "$(kmscrypt list | sort | tr '\n' ' ')" \
        "$(awk '{ print $1 }' "$AGENT_UUIDS" | sort | tr '\n' ' ')"
kmscrypt status st7 >status || die "kmscrypt status st7 failed"
grep -q 'db-id.*kcvm' status || die "status of st7 lacks its context: $(cat status)"

# The CLI gives the same output and status through the agent as without it
# (KMSCRYPT_NO_AGENT): list, status of a volume, of all, in text and JSON,
# and for a name that is not attached.
same() {
        _a=0 _d=0
        kmscrypt "$@" >via-agent 2>&1 || _a=$?
        KMSCRYPT_NO_AGENT=1 kmscrypt "$@" >direct 2>&1 || _d=$?
        expect_eq "exit status of 'kmscrypt $*' through the agent and without it" "$_a" "$_d"
        cmp -s via-agent direct || die "'kmscrypt $*' through the agent differs: $(diff via-agent direct | head -n 6)"
}
same list
same list --json
same status st3
same status --json st3 st4
same status
same status nosuchvolume

# Data through one of them, ciphertext on its loop device.
kcvm_roundtrip /dev/mapper/st7 "$KCVM_DIR/st7.img" 1

# Hardening that can be seen from outside: private files, no core, capabilities
# (CAP_CHOWN, CAP_IPC_LOCK, CAP_SYS_ADMIN, CAP_MKNOD, CAP_SYS_PTRACE, also in
# the bounding set).
caps() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$AGENT_PID/status"; }
expect_eq "effective capabilities" "$(caps CapEff)" 0000000008284001
expect_eq "bounding set" "$(caps CapBnd)" 0000000008284001
expect_eq "core size limit" "$(awk '/^Max core file size/ { print $5 " " $6 }' "/proc/$AGENT_PID/limits")" "0 0"
expect_eq "socket mode" "$(stat -c %a "$KMSCRYPT_AGENT_SOCKET")" 600
expect_eq "audit log mode" "$(stat -c %a "$KMSCRYPT_AUDIT_LOG")" 600
expect_eq "Decrypt records in the audit log" "$(grep -c '"Decrypt"' "$KMSCRYPT_AUDIT_LOG")" "$N"

# A request through the agent is audited with its client's executable, though
# the CLI makes itself non-dumpable (what CAP_SYS_PTRACE is kept for).
kmscrypt -q detach st7 || die "detach st7 through the agent failed"
kmscrypt -q attach st7 || die "attach st7 through the agent failed"
kcvm_mknodes
last=$(grep '"Decrypt"' "$KMSCRYPT_AUDIT_LOG" | tail -n 1)
case $last in
*'"exe":"/kc/bin/kmscrypt"'*) ;;
*) die "the Decrypt record of a CLI request does not name the client: $last" ;;
esac

# The KMS handle that served that attach is kept for the next one of a burst,
# its keystore cache holding every CMK unwrapped; with no attach after it,
# the scheduler closes it once idle for 5 s (each handle holds the keystore's
# .lock open: that is what we count).
handles() { ls -l "/proc/$AGENT_PID/fd" | grep -c "$KMSCRYPT_KEYSTORE/.lock"; }
[ "$(handles)" -ge 1 ] || die "no idle KMS handle right after an attach: the count below proves nothing"
i=0
while [ "$(handles)" -gt 0 ] && [ $i -lt 40 ]; do
        sleep 0.5
        i=$((i + 1))
done
expect_eq "idle KMS handles (CMKs in memory) after 20 s without attaches" "$(handles)" 0

# A reply larger than the connection's send buffer (twice wmem_max; the agent
# has no CAP_NET_ADMIN to force more) is an error that says so, not a
# closed connection.
wmem=$(cat /proc/sys/net/core/wmem_max)
# (the kernel's floor for wmem_max is about 4.5 KiB)
echo 5000 >/proc/sys/net/core/wmem_max || die "cannot lower net.core.wmem_max"
defer "echo $wmem >/proc/sys/net/core/wmem_max"
! kmscrypt status >out 2>err || die "status of $N volumes fitted a 10 KB send buffer"
echo "$wmem" >/proc/sys/net/core/wmem_max
expect_eq "error lines of the oversized status" "$(wc -l <err)" 1
grep -q 'larger than this connection carries' err || die "oversized status says: $(cat err)"
kmscrypt status >out || die "status failed with wmem_max restored"
grep -q "st$N" out || die "status with wmem_max restored does not show st$N: $(head -n 5 out)"

agent_stop
expect_eq "exit status after SIGTERM" "$AGENT_STATUS" 0
expect_eq "mappings left after the agent stopped" "$(dmsetup ls | grep -c '^st')" "$N"
