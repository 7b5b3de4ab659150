/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The kmscrypt LUKS2 token (kc_token_parse): JSON read from the header of
 * any disk that is plugged in.  An accepted token must format back to JSON
 * that parses to the same token, and give a key reference.
 */

#include "agent/token.h"
#include "tests/fuzz/fuzz.h"

static void check_round_trip(const struct kc_token *t) {
        _cleanup_(kc_token_clear) struct kc_token back = {};
        _cleanup_free_ char *json = NULL, *ref = NULL;
        struct kc_err err = {};

        FUZZ_ASSERT(kc_token_format(t, &json) == 0);
        FUZZ_ASSERT(kc_token_parse(json, &back, &err) == 0);
        FUZZ_ASSERT(back.version == t->version && back.key_version == t->key_version);
        FUZZ_ASSERT(streq(back.provider, t->provider) && streq(back.key_id, t->key_id));
        FUZZ_ASSERT(kc_context_equal(back.context, t->context));
        FUZZ_ASSERT(back.wrapped_key_len == t->wrapped_key_len &&
                    memcmp(back.wrapped_key, t->wrapped_key, t->wrapped_key_len) == 0);
        FUZZ_ASSERT(back.has_key_check == t->has_key_check &&
                    memcmp(back.key_check, t->key_check, sizeof(t->key_check)) == 0);
        FUZZ_ASSERT(kc_token_key_ref(t, &ref) == 0 && strchr(ref, ':'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(kc_token_clear) struct kc_token t = {};
        _cleanup_free_ char *text = fuzz_strndup(data, size);
        struct kc_err err = {};
        int r;

        r = kc_token_parse(text, &t, &err);
        fuzz_assert_refusal(r, &err);
        if (r == 0) {
                FUZZ_ASSERT(t.wrapped_key_len >= 1 && t.wrapped_key_len <= KC_TOKEN_WRAPPED_MAX);
                check_round_trip(&t);
        }
        return 0;
}
