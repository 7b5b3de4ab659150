/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Wrapped-key blob of the local provider: header parsing (kc_blob_peek) and
 * opening (kc_blob_open) under the CMK and contexts of the known-answer
 * vectors of tests/unit/test-blob.c, so that seeds made from those vectors
 * reach the success path and mutations of them every refusal.
 *
 * The first input byte picks the mode: even, the rest is a blob to open;
 * odd, the rest is a plaintext to seal and open again (a round trip that
 * must give back the same bytes, and fail under a different context).
 */

#include "agent/blob.h"
#include "lib/secret.h"
#include "tests/fuzz/fuzz.h"

static const char *const contexts[] = {
        "db-id=db-CQYSMDPBRZ7BPMH7Y3RTDG5QY,volume-id=vol-ad8c6542",
        "",
};

static void cmk_of_vectors(uint8_t cmk[32]) {
        for (int i = 0; i < 32; i++)
                cmk[i] = (uint8_t) i;
}

static void open_blob(const uint8_t *blob, size_t len) {
        struct kc_blob_header h;
        struct kc_err err = {};
        uint8_t cmk[32];
        int r;

        r = kc_blob_peek(blob, len, &h, &err);
        fuzz_assert_refusal(r, &err);
        if (r < 0)
                return;
        FUZZ_ASSERT(len == 26 + strlen(h.key_id) + h.plaintext_len + KC_BLOB_TAG_SIZE);
        FUZZ_ASSERT(h.key_version >= 1 && h.plaintext_len >= 1 && h.plaintext_len <= KC_BLOB_PLAINTEXT_MAX);

        cmk_of_vectors(cmk);
        for (size_t i = 0; i < ARRAY_SIZE(contexts); i++) {
                _cleanup_(kc_context_freep) struct kc_context *ctx = NULL;
                _cleanup_secret_ void *plain = NULL;
                struct kc_err e = {};

                FUZZ_ASSERT(kc_context_parse_kv(contexts[i], &ctx, NULL) == 0);
                r = kc_blob_open(cmk, blob, len, ctx, &plain, &e);
                fuzz_assert_refusal(r, &e);
                if (r == 0)
                        FUZZ_ASSERT(kc_secret_size(plain) == h.plaintext_len);
                else
                        FUZZ_ASSERT(!plain);
        }
}

static void round_trip(const uint8_t *plaintext, size_t len) {
        _cleanup_(kc_context_freep) struct kc_context *ctx = NULL, *other = NULL;
        _cleanup_secret_ void *back = NULL, *wrong = NULL;
        _cleanup_free_ uint8_t *blob = NULL;
        size_t blob_len = 0;
        uint8_t cmk[32];
        int r;

        cmk_of_vectors(cmk);
        FUZZ_ASSERT(kc_context_parse_kv(contexts[0], &ctx, NULL) == 0);
        FUZZ_ASSERT(kc_context_parse_kv(contexts[1], &other, NULL) == 0);
        r = kc_blob_seal(cmk, "local:kc-fuzz", 1, ctx, plaintext, len, NULL, &blob, &blob_len);
        if (len == 0 || len > KC_BLOB_PLAINTEXT_MAX) {
                FUZZ_ASSERT(r < 0);
                return;
        }
        FUZZ_ASSERT(r == 0);
        FUZZ_ASSERT(kc_blob_open(cmk, blob, blob_len, ctx, &back, NULL) == 0);
        FUZZ_ASSERT(kc_secret_size(back) == len && memcmp(back, plaintext, len) == 0);
        FUZZ_ASSERT(kc_blob_open(cmk, blob, blob_len, other, &wrong, NULL) == -EBADMSG);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        if (data[0] & 1)
                round_trip(data + 1, size - 1);
        else
                open_blob(data + 1, size - 1);
        return 0;
}
