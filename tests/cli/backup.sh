#!/bin/sh
# kmscrypt backup copies an encrypted volume, never plaintext: a DEVICE
# without a LUKS2 header (a file system, random bytes, the data device of a
# volume whose header is elsewhere) is refused with status 4 before anything
# is written, and a detached header is copied with its data, as a pair of
# files, only when it can be that device's header (kmscrypt(8), backup).
# On image files: nothing here needs device-mapper.
. "$(dirname "$0")/lib.sh"

command -v cryptsetup >/dev/null || { echo "SKIP: cryptsetup is needed to make a LUKS2 image"; exit 77; }

# nocopy STATUS NAME WANT ARGS...: refused with STATUS and one line saying WANT; no copy made.
nocopy() {
        want=$1 name=$2 line=$3
        shift 3
        rm -f "$T/copy" "$T/copy.header"
        expect "$want" "$name" "$@"
        check "$name: one line" one_error_line
        check "$name: says '$line'" grep -qF -- "$line" "$T/err"
        check "$name: nothing on stdout" test ! -s "$T/out"
        check "$name: no copy, no header copy" test ! -e "$T/copy" -a ! -e "$T/copy.header"
}

NOT_ENCRYPTED="a copy of it would not be encrypted"

# ---- a DEVICE that carries no LUKS2 header ----
truncate -s 8M "$T/fs.img"
FS=
command -v mkfs.ext4 >/dev/null && mkfs.ext4 -q -F "$T/fs.img" >/dev/null 2>&1 && FS=$T/fs.img
if [ -n "$FS" ]; then
        nocopy 4 "backup of a file system" "$T/fs.img is not a LUKS2 device (no valid LUKS header): $NOT_ENCRYPTED" \
                backup "$T/fs.img" "$T/copy"
        check "backup of a file system: hints at --header" grep -qF -- "give --header" "$T/err"
else
        echo "ok - backup of a file system: skipped, no mkfs.ext4 # SKIP"
fi
head -c 4194304 /dev/urandom > "$T/random.img"
nocopy 4 "backup of random bytes" "$T/random.img is not a LUKS2 device (no valid LUKS header): $NOT_ENCRYPTED" \
        backup "$T/random.img" "$T/copy"
expect 4 "backup --json of random bytes" --json backup "$T/random.img" "$T/copy"
check "backup --json of random bytes: no JSON, one line" sh -c "[ ! -s '$T/out' ] && [ \$(wc -l < '$T/err') = 1 ]"

# ---- a LUKS2 image made by cryptsetup: an encrypted copy, as before ----
printf 'passphrase' > "$T/pass"
truncate -s 24M "$T/luks.img"
cryptsetup luksFormat --type luks2 --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
        --key-file "$T/pass" "$T/luks.img"
rm -f "$T/copy"
expect 0 "backup of a LUKS2 image" backup "$T/luks.img" "$T/copy"
check "backup of a LUKS2 image: says so" grep -qxF "backed up $T/luks.img to $T/copy (encrypted, block for block)" "$T/out"
check "backup of a LUKS2 image: a byte for byte copy" cmp -s "$T/luks.img" "$T/copy"
check "backup of a LUKS2 image: no header file" test ! -e "$T/copy.header"

# ---- a LUKS1 image: encrypted, but no kmscrypt volume (LUKS2 only), status 5 as a LUKS1 --header ----
truncate -s 8M "$T/luks1.img"
if cryptsetup luksFormat --type luks1 --batch-mode --pbkdf-force-iterations 1000 \
        --key-file "$T/pass" "$T/luks1.img" >/dev/null 2>&1; then
        nocopy 5 "backup of a LUKS1 image" "$T/luks1.img is LUKS1; kmscrypt needs LUKS2" backup "$T/luks1.img" "$T/copy"
        check "backup of a LUKS1 image: not said to be unencrypted" sh -c "! grep -qF 'would not be encrypted' '$T/err'"
else
        echo "ok - backup of a LUKS1 image: skipped, cryptsetup cannot make one # SKIP"
fi

# ---- a volume with a detached header ----
# The header apart, the data device shows ciphertext only: refused without its header.
truncate -s 16M "$T/data.img"
cryptsetup luksFormat --type luks2 --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
        --key-file "$T/pass" --header "$T/hdr.img" "$T/data.img"
nocopy 4 "backup of a detached-header data device, no --header" "$T/data.img is not a LUKS2 device" \
        backup "$T/data.img" "$T/copy"
check "... says a copy would not be encrypted" grep -qF "$NOT_ENCRYPTED" "$T/err"
rm -f "$T/copy" "$T/copy.header"
expect 0 "backup --header" backup "$T/data.img" "$T/copy" --header "$T/hdr.img"
check "backup --header: names both copies" grep -qxF \
        "backed up $T/data.img to $T/copy (encrypted, block for block), its header to $T/copy.header" "$T/out"
check "backup --header: the data copied" cmp -s "$T/data.img" "$T/copy"
check "backup --header: the header copied to FILE.header" cmp -s "$T/hdr.img" "$T/copy.header"
check "backup --header: the pair opens with cryptsetup" \
        cryptsetup luksDump --header "$T/copy.header" "$T/copy" >/dev/null 2>&1
rm -f "$T/copy" "$T/copy.header"
expect 0 "backup --json --header" --json backup "$T/data.img" "$T/copy" --header "$T/hdr.img"
json_is 'j["HeaderDestination"]' "$T/copy.header"
# A header there already: refused before the data is copied.
rm -f "$T/copy"
expect 1 "backup --header over an existing FILE.header" backup "$T/data.img" "$T/copy" --header "$T/hdr.img"
check "... one line naming it" sh -c "[ \$(wc -l < '$T/err') = 1 ] && grep -qF '$T/copy.header' '$T/err'"
check "... no data copied" test ! -e "$T/copy"
expect 0 "backup --header --force over it" backup "$T/data.img" "$T/copy" --header "$T/hdr.img" --force

# A header that cannot be the device's: one whose data lies beyond the device's end, a file system under it.
nocopy 4 "backup --header of another, larger volume" "$T/luks.img is not the header of $T/random.img" \
        backup "$T/random.img" "$T/copy" --header "$T/luks.img"
if [ -n "$FS" ]; then
        nocopy 4 "backup --header over a file system" "$FS carries a ext4 signature (filesystem): not the ciphertext" \
                backup "$FS" "$T/copy" --header "$T/hdr.img"
fi
nocopy 5 "backup --header that is no LUKS2 header" "$T/random.img is not a LUKS2 device" \
        backup "$T/data.img" "$T/copy" --header "$T/random.img"
nocopy 3 "backup --header missing" "header $T/nohdr: No such file or directory" \
        backup "$T/data.img" "$T/copy" --header "$T/nohdr"
nocopy 2 "backup --header to a device" "/dev/null is not a file" backup "$T/data.img" /dev/null --header "$T/hdr.img"

# ---- restore --header: the pair back, FILE.header to HDR ----
expect 0 "backup --header again" backup "$T/data.img" "$T/copy" --header "$T/hdr.img"
rm -f "$T/back.img" "$T/back.hdr"
expect 0 "restore --header" restore "$T/copy" "$T/back.img" --header "$T/back.hdr"
check "restore --header: data restored" cmp -s "$T/data.img" "$T/back.img"
check "restore --header: header restored" cmp -s "$T/hdr.img" "$T/back.hdr"
# The header cannot be written: the data restore wrote to a new file goes again, as backup's does.
rm -f "$T/back.img"
expect 3 "restore --header, HDR cannot be written" restore "$T/copy" "$T/back.img" --header "$T/nodir/back.hdr"
check "... one line saying the data is removed" sh -c "[ \$(wc -l < '$T/err') = 1 ] &&
        grep -qF 'the data written to $T/back.img is removed again' '$T/err'"
check "... no data left" test ! -e "$T/back.img"
# Over a file that was there (a device alike): the data stays, and the line says so.
: > "$T/back.img"
expect 3 "restore --header --force over a file, HDR cannot be written" \
        restore "$T/copy" "$T/back.img" --header "$T/nodir/back.hdr" --force
check "... says the data was written, its header not" \
        grep -qF "the data was written to $T/back.img, its header was not" "$T/err"
# An HDR that is there is refused without --force before the data is written, not after.
rm -f "$T/back.img"
: > "$T/back.hdr"
expect 1 "restore --header over an existing HDR" restore "$T/copy" "$T/back.img" --header "$T/back.hdr"
check "... one line naming it" sh -c "[ \$(wc -l < '$T/err') = 1 ] && grep -qF 'cannot create $T/back.hdr' '$T/err'"
check "... no data written" test ! -e "$T/back.img"
# Not written and taken back: a device in place of back.img would have kept it.
check "... refused before the data was written" sh -c "! grep -qF 'data written' '$T/err'"
check "... HDR untouched" test ! -s "$T/back.hdr"
rm -f "$T/back.img" "$T/back.hdr"
expect 3 "restore --header of a backup without FILE.header" restore "$T/luks.img" "$T/back.img" --header "$T/back.hdr"
check "... one line naming it" sh -c "[ \$(wc -l < '$T/err') = 1 ] && grep -qF '$T/luks.img.header' '$T/err'"
check "... nothing written" test ! -e "$T/back.img" -a ! -e "$T/back.hdr"

finish
