#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Reencryption throughput benchmark (issue #7): a KC_BENCH_MIB (256) MiB
# volume, attached, reencrypted online by `kmscrypt reencrypt` and by stock
# `cryptsetup reencrypt` in the same guest boot, twice each in alternating order (tests/vm/guest/reencrypt-bench.sh);
# prints MiB/s for each and the ratio.
#
#     make check TESTS=                # builds kmscrypt
#     tests/bench/reencrypt-bench.sh   # from the build tree; log in reencrypt-bench.log
#
# kmscrypt drives libcryptsetup's own reencryption, so the target is a ratio
# near 1.0; what differs is the KMS calls, the keyslots and the table swaps
# at either end.  Timings are emulated (TCG): compare the rows with each
# other, never with hardware.  Exit 0 when it ran, 1 when it failed, 77 when
# the vm tier cannot run here.

set -u

srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=$(cd "${top_builddir:-.}" && pwd)
mib=${KC_BENCH_MIB:-256}
log=$builddir/reencrypt-bench.log

[ -x "$builddir/kmscrypt" ] || { echo "reencrypt-bench: $builddir/kmscrypt is not built"; exit 1; }
echo "reencrypt-bench: a $mib MiB volume, kmscrypt and cryptsetup in one guest boot (log: $log)"
top_srcdir=$srcdir top_builddir=$builddir KC_VM_TESTS=reencrypt-bench \
        KC_VM_CMDLINE="KC_VM_BENCH=1 KC_BENCH_MIB=$mib ${KC_VM_CMDLINE:-}" \
        KC_VM_MEMORY=${KC_VM_MEMORY:-2048} KC_VM_TEST_TIMEOUT=${KC_VM_TEST_TIMEOUT:-3000} \
        KC_VM_TIMEOUT=${KC_VM_TIMEOUT:-3600} \
        "$srcdir/tests/vm/run.sh" >"$log" 2>&1
rc=$?
[ "$rc" = 77 ] && { tail -n 3 "$log"; exit 77; }
if [ "$rc" != 0 ] || ! grep -q '^PASS reencrypt-bench' "$log"; then
        echo "reencrypt-bench: the guest run failed:"
        grep -E '^(FAIL|SKIP|vm:)|reencrypt-bench\| (FAIL|SKIP)' "$log" | sed 's/^/    /'
        exit 1
fi

sed -n 's/^ *reencrypt-bench| BENCH: //p' "$log" | awk '
$1 == "data" { data = $2 }
$1 == "kmscrypt" || $1 == "cryptsetup" { secs[$1, ++runs[$1]] = $2; sum[$1] += $2 }
function row(tool, label,    i, line) {
        line = sprintf("%-24s", label)
        for (i = 1; i <= runs[tool]; i++)
                line = line sprintf(" %9.2f", data / secs[tool, i])
        return line sprintf(" %9.2f", data * runs[tool] / sum[tool])
}
END {
        printf "online reencryption of %d MiB of data, each tool twice in the order\n", data
        printf "kmscrypt, cryptsetup, cryptsetup, kmscrypt (emulated; MiB/s)\n\n"
        printf "%-24s %9s %9s %9s\n", "tool", "run 1", "run 2", "overall"
        print row("kmscrypt", "kmscrypt reencrypt")
        print row("cryptsetup", "cryptsetup reencrypt")
        printf "\nratio kmscrypt / cryptsetup throughput: %.2f (run 1: %.2f, run 2: %.2f)\n",
                sum["cryptsetup"] / sum["kmscrypt"], secs["cryptsetup", 1] / secs["kmscrypt", 1],
                secs["cryptsetup", 2] / secs["kmscrypt", 2]
}'
