#!/bin/sh
# Boot benchmark of the system tier: time from kernel start to the database
# volume mounted at /var/lib/postgresql, with kmscrypt (agent + generator)
# against systemd-cryptsetup via /etc/crypttab with a key file on a LUKS2
# keyslot of default cost.  Same guest, same disk size, one boot each;
# both figures are emulated (TCG) time: compare them with each other only.
#   top_srcdir=... top_builddir=... sh tests/bench/boot-bench.sh
set -eu
: "${top_srcdir:?}" "${top_builddir:?}"
top_srcdir=$(cd "$top_srcdir" && pwd)
top_builddir=$(cd "$top_builddir" && pwd)
. "$top_srcdir/tests/system/lib.sh"
work=$sys/bench
mkdir -p "$work"

sys_require
sys_kernel
base=$(sh "$top_srcdir/tests/system/mkbase.sh" "$cache")
sys_initramfs "$work/initrd.gz"
sys_make_root "$base"
for d in benchk benchc; do rm -f "$work/$d.img"; truncate -s 256M "$work/$d.img"; done
disks="$(sys_disk benchk) $(sys_disk benchc)"

for p in benchsetup benchk benchc; do
        # shellcheck disable=SC2086
        sys_boot "$p" "$work/$p.log" $disks
        if grep -aq "SYSTEST $p SKIP" "$work/$p.log"; then
                grep -ao "SYSTEST $p SKIP.*" "$work/$p.log" >&2
                exit 77
        fi
        if grep -aq "SYSTEST $p FAIL" "$work/$p.log"; then
                grep -ao "SYSTEST $p FAIL.*" "$work/$p.log" >&2
                exit 1
        fi
done
k=$(grep -aoh 'SYSTEST-BENCH kmscrypt [0-9]*' "$work/benchk.log" | awk '{ print $3 }')
c=$(grep -aoh 'SYSTEST-BENCH systemd-cryptsetup [0-9]*' "$work/benchc.log" | awk '{ print $3 }')
[ -n "$k" ] && [ -n "$c" ] || die "no timings in the guest logs ($work)"
echo "kernel start -> /var/lib/postgresql mounted (emulated guest, ms):"
printf '  %-40s %8s\n' "kmscrypt (agent, LUKS2 token, KMS unwrap)" "$k"
printf '  %-40s %8s\n' "systemd-cryptsetup (key file, LUKS2)" "$c"
awk -v k="$k" -v c="$c" 'BEGIN { printf "  difference %+d ms, ratio %.2f\n", c - k, c / k }'
