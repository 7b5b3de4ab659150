# SPDX-License-Identifier: LGPL-2.1-or-later
# Attach latency through the aws provider against moto vs through local, in
# this one guest (issue #9; tests/bench/aws-attach-bench.sh boots it with
# KC_VM_BENCH=1, skipped otherwise).  KC_BENCH_VOLUMES (10) volumes per
# provider, block copies of one formatted volume with UUIDs of their own;
# each round attaches and detaches one volume of each provider in turn, so a
# change of host load hits both alike.  Processes are timed by kc-floor
# (fork, exec, wait); then the same volumes attach in one process with the
# KMS opened once (kmscryptd's path), and kc_attach's unwrap step alone (the
# KMS call); last, kmscryptd attaching them all at start, with each -j of
# KC_AWS_BENCH_J (4,8,16).  Prints "BENCH: " lines for the host script.
# kcvm-programs: kmscrypt kmscryptd tests/bench/kc-floor
# kcvm-libraries: libcurl.so.4
# kcvm-host: aws
. /kc/lib.sh

[ "${KC_VM_BENCH:-0}" = 1 ] || skip "benchmark; run tests/bench/aws-attach-bench.sh (KC_VM_BENCH=1)"
n=${KC_BENCH_VOLUMES:-10}

kcvm_aws_up
kmscrypt -q key create --alias alias/bench || die "kmscrypt key create failed"
say() { echo "BENCH: $*"; }

# mkvols PREFIX KEY: N volumes of KEY; their devices in $vols.
mkvols() {
        kcvm_loop 17
        kmscrypt -q format "$KCVM_LOOP" --key "$2" --context "db-id=bench,volume-id=$1" ||
                die "format with $2 failed"
        kcvm_copies "$KCVM_LOOP" "$n"
        vols=$KCVM_COPIES
}
mkvols local alias/bench
local_vols=$vols
mkvols aws "aws:$KC_AWS_KEY"
aws_vols=$vols
defer "for m in \$(dmsetup ls | awk '/^(lo|aw|lx|ax|lp|ap)[0-9]/ { print \$1 }'); do dmsetup remove \$m; done"

# One warm-up attach each (the first TLS handshake and page cache), not counted.
set -- $aws_vols
kmscrypt -q attach "$1" --name warm && kmscrypt -q detach warm || die "warm-up attach through aws failed"
set -- $local_vols
kmscrypt -q attach "$1" --name warm && kmscrypt -q detach warm || die "warm-up attach through local failed"

# aws_decrypts: Decrypt calls the aws provider got answered, from the audit
# log (the aws volumes are the ones of context volume-id=aws).
aws_decrypts() {
        grep -c '"operation":"Decrypt".*"volume-id":"aws"}.*"result":"ok"' "$KMSCRYPT_AUDIT_LOG" || true
}
before=$(aws_decrypts)
i=0
for l in $local_vols; do
        set -- $aws_vols
        shift "$i"
        kcvm_time lo.a kmscrypt -q attach "$l" --name "lo$i"
        kcvm_time lo.d kmscrypt -q detach "lo$i"
        kcvm_time aw.a kmscrypt -q attach "$1" --name "aw$i"
        kcvm_time aw.d kmscrypt -q detach "aw$i"
        i=$((i + 1))
done
after=$(aws_decrypts)
[ "$((after - before))" = "$n" ] ||
        die "moto answered $((after - before)) Decrypt calls during the rounds, not $n: $(tail -n 1 "$KMSCRYPT_AUDIT_LOG" | cut -c1-300)"

# In one process with the KMS opened once (kmscryptd's path: no start-up,
# one libcurl handle), then kc_attach's steps apiece: "unwrap" is the KMS
# call alone.
for c in lo:lx:lp:"$local_vols" aw:ax:ap:"$aws_vols"; do
        p=${c%%:*} c=${c#*:}
        x=${c%%:*} c=${c#*:}
        q=${c%%:*} devs=${c#*:}
        kc-floor attach "$x" $devs >"$x.out" 2>err || die "kc-floor attach ($p): $(cat err)"
        sed -n 's/^attach //p' "$x.out" >"$x.a"
        sed -n 's/^detach //p' "$x.out" >"$x.d"
        kc-floor profile "$q" $devs >"$q.out" 2>err || die "kc-floor profile ($p): $(cat err)"
        sed -n 's/^unwrap //p' "$q.out" >"$p.unwrap"
done
kcvm_mknodes

# kmscryptd attaching the aws volumes at start (start to ready, its own
# count), with each -j of KC_AWS_BENCH_J: an attach holds its place while
# it waits on the KMS, so how many may wait at once.  Three rounds, each
# running every -j once in turn, so a drift hits all alike.
: >"$KCVM_DIR/agent-volumes"
i=0
for d in $aws_vols; do
        echo "ag$i $d db-id=bench,volume-id=aws kms=aws" >>"$KCVM_DIR/agent-volumes"
        i=$((i + 1))
done
agent_aws() {
        kmscryptd --socket "$KCVM_DIR/agent.sock" --volumes "$KCVM_DIR/agent-volumes" --group '' --stderr "$@" \
                </dev/null >"$KCVM_DIR/agent.log" 2>&1 &
        _pid=$!
        _i=0
        until grep -q 'ready: ' "$KCVM_DIR/agent.log"; do
                _i=$((_i + 1))
                [ "$_i" -lt 1200 ] || die "kmscryptd $* not ready within 120 s: $(tail -n 3 "$KCVM_DIR/agent.log")"
                sleep 0.1
        done
        kill -TERM "$_pid"
        wait "$_pid"
        set -- $(sed -n 's/.*ready: \([0-9]*\) of \([0-9]*\) volumes attached, \([0-9.]*\) s after start.*/\1 \2 \3/p' \
                "$KCVM_DIR/agent.log")
        expect_eq "volumes the agent attached" "$1 of $2" "$n of $n"
        awk -v s="$3" 'BEGIN { print s * 1000 }'        # ms, as kcvm_median takes them
        for m in $(dmsetup ls | awk '/^ag[0-9]/ { print $1 }'); do dmsetup remove "$m" || die "cannot remove $m"; done
}
js=$(echo "${KC_AWS_BENCH_J:-4,8,16}" | tr , ' ')
for r in 1 2 3; do
        for j in $js; do
                agent_aws -j "$j" >>"agent-$j"
        done
done
for j in $js; do
        say "agent $j $(kcvm_median "agent-$j") $(tr '\n' ' ' <"agent-$j")"
done
kcvm_no_key kmscrypt:

for c in lo aw lx ax; do
        expect_eq "samples of $c" "$(wc -l <"$c.a") $(wc -l <"$c.d")" "$n $n"
        say "median $c $(kcvm_median "$c.a") $(kcvm_median "$c.d") $(sort -n "$c.a" | head -n1) $(sort -n "$c.a" | tail -n1)"
done
for c in lo aw; do
        expect_eq "unwrap samples of $c" "$(wc -l <"$c.unwrap")" "$n"
        say "unwrap $c $(kcvm_median "$c.unwrap")"
done
say "volumes $n"
