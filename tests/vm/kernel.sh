#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Fetch the stock Debian cloud kernel for the vm tier and print where it is:
#
#     eval "$(tests/vm/kernel.sh)"   ->  KC_VM_KVER, KC_VM_KROOT, KC_VM_VMLINUZ
#
# The version is the one apt's linux-image-cloud-amd64 depends on now (or
# KC_VM_KERNEL_VERSION), fetched with `apt-get download`, unpacked with
# `dpkg -x` and indexed with `depmod` into $KC_VM_CACHE (default
# $top_builddir/tests/vm/cache, else ./cache).  A version already unpacked
# there is used as is: a second run downloads nothing.  When apt cannot name
# a version (no lists, no apt) the newest cached kernel is used.
#
# Exit status: 0 with the three assignments on stdout; 77 when no kernel can
# be had (the caller skips); 1 on any other error.  Diagnostics go to stderr.

set -eu

say() { echo "kernel.sh: $*" >&2; }
skip() { say "$*"; exit 77; }

cache=${KC_VM_CACHE:-${top_builddir:-.}/tests/vm/cache}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

# "linux-image-6.1.0-56-cloud-amd64" -> "6.1.0-56-cloud-amd64"
apt_version() {
        command -v apt-cache >/dev/null 2>&1 || return 0
        apt-cache depends linux-image-cloud-amd64 2>/dev/null |
                sed -n 's/^ *Depends: linux-image-\([0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n1
}

# Newest kernel already unpacked in the cache, by version order.
cached_version() {
        for stamp in "$cache"/linux-*/.kc-ready; do
                [ -f "$stamp" ] || continue
                d=${stamp%/.kc-ready}
                echo "${d##*/linux-}"
        done | sort -V | tail -n1
}

emit() {
        root=$cache/linux-$1
        printf "KC_VM_KVER='%s'\nKC_VM_KROOT='%s'\nKC_VM_VMLINUZ='%s'\n" \
                "$1" "$root" "$root/boot/vmlinuz-$1"
        exit 0
}

kver=${KC_VM_KERNEL_VERSION:-}
if [ -z "$kver" ]; then
        kver=$(apt_version)
        # Only refresh apt's lists when they do not know the package at all.
        if [ -z "$kver" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
                say "apt knows no linux-image-cloud-amd64; running apt-get update"
                apt-get update -qq >&2 || say "apt-get update failed"
                kver=$(apt_version)
        fi
fi
if [ -z "$kver" ]; then
        kver=$(cached_version)
        [ -n "$kver" ] || skip "cannot name a cloud kernel version (apt-cache depends linux-image-cloud-amd64 found none) and none is cached in $cache"
        say "apt names no version; using cached $kver"
fi

[ -f "$cache/linux-$kver/.kc-ready" ] && emit "$kver"

# Two runs sharing a cache fetch once: the second waits, then finds it ready.
if command -v flock >/dev/null 2>&1; then
        exec 9>"$cache/.lock"
        flock 9
        [ -f "$cache/linux-$kver/.kc-ready" ] && emit "$kver"
fi

command -v apt-get >/dev/null 2>&1 || skip "apt-get missing: cannot fetch linux-image-$kver"
command -v dpkg >/dev/null 2>&1 || skip "dpkg missing: cannot unpack linux-image-$kver"
command -v depmod >/dev/null 2>&1 || skip "depmod missing (apt-get install kmod)"

# Unpack into a scratch folder and rename it into place, so a run that dies
# half-way never leaves a tree that looks ready.
work=$(mktemp -d "$cache/.fetch.XXXXXX")
chmod 755 "$work"   # apt-get download writes as user _apt where it can
trap 'rm -rf "$work"' EXIT
say "fetching linux-image-$kver"
(cd "$work" && apt-get download -q "linux-image-$kver" >&2 2>&1) ||
        skip "apt-get download linux-image-$kver failed"
deb=$(ls "$work"/linux-image-"$kver"_*.deb 2>/dev/null | head -n1)
[ -n "$deb" ] || skip "apt-get download left no linux-image-${kver}_*.deb"
mkdir "$work/root"
dpkg -x "$deb" "$work/root"
rm -f "$deb"

# Debian 12 ships modules in /lib/modules, later releases in /usr/lib/modules;
# keep one place for the rest of the tier.
if [ ! -d "$work/root/lib/modules/$kver" ] && [ -d "$work/root/usr/lib/modules/$kver" ]; then
        mkdir -p "$work/root/lib/modules"
        mv "$work/root/usr/lib/modules/$kver" "$work/root/lib/modules/$kver"
fi
[ -f "$work/root/boot/vmlinuz-$kver" ] || { say "no boot/vmlinuz-$kver in the package"; exit 1; }
[ -d "$work/root/lib/modules/$kver" ] || { say "no lib/modules/$kver in the package"; exit 1; }
depmod -b "$work/root" "$kver"
touch "$work/root/.kc-ready"

rm -rf "$cache/linux-$kver"
mv "$work/root" "$cache/linux-$kver"
emit "$kver"
