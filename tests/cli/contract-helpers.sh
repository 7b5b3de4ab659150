#!/bin/sh
# The command-line contract of the helpers that systemd and udev run, as
# kmscrypt-hotplug(8) and kmscrypt-generator(8) state it, the way
# contract.sh holds kmscrypt to kmscrypt(8): --help exits 0 with the man
# page's synopsis and options, a usage error is one line with a hint and
# status 2, and every exit status the page lists comes out of a real case.
. "$(dirname "$0")/lib.sh"
MANDIR=$(cd "$(dirname "$0")/../../man" && pwd)
HOTPLUG=$top_builddir/kmscrypt-hotplug
GENERATOR=$top_builddir/kmscrypt-generator
KMSCRYPTD=$top_builddir/kmscryptd
# The helpers' own runs, kept apart from kc's.
export KMSCRYPT_AGENT_SOCKET=$T/agent.sock
unset JOURNAL_STREAM

# run PROGRAM STATUS NAME ARGS...: stdout in $T/out, stderr in $T/err; records STATUS as seen for PROGRAM.
run() {
        prog=$1 want=$2 what=$3
        shift 3
        "$prog" "$@" > "$T/out" 2> "$T/err"
        rc=$?
        if [ "$rc" = "$want" ]; then
                ok "${prog##*/} $what (exit $rc)"
                echo "$rc" >> "$T/seen.${prog##*/}"
        else
                fail "${prog##*/} $what: exit $rc, expected $want; stderr: $(cat "$T/err")"
        fi
}
# usage PROGRAM TEXT ARGS...: status 2, one line naming TEXT and ending with the hint, nothing on stdout.
usage() {
        prog=$1 text=$2
        shift 2
        run "$prog" 2 "usage error '$*'" "$@"
        check "${prog##*/} '$*': one line, names it, the hint" sh -c "
                [ \$(wc -l < '$T/err') = 1 ] && grep -qF -- '$text' '$T/err' &&
                grep -q \"^${prog##*/}: .* (see '${prog##*/} --help')\$\" '$T/err' && [ ! -s '$T/out' ]"
}
# statuses PROGRAM: every status the man page lists was seen.
statuses() {
        want=$(sed -n 's/^statuses: //p' "$T/man.${1##*/}")
        seen=$(sort -un "$T/seen.${1##*/}" | xargs)
        check "${1##*/}: the statuses of its man page ($want) all came out of a case" test "$want" = "$seen"
}

# ---- --help, synopsis, options against the man pages ----
if command -v nroff >/dev/null && command -v col >/dev/null; then
        for p in "$HOTPLUG" "$GENERATOR"; do
                python3 "$(dirname "$0")/manpage.py" helper "$p" "$MANDIR/${p##*/}.8" > "$T/man.${p##*/}"
                cat "$T/man.${p##*/}"
                passed=$((passed + $(grep -c '^ok - ' "$T/man.${p##*/}")))
                failed=$((failed + $(grep -c '^FAIL - ' "$T/man.${p##*/}")))
        done
else
        echo "SKIP: nroff or col missing"
        exit 77
fi

# ---- kmscrypt-generator ----
run "$GENERATOR" 0 "--help" --help
check "generator --help: the synopsis" grep -qx 'Usage: kmscrypt-generator normal-dir \[early-dir late-dir\]' "$T/out"
usage "$GENERATOR" "got 0 arguments"
usage "$GENERATOR" "got 2 arguments" "$T/g" "$T/g"
usage "$GENERATOR" "unknown option --bogus" --bogus
usage "$GENERATOR" "unknown option -x" "$T/g" -x "$T/g"
check "generator usage errors wrote nothing" test ! -e "$T/g"

cat > "$T/volumes" <<'EOF'
pgdata  /dev/vdb  db-id=db-1,volume-id=pgdata
EOF
mkdir "$T/gen"
KMSCRYPT_VOLUMES=$T/none run "$GENERATOR" 0 "without a volumes file" "$T/gen" "$T/gen" "$T/gen"
check "generator without a volumes file: no units" test -z "$(ls "$T/gen")"
KMSCRYPT_VOLUMES=$T/volumes run "$GENERATOR" 0 "with a volume" "$T/gen" "$T/gen" "$T/gen"
check "generator: the unit of the volume" test -s "$T/gen/kmscrypt-pgdata.service"
printf 'pgdata /dev/vdb db-id=db-1,volume-id=pgdata no-such-option\n' > "$T/volumes.bad"
mkdir "$T/gen2"
KMSCRYPT_VOLUMES=$T/volumes.bad run "$GENERATOR" 1 "with a volumes file that does not parse" "$T/gen2"
check "generator, bad file: names the file and line" grep -q "volumes.bad:1" "$T/err"
check "generator, bad file: no units" test -z "$(ls "$T/gen2")"
: > "$T/not-a-dir"
KMSCRYPT_VOLUMES=$T/volumes run "$GENERATOR" 1 "into a directory it cannot create" "$T/not-a-dir/out"
check "generator, unwritable: says what it could not create" grep -q "cannot create $T/not-a-dir/out" "$T/err"
statuses "$GENERATOR"

# ---- kmscrypt-hotplug ----
run "$HOTPLUG" 0 "--help" --help
usage "$HOTPLUG" "missing command"
usage "$HOTPLUG" 'unknown command "plug"' plug 7:0
usage "$HOTPLUG" "attach needs MAJOR:MINOR" attach
usage "$HOTPLUG" "detach-volume needs NAME" detach-volume
usage "$HOTPLUG" 'unexpected argument "more"' volume pgdata more
usage "$HOTPLUG" 'not MAJOR:MINOR: "sdb"' attach sdb
usage "$HOTPLUG" 'not MAJOR:MINOR: "8:1x"' detach 8:1x
usage "$HOTPLUG" "unknown option --bogus" attach --bogus 7:0
run "$HOTPLUG" 5 "volume, no agent" volume pgdata
check "no agent: says so" grep -q "cannot reach the kmscrypt agent at $T/agent.sock" "$T/err"
run "$HOTPLUG" 5 "attach, no agent" attach 7:0

# With an agent of this test's own: a kmscrypt volume on a loop device that
# no entry names is refused (4), a device that is not one is left alone (0),
# a volume the agent does not know fails (1).
if [ "$(id -u)" = 0 ] && command -v losetup >/dev/null && [ -e /dev/loop-control ]; then
        LOOPS=
        trap 'kill "$agent" 2>/dev/null; wait "$agent" 2>/dev/null; for l in $LOOPS; do losetup -d "$l"; done; rm -rf "$T"' EXIT
        truncate -s 32M "$T/kc.img" "$T/zero.img"
        KC=$(losetup -f --show "$T/kc.img") && LOOPS="$LOOPS $KC"
        ZERO=$(losetup -f --show "$T/zero.img") && LOOPS="$LOOPS $ZERO"
        expect 0 "a key" key create --alias alias/hp
        expect 0 "a kmscrypt volume on $KC" format "$KC" --key alias/hp --context db-id=db-1,volume-id=stray
        : > "$T/volumes.empty"
        KMSCRYPT_STATE_DIR=$T/state "$KMSCRYPTD" --socket "$T/agent.sock" --volumes "$T/volumes.empty" --group '' \
                --keystore "$KS" --audit-log "$LOG" --no-attach --stderr 2> "$T/agent.err" &
        agent=$!
        # Not the socket file, which bind() makes a moment before listen(): a connection taken.  Up to
        # 60 s, as a loaded machine may take seconds to start a sanitizer build.
        listens() {
                python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET).connect(sys.argv[1])' \
                        "$T/agent.sock" 2> /dev/null
        }
        for _ in $(seq 600); do listens && break; sleep 0.1; done
        check "the agent listens" listens
        devno() { printf '%d:%d' "0x$(stat -c %t "$1")" "0x$(stat -c %T "$1")"; }
        run "$HOTPLUG" 4 "attach of a kmscrypt volume no entry names" attach "$(devno "$KC")"
        check "refused: names the device and its context" grep -q "$KC holds a kmscrypt volume bound to context" "$T/err"
        check "refused: audited" sh -c "tail -n 1 '$LOG' | grep -q '\"operation\":\"Attach\".*\"detail\":\"hotplug\"'"
        run "$HOTPLUG" 0 "attach of a device that is not a kmscrypt volume" attach "$(devno "$ZERO")"
        run "$HOTPLUG" 1 "volume the agent does not know" volume no-such-volume
        check "unknown volume: names it" grep -q "attaching volume no-such-volume failed" "$T/err"
        statuses "$HOTPLUG"
else
        echo "# not root or no loop devices: hotplug statuses 0, 1 and 4 not exercised"
fi

finish
