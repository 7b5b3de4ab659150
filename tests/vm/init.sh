#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# /init of the vm tier's initramfs (PID 1; /bin/sh is dash, the rest busybox).  Loads the modules
# listed in /kc/modules, runs every test named in /kc/tests.list and speaks
# to the host over the serial console in lines it parses:
#
#     KCVM: BOOT <kernel> ...          /init started (boot=<n>/<N> for a test with boots of its own)
#     KCVM: RUN <name>                 a test starts; its output follows as "  <name>| ..."
#     KCVM: PASS <name> (<secs>s)
#     KCVM: SKIP <name>: <reason>
#     KCVM: FAIL <name>: <reason>
#     KCVM: RESET <name>               the test resets the machine (lib.sh kcvm_reset) to be booted again
#     KCVM: DONE <number of tests run>  the last line; anything less is a failed boot
#
# Then it powers the machine off, which ends QEMU (-no-reboot).

export PATH=/kc/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
export HOME=/root TERM=dumb

# Link every busybox applet that has no real program in the image.
/bin/busybox --install -s

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /tmp /root /dev/mapper
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
# Only emergencies and oopses reach the console: kernel chatter must not
# split the verdict lines.  Tests see everything in dmesg.
echo 3 >/proc/sys/kernel/printk

uptime_cs() { # hundredths of a second since boot
        read -r up _ </proc/uptime
        echo "${up%.*}${up#*.}"
}
elapsed() { # "1.23" from two uptime_cs values
        awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 100 }'
}

read -r cmdline </proc/cmdline
test_timeout=120
for arg in $cmdline; do
        case $arg in
        kcvm.timeout=*) test_timeout=${arg#kcvm.timeout=} ;;
        esac
done

# The firmware leaves escape sequences on the console: start a clean line.
echo
echo "KCVM: BOOT $(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo) aesni=$(grep -qw aes /proc/cpuinfo && echo yes || echo no)${KCVM_BOOT:+ boot=$KCVM_BOOT/$KCVM_BOOTS}"

fatal=
while read -r mod; do
        [ -n "$mod" ] || continue
        out=$(insmod "$mod" 2>&1) || case $out in
                *"File exists"*) ;;
                *) echo "KCVM: MODULE $mod: $out"; fatal="$fatal ${mod##*/}" ;;
                esac
done </kc/modules

# What a test leaves behind fails it, and is cleaned up so the next test
# starts from nothing.
leftovers() {
        left=
        mnts=$(awk '$2 ~ "^/tmp/kcvm/" { print $2 }' /proc/mounts | sort -r | tr '\n' ' ')
        if [ -n "$mnts" ]; then
                left="mounts: $mnts"
                for m in $mnts; do umount -l "$m" >/dev/null 2>&1; done
        fi
        maps=$(dmsetup ls 2>/dev/null | awk '$1 != "No" { print $1 }' | tr '\n' ' ')
        if [ -n "$maps" ]; then
                left="$left mappings: $maps"
                # A stack (libcryptsetup's reencryption devices) goes top
                # down: a pass removes what nothing holds open any more.
                for pass in 1 2 3 4; do
                        for m in $maps; do dmsetup remove --force "$m" >/dev/null 2>&1; done
                        maps=$(dmsetup ls 2>/dev/null | awk '$1 != "No" { print $1 }')
                        [ -n "$maps" ] || break
                done
        fi
        loops=$(losetup -a 2>/dev/null | cut -d: -f1 | tr '\n' ' ')
        if [ -n "$loops" ]; then
                left="$left loop devices: $loops"
                for l in $loops; do losetup -d "$l" >/dev/null 2>&1; done
        fi
        echo "$left"
}

# release_group PGID: kill what a test left running.  What does not die
# within 5 s is stuck in the kernel, and may hold the output pipe open:
# stuck.sh says where and releases it.
release_group() {
        kill -KILL "-$1" 2>/dev/null || return 0
        for _ in 1 2 3 4 5 6 7 8 9 10; do
                sleep 0.5
                kill -0 "-$1" 2>/dev/null || return 0
        done
        /bin/sh /kc/stuck.sh "$1" 2>&1 | sed 's/^/stuck: /'
}

run_test() {
        name=$1
        dir=/tmp/kcvm/$name
        mkdir -p "$dir"
        echo "KCVM: RUN $name"
        t0=$(uptime_cs)
        # The test's output is streamed with a prefix, so nothing it prints
        # can pass for a verdict line.
        (
                cd "$dir" || exit 1
                export KCVM_TEST="$name" KCVM_DIR="$dir" KCVM_REASON="$dir/.reason"
                # The test leads a process group of its own (setsid), so a
                # timeout kills all it started, and whatever it leaves
                # running is killed at its end: nothing may keep the output
                # pipe open.  Each test has a session keyring of its own,
                # shared by everything it starts (PID 1 has none, and a
                # keyctl given @s would make one that dies with it).
                setsid keyctl session - /bin/sh "/kc/tests/$name.sh" </dev/null &
                test_pid=$!
                setsid sh -c "sleep $test_timeout; /bin/sh /kc/stuck.sh $test_pid 2>&1 | sed 's/^/stuck: /'" </dev/null &
                watchdog_pid=$!
                wait "$test_pid"
                echo $? >"$dir/.rc"
                kill -KILL "-$watchdog_pid" 2>/dev/null
                release_group "$test_pid"
        ) 2>&1 | sed "s/^/  $name| /"
        t1=$(uptime_cs)
        rc=$(cat "$dir/.rc" 2>/dev/null || echo 1)
        reason=$(head -n1 "$dir/.reason" 2>/dev/null)
        left=$(leftovers)
        case $rc in
        0) if [ -n "$left" ]; then rc=1; reason="left behind $left"; fi ;;
        137) reason="killed after the ${test_timeout}s test timeout${reason:+ ($reason)}" ;;
        esac
        case $rc in
        0) printf 'KCVM: PASS %s (%ss)\n' "$name" "$(elapsed "$t0" "$t1")" ;;
        77) printf 'KCVM: SKIP %s: %s\n' "$name" "${reason:-skipped}" ;;
        *)
                dmesg | tail -n 15 | sed "s/^/  $name| dmesg: /"
                printf 'KCVM: FAIL %s: %s\n' "$name" "${reason:-exit status $rc}"
                ;;
        esac
}

count=0
if [ -n "$fatal" ]; then
        # Without its modules no test means anything: fail each, loudly.
        for name in $(cat /kc/tests.list); do
                echo "KCVM: FAIL $name: kernel modules failed to load:$fatal"
                count=$((count + 1))
        done
else
        for name in $(cat /kc/tests.list); do
                run_test "$name"
                count=$((count + 1))
        done
fi

sync
echo "KCVM: DONE $count"
poweroff -f
