#!/bin/sh
# kmscrypt format on real block devices (loop devices, no device-mapper
# needed): a read-only device is refused before the KMS is asked, and the
# sector size follows the device's logical block size; volumes are found by
# UUID= and LABEL=.
. "$(dirname "$0")/../cli/lib.sh"

command -v losetup >/dev/null && [ "$(id -u)" = 0 ] && [ -e /dev/loop-control ] ||
        { echo "SKIP: needs root and loop devices"; exit 77; }

# attach ARGS...: a loop device in $L, detached again at exit (not in a subshell: LOOPS must see it).
LOOPS=
attach() {
        L=$(losetup -f --show "$@") || { echo "SKIP: losetup $*"; exit 77; }
        LOOPS="$LOOPS $L"
}
trap 'for l in $LOOPS; do losetup -d "$l"; done; rm -rf "$T"' EXIT

CTX=db-id=db-1,volume-id=vol-1
expect 0 "create key" key create --alias alias/pg

truncate -s 32M "$T/ro.img"
attach -r "$T/ro.img"; RO=$L
lines=$(audit_lines)
expect 5 "read-only device" format "$RO" --key alias/pg --context "$CTX"
check "read-only: one line" one_error_line
check "read-only: says so" grep -q 'read-only' "$T/err"
check "read-only: the KMS was not asked" test "$(audit_lines)" -eq "$lines"

truncate -s 32M "$T/4k.img"
attach -b 4096 "$T/4k.img"; B4K=$L
expect 2 "512-byte sectors on a 4096-byte device" format "$B4K" --key alias/pg --context "$CTX" --sector-size 512
check "names the logical block size" grep -q "4096-byte logical block size" "$T/err"
expect 0 "format a 4096-byte device" format "$B4K" --key alias/pg --context "$CTX"
expect 0 "dump it" --json dump "$B4K"
json_is 'j["SectorSize"]' 4096

# 512-byte logical blocks and a size that 4096 does not divide: 512 it is.
truncate -s $((32 * 1024 * 1024 + 512)) "$T/odd.img"
attach "$T/odd.img"; ODD=$L
expect 0 "format a device of odd size" format "$ODD" --key alias/pg --context "$CTX"
expect 0 "dump it" --json dump "$ODD"
json_is 'j["SectorSize"]' 512

# Volumes named by UUID= and LABEL=: without udev's links (none here) every
# block device is probed, as libblkid's scan does (agent/blockdev.h).
truncate -s 32M "$T/tag.img"
attach "$T/tag.img"; TAG=$L
expect 0 "format with a label" format "$TAG" --key alias/pg --context db-id=db-1,volume-id=tag --label kc-tag-test
uuid=$(cryptsetup luksUUID "$TAG")
cat > "$T/volumes" <<V
byuuid  UUID=$uuid  db-id=db-1,volume-id=tag
bylabel LABEL=kc-tag-test  db-id=db-1,volume-id=tag
nouuid  UUID=00000000-0000-4000-8000-0000000000fd  db-id=db-1,volume-id=none
V
expect 0 "config check finds volumes by tag" --json config check --volumes "$T/volumes"
json_is '[v["Check"] for v in j["Volumes"]]' "['ok', 'ok', 'absent']"
json_is 'j["Volumes"][0]["Detail"].split(",")[0]' "$TAG"
json_is 'j["Volumes"][1]["Detail"].split(",")[0]' "$TAG"

# A block copy of it (a restored snapshot) beside it: which one a tag
# names is not guessed.  By path each is still found.
cp "$T/tag.img" "$T/tag-copy.img"
attach "$T/tag-copy.img"; COPY=$L
expect 4 "config check with a copy of a volume" --json config check --volumes "$T/volumes"
json_is '[v["Check"] for v in j["Volumes"]]' "['bad', 'bad', 'absent']"
check "names both devices" grep -q "2 devices carry UUID=$uuid" "$T/out"
expect 1 "attach a volume by a tag two devices carry" attach "UUID=$uuid"
check "one line" one_error_line
check "names both" grep -q "$TAG" "$T/err"
check "and the copy" grep -q "$COPY" "$T/err"
finish
