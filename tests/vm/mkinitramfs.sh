#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Build the vm tier's initramfs (cpio newc, gzip -1):
#
#   mkinitramfs.sh -k KROOT -v KVER -o OUT [-m MODULE]... [-b PROGRAM]... [-l LIBRARY]...
#                  [-f SRC=DEST]... [-t TEST.sh]...
#
#   -k, -v   the kernel tree unpacked by kernel.sh and its version
#   -m       a kernel module to load besides the default set (with its dependencies)
#   -b       a built program, copied to /kc/bin with the libraries it needs
#   -l       a host library a program dlopen()s (ldd cannot see it), with the
#            libraries it needs, each at its host path
#   -f       a host file SRC copied into the image as DEST
#   -t       a guest test script, copied to /kc/tests; run in the order given
#
# The image holds static busybox (applets linked at boot), dash as /bin/sh,
# init.sh as /init, stuck.sh (what a test that timed out was doing),
# lib.sh as /kc/lib.sh, the default modules (dm-crypt with AES-NI, xts, loop,
# AF_ALG for libcryptsetup) in dependency order in /kc/modules, and the
# host's dmsetup, keyctl, cryptsetup, mkfs.ext4, blkid, losetup, flock and sfdisk, each
# with the libraries ldd lists and the dynamic loader.

set -eu

here=$(cd "$(dirname "$0")" && pwd)
say() { echo "mkinitramfs.sh: $*" >&2; }
die() { say "$*"; exit 1; }

kroot= kver= out= modules= programs= libraries= tests= files=
while getopts k:v:o:m:b:l:f:t: opt; do
        case $opt in
        k) kroot=$OPTARG ;;
        v) kver=$OPTARG ;;
        o) out=$OPTARG ;;
        m) modules="$modules $OPTARG" ;;
        b) programs="$programs $OPTARG" ;;
        l) libraries="$libraries $OPTARG" ;;
        f) files="$files $OPTARG" ;;
        t) tests="$tests $OPTARG" ;;
        *) die "usage: $0 -k KROOT -v KVER -o OUT [-m MODULE]... [-b PROGRAM]... [-l LIBRARY]... [-f SRC=DEST]... [-t TEST]..." ;;
        esac
done
[ -n "$kroot" ] && [ -n "$kver" ] && [ -n "$out" ] || die "-k, -v and -o are required"
[ -d "$kroot/lib/modules/$kver" ] || die "no modules for $kver under $kroot"

# dm-crypt on the AES-NI fast path; loop devices to back it.
required_modules="dm-mod dm-crypt aesni-intel xts ecb loop"
# libcryptsetup encrypts LUKS keyslots through AF_ALG when it can.
optional_modules="af_alg algif_skcipher algif_hash"
host_tools="dmsetup keyctl cryptsetup mkfs.ext4 blkid losetup flock sfdisk"

busybox=$(command -v busybox || true)
[ -n "$busybox" ] || die "busybox missing (apt-get install busybox-static)"
case $(LC_ALL=C ldd "$busybox" 2>&1) in
*"not a dynamic executable"*|*"statically linked"*) ;;
*) die "$busybox is not static (apt-get install busybox-static)" ;;
esac

stage=$(mktemp -d "${TMPDIR:-/tmp}/kcvm-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/sbin" "$stage/usr/bin" "$stage/usr/sbin" \
        "$stage/kc/bin" "$stage/kc/tests" "$stage/proc" "$stage/sys" \
        "$stage/dev" "$stage/tmp" "$stage/run" "$stage/root" "$stage/etc"

# busybox links its applets at boot (/init), where no real tool is.
cp "$busybox" "$stage/bin/busybox"

# copy_file SRC DEST: DEST inside the image, symlinks resolved.
copy_file() {
        mkdir -p "$stage/${2%/*}"
        rm -f "$stage/$2"
        cp -L "$1" "$stage/$2"
}

# copy_binary SRC DEST: the program plus every library ldd lists, at the
# path ldd found it, and the dynamic loader.
copy_binary() {
        [ -x "$1" ] || die "$1 is not an executable"
        copy_with_libraries "$1" "$2"
}

copy_with_libraries() {
        copy_file "$1" "$2"
        copy_needed "$1"
}

# copy_needed ELF: the libraries ldd lists for a program or a library.
copy_needed() {
        LC_ALL=C ldd "$1" 2>/dev/null | awk '
                $2 == "=>" && $3 ~ /^\// { print $3 }
                $1 ~ /^\// { print $1 }' | while read -r lib; do
                [ -e "$stage/$lib" ] || copy_file "$lib" "$lib"
        done
}

# /bin/sh is the host's dash, not busybox: Debian's static busybox runs
# its own applets before anything on PATH, which would hide util-linux's
# losetup and blkid behind busybox's smaller ones.
dash=$(command -v dash || true)
[ -n "$dash" ] || die "dash missing (apt-get install dash)"
copy_binary "$dash" /bin/sh

for tool in $host_tools; do
        path=$(command -v "$tool" || true)
        [ -n "$path" ] || die "host tool $tool missing (see tests/vm/README.md for its package)"
        # Keep the host's path: /usr/sbin/dmsetup stays /usr/sbin/dmsetup.
        case $path in /usr/*) dest=$path ;; *) dest=/usr$path ;; esac
        copy_binary "$path" "$dest"
done

# glibc dlopen()s libgcc_s for pthread_exit and cancellation, which ldd
# cannot see: without it libcryptsetup's argon2 threads abort the program
# ("libgcc_s.so.1 must be installed for pthread_exit to work").
libgcc_s=$(ldconfig -p 2>/dev/null | awk '$1 == "libgcc_s.so.1" && /x86-64/ { print $NF; exit }')
[ -n "$libgcc_s" ] && copy_file "$libgcc_s" "$libgcc_s"

for prog in $programs; do
        # A libtool wrapper script runs the real program from .libs/.
        if head -c 2 "$prog" | grep -q '^#!' && [ -x "${prog%/*}/.libs/${prog##*/}" ]; then
                real=${prog%/*}/.libs/${prog##*/}
        else
                real=$prog
        fi
        copy_binary "$real" "/kc/bin/${prog##*/}"
done

for lib in $libraries; do
        [ -e "$lib" ] || die "library $lib missing"
        copy_with_libraries "$lib" "$lib"
done

for f in $files; do
        [ -r "${f%%=*}" ] || die "file ${f%%=*} (-f $f) cannot be read"
        copy_file "${f%%=*}" "${f#*=}"
done

# ---- kernel modules: the dependency closure, in load order, once each ----
mdir=$kroot/lib/modules/$kver
list=$stage/kc/modules
: >"$list"
add_modules() { # STRICT MODULE...
        strict=$1
        shift
        for m in "$@"; do
                if ! deps=$(modprobe -d "$kroot" -S "$kver" --show-depends "$m" 2>&1); then
                        [ "$strict" = yes ] && die "module $m: $deps"
                        say "optional module $m not found, left out"
                        continue
                fi
                printf '%s\n' "$deps" | awk '$1 == "insmod" { print $2 }' | while read -r ko; do
                        rel=${ko#"$mdir"/}
                        # The guest's busybox insmod wants plain .ko files.
                        case $rel in
                        *.ko.xz) dest=${rel%.xz}; unpack="xz -dc" ;;
                        *.ko.zst) dest=${rel%.zst}; unpack="zstd -dcq" ;;
                        *.ko.gz) dest=${rel%.gz}; unpack="gzip -dc" ;;
                        *) dest=$rel; unpack=cat ;;
                        esac
                        guest=/lib/modules/$kver/$dest
                        grep -qxF "$guest" "$list" && continue
                        mkdir -p "$stage/${guest%/*}"
                        $unpack "$ko" >"$stage/$guest"
                        echo "$guest" >>"$list"
                done
        done
}
add_modules yes $required_modules $modules
add_modules no $optional_modules

# ---- init, the guest library and the tests ----
copy_file "$here/init.sh" /init
chmod 755 "$stage/init"
copy_file "$here/lib.sh" /kc/lib.sh
copy_file "$here/stuck.sh" /kc/stuck.sh
: >"$stage/kc/tests.list"
for t in $tests; do
        name=${t##*/}
        name=${name%.sh}
        copy_file "$t" "/kc/tests/$name.sh"
        echo "$name" >>"$stage/kc/tests.list"
done

(cd "$stage" && find . -print | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -1) >"$out.tmp"
mv "$out.tmp" "$out"
