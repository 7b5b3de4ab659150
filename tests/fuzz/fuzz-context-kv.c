/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Encryption context, key=value syntax (kc_context_parse_kv): command lines, volumes file. */

#include "agent/context.h"
#include "tests/fuzz/context-check.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(kc_context_freep) struct kc_context *c = NULL;
        _cleanup_free_ char *text = fuzz_strndup(data, size);
        struct kc_err err = {};
        int r;

        r = kc_context_parse_kv(text, &c, &err);
        fuzz_assert_refusal(r, &err);
        if (r < 0)
                FUZZ_ASSERT(!c);
        else
                fuzz_check_context(c);
        return 0;
}
