# SPDX-License-Identifier: LGPL-2.1-or-later
# Rewrap rate for KC_REWRAP_N (1000) file-backed volume headers in the vm
# tier (issue #7), skipped unless KC_VM_BENCH=1:
#     make check TESTS= && KC_VM_TESTS=rewrap-bench KC_VM_CMDLINE="KC_VM_BENCH=1" \
#             KC_VM_MEMORY=2048 KC_VM_TEST_TIMEOUT=1800 make check TESTS=tests/vm/run.sh
# One volume is formatted and the others get a copy of its LUKS2 metadata
# (rewrap-bench clone: 1000 formats would write 16 GiB of keyslot areas
# into the guest's RAM); each rewrap is ReEncrypt, Decrypt, digest check,
# token write and read-back, and its audit records.  Prints "BENCH:" lines.
# kcvm-programs: tests/bench/rewrap-bench
. /kc/lib.sh

[ "${KC_VM_BENCH:-0}" = 1 ] || skip "benchmark; KC_VM_BENCH=1 runs it"
n=${KC_REWRAP_N:-1000}
mkdir -p "$KCVM_DIR/rw"
rewrap-bench "$n" "$KCVM_DIR/rw" clone >out 2>err || die "rewrap-bench failed: $(cat err)"
sed 's/^/BENCH: /' out
grep -q '^rewrap  *[0-9.]* volumes/s' out || die "no rewrap rate in: $(cat out)"
rm -rf "$KCVM_DIR/rw"
