# SPDX-License-Identifier: LGPL-2.1-or-later
#
# kill -9 of kmscrypt in the middle of an online reencryption of a mounted
# volume with a writer running: the volume stays in use on libcryptsetup's
# device stack and rewrap refuses it, naming --resume.  `kmscrypt reencrypt
# --resume` then carries it on with the file system still mounted and
# written, taking the stack over; killed again, `kmscrypt attach` of the
# still attached, still mounted volume does the same and finishes it.  No
# manual step: no unmount, no dmsetup (the first kill between chunks is
# made to leave the overlay suspended, as a kill inside a table swap does;
# the second the hotzone, as a kill between a chunk's header update and
# the hotzone's resume does).  Afterwards the
# mapping is on a kmscrypt logon key with no helper device and no keyslot
# left, the files
# (those synced before, and those the writer synced during) checksum as
# written, read back from the disk, and the plaintext pattern written
# through the mapping is nowhere on the backing file.
# Then a second reencryption is killed the same way, and kmscryptd,
# started with the volume configured, finishes it online as it attaches.
# kcvm-programs: kmscrypt kmscryptd tests/bench/agent-vmlib
. /kc/lib.sh
. /kc/bin/agent-vmlib
VOL=vol-kill
MNT=$KCVM_DIR/mnt
mkdir -p "$MNT"

kcvm_loop 40
defer "umount $MNT 2>/dev/null; kmscrypt detach $VOL >/dev/null 2>&1; kcvm_mknodes"
kmscrypt key create --alias alias/k >/dev/null || die "key create"
kmscrypt format "$KCVM_LOOP" --key alias/k --context db-id=db-k,volume-id=$VOL >/dev/null || die "format"
kcvm_attach_mount "$KCVM_LOOP" "$VOL" "$MNT"
kcvm_pattern "$MNT/plain" 2097152
for i in 1 2 3 4 5; do head -c 2097152 /dev/urandom >"$MNT/f$i"; done
sync
(cd "$MNT" && md5sum plain f* >"$KCVM_DIR/sums")

# The writer: a file, synced, then its checksum in ./written; 40 of them at most (5 MiB).
: >"$KCVM_DIR/written"
(
        i=0
        while [ ! -e "$KCVM_DIR/stop" ] && [ $i -lt 40 ]; do
                # Paused (between two files, all synced) while a block is compared before and after.
                while [ -e "$KCVM_DIR/pause" ]; do touch "$KCVM_DIR/paused"; sleep 0.1; done
                rm -f "$KCVM_DIR/paused"
                i=$((i + 1))
                head -c 131072 /dev/urandom >"$KCVM_DIR/w"
                cp "$KCVM_DIR/w" "$MNT/w$i" && sync || { echo "writer: w$i failed" >&2; exit 1; }
                echo "$(md5sum <"$KCVM_DIR/w" | cut -d' ' -f1)  w$i" >>"$KCVM_DIR/written"
                sleep 0.2
        done
) &
writer=$!
defer "touch $KCVM_DIR/stop; wait $writer 2>/dev/null"

# kill_mid_run WHAT COMMAND...: COMMAND in the background, killed with
# SIGKILL once the header shows it got further than the last run, between
# two chunks (a kill inside one: see reencrypt(8), "A RUN THAT WAS KILLED";
# in the few milliseconds between a chunk's device switch and its header
# update it fails the held I/O, which would abort the mounted journal).
# The run is stopped while it is looked at, so the state seen is the state
# killed in: without that, the next chunk could start between look and kill.
kill_mid_run() {
        _what=$1
        shift
        "$@" >"$KCVM_DIR/out" 2>&1 &
        _pid=$!
        _n=0
        until between_chunks "$_pid"; do
                _n=$((_n + 1))
                [ $_n -lt 400 ] && kill -0 "$_pid" 2>/dev/null ||
                        die "$_what: no progress past $done_before bytes: $(cat "$KCVM_DIR/out")"
                sleep 0.25
        done
        kill -9 "$_pid" 2>/dev/null || die "$_what: ended before the kill: $(cat "$KCVM_DIR/out")"
        wait "$_pid" 2>/dev/null || true
        _at=$(segment0_length)
        echo "$_what: killed between chunks, $((_at >> 20)) MiB done"
        dmsetup ls | grep -q -- "$VOL-overlay" || die "$_what: no device stack left by the kill"
        done_before=$_at
}

# settled NAME: mapping NAME is live, not suspended and has no inactive
# table waiting (dmsetup's attr "L--"): no table swap of it is under way.
settled() {
        case $(dmsetup info -c --noheadings -o attr "$1" 2>/dev/null) in
        L--*) return 0 ;;
        *) return 1 ;;
        esac
}

# between_chunks PID: PID, stopped, is further than the last run and
# between two chunks: the hotzone device holds no I/O, and the overlay is
# not in one of a chunk's table swaps (a kill there leaves it suspended
# under the writer, which suspend_overlay does on purpose, once); left
# stopped if so.
between_chunks() {
        kill -STOP "$1" 2>/dev/null || return 1
        settled "$VOL-hotzone-forward" && settled "$VOL-overlay" &&
                [ "$(segment0_length)" -gt "$done_before" ] && return 0
        kill -CONT "$1"
        return 1
}

# segment0_length: bytes under the new key (data segment 0 of the header).
segment0_length() {
        cryptsetup luksDump "$KCVM_LOOP" 2>/dev/null |
                awk '/^  0: crypt/ { s = 1 } s && $1 == "length:" { print ($2 ~ /^[0-9]+$/) ? $2 : 0; exit }'
}
done_before=0

# suspend_overlay: after a kill between chunks, leave the overlay suspended,
# holding the writer's I/O, as a kill between libcryptsetup's suspend of the
# overlay and the table swap that resumes it does (each chunk has two such
# swaps), for the takeover to release.
overlay_suspended=no
suspend_overlay() {
        [ $overlay_suspended = no ] || return 0
        dmsetup suspend --nolockfs --noflush "$VOL-overlay" || die "suspend $VOL-overlay"
        overlay_suspended=yes
        echo "overlay left suspended, as by a kill inside a table swap"
}

# suspend_hotzone: after a kill between chunks, leave the hotzone device
# suspended, holding the I/O to the chunk last done, as a kill between a
# chunk's header update and the resume of its hotzone does (libcryptsetup
# commits the chunk, then resumes the hotzone): the header counts the chunk
# as done, so the take-over must let the held I/O go on.
suspend_hotzone() {
        dmsetup suspend --nolockfs --noflush "$VOL-hotzone-forward" || die "suspend $VOL-hotzone-forward"
        echo "hotzone left suspended, as by a kill between a chunk's header update and its resume"
}

# read_held: a direct read of a block of the chunk the hotzone holds,
# through the mapping, in the background ($held): it waits on the
# suspended hotzone, and must complete once the take-over lets the held I/O
# go on (failing it fails the read).  Its block goes to $KCVM_DIR/held.
read_held() {
        _hot=$(dmsetup info -c --noheadings -o major,minor "$VOL-hotzone-forward")
        held_start=$(dmsetup table "$VOL-overlay" | awk -v d="$_hot" '$3 == "crypt" && $7 == d { print $1; exit }')
        [ -n "$held_start" ] || die "the overlay sends nothing through the hotzone: $(dmsetup table "$VOL-overlay")"
        dd if="/dev/mapper/$VOL" of="$KCVM_DIR/held" bs=4096 count=1 skip=$((held_start / 8)) iflag=direct \
                2>"$KCVM_DIR/held.err" &
        held=$!
        sleep 0.5
        kill -0 "$held" 2>/dev/null || die "the read of the chunk was not held: $(cat "$KCVM_DIR/held.err")"
}

# 24 MiB at 2 MiB/s, 1 MiB a chunk: each run is killed well before its end.
kill_mid_run "reencrypt" kmscrypt reencrypt "$VOL" --rate-limit 2
suspend_overlay
kmscrypt rewrap "$KCVM_LOOP" >"$KCVM_DIR/out" 2>&1 && die "rewrap accepted a volume being reencrypted"
grep -q "reencrypt --resume" "$KCVM_DIR/out" || die "rewrap refusal does not name --resume: $(cat "$KCVM_DIR/out")"

# Resumed online on the stack of the killed run (it gets further), mounted and written; killed again.
kill_mid_run "reencrypt --resume" kmscrypt reencrypt --resume "$VOL" --rate-limit 2
suspend_overlay
# The held block is compared with what it holds after the take-over: nothing else may write it
# meanwhile, so the writer pauses (its files all synced) until then.
touch "$KCVM_DIR/pause"
kcvm_wait_for "[ -e $KCVM_DIR/paused ] || ! kill -0 $writer 2>/dev/null" "the writer did not pause"
sync
suspend_hotzone
read_held
grep -q " $MNT " /proc/mounts || die "the file system is no longer mounted"

# attach of the volume still attached and mounted finishes it.
kmscrypt attach "$KCVM_LOOP" >"$KCVM_DIR/out" 2>"$KCVM_DIR/err" || die "attach after kill: $(tail -n 3 "$KCVM_DIR/err")"
grep -q "finishing it first" "$KCVM_DIR/err" || die "attach did not finish the reencryption: $(cat "$KCVM_DIR/err")"
grep "device stack of the interrupted run" "$KCVM_DIR/err" || die "attach did not take the stack over: $(cat "$KCVM_DIR/err")"
wait "$held" || die "the held read failed: $(cat "$KCVM_DIR/held.err")"
dd if="/dev/mapper/$VOL" bs=4096 count=1 skip=$((held_start / 8)) iflag=direct 2>/dev/null | cmp -s - "$KCVM_DIR/held" ||
        die "the held read returned other data than the block holds"
echo "the read held by the hotzone went on and read the block as it is"
rm -f "$KCVM_DIR/pause"
expect_eq "mappings" "$(kcvm_maps)" "$VOL "

# A second data key replacement, killed; kmscryptd finishes it as it attaches the configured volume.
done_before=0
kill_mid_run "second reencrypt" kmscrypt reencrypt "$VOL" --rate-limit 2
suspend_overlay
echo "$VOL $KCVM_LOOP db-id=db-k,volume-id=$VOL" >"$AGENT_VOLUMES"
agent_start
agent_wait_log "$VOL: reencryption finished" 120
agent_wait_ready 60 >/dev/null
echo "kmscryptd: $(grep -m1 "$VOL: reencryption finished" "$AGENT_LOG")"
agent_stop
grep -q " $MNT " /proc/mounts || die "the file system is no longer mounted after kmscryptd's attach"

touch "$KCVM_DIR/stop"
wait "$writer" || die "the writer failed during the reencryptions"
expect_eq "mappings" "$(kcvm_maps)" "$VOL "
dmsetup table --showkeys "$VOL" | grep -q ":64:logon:kmscrypt:" || die "mapping is not on a kmscrypt logon key"
[ "$(cryptsetup luksDump "$KCVM_LOOP" | grep -c '^  [0-9]*: luks2')" = 0 ] || die "temporary keyslots left"

umount "$MNT"
kcvm_drop_caches
mount -o ro "/dev/mapper/$VOL" "$MNT" || die "mount after the reencryption"
grep -E '^[0-9a-f]{32}  w[0-9]+$' "$KCVM_DIR/written" >"$KCVM_DIR/written.ok" || true
nw=$(wc -l <"$KCVM_DIR/written.ok")
[ "$nw" -gt 0 ] || die "the writer synced no file"
(cd "$MNT" && md5sum -c "$KCVM_DIR/sums" >/dev/null) || die "files synced before the reencryption changed"
(cd "$MNT" && md5sum -c "$KCVM_DIR/written.ok" >/dev/null) || die "files the writer synced during it changed"
echo "the 6 files synced before and the $nw the writer synced during the runs checksum as written"
umount "$MNT"
kcvm_drop_caches
! grep -qF "$KCVM_TAG" "$KCVM_LOOP_FILE" || die "plaintext pattern on the backing file"
