/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What must hold for any context a parser accepted, whichever syntax it
 * came from: its canonical form and JSON text are produced, the JSON text
 * parses back to an equal context, and a copy is equal too.
 */

#include "agent/context.h"
#include "tests/fuzz/fuzz.h"

static inline void fuzz_check_context(const struct kc_context *c) {
        _cleanup_(kc_context_freep) struct kc_context *back = NULL, *copy = NULL;
        _cleanup_free_ uint8_t *canonical = NULL;
        _cleanup_free_ char *json = NULL;
        struct kc_err err = {};
        size_t len = 0;

        FUZZ_ASSERT(kc_context_count(c) <= KC_CONTEXT_PAIRS_MAX);
        FUZZ_ASSERT(kc_context_canonical(c, &canonical, &len) == 0);
        FUZZ_ASSERT(len >= 8 && len <= KC_CONTEXT_BYTES_MAX && memcmp(canonical, "KCX1", 4) == 0);
        FUZZ_ASSERT(kc_context_to_string(c, &json) == 0);
        FUZZ_ASSERT(kc_context_parse_json(json, &back, &err) == 0);
        FUZZ_ASSERT(kc_context_equal(c, back));
        FUZZ_ASSERT(kc_context_copy(c, &copy) == 0);
        FUZZ_ASSERT(kc_context_equal(c, copy));
        for (size_t i = 0; i < kc_context_count(c); i++)
                FUZZ_ASSERT(streq(kc_context_get(c, kc_context_key(c, i)), kc_context_value(c, i)));
}
