#!/bin/sh
# Inside the system-tier guest: the checks of one phase (systest.phase= on
# the kernel command line).  Every check prints one line
#     SYSTEST <phase> PASS|FAIL|SKIP <what>[: why]
# and the host turns them into the tier's result.  "SYSTEST-REQ plug NAME"
# and "SYSTEST-REQ unplug NAME" ask the host to hot-add or remove the disk
# NAME through QMP; it shows up as /dev/disk/by-id/virtio-NAME.
set -u
phase=$(sed -n 's/.*systest\.phase=\([a-z0-9-]*\).*/\1/p' /proc/cmdline)
state=/var/lib/kmscrypt-systest
mkdir -p "$state"
out=/run/systest.out

pass() { echo "SYSTEST $phase PASS $*"; }
fail() { echo "SYSTEST $phase FAIL $*"; }
skipc() { echo "SYSTEST $phase SKIP $*"; }
# check WHAT COMMAND...: PASS when the command succeeds, FAIL with its last lines.
# A check that takes 10 s or more also prints its time, so that a phase that
# nears the host's boot timeout shows where its time went.
check() {
        what=$1
        shift
        check_ms=$(now_ms)
        if "$@" > "$out" 2>&1; then pass "$what"; else fail "$what: $(tail -n 3 "$out" | tr '\n' ' ')"; fi
        check_ms=$(($(now_ms) - check_ms))
        [ "$check_ms" -lt 10000 ] || echo "SYSTEST-TIME $phase   $check_ms ms for: $what"
}
# wait_for SECONDS COMMAND...: poll until the command succeeds or SECONDS
# of uptime passed (commands are slow under emulation: count time, not tries).
wait_for() {
        end=$(($(now_ms) + $1 * 1000))
        shift
        while ! "$@" > /dev/null 2>&1; do
                [ "$(now_ms)" -lt "$end" ] || return 1
                sleep 0.2
        done
}
req() { echo "SYSTEST-REQ $*"; }
disk() { echo "/dev/disk/by-id/virtio-$1"; }
now_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }
has_agent() { [ -x /usr/sbin/kmscryptd ] && command -v kmscrypt > /dev/null && kmscrypt format --help > /dev/null 2>&1; }
not() { ! "$@"; }
# systemd breaks an ordering cycle by dropping a job (a mount, say): never acceptable.
no_cycle() { ! journalctl -b --no-pager -o cat | grep -q "ordering cycle"; }
mapping() { dmsetup info "$1"; }
psql_q() { su postgres -c "psql -XAtqc \"$1\" ${2:-postgres}"; }
# Monotonic time (ms since kernel start) at which a unit became active.
active_ms() { systemctl show -P ActiveEnterTimestampMonotonic "$1" | awk '{ printf "%d\n", $1 / 1000 }'; }

# ---- smoke: the guest itself, and the udev -> systemd path ----
phase_smoke() {
        check "multi-user.target reached" systemctl is-active multi-user.target
        check "PostgreSQL online" psql_q "select 1"
        check "no ordering cycle at boot" no_cycle
        check "device-mapper usable" dmsetup version
        check "kmscrypt units installed" test -f /lib/systemd/system/kmscryptd.service \
                -a -f /lib/systemd/system/kmscryptd.socket -a -f /lib/systemd/system/kmscrypt-attach@.service
        check "udev rule installed" test -f /lib/udev/rules.d/90-kmscrypt.rules
        # kmscrypt-attach@.service is checked below by running it for a real device.
        for u in /lib/systemd/system/kmscryptd.socket /lib/systemd/system/kmscryptd.service; do
                check "systemd-analyze verify ${u##*/}" systemd-analyze verify --man=no "$u"
        done

        req plug luks
        if wait_for 20 test -b "$(disk luks)"; then
                pass "hot-added disk appeared"
                dev=$(readlink -f "$(disk luks)")
                mm=$(lsblk -dno MAJ:MIN "$dev" | tr -d ' ')
                udevadm settle
                check "udev marks the LUKS2 disk" sh -c "udevadm info -q property '$dev' | grep -qx KMSCRYPT_LUKS2=1"
                check "udev asks systemd for kmscrypt-attach@$mm" sh -c \
                        "udevadm info -q property '$dev' | grep -q 'SYSTEMD_WANTS=.*kmscrypt-attach@$mm.service'"
                check "kmscrypt-attach@$mm was started" wait_for 10 sh -c \
                        "systemctl show -P ActiveEnterTimestampMonotonic,InactiveExitTimestampMonotonic kmscrypt-attach@$mm.service | grep -q '^[1-9]'"
                systemctl status --no-pager -n 15 "kmscrypt-attach@$mm.service" kmscryptd.service 2>&1 |
                        sed 's/^/SYSTEST-DIAG /'
                systemctl list-jobs --no-pager 2>&1 | sed 's/^/SYSTEST-DIAG /'
                check "kmscrypt-attach@$mm leaves a plain LUKS2 disk alone and stays active" \
                        wait_for 20 systemctl is-active kmscrypt-attach@$mm.service
                check "no mapping made for a plain LUKS2 disk" sh -c "[ -z \"\$(ls /sys/block/${dev##*/}/holders)\" ]"
                req unplug luks
                check "hot-removed disk went away" wait_for 20 not test -b "$dev"
                check "kmscrypt-attach@$mm stopped with its device" wait_for 10 not systemctl is-active kmscrypt-attach@$mm.service
        else
                fail "hot-added disk appeared: no $(disk luks) after 20 s"
        fi
}

phase=${phase:-smoke}
echo "SYSTEST $phase BEGIN"
case $phase in
smoke) phase_smoke ;;
setup)
        # Smoke first: every boot costs a minute or more under emulation.
        phase_smoke
        . /usr/local/lib/kmscrypt-systest/scenarios.sh
        phase_setup ;;
*)
        if [ -f /usr/local/lib/kmscrypt-systest/scenarios.sh ]; then
                . /usr/local/lib/kmscrypt-systest/scenarios.sh
                "phase_$phase"
        else
                fail "unknown phase $phase"
        fi ;;
esac
# Where the guest's time went (emulated): the boot to multi-user, then the
# checks; and the units that took longest to start (systemd-analyze blame
# refuses while this unit's job runs).
echo "SYSTEST-TIME $phase multi-user at $(active_ms multi-user.target) ms, checks done at $(now_ms) ms"
systemctl show -p Id,InactiveExitTimestampMonotonic,ActiveEnterTimestampMonotonic '*' 2>/dev/null |
        awk -F= '$1 == "Id" { id = $2 } $1 == "InactiveExitTimestampMonotonic" { s = $2 }
                 $1 == "ActiveEnterTimestampMonotonic" { a = $2 }
                 $0 == "" { if (s > 0 && a > s) printf "%d %s\n", (a - s) / 1000, id; id = ""; s = a = 0 }
                 END { if (s > 0 && a > s) printf "%d %s\n", (a - s) / 1000, id }' |
        sort -rn | head -n 8 | awk -v p="$phase" '{ printf "SYSTEST-TIME %s %6d ms %s\n", p, $1, $2 }'
echo "SYSTEST $phase END"
