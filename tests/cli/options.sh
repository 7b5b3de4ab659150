#!/bin/sh
# Global options before or after the command, precedence flag > env > file > default,
# configuration errors, --help and exit statuses.
. "$(dirname "$0")/lib.sh"
# Each keystore here keeps its own chain head (the default place).
unset KMSCRYPT_AUDIT_HEAD

for args in "--help" "key --help" "key create --help" "kms decrypt --help" "audit verify --help" "key -h"; do
        expect 0 "$args" $args
        check "$args prints a usage" grep -q '^Usage: kmscrypt' "$T/out"
done
check "--help does not create the keystore" test ! -e "$KS"
# kmscrypt help [COMMAND [SUBCOMMAND]] is --help, as git and systemctl have it: the same text and status.
for args in "" "key" "key create" "audit" "backup"; do
        expect 0 "help $args" help $args
        "$KMSCRYPT" $args --help > "$T/help.want"
        check "help $args: the text of '$args --help'" cmp -s "$T/out" "$T/help.want"
        check "help $args: nothing on stderr" test ! -s "$T/err"
done
expect 2 "help of an unknown command" help frobnicate
check "help of an unknown command: the usage error of the command" \
        grep -qxF "kmscrypt: unknown command \"frobnicate\" (see 'kmscrypt --help')" "$T/err"
expect 2 "help of an unknown subcommand" help key frobnicate
check "help of an unknown subcommand: the usage error of key" \
        grep -qxF "kmscrypt: unknown command \"frobnicate\" (see 'kmscrypt key --help')" "$T/err"
# help prints no JSON: --json is refused there, after the command name or before it.
expect 2 "help --json" help --json
check "help --json: an unknown option of help" \
        grep -qxF "kmscrypt: unknown option --json (see 'kmscrypt help --help')" "$T/err"
expect 2 "--json help" --json help key
check "--json help: refused, one line" one_error_line
check "--json help: the line names --json" grep -q -- "--json" "$T/err"
check "--json help: no help printed" test ! -s "$T/out"
expect 0 "--help lists audit restart in its summary" --help
check "--help: audit's line names restart" grep -q '^  audit .*restart' "$T/out"
check "--help: help listed" grep -q '^  help ' "$T/out"
check "help does not create the keystore" test ! -e "$KS"
expect 0 "--version" --version
check "--version prints the version" grep -q '^kmscrypt [0-9]' "$T/out"
expect 2 "no command" 
check "no command: usage on stdout" grep -q '^Usage' "$T/out"

# Global options after the command name, and between group and subcommand.
"$KMSCRYPT" key create --keystore "$T/ks-after" --audit-log "$T/a.log" --alias alias/x --quiet > "$T/out" 2> "$T/err"
check "global options after the command (exit $?)" test -d "$T/ks-after/keys"
"$KMSCRYPT" key --keystore "$T/ks-after" --audit-log "$T/a.log" --json list > "$T/out" 2> "$T/err"
json_is 'j["Aliases"][0]["AliasName"]' alias/x
"$KMSCRYPT" --json --keystore="$T/ks-after" --audit-log="$T/a.log" key list > "$T/out" 2> "$T/err"
json_is 'len(j["Keys"])' 1

# Precedence: flag > environment > file > default.
mkdir -p "$T/conf"
cat > "$T/conf/kmscrypt.conf" <<CONF
# test configuration
keystore = $T/ks-file
audit-log = $T/audit-file.log
deletion-window-days = 9
CONF
run() { "$KMSCRYPT" "$@" > "$T/out" 2> "$T/err"; rc=$?; }
run --config "$T/conf/kmscrypt.conf" key create --quiet
check "file: keystore from the configuration file" test -d "$T/ks-file/keys" -a -s "$T/audit-file.log"
KMSCRYPT_CONFIG="$T/conf/kmscrypt.conf" run --json key list
json_is 'len(j["Keys"])' 1
KMSCRYPT_CONFIG="$T/conf/kmscrypt.conf" KMSCRYPT_KEYSTORE="$T/ks-env" KMSCRYPT_AUDIT_LOG="$T/audit-env0.log" \
        run key create --quiet
check "env over file" test -d "$T/ks-env/keys" -a -s "$T/audit-env0.log"
KMSCRYPT_CONFIG="$T/conf/kmscrypt.conf" KMSCRYPT_KEYSTORE="$T/ks-env" KMSCRYPT_AUDIT_LOG="$T/audit-env.log" \
        run --keystore "$T/ks-flag" key create --quiet
check "flag over env" test -d "$T/ks-flag/keys" -a -s "$T/audit-env.log"
# CreateKey's intent and outcome records, both in the log the environment names.
check "env audit log over file" test "$(wc -l < "$T/audit-env.log")" -eq 2
KMSCRYPT_CONFIG="$T/conf/kmscrypt.conf" run --json key create
ID=$(json 'j["KeyMetadata"]["KeyId"]')
KMSCRYPT_CONFIG="$T/conf/kmscrypt.conf" run --json key schedule-deletion "$ID"
json_is 'j["PendingWindowInDays"]' 9

# Configuration errors name file:line; a named file must exist.
printf 'keystore = /x\nkeystroe = /y\n' > "$T/conf/typo.conf"
expect 2 "unknown key in the configuration" --config "$T/conf/typo.conf" key list
check "message names file:line" grep -q "^kmscrypt: $T/conf/typo.conf:2: unknown key \"keystroe\"" "$T/err"
check "one line" one_error_line
expect 2 "missing named configuration" --config "$T/conf/nonexistent.conf" key list
check "missing configuration: one line" one_error_line
KMSCRYPT_CONFIG="$T/conf/nonexistent.conf" run key list
check "missing configuration from env: exit 2 (got $rc)" test "$rc" = 2
# ... by every command, also one that uses none of its settings (dump, config list,
# backup): a file that was named and cannot be read is never silently unused.
: > "$T/not-luks.img"
for args in "dump $T/not-luks.img" "config list --volumes $T/empty.conf" "backup $T/not-luks.img $T/copy.img" \
            "list" "audit verify"; do
        expect 2 "missing named configuration: $args" --config "$T/conf/nonexistent.conf" $args
        check "missing configuration, $args: one line naming the file" \
                sh -c "[ \$(wc -l < '$T/err') = 1 ] && grep -qF '$T/conf/nonexistent.conf' '$T/err'"
        expect 2 "configuration with a mistake: $args" --config "$T/conf/typo.conf" $args
        check "configuration with a mistake, $args: names file:line" grep -qF "$T/conf/typo.conf:2:" "$T/err"
done
check "backup with a missing configuration: no copy" test ! -e "$T/copy.img"
# The option may follow the command's own arguments, and the environment names a file too.
expect 2 "missing named configuration after the arguments" dump "$T/not-luks.img" --config "$T/conf/nonexistent.conf"
KMSCRYPT_CONFIG="$T/conf/nonexistent.conf" run config list --volumes "$T/empty.conf"
check "missing configuration from env, config list: exit 2 (got $rc)" test "$rc" = 2
# --help needs no configuration.
expect 0 "--help with a missing configuration" --config "$T/conf/nonexistent.conf" dump --help
# The default file alone may be missing, or go unread by a command that needs none of it.
if [ ! -e /etc/kmscrypt/kmscrypt.conf ]; then
        KMSCRYPT_CONFIG= run config list --volumes "$T/empty.conf"
        check "no configuration named, default missing: config list works (got $rc)" test "$rc" = 0
fi
printf 'deletion-window-days = 99\n' > "$T/conf/range.conf"
expect 2 "value out of range" --config "$T/conf/range.conf" key list
check "range: message names the line" grep -q "range.conf:1: deletion-window-days" "$T/err"

# --verbose turns on debug messages; stdout keeps only the result.
expect 0 "--verbose" --verbose key list --json
check "--verbose logs on stderr" test -s "$T/err"
json_is 'len(j["Keys"])' 0

# Secret memory that cannot be locked (no CAP_IPC_LOCK, RLIMIT_MEMLOCK 0):
# the command works and says once that keys may reach swap.
expect 0 "a CMK for the memlock check" key create --alias alias/memlock --quiet
kc kms generate-data-key --key alias/memlock --context db-id=memlock --json
check "with locked memory: no warning (stderr: $(cat "$T/err"))" test ! -s "$T/err"
# ASan's interceptor makes mlock() a no-op that succeeds: nothing to see there.
if ldd "$KMSCRYPT" 2>/dev/null | grep -q libasan; then
        echo "ok - # SKIP memlock warning: ASan ignores mlock()"
elif command -v setpriv >/dev/null && [ "$(id -u)" = 0 ]; then
        sh -c 'ulimit -l 0 && exec setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock "$@"' sh \
                "$KMSCRYPT" --keystore "$KS" --audit-log "$LOG" kms generate-data-key --key alias/memlock \
                --context db-id=memlock --json > "$T/out" 2> "$T/err"
        rc=$?
        check "unlockable memory: the key is still generated (exit $rc)" test "$rc" = 0 -a -s "$T/out"
        check "unlockable memory: one warning line" one_error_line
        check "unlockable memory: the warning names swap and the limit" \
                grep -q "could not be locked.*swap.*RLIMIT_MEMLOCK" "$T/err"
else
        echo "ok - # SKIP memlock warning: needs root and setpriv"
fi

finish
