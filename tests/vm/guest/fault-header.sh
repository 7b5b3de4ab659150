# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Faults on LUKS2 header writes during a token update (kmscrypt rewrap,
# issue #8).  The volume sits on a mapping "kchdr" over a loop device
# whose table is swapped under the header area, at the block layer:
#   - every header write fails with EIO (dm-flakey error_writes): rewrap
#     fails with one line, the header bytes stay as they were;
#   - a power cut between the two header copies, emulated at the block
#     layer: dm-flakey drop_writes silently loses the writes to one copy
#     (the secondary: the cut after the primary was written; the primary:
#     the same with the writes reordered), as a disk that lost power would;
#   - the secondary copy's area is a dm error target (reads fail too).
# After each, with the table whole again, the copies' sequence ids show
# what reached the disk, and the volume attaches with the old token or the
# new one, its data checksums as written, the audit chain verifies.
# kcvm-programs: kmscrypt
# kcvm-modules: dm-flakey
. /kc/lib.sh

kcvm_kmscrypt_env
VOL=vol-hdr
kmscrypt -q key create --alias alias/a || die "key create a"
kmscrypt -q key create --alias alias/b || die "key create b"
kcvm_loop 24
raw=$KCVM_LOOP
sectors=$(blockdev --getsz "$raw")
LINEAR="0 $sectors linear $raw 0"
dmsetup create kchdr --table "$LINEAR" || die "dmsetup create kchdr"
defer "dmsetup remove --force $VOL >/dev/null 2>&1; dmsetup remove --force kchdr >/dev/null 2>&1; kcvm_mknodes"
kcvm_mknodes
dev=/dev/mapper/kchdr
kmscrypt -q format "$dev" --key alias/a --context db-id=db-hdr,volume-id=$VOL || die "format"
meta=$(kmscrypt --json dump "$dev" | sed -n 's/.*"MetadataSize": \([0-9]*\).*/\1/p')
m=$((meta / 512))       # sectors per header copy: primary at 0, secondary at $m
key_a=$(kmscrypt --json dump "$dev" | sed -n 's/.*"KeyId": "\(.*\)".*/\1/p')

kcvm_seed "$dev" "$VOL"

# table TABLE-LINES: swap kchdr's table (suspend, reload, resume), then drop its buffers.
table() {
        dmsetup suspend kchdr && printf '%s\n' "$1" | dmsetup reload kchdr && dmsetup resume kchdr ||
                die "cannot swap the table of kchdr to: $1"
        blockdev --flushbufs "$dev"
        kcvm_drop_caches
}

# seqid COPY: the sequence id of header copy 0 (primary) or 1, read from the loop device.
seqid() {
        dd if="$raw" bs=512 skip=$(($1 * m)) count=1 2>/dev/null | od -An -tx1 -j16 -N8 | tr -d ' \n'
}

token_key() { kmscrypt --json dump "$dev" | sed -n 's/.*"KeyId": "\(.*\)".*/\1/p'; }

# attaches_as_before WHAT OLD NEW: the volume attaches, with key OLD or NEW in its token, data intact.
attaches_as_before() {
        k=$(token_key)
        [ "$k" = "$2" ] || [ "$k" = "$3" ] || die "$1: the token has key '$k', neither the old $2 nor the new $3"
        kmscrypt -q attach "$dev" || die "$1: attach failed"
        kcvm_mknodes
        kcvm_check_seed "$1" "$VOL"
        kmscrypt -q detach "$VOL" || die "$1: detach failed"
        kcvm_mknodes
        kmscrypt audit verify >/dev/null || die "$1: audit chain does not verify"
        if [ "$k" = "$2" ]; then echo "$1: attaches with the old token"; else echo "$1: attaches with the new token"; fi
}

other() { if [ "$(token_key)" = "$key_a" ]; then echo alias/b; else echo alias/a; fi; }
key_of() { kmscrypt --json key describe "$1" | sed -n 's/.*"KeyId": "\([^"]*\)".*/\1/p' | head -n1; }

# ---- EIO on every header write ----
old=$(token_key)
to=$(other)
before=$(kcvm_head_sum "$raw" 64)
table "0 $((2 * m)) flakey $raw 0 0 3600 1 error_writes
$((2 * m)) $((sectors - 2 * m)) linear $raw $((2 * m))"
rc=0
kmscrypt rewrap "$dev" --key "$to" >out 2>err || rc=$?
table "$LINEAR"
[ "$rc" != 0 ] || die "rewrap succeeded though every header write failed"
expect_eq "lines on stderr of the failed rewrap" "$(wc -l <err)" 1
echo "rewrap with failing header writes: exit $rc: $(cat err)"
expect_eq "header bytes after the failed rewrap" "$(kcvm_head_sum "$raw" 64)" "$before"
attaches_as_before "header writes failing with EIO" "$old" "$old"

# ---- power cut between the copies: the secondary's writes lost ----
old=$(token_key)
to=$(other)
new=$(key_of "$to")
s0=$(seqid 0) s1=$(seqid 1)
table "0 $m linear $raw 0
$m $m flakey $raw $m 0 3600 1 drop_writes
$((2 * m)) $((sectors - 2 * m)) linear $raw $((2 * m))"
rc=0
kmscrypt rewrap "$dev" --key "$to" >out 2>err || rc=$?
table "$LINEAR"
echo "rewrap losing the secondary copy's writes: exit $rc $(cat err)"
[ "$(seqid 0)" != "$s0" ] || die "the primary copy was not written"
expect_eq "sequence id of the secondary copy, whose writes were lost" "$(seqid 1)" "$s1"
attaches_as_before "power cut after the primary copy" "$old" "$new"

# ---- the same, the primary's writes lost (writes reordered) ----
old=$(token_key)
to=$(other)
new=$(key_of "$to")
s0=$(seqid 0) s1=$(seqid 1)
table "0 $m flakey $raw 0 0 3600 1 drop_writes
$m $((sectors - m)) linear $raw $m"
rc=0
kmscrypt rewrap "$dev" --key "$to" >out 2>err || rc=$?
table "$LINEAR"
echo "rewrap losing the primary copy's writes: exit $rc $(cat err)"
expect_eq "sequence id of the primary copy, whose writes were lost" "$(seqid 0)" "$s0"
attaches_as_before "power cut before the primary copy" "$old" "$new"

# ---- the secondary copy's area is a dm error target ----
old=$(token_key)
to=$(other)
new=$(key_of "$to")
table "0 $m linear $raw 0
$m $m error
$((2 * m)) $((sectors - 2 * m)) linear $raw $((2 * m))"
rc=0
kmscrypt rewrap "$dev" --key "$to" >out 2>err || rc=$?
table "$LINEAR"
echo "rewrap with the secondary copy on an error target: exit $rc $(cat err)"
[ "$rc" = 0 ] || expect_eq "lines on stderr of the failed rewrap" "$(wc -l <err)" 1
attaches_as_before "secondary copy unreadable and unwritable" "$old" "$new"
