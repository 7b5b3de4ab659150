# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A hard reset of the machine in the middle of a rewrap's LUKS2 header
# write (issue #7), on a persistent disk, checked in a second boot.
#   boot 1: the volume, written and attached, sits on a mapping over the
#           disk that holds each write to the header copies back 1.5 s
#           (dm-delay); `kmscrypt rewrap --key` another CMK; once one copy
#           on the disk has a new sequence id and the other has not, the
#           machine resets (sysrq b), the other copy's writes still held.
#   boot 2: on the bare disk the token names the old CMK or the new one,
#           the volume attaches with it and its data checksums as written,
#           and the audit chain verifies.
# Typically the reset tears the first copy libcryptsetup writes: its binary
# header (new sequence id) is on the disk, its JSON area and checksum are
# not; libcryptsetup rejects that copy, reads the other (the old token) and
# repairs the torn one from it.
# kcvm-programs: kmscrypt
# kcvm-modules: dm-delay
# kcvm-disk: 16M 24M
# kcvm-boots: 2
. /kc/lib.sh

STATE=$KCVM_DIR/state
VOL=vol-rw-reset
kcvm_state "$(kcvm_disk 1)" "$STATE"
DEV=$(kcvm_disk 2)
export KMSCRYPT_KEYSTORE=$STATE/keystore KMSCRYPT_AUDIT_LOG=$STATE/audit.log
defer "kmscrypt detach $VOL >/dev/null 2>&1; dmsetup remove kcdelay 2>/dev/null; kcvm_mknodes"

token_key() { kmscrypt --json dump "$1" | sed -n 's/.*"KeyId": "\(.*\)".*/\1/p'; }
key_of() { kmscrypt --json key describe "$1" | sed -n 's/.*"KeyId": "\([^"]*\)".*/\1/p' | head -n1; }
# seqid COPY: the sequence id of header copy 0 (primary) or 1 on the disk
# itself: the disk's page cache, which writes through a mapping bypass, dropped first.
seqid() {
        blockdev --flushbufs "$DEV"
        dd if="$DEV" bs=512 skip=$(($1 * $(cat "$STATE/m"))) count=1 2>/dev/null |
                od -An -tx1 -j16 -N8 | tr -d ' \n'
}

if [ "$KCVM_BOOT" = 1 ]; then
        kmscrypt -q key create --alias alias/a || die "key create a"
        kmscrypt -q key create --alias alias/b || die "key create b"
        kmscrypt -q format "$DEV" --key alias/a --context db-id=db-rw,volume-id=$VOL || die "format"
        meta=$(kmscrypt --json dump "$DEV" | sed -n 's/.*"MetadataSize": \([0-9]*\).*/\1/p')
        m=$((meta / 512))       # sectors per header copy: primary at 0, secondary at $m
        echo "$m" >"$STATE/m"
        sectors=$(blockdev --getsz "$DEV")
        dmsetup create kcdelay --table "0 $sectors linear $DEV 0" || die "dmsetup create kcdelay"
        kcvm_mknodes
        kcvm_seed /dev/mapper/kcdelay "$VOL"
        echo "$KCVM_SEED_SUM" >"$STATE/seed"
        token_key "$DEV" >"$STATE/old"
        key_of alias/b >"$STATE/new"
        kmscrypt -q attach /dev/mapper/kcdelay --name "$VOL" || die "attach"
        kcvm_mknodes
        sync

        # Each write to the header copies waits 1.5 s from now on (reads and
        # flushes do not): the copies reach the disk one after the other,
        # seconds apart.
        printf '%s\n' "0 $((2 * m)) delay $DEV 0 0 $DEV 0 1500 $DEV 0 0" \
                "$((2 * m)) $((sectors - 2 * m)) linear $DEV $((2 * m))" >"$KCVM_DIR/table"
        dmsetup suspend kcdelay && dmsetup reload kcdelay "$KCVM_DIR/table" && dmsetup resume kcdelay ||
                die "cannot load the delaying table"
        s0=$(seqid 0) s1=$(seqid 1)
        kmscrypt rewrap /dev/mapper/kcdelay --key alias/b >"$KCVM_DIR/out" 2>&1 &
        pid=$!
        # The reset once one copy has the new sequence id and the other not.
        n=0
        while :; do
                a=$(seqid 0) b=$(seqid 1)
                [ "$a" = "$s0" ] && [ "$b" = "$s1" ] || break
                n=$((n + 1))
                [ $n -lt 300 ] && kill -0 "$pid" 2>/dev/null ||
                        die "no header copy was written: $(cat "$KCVM_DIR/out")"
                sleep 0.1
        done
        [ "$a" = "$s0" ] || [ "$b" = "$s1" ] || die "both header copies were written before the reset ($a, $b)"
        kill -0 "$pid" 2>/dev/null || die "the rewrap ended with one header copy written: $(cat "$KCVM_DIR/out")"
        kcvm_reset "rewrap mid header write: primary copy $s0 -> $a, secondary $s1 -> $b"
fi

# ---- boot 2: the bare disk ----
KCVM_SEED_SUM=$(cat "$STATE/seed")
echo "on the disk: primary copy $(seqid 0), secondary $(seqid 1)"
k=$(token_key "$DEV")
if [ "$k" = "$(cat "$STATE/old")" ]; then
        which=old
elif [ "$k" = "$(cat "$STATE/new")" ]; then
        which=new
else
        die "the token names key '$k', neither the old $(cat "$STATE/old") nor the new $(cat "$STATE/new")"
fi
kmscrypt -q attach "$DEV" --name "$VOL" || die "attach with the $which token failed"
kcvm_mknodes
kcvm_check_seed "after the reset" "$VOL"
kmscrypt -q detach "$VOL" || die "detach"
kcvm_mknodes
kmscrypt audit verify >"$KCVM_DIR/out" 2>&1 || die "audit verify after the reset: $(cat "$KCVM_DIR/out")"
echo "the volume attaches with the $which token, its data intact; copies now $(seqid 0) and $(seqid 1)"
