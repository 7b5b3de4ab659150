# SPDX-License-Identifier: LGPL-2.1-or-later
# kmscryptd's mapper processes (agent/daemon/mapper.h): as many as
# --mappers asks, forked with the agent's hardening (no core file) and
# fewer capabilities still (device-mapper's alone); they ignore the service manager's SIGTERM and leave
# with the agent.  Attaches go on when one dies idle (another takes the
# mapping) and when none is left (the attach threads create it); no key
# is left in any keyring meanwhile.  A wrong key (a token copied from
# another volume) is refused while a mapper holds its table unresumed.
# kcvm-programs: kmscrypt kmscryptd tests/bench/agent-mkvols tests/bench/agent-vmlib
. /kc/lib.sh
. /kc/bin/agent-vmlib

# children PID: the pids whose parent is PID.
children() {
        for _s in /proc/[0-9]*/status; do
                awk -v p="$1" '$1 == "PPid:" && $2 == p { split(FILENAME, f, "/"); print f[3] }' "$_s" 2>/dev/null
        done
}
field() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
core_limit() { awk '/^Max core file size/ { print $5 }' "/proc/$1/limits"; }
# reattach NAME: detach NAME and attach it again through the agent.
reattach() {
        kmscrypt detach "$1" || die "detach $1 failed"
        kcvm_mknodes
        kmscrypt attach "$1" >"$KCVM_DIR/out" 2>&1 || die "attach $1 through the agent failed: $(cat "$KCVM_DIR/out")"
}

N=6
agent_key agent
agent_volumes m "$N" 2 agent
agent_start --mappers 3
set -- $(agent_wait_ready 120)
expect_eq "volumes attached" "$1 of $2" "$N of $N"
kcvm_mknodes
agent_check_mappings m "$N"
kcvm_no_key kmscrypt:

# A token copied from m1 onto another volume, attached through the agent:
# its key is checked while a mapper loads the table, and that table never
# serves I/O; the mapping goes, the key goes, the mapper stays.
kcvm_loop 20
head -c 32 /dev/urandom >"$KCVM_DIR/pass"
cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
        --key-file "$KCVM_DIR/pass" "$KCVM_LOOP" || die "stock luksFormat failed"
cryptsetup token export --token-id 0 "$(agent_device m1)" >"$KCVM_DIR/m1-token.json" || die "token export failed"
cryptsetup token import --json-file "$KCVM_DIR/m1-token.json" "$KCVM_LOOP" || die "token import failed"
kcvm_attach_refused "m1's token on another volume, through a mapper" "$KCVM_LOOP" \
        "does not match the LUKS2 header"

# Forked one after another: in pid order, the order the agent tries them in.
mappers=$(children "$AGENT_PID" | sort -n)
expect_eq "mapper processes" "$(echo $mappers | wc -w)" 3
for p in $mappers; do
        expect_eq "mapper $p: core file size" "$(core_limit "$p")" 0
        # The agent's, less CAP_IPC_LOCK and CAP_SYS_PTRACE: CAP_SYS_ADMIN, CAP_MKNOD and CAP_CHOWN.
        expect_eq "mapper $p: effective capabilities" "$(field "$p" CapEff)" \
                "$(printf %016x $((0x$(field "$AGENT_PID" CapEff) & ((1 << 21) | (1 << 27) | 1))))"
        expect_eq "mapper $p: permitted capabilities" "$(field "$p" CapPrm)" "$(field "$p" CapEff)"
done

# The stop signal of a service manager reaches every process of the service.
set -- $mappers
kill -TERM "$1"
sleep 0.3
[ -d "/proc/$1" ] || die "mapper $1 exited on SIGTERM"

# The first killed while idle: the next attach finds out and takes the second.
kill -KILL "$1"
sleep 0.3
reattach m1
grep -q "mapper process $1 has died" "$AGENT_LOG" || die "the agent did not notice mapper $1 died"
kcvm_no_key kmscrypt:

# All killed: the attach threads create mappings themselves.
kill -KILL "$2" "$3"
sleep 0.3
reattach m2
grep -q "mapper process $3 has died" "$AGENT_LOG" || die "the agent did not notice mapper $3 died"
reattach m3
kcvm_mknodes
agent_check_mappings m "$N"
kcvm_no_key kmscrypt:
expect_eq "mapper processes left" "$(children "$AGENT_PID" | wc -w)" 0

# A new start forks them again; a stop takes them along.
agent_stop
expect_eq "exit status of the stopped agent" "$AGENT_STATUS" 0
agent_start --mappers 2 --no-attach
agent_wait_log "listening on" 60
mappers=$(children "$AGENT_PID")
expect_eq "mapper processes of the second start" "$(echo $mappers | wc -w)" 2
agent_stop
sleep 0.5
for p in $mappers; do
        [ ! -d "/proc/$p" ] || [ "$(sed 's/.*) \(.\).*/\1/' "/proc/$p/stat")" = Z ] ||
                die "mapper $p outlived the agent"
done

# --mappers 0: the attach threads do it all, as before mappers.
agent_remove_mappings m
agent_start --mappers 0
set -- $(agent_wait_ready 120)
expect_eq "volumes attached with --mappers 0" "$1 of $2" "$N of $N"
expect_eq "mapper processes with --mappers 0" "$(children "$AGENT_PID" | wc -w)" 0
agent_check_mappings m "$N"
kcvm_no_key kmscrypt:
