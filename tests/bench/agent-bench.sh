#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The agent benchmark of issue 5, vm tier, one guest: boots the vm tier's
# kernel with only tests/vm/guest/agent-bench.sh and KC_VM_BENCH=1 on the
# kernel command line (init hands it to the test), and prints the guest's
# table: kmscryptd's start-to-all-attached time for 100 configured volumes
# against 100 times the in-process floor and against `cryptsetup open` at
# its default keyslot cost.  Run from the build tree after `make check`
# (which builds the programs the guest needs):
#
#     ../tests/bench/agent-bench.sh            # or KC_VM_BENCH_N=20 for a quick look
#
# Environment: KC_VM_BENCH_N (100), KC_VM_BENCH_CS (5: volumes timed with
# cryptsetup), KC_VM_BENCH_J (1,4: agent runs with these -j besides the default),
# KC_VM_BENCH_RUNS (4: runs of the default agent, whose median is compared),
# KC_VM_TIMEOUT (3600 s), KC_VM_CPU (max: the QEMU CPU model), KC_VM_MEMORY
# (1024), KC_VM_SMP (2), KC_VM_ACCEL (tcg), KC_VM_CACHE (the kernel cache).
# TCG emulates vector instructions through helper calls, so OpenSSL's AVX2
# and SHA code is slower in the guest than its scalar code, unlike on any
# real CPU; KC_VM_CPU="max,avx=off,avx2=off,sha-ni=off" boots a guest CPU
# without them, for every program alike (ssse3=off leaves the guest's
# userspace unbootable).
# Exit status 0 when the guest passed, 1 otherwise.

set -eu

srcdir=$(cd "$(dirname "$0")/../.." && pwd)
builddir=$(cd "${top_builddir:-.}" && pwd)
vmdir=$srcdir/tests/vm
guest=$vmdir/guest/agent-bench.sh
rundir=$builddir/tests/bench/agent-bench.run
n=${KC_VM_BENCH_N:-100}

[ -x "$builddir/kmscryptd" ] || { echo "run from a build tree after make check (no $builddir/kmscryptd)"; exit 1; }
kout=$(top_builddir=$builddir "$vmdir/kernel.sh") || { echo "no kernel for the vm tier"; exit 1; }
eval "$kout"

set -- -t "$guest"
for p in $(sed -n 's/^# kcvm-programs:[[:space:]]*//p' "$guest"); do
        [ -x "$builddir/$p" ] || { echo "$p is not built (make check builds it)"; exit 1; }
        set -- "$@" -b "$builddir/$p"
done
mkdir -p "$rundir"
"$vmdir/mkinitramfs.sh" -k "$KC_VM_KROOT" -v "$KC_VM_KVER" -o "$rundir/initrd.gz" "$@"

echo "agent-bench: $n volumes, kernel $KC_VM_KVER, console in $rundir/console.log"
timeout -k 5 "${KC_VM_TIMEOUT:-3600}" qemu-system-x86_64 \
        -accel "${KC_VM_ACCEL:-tcg}" -cpu "${KC_VM_CPU:-max}" -m "${KC_VM_MEMORY:-1024}" -smp "${KC_VM_SMP:-2}" \
        -nodefaults -nographic -no-reboot -serial stdio -monitor none -nic none \
        -kernel "$KC_VM_VMLINUZ" -initrd "$rundir/initrd.gz" \
        -append "console=ttyS0 quiet loglevel=3 panic=-1 kcvm.timeout=${KC_VM_TIMEOUT:-3600} KC_VM_BENCH=1 KC_VM_BENCH_N=$n KC_VM_BENCH_CS=${KC_VM_BENCH_CS:-5} KC_VM_BENCH_J=${KC_VM_BENCH_J:-1,4} KC_VM_BENCH_RUNS=${KC_VM_BENCH_RUNS:-4}" \
        </dev/null >"$rundir/console.log" 2>&1 || true
tr -d '\r' <"$rundir/console.log" | sed -n 's/^.*| BENCH: //p'
verdict=$(tr -d '\r' <"$rundir/console.log" | grep -E '^KCVM: (PASS|FAIL|SKIP) agent-bench' || echo "no verdict")
echo "$verdict"
case $verdict in "KCVM: PASS "*) exit 0 ;; *) tr -d '\r' <"$rundir/console.log" | tail -n 30; exit 1 ;; esac
