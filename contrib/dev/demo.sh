#!/bin/sh
# The main job end to end on a fresh Debian machine:
#   contrib/dev/demo.sh
# Installs dependencies, builds kmscrypt, and boots a stock Debian kernel
# under QEMU (this machine needs no device-mapper of its own) where it
# creates a customer master key, formats a volume bound to its encryption
# context, attaches it through the kernel keyring and dm-crypt, puts a
# filesystem on it, and shows status, the dm table and the audit trail.
# The transcript is tests/vm/guest/demo.sh run alone.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"

sh contrib/dev/install-deps.sh
autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure
make -j"$(nproc)"

rc=0
KC_VM_TESTS=demo top_srcdir=$top top_builddir=$(pwd) sh ../tests/vm/run.sh >demo.log 2>&1 || rc=$?
# The guest's transcript: the lines the demo test printed.
sed -n 's/^  demo| //p' demo.log
tail -n 1 demo.log
[ "$rc" -eq 0 ] || echo "demo failed: see build/demo.log"
exit "$rc"
