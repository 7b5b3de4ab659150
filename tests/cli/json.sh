#!/bin/sh
# --json on every command that reports: one JSON document on stdout whose
# member names kmscrypt(8) (kmscrypt-reencrypt(8)) names for that command,
# nothing on stdout with -q; progress of long copies and of reencrypt on a
# terminal only, and never with -q.  The volume commands work on image files
# (libcryptsetup, no device-mapper); attach, detach, status and list need
# device-mapper and are left to the vm tier.
. "$(dirname "$0")/lib.sh"
MANDIR=$(cd "$(dirname "$0")/../../man" && pwd)
command -v nroff >/dev/null && command -v col >/dev/null || { echo "SKIP: nroff and col are needed"; exit 77; }

# j NAME ARGS...: kmscrypt --json ARGS exits 0 and prints what the man page says; the words of
# ARGS before the first option or path name the entry, unless $entry does.
j() {
        name=$1
        shift
        expect 0 "$name" --json "$@"
        words=$(for a in "$@"; do case "$a" in -*|*/*|*=*|*[A-Z0-9]*) break ;; *) printf '%s ' "$a" ;; esac; done)
        words=${entry:-${words% }}
        python3 "$(dirname "$0")/manpage.py" fields "$MANDIR" "$words" "$T/out" > "$T/fields"
        cat "$T/fields"
        passed=$((passed + $(grep -c '^ok - ' "$T/fields")))
        failed=$((failed + $(grep -c '^FAIL - ' "$T/fields")))
}
# quiet ARGS...: with -q, exit 0 and nothing on stdout or stderr, --json or not.
quiet() {
        expect 0 "-q $*" -q --json "$@"
        check "-q $*: nothing printed" test ! -s "$T/out" -a ! -s "$T/err"
}

CTX=db-id=db-1,volume-id=vol-1
j "key create" key create --alias alias/pg --description "json test"
KEY_ID=$(json 'j["KeyMetadata"]["KeyId"]')
j "key list" key list
j "key describe" key describe alias/pg
j "key disable" key disable alias/pg
j "key enable" key enable alias/pg
j "key rotate" key rotate alias/pg
json_is 'j["KeyVersion"]' 2
expect 0 "second key" key create --alias alias/old --quiet
j "key schedule-deletion" key schedule-deletion alias/old --pending-window-in-days 7
j "key cancel-deletion" key cancel-deletion alias/old
j "kms generate-data-key" kms generate-data-key --key alias/pg --context "$CTX"
BLOB=$(json 'j["CiphertextBlob"]')
j "kms decrypt" kms decrypt --ciphertext-blob "$BLOB" --context "$CTX"
j "kms re-encrypt" kms re-encrypt --ciphertext-blob "$BLOB" --context "$CTX" --destination-context db-id=db-1,volume-id=vol-9
j "audit list" audit list --key "$KEY_ID"
json_is 'len(j["Records"]) > 5' true
j "audit verify" audit verify
json_is 'j["Intact"]' true
j "audit restart" audit restart
json_is 'j["Restarted"]' false
# No volume configured: an empty file (a named file must exist).
: > "$T/no-volumes"
j "config check" config check --volumes "$T/no-volumes"
json_is 'j["Valid"]' true
quiet key list
quiet key describe alias/pg
quiet audit verify
quiet audit restart
quiet kms generate-data-key --key alias/pg --context "$CTX"

# A broken audit chain: --json still prints the verdict, and the status is 4.
cp "$LOG" "$T/log.bak"
sed -i '2d' "$LOG"
expect 4 "audit verify of an edited log" --json audit verify
json_is 'j["Intact"]' false
json_is 'j["BadLine"] > 0' true
check "audit verify: one line naming the line" one_error_line
cp "$T/log.bak" "$LOG"

if ! command -v cryptsetup >/dev/null || [ "$(id -u)" != 0 ]; then
        echo "# volume commands skipped: they need cryptsetup and root"
        finish
fi

# ---- volume commands on image files ----
V=$T/v.img
truncate -s 24M "$V"
j "format" format "$V" --key alias/pg --context "$CTX"
j "dump" dump "$V"
j "key usage" key usage alias/pg "$V" --volumes "$T/no-volumes"
json_is 'j["Versions"][0]["Volumes"][0]["Device"]' "$V"
j "rewrap" rewrap "$V" --always
json_is 'j[0]["Changed"]' true
j "key rotate --rewrap" key rotate alias/pg --rewrap "$V"
json_is 'j["Rewrapped"][0]["KeyVersion"]' 3
j "rebind" rebind "$V" --context volume-id=vol-1b --dry-run
json_is 'j["DryRun"]' true
j "backup" backup "$V" "$T/backup.img"
j "restore" restore "$T/backup.img" "$T/restored.img"
# What rebind prints, as the man page says.
entry=rebind
j "restore --context" restore "$T/backup.img" "$T/restored2.img" --context volume-id=vol-2
entry=
json_is 'j["KeyId"]' "$KEY_ID"
# DEVICE is a path, also a bare file name (not a volume name): the copy is rebound too.
rc=0
(cd "$T" && "$KMSCRYPT" --keystore "$KS" --audit-log "$LOG" restore backup.img restored3.img --context volume-id=vol-3 \
        > "$T/out" 2> "$T/err") || rc=$?
check "restore to a file named without a directory, --context (exit $rc)" test "$rc" = 0 -a ! -s "$T/err"
expect 0 "its token names the new context" --json dump "$T/restored3.img"
json_is 'j["KmscryptToken"]["EncryptionContext"]["volume-id"]' vol-3
j "reencrypt" reencrypt "$V"
json_is 'j["Finished"]' true
# A detached header: each command names its copy or file too (Header, HeaderDestination).
H=$T/h.img
truncate -s 8M "$H"
j "format --header" format "$H" --header "$T/h.hdr" --key alias/pg --context db-id=db-1,volume-id=vol-h
json_is 'j["Header"]' "$T/h.hdr"
j "dump --header" dump "$H" --header "$T/h.hdr"
j "backup --header" backup "$H" "$T/h-backup.img" --header "$T/h.hdr"
json_is 'j["HeaderDestination"]' "$T/h-backup.img.header"
j "restore --header" restore "$T/h-backup.img" "$T/h-restored.img" --header "$T/h-restored.hdr"
json_is 'j["HeaderDestination"]' "$T/h-restored.hdr"
A=$T/adopt.img
truncate -s 24M "$A"
printf 'old passphrase' > "$T/pass"
cryptsetup luksFormat --type luks2 --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$T/pass" "$A"
j "adopt" adopt "$A" --key alias/pg --context db-id=db-1,volume-id=vol-a --passphrase-file "$T/pass"
# default-key of kmscrypt.conf stands in for --key of format (kmscrypt.conf(5)).
printf 'default-key = alias/pg\n' > "$T/default-key.conf"
W=$T/w.img
truncate -s 24M "$W"
expect 2 "format without --key or default-key" format "$W" --context db-id=db-1,volume-id=vol-w
check "format without --key: one line naming --key" sh -c "[ \$(wc -l < '$T/err') = 1 ] && grep -q -- '--key KEY is required' '$T/err'"
export KMSCRYPT_CONFIG="$T/default-key.conf"
j "format with the default-key" format "$W" --context db-id=db-1,volume-id=vol-w
json_is 'j["KeyId"]' "$KEY_ID"
export KMSCRYPT_CONFIG="$T/empty.conf"
# In text, format and adopt name their "Key" as dump's "Key" does: a key reference (local:ID,
# docs/token.md), which --key takes; the id alone is KeyId in JSON.
key_line() { sed -n 's/^ *Key: *//p' "$T/out"; }
X=$T/x.img
truncate -s 24M "$X"
expect 0 "format, text" format "$X" --key alias/pg --context db-id=db-1,volume-id=vol-x
check "format, text: Key is local:ID (got '$(key_line)')" sh -c "[ '$(key_line)' = 'local:$KEY_ID (version 3)' ]"
expect 0 "dump, text" dump "$X"
check "dump, text: the same Key (got '$(key_line)')" sh -c "[ '$(key_line)' = 'local:$KEY_ID (version 3)' ]"
check "dump, text: format wrote a key check" grep -q '^ *Key check: *yes' "$T/out"
truncate -s 24M "$T/adopt2.img"
cryptsetup luksFormat --type luks2 --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$T/pass" \
        "$T/adopt2.img"
expect 0 "adopt, text" adopt "$T/adopt2.img" --key "local:$KEY_ID" --context db-id=db-1,volume-id=vol-a2 \
        --passphrase-file "$T/pass"
check "adopt, text: Key is local:ID (got '$(key_line)')" sh -c "[ '$(key_line)' = 'local:$KEY_ID (version 3)' ]"
# So do rewrap and reencrypt.
expect 0 "rewrap, text" rewrap "$X" --always
check "rewrap, text: keys are local:ID (got '$(cat "$T/out")')" \
        grep -qxF "$X: rewrapped, key local:$KEY_ID version 3 -> local:$KEY_ID version 3" "$T/out"
expect 0 "rewrap, text, already current" rewrap "$X"
check "rewrap, text, already current: key local:ID (got '$(cat "$T/out")')" \
        grep -qxF "$X: already under the newest key version (key local:$KEY_ID version 3)" "$T/out"
expect 0 "reencrypt, text" reencrypt "$X"
check "reencrypt, text: key local:ID (got '$(cat "$T/out")')" \
        grep -qxF "$X: reencrypted, key local:$KEY_ID version 3 -> new data key under version 3 (offline)" "$T/out"
j "dump of the adopted volume" dump "$T/adopt2.img"
json_is 'len(j["KmscryptToken"]["KeyCheck"])' 44
quiet dump "$V"
quiet rewrap "$V" --always
quiet backup "$V" "$T/backup-q.img"

# Documented statuses of the volume commands, with real cases.
printf 'pg %s %s\n' "$V" "$CTX" > "$T/volumes"
j "config check, devices as configured" config check --volumes "$T/volumes"
json_is 'j["Volumes"][0]["Check"]' ok
{ cat "$T/volumes"; printf 'pg2 UUID=0b7e db-id=db-1,volume-id=vol-2 nofail\n'; } > "$T/volumes.two"
j "config list" config list --volumes "$T/volumes.two"
json_is 'j' "['pg', 'pg2']"
j "config list, an empty volumes file" config list --volumes "$T/no-volumes"
json_is 'j' "[]"
quiet config list --volumes "$T/volumes.two"
printf 'pg %s db-id=db-1,volume-id=other\n' "$V" > "$T/volumes.other"
expect 4 "config check: a device bound to another context" --json config check --volumes "$T/volumes.other"
json_is 'j["Valid"]' false
json_is 'j["Volumes"][0]["Check"]' bad
check "config check: one line counting the device" grep -qxF "kmscrypt: 1 configured device does not match the volumes file" "$T/err"
printf 'pg %s %s kms=aws\n' "$V" "$CTX" > "$T/volumes.kms"
expect 4 "config check: a token of a KMS provider kms= does not allow" --json config check --volumes "$T/volumes.kms"
json_is 'j["Volumes"][0]["Check"]' bad
json_is '"kms=" in j["Volumes"][0]["Detail"]' true
before=$(snapshot "$KS")
lines=$(audit_lines)
expect 4 "schedule-deletion of a key a volume uses" key schedule-deletion alias/pg --volumes "$T/volumes"
check "schedule-deletion refused: one line" one_error_line
check "schedule-deletion refused: names the key and the volume" \
        grep -q "^kmscrypt: schedule deletion: key $KEY_ID still wraps the data key of pg: .*--force" "$T/err"
check "schedule-deletion refused: nothing on stdout" test ! -s "$T/out"
check "schedule-deletion refused: keystore unchanged" test "$before" = "$(snapshot "$KS")"
# Audited as the ScheduleKeyDeletion it stopped, like a refusal of the KMS itself (kmscrypt(8)).
check "schedule-deletion refused: the check's DescribeKey and the refusal audited" \
        sh -c "[ $(audit_lines) = $((lines + 2)) ] && tail -n 2 '$LOG' | head -n 1 | grep -q '\"operation\":\"DescribeKey\"'"
tail -n 1 "$LOG" > "$T/out"
json_is '(j["operation"], j["key_id"], j["result"])' "('ScheduleKeyDeletion', '$KEY_ID', 'error')"
json_is '"still wraps the data key of pg" in j["error"]' true
expect 0 "the audit trail still verifies" audit verify
j "key schedule-deletion --force" key schedule-deletion alias/pg --volumes "$T/volumes" --force
check "schedule-deletion --force: one warning line naming the volume" \
        sh -c "[ \$(wc -l < '$T/err') = 1 ] && grep -q '^kmscrypt: --force: .* still wraps the data key of pg' '$T/err'"
expect 0 "cancel it" key cancel-deletion alias/pg --quiet
expect 0 "enable it again" key enable alias/pg --quiet
expect 1 "backup over an existing file" backup "$V" "$T/backup.img"
check "backup over an existing file: one line" one_error_line

# ---- progress: on a terminal only, never with -q ----
if command -v script >/dev/null; then
        # tty ARGS...: kmscrypt ARGS on a terminal; what the terminal shows in $T/tty.
        tty() {
                script -qec "$KMSCRYPT --keystore '$KS' --audit-log '$LOG' $*" /dev/null > "$T/tty" 2>&1
        }
        tty backup "$V" "$T/b-tty.img"
        check "backup on a terminal shows progress" grep -q '100%' "$T/tty"
        tty -q backup "$V" "$T/b-tty-q.img"
        check "backup -q on a terminal shows nothing" test ! -s "$T/tty"
        check "backup -q still copies" cmp -s "$V" "$T/b-tty-q.img"
        expect 0 "backup, not on a terminal" backup "$V" "$T/b-notty.img"
        check "backup, not on a terminal: no progress" test ! -s "$T/err"
        tty restore "$T/b-tty.img" "$T/r-tty.img"
        check "restore on a terminal shows progress" grep -q '100%' "$T/tty"
        tty reencrypt "$V"
        check "reencrypt on a terminal shows a bar with rate and time left" grep -q 'MiB/s ETA' "$T/tty"
        tty -q reencrypt "$V"
        check "reencrypt -q on a terminal shows nothing" test ! -s "$T/tty"
        expect 0 "reencrypt, not on a terminal" reencrypt "$V"
        check "reencrypt, not on a terminal: a progress line for the log" grep -q '100.0% .*MiB/s' "$T/err"
        check "reencrypt, not on a terminal: no bar" sh -c "! grep -q '#' '$T/err'"
else
        echo "# script(1) missing: progress on a terminal not checked"
fi

# Stopped by SIGINT after the current chunk: status 1, how to resume; --resume finishes it (kmscrypt-reencrypt(8)).
S=$T/s.img
truncate -s 24M "$S"
expect 0 "format a volume to stop" format "$S" --key alias/pg --context db-id=db-1,volume-id=vol-s --quiet
"$KMSCRYPT" --keystore "$KS" --audit-log "$LOG" reencrypt "$S" --rate-limit 1 > "$T/out" 2> "$T/err" &
pid=$!
for i in $(seq 100); do
        cryptsetup luksDump "$S" 2>/dev/null | grep -q online-reencrypt && break
        sleep 0.2
done
kill -INT "$pid"
rc=0
wait "$pid" || rc=$?
check "reencrypt stopped by SIGINT: exit 1 (got $rc)" test "$rc" = 1
check "reencrypt stopped: says how to resume" grep -q "stopped; resume with: kmscrypt reencrypt --resume $S" "$T/err"
j "reencrypt --resume" reencrypt "$S" --resume
json_is 'j["Resumed"]' true

expect 0 "the audit trail verifies" audit verify
finish
