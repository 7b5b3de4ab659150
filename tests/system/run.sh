#!/bin/sh
# The system tier (make check-system): a Debian bookworm guest with systemd,
# udev and PostgreSQL booted under QEMU, with the project installed by
# `make install DESTDIR=`.  Phases, one boot each:
#   setup   smoke checks first (the guest reaches multi-user with PostgreSQL;
#           the udev rule sees a hot-added LUKS2 disk and starts
#           kmscrypt-attach@ for it), then the volumes of scenarios.sh
#   main, reboot, outage   scenarios a-e of issue #6 (scenarios.sh)
#   initrdprep, initrd, dracut   an x-initrd.attach volume: the guest
#           builds Debian's initramfs with our hook and a dracut image with
#           our module, and the next two boots start from them
# KC_SYSTEM_PHASES=smoke runs the smoke checks alone.
# Prints the wall and CPU seconds of every step (CPU: this script's children,
# mostly QEMU; on an idle machine a boot's wall time is about CPU / 2).
# Prints "N passed, N failed, N skipped"; exit 0 only when nothing failed,
# 77 when the tier cannot run here.
set -eu
: "${top_srcdir:?}" "${top_builddir:?}"
top_srcdir=$(cd "$top_srcdir" && pwd)
top_builddir=$(cd "$top_builddir" && pwd)
. "$top_srcdir/tests/system/lib.sh"

sys_require
t0=$(date +%s)
timings=
mkdir -p "$sys"
# cpu_now: $cpu becomes the CPU seconds (user + system) this script's children
# used so far.  `times` runs in this shell (a $(...) subshell has its own).
cpu_now() {
        times > "$sys/times.txt"
        cpu=$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
                             printf "%d\n", t }' "$sys/times.txt")
}
# timed LABEL START: note how long LABEL took since START, wall and CPU, for the summary.
timed() {
        w=$(($(date +%s) - $2))
        cpu_now
        timings="$timings $1=${w}s/cpu$((cpu - cpu0))s"
        say "$1: ${w}s wall, $((cpu - cpu0))s CPU"
        cpu0=$cpu
}
cpu_now
cpu0=$cpu
tp=$t0
sys_kernel
mkdir -p "$cache" "$work"
timed kernel "$tp"
tp=$(date +%s)
base=$(sh "$top_srcdir/tests/system/mkbase.sh" "$cache")
timed debootstrap "$tp"
say "kernel $KC_VM_KVER, base $base"

tp=$(date +%s)
sys_initramfs "$work/initrd.gz"
sys_make_root "$base"
timed root-image "$tp"

# A LUKS2 disk made on the host (no device-mapper needed to format).
rm -f "$work/luks.img"
truncate -s 32M "$work/luks.img"
printf 'systest' | cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
        --key-file - "$work/luks.img"

phases=${KC_SYSTEM_PHASES:-setup main reboot outage initrdprep initrd dracut}
logs=
for p in $phases; do
        disks= noboot= SYS_INITRD= SYS_APPEND=
        case $p in
        setup) for d in pgdata hot1 hot2 hot3; do rm -f "$work/$d.img"; truncate -s 256M "$work/$d.img"; done
               disks="$(sys_disk pgdata) $(sys_disk hot1) $(sys_disk hot2) $(sys_disk hot3)" ;;
        main|reboot) disks=$(sys_disk pgdata) ;;
        outage) disks="$(sys_disk pgdata) $(sys_disk hot1)" ;;
        initrdprep) rm -f "$work/early.img"; truncate -s 64M "$work/early.img"
               disks="$(sys_disk pgdata) $(sys_disk early)" ;;
        initrd|dracut)
               # The images initrdprep built in the guest: Debian's own initramfs with our hook, and dracut's.
               img=/boot/initrd.img-$KC_VM_KVER
               [ "$p" = dracut ] && img=/boot/initrd-dracut.img
               SYS_INITRD=$work/$p.img SYS_APPEND="root=LABEL=sysroot"
               sys_guest_file "$img" "$SYS_INITRD" || noboot="initrdprep left no $img in the guest"
               disks="$(sys_disk pgdata) $(sys_disk early)" ;;
        esac
        log=$work/$p.log
        logs="$logs $log"
        if [ -n "$noboot" ]; then
                echo "SYSTEST $p FAIL phase: $noboot" > "$log"
                break
        fi
        tp=$(date +%s)
        # shellcheck disable=SC2086
        sys_boot "$p" "$log" $disks
        timed "$p" "$tp"
        grep -aq "SYSTEST $p END" "$log" || echo "SYSTEST $p FAIL phase did not finish (see $log)" >> "$log"
        # Later phases build on this one: stop at the first phase that could not run.
        if grep -aq "SYSTEST $p FAIL phase" "$log"; then break; fi
done

# shellcheck disable=SC2086
verdicts=$(cat $logs | tr -d '\r' | grep -ao 'SYSTEST [a-z]* \(PASS\|FAIL\|SKIP\) .*' || true)
printf '%s\n' "$verdicts" | sed 's/^SYSTEST /  /'
grep -aoh 'SYSTEST-\(BENCH\|TIME\) .*' $logs | tr -d '\r' || true
np=$(printf '%s\n' "$verdicts" | grep -c ' PASS ' || true)
nf=$(printf '%s\n' "$verdicts" | grep -c ' FAIL ' || true)
ns=$(printf '%s\n' "$verdicts" | grep -c ' SKIP ' || true)
echo "system tier timings:$timings total=$(($(date +%s) - t0))s"
echo "system tier: $np passed, $nf failed, $ns skipped ($(($(date +%s) - t0))s)"
[ "$nf" -eq 0 ] && [ "$np" -gt 0 ]
