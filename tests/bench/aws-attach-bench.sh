#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Attach latency through the aws provider vs through local (issue #9), in
# one boot of the vm tier's guest (tests/vm/guest/aws-bench.sh): the median
# `kmscrypt attach` and detach over KC_BENCH_VOLUMES (10) volumes of each
# provider, side by side, and the difference.  The aws volumes unwrap their
# key with a Decrypt call to moto_server on the host's loopback, over HTTPS
# through QEMU's user network (tests/vm/run.sh, "# kcvm-host: aws");
# everything else on the two paths is the same code, so the difference is
# that network round trip (plus, for a process per attach, loading libcurl
# and a TLS handshake).  Also in one process with the KMS opened once, and
# kc_attach's unwrap step alone.  Last, kmscryptd attaching all the aws
# volumes at start with each -j of KC_AWS_BENCH_J (4,8,16): what more
# attaches at once buy when each waits on a KMS over the network.
#
#     make check TESTS=                # builds kmscrypt and tests/bench/kc-floor
#     tests/bench/aws-attach-bench.sh  # from the build tree; the log goes to aws-attach-bench.log
#
# Timings are emulated (TCG): compare the rows with each other, never with
# hardware.  Exit status 0 when the benchmark ran, 1 when it failed, 77 when
# it cannot run here (no vm tier, or moto not installed: pip install 'moto[server]').

set -u

srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=$(cd "${top_builddir:-.}" && pwd)
n=${KC_BENCH_VOLUMES:-10}
log=$builddir/aws-attach-bench.log

for p in kmscrypt tests/bench/kc-floor; do
        [ -x "$builddir/$p" ] || { echo "aws-attach-bench: $builddir/$p is not built (make check builds it)"; exit 1; }
done

echo "aws-attach-bench: $n volumes per provider in one guest boot (log: $log)"
top_srcdir=$srcdir top_builddir=$builddir KC_VM_TESTS=aws-bench \
        KC_VM_CMDLINE="KC_VM_BENCH=1 KC_BENCH_VOLUMES=$n KC_AWS_BENCH_J=${KC_AWS_BENCH_J:-4,8,16} ${KC_VM_CMDLINE:-}" \
        KC_VM_MEMORY=${KC_VM_MEMORY:-2048} KC_VM_TEST_TIMEOUT=${KC_VM_TEST_TIMEOUT:-1800} \
        KC_VM_TIMEOUT=${KC_VM_TIMEOUT:-2400} \
        "$srcdir/tests/vm/run.sh" >"$log" 2>&1
rc=$?
[ "$rc" = 77 ] && { tail -n 3 "$log"; exit 77; }
if grep -q '^SKIP aws-bench' "$log"; then
        grep '^SKIP aws-bench' "$log"
        exit 77
fi
if [ "$rc" != 0 ] || ! grep -q '^PASS aws-bench' "$log"; then
        echo "aws-attach-bench: the guest run failed:"
        grep -E '^(FAIL|SKIP|vm:)|aws-bench\| (FAIL|SKIP)' "$log" | sed 's/^/    /'
        exit 1
fi

sed -n 's/^ *aws-bench| BENCH: //p' "$log" | awk '
$1 == "median" { a[$2] = $3; d[$2] = $4; lo[$2] = $5 / 1000; hi[$2] = $6 / 1000 }
$1 == "unwrap" { u[$2] = $3 }
$1 == "volumes" { vols = $2 }
$1 == "agent" { js[++nj] = $2; amed[$2] = $3; $1 = $2 = $3 = ""; aruns[js[nj]] = $0 }
function row(label, k) {
        printf "%-52s %9.2f %9.2f %9.2f %9.2f\n", label, a[k], d[k], lo[k], hi[k]
}
function diff(label, x, y) {
        printf "%-52s %+9.2f %+9.2f\n\n", label, a[x] - a[y], d[x] - d[y]
}
END {
        printf "median latency per volume over %d volumes per provider (ms, emulated; one guest)\n\n", vols
        printf "%-52s %9s %9s %9s %9s\n", "kmscrypt attach / detach, a process each", "attach", "detach", "min att", "max att"
        row("local (keystore in the guest)", "lo")
        row("aws (moto on the host, HTTPS)", "aw")
        diff("difference, aws - local", "aw", "lo")
        printf "%-52s %9s %9s %9s %9s\n", "kc_attach / kc_detach, one process, KMS opened once", "attach", "detach", "min att", "max att"
        row("local", "lx")
        row("aws", "ax")
        diff("difference, aws - local", "ax", "lx")
        printf "%-52s %9.2f\n", "unwrap step alone (KMS call), local", u["lo"]
        printf "%-52s %9.2f\n", "unwrap step alone (KMS call), aws", u["aw"]
        printf "%-52s %+9.2f\n\n", "difference, aws - local", u["aw"] - u["lo"]
        printf "kmscryptd, start to all %d aws volumes attached (median of 3)   median (s)   runs (ms)\n", vols
        for (i = 1; i <= nj; i++)
                printf "%-52s %9.2f  %s\n", "-j " js[i], amed[js[i]], aruns[js[i]]
        printf "\n"
        printf "Both providers run the same attach code; only the unwrap differs.  So the\n"
        printf "aws - local difference is the network round trip: a Decrypt call from the\n"
        printf "guest through QEMU user networking (the guestfwd relay) to moto on the host\n"
        printf "loopback and back, with moto'"'"'s own work, against the local provider'"'"'s\n"
        printf "in-process unwrap.  In one process (kmscryptd'"'"'s path) the attach difference\n"
        printf "is the unwrap step'"'"'s; as a process per attach it also pays what each new\n"
        printf "process pays for the network: loading libcurl (dlopen()ed on first use,\n"
        printf "with its libraries) and a TLS handshake.  Detach asks no KMS: its\n"
        printf "difference is noise.  Rounds interleave the providers, so host load hits both.\n"
}'
