#!/bin/sh
# kmscrypt audit verify and restart when the audit log and its head are both
# gone (docs/audit.md, "A lost chain"): no records and no head is a fresh
# chain only where nothing says records existed; a keystore that holds keys
# says so, since creating a key writes its intent record first.  Commands
# refuse to start a new chain over a lost one; audit restart starts one that
# records the loss.
. "$(dirname "$0")/lib.sh"
unset KMSCRYPT_INITRD

# ---- a fresh host: no keystore, no log, no head ----
expect 0 "fresh host: verify" audit verify
check "fresh host: 0 records, intact" grep -qx "$LOG: 0 records, chain intact" "$T/out"
expect 0 "fresh host: verify --json" --json audit verify
json_is 'j["Intact"]' true
json_is 'j["Records"]' 0
check "fresh host: verify created nothing" test ! -e "$LOG" -a ! -e "$T/audit.head" -a ! -e "$KS"
expect 0 "fresh host: list" audit list
check "fresh host: list, the column names only" test "$(wc -l < "$T/out")" = 1 -a ! -s "$T/err"
expect 0 "fresh host: list --json" --json audit list
json_is 'j["Records"]' '[]'
expect 0 "fresh host: restart" audit restart
check "fresh host: nothing to restart" grep -qx "$LOG: no lost chain, nothing restarted" "$T/out"
check "fresh host: restart created nothing" test ! -e "$LOG" -a ! -e "$T/audit.head"

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

# Listing it is no empty list, which would read as "no key was used": status 5, as for the commands that
# open the KMS over it (the log cannot be used), with the reason and the way on in one line.
LOST_LINE="kmscrypt: audit list: $LOG: the log and its head $T/audit.head are both missing, but keystore $KS holds 2 keys, whose creation was audited: the chain was removed, not a fresh one: no records to list (see kmscrypt audit verify, kmscrypt audit restart)"
expect 5 "log and head deleted: list" audit list
check "log and head deleted: list, one line naming the loss and the way on" grep -qxF "$LOST_LINE" "$T/err"
check "log and head deleted: list, one line" one_error_line
check "log and head deleted: list, nothing on stdout" test ! -s "$T/out"
expect 5 "log and head deleted: list --json" --json audit list
check "log and head deleted: list --json, nothing on stdout" test ! -s "$T/out"
check "log and head deleted: list --json, the same line" grep -qxF "$LOST_LINE" "$T/err"
expect 5 "log and head deleted: list -q" -q audit list
check "log and head deleted: list -q still says why" grep -qxF "$LOST_LINE" "$T/err"
expect 5 "log and head deleted: list --key" audit list --key alias/pg
check "list created nothing" test ! -e "$LOG" -a ! -e "$T/audit.head"

# Nor does any other command start a new chain there, which would hide the loss behind a record 1.
for args in "key list" "key create --alias alias/new" "key describe alias/pg"; do
        expect 5 "log and head deleted: $args refused" $args
        check "$args: one line naming the loss and the way on" sh -c "[ \$(wc -l < '$T/err') = 1 ] && grep -qF \
                'kmscrypt: cannot open the KMS: audit log $LOG and its head $T/audit.head are both missing, but keystore $KS holds 2 keys, whose creation was audited: refusing a new chain, see kmscrypt audit restart' '$T/err'"
        check "$args: no log, no head, no new key" test ! -e "$LOG" -a ! -e "$T/audit.head" -a "$(ls "$KS/keys" | wc -l)" = 2
done

# The log emptied rather than deleted is the same loss.
: > "$LOG"
expect 4 "log emptied, head deleted: verify" audit verify
check "log emptied: says so" grep -qF "$LOG: the log is empty and its head $T/audit.head is missing, but keystore $KS holds 2 keys" "$T/err"
expect 5 "log emptied, head deleted: audit list" audit list
check "log emptied: audit list says so" grep -qF "audit list: $LOG: the log is empty and its head $T/audit.head is missing" "$T/err"
expect 5 "log emptied, head deleted: key list refused" key list
check "log emptied: no head of seq 0 written" test ! -e "$T/audit.head" -a ! -s "$LOG"
rm "$LOG"

# In an initramfs the chain starts afresh at every boot beside a copy of the keystore: fresh there.
KMSCRYPT_INITRD=1
export KMSCRYPT_INITRD
expect 0 "in an initramfs: no log and no head is a fresh chain" audit verify
expect 0 "in an initramfs: audit list of no records" audit list
expect 0 "in an initramfs: key list starts one" key list
rm "$LOG" "$T/audit.head"
unset KMSCRYPT_INITRD

# ---- restart: a new chain whose first record says what was lost ----
expect 0 "restart" --json audit restart
json_is 'j["Restarted"]' true
json_is 'j["AuditLog"] == "'"$LOG"'"' true
check "restart: the log holds one record" test "$(wc -l < "$LOG")" = 1
check "restart: RestartChain, seq 1, by this user, naming the loss" sh -c "grep -q '^{\"seq\":1,.*\"operation\":\"RestartChain\",.*\"caller\":{\"uid\":$(id -u),.*\"result\":\"ok\",.*both missing, but keystore .* holds 2 keys.*the records before this one are lost' '$LOG'"
expect 0 "restart: the new chain verifies" audit verify
check "restart: 1 record" grep -qx "$LOG: 1 records, chain intact" "$T/out"
expect 0 "restart: audit list lists the RestartChain record" audit list
check "restart: audit list, one record" sh -c "[ \$(wc -l < '$T/out') = 2 ] && grep -q ' RestartChain ' '$T/out'"
expect 0 "restart: key list works again" key list
expect 0 "restart: and is audited in the new chain" audit verify
check "restart: 2 records" grep -qx "$LOG: 2 records, chain intact" "$T/out"
expect 0 "restart again: nothing to do" audit restart
check "restart again: says so" grep -qx "$LOG: no lost chain, nothing restarted" "$T/out"
check "restart again: no record added" test "$(wc -l < "$LOG")" = 2

# A head that says records were written, beside a log emptied: nothing to list is no fresh chain either.
cp "$LOG" "$T/log.keep"
: > "$LOG"
expect 5 "log emptied under its head: audit list" audit list
check "log emptied under its head: one line naming the head's records" sh -c \
        "[ \$(wc -l < '$T/err') = 1 ] && grep -qF 'audit list: $LOG: ' '$T/err' && grep -qF 'the head records 2: the newest records were removed: no records to list' '$T/err'"
mv "$T/log.keep" "$LOG"

# A chain that is there but broken is not restarted over: move it aside first.
cp "$LOG" "$T/log.bak"
rm "$T/audit.head"
expect 4 "restart of a broken chain (head deleted) refused" audit restart
check "broken chain: one line" one_error_line
check "broken chain: log unchanged, no head made" test "$(sum "$LOG")" = "$(sum "$T/log.bak")" -a ! -e "$T/audit.head"
rm "$LOG"

# ---- the head in the keystore, where it is by default ----
unset KMSCRYPT_AUDIT_HEAD
KS=$T/keystore2 LOG=$T/audit2.log
expect 0 "default head: create a key" key create
check "default head: in the keystore" test -s "$KS/audit.head"
rm "$LOG" "$KS/audit.head"
expect 4 "default head: log and head deleted: verify" audit verify
check "default head: one line naming the head in the keystore" sh -c \
        "[ \$(wc -l < '$T/err') = 1 ] && grep -qF '$LOG: the log and its head $KS/audit.head are both missing, but keystore $KS holds 1 key,' '$T/err'"

# ---- a long keystore path: the lines end as they should, the path named whole, twice ----
# Three directories of 200 bytes: a keystore path of some 650 bytes, and its head inside it.
NAME200=$(printf '%0200d' 0 | tr 0 k)
KS=$T/$NAME200/$NAME200/$NAME200/keystore LOG=$T/audit3.log
mkdir -p "${KS%/keystore}"
expect 0 "long keystore path: create a key" key create
rm "$LOG" "$KS/audit.head"
LONG_REASON="$LOG: the log and its head $KS/audit.head are both missing, but keystore $KS holds 1 key, whose creation was audited: the chain was removed, not a fresh one"
expect 4 "long keystore path: verify" audit verify
check "long keystore path: verify's line whole" grep -qxF "kmscrypt: audit verify: $LONG_REASON" "$T/err"
expect 4 "long keystore path: verify --json" --json audit verify
json_is 'j["Reason"].endswith(", whose creation was audited: the chain was removed, not a fresh one")' true
json_is '"'"$KS"' holds 1 key" in j["Reason"]' true
expect 5 "long keystore path: key list refused" key list
check "long keystore path: cannot open the KMS, the line whole" grep -qxF \
        "kmscrypt: cannot open the KMS: audit log $LOG and its head $KS/audit.head are both missing, but keystore $KS holds 1 key, whose creation was audited: refusing a new chain, see kmscrypt audit restart" \
        "$T/err"

finish
