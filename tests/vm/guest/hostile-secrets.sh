# SPDX-License-Identifier: LGPL-2.1-or-later
# No secret left behind (issue #8): after the agent attaches a volume, and
# after a rewrap (and a reencrypt, when kmscrypt has one), the data key is in
# no readable mapping of kmscryptd's memory, in no log or audit record, in no
# kmscrypt process's argv or environment, in no key /proc/keys still lists,
# and no kmscrypt key seen in /proc/keys during the commands can be read
# back with keyctl (the agent's keys live in a keyring only its loading
# thread possesses, so the shell mostly sees none: the key the table names is
# also looked up by name, and must not be found).
# The key is learned from the recovery keyslot with stock cryptsetup
# (luksDump --dump-volume-key) and looked for raw, in hex (both cases) and in
# base64.  The memory is read in place through /proc/PID/mem by
# tests/hostile/kc-memscan (no gdb in the initramfs, and no core file written
# that would be one more copy): root with CAP_SYS_PTRACE reads the agent
# although it is not dumpable (PR_SET_DUMPABLE 0).  kc-memscan self-test
# first proves it finds every form in a process that holds them.
# kcvm-programs: kmscrypt kmscryptd tests/hostile/kc-memscan tests/bench/agent-vmlib
. /kc/lib.sh
. /kc/bin/agent-vmlib

kmscrypt -q key create --alias alias/sx || die "kmscrypt key create failed"
printf 'recovery words' >recovery
kcvm_loop 20
dev=$KCVM_LOOP
kmscrypt -q format "$dev" --key alias/sx --context db-id=kcvm,volume-id=sx --recovery-passphrase-file recovery \
        --pbkdf pbkdf2 --pbkdf-force-iterations 1000 || die "format failed"
defer "dmsetup remove sx >/dev/null 2>&1; kcvm_mknodes"

# volume_key: the data key in hex, from stock cryptsetup and the recovery passphrase (kept in shell variables only).
volume_key() {
        cryptsetup luksDump --dump-volume-key --batch-mode --key-file recovery "$dev" 2>/dev/null |
                sed -n '/^MK dump:/,$p' | sed 's/^MK dump://' | tr -d ' \t\n'
}
KEY=$(volume_key)
[ "${#KEY}" = 128 ] || die "no 512-bit volume key from luksDump --dump-volume-key (${#KEY} hex digits)"
KEYS=$KEY

printf '%s' "$KEY" | kc-memscan self-test >selftest || die "kc-memscan self-test failed: $(cat selftest)"
cat selftest

# kmscrypt processes' argv and environment, sampled while a command runs.
: >procs
: >procs.seen
sample_procs() {
        for p in /proc/[0-9]*; do
                case $(cat "$p/comm" 2>/dev/null) in
                kmscrypt*)
                        cat "$p/cmdline" "$p/environ" >>procs 2>/dev/null || true
                        echo "${p#/proc/}" >>procs.seen ;;
                esac
        done
}
# sampled CMD...: run CMD, and until it ends keep copying its argv and
# environ (once it is kmscrypt) and every kmscrypt key /proc/keys shows us.
: >keys.seen
sampled() {
        "$@" >out 2>err &
        _pid=$!
        while kill -0 "$_pid" 2>/dev/null; do
                if [ "$(cat "/proc/$_pid/comm" 2>/dev/null)" = "${1##*/}" ] &&
                        cat "/proc/$_pid/cmdline" "/proc/$_pid/environ" >>procs 2>/dev/null; then
                        echo "$_pid" >>procs.seen
                fi
                grep kmscrypt: /proc/keys >>keys.seen 2>/dev/null || true
        done
        wait "$_pid" || die "$* failed: $(cat err)"
}

# A positive control for every "no kmscrypt key in /proc/keys" check of this
# tier: while one exists (an attach stopped right after adding its key),
# this shell does see it there, and cannot read it.
KC_FAULT_STOP=attach:after-key-add kmscrypt attach "$dev" --name sxctl >out 2>err &
ctl=$!
i=0
until [ "$(sed 's/.*) \(.\).*/\1/' "/proc/$ctl/stat" 2>/dev/null)" = T ]; do
        i=$((i + 1))
        [ "$i" -lt 300 ] || die "the attach never stopped after adding its key: $(cat err)"
        sleep 0.1
done
serial=$(awk '$9 ~ /^kmscrypt:/ { print $1; exit }' /proc/keys)
[ -n "$serial" ] || die "/proc/keys does not list the key of the stopped attach: every kcvm_no_key would pass vacuously"
! keyctl read "0x$serial" >/dev/null 2>&1 || die "keyctl read of the stopped attach's key succeeded"
kill -CONT "$ctl"
wait "$ctl" || die "the attach failed once continued: $(cat err)"
kmscrypt -q detach sxctl || die "detach sxctl failed"
kcvm_no_key kmscrypt:
echo "positive control: /proc/keys listed the attach's key $serial while it existed"

printf 'sx %s db-id=kcvm,volume-id=sx\n' "$dev" >"$AGENT_VOLUMES"
agent_start
set -- $(agent_wait_ready 60)
expect_eq "volumes attached when ready" "$1 of $2" "1 of 1"
kcvm_mknodes
sample_procs

# Detached and attached again through the agent, then rewrapped under a new CMK version.
sampled kmscrypt detach sx
kcvm_mknodes
sampled kmscrypt attach sx
kcvm_mknodes
kmscrypt -q key rotate alias/sx || die "key rotate failed"
sampled kmscrypt rewrap "$dev"
grep -q "version 2" out || grep -q '"key_version": *2' out ||
        kmscrypt dump "$dev" | grep -q "(version 2)" || die "rewrap did not move the token to version 2: $(cat out)"

if kmscrypt reencrypt --help >/dev/null 2>&1; then
        sampled kmscrypt reencrypt "$dev" --recovery-passphrase-file recovery --pbkdf pbkdf2 --pbkdf-force-iterations 1000
        NEW=$(volume_key)
        [ "${#NEW}" = 128 ] && [ "$NEW" != "$KEY" ] || die "reencrypt did not replace the data key"
        KEYS="$KEY $NEW"
        echo "reencrypted: the old and the new key are looked for"
else
        echo "no 'kmscrypt reencrypt' in this build: reencryption not covered"
fi
[ -b /dev/mapper/sx ] || die "/dev/mapper/sx is gone"
agent_alive || die "kmscryptd died"

# ---- the looking ----
kcvm_no_key kmscrypt:
n_seen=$(sort -u keys.seen | wc -l)
for serial in $(awk '{ print $1 }' keys.seen | sort -u); do
        ! keyctl read "0x$serial" >/dev/null 2>&1 || die "keyctl read of kmscrypt key $serial succeeded"
        ! keyctl pipe "0x$serial" >/dev/null 2>&1 || die "keyctl pipe of kmscrypt key $serial succeeded"
done
echo "$n_seen kmscrypt keys caught in /proc/keys during the commands, none readable, none left"
# /proc/keys lists only keys this shell may view, and the agent loads each key
# into a keyring only its loading thread possesses: so also by name, the one
# the live table references, in every keyring this shell can search.
desc=$(dmsetup table sx | awk '{ print $5 }')
case $desc in :64:logon:kmscrypt:*) ;; *) die "the table of sx references no kmscrypt logon key: $desc" ;; esac
desc=${desc#:64:logon:}
for ring in @s @u @us @p @t; do
        ! keyctl search "$ring" logon "$desc" >/dev/null 2>&1 || die "key $desc found in $ring"
done
echo "the key the table references ($desc) is in no keyring this shell can search"
sample_procs

logs=$(ls "$KCVM_DIR"/agent-*.log "$KMSCRYPT_AUDIT_LOG" procs out err)
for k in $KEYS; do
        printf '%s' "$k" | kc-memscan pid "$AGENT_PID" >scan || die "key found in kmscryptd's memory: $(cat scan)"
        bytes=$(sed -n 's/^\([0-9]*\) bytes scanned.*/\1/p' scan)
        [ "${bytes:-0}" -gt 1048576 ] || die "only ${bytes:-0} bytes of kmscryptd's memory could be read"
        echo "kmscryptd (pid $AGENT_PID): $(cat scan)"
        # shellcheck disable=SC2086
        printf '%s' "$k" | kc-memscan file $logs >scan || die "key found in a log or argv: $(cat scan)"
        echo "logs, audit log, argv and environ of $(sort -u procs.seen | wc -l) kmscrypt processes: $(cat scan)"
done
agent_stop
kmscrypt -q detach sx || die "detach failed"
kcvm_mknodes
