#!/bin/sh
# Exit statuses and lines as kmscrypt(8) gives them, the same for every
# command: a VOLUME that is not configured is named as such.  On image
# files: nothing here needs device-mapper.
. "$(dirname "$0")/lib.sh"

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
