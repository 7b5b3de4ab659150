# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Sourced by the agent's guest tests (tests/vm/guest/agent-*.sh) after
# /kc/lib.sh, as ". /kc/bin/agent-vmlib" (make check builds it from
# tests/bench/agent-vmlib.sh; list tests/bench/agent-vmlib in the test's
# kcvm-programs).  Everything lives in the test's folder: keystore, audit
# log, volumes file, agent socket and log; the CLI finds them through the
# environment.  Clean-ups are deferred in the order that makes them work:
# agent stopped, then mappings removed, then loop devices detached.

export KMSCRYPT_CONFIG="$KCVM_DIR/kmscrypt.conf"
export KMSCRYPT_KEYSTORE="$KCVM_DIR/kms/keystore"
export KMSCRYPT_AUDIT_LOG="$KCVM_DIR/audit.log"
export KMSCRYPT_AGENT_SOCKET="$KCVM_DIR/run/agent.sock"
AGENT_VOLUMES=$KCVM_DIR/volumes
AGENT_RUNS=0
AGENT_LOG=$KCVM_DIR/agent-0.log   # the log of the latest start
AGENT_UUIDS=$KCVM_DIR/uuids
AGENT_PID=
: >"$KMSCRYPT_CONFIG"
: >"$AGENT_VOLUMES"
: >"$AGENT_UUIDS"
mkdir -p "$KCVM_DIR/kms"

# uptime in hundredths of a second (for timings inside one boot).
agent_cs() {
        read -r up _ </proc/uptime
        echo "${up%.*}${up#*.}"
}

# agent_key NAME: a CMK with alias alias/NAME.
agent_key() {
        kmscrypt -q key create --alias "alias/$1" || die "cannot create CMK alias/$1"
}

# agent_volumes PREFIX N MIB KEY [OPTIONS] [MKVOLS-FLAGS]: N volumes
# PREFIX1 .. PREFIXN on loop devices over sparse MIB MiB files in the test
# folder, made kmscrypt volumes under CMK alias/KEY with context
# db-id=kcvm,volume-id=NAME by agent-mkvols (which makes the files and loop
# devices too), each a line of the volumes file with OPTIONS.
# "NAME UUID DEVICE" lines go to $AGENT_UUIDS.
agent_volumes() {
        _p=$1 _n=$2 _mib=$3 _key=$4 _opts=${5:-} _flags=${6:-}
        _names= _i=1
        while [ "$_i" -le "$_n" ]; do
                _names="$_names $_p$_i"
                _i=$((_i + 1))
        done
        # shellcheck disable=SC2086
        agent-mkvols -l "$_mib" $_flags "alias/$_key" kcvm $_names >"$KCVM_DIR/made" ||
                die "agent-mkvols could not make the $_p volumes"
        cat "$KCVM_DIR/made" >>"$AGENT_UUIDS"
        _devs=$(awk '{ print $3 }' "$KCVM_DIR/made" | tr '\n' ' ')
        defer "losetup -d $_devs; rm -f $KCVM_DIR/$_p[0-9]*.img"
        defer "agent_remove_mappings $_p"
        awk -v o="$_opts" '{ print $1, $3, "db-id=kcvm,volume-id=" $1, o }' "$KCVM_DIR/made" >>"$AGENT_VOLUMES"
}

# agent_remove_mappings PREFIX: remove every mapping whose name starts so
# (forced: a suspended one, or one without a table, goes too), in one call.
agent_remove_mappings() {
        _m=$(dmsetup ls 2>/dev/null | awk -v p="$1" 'index($1, p) == 1 { print $1 }' | tr '\n' ' ')
        [ -z "$_m" ] || dmsetup remove --force $_m >/dev/null 2>&1
        kcvm_mknodes
}

# agent_device NAME: the loop device of configured volume NAME.
agent_device() {
        awk -v n="$1" '$1 == n { print $2 }' "$AGENT_VOLUMES"
}

# agent_uuid NAME: its LUKS UUID.
agent_uuid() {
        awk -v n="$1" '$1 == n { print $2 }' "$AGENT_UUIDS"
}

# agent_start [KMSCRYPTD-OPTIONS]: kmscryptd in the background on the
# test's socket and volumes file, its log in $AGENT_LOG (a file per start);
# stopped on exit, and a failing test shows the end of its log.
agent_start() {
        if [ "$AGENT_RUNS" = 0 ]; then
                # $rc is the test's exit status when the deferred commands run.
                defer '[ "$rc" = 0 ] || [ "$rc" = 77 ] || tail -n 40 "$AGENT_LOG" | sed "s/^/agent.log: /" >&2'
                defer agent_stop
        fi
        AGENT_RUNS=$((AGENT_RUNS + 1))
        AGENT_LOG=$KCVM_DIR/agent-$AGENT_RUNS.log
        echo "kmscryptd $*" >"$AGENT_LOG"
        kmscryptd --socket "$KMSCRYPT_AGENT_SOCKET" --volumes "$AGENT_VOLUMES" --group '' --stderr "$@" \
                </dev/null >>"$AGENT_LOG" 2>&1 &
        AGENT_PID=$!
}

# Whether the agent runs: kill -0 succeeds on a zombie too, so look at its state.
agent_alive() {
        [ -n "$AGENT_PID" ] && [ -r "/proc/$AGENT_PID/stat" ] &&
                [ "$(sed 's/.*) \(.\).*/\1/' "/proc/$AGENT_PID/stat")" != Z ]
}

# agent_stop: SIGTERM, and wait for the agent to exit (it must within 10 s).
agent_stop() {
        [ -n "$AGENT_PID" ] || return 0
        kill -TERM "$AGENT_PID" 2>/dev/null
        _i=0
        while agent_alive; do
                _i=$((_i + 1))
                [ "$_i" -lt 100 ] || { kill -KILL "$AGENT_PID"; die "kmscryptd did not stop within 10 s of SIGTERM"; }
                sleep 0.1
        done
        wait "$AGENT_PID" 2>/dev/null
        AGENT_STATUS=$?
        AGENT_PID=
}

# agent_wait_log PATTERN SECONDS [COUNT]: wait until the log of the
# latest start holds COUNT (default 1) lines matching the extended regular
# expression PATTERN; fail after SECONDS, or if the agent exits meanwhile.
# Polls every 0.2 s with one grep: the agent needs the CPUs more.
agent_wait_log() {
        _end=$(($(agent_cs) + $2 * 100))
        while [ "$(grep -Ec -- "$1" "$AGENT_LOG")" -lt "${3:-1}" ]; do
                if [ -n "$AGENT_PID" ] && ! agent_alive; then
                        die "kmscryptd exited while waiting for '$1' in its log"
                fi
                [ "$(agent_cs)" -lt "$_end" ] || die "no '$1' in the kmscryptd log within $2 s"
                sleep 0.2
        done
}

# agent_wait_ready SECONDS: the agent said it is ready; prints
# "ATTACHED CONFIGURED SECONDS" (seconds from its exec to ready, its own count).
agent_wait_ready() {
        agent_wait_log 'ready: [0-9]+ of [0-9]+ volumes attached' "$1"
        sed -n 's/.*ready: \([0-9]*\) of \([0-9]*\) volumes attached, \([0-9.-]*\) s after start.*/\1 \2 \3/p' "$AGENT_LOG" |
                tail -n 1
}

# agent_check_mappings PREFIX N: mappings PREFIX1 .. PREFIXN exist, are
# active, and each live dm-crypt table references that volume's own logon
# key and shows no key (one dmsetup call each for tables and states).
agent_check_mappings() {
        dmsetup table --showkeys >"$KCVM_DIR/tables" || die "dmsetup table failed"
        dmsetup info -c --noheadings -o name,attr >"$KCVM_DIR/states" || die "dmsetup info failed"
        _bad=$(awk -v p="$1" -v n="$2" '
                FILENAME ~ /uuids$/ { uuid[$1] = $2; next }
                FILENAME ~ /states$/ { split($0, f, ":"); state[f[1]] = f[2]; next }
                { sub(/:$/, "", $1); if ($4 == "crypt") key[$1] = $6 }
                END {
                        for (i = 1; i <= n; i++) {
                                m = p i
                                if (!(m in key)) { print m ": no dm-crypt table"; exit }
                                if (key[m] != ":64:logon:kmscrypt:" uuid[m]) { print m ": key field " key[m]; exit }
                                if (state[m] !~ /^L-/) { print m ": state " state[m] " (not live and active)"; exit }
                        }
                }' "$AGENT_UUIDS" "$KCVM_DIR/states" "$KCVM_DIR/tables")
        [ -z "$_bad" ] || die "$_bad"
        ! kcvm_has_hex_key "$(cat "$KCVM_DIR/tables")" || die "'dmsetup table --showkeys' shows a hex key"
}
