#!/bin/sh
# The command-line contract of kmscrypt and kmscryptd, as kmscrypt(8),
# kmscrypt-reencrypt(8) and kmscryptd(8) state it: --help on every command,
# synopses and options that match the man pages, usage errors (one line naming
# what is wrong, with a hint, status 2, before any KMS is opened), and the
# exit statuses of kmscryptd.
. "$(dirname "$0")/lib.sh"
MANDIR=$(cd "$(dirname "$0")/../../man" && pwd)
KMSCRYPTD=$top_builddir/kmscryptd

# ---- --help, synopses and options against the man pages ----
if command -v nroff >/dev/null && command -v col >/dev/null; then
        python3 "$(dirname "$0")/manpage.py" kmscrypt "$KMSCRYPT" "$MANDIR" > "$T/man.out"
        python3 "$(dirname "$0")/manpage.py" kmscryptd "$KMSCRYPTD" "$MANDIR" >> "$T/man.out"
        cat "$T/man.out"
        passed=$((passed + $(grep -c '^ok - ' "$T/man.out")))
        failed=$((failed + $(grep -c '^FAIL - ' "$T/man.out")))
        check "the man pages were compared" grep -q 'kmscrypt reencrypt: the man page documents' "$T/man.out"
else
        echo "# nroff or col missing: --help not compared with the man pages"
fi

# Every command and subcommand, from the Commands: lists of --help.
commands() {
        for c in $("$KMSCRYPT" --help | sed -n '/^Commands:/,/^$/p' | awk 'NF && !/:$/ { print $1 }'); do
                subs=$("$KMSCRYPT" $c --help | sed -n '/^Commands:/,/^$/p' | awk 'NF && !/:$/ { print $1 }')
                if [ -n "$subs" ]; then
                        for s in $subs; do echo "$c $s"; done
                else
                        echo "$c"
                fi
        done
}
commands > "$T/commands"
check "more than 25 commands found" test "$(wc -l < "$T/commands")" -gt 25

# A copy an option's help names (DEST.header, FILE.header) is named after an argument of the synopsis.
while read -r cmd; do
        "$KMSCRYPT" $cmd --help > "$T/help"
        syn=$(head -n1 "$T/help")
        for w in $(sed -n '/^Options:/,/^$/p' "$T/help" | grep -o '[A-Z][A-Z]*\.header' | sort -u); do
                check "$cmd --help: $w is named after an argument of '$syn'" \
                        sh -c 'printf "%s\n" "$1" | grep -qw -- "$2"' sh "$syn" "${w%.header}"
        done
done < "$T/commands"

# ---- usage errors ----
# ue STATUS NAME ARGS...: a usage error with an audit log that cannot be opened (a directory):
# status 2 all the same, one line, nothing on stdout, no keystore created.
mkdir "$T/logdir"
ue() {
        want=$1 name=$2
        shift 2
        "$KMSCRYPT" --keystore "$T/never" --audit-log "$T/logdir" "$@" > "$T/out" 2> "$T/err"
        rc=$?
        if [ "$rc" = "$want" ]; then ok "$name (exit $rc)"; else fail "$name: exit $rc, expected $want: $(cat "$T/err")"; fi
        check "$name: one line on stderr" one_error_line
        check "$name: nothing on stdout" test ! -s "$T/out"
        check "$name: no keystore created" test ! -e "$T/never"
}
# says TEXT: the one line on stderr contains TEXT.
says() { check "says '$1'" grep -qF -- "$1" "$T/err"; }

while read -r cmd; do
        ue 2 "$cmd --no-such-option" $cmd --no-such-option
        says "unknown option --no-such-option (see 'kmscrypt $cmd --help')"
        # The first option that takes a value, given none.
        opt=$("$KMSCRYPT" $cmd --help | sed -n '/^Options:/,/^$/s/^  \(-., \)\{0,1\} *\(--[a-z-]*\) \([^ ][^ ]*\) .*/\2 \3/p' | head -n1)
        if [ -n "$opt" ]; then
                ue 2 "$cmd ${opt% *} without its value" $cmd "${opt% *}"
                says "option ${opt% *} needs a value ${opt#* } (see 'kmscrypt $cmd --help')"
        fi
        # A command whose synopsis starts with an argument or a required option, given nothing.
        syn=$("$KMSCRYPT" $cmd --help | sed -n '1s/^Usage: kmscrypt //p')
        first=${syn#"$cmd "}
        case "$first" in
        [A-Z]*|--*)
                ue 2 "$cmd without arguments" $cmd
                says "(see 'kmscrypt $cmd --help')"
                ;;
        esac
done < "$T/commands"

ue 2 "unknown command" frobnicate
says "unknown command \"frobnicate\" (see 'kmscrypt --help')"
ue 2 "unknown subcommand" key frobnicate
says "unknown command \"frobnicate\" (see 'kmscrypt key --help')"
# A group without its command: the one line, and its commands listed on stdout.
expect 2 "group without its command" audit
check "group without its command: one line" one_error_line
says "missing command (see 'kmscrypt audit --help')"
check "group without its command: lists its commands" grep -q '^  verify' "$T/out"
ue 2 "missing positional, named" snapshot pgdata
says "missing DEST (see 'kmscrypt snapshot --help')"
ue 2 "unexpected positional, named" key describe alias/a alias/b
says "unexpected argument \"alias/b\" (see 'kmscrypt key describe --help')"
ue 2 "flag given a value" key list --json=yes
says "option --json takes no value"
ue 2 "short flags are not bundled" -qv key list
says "unknown option -qv"
# Usage errors that commands find after parsing: before the KMS too.
ue 2 "key rotate: DEVICE without --rewrap" key rotate alias/a /dev/sdx
says "DEVICE arguments go with --rewrap"
ue 2 "schedule-deletion: window out of range" key schedule-deletion alias/a --pending-window-in-days 6
says "--pending-window-in-days"
ue 2 "rewrap: no volume" rewrap
says "give one NAME or DEVICE, or --all (see 'kmscrypt rewrap --help')"
ue 2 "rewrap: --header with --all" rewrap --all --header /tmp/h
says "--header names one volume"
ue 2 "rebind: no --context" rebind /dev/sdx
says "--context is required (see 'kmscrypt rebind --help')"
ue 2 "rebind: a name" rebind pgdata --context volume-id=x
says "not a name"
ue 2 "reencrypt: bad --rate-limit" reencrypt /dev/sdx --rate-limit 0
says "--rate-limit"
ue 2 "reencrypt: bad --resilience" reencrypt /dev/sdx --resilience none
says "checksum or journal"
ue 2 "reencrypt: bad --pbkdf" reencrypt /dev/sdx --pbkdf md5
says "--pbkdf"
# Costs are libcryptsetup's to judge, still as usage errors before anything is opened.
ue 2 "format: pbkdf2 below libcryptsetup's floor" format /dev/sdx --key alias/a --context db-id=d,volume-id=v \
        --pbkdf pbkdf2 --pbkdf-force-iterations 999
says "refused by libcryptsetup"
says "(see 'kmscrypt format --help')"
ue 2 "format: a memory cost on pbkdf2" format /dev/sdx --key alias/a --context db-id=d,volume-id=v \
        --pbkdf pbkdf2 --pbkdf-memory 65536
says "refused by libcryptsetup"
ue 2 "reencrypt: argon2id below libcryptsetup's floor" reencrypt /dev/sdx --pbkdf argon2id --pbkdf-force-iterations 3
says "refused by libcryptsetup"
says "(see 'kmscrypt reencrypt --help')"
ue 2 "reencrypt: argon2id memory below libcryptsetup's floor" reencrypt /dev/sdx --pbkdf-memory 16
says "refused by libcryptsetup"
ue 2 "format: bad --sector-size" format /dev/sdx --key alias/a --context db-id=d,volume-id=v --sector-size 1000
ue 2 "adopt: neither passphrase nor key file" adopt /dev/sdx --key alias/a --context db-id=d,volume-id=v
says "(see 'kmscrypt adopt --help')"
ue 2 "attach: --all with a device" attach --all /dev/sdx
ue 2 "audit list: bad --since" audit list --since yesterday

# With a usable audit log the same refusal is 2 as well, and the keystore stays as it was.
expect 0 "create key" key create --alias alias/a --quiet
before=$(snapshot "$KS")
lines=$(audit_lines)
expect 2 "usage error with a working KMS" key rotate alias/a /dev/sdx
check "usage error: nothing audited, keystore unchanged" test "$(audit_lines)" = "$lines" -a "$before" = "$(snapshot "$KS")"

# ---- exit statuses the man page names, with real cases ----
: > "$T/volumes.empty"
expect 3 "rewrap of a name that is neither configured nor attached" rewrap no-such-volume --volumes "$T/volumes.empty"
check "not found: one line" one_error_line
printf 'pg /dev/disk/by-id/nothing db-id=d,volume-id=v nofial\n' > "$T/volumes.bad"
expect 2 "config check: a mistake in the volumes file" config check --volumes "$T/volumes.bad"
check "names the file and line" grep -q "volumes.bad:1: .*nofial" "$T/err"
printf 'pg /dev/disk/by-id/nothing db-id=d,volume-id=v\n' > "$T/volumes.ok"
expect 0 "config check: a device not present is no error" config check --volumes "$T/volumes.ok"
check "config check: one volume, in the singular" grep -qxF "$T/volumes.ok: 1 volume, syntax ok" "$T/out"
{ cat "$T/volumes.ok"; printf 'pg2 /dev/disk/by-id/nothing2 db-id=d,volume-id=v2\n'; } > "$T/volumes.two"
expect 0 "config check: two volumes" config check --volumes "$T/volumes.two"
check "config check: two volumes, in the plural" grep -qxF "$T/volumes.two: 2 volumes, syntax ok" "$T/out"
expect 2 "config list: a mistake in the volumes file" config list --volumes "$T/volumes.bad"
check "config list: one line" one_error_line
check "config list: names the file and line" grep -q "volumes.bad:1: .*nofial" "$T/err"
check "config list: nothing on stdout" test ! -s "$T/out"
expect 2 "config list: a volumes file that cannot be read (a directory)" config list --volumes "$T"
check "config list, a directory: one line" one_error_line
expect 2 "attach of a configured volume: a mistake in the volumes file" attach pg --volumes "$T/volumes.bad"
check "attach VOLUME, bad volumes file: one line" one_error_line
check "attach VOLUME, bad volumes file: names the file and line" grep -q "volumes.bad:1: .*nofial" "$T/err"
expect 2 "attach --all: a mistake in the volumes file" attach --all --volumes "$T/volumes.bad"
check "attach --all, bad volumes file: one line" one_error_line
check "attach --all, bad volumes file: names the file and line" grep -q "volumes.bad:1: .*nofial" "$T/err"
# Quiet still names the volume that fails attach --all, and only that one
# (the initramfs runs attach -q --all); a nofail volume is no failure.
printf 'pg /dev/disk/by-id/nothing db-id=d,volume-id=v\nlate /dev/disk/by-id/late db-id=d,volume-id=l nofail\n' \
        > "$T/volumes.two"
expect 3 "attach -q --all: a device not there" -q attach --all --volumes "$T/volumes.two"
check "attach -q --all: one line" one_error_line
check "attach -q --all: names the volume that fails, and why" grep -q "^kmscrypt: pg: .*/dev/disk/by-id/nothing" "$T/err"
expect 0 "config list: a device not present is no matter" config list --volumes "$T/volumes.ok"
check "config list: the name, one a line" test "$(cat "$T/out")" = pg
expect 0 "config list: an empty volumes file has none" config list --volumes "$T/volumes.empty"
check "config list: empty file, nothing printed" test ! -s "$T/out" -a ! -s "$T/err"

# A volumes file that was named (--volumes, KMSCRYPT_VOLUMES) must exist, as a named
# --config must: read as "no volumes", a typo let schedule-deletion skip its in-use
# check.  Status 2, one line naming the file, before anything is changed.
# named_missing WHAT ARGS...: both ways of naming $T/no-such-volumes.
named_missing() {
        what=$1
        shift
        expect 2 "$what --volumes naming no file" "$@" --volumes "$T/no-such-volumes"
        check "$what --volumes naming no file: one line naming it" \
                sh -c "[ \$(wc -l < '$T/err') = 1 ] && grep -qF '$T/no-such-volumes (named by --volumes)' '$T/err'"
        KMSCRYPT_VOLUMES=$T/no-such-volumes kc "$@"
        check "$what under KMSCRYPT_VOLUMES naming no file: status 2 (got $rc)" test "$rc" = 2
        check "$what under KMSCRYPT_VOLUMES naming no file: one line naming it" \
                sh -c "[ \$(wc -l < '$T/err') = 1 ] && grep -qF '$T/no-such-volumes (named by KMSCRYPT_VOLUMES)' '$T/err'"
}
before=$(snapshot "$KS")
lines=$(audit_lines)
named_missing "key schedule-deletion" key schedule-deletion alias/a
named_missing "config check" config check
named_missing "config list" config list
named_missing "attach --all" attach --all
named_missing "attach VOLUME" attach pg
named_missing "key usage" key usage alias/a
named_missing "rewrap --all" rewrap --all
named_missing "rewrap NAME" rewrap pg
named_missing "reencrypt NAME" reencrypt pg
check "a volumes file named but missing: keystore unchanged, nothing audited" \
        test "$before" = "$(snapshot "$KS")" -a "$(audit_lines)" = "$lines"
kc key describe alias/a --json
json_is 'j["KeyMetadata"]["KeyState"]' Enabled
# Commands without --volumes read KMSCRYPT_VOLUMES where they need the file.
KMSCRYPT_VOLUMES=$T/no-such-volumes kc key rotate alias/a --rewrap
check "key rotate --rewrap under KMSCRYPT_VOLUMES naming no file: status 2 (got $rc)" test "$rc" = 2
kc key describe alias/a --json
json_is 'j["KeyMetadata"]["KeyVersion"]' 1
KMSCRYPT_VOLUMES=$T/no-such-volumes kc backup pg "$T/pg.copy"
check "backup NAME under KMSCRYPT_VOLUMES naming no file: status 2 (got $rc)" test "$rc" = 2
check "backup NAME: no copy" test ! -e "$T/pg.copy"
KMSCRYPT_VOLUMES=$T/no-such-volumes kc key rotate alias/a
check "key rotate without --rewrap needs no volumes file (got $rc)" test "$rc" = 0
# The built-in default alone may be missing.
if [ ! -e /etc/kmscrypt/volumes ]; then
        KMSCRYPT_VOLUMES= kc config list
        check "the default volumes file missing: no volumes (got $rc)" test "$rc" = 0 -a ! -s "$T/out"
fi

# ---- kmscryptd ----
unset JOURNAL_STREAM
# d STATUS NAME ARGS...: kmscryptd with its socket in $T; it must not get as far as serving.
d() {
        want=$1 name=$2
        shift 2
        timeout 20 "$KMSCRYPTD" --socket "$T/agent.sock" --stderr "$@" > "$T/out" 2> "$T/err"
        rc=$?
        if [ "$rc" = "$want" ]; then ok "kmscryptd $name (exit $rc)"; else fail "kmscryptd $name: exit $rc, expected $want: $(cat "$T/err")"; fi
}
d_one_line() { [ "$(wc -l < "$T/err")" -eq 1 ] && grep -q '^kmscryptd: ' "$T/err"; }
d 0 "--help" --help
check "kmscryptd --help: usage" grep -q '^Usage: kmscryptd \[OPTIONS\]' "$T/out"
d 0 "--version" --version
check "kmscryptd --version" grep -q '^kmscryptd [0-9]' "$T/out"
d 2 "unknown option" --no-such-option
check "kmscryptd unknown option: one line with a hint" d_one_line
check "kmscryptd unknown option: names it" grep -qF "unknown option --no-such-option (see 'kmscryptd --help')" "$T/err"
d 2 "unknown short option" -z
check "kmscryptd -z: names it" grep -qF "unknown option -z (see" "$T/err"
d 2 "option without its value" --volumes
check "kmscryptd --volumes without value: one line" d_one_line
check "kmscryptd --volumes without value: names it" grep -qF "option --volumes needs a value (see 'kmscryptd --help')" "$T/err"
d 2 "flag given a value" --no-attach=yes
check "kmscryptd --no-attach=yes: names it" grep -qF "option --no-attach takes no value" "$T/err"
d 2 "an argument" extra
check "kmscryptd extra argument: names it" grep -qF 'unexpected argument "extra"' "$T/err"
# Every bad option is one line that names it and ends with the hint (kmscryptd(8), EXIT STATUS).
d_usage() {
        d 2 "$@"
        check "kmscryptd $1: one line ending with the hint" sh -c "
                [ \$(wc -l < '$T/err') = 1 ] && grep -q \"^kmscryptd: .* (see 'kmscryptd --help')\$\" '$T/err'"
}
d_usage "-j out of range" -j 0
check "kmscryptd -j 0: names the option and the range" grep -qF -- '--max-parallel: expected a number from 1 to 1024, got "0"' "$T/err"
d_usage "--max-parallel out of range" --max-parallel 0
d_usage "--mappers not a number" --mappers many
d_usage "--revoke-interval out of range" --revoke-interval 86401
d_usage "--log-level unknown" --log-level verbose
check "kmscryptd --log-level verbose: names the level" grep -qF -- '--log-level: unknown level "verbose"' "$T/err"
# The levels of log-level in kmscrypt.conf, "error" among them (--help after it: parsed, then exit 0).
for level in err error warning notice info debug; do
        d 0 "--log-level $level" --log-level "$level" --help
done
for args in --no-such-option -z --volumes --no-attach=yes extra; do
        d_usage "$args" $args
done
if [ "$(id -u)" = 0 ]; then
        # Status 1: the agent cannot start.  (It drops capabilities first, which needs root.)
        d 1 "a status group that does not exist" --group kmscrypt-no-such-group --config "$T/empty.conf"
        check "kmscryptd: names the group" grep -q 'kmscrypt-no-such-group' "$T/err"
        d 1 "a volumes file with a mistake" --volumes "$T/volumes.bad" --group '' --config "$T/empty.conf"
        check "kmscryptd: names the file and line" grep -q "volumes.bad:1:" "$T/err"
        check "kmscryptd: no socket left" test ! -e "$T/agent.sock"

        # kmscrypt.conf's log-level and syslog hold for the agent too; --log-level wins.
        # agent CONF ARGS...: kmscryptd under kmscrypt.conf CONF until it listens, then
        # stopped; its standard error in $T/agent.err.
        agent() {
                conf=$1
                shift
                rm -f "$T/agent.sock"       # what the loop below waits for is this agent's
                # Not under timeout(1), which forwards the stop to its whole process group: in CI
                # the agent's status came back 143 twice; see the commit for what was measured.
                KMSCRYPT_STATE_DIR=$T/state "$KMSCRYPTD" --socket "$T/agent.sock" --group '' \
                        --volumes "$T/volumes.empty" --keystore "$KS" --audit-log "$LOG" --no-attach \
                        --config "$conf" "$@" > /dev/null 2> "$T/agent.err" &
                pid=$!
                # Its socket made, the agent holds SIGTERM for its own orderly stop (a signalfd):
                # killed before, it would die without the lines the checks look for.  A loaded
                # machine (the vm tier beside) may take seconds to get there.
                for _ in $(seq 600); do [ -S "$T/agent.sock" ] && break; sleep 0.1; done
                kill "$pid"
                # The stop takes a moment; one that never ends is a failure, not a hang.
                for _ in $(seq 300); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
                kill -KILL "$pid" 2> /dev/null
                wait "$pid"
                rc=$?
        }
        for level in debug err error; do
                printf 'log-level = %s\n' "$level" > "$T/log-$level.conf"
        done
        agent "$T/log-debug.conf" --stderr
        check "log-level = debug: the agent ran (exit $rc)" test "$rc" = 0
        check "log-level = debug: debug messages" grep -q 'mapper processes' "$T/agent.err"
        agent "$T/log-debug.conf" --stderr --log-level info
        check "log-level = debug, --log-level info: the option wins" \
                sh -c "grep -q 'listening on' '$T/agent.err' && ! grep -q 'mapper processes' '$T/agent.err'"
        agent "$T/log-error.conf" --stderr
        check "log-level = error: no info messages" sh -c "[ -e '$T/agent.err' ] && ! grep -q 'listening on' '$T/agent.err'"
        agent "$T/log-err.conf" --stderr --log-level error
        check "--log-level error is a level, as in kmscrypt.conf (exit $rc)" \
                sh -c "[ $rc = 0 ] && ! grep -q 'listening on' '$T/agent.err'"
        # Under the journal (JOURNAL_STREAM) the agent logs through syslog alone; with
        # syslog = no through standard error alone, which is then the journal's stream.
        printf 'syslog = no\n' > "$T/no-syslog.conf"
        JOURNAL_STREAM=8:1 agent "$T/empty.conf"
        check "under the journal: nothing on standard error" test ! -s "$T/agent.err"
        JOURNAL_STREAM=8:1 agent "$T/no-syslog.conf"
        check "syslog = no: the messages on standard error" grep -q '^kmscryptd: listening on' "$T/agent.err"
fi

finish
