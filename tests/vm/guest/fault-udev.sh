# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Duplicate concurrent udev events for one device (issue #8): what
# kmscrypt-attach@MAJ:MIN.service runs, `kmscrypt-hotplug attach MAJ:MIN`,
# four times at once for one hotplug=yes volume the agent has detached;
# then four `kmscrypt attach DEVICE` at once without the agent.  Each time
# every run exits 0, exactly one mapping holds the device, with the live
# table of the volume's own logon key, and no key stays in the kernel.
# Duplicate `kmscrypt-hotplug detach` events both succeed and remove it.
# First, the agent killed mid-attach at start-up leaves nothing a restart
# cannot clean up.
# kcvm-programs: kmscrypt kmscryptd kmscrypt-hotplug tests/bench/agent-mkvols tests/bench/agent-vmlib
. /kc/lib.sh
. /kc/bin/agent-vmlib

N=4
agent_key agent
agent_volumes h 1 24 agent hotplug=yes
dev=$(agent_device h1)
majmin=$(cat "/sys/class/block/${dev#/dev/}/dev")

# together CMD...: N copies of CMD at once; fails unless every one exits 0.
together() {
        _pids=
        _i=0
        while [ "$_i" -lt "$N" ]; do
                "$@" >"out$_i" 2>&1 &
                _pids="$_pids $!"
                _i=$((_i + 1))
        done
        _i=0
        for _p in $_pids; do
                wait "$_p" || die "run $_i of $N of '$*' exited $?: $(cat "out$_i")"
                _i=$((_i + 1))
        done
}

# one_mapping WHAT: exactly one mapping holds the device, live, on the volume's key.
one_mapping() {
        kcvm_mknodes
        holders=$(ls "/sys/class/block/${dev#/dev/}/holders" | wc -l)
        expect_eq "$1: mappings holding $dev" "$holders" 1
        expect_eq "$1: mappings" "$(dmsetup ls | grep -c '^h')" 1
        agent_check_mappings h 1
        kcvm_no_key kmscrypt:
        echo "$1: one mapping"
}

# The agent killed in its start-up attach between table load and resume
# (KC_FAULT_STEP, lib/fault.h): no key survives it, and the next start
# removes the half-made mapping and attaches.
export KC_FAULT_STEP=dm-create:after-table-load
agent_start
unset KC_FAULT_STEP
i=0
while agent_alive; do
        i=$((i + 1))
        [ "$i" -lt 600 ] || die "kmscryptd never reached dm-create:after-table-load"
        sleep 0.1
done
rc=0
wait "$AGENT_PID" || rc=$?
expect_eq "exit status of kmscryptd killed at dm-create:after-table-load" "$rc" 137
AGENT_PID=
kcvm_no_key kmscrypt:
[ -z "$(dmsetup table h1)" ] || die "the killed agent left a live table"
agent_start
set -- $(agent_wait_ready 120)
expect_eq "volumes attached at start" "$1 of $2" "1 of 1"
grep -q "h1: removed the half-made mapping" "$AGENT_LOG" || die "the agent did not say it removed half-made h1"
echo "kmscryptd killed mid-attach: restart removed the half-made mapping and attached"
kmscrypt -q detach h1 || die "detach through the agent"
kcvm_mknodes
together kmscrypt-hotplug attach "$majmin"
one_mapping "$N concurrent hotplug attach events"
N=2
together kmscrypt-hotplug detach "$majmin"
N=4
kcvm_mknodes
expect_eq "mappings after duplicate detach events" "$(dmsetup ls | grep -c '^h' || :)" 0
agent_stop

# Without the agent: the attaches themselves take turns.
together kmscrypt attach "$dev"
one_mapping "$N concurrent kmscrypt attach"
made=$(cat out* | grep -c "^[^ ]* attached as " || :)
expect_eq "runs of kmscrypt attach that made the mapping (the others found it)" "$made" 1
kmscrypt -q detach h1 || die "final detach"
kcvm_mknodes
