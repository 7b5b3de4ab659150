# SPDX-License-Identifier: LGPL-2.1-or-later
# Benchmark (skipped unless KC_VM_BENCH=1; tests/bench/agent-bench.sh boots
# it): start-to-all-attached time of kmscryptd for 100 configured volumes,
# against 100 times the in-process floor (logon key + mapping, agent-floor
# dm) and against `cryptsetup open` at its default keyslot cost (5 volumes
# timed, extrapolated to 100).  Prints "BENCH:" lines.
# kcvm-programs: kmscrypt kmscryptd tests/bench/agent-mkvols tests/bench/agent-floor tests/bench/agent-vmlib
. /kc/lib.sh
[ "${KC_VM_BENCH:-}" = 1 ] || skip "benchmark; run tests/bench/agent-bench.sh"
. /kc/bin/agent-vmlib

N=${KC_VM_BENCH_N:-100}
CS=${KC_VM_BENCH_CS:-5}
bench() { echo "BENCH: $*"; }
secs() { awk -v a="$1" -v b="$2" -v k="${3:-1}" 'BEGIN { printf "%.2f", (b - a) * k / 100 }'; }
remove_all() { dmsetup remove_all >/dev/null 2>&1; kcvm_mknodes; [ -z "$(dmsetup ls | grep -v '^No devices')" ] || die "mappings left: $(dmsetup ls)"; }

t=$(agent_cs)
agent_key bench
agent_volumes b "$N" 2 bench
printf '%s' kcvm >"$KCVM_DIR/pass"
[ "$CS" = 0 ] || agent_volumes c "$CS" 2 bench "" "-k -d"
grep '^c[0-9]' "$AGENT_VOLUMES" >"$KCVM_DIR/cdevs" || :
sed -i '/^c[0-9]/d' "$AGENT_VOLUMES"
bench "setup: $N + $CS volumes in $(secs "$t" "$(agent_cs)") s"
devices=$(awk '{ print $2 }' "$AGENT_VOLUMES")

# 1. the in-process floor: logon key + mapping, one after another, one process
t=$(agent_cs)
floor=$(agent-floor dm f $devices) || die "agent-floor dm failed"
floor_ext=$(secs "$t" "$(agent_cs)")
floor_ms=${floor#ms=}; floor_ms=${floor_ms%% *}
remove_all
kcvm_no_key kmscrypt:

# 2. the header + KMS half, for the record (shared KMS handle, then one a volume)
unwrap=$(agent-floor unwrap $devices) || die "agent-floor unwrap failed"
unwrap_o=$(agent-floor unwrap -o $devices) || die "agent-floor unwrap -o failed"

# 3. kmscryptd from exec to "ready: N of N volumes attached" (its own count)
agent_run() {
        agent_start "$@"
        set -- $(agent_wait_ready 600)
        expect_eq "volumes attached when ready" "$1 of $2" "$N of $N"
        agent_secs=$3
        agent_stop
        agent_check_mappings b "$N"
        remove_all
}
agent_run
agent=$agent_secs
others=
for j in $(echo "${KC_VM_BENCH_J:-1,4}" | tr , " "); do
        agent_run -j "$j"
        others="$others, -j $j: $agent_secs s"
done

# 4. cryptsetup open at the default keyslot cost, CS volumes, extrapolated
t=$(agent_cs)
i=1
while [ "$i" -le "$CS" ]; do
        cryptsetup open --key-file "$KCVM_DIR/pass" "$(awk -v n="c$i" '$1 == n { print $2 }' "$KCVM_DIR/cdevs")" "cs$i" ||
                die "cryptsetup open c$i failed"
        i=$((i + 1))
done
cs=$(secs "$t" "$(agent_cs)" "$((N / (CS ? CS : 1)))")
remove_all

bench "volumes=$N cpus=$(grep -c ^processor /proc/cpuinfo)"
bench "kmscryptd start to all attached: $agent s (default -j$others)"
bench "in-process floor x$N: $(awk -v m="$floor_ms" 'BEGIN { printf "%.2f", m / 1000 }') s in-process, $floor_ext s with exec"
bench "header+KMS half x$N: ${unwrap#ms=} (KMS opened per volume: ${unwrap_o#ms=})"
bench "cryptsetup open x$N (default keyslot cost; $CS timed, x$((N / (CS ? CS : 1)))): $cs s"
bench "cryptsetup / kmscryptd = $(awk -v a="$cs" -v b="$agent" 'BEGIN { printf "%.1f", a / b }') (target >= 50)"
bench "kmscryptd / floor = $(awk -v a="$agent" -v m="$floor_ms" 'BEGIN { printf "%.2f", a * 1000 / m }') (target <= 1.5)"
