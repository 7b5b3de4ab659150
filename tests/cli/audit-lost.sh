#!/bin/sh
# kmscrypt audit verify when the audit log and its head are both gone
# (docs/audit.md, "A lost chain"): no records and no head is a fresh chain
# only where nothing says records existed; a keystore that holds keys says
# so, since creating a key writes its intent record first.
. "$(dirname "$0")/lib.sh"
unset KMSCRYPT_INITRD

# ---- a fresh host: no keystore, no log, no head ----
expect 0 "fresh host: verify" audit verify
check "fresh host: 0 records, intact" grep -qx "$LOG: 0 records, chain intact" "$T/out"
expect 0 "fresh host: verify --json" --json audit verify
json_is 'j["Intact"]' true
json_is 'j["Records"]' 0
check "fresh host: verify created nothing" test ! -e "$LOG" -a ! -e "$T/audit.head" -a ! -e "$KS"

# ---- keys whose creation was audited, then the log and its head deleted ----
expect 0 "create a key" key create --alias alias/pg
expect 0 "create another" key create --alias alias/other
rm "$LOG" "$T/audit.head"
expect 4 "log and head deleted: verify" audit verify
check "log and head deleted: one line" one_error_line
check "log and head deleted: names the log, the head, the keys, and says removed" grep -qxF \
        "kmscrypt: audit verify: $LOG: the log and its head $T/audit.head are both missing, but keystore $KS holds 2 keys, whose creation was audited: the chain was removed, not a fresh one" \
        "$T/err"
check "log and head deleted: nothing on stdout" test ! -s "$T/out"
expect 4 "log and head deleted: verify --json" --json audit verify
json_is 'j["Intact"]' false
json_is 'j["Records"]' 0
json_is 'j["BadLine"]' 0
json_is '"both missing" in j["Reason"] and "holds 2 keys" in j["Reason"]' true
check "log and head deleted: verify --json, one line on stderr" one_error_line
check "verify created nothing" test ! -e "$LOG" -a ! -e "$T/audit.head"

# The log emptied rather than deleted is the same loss.
: > "$LOG"
expect 4 "log emptied, head deleted: verify" audit verify
check "log emptied: says so" grep -qF "$LOG: the log is empty and its head $T/audit.head is missing, but keystore $KS holds 2 keys" "$T/err"
rm "$LOG"

# In an initramfs the chain starts afresh at every boot beside a copy of the keystore: fresh there.
KMSCRYPT_INITRD=1
export KMSCRYPT_INITRD
expect 0 "in an initramfs: no log and no head is a fresh chain" audit verify
unset KMSCRYPT_INITRD

# ---- the head in the keystore, where it is by default ----
unset KMSCRYPT_AUDIT_HEAD
KS=$T/keystore2 LOG=$T/audit2.log
expect 0 "default head: create a key" key create
check "default head: in the keystore" test -s "$KS/audit.head"
rm "$LOG" "$KS/audit.head"
expect 4 "default head: log and head deleted: verify" audit verify
check "default head: one line naming the head in the keystore" sh -c \
        "[ \$(wc -l < '$T/err') = 1 ] && grep -qF '$LOG: the log and its head $KS/audit.head are both missing, but keystore $KS holds 1 key,' '$T/err'"

finish
