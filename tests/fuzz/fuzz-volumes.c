/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * /etc/kmscrypt/volumes (kc_volumes_parse).  A refusal names file:line; an
 * accepted file gives volumes with a name, a device and an expected
 * context each, distinct names, and lines in file order.
 */

#include "agent/daemon/volumes.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct kc_volumes *v = NULL;
        struct kc_err err = {};
        int r;

        r = kc_volumes_parse((const char *) data, size, "fuzz-volumes", &v, &err);
        fuzz_assert_refusal(r, &err);
        if (r < 0) {
                if (r != -ENOMEM)
                        FUZZ_ASSERT(strncmp(err.msg, "fuzz-volumes", 12) == 0);
                return 0;
        }
        FUZZ_ASSERT(v && v->n <= KC_VOLUMES_MAX);
        for (size_t i = 0; i < v->n; i++) {
                const struct kc_volume_conf *c = &v->volumes[i];

                FUZZ_ASSERT(c->name && c->name[0] && c->device && c->device[0] && c->context);
                FUZZ_ASSERT(i == 0 || c->line > v->volumes[i - 1].line);
                for (size_t j = 0; j < i; j++)
                        FUZZ_ASSERT(!streq(c->name, v->volumes[j].name));
        }
        kc_volumes_free(v);
        return 0;
}
