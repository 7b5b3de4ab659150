#!/bin/sh
# Install every Debian package that building and testing kmscrypt needs.
# Idempotent and non-interactive; run as root (CI is root).
set -eu

packages="
  build-essential autoconf automake libtool pkg-config
  libcryptsetup-dev libdevmapper-dev libkeyutils-dev libssl-dev libjson-c-dev
  libblkid-dev check libcurl4-openssl-dev valgrind strace openssl
  cryptsetup-bin dmsetup keyutils e2fsprogs util-linux fdisk python3 python3-cryptography bash-completion
  qemu-system-x86 busybox-static cpio kmod debootstrap
"

missing=
for p in $packages; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -z "$missing" ]; then
        echo "install-deps: all packages present"
else
        SUDO=
        [ "$(id -u)" -eq 0 ] || SUDO=sudo
        echo "install-deps: installing$missing"
        export DEBIAN_FRONTEND=noninteractive
        $SUDO apt-get update -q
        # shellcheck disable=SC2086
        $SUDO apt-get install -y -q --no-install-recommends $missing
fi

# The aws provider's host tests run a real AWS KMS implementation (moto) on
# loopback; without it they skip, so a failure here is not fatal.
python3 -c 'import moto, boto3' 2>/dev/null ||
        python3 -m pip install -q 'moto[server]' 2>/dev/null ||
        python3 -m pip install -q --break-system-packages 'moto[server]' 2>/dev/null ||
        echo "install-deps: moto not installed; tests/aws will skip"
