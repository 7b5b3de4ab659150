/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdlib.h>
#include <unistd.h>

#include "lib/initrd.h"
#include "lib/macro.h"

bool kc_in_initrd(void) {
        const char *e = getenv("KMSCRYPT_INITRD");

        if (e && (streq(e, "1") || streq(e, "0")))
                return streq(e, "1");
        return access("/etc/initrd-release", F_OK) == 0;
}
