# SPDX-License-Identifier: LGPL-2.1-or-later
# The reencryption throughput benchmark (tests/bench/reencrypt-bench.sh boots
# it with KC_VM_BENCH=1; skipped otherwise): one volume of KC_BENCH_MIB (256)
# MiB, attached and idle, reencrypted online by `kmscrypt reencrypt` and, on
# an identical volume, by `cryptsetup reencrypt` (same cipher, sector size,
# checksum resilience, cheap keyslot PBKDF on both sides), twice each in
# alternating order.  Prints "BENCH: " lines with the data size and the
# seconds each run took.
# kcvm-programs: kmscrypt
. /kc/lib.sh

[ "${KC_VM_BENCH:-0}" = 1 ] || skip "benchmark; run tests/bench/reencrypt-bench.sh (KC_VM_BENCH=1)"
mib=${KC_BENCH_MIB:-256}
export KMSCRYPT_KEYSTORE=$KCVM_DIR/keystore KMSCRYPT_AUDIT_LOG=$KCVM_DIR/audit.log
FAST="--pbkdf pbkdf2 --pbkdf-force-iterations 1000"

# Seconds since boot, to the hundredth (busybox date has no %N).
now() { cut -d' ' -f1 /proc/uptime; }
say() { echo "BENCH: $*"; }

kcvm_loop "$mib"
KC=$KCVM_LOOP
kcvm_loop "$mib"
CS=$KCVM_LOOP
defer "kmscrypt detach bench-kc >/dev/null 2>&1; cryptsetup close bench-cs 2>/dev/null; kcvm_mknodes"

kmscrypt key create --alias alias/bench >/dev/null || die "key create"
kmscrypt format "$KC" --key alias/bench --context db-id=bench,volume-id=bench-kc --sector-size 4096 >/dev/null ||
        die "format"
kmscrypt attach "$KC" >/dev/null || die "attach"
printf 'bench' >"$KCVM_DIR/pass"
cryptsetup luksFormat --batch-mode --type luks2 --sector-size 4096 $FAST --key-file "$KCVM_DIR/pass" "$CS" ||
        die "luksFormat"
cryptsetup open --key-file "$KCVM_DIR/pass" "$CS" bench-cs || die "cryptsetup open"
kcvm_mknodes
# Both hold data, as a volume in use would (reencryption speed does not depend on it, but the page cache does).
dd if=/dev/urandom of=/dev/mapper/bench-kc bs=1M count=32 conv=fsync 2>/dev/null
dd if=/dev/urandom of=/dev/mapper/bench-cs bs=1M count=32 conv=fsync 2>/dev/null
data=$(( $(blockdev --getsize64 /dev/mapper/bench-kc) / 1048576 ))
say "data $data"

# Each tool reencrypts its volume twice, in the order kmscrypt, cryptsetup,
# cryptsetup, kmscrypt, so that a drift of the emulator's speed during the
# run (host load, page cache) weighs on both alike.
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
run_kmscrypt() {
        t0=$(now)
        kmscrypt -q reencrypt bench-kc 2>"$KCVM_DIR/err" || die "kmscrypt reencrypt: $(tail -n 2 "$KCVM_DIR/err")"
        say "kmscrypt $(seconds "$t0" "$(now)")"
}
run_cryptsetup() {
        t0=$(now)
        cryptsetup reencrypt --batch-mode --key-file "$KCVM_DIR/pass" $FAST --resilience checksum "$CS" ||
                die "cryptsetup reencrypt"
        say "cryptsetup $(seconds "$t0" "$(now)")"
}
for tool in kmscrypt cryptsetup cryptsetup kmscrypt; do
        "run_$tool"
done
cryptsetup status bench-cs | grep -q "active" || die "cryptsetup mapping gone"
kmscrypt status bench-kc >/dev/null || die "kmscrypt mapping gone"
