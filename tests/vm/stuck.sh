#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# stuck.sh PGID: run by /init's watchdog when a test outlives its timeout.
# Prints what the test's processes were doing, kills them, and resumes
# every suspended mapping: I/O held by a suspended device keeps processes
# unkillable, and one of them holding the test's output pipe would hang the
# whole boot until the host's timeout, with nothing said.
#
# Nothing here may wait on a stuck process: reading its /proc files can
# (ps hangs with it).  The kernel's list of blocked tasks (SysRq w) needs
# nothing from them, and says where each waits.
pgid=$1

mark="kcvm-stuck-$pgid"
echo "$mark" >/dev/kmsg
echo w >/proc/sysrq-trigger
sleep 3
dmesg | sed -n "/$mark/,\$p" | sed 1d | grep -v -e " ? " -e "^\[[ 0-9.]*\] *$"
# sysfs, unlike a dm ioctl, answers whatever state a device is in.
for b in /sys/block/dm-*; do
        [ -e "$b/dm/name" ] || continue
        echo "${b##*/} $(cat "$b/dm/name") suspended=$(cat "$b/dm/suspended") inflight=$(echo $(cat "$b/inflight"))" \
                "holders=$(echo $(ls "$b/holders")) slaves=$(echo $(ls "$b/slaves"))"
done
kill -KILL "-$pgid" 2>/dev/null
timeout 10 dmsetup info -c -o name,attr,open,segments 2>&1
timeout 10 dmsetup table 2>&1
for m in $(timeout 10 dmsetup info -c --noheadings -o name,attr 2>/dev/null | awk -F: '$2 ~ /s/ { print $1 }'); do
        echo "resuming $m, so what waits on it can die"
        timeout 10 dmsetup resume "$m" 2>&1
done
