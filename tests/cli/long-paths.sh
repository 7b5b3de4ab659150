#!/bin/sh
# Paths up to PATH_MAX (4095 bytes and a NUL) work wherever kmscrypt takes
# one: a device and a detached header under a deep folder, a backup file
# whose name is near NAME_MAX, a volumes file naming them.  A longer path is
# refused in one line that names its start and says why, with status 2.
# On image files: nothing here needs device-mapper.
. "$(dirname "$0")/lib.sh"

# A folder whose path is over 300 bytes: longer than the 256-byte fields paths once had.
DEEP=$T
for i in 1 2 3 4 5; do
        DEEP=$DEEP/$(printf '%060d' "$i")
done
mkdir -p "$DEEP"
CTX=db-id=db-1,volume-id=vol-1
truncate -s 16M "$DEEP/data.img"
: > "$DEEP/header.img"

expect 0 "key create" key create --alias alias/pg
expect 0 "format --header under a folder of ${#DEEP} bytes" \
        format "$DEEP/data.img" --header "$DEEP/header.img" --key alias/pg --context "$CTX"
expect 0 "dump --header" --json dump "$DEEP/data.img" --header "$DEEP/header.img"
json_is 'j["Header"]' "$DEEP/header.img"
# Both read the data segment, whose device path had 256 bytes: "File name too long".
expect 0 "rewrap --header" rewrap "$DEEP/data.img" --header "$DEEP/header.img"
expect 0 "rebind --header" rebind "$DEEP/data.img" --header "$DEEP/header.img" --context volume-id=vol-2
kc --json dump "$DEEP/data.img" --header "$DEEP/header.img"
json_is 'j["KmscryptToken"]["EncryptionContext"]["volume-id"]' vol-2

# A backup file named near NAME_MAX: its temporary file's name must still fit.
NAME=$(printf '%0250d' 0)
expect 0 "backup to a file named with 250 bytes" backup "$DEEP/header.img" "$DEEP/$NAME"
check "backup: a byte for byte copy" cmp -s "$DEEP/header.img" "$DEEP/$NAME"
check "backup: no temporary file left" sh -c "[ \$(ls -A '$DEEP' | wc -l) = 3 ]"
rm -f "$DEEP/$NAME"
# With --header its FILE.header is 257 bytes: refused before anything is written.
expect 2 "backup --header whose FILE.header is longer than NAME_MAX" \
        backup "$DEEP/data.img" --header "$DEEP/header.img" "$DEEP/$NAME"
check "backup --header: one line" one_error_line
check "backup --header: names FILE.header and why" grep -qF "$NAME.header: File name too long" "$T/err"
check "backup --header: nothing written" sh -c "[ \$(ls -A '$DEEP' | wc -l) = 2 ]"

# ---- the volumes file: a device and a header= of 4095 bytes ----
MAXED=$DEEP/$(printf '%0200d' 0)
while [ $((${#MAXED} + 201)) -lt 4095 ]; do
        MAXED=$MAXED/$(printf '%0200d' 0)
done
MAXED=$MAXED/$(printf "%0$((4094 - ${#MAXED}))d" 0)
check "a path of 4095 bytes to test with" test "${#MAXED}" = 4095
printf 'pg %s %s header=%s\n' "$DEEP/data.img" "$CTX" "$MAXED" > "$T/volumes"
printf 'long %s %s\n' "$MAXED" db-id=db-1,volume-id=long >> "$T/volumes"
expect 0 "config list: a device and a header= of 4095 bytes" config list --volumes "$T/volumes"
check "config list: both volumes" sh -c "[ \"\$(cat '$T/out')\" = \"\$(printf 'pg\nlong')\" ]"

# ---- longer than PATH_MAX: one line, its start and why, status 2 ----
TOOLONG=${MAXED}x
WHY="a path of 4096 bytes, longer than 4095"
printf 'pg %s %s\n' "$TOOLONG" "$CTX" > "$T/volumes"
expect 2 "config list: a device of 4096 bytes" config list --volumes "$T/volumes"
check "config list: one line naming the line and why" grep -qF "volumes:1: device $(echo "$TOOLONG" | cut -c1-64)...: $WHY" "$T/err"
printf 'pg %s %s header=%s\n' "$DEEP/data.img" "$CTX" "$TOOLONG" > "$T/volumes"
expect 2 "config list: a header= of 4096 bytes" config list --volumes "$T/volumes"
check "config list: says why" grep -qF "header $(echo "$TOOLONG" | cut -c1-64)...: $WHY" "$T/err"
for args in "dump $TOOLONG" "dump $DEEP/data.img --header $TOOLONG" "backup $DEEP/header.img $TOOLONG"; do
        set -- $args
        expect 2 "$1 with a path of 4096 bytes" "$@"
        check "$1: one line" one_error_line
        check "$1: short, with the start of the path and why" \
                sh -c "[ \$(wc -c < '$T/err') -lt 200 ] && grep -qF '$(echo "$TOOLONG" | cut -c1-64)...: $WHY' '$T/err'"
done

finish
