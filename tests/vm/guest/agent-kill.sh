# SPDX-License-Identifier: LGPL-2.1-or-later
# kill -9 of kmscryptd in the middle of attaching volumes leaves no key
# in any keyring; a half-made mapping (device created, no table: what a
# kill between create and resume leaves) is cleaned up by the next start,
# which attaches every volume.
# kcvm-programs: kmscrypt kmscryptd tests/bench/agent-mkvols tests/bench/agent-vmlib
. /kc/lib.sh
. /kc/bin/agent-vmlib

# 32 volumes: attached one at a time, they keep the agent at it well past
# the two the log is watched for (8 were done within one poll once the
# attach got faster).
N=32
agent_key agent
agent_volumes k "$N" 2 agent
# One at a time: the kill lands while most volumes are still to do.
agent_start -j 1
agent_wait_log "attached as" 60 2
kill -KILL "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null || :
AGENT_PID=
kcvm_mknodes
attached=$(dmsetup ls | grep -c '^k' || :)
echo "$attached of $N mappings existed when the agent was killed"
[ "$attached" -lt "$N" ] || die "the agent attached all $N volumes before the kill: not mid-attach"
# Its attach threads' keyrings died with it; nothing else ever held a key.
kcvm_no_key kmscrypt:

# What a kill between device create and table resume leaves: the volume's
# own dm UUID and name, no live table.
for name in $(awk '{ print $1 }' "$AGENT_UUIDS"); do
        dmsetup info "$name" >/dev/null 2>&1 || break
done
! dmsetup info "$name" >/dev/null 2>&1 || die "no unattached volume left to leave half-made"
uuid=$(agent_uuid "$name" | tr -d -)
dmsetup create "$name" --notable -u "CRYPT-LUKS2-$uuid-$name" || die "cannot make a half-made mapping $name"

agent_start
set -- $(agent_wait_ready 120)
expect_eq "volumes attached by the restarted agent" "$1 of $2" "$N of $N"
grep -q "$name: removed the half-made mapping" "$AGENT_LOG" || die "the agent did not say it removed half-made $name"
kcvm_mknodes
agent_check_mappings k "$N"
expect_eq "mappings after the restart" "$(dmsetup ls | grep -c '^k')" "$N"
kcvm_no_key kmscrypt:
