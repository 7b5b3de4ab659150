/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "agent/blob.h"
#include "lib/secret.h"
#include "tests/unit/check-main.h"

/*
 * Known-answer vectors published in docs/wrapped-blob.md and recomputed
 * independently (Python `cryptography`) by tests/vectors/crosscheck.py.
 * CMK = 00 01 02 .. 1f for all of them.
 */
static const struct kat {
        const char *name;
        const char *key_id;
        uint32_t version;
        const char *nonce_hex;
        const char *context_kv;
        uint8_t plaintext_first;  /* plaintext[i] = first + i ... */
        uint8_t plaintext_step;   /* ... * step */
        size_t plaintext_len;
        const char *blob_hex;
} kats[] = {
        {
                .name = "dek-64",
                .key_id = "local:kc-test-cmk",
                .version = 1,
                .nonce_hex = "cafebabefacedbaddecaf888",
                .context_kv = "db-id=db-CQYSMDPBRZ7BPMH7Y3RTDG5QY,volume-id=vol-ad8c6542",
                .plaintext_first = 0x40, .plaintext_step = 1, .plaintext_len = 64,
                .blob_hex =
                        "4b43570101116c6f63616c3a6b632d746573742d636d6b00000001cafebabefacedbaddecaf88800000040"
                        "cae2e265ee3f095c0e4217963750c7705d7192028b4c3c2316865e2ae2d43ba0cd31a325a5b12f054e3242"
                        "035eee4e0a2925db22d7fffea75beb0b47c299c93d5e96bfb252e76ae056d727818b39d502",
        },
        {
                .name = "empty-context",
                .key_id = "local:kc-test-cmk",
                .version = 7,
                .nonce_hex = "000000000000000000000001",
                .context_kv = "",
                .plaintext_first = 0x00, .plaintext_step = 1, .plaintext_len = 32,
                .blob_hex =
                        "4b43570101116c6f63616c3a6b632d746573742d636d6b000000070000000000000000000000010000002015d7"
                        "bdff40f1361906275b32e0ab34f8058e0e4770a742936b1919c23a2d6d41019d0949b2631adae9a6cf5b1b593d1f",
        },
        {
                .name = "long-id-non-ascii-context",
                .key_id = "aws:arn:aws:kms:eu-west-1:111122223333:key/1234abcd",
                .version = 2,
                .nonce_hex = "0f0e0d0c0b0a090807060504",
                .context_kv = "r\xc3\xa9gion=Z\xc3\xbcrich,db-id=db-1,Owner=\xc3\xa9quipe donn\xc3\xa9""es,"
                              "\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87=\xd0\xb7\xd0\xbd\xd0\xb0\xd1\x87\xd0\xb5\xd0\xbd\xd0\xb8\xd0\xb5",
                .plaintext_first = 0x00, .plaintext_step = 0, .plaintext_len = 64,
                .blob_hex =
                        "4b43570101336177733a61726e3a6177733a6b6d733a65752d776573742d313a3131313132323232333333"
                        "333a6b65792f3132333461626364000000020f0e0d0c0b0a09080706050400000040a430b15c5bd7afaeeb"
                        "dfb15f389a890169661f60cf59f1645649aeff320ab02a048ac3402b497b8e20b52ced930c28051700f551"
                        "68bd5eebf45c46f67377458a0f802dd0237d408dcafc5c2b0b757973",
        },
};

static void test_cmk(uint8_t cmk[32]) {
        for (int i = 0; i < 32; i++)
                cmk[i] = (uint8_t) i;
}

static size_t unhex(const char *hex, uint8_t *out, size_t max) {
        size_t n = strlen(hex) / 2;
        ck_assert_uint_le(n, max);
        for (size_t i = 0; i < n; i++)
                ck_assert_int_eq(sscanf(hex + 2 * i, "%2hhx", &out[i]), 1);
        return n;
}

static void kat_plaintext(const struct kat *k, uint8_t *out) {
        for (size_t i = 0; i < k->plaintext_len; i++)
                out[i] = (uint8_t) (k->plaintext_first + i * k->plaintext_step);
}

/* The first vector's blob (fixed nonce, so structural cases are exact), for the negative tests. */
struct sample {
        uint8_t cmk[32];
        struct kc_context *ctx;
        uint8_t *blob;
        size_t len;
        size_t key_id_len;
};

static void sample_init(struct sample *s) {
        uint8_t plaintext[64], nonce[KC_BLOB_NONCE_SIZE];

        test_cmk(s->cmk);
        unhex(kats[0].nonce_hex, nonce, sizeof(nonce));
        kat_plaintext(&kats[0], plaintext);
        ck_assert_int_eq(kc_context_parse_kv(kats[0].context_kv, &s->ctx, NULL), 0);
        ck_assert_int_eq(kc_blob_seal(s->cmk, kats[0].key_id, kats[0].version, s->ctx, plaintext,
                                      kats[0].plaintext_len, nonce, &s->blob, &s->len), 0);
        s->key_id_len = strlen(kats[0].key_id);
}

static void sample_done(struct sample *s) {
        kc_context_free(s->ctx);
        free(s->blob);
}

/* Open must fail with want (0 = -EBADMSG or -EINVAL), set err to it, and leave the output alone. */
static int open_refused(const struct sample *s, const uint8_t *cmk, const uint8_t *blob, size_t len,
                        const struct kc_context *ctx, int want) {
        void *sentinel = (void *) &sentinel, *pt = sentinel;
        struct kc_err err = {};
        int r;

        r = kc_blob_open(cmk ?: s->cmk, blob, len, ctx ?: s->ctx, &pt, &err);
        if (want != 0)
                ck_assert_int_eq(r, want);
        else
                ck_assert_msg(r == -EBADMSG || r == -EINVAL, "got %d", r);
        ck_assert_int_eq(err.error, r);
        ck_assert(err.msg[0] != '\0');
        ck_assert_ptr_eq(pt, sentinel);
        return r;
}

START_TEST(test_known_answer) {
        const struct kat *k = &kats[_i];
        _cleanup_(kc_context_freep) struct kc_context *ctx = NULL;
        _cleanup_free_ uint8_t *blob = NULL;
        _cleanup_secret_ uint8_t *opened = NULL;
        uint8_t cmk[32], nonce[KC_BLOB_NONCE_SIZE], plaintext[KC_BLOB_PLAINTEXT_MAX], want[512];
        struct kc_blob_header h;
        struct kc_err err = {};
        size_t len, want_len;

        test_cmk(cmk);
        ck_assert_uint_eq(unhex(k->nonce_hex, nonce, sizeof(nonce)), KC_BLOB_NONCE_SIZE);
        want_len = unhex(k->blob_hex, want, sizeof(want));
        kat_plaintext(k, plaintext);
        ck_assert_int_eq(kc_context_parse_kv(k->context_kv, &ctx, NULL), 0);

        ck_assert_int_eq(kc_blob_seal(cmk, k->key_id, k->version, ctx, plaintext, k->plaintext_len,
                                      nonce, &blob, &len), 0);
        ck_assert_uint_eq(len, want_len);
        ck_assert_mem_eq(blob, want, len);

        ck_assert_int_eq(kc_blob_peek(want, want_len, &h, &err), 0);
        ck_assert_str_eq(h.key_id, k->key_id);
        ck_assert_uint_eq(h.key_version, k->version);
        ck_assert_uint_eq(h.plaintext_len, k->plaintext_len);

        ck_assert_msg(kc_blob_open(cmk, want, want_len, ctx, (void **) &opened, &err) == 0, "%s", err.msg);
        ck_assert_uint_eq(kc_secret_size(opened), k->plaintext_len);
        ck_assert_mem_eq(opened, plaintext, k->plaintext_len);
}
END_TEST

START_TEST(test_round_trip_random_nonce) {
        _cleanup_(kc_context_freep) struct kc_context *ctx = NULL;
        _cleanup_free_ uint8_t *a = NULL, *b = NULL;
        _cleanup_secret_ uint8_t *pa = NULL, *pb = NULL;
        uint8_t cmk[32], plaintext[KC_BLOB_PLAINTEXT_MAX];
        size_t la, lb;

        test_cmk(cmk);
        for (size_t i = 0; i < sizeof(plaintext); i++)
                plaintext[i] = (uint8_t) (i * 7);
        ck_assert_int_eq(kc_context_parse_kv("db-id=db-1", &ctx, NULL), 0);
        ck_assert_int_eq(kc_blob_seal(cmk, "local:k", 3, ctx, plaintext, sizeof(plaintext), NULL, &a, &la), 0);
        ck_assert_int_eq(kc_blob_seal(cmk, "local:k", 3, ctx, plaintext, sizeof(plaintext), NULL, &b, &lb), 0);
        ck_assert_uint_eq(la, 26 + 7 + sizeof(plaintext) + 16);
        ck_assert_uint_eq(la, lb);
        /* Fresh nonce each time: same inputs, different blobs. */
        ck_assert(memcmp(a + 6 + 7 + 4, b + 6 + 7 + 4, KC_BLOB_NONCE_SIZE) != 0);
        ck_assert(memcmp(a, b, la) != 0);
        ck_assert_int_eq(kc_blob_open(cmk, a, la, ctx, (void **) &pa, NULL), 0);
        ck_assert_int_eq(kc_blob_open(cmk, b, lb, ctx, (void **) &pb, NULL), 0);
        ck_assert_mem_eq(pa, plaintext, sizeof(plaintext));
        ck_assert_mem_eq(pb, plaintext, sizeof(plaintext));
}
END_TEST

START_TEST(test_wrong_context) {
        static const char *const wrong[] = {
                "db-id=db-CQYSMDPBRZ7BPMH7Y3RTDG5QY",                                   /* missing pair */
                "db-id=db-CQYSMDPBRZ7BPMH7Y3RTDG5QY,volume-id=vol-ad8c6542,x=",         /* extra pair */
                "db-id=db-CQYSMDPBRZ7BPMH7Y3RTDG5QY,volume-id=vol-ad8c6543",            /* changed value */
                "db-id=db-CQYSMDPBRZ7BPMH7Y3RTDG5QY,Volume-id=vol-ad8c6542",            /* key case */
                "db-id=db-CQYSMDPBRZ7BPMH7Y3RTDG5QY,volume-id=vol-ad8c6542 ",           /* trailing space */
                "volume-id=db-CQYSMDPBRZ7BPMH7Y3RTDG5QY,db-id=vol-ad8c6542",            /* values swapped */
                "",                                                                     /* empty */
        };
        struct sample s;
        struct kc_err err = {};
        void *pt = NULL;

        sample_init(&s);
        for (size_t i = 0; i < ARRAY_SIZE(wrong); i++) {
                _cleanup_(kc_context_freep) struct kc_context *ctx = NULL;
                ck_assert_int_eq(kc_context_parse_kv(wrong[i], &ctx, NULL), 0);
                open_refused(&s, NULL, s.blob, s.len, ctx, -EBADMSG);
        }
        /* The right context still opens it. */
        ck_assert_int_eq(kc_blob_open(s.cmk, s.blob, s.len, s.ctx, &pt, &err), 0);
        ck_assert_int_eq(err.error, 0);
        kc_secret_free(pt);
        sample_done(&s);
}
END_TEST

START_TEST(test_wrong_cmk) {
        struct sample s;
        uint8_t cmk[32];

        sample_init(&s);
        for (size_t bit = 0; bit < 256; bit += 37) {
                memcpy(cmk, s.cmk, sizeof(cmk));
                cmk[bit / 8] ^= (uint8_t) (1u << (bit % 8));
                open_refused(&s, cmk, s.blob, s.len, NULL, -EBADMSG);
        }
        sample_done(&s);
}
END_TEST

/*
 * Every byte, three ways.  Nonce, ciphertext and tag are only caught by the
 * tag (-EBADMSG); header bytes are caught by the structure checks or, where
 * the result is still well-formed (key id, version), by the tag.
 */
START_TEST(test_tamper_every_byte) {
        static const uint8_t masks[] = { 0x01, 0x80, 0xff };
        _cleanup_free_ uint8_t *copy = NULL;
        struct sample s;
        size_t nonce_off;

        sample_init(&s);
        nonce_off = 6 + s.key_id_len + 4;
        copy = malloc(s.len);
        ck_assert_ptr_nonnull(copy);
        for (size_t pos = 0; pos < s.len; pos++)
                for (size_t m = 0; m < ARRAY_SIZE(masks); m++) {
                        bool auth_only = (pos >= nonce_off && pos < nonce_off + KC_BLOB_NONCE_SIZE) ||
                                         pos >= nonce_off + KC_BLOB_NONCE_SIZE + 4;
                        memcpy(copy, s.blob, s.len);
                        copy[pos] ^= masks[m];
                        open_refused(&s, NULL, copy, s.len, NULL, auth_only ? -EBADMSG : 0);
                }
        sample_done(&s);
}
END_TEST

START_TEST(test_truncated_and_trailing) {
        _cleanup_free_ uint8_t *longer = NULL;
        struct kc_blob_header h;
        struct kc_err err = {};
        struct sample s;

        sample_init(&s);
        for (size_t len = 0; len < s.len; len++) {
                open_refused(&s, NULL, s.blob, len, NULL, -EINVAL);
                ck_assert_int_eq(kc_blob_peek(s.blob, len, &h, NULL), -EINVAL);
        }
        longer = malloc(s.len + 1);
        ck_assert_ptr_nonnull(longer);
        memcpy(longer, s.blob, s.len);
        longer[s.len] = 0;
        open_refused(&s, NULL, longer, s.len + 1, NULL, -EINVAL);
        ck_assert_int_eq(kc_blob_peek(longer, s.len + 1, &h, &err), -EINVAL);
        ck_assert_str_eq(err.msg, "wrapped key has 1 trailing bytes after the tag");
        sample_done(&s);
}
END_TEST

/* Structural refusals, each with the message that names it; the header is left untouched. */
START_TEST(test_peek_malformed) {
        static const struct {
                size_t off;
                uint8_t value;
                const char *msg;
        } cases[] = {
                { 0, 'X', "not a kmscrypt wrapped key (bad magic)" },
                { 3, 0x02, "not a kmscrypt wrapped key (bad magic)" },
                { 4, 0x00, "wrapped key uses unknown algorithm 0" },
                { 4, 0x02, "wrapped key uses unknown algorithm 2" },
                { 5, 0x00, "wrapped key has a key id length of 0, not 1..64" },
                { 5, 65, "wrapped key has a key id length of 65, not 1..64" },
                /* a shorter id shifts the fields: the length now reads nonce and length bytes */
                { 5, 16, "wrapped key has a plaintext length of 2281701376, not 1..1024" },
                /* a longer id takes in the version's first byte, a NUL */
                { 5, 18, "wrapped key has a key id that is not printable ASCII" },
                { 6, ' ', "wrapped key has a key id that is not printable ASCII" },
                { 7, 0x80, "wrapped key has a key id that is not printable ASCII" },
                { 6 + 17 + 3, 0x00, "wrapped key names CMK version 0 (versions start at 1)" },
                { 6 + 17 + 16 + 3, 0x00, "wrapped key has a plaintext length of 0, not 1..1024" },
                { 6 + 17 + 16 + 2, 0x04, "wrapped key has a plaintext length of 1088, not 1..1024" },
                { 6 + 17 + 16 + 3, 0x41, "wrapped key truncated: 123 bytes of 124" },
                { 6 + 17 + 16 + 3, 0x3f, "wrapped key has 1 trailing bytes after the tag" },
        };
        _cleanup_free_ uint8_t *copy = NULL;
        struct sample s;

        sample_init(&s);
        ck_assert_uint_eq(s.len, 123);
        copy = malloc(s.len);
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct kc_blob_header h = { .key_version = 4242 };
                struct kc_err err = {};
                memcpy(copy, s.blob, s.len);
                copy[cases[i].off] = cases[i].value;
                ck_assert_int_eq(kc_blob_peek(copy, s.len, &h, &err), -EINVAL);
                ck_assert_msg(strstr(err.msg, cases[i].msg), "case %zu: \"%s\"", i, err.msg);
                ck_assert_uint_eq(h.key_version, 4242);
                open_refused(&s, NULL, copy, s.len, NULL, -EINVAL);
        }
        sample_done(&s);
}
END_TEST

START_TEST(test_seal_arguments) {
        _cleanup_(kc_context_freep) struct kc_context *ctx = NULL;
        uint8_t cmk[32], plaintext[KC_BLOB_PLAINTEXT_MAX + 1] = {}, *blob = NULL;
        char id[KC_BLOB_KEY_ID_MAX + 2];
        size_t len = 0;

        test_cmk(cmk);
        ck_assert_int_eq(kc_context_parse_kv("db-id=db-1", &ctx, NULL), 0);
        memset(id, 'k', sizeof(id));
        id[KC_BLOB_KEY_ID_MAX + 1] = '\0';
        ck_assert_int_eq(kc_blob_seal(cmk, id, 1, ctx, plaintext, 32, NULL, &blob, &len), -EINVAL);
        ck_assert_int_eq(kc_blob_seal(cmk, "", 1, ctx, plaintext, 32, NULL, &blob, &len), -EINVAL);
        ck_assert_int_eq(kc_blob_seal(cmk, "local:a b", 1, ctx, plaintext, 32, NULL, &blob, &len), -EINVAL);
        ck_assert_int_eq(kc_blob_seal(cmk, "local:\xc3\xa9", 1, ctx, plaintext, 32, NULL, &blob, &len), -EINVAL);
        ck_assert_int_eq(kc_blob_seal(cmk, "local:k", 0, ctx, plaintext, 32, NULL, &blob, &len), -EINVAL);
        ck_assert_int_eq(kc_blob_seal(cmk, "local:k", 1, ctx, plaintext, 0, NULL, &blob, &len), -EINVAL);
        ck_assert_int_eq(kc_blob_seal(cmk, "local:k", 1, ctx, plaintext, KC_BLOB_PLAINTEXT_MAX + 1, NULL,
                                      &blob, &len), -EINVAL);
        ck_assert_int_eq(kc_blob_seal(cmk, "local:k", 1, NULL, plaintext, 32, NULL, &blob, &len), -EINVAL);
        ck_assert_ptr_null(blob);
        ck_assert_uint_eq(len, 0);

        /* The largest legal key id, version and plaintext. */
        id[KC_BLOB_KEY_ID_MAX] = '\0';
        ck_assert_int_eq(kc_blob_seal(cmk, id, UINT32_MAX, ctx, plaintext, KC_BLOB_PLAINTEXT_MAX, NULL,
                                      &blob, &len), 0);
        ck_assert_uint_eq(len, 26 + KC_BLOB_KEY_ID_MAX + KC_BLOB_PLAINTEXT_MAX + 16);
        {
                struct kc_blob_header h;
                _cleanup_secret_ void *pt = NULL;
                ck_assert_int_eq(kc_blob_peek(blob, len, &h, NULL), 0);
                ck_assert_str_eq(h.key_id, id);
                ck_assert_uint_eq(h.key_version, UINT32_MAX);
                ck_assert_int_eq(kc_blob_open(cmk, blob, len, ctx, &pt, NULL), 0);
                ck_assert_uint_eq(kc_secret_size(pt), KC_BLOB_PLAINTEXT_MAX);
        }
        free(blob);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("blob");
        TCase *tc = tcase_create("core");

        tcase_add_loop_test(tc, test_known_answer, 0, ARRAY_SIZE(kats));
        tcase_add_test(tc, test_round_trip_random_nonce);
        tcase_add_test(tc, test_wrong_context);
        tcase_add_test(tc, test_wrong_cmk);
        tcase_add_test(tc, test_tamper_every_byte);
        tcase_add_test(tc, test_truncated_and_trailing);
        tcase_add_test(tc, test_peek_malformed);
        tcase_add_test(tc, test_seal_arguments);
        suite_add_tcase(s, tc);
        return s;
}
