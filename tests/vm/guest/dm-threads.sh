# SPDX-License-Identifier: LGPL-2.1-or-later
#
# libcryptsetup and our device-mapper calls from two threads at once, as
# kmscryptd's attach threads make them: libcryptsetup's crypt_free()
# releases libdevmapper (closes its control fd, resets its log function)
# when its last user goes.  Without dmsetup-helpers' lock around those
# calls, a kc_dm_info in the other thread fails with EBADF now and then
# and libdevmapper writes to stderr (seen as a 99-of-100 agent start).
# kcvm-programs: tests/vm/kc-dm-smoke
. /kc/lib.sh

name=kcvm-threads
kcvm_loop 8
defer "kc-dm-smoke remove $name >/dev/null 2>&1; kcvm_mknodes"
kc-dm-smoke create "$name" "$KCVM_LOOP" >/dev/null || die "kc-dm-smoke create failed"
printf '%s' kcvm >"$KCVM_DIR/threads.pass"
truncate -s 20M "$KCVM_DIR/threads.img"
cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
        --key-file "$KCVM_DIR/threads.pass" "$KCVM_DIR/threads.img" || die "cryptsetup luksFormat failed"

kc-dm-smoke threads "$name" "$KCVM_DIR/threads.img" 3000 >out 2>err || :
expect_eq "failures with libcryptsetup in another thread" "$(cat out)" "dm_errors=0 luks_errors=0"
expect_eq "what libdevmapper wrote to stderr" "$(head -n 3 err)" ""
