#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The vm tier: boot a stock Debian cloud kernel under QEMU with an initramfs
# carrying the built programs and every guest test (tests/vm/guest/*.sh),
# run them all in one boot, and turn the guest's verdict lines into a
# report, the closing line "N passed, N failed" and an exit status
# (0 all passed, 1 something failed, 77 skipped: no QEMU or no kernel).
#
# Environment (all optional):
#   KC_VM_TESTS="a b"    run only these guest tests (names without .sh)
#   KC_VM_TIMEOUT=1800   seconds before the whole boot is killed
#   KC_VM_TEST_TIMEOUT=300  seconds before one guest test is killed
#   KC_VM_CACHE=DIR      where the kernel is kept (default $top_builddir/tests/vm/cache)
#   KC_VM_ACCEL=tcg      QEMU accelerator (kvm where the host has one)
#   KC_VM_MEMORY=1024 KC_VM_SMP=2
#   KC_VM_CPU=max        QEMU CPU model (the benchmarks compare max with one
#                        whose vector instructions TCG does not emulate)
#   KC_VM_CMDLINE="A=1"  extra kernel command line words; NAME=VALUE words
#                        reach /init, and so every guest test, as environment
#
# A guest test declares what it needs in header comments:
#   # kcvm-programs: tests/vm/kc-dm-smoke    built programs (relative to the build tree)
#   # kcvm-modules: dm-integrity             kernel modules besides the default set
#   # kcvm-libraries: libcurl.so.4           host libraries a program dlopen()s (skip if missing)
#   # kcvm-disk: 16M 48M                     persistent disks (host files, virtio-blk
#                                            /dev/vda, /dev/vdb... in the guest, KCVM_DISKS)
#   # kcvm-boots: 2                          boot this many times with the same disks
#   # kcvm-host: aws                         a service the host runs for the boot:
#       aws: moto_server over HTTPS on 127.0.0.1 (tests/vm/aws-host.py), reached
#       by the guest at https://10.0.2.100/ through a QEMU user-network guestfwd
#       (restrict=on: the guest reaches nothing else); the guest gets
#       KC_AWS_ENDPOINT, KC_AWS_KEY, KC_AWS_REGION, KC_AWS_HOST_PORT (moto's
#       port on the host's loopback, which the guest must not reach), /kc/aws/ca.pem (the test
#       CA) and /kc/aws/other-ca.pem (one that signed nothing here), or
#       KC_AWS_SKIP=<why> when moto is not installed (a hard error with
#       KC_REQUIRE_AWS=1, as CI sets it).
# A test with disks or more than one boot runs alone, in boots of its own
# (after the shared boot of every other test): its disks are fresh sparse
# files in $top_builddir/tests/vm/run/disks, attached with cache=writeback
# (guest flushes reach the host file system), and each boot gets
# KCVM_BOOT=<n> KCVM_BOOTS=<N> in its environment.  Every boot but the last
# must end in `kcvm_reset` (lib.sh: "KCVM: RESET <name>" on the console,
# then a reset with no sync, which ends QEMU through -no-reboot); the last
# gives the verdict.  A verdict in an earlier boot ends the series.
# See tests/vm/README.md.

set -u

srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${top_builddir:-.}
builddir=$(cd "$builddir" && pwd)
vmdir=$srcdir/tests/vm
rundir=$builddir/tests/vm/run
timeout_s=${KC_VM_TIMEOUT:-1800}
test_timeout_s=${KC_VM_TEST_TIMEOUT:-300}

skip() { echo "SKIP: $*"; exit 77; }
hard_error() { echo "ERROR: $*"; echo "0 passed, 1 failed"; exit 1; }
now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

t_start=$(now)

# ---- what the tier needs on the host ----
command -v qemu-system-x86_64 >/dev/null 2>&1 ||
        skip "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
for need in busybox:busybox-static cpio:cpio gzip:gzip modprobe:kmod depmod:kmod \
        dmsetup:dmsetup keyctl:keyutils cryptsetup:cryptsetup-bin mkfs.ext4:e2fsprogs \
        blkid:util-linux losetup:mount timeout:coreutils; do
        command -v "${need%%:*}" >/dev/null 2>&1 ||
                skip "${need%%:*} missing (apt-get install ${need#*:})"
done

# ---- the kernel ----
kout=$("$vmdir/kernel.sh")
case $? in
0) eval "$kout" ;;
77) skip "no Debian cloud kernel to boot" ;;
*) hard_error "kernel.sh failed" ;;
esac
t_kernel=$(now)

# ---- which tests, and what they need ----
all_tests=$(cd "$vmdir/guest" && ls -- *.sh 2>/dev/null | sed 's/\.sh$//' | LC_ALL=C sort)
if [ -n "${KC_VM_TESTS:-}" ]; then
        for t in $KC_VM_TESTS; do
                printf '%s\n' "$all_tests" | grep -qxF "$t" ||
                        hard_error "KC_VM_TESTS names '$t', which is not a test in tests/vm/guest (have: $(echo $all_tests))"
        done
        selected=$KC_VM_TESTS
else
        selected=$all_tests
fi
[ -n "$selected" ] || hard_error "no guest tests in $vmdir/guest"

# header VALUE-NAME SCRIPT: the words after "# kcvm-NAME:" lines
header() { sed -n "s/^# kcvm-$1:[[:space:]]*//p" "$2" | tr '\n' ' '; }

# Tests with disks or several boots run alone (their boots share nothing
# with the others); the rest share one boot, as always.
shared= alone= host_needs=
for t in $selected; do
        script=$vmdir/guest/$t.sh
        for p in $(header programs "$script"); do
                [ -x "$builddir/$p" ] ||
                        hard_error "guest test $t needs $p, which is not built (make check builds check_PROGRAMS)"
        done
        for h in $(header host "$script"); do
                case $h in aws) ;; *) hard_error "guest test $t asks for host service '$h' (known: aws)" ;; esac
                case " $host_needs " in *" $h "*) ;; *) host_needs="$host_needs $h" ;; esac
        done
        boots=$(echo $(header boots "$script"))
        case ${boots:-1} in
        [1-9]) ;;
        *) hard_error "guest test $t: '# kcvm-boots: $boots' is not one number from 1 to 9" ;;
        esac
        for d in $(header disk "$script"); do
                case $d in
                [1-9]*M) [ -z "$(printf '%s' "${d%M}" | tr -d 0-9)" ] ||
                        hard_error "guest test $t: disk size '$d' is not <number>M" ;;
                *) hard_error "guest test $t: disk size '$d' is not <number>M" ;;
                esac
        done
        if [ -n "$(header disk "$script")" ] || [ "${boots:-1}" != 1 ]; then
                alone="$alone $t"
        else
                shared="$shared $t"
        fi
done

# build_image OUT TEST...: the initramfs for these tests: their programs,
# modules and libraries, and $image_extra (host files, network modules).
image_extra=
build_image() {
        _out=$1
        shift
        _tests=$*
        set --
        for t in $_tests; do
                script=$vmdir/guest/$t.sh
                set -- "$@" -t "$script"
                for p in $(header programs "$script"); do
                        case " $* " in *" -b $builddir/$p "*) ;; *) set -- "$@" -b "$builddir/$p" ;; esac
                done
                for m in $(header modules "$script"); do
                        set -- "$@" -m "$m"
                done
                for l in $(header libraries "$script"); do
                        path=$(ldconfig -p 2>/dev/null | awk -v l="$l" '$1 == l && /x86-64/ { print $NF; exit }')
                        # Missing on the host: the guest test sees it missing and skips.
                        [ -z "$path" ] || case " $* " in *" -l $path "*) ;; *) set -- "$@" -l "$path" ;; esac
                done
                # Persistent disks are virtio-blk devices on QEMU's PCI bus.
                [ -z "$(header disk "$script")" ] || set -- "$@" -m virtio_pci -m virtio_blk
        done
        # shellcheck disable=SC2086 # words: -f SRC=DEST and -m MODULE
        "$vmdir/mkinitramfs.sh" -k "$KC_VM_KROOT" -v "$KC_VM_KVER" -o "$_out" "$@" $image_extra ||
                hard_error "mkinitramfs.sh failed"
}

# ---- services on the host ----
# QEMU's network: none, unless a test asks for a host service.
net="-nic none"
guest_env=
case " $host_needs " in
*" aws "*)
        awsdir=$rundir/aws
        rm -rf "$awsdir"
        mkdir -p "$awsdir"
        if command -v python3 >/dev/null 2>&1; then
                python3 "$vmdir/aws-host.py" "$awsdir" </dev/null >"$awsdir/host.log" 2>&1 &
        else
                echo "KC_AWS_SKIP=python3_missing_on_the_host_(no_moto_server)" >"$awsdir/env" &
        fi
        aws_pid=$!
        trap 'kill "$aws_pid" 2>/dev/null; wait "$aws_pid" 2>/dev/null' EXIT
        # wait_for FILE: up to 90 s (moto takes seconds to start on a loaded host).
        wait_for() {
                i=0
                while [ ! -e "$1" ]; do
                        kill -0 "$aws_pid" 2>/dev/null || [ -e "$1" ] ||
                                hard_error "tests/vm/aws-host.py ended without $1: $(tail -n 5 "$awsdir/host.log")"
                        i=$((i + 1))
                        [ "$i" -lt 900 ] || hard_error "tests/vm/aws-host.py: no $1 after 90 s"
                        sleep 0.1
                done
        }
        wait_for "$awsdir/env"
        . "$awsdir/env"
        if [ -n "${KC_AWS_SKIP:-}" ] && [ "${KC_REQUIRE_AWS:-0}" = 1 ]; then
                hard_error "KC_REQUIRE_AWS=1 but no AWS KMS for the guest: $(echo "$KC_AWS_SKIP" | tr _ ' ')"
        elif [ -n "${KC_AWS_SKIP:-}" ]; then
                echo "vm: no AWS KMS for the guest: $(echo "$KC_AWS_SKIP" | tr _ ' ')"
                guest_env="KC_AWS_SKIP=$KC_AWS_SKIP"
        else
                echo "vm: moto_server on https://127.0.0.1:$KC_VM_AWS_PORT, the guest's $KC_AWS_ENDPOINT"
                guest_env="KC_AWS_ENDPOINT=$KC_AWS_ENDPOINT KC_AWS_KEY=$KC_AWS_KEY KC_AWS_REGION=$KC_AWS_REGION"
                guest_env="$guest_env KC_AWS_HOST_PORT=$KC_VM_AWS_PORT"
                image_extra="-f $awsdir/ca.pem=/kc/aws/ca.pem -f $awsdir/other-ca.pem=/kc/aws/other-ca.pem -m virtio_pci -m virtio_net"
                # The guest's only way out: 10.0.2.100:443, relayed byte for byte
                # to moto on the host's loopback (TLS stays end to end).  QEMU
                # runs the relay once per connection; a script keeps the
                # command one word.
                printf '#!/bin/sh\nexec %s nc 127.0.0.1 %s\n' "$(command -v busybox)" "$KC_VM_AWS_PORT" >"$awsdir/relay"
                chmod 755 "$awsdir/relay"
                net="-netdev user,id=kcnet,restrict=on,guestfwd=tcp:10.0.2.100:443-cmd:$awsdir/relay -device virtio-net-pci,netdev=kcnet,romfile="
        fi
        ;;
esac

# ---- boots ----
accel=${KC_VM_ACCEL:-tcg}
mkdir -p "$rundir"

# boot INITRD CONSOLE [APPEND [QEMU-ARG...]]: one boot; the console, cleaned
# of escape sequences and \r, in CONSOLE.txt; QEMU's status in qemu_rc.
boot() {
        _initrd=$1 _console=$2 _append=${3:-}
        shift 2
        [ $# = 0 ] || shift
        # shellcheck disable=SC2086 # $net: QEMU words
        timeout -k 5 "$timeout_s" qemu-system-x86_64 \
                -accel "$accel" -cpu "${KC_VM_CPU:-max}" -m "${KC_VM_MEMORY:-1024}" -smp "${KC_VM_SMP:-2}" \
                -nodefaults -nographic -no-reboot -serial stdio -monitor none $net "$@" \
                -kernel "$KC_VM_VMLINUZ" -initrd "$_initrd" \
                -append "console=ttyS0 quiet loglevel=3 panic=-1 kcvm.timeout=$test_timeout_s $guest_env ${KC_VM_CMDLINE:-} $_append" \
                </dev/null >"$_console" 2>&1
        qemu_rc=$?
        # Serial lines end in \r\n and the firmware clears the screen with escape
        # sequences; verdicts are only ever at the start of a line.
        tr -d '\r' <"$_console" | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1b[A-Za-z]//g' >"$_console.txt"
}

# verdict TEST CONSOLE.txt: the test's last verdict line, as "PASS name (1.2s)" etc., or nothing.
verdict() {
        grep -E '^KCVM: (PASS|FAIL|SKIP) ' "$2" | awk -v t="$1" '$3 == t || $3 == t ":"' | tail -n1 | sed 's/^KCVM: //'
}

# why_no_done CONSOLE.txt: why a boot ended without "KCVM: DONE".
why_no_done() {
        if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
                echo "killed after the ${timeout_s}s boot timeout (KC_VM_TIMEOUT)"
        elif grep -q 'Kernel panic' "$1"; then
                echo "kernel panic"
        elif ! grep -q '^KCVM: BOOT ' "$1"; then
                echo "the guest never ran /init (qemu exit status $qemu_rc)"
        else
                echo "qemu exit status $qemu_rc"
        fi
}

passed=0 failed=0 skipped=0 report= bad_boot=
# record LINE: one report line ("PASS name (1.2s)", "FAIL name: why", ...).
record() {
        case $1 in
        PASS*) passed=$((passed + 1)) ;;
        SKIP*) skipped=$((skipped + 1)) ;;
        *) failed=$((failed + 1)) ;;
        esac
        report="$report$1
"
}

show_console() { # CONSOLE.txt TITLE
        echo "---- guest console$2 ----"
        cat "$1"
        echo "---- end of guest console$2 ----"
}

t_initrd=0 t_boot=0
echo "vm: kernel $KC_VM_KVER, accel $accel, tests: $(echo $selected)"

# The shared boot: every test without disks or boots of its own.
if [ -n "$shared" ]; then
        t0=$(now)
        build_image "$rundir/initrd.gz" $shared
        t1=$(now)
        console=$rundir/console.log
        boot "$rundir/initrd.gz" "$console"
        t2=$(now)
        t_initrd=$(awk -v a="$t_initrd" -v b="$(seconds "$t0" "$t1")" 'BEGIN { print a + b }')
        t_boot=$(awk -v a="$t_boot" -v b="$(seconds "$t1" "$t2")" 'BEGIN { print a + b }')
        show_console "$console.txt" ""
        for t in $shared; do
                v=$(verdict "$t" "$console.txt")
                record "${v:-FAIL $t: no verdict from the guest}"
        done
        if ! grep -qE '^KCVM: DONE [0-9]+$' "$console.txt"; then
                echo "vm: the guest never printed 'KCVM: DONE': $(why_no_done "$console.txt"); console tail:"
                tail -n 40 "$console.txt" | sed 's/^/    /'
                bad_boot=yes
        fi
fi

# Each test with disks or boots of its own: fresh disks, then boot 1..N.
for t in $alone; do
        script=$vmdir/guest/$t.sh
        boots=$(echo $(header boots "$script"))
        boots=${boots:-1}
        t0=$(now)
        build_image "$rundir/initrd-$t.gz" "$t"
        t1=$(now)
        set --
        disks= n=0
        mkdir -p "$rundir/disks"
        for d in $(header disk "$script"); do
                img=$rundir/disks/$t-$n.img
                rm -f "$img"
                truncate -s "$d" "$img" || hard_error "cannot create disk $img"
                set -- "$@" -drive "file=$img,format=raw,if=none,id=kcd$n,cache=writeback" \
                        -device "virtio-blk-pci,drive=kcd$n,romfile="
                disks="$disks${disks:+,}/dev/vd$(printf "\\$(printf %03o $((97 + n)))")"
                n=$((n + 1))
        done
        k=1 line=
        while [ -z "$line" ]; do
                console=$rundir/console-$t-$k.log
                boot "$rundir/initrd-$t.gz" "$console" "KCVM_BOOT=$k KCVM_BOOTS=$boots${disks:+ KCVM_DISKS=$disks}" "$@"
                show_console "$console.txt" " ($t, boot $k of $boots)"
                v=$(verdict "$t" "$console.txt")
                done_line=$(grep -E '^KCVM: DONE [0-9]+$' "$console.txt")
                if [ "$k" -lt "$boots" ]; then
                        case $v in
                        PASS*) line="FAIL $t: passed in boot $k of $boots, without the reset that leads to boot $((k + 1))" ;;
                        FAIL*|SKIP*) line="$v (boot $k of $boots)" ;;
                        *) grep -qxF "KCVM: RESET $t" "$console.txt" ||
                                line="FAIL $t: boot $k of $boots ended with no verdict and no reset: $(why_no_done "$console.txt")" ;;
                        esac
                else
                        line=${v:-FAIL $t: no verdict from the guest in boot $k of $boots}
                        if [ -z "$done_line" ]; then
                                echo "vm: boot $k of $boots ($t) never printed 'KCVM: DONE': $(why_no_done "$console.txt"); console tail:"
                                tail -n 40 "$console.txt" | sed 's/^/    /'
                                bad_boot=yes
                        fi
                fi
                k=$((k + 1))
        done
        t2=$(now)
        t_initrd=$(awk -v a="$t_initrd" -v b="$(seconds "$t0" "$t1")" 'BEGIN { print a + b }')
        t_boot=$(awk -v a="$t_boot" -v b="$(seconds "$t1" "$t2")" 'BEGIN { print a + b }')
        record "$line"
done

# A boot that went wrong fails the tier even if every verdict came.
[ -z "$bad_boot" ] || [ "$failed" -gt 0 ] || failed=$((failed + 1))

echo "---- vm tier report ----"
printf '%s' "$report"
t_end=$(now)
echo "vm timing: kernel $(seconds "$t_start" "$t_kernel")s, initramfs ${t_initrd}s$([ -z "$shared" ] || echo " ($(du -k "$rundir/initrd.gz" | cut -f1) KiB)"), boot+tests ${t_boot}s, total $(seconds "$t_start" "$t_end")s"
if [ "$skipped" -gt 0 ]; then
        echo "$passed passed, $failed failed, $skipped skipped"
else
        echo "$passed passed, $failed failed"
fi
[ "$failed" = 0 ]
