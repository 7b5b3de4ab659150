# SPDX-License-Identifier: LGPL-2.1-or-later
# kmscryptd's mapper processes (agent/daemon/mapper.h): as many as
# --mappers asks, forked with the agent's hardening (no core file) and
# fewer capabilities still (device-mapper's alone); they ignore the service manager's SIGTERM and leave
# with the agent.  One that dies is replaced by one executed from the
# agent's binary, hardened alike; attaches go on meanwhile, and no key is
# left in any keyring.  A wrong key (a token copied from
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

# mapper_ok PID WHAT: PID is a mapper with the hardening of a forked one,
# once it waits for requests (a replacement sets itself up after its exec).
mapper_ok() {
        _i=0
        while ! grep -q wait_for_more_packets "/proc/$1/wchan"; do
                _i=$((_i + 1))
                [ "$_i" -lt 100 ] || die "$2 $1 never waits for a request ($(cat "/proc/$1/wchan"))"
                sleep 0.1
        done
        expect_eq "$2 $1: core file size" "$(core_limit "$1")" 0
        # The agent's, less CAP_IPC_LOCK and CAP_SYS_PTRACE: CAP_SYS_ADMIN, CAP_MKNOD and CAP_CHOWN.
        expect_eq "$2 $1: effective capabilities" "$(field "$1" CapEff)" \
                "$(printf %016x $((0x$(field "$AGENT_PID" CapEff) & ((1 << 21) | (1 << 27) | 1))))"
        expect_eq "$2 $1: permitted capabilities" "$(field "$1" CapPrm)" "$(field "$1" CapEff)"
}
# wait_mappers N: wait (5 s) until the agent has N mapper processes; prints them.
wait_mappers() {
        _i=0
        while [ "$(children "$AGENT_PID" | wc -w)" != "$1" ]; do
                _i=$((_i + 1))
                [ "$_i" -lt 50 ] || die "the agent has $(children "$AGENT_PID" | wc -w) mapper processes, not $1"
                sleep 0.1
        done
        children "$AGENT_PID"
}
# gone_with_agent WHAT PID...: half a second after the agent stopped, each PID is gone (or a zombie).
gone_with_agent() {
        _what=$1
        shift
        sleep 0.5
        for _p in "$@"; do
                [ ! -d "/proc/$_p" ] || [ "$(sed 's/.*) \(.\).*/\1/' "/proc/$_p/stat")" = Z ] ||
                        die "$_what $_p outlived the agent"
        done
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
        mapper_ok "$p" mapper
done

# The stop signal of a service manager reaches every process of the service.
set -- $mappers
kill -TERM "$1"
sleep 0.3
[ -d "/proc/$1" ] || die "mapper $1 exited on SIGTERM"

# The first killed while idle: the agent sees its socket hang up and
# executes a replacement from its own binary, hardened as a forked one.
kill -KILL "$1"
agent_wait_log "mapper process $1 has died" 5
agent_wait_log "mapper process [0-9]+ started in place of a dead one" 5
fresh=$(sed -n 's/.*mapper process \([0-9]*\) started in place of a dead one.*/\1/p' "$AGENT_LOG" | tail -n 1)
tr '\0' ' ' <"/proc/$fresh/cmdline" | grep -q -- "--mapper-process" || die "replacement $fresh: $(tr '\0' ' ' <"/proc/$fresh/cmdline")"
mapper_ok "$fresh" "replacement mapper"
reattach m1
kcvm_no_key kmscrypt:

# All killed at once, attaches meanwhile: they go on (in the other
# mappers, a replacement or the attach thread), and each is replaced.
kill -KILL "$2" "$3" "$fresh"
reattach m2
reattach m3
kcvm_mknodes
agent_check_mappings m "$N"
kcvm_no_key kmscrypt:
for p in $(wait_mappers 3); do
        case " $2 $3 $fresh " in *" $p "*) die "mapper $p is still there after SIGKILL" ;; esac
        mapper_ok "$p" "replacement mapper"
done
reattach m4
kcvm_mknodes
agent_check_mappings m "$N"
kcvm_no_key kmscrypt:
replacements=$(children "$AGENT_PID")

# A new start forks them again; a stop takes them along, replacements too.
agent_stop
expect_eq "exit status of the stopped agent" "$AGENT_STATUS" 0
gone_with_agent "replacement mapper" $replacements
agent_start --mappers 2 --no-attach
agent_wait_log "listening on" 60
mappers=$(children "$AGENT_PID")
expect_eq "mapper processes of the second start" "$(echo $mappers | wc -w)" 2
agent_stop
gone_with_agent mapper $mappers

# --mappers 0: the attach threads do it all, as before mappers.
agent_remove_mappings m
agent_start --mappers 0
set -- $(agent_wait_ready 120)
expect_eq "volumes attached with --mappers 0" "$1 of $2" "$N of $N"
expect_eq "mapper processes with --mappers 0" "$(children "$AGENT_PID" | wc -w)" 0
agent_check_mappings m "$N"
kcvm_no_key kmscrypt:
