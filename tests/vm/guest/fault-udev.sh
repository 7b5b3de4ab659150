# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Duplicate concurrent udev events for one device (issue #8): what
# kmscrypt-attach@MAJ:MIN.service runs, `kmscrypt-hotplug attach MAJ:MIN`,
# four times at once for one hotplug=yes volume the agent has detached;
# then four `kmscrypt attach DEVICE` at once without the agent.  Each time
# every run exits 0, exactly one mapping holds the device, with the live
# table of the volume's own logon key, and no key stays in the kernel.
# Duplicate `kmscrypt-hotplug detach` events both succeed and remove it.
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

agent_start
set -- $(agent_wait_ready 120)
expect_eq "volumes attached at start" "$1 of $2" "1 of 1"
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
