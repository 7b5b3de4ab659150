# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Sourced by every guest test (". /kc/lib.sh").  A test is a busybox sh
# script that exits 0 (pass), 77 (skip) or anything else (fail); die and
# skip also record the one-line reason /init prints in the verdict.
# Clean-ups registered with `defer` run in reverse order on every exit.
#
# /init runs each test in its own folder $KCVM_DIR (tmpfs) with $KCVM_TEST
# set to its name; project programs are on PATH (/kc/bin).

set -eu

die() {
        printf '%s\n' "$*" >"$KCVM_REASON"
        echo "FAIL: $*" >&2
        exit 1
}

skip() {
        printf '%s\n' "$*" >"$KCVM_REASON"
        echo "SKIP: $*" >&2
        exit 77
}

_kcvm_defer=
defer() {
        _kcvm_defer="$*
$_kcvm_defer"
}

_kcvm_exit() {
        rc=$?
        set +e
        # A command that failed under `set -e` leaves no reason of its own.
        if [ "$rc" != 0 ] && [ "$rc" != 77 ] && [ ! -s "$KCVM_REASON" ]; then
                echo "a command failed with status $rc (see the output above)" >"$KCVM_REASON"
        fi
        printf '%s\n' "$_kcvm_defer" | while IFS= read -r cmd; do
                [ -n "$cmd" ] && eval "$cmd" </dev/null
        done
        exit "$rc"
}
trap _kcvm_exit EXIT

# expect_eq WHAT ACTUAL EXPECTED
expect_eq() {
        [ "$2" = "$3" ] || die "$1: got '$2', expected '$3'"
}

# kcvm_loop MIB: a fresh backing file of MIB MiB attached to a loop device;
# sets KCVM_LOOP (/dev/loopN) and KCVM_LOOP_FILE, detached on exit.  Each
# call gets a file of its own (truncate keeps what an existing file holds).
_kcvm_nloop=0
kcvm_loop() {
        _kcvm_nloop=$((_kcvm_nloop + 1))
        KCVM_LOOP_FILE=$KCVM_DIR/backing-$1M-$$-$_kcvm_nloop.img
        truncate -s "$1M" "$KCVM_LOOP_FILE" ||
                die "cannot create a $1 MiB backing file"
        KCVM_LOOP=$(losetup --find --show "$KCVM_LOOP_FILE") || die "losetup --find failed"
        defer "losetup -d $KCVM_LOOP; rm -f $KCVM_LOOP_FILE"
}

# kcvm_pattern FILE BYTES: a recognisable, run-unique plaintext; sets KCVM_TAG.
kcvm_pattern() {
        KCVM_TAG="KCVM-PLAINTEXT-$KCVM_TEST-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
        # Doubling a file is far quicker than `yes | head` under emulation.
        echo "$KCVM_TAG" >"$1.part"
        while [ "$(stat -c %s "$1.part")" -lt "$2" ]; do
                cat "$1.part" "$1.part" >"$1.next"
                mv "$1.next" "$1.part"
        done
        head -c "$2" "$1.part" >"$1"
        rm -f "$1.part"
}

# The guest has no udev, and libdevmapper leaves /dev/mapper/NAME to udev
# rules when they are installed: create (and drop stale) nodes from the
# kernel's list after every create or remove.
kcvm_mknodes() {
        dmsetup mknodes >/dev/null
}

# kcvm_attach_mount DEVICE NAME DIR: attach the kmscrypt volume on DEVICE
# (its default mapping name is NAME), put a fresh ext4 on /dev/mapper/NAME
# and mount it on DIR: the start of every test of a database volume in use.
kcvm_attach_mount() {
        kmscrypt attach "$1" >/dev/null || die "attach of $1"
        kcvm_mknodes
        # Inode tables and journal written now, not by ext4lazyinit in the background: a test
        # that compares a block before and after must see only its own writes.
        mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 "/dev/mapper/$2" || die "mkfs.ext4 of /dev/mapper/$2"
        mount "/dev/mapper/$2" "$3" || die "mount of /dev/mapper/$2"
}

# kv KEY FILE: the value of a "KEY=value" line (what kc-* programs print).
kv() {
        sed -n "s/^$1=//p" "$2"
}

# kcvm_dm_node NAME: the kernel's name (dm-N) of mapping NAME, from sysfs.
kcvm_dm_node() {
        for d in /sys/block/dm-*; do
                [ "$(cat "$d/dm/name" 2>/dev/null)" = "$1" ] && { echo "${d##*/}"; return 0; }
        done
        die "no dm-N in /sys/block for mapping $1"
}

# kcvm_roundtrip DEVICE BACKING MIB: write a plaintext pattern through the
# mapping DEVICE, read it back past the page cache, and check that the
# backing file never holds the plaintext (it got ciphertext).
kcvm_roundtrip() {
        kcvm_pattern "$KCVM_DIR/pattern" $(($3 * 1048576))
        dd if="$KCVM_DIR/pattern" of="$1" bs=64k conv=fsync 2>/dev/null ||
                die "write through $1 failed"
        kcvm_drop_caches
        dd if="$1" of="$KCVM_DIR/readback" bs=64k count=$(($3 * 16)) 2>/dev/null ||
                die "read through $1 failed"
        cmp -s "$KCVM_DIR/pattern" "$KCVM_DIR/readback" ||
                die "data read back through $1 differs from the data written"
        ! grep -qF "$KCVM_TAG" "$2" || die "plaintext found on the backing device of $1"
        rm -f "$KCVM_DIR/pattern" "$KCVM_DIR/readback"
}

# Make the next read come from the device, not the page cache.
kcvm_drop_caches() {
        sync
        echo 3 >/proc/sys/vm/drop_caches
}

# kcvm_no_key DESCRIPTION_PREFIX: fail unless /proc/keys holds no key whose
# description starts with it.  An unlinked key is freed by the kernel's key
# garbage collector shortly after, so wait for it a little.
kcvm_no_key() {
        i=0
        while awk -v p="$1" '$9 ~ "^" p { found = 1 } END { exit !found }' /proc/keys; do
                i=$((i + 1))
                [ "$i" -lt 50 ] || die "/proc/keys still holds a '$1' key: $(grep -F "$1" /proc/keys | head -n1)"
                sleep 0.1
        done
}

# kcvm_has_hex_key FILE-OR-STRING: whether a run of 64 or more hex digits
# (a 256-bit or longer key written out) appears in the text.
kcvm_has_hex_key() {
        printf '%s\n' "$1" | grep -Eq '[0-9a-fA-F]{64}'
}

# ---- refusals: a command that must fail and change nothing ----

# kcvm_head_sum DEVICE [KIB]: sha256 of its first KIB (64) KiB (a LUKS2
# header's metadata; a full 16 MiB hash costs seconds under emulation).
kcvm_head_sum() {
        dd if="$1" bs=64k count=$((${2:-64} / 64)) 2>/dev/null | sha256sum | cut -d' ' -f1
}

# kcvm_written DEVICE: 512-byte sectors written to a block device so far, once flushed.
kcvm_written() {
        sync
        set -- $(cat "/sys/class/block/${1#/dev/}/stat")
        echo "$7"
}

# kcvm_maps: names of every mapping, from sysfs (quicker than dmsetup).
kcvm_maps() {
        cat /sys/block/dm-*/dm/name 2>/dev/null | LC_ALL=C sort | tr '\n' ' '
}

# kcvm_refusal_begin DEVICE: what kcvm_refused compares against.
kcvm_refusal_begin() {
        _kcvm_sum=$(kcvm_head_sum "$1") _kcvm_maps=$(kcvm_maps) _kcvm_written=$(kcvm_written "$1")
}

# kcvm_refused WHAT DEVICE WANT: the command run since kcvm_refusal_begin
# DEVICE (stdout in ./out, stderr in ./err) failed with one line containing
# WANT, printed nothing else, left the mappings as they were and no
# kmscrypt key in the kernel, and wrote not one sector of DEVICE.
kcvm_refused() {
        [ "$(wc -l <err)" = 1 ] || die "$1: $(wc -l <err) lines on stderr: $(cat err)"
        grep -qF -- "$3" err || die "$1: says '$(cat err)', expected '$3'"
        [ ! -s out ] || die "$1: stdout has: $(cat out)"
        expect_eq "$1: mappings" "$(kcvm_maps)" "$_kcvm_maps"
        kcvm_no_key kmscrypt:
        expect_eq "$1: sectors written" "$(kcvm_written "$2")" "$_kcvm_written"
        expect_eq "$1: header bytes" "$(kcvm_head_sum "$2")" "$_kcvm_sum"
        echo "refused as it should, $1: $(cat err)"
}

# kcvm_kmscrypt_env: kmscrypt's keystore, audit log and (empty)
# configuration in this test's folder, through KMSCRYPT_* variables.
kcvm_kmscrypt_env() {
        export KMSCRYPT_CONFIG="$KCVM_DIR/empty.conf" KMSCRYPT_KEYSTORE="$KCVM_DIR/keystore" \
                KMSCRYPT_AUDIT_LOG="$KCVM_DIR/audit.log" KMSCRYPT_AUDIT_HEAD="$KCVM_DIR/audit.head"
        : >"$KMSCRYPT_CONFIG"
}

# kcvm_attach_refused WHAT DEVICE WANT [ATTACH-OPTION...]: `kmscrypt attach
# DEVICE --name kcbad` fails with one line containing WANT and changes
# nothing (kcvm_refused).
kcvm_attach_refused() {
        _what=$1 _dev=$2 _want=$3
        shift 3
        kcvm_refusal_begin "$_dev"
        ! kmscrypt attach "$_dev" --name kcbad "$@" >out 2>err || die "$_what: attach succeeded"
        kcvm_refused "$_what" "$_dev" "$_want"
}

# ---- data that must survive a fault ----

# kcvm_seed DEVICE NAME: attach kmscrypt volume DEVICE as NAME, write 1 MiB
# of random data through it, detach; the data's checksum goes to
# KCVM_SEED_SUM for kcvm_check_seed.
kcvm_seed() {
        kmscrypt -q attach "$1" --name "$2" || die "attach of $1 to seed it failed"
        kcvm_mknodes
        head -c 1048576 /dev/urandom >"$KCVM_DIR/seed"
        dd if="$KCVM_DIR/seed" of="/dev/mapper/$2" bs=64k conv=fsync 2>/dev/null ||
                die "write through /dev/mapper/$2 failed"
        KCVM_SEED_SUM=$(md5sum <"$KCVM_DIR/seed" | cut -d' ' -f1)
        rm -f "$KCVM_DIR/seed"
        kmscrypt -q detach "$2" || die "detach of $2 after seeding failed"
        kcvm_mknodes
}

# kcvm_check_seed WHAT NAME: /dev/mapper/NAME reads back (past the page
# cache) the data kcvm_seed wrote.
kcvm_check_seed() {
        kcvm_drop_caches
        _sum=$(dd if="/dev/mapper/$2" bs=64k count=16 2>/dev/null | md5sum | cut -d' ' -f1)
        expect_eq "$1: checksum of the data" "$_sum" "$KCVM_SEED_SUM"
}

# kcvm_killed_at STEP COMMAND...: COMMAND, run with KC_FAULT_STEP=STEP (the
# test-only hook of lib/fault.h), dies of SIGKILL (so the step exists and
# was reached), leaving no kmscrypt key in the kernel; output in ./out, ./err.
kcvm_killed_at() {
        _step=$1
        shift
        _rc=0
        KC_FAULT_STEP=$_step "$@" >out 2>err || _rc=$?
        expect_eq "exit status of '$*' killed at $_step" "$_rc" 137
        kcvm_no_key kmscrypt:
}

# kcvm_fails WHAT COMMAND...: COMMAND exits non-zero with one line on
# stderr, leaving the mappings as they were and no kmscrypt key in the kernel.
kcvm_fails() {
        _what=$1
        shift
        _maps=$(kcvm_maps)
        _rc=0
        "$@" >out 2>err || _rc=$?
        [ "$_rc" != 0 ] || die "$_what: '$*' succeeded"
        [ "$(wc -l <err)" = 1 ] || die "$_what: $(wc -l <err) lines on stderr: $(cat err)"
        expect_eq "$_what: mappings" "$(kcvm_maps)" "$_maps"
        kcvm_no_key kmscrypt:
        echo "$_what: exit $_rc: $(cat err)"
}

# kcvm_intact WHAT DEVICE NAME: after a fault under the keystore and audit
# log, the chain verifies, no temp file lies about in either, and volume
# DEVICE attaches as NAME and reads back what kcvm_seed wrote.
kcvm_intact() {
        kmscrypt audit verify >out 2>err || die "$1: audit verify: $(cat out err)"
        left=$(find "${KMSCRYPT_AUDIT_LOG%/*}" "$KMSCRYPT_KEYSTORE" -name '*tmp*' 2>/dev/null)
        [ -z "$left" ] || die "$1: temp files left: $left"
        kmscrypt -q attach "$2" --name "$3" || die "$1: attach failed afterwards"
        kcvm_mknodes
        kcvm_check_seed "$1" "$3"
        kmscrypt -q detach "$3" || die "$1: detach"
        kcvm_mknodes
        echo "$1: chain verifies, keys unwrap the volume, data intact"
}

# kcvm_wait_for CONDITION WHY: wait up to 10 s for the shell CONDITION, else die WHY.
kcvm_wait_for() {
        _i=0
        until eval "$1"; do
                _i=$((_i + 1))
                [ "$_i" -lt 100 ] || die "$2"
                sleep 0.1
        done
}

# ---- persistent disks and resets ("# kcvm-disk:", "# kcvm-boots:") ----

# kcvm_disk N: the path of the test's Nth persistent disk (1: the first size
# in "# kcvm-disk:"), once the kernel has found it.  Its content survives
# from one boot of the test to the next.
kcvm_disk() {
        _d=$(printf '%s\n' "${KCVM_DISKS:-}" | tr , '\n' | sed -n "${1}p")
        [ -n "$_d" ] || die "no persistent disk $1 (give a '# kcvm-disk:' header, run through tests/vm/run.sh)"
        kcvm_wait_for "[ -b $_d ]" "persistent disk $_d never appeared (virtio_blk)"
        echo "$_d"
}

# kcvm_state DISK DIR: an ext4 file system on DISK (made in boot 1), mounted
# on DIR: where a test keeps what its next boot needs (a keystore, checksums).
kcvm_state() {
        if [ "${KCVM_BOOT:-1}" = 1 ]; then
                mkfs.ext4 -q -F "$1" || die "mkfs.ext4 of the state disk $1"
        fi
        mkdir -p "$2"
        mount -t ext4 "$1" "$2" || die "cannot mount the state disk $1"
        defer "umount $2"
}

# kcvm_reset WHY: end this boot the way a power cut or a hard reset does:
# no sync, no unmount, nothing flushed that was not (sysrq b; QEMU exits
# through -no-reboot and the host boots the same disks again).  Only in a
# boot before the test's last; the host checks for the RESET line.
kcvm_reset() {
        [ "${KCVM_BOOT:-1}" -lt "${KCVM_BOOTS:-1}" ] ||
                die "kcvm_reset in boot ${KCVM_BOOT:-1} of ${KCVM_BOOTS:-1}: no boot follows"
        # Straight to the console: what is still in the pipe to /init's
        # prefixing sed is lost with the machine.
        sleep 0.5
        printf '  %s| hard reset in boot %s: %s\nKCVM: RESET %s\n' "$KCVM_TEST" "$KCVM_BOOT" "$*" "$KCVM_TEST" \
                >/dev/console
        sleep 0.2
        echo b >/proc/sysrq-trigger
        sleep 60
        die "the machine did not reset"
}

# ---- the AWS KMS of the host (tests that say "# kcvm-host: aws") ----

# kcvm_aws_up: skip unless the host runs moto for this boot (run.sh), bring
# up the guest's network (10.0.2.15/24 on eth0; QEMU's guestfwd answers at
# 10.0.2.100 and nothing else is reachable), and point kmscrypt at it
# through kmscrypt.conf (aws-endpoint, aws-ca-file, aws-region), with moto's dummy
# credentials.  Calls kcvm_kmscrypt_env.
kcvm_aws_up() {
        [ -z "${KC_AWS_SKIP:-}" ] || skip "$(echo "$KC_AWS_SKIP" | tr _ ' ')"
        [ -n "${KC_AWS_ENDPOINT:-}" ] || skip "no AWS KMS from the host (run through tests/vm/run.sh)"
        kcvm_wait_for "[ -e /sys/class/net/eth0 ]" "no eth0: virtio_net did not come up"
        ip link set lo up
        ip addr add 10.0.2.15/24 dev eth0 2>/dev/null || true
        ip link set eth0 up || die "cannot bring eth0 up"
        kcvm_kmscrypt_env
        # aws-region: a volume's token names the key id only (docs/aws.md).
        printf 'aws-endpoint = %s\naws-ca-file = /kc/aws/ca.pem\naws-region = %s\n' \
                "$KC_AWS_ENDPOINT" "$KC_AWS_REGION" >"$KMSCRYPT_CONFIG"
        export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true \
                AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent
        unset AWS_REGION AWS_DEFAULT_REGION
}

# ---- benchmarks ----

# kcvm_copies BASE N: N-1 block copies of the volume on BASE, each on a loop
# device of its own with a LUKS UUID of its own; sets KCVM_COPIES to BASE
# and the copies (N devices).
kcvm_copies() {
        KCVM_COPIES=$1
        _i=1
        while [ "$_i" -lt "$2" ]; do
                kcvm_loop $(($(blockdev --getsize64 "$1") / 1048576))
                dd if="$1" of="$KCVM_LOOP" bs=1M 2>/dev/null || die "copying the volume failed"
                cryptsetup luksUUID -q --uuid "$(cat /proc/sys/kernel/random/uuid)" "$KCVM_LOOP" ||
                        die "cryptsetup luksUUID --uuid failed"
                KCVM_COPIES="$KCVM_COPIES $KCVM_LOOP"
                _i=$((_i + 1))
        done
}

# kcvm_time FILE CMD...: append the microseconds CMD... took to FILE
# (kc-floor time: fork, exec, wait, no shell; list tests/bench/kc-floor in
# the test's kcvm-programs).
kcvm_time() {
        _out=$1
        shift
        kc-floor time "$@" >t.out 2>t.err || die "$*: $(cat t.err)"
        sed -n 's/^time //p' t.out >>"$_out"
}

# kcvm_median FILE: the median of its numbers (microseconds), in milliseconds.
kcvm_median() {
        sort -n "$1" | awk '{ v[NR] = $1 } END {
                if (NR == 0) { print "nan"; exit }
                m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                printf "%.2f", m / 1000 }'
}
