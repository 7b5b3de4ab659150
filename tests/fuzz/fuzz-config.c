/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * kmscrypt.conf (kc_config_parse_text).  A refusal names file:line; an
 * accepted file leaves every field within the bounds kmscrypt.conf(5) gives.
 */

#include <syslog.h>

#include "agent/config.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct kc_config c;
        struct kc_err err = {};
        int r;

        FUZZ_ASSERT(kc_config_init(&c) == 0);
        r = kc_config_parse_text(&c, (const char *) data, size, "fuzz.conf", &err);
        fuzz_assert_refusal(r, &err);
        if (r < 0 && r != -ENOMEM)
                FUZZ_ASSERT(strncmp(err.msg, "fuzz.conf:", 10) == 0);
        if (r == 0) {
                FUZZ_ASSERT(c.keystore_dir && c.audit_log);
                FUZZ_ASSERT(c.deletion_window_days >= 7 && c.deletion_window_days <= 30);
                FUZZ_ASSERT(c.log_level >= LOG_ERR && c.log_level <= LOG_DEBUG);
        }
        kc_config_done(&c);
        kc_config_done(&c);     /* documented as safe to call twice */
        return 0;
}
