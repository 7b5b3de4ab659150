/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Encryption context, JSON syntax: as text (kc_context_parse_json, with its
 * own duplicate-member check) and, when the shared strict parse accepts the
 * text, as an already parsed object (kc_context_from_json, the path tokens
 * take).
 */

#include "agent/context.h"
#include "lib/json-util.h"
#include "tests/fuzz/context-check.h"
#include "tests/fuzz/fuzz.h"

static void from_object(const char *text, const struct kc_context *from_text) {
        _cleanup_(kc_context_freep) struct kc_context *c = NULL;
        struct json_object *o = NULL;
        struct kc_err err = {};
        int r;

        if (kc_json_parse_object(text, strlen(text), NULL, &o, NULL) < 0)
                return;
        r = kc_context_from_json(o, &c, &err);
        json_object_put(o);
        fuzz_assert_refusal(r, &err);
        if (r < 0)
                return;
        fuzz_check_context(c);
        /* The object path cannot see duplicates, so it accepts a superset of the text path. */
        if (from_text)
                FUZZ_ASSERT(kc_context_equal(c, from_text));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(kc_context_freep) struct kc_context *c = NULL;
        _cleanup_free_ char *text = fuzz_strndup(data, size);
        struct kc_err err = {};
        int r;

        r = kc_context_parse_json(text, &c, &err);
        fuzz_assert_refusal(r, &err);
        if (r >= 0)
                fuzz_check_context(c);
        from_object(text, c);
        return 0;
}
