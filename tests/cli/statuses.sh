#!/bin/sh
# Exit statuses and lines as kmscrypt(8) gives them, the same for every
# command: a header kmscrypt cannot use is status 5 (the device's state, not
# a bad argument), a --key naming no provider and a bad --name are status 2
# before any device is read, and a VOLUME that is not configured is named as
# such.  On image files: nothing here needs device-mapper.
. "$(dirname "$0")/lib.sh"

CTX=db-id=db-1,volume-id=vol-1
truncate -s 1M "$T/plain.img"
printf 'secret\n' > "$T/pass"
expect 0 "create key" key create --alias alias/pg

# ---- a keystore that holds keys but whose root key is missing: unavailable, not "no such key" ----
# (a root key kept in a systemd credential, say, with the command run outside the unit)
before=$(snapshot "$KS")
for args in "key list" "key describe alias/pg" "key create --alias alias/new" "key disable alias/pg" \
            "kms generate-data-key --key alias/pg --context $CTX"; do
        expect 5 "root key missing: $args" --root-key-file "$T/no-root.key" $args
        check "root key missing: $args: one line" one_error_line
        check "root key missing: $args: says so" grep -qF \
                ": keystore $KS holds keys but its root key $T/no-root.key is missing" "$T/err"
done
check "root key missing: keystore unchanged, no root key made" \
        test "$before" = "$(snapshot "$KS")" -a ! -e "$T/no-root.key"
check "root key missing: the disable's outcome is an error" \
        sh -c "grep '\"operation\":\"DisableKey\"' '$LOG' | tail -n1 | grep -q '\"result\":\"error\"'"

# ---- a device that is not LUKS2 ----
NOT_LUKS="$T/plain.img is not a LUKS2 device (no valid LUKS header)"
for args in "attach $T/plain.img" "rebind $T/plain.img --context volume-id=vol-2" "reencrypt $T/plain.img" \
            "rewrap $T/plain.img" "dump $T/plain.img" \
            "adopt $T/plain.img --key alias/pg --context $CTX --passphrase-file $T/pass"; do
        expect 5 "not LUKS2: ${args%% *}" $args
        check "not LUKS2: ${args%% *}: one line saying so" sh -c "[ \$(wc -l < '$T/err') = 1 ] && grep -qF '$NOT_LUKS' '$T/err'"
done

# rewrap --all: a DEVICE named that is not LUKS2 fails the run as rewrap DEVICE does (status 5), after the
# other volumes; a configured volume whose device is missing (a nofail disk away) is a warning only.
truncate -s 24M "$T/v.img"
expect 0 "format a volume" format "$T/v.img" --key alias/pg --context "$CTX" -q
printf 'away %s/away.img %s nofail\n' "$T" "$CTX" > "$T/volumes"
expect 5 "rewrap --all with a DEVICE that is not LUKS2" rewrap --all "$T/plain.img" "$T/v.img" --volumes "$T/volumes" --always
check "rewrap --all: the DEVICE's failure in rewrap's words" \
        grep -qxF "kmscrypt: $T/plain.img: cannot rewrap: $NOT_LUKS" "$T/err"
check "rewrap --all: the configured volume away, a warning" grep -qxF \
        "kmscrypt: away: not checked: device $T/away.img: No such file or directory" "$T/err"
check "rewrap --all: the other DEVICE rewrapped" grep -qF "$T/v.img: rewrapped" "$T/out"
check "rewrap --all: the summary counts the failure" grep -qxF "1 rewrapped, 0 already current, 1 failed, 1 not readable" "$T/out"
expect 0 "rewrap --all with the configured volume away only" rewrap --all "$T/v.img" --volumes "$T/volumes"

# ---- --key naming no provider: a usage error, not the device's ----
for args in "adopt $T/plain.img --context $CTX --passphrase-file $T/pass" "rewrap $T/plain.img" \
            "rebind $T/plain.img --context volume-id=vol-2" "format $T/plain.img --context $CTX"; do
        cmd=${args%% *}
        expect 2 "--key nope:x: $cmd" $args --key nope:x
        check "--key nope:x: $cmd: one line naming the option" grep -qxF \
                "kmscrypt: --key: unknown KMS provider \"nope\" in \"nope:x\" (see 'kmscrypt $cmd --help')" "$T/err"
done

# ---- rebind: a malformed --context is a usage error, whatever the device ----
expect 2 "rebind --context without '='" rebind "$T/plain.img" --context volume-id
check "rebind --context without '=': names the option" grep -qF "kmscrypt: --context: " "$T/err"

# ---- attach --name that device-mapper cannot take: a usage error ----
expect 2 "attach --name with a slash" attach "$T/plain.img" --name a/b
check "attach --name: one line naming the option" grep -qF "kmscrypt: attach: invalid --name" "$T/err"

# ---- attach VOLUME that is not configured: says so, not that the default file is missing ----
DEFAULT_VOLUMES=$("$KMSCRYPT" rewrap --help | sed -n 's/.*--volumes FILE.*(default \(.*\))$/\1/p')
if [ -n "$DEFAULT_VOLUMES" ] && [ ! -e "$DEFAULT_VOLUMES" ]; then
        unset KMSCRYPT_VOLUMES
        expect 3 "attach VOLUME, no volumes file" attach pgdata
        check "attach VOLUME, no volumes file: names the volume" \
                grep -qxF "kmscrypt: cannot attach pgdata: no volume pgdata in $DEFAULT_VOLUMES" "$T/err"
else
        echo "ok - attach VOLUME, no volumes file: skipped, $DEFAULT_VOLUMES exists # SKIP"
fi

finish
