#!/bin/sh
# Build (once) the cached Debian root filesystem of the system tier.
#   mkbase.sh CACHEDIR    -> prints the path of CACHEDIR/debian-bookworm-<hash>.tar
# debootstrap --variant=minbase with systemd, udev, PostgreSQL, the runtime
# libraries of our binaries, initramfs-tools with busybox, and dracut-core
# (the initrd phases build both kinds of initramfs in the guest and boot
# from them).  The tarball is keyed by a hash of the package
# list, so changing the list rebuilds it; an existing one is reused as is.
set -eu

cache=${1:?usage: mkbase.sh CACHEDIR}
suite=bookworm
packages="systemd,systemd-sysv,udev,kmod,postgresql,cryptsetup-bin,dmsetup,keyutils,\
e2fsprogs,util-linux,procps,libcryptsetup12,libdevmapper1.02.1,libkeyutils1,\
libjson-c5,libssl3,libblkid1,cryptsetup,postgresql-contrib,initramfs-tools,busybox,dracut-core"

hash=$(printf '%s %s\n' "$suite" "$packages" | sha256sum | cut -c1-12)
tarball=$cache/debian-$suite-$hash.tar
if [ -s "$tarball" ]; then
        echo "$tarball"
        exit 0
fi

# The Debian mirror this host's apt already uses (deb822 or one-line format).
mirror() {
        for f in /etc/apt/sources.list.d/*.sources; do
                [ -f "$f" ] || continue
                awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$f"
        done
        cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
                awk '$1 == "deb" && $2 !~ /^\[/ && $2 ~ /\/debian\/?$/ { print $2; exit }
                     $1 == "deb" && $2 ~ /^\[/ && $3 ~ /\/debian\/?$/ { print $3; exit }'
}
url=${KC_DEBIAN_MIRROR:-$(mirror | head -n1)}
url=${url:-http://deb.debian.org/debian}

command -v debootstrap >/dev/null ||
        { echo "mkbase: debootstrap missing (apt-get install debootstrap)" >&2; exit 1; }

# debootstrap mounts /proc and /sys inside the tree it builds, and one
# interrupted leaves them mounted: unmount whatever is under the tree
# before removing it, and never let rm cross into a mount.  A stop signal
# stops debootstrap and ends the script through that clean-up too.
cleanup() {
        awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r |
                while read -r m; do umount -l "$m" || :; done
        rm -rf --one-file-system "$work"
}
mkdir -p "$cache"
work=$(mktemp -d "$cache/debootstrap.XXXXXX")
boot=
trap cleanup EXIT
trap '[ -z "$boot" ] || { kill "$boot"; wait "$boot"; } 2>/dev/null; exit 130' INT TERM HUP
echo "mkbase: debootstrap $suite from $url (once; cached as $tarball)" >&2
debootstrap --variant=minbase --include="$packages" "$suite" "$work/root" "$url" >&2 &
boot=$!
wait "$boot" || { tail -n 30 "$work/root/debootstrap/debootstrap.log" >&2 2>/dev/null; exit 1; }
boot=
# Packages are installed; their downloaded .debs are not needed in the image.
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*_Packages
tar -C "$work/root" --numeric-owner -cf "$tarball.tmp" .
mv "$tarball.tmp" "$tarball"
echo "$tarball"
