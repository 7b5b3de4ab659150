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
#   KC_VM_CMDLINE="A=1"  extra kernel command line words; NAME=VALUE words
#                        reach /init, and so every guest test, as environment
#
# A guest test declares what it needs in header comments:
#   # kcvm-programs: tests/vm/kc-dm-smoke    built programs (relative to the build tree)
#   # kcvm-modules: dm-integrity             kernel modules besides the default set
#   # kcvm-libraries: libcurl.so.4           host libraries a program dlopen()s (skip if missing)
#   # kcvm-host: aws                         a service the host runs for the boot:
#       aws: moto_server over HTTPS on 127.0.0.1 (tests/vm/aws-host.py), reached
#       by the guest at https://10.0.2.100/ through a QEMU user-network guestfwd
#       (restrict=on: the guest reaches nothing else); the guest gets
#       KC_AWS_ENDPOINT, KC_AWS_KEY, KC_AWS_REGION, KC_AWS_HOST_PORT (moto's
#       port on the host's loopback, which the guest must not reach), /kc/aws/ca.pem (the test
#       CA) and /kc/aws/other-ca.pem (one that signed nothing here), or
#       KC_AWS_SKIP=<why> when moto is not installed.
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

host_needs=
set --
for t in $selected; do
        script=$vmdir/guest/$t.sh
        set -- "$@" -t "$script"
        for p in $(header programs "$script"); do
                [ -x "$builddir/$p" ] ||
                        hard_error "guest test $t needs $p, which is not built (make check builds check_PROGRAMS)"
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
        for h in $(header host "$script"); do
                case $h in aws) ;; *) hard_error "guest test $t asks for host service '$h' (known: aws)" ;; esac
                case " $host_needs " in *" $h "*) ;; *) host_needs="$host_needs $h" ;; esac
        done
done

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
        if [ -n "${KC_AWS_SKIP:-}" ]; then
                echo "vm: no AWS KMS for the guest: $(echo "$KC_AWS_SKIP" | tr _ ' ')"
                guest_env="KC_AWS_SKIP=$KC_AWS_SKIP"
        else
                echo "vm: moto_server on https://127.0.0.1:$KC_VM_AWS_PORT, the guest's $KC_AWS_ENDPOINT"
                guest_env="KC_AWS_ENDPOINT=$KC_AWS_ENDPOINT KC_AWS_KEY=$KC_AWS_KEY KC_AWS_REGION=$KC_AWS_REGION"
                guest_env="$guest_env KC_AWS_HOST_PORT=$KC_VM_AWS_PORT"
                set -- "$@" -f "$awsdir/ca.pem=/kc/aws/ca.pem" -f "$awsdir/other-ca.pem=/kc/aws/other-ca.pem" -m virtio_pci -m virtio_net
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

# ---- the initramfs ----
mkdir -p "$rundir"
initrd=$rundir/initrd.gz
console=$rundir/console.log
"$vmdir/mkinitramfs.sh" -k "$KC_VM_KROOT" -v "$KC_VM_KVER" -o "$initrd" "$@" ||
        hard_error "mkinitramfs.sh failed"
t_initrd=$(now)

# ---- boot ----
accel=${KC_VM_ACCEL:-tcg}
echo "vm: kernel $KC_VM_KVER, accel $accel, tests: $(echo $selected)"
timeout -k 5 "$timeout_s" qemu-system-x86_64 \
        -accel "$accel" -cpu max -m "${KC_VM_MEMORY:-1024}" -smp "${KC_VM_SMP:-2}" \
        -nodefaults -nographic -no-reboot -serial stdio -monitor none $net \
        -kernel "$KC_VM_VMLINUZ" -initrd "$initrd" \
        -append "console=ttyS0 quiet loglevel=3 panic=-1 kcvm.timeout=$test_timeout_s $guest_env ${KC_VM_CMDLINE:-}" \
        </dev/null >"$console" 2>&1
qemu_rc=$?
t_boot=$(now)

# ---- the guest's story ----
# Serial lines end in \r\n and the firmware clears the screen with escape
# sequences; verdicts are only ever at the start of a line.
tr -d '\r' <"$console" | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1b[A-Za-z]//g' >"$console.txt"
echo "---- guest console ----"
cat "$console.txt"
echo "---- end of guest console ----"

verdicts=$(grep -E '^KCVM: (PASS|FAIL|SKIP) ' "$console.txt")
done_line=$(grep -E '^KCVM: DONE [0-9]+$' "$console.txt" | tail -n1)

passed=0 failed=0 skipped=0 report=
for t in $selected; do
        v=$(printf '%s\n' "$verdicts" | awk -v t="$t" '$3 == t || $3 == t ":"' | tail -n1)
        case $v in
        "KCVM: PASS "*) passed=$((passed + 1)); line="PASS ${v#KCVM: PASS }" ;;
        "KCVM: SKIP "*) skipped=$((skipped + 1)); line="SKIP ${v#KCVM: SKIP }" ;;
        "KCVM: FAIL "*) failed=$((failed + 1)); line="FAIL ${v#KCVM: FAIL }" ;;
        *) failed=$((failed + 1)); line="FAIL $t: no verdict from the guest" ;;
        esac
        report="$report$line
"
done

if [ -z "$done_line" ]; then
        if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
                why="killed after the ${timeout_s}s boot timeout (KC_VM_TIMEOUT)"
        elif grep -q 'Kernel panic' "$console.txt"; then
                why="kernel panic"
        elif ! grep -q '^KCVM: BOOT ' "$console.txt"; then
                why="the guest never ran /init (qemu exit status $qemu_rc)"
        else
                why="qemu exit status $qemu_rc"
        fi
        echo "vm: the guest never printed 'KCVM: DONE': $why; console tail:"
        tail -n 40 "$console.txt" | sed 's/^/    /'
        # A boot that went wrong fails the tier even if every verdict came.
        [ "$failed" -gt 0 ] || failed=$((failed + 1))
fi

echo "---- vm tier report ----"
printf '%s' "$report"
t_end=$(now)
echo "vm timing: kernel $(seconds "$t_start" "$t_kernel")s, initramfs $(seconds "$t_kernel" "$t_initrd")s ($(du -k "$initrd" | cut -f1) KiB), boot+tests $(seconds "$t_initrd" "$t_boot")s, total $(seconds "$t_start" "$t_end")s"
if [ "$skipped" -gt 0 ]; then
        echo "$passed passed, $failed failed, $skipped skipped"
else
        echo "$passed passed, $failed failed"
fi
[ "$failed" = 0 ]
