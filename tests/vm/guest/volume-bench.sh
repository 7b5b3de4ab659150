# SPDX-License-Identifier: LGPL-2.1-or-later
# The attach latency benchmark of issue #4 (tests/bench/attach-bench.sh
# boots it with KC_VM_BENCH=1; skipped otherwise).  Over N volumes
# (KC_BENCH_VOLUMES, 20), the median attach and detach latency of:
#   kmscrypt attach / detach                         (the CLI, a process each)
#   kmscrypt attach / detach through kmscryptd       (the CLI as the agent's client)
#   cryptsetup open with a passphrase keyslot at cryptsetup's default cost / close
#   cryptsetup open --volume-key-file / close
#   keyctl padd logon + dmsetup create / dmsetup remove   (the command-line floor)
#   kc_attach / kc_detach in one process, KMS opened once (the agent's path)
#   logon key + kc_dm_create / kc_dm_remove in one process (the in-process floor)
#   (these two volume by volume in turn, kc-floor pair, so that drift hits both alike)
# and the steps of kc_attach, each timed, and each program's start-up.  Processes are timed by kc-floor
# (fork, exec, wait: no shell); each volume gets the four command-line
# configurations in turn, so that a change of host load hits them alike.
# Prints "BENCH: " lines; attach-bench.sh turns them into the table.
# kcvm-programs: kmscrypt kmscryptd tests/bench/kc-floor
. /kc/lib.sh

[ "${KC_VM_BENCH:-0}" = 1 ] || skip "benchmark; run tests/bench/attach-bench.sh (KC_VM_BENCH=1)"
n=${KC_BENCH_VOLUMES:-20}

kcvm_kmscrypt_env
kmscrypt -q key create --alias alias/bench || die "kmscrypt key create failed"
say() { echo "BENCH: $*"; }

# ---- N volumes: one formatted, the others block copies with UUIDs of their own ----
printf 'bench passphrase' >pass
kcvm_loop 17
base=$KCVM_LOOP
kmscrypt -q format "$base" --key alias/bench --context db-id=bench,volume-id=bench \
        --recovery-passphrase-file pass || die "format failed"
cryptsetup luksDump -q --dump-volume-key --volume-key-file vk --key-file pass "$base" >/dev/null ||
        die "cannot dump the volume key"
say "pbkdf $(cryptsetup luksDump "$base" | sed -n 's/^\tPBKDF: *//p;s/^\tMemory: *//p;s/^\tTime cost: *//p' | tr '\n' ' ')"
devs=$base
i=1
while [ "$i" -lt "$n" ]; do
        kcvm_loop 17
        dd if="$base" of="$KCVM_LOOP" bs=1M 2>/dev/null || die "copying the volume failed"
        cryptsetup luksUUID -q --uuid "$(cat /proc/sys/kernel/random/uuid)" "$KCVM_LOOP" ||
                die "cryptsetup luksUUID --uuid failed"
        devs="$devs $KCVM_LOOP"
        i=$((i + 1))
done
# What udev's blkid builtin does when a device appears (this guest runs no
# udev): it reads the header, which is how ID_FS_TYPE=crypto_LUKS and
# UUID= reach the rules.  On a real host an attach at boot or hotplug finds
# the header in the page cache; so do these.
# shellcheck disable=SC2086
blkid $devs >/dev/null || die "blkid failed"
defer "for m in \$(dmsetup ls | awk '/^(ka|kd|cp|cv|fl|kf|kp|kx)[0-9]/ { print \$1 }'); do dmsetup remove \$m; done; keyctl clear @s"

# kmscryptd with no volumes of its own, for the kd rows only: the CLI finds
# it through KMSCRYPT_AGENT_SOCKET, which the other rows do not set.
sock=$KCVM_DIR/agent.sock
: >agent.volumes
kmscryptd --socket "$sock" --volumes agent.volumes --group '' --stderr --revoke-interval 0 </dev/null >agent.log 2>&1 &
agent_pid=$!
defer "kill \$agent_pid 2>/dev/null; wait \$agent_pid 2>/dev/null"
i=0
while [ ! -S "$sock" ]; do
        i=$((i + 1))
        [ "$i" -lt 300 ] || die "kmscryptd did not listen within 60 s: $(cat agent.log)"
        sleep 0.2
done

# The table kmscrypt makes, for the command-line floor to make the same.
kmscrypt -q attach "$base" --name probe || die "probe attach failed"
set -- $(dmsetup table probe)
size=$2 cipher=$4 iv_offset=$6 offset=$8 nopts=$9
shift 9
opts="$*"
kmscrypt -q detach probe || die "probe detach failed"
sector_size=$(printf '%s\n' $opts | sed -n 's/^sector_size://p')
say "table 0 $size crypt $cipher :64:logon:... $iv_offset DEV $offset $nopts $opts"
head -c 64 /dev/urandom >floor.key

# t FILE CMD...: append the microseconds CMD... took (kc-floor time) to FILE.
t() {
        out=$1
        shift
        kc-floor time "$@" >t.out 2>t.err || die "$*: $(cat t.err)"
        sed -n 's/^time //p' t.out >>"$out"
}

# ---- the command-line configurations, volume by volume ----
i=0
for d in $devs; do
        t ka.a kmscrypt -q attach "$d" --name "ka$i"
        t ka.d kmscrypt -q detach "ka$i"
        (
                export KMSCRYPT_AGENT_SOCKET="$sock"
                t kd.a kmscrypt -q attach "$d" --name "kd$i"
                t kd.d kmscrypt -q detach "kd$i"
        ) || exit 1
        t cp.a cryptsetup open --key-file pass "$d" "cp$i"
        t cp.d cryptsetup close "cp$i"
        t cv.a cryptsetup open --volume-key-file vk "$d" "cv$i"
        t cv.d cryptsetup close "cv$i"
        t fl.a -i floor.key keyctl padd logon "kcbench:fl$i" @s -- \
                dmsetup create "fl$i" --table "0 $size crypt $cipher :64:logon:kcbench:fl$i $iv_offset $d $offset $nopts $opts"
        t fl.d dmsetup remove "fl$i"
        # Start-up alone: a program that loads and exits.
        t su.kmscrypt kmscrypt --version
        t su.cryptsetup cryptsetup --version
        t su.dmsetup dmsetup --version
        t su.keyctl keyctl --version
        i=$((i + 1))
done
keyctl clear @s
# The kd rows went through the agent, not the CLI's own fallback.
expect_eq "detaches done by kmscryptd" "$(grep -c ': kd[0-9]* detached at the request of uid' agent.log)" "$n"

# ---- in one process: the agent's path, the floor, the steps ----
kc-floor pair kx "$offset" "${sector_size:-512}" $devs >kx.out 2>err || die "kc-floor pair: $(cat err)"
sed -n 's/^attach //p' kx.out >kx.a
sed -n 's/^detach //p' kx.out >kx.d
sed -n 's/^create //p' kx.out >kf.a
sed -n 's/^remove //p' kx.out >kf.d
kc-floor profile kp $devs >kp.out 2>err || die "kc-floor profile: $(cat err)"
for step in peek header token unwrap verify keymap; do
        sed -n "s/^$step //p" kp.out >"kp.$step"
done
kcvm_mknodes
kcvm_no_key kmscrypt:

# median FILE: the median of its numbers, in milliseconds.
median() {
        sort -n "$1" | awk '{ v[NR] = $1 } END {
                if (NR == 0) { print "nan"; exit }
                m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                printf "%.2f", m / 1000 }'
}
for c in ka kd cp cv fl kx kf; do
        expect_eq "samples of $c" "$(wc -l <"$c.a") $(wc -l <"$c.d")" "$n $n"
        say "median $c $(median "$c.a") $(median "$c.d")"
done
for step in peek header token unwrap verify keymap; do
        say "step $step $(median "kp.$step")"
done
for p in kmscrypt cryptsetup dmsetup keyctl; do
        say "startup $p $(median "su.$p")"
done
say "volumes $n"
