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
t0=$(agent_cs)
agent_start
expect_eq "ready line" "$(agent_wait_ready 60)" "$N $N"
echo "20 volumes attached $(( $(agent_cs) - t0 ))0 ms after the agent was started"
kcvm_mknodes

agent_check_mappings st "$N"
kcvm_no_key kmscrypt:
expect_eq "mappings listed by kmscrypt list" "$(kmscrypt list | sort | tr '\n' ' ')" \
        "$(awk '{ print $1 }' "$AGENT_UUIDS" | sort | tr '\n' ' ')"
kmscrypt status st7 >status || die "kmscrypt status st7 failed"
grep -q 'db-id.*kcvm' status || die "status of st7 lacks its context: $(cat status)"

# Data through one of them, ciphertext on its loop device.
kcvm_roundtrip /dev/mapper/st7 "$KCVM_DIR/st7.img" 1

# Hardening that can be seen from outside: private files, no core, capabilities.
expect_eq "socket mode" "$(stat -c %a "$KMSCRYPT_AGENT_SOCKET")" 600
expect_eq "audit log mode" "$(stat -c %a "$KMSCRYPT_AUDIT_LOG")" 600
expect_eq "Decrypt records in the audit log" "$(grep -c '"Decrypt"' "$KMSCRYPT_AUDIT_LOG")" "$N"

agent_stop
expect_eq "exit status after SIGTERM" "$AGENT_STATUS" 0
expect_eq "mappings left after the agent stopped" "$(dmsetup ls | grep -c '^st')" "$N"
