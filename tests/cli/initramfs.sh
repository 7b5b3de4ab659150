#!/bin/sh
# kmscrypt config initramfs: what the initramfs hooks put into the image.
# Nothing without an x-initrd.attach volume; the keystore and its root key
# only when such a volume uses the local KMS and kmscrypt.conf says
# initramfs-keystore = yes; never the audit log or its chain head.
. "$(dirname "$0")/lib.sh"

printf 'data /dev/kmscrypt-test-none db-id=db-1,volume-id=data\n' > "$T/volumes-none"
printf 'data /dev/kmscrypt-test-none db-id=db-1,volume-id=data\nroot UUID=kmscrypt-test-no-root db-id=db-1,volume-id=root x-initrd.attach\n' \
        > "$T/volumes-root"
printf 'initramfs-keystore = yes\n' > "$T/yes.conf"

expect 0 "no x-initrd.attach volume" config initramfs --volumes "$T/volumes-none"
check "no x-initrd.attach volume: nothing for the hooks" test ! -s "$T/out"
check "no x-initrd.attach volume: no warning" test ! -s "$T/err"
# A volumes file that was named must exist (only the built-in default may be missing).
expect 2 "a named volumes file that does not exist" config initramfs --volumes "$T/none"
check "a named missing volumes file: one line naming it" grep -q "volumes file $T/none (named by --volumes)" "$T/err"
check "a named missing volumes file: nothing for the hooks" test ! -s "$T/out"

expect 0 "x-initrd.attach volume, keystore not allowed" config initramfs --volumes "$T/volumes-root"
check "its volume line (device absent: provider unknown)" \
        test "$(cat "$T/out")" = "volume root UUID=kmscrypt-test-no-root unknown"
check "no keystore without initramfs-keystore = yes" sh -c "! grep -q '^keystore\|^root-key' '$T/out'"
check "a warning says the volume cannot attach in early boot" grep -q 'initramfs-keystore = yes' "$T/err"

KMSCRYPT_CONFIG=$T/yes.conf expect 0 "keystore allowed" config initramfs --volumes "$T/volumes-root"
check "keystore line" grep -qx "keystore $KS" "$T/out"
check "root key line" grep -qx "root-key $KS/root.key" "$T/out"
check "no audit head or log named" sh -c "! grep -q 'audit' '$T/out'"
KMSCRYPT_CONFIG=$T/yes.conf expect 0 "--json" --json config initramfs --volumes "$T/volumes-root"
json_is 'j["Volumes"][0]["Provider"]' unknown
json_is 'j["Keystore"]' "$KS"
KMSCRYPT_CONFIG=$T/yes.conf expect 0 "no x-initrd.attach volume, keystore allowed" config initramfs \
        --volumes "$T/volumes-none"
check "keystore allowed but not needed: nothing" test ! -s "$T/out"

printf 'root /dev/x db-id=1 x-initrd.attach=yes\n' > "$T/volumes-bad"
expect 2 "a mistake in the volumes file" config initramfs --volumes "$T/volumes-bad"
check "names file and line" grep -q 'volumes-bad:1: option x-initrd.attach takes no value' "$T/err"
printf 'initramfs-keystore = maybe\n' > "$T/bad.conf"
KMSCRYPT_CONFIG=$T/bad.conf expect 2 "a mistake in kmscrypt.conf" config initramfs --volumes "$T/volumes-root"

# A volume on a real device: the provider from its token.
if command -v losetup > /dev/null && [ "$(id -u)" = 0 ] && [ -e /dev/loop-control ] &&
        truncate -s 32M "$T/root.img" && L=$(losetup -f --show "$T/root.img" 2>/dev/null); then
        trap 'losetup -d "$L"; rm -rf "$T"' EXIT
        expect 0 "create key" key create --alias alias/root
        expect 0 "format" -q format "$L" --key alias/root --context db-id=db-1,volume-id=root
        printf 'root %s db-id=db-1,volume-id=root x-initrd.attach\n' "$L" > "$T/volumes-loop"
        expect 0 "x-initrd.attach volume on a device" config initramfs --volumes "$T/volumes-loop"
        check "its provider read from the token" test "$(cat "$T/out")" = "volume root $L local"
else
        echo "skip - no loop devices: the provider of a present device is not read here"
fi

finish
