#!/bin/sh
# The main job end to end on a fresh Debian machine:
#   contrib/dev/demo.sh
# Installs dependencies, builds kmscrypt, creates a customer master key,
# formats a volume bound to its encryption context, attaches it through the
# kernel keyring and dm-crypt, puts a filesystem on it, and shows status,
# the dm table and the audit trail.
#
# Where it runs: on this host when it has device-mapper with the crypt
# target (a real server: the volume is a loop device in a temporary folder,
# removed at the end); otherwise in a stock Debian kernel booted under QEMU
# (containers, CI, this project's development machines).  KC_DEMO=host or
# KC_DEMO=vm chooses.  Either way the transcript is tests/vm/guest/demo.sh.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"

sh contrib/dev/install-deps.sh
autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure
make -j"$(nproc)"

# dm-crypt here: the control node, and the crypt target loaded or loadable.
host_has_dm_crypt() {
        [ -c /dev/mapper/control ] || return 1
        dmsetup targets 2>/dev/null | grep -q '^crypt ' || modprobe dm-crypt 2>/dev/null
}

demo_on_host() {
        dir=$(mktemp -d /tmp/kmscrypt-demo.XXXXXX)
        echo "demo: running on this host (device-mapper found); scratch folder $dir"
        mkdir -p "$dir/demo"
        rc=0
        KCVM_LIB=$top/tests/vm/lib.sh KCVM_TEST=demo KCVM_DIR=$dir/demo KCVM_REASON=$dir/demo/.reason \
                PATH=$(pwd):$PATH sh ../tests/vm/guest/demo.sh || rc=$?
        [ "$rc" -eq 0 ] && echo "demo: passed" || echo "demo: FAILED: $(cat "$dir/demo/.reason" 2>/dev/null)"
        rm -rf "$dir"
        return "$rc"
}

demo_in_guest() {
        echo "demo: running in a QEMU guest (no device-mapper with dm-crypt on this host)"
        rc=0
        KC_VM_TESTS=demo top_srcdir=$top top_builddir=$(pwd) sh ../tests/vm/run.sh >demo.log 2>&1 || rc=$?
        # The guest's transcript: the lines the demo test printed.
        sed -n 's/^  demo| //p' demo.log
        tail -n 1 demo.log
        [ "$rc" -eq 0 ] || echo "demo failed: see build/demo.log"
        return "$rc"
}

case ${KC_DEMO:-auto} in
host)   demo_on_host ;;
vm)     demo_in_guest ;;
auto)   if host_has_dm_crypt; then demo_on_host; else demo_in_guest; fi ;;
*)      echo "KC_DEMO must be host, vm or auto" >&2; exit 2 ;;
esac
