/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "agent/aws/errors.h"
#include "agent/aws/response.h"
#include "lib/macro.h"
#include "lib/secret.h"
#include "tests/unit/check-main.h"

/*
 * The parsers of what AWS KMS, IMDS and the container endpoint send
 * (agent/aws/response.h, kc_aws_error_map): valid responses in the shapes
 * of the AWS API reference and of moto, then one bad input per refusal,
 * each refused with its errno and one line naming what is wrong.
 */

#define KEY_UUID "1234abcd-12ab-34cd-56ef-1234567890ab"
#define KEY_ARN "arn:aws:kms:eu-west-1:111122223333:key/" KEY_UUID
/* base64 of 00 01 .. 1f, and of 16 bytes 'x' */
#define PT32 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define PT16 "eHh4eHh4eHh4eHh4eHh4eA=="
#define BLOB "AQIDBAUGBwg="

/* A refusal: the errno asked for, a message with want in it, one line. */
static void assert_refused(int r, int error, const struct kc_err *err, const char *want) {
        ck_assert_int_eq(r, error);
        ck_assert_int_eq(err->error, error);
        ck_assert_msg(strstr(err->msg, want), "\"%s\" does not say \"%s\"", err->msg, want);
        ck_assert_ptr_null(strchr(err->msg, '\n'));
}

/* "x" repeated n times, base64 of it when b64 (a Plaintext or CiphertextBlob of n bytes). */
static char *repeat(size_t n, bool b64) {
        char *s = malloc(4 * n / 3 + 8);
        size_t o = 0;

        ck_assert_ptr_nonnull(s);
        if (!b64) {
                memset(s, 'x', n);
                s[n] = '\0';
                return s;
        }
        for (size_t i = 0; i < n / 3; i++, o += 4)
                memcpy(s + o, "eHh4", 4);
        strcpy(s + o, n % 3 == 0 ? "" : n % 3 == 1 ? "eA==" : "eHg=");
        return s;
}

/* ---- data keys ---------------------------------------------------------------------------- */

START_TEST(test_generate_data_key) {
        const char *body = "{\"CiphertextBlob\": \"" BLOB "\", \"Plaintext\": \"" PT32 "\", \"KeyId\": \"" KEY_ARN "\"}";
        struct kc_data_key k = {};
        struct kc_err err = {};
        const uint8_t *p;

        ck_assert_int_eq(kc_aws_response_data_key("GenerateDataKey", body, strlen(body), 32, &k, &err), 0);
        ck_assert_uint_eq(kc_secret_size(k.plaintext), 32);
        p = k.plaintext;
        for (unsigned i = 0; i < 32; i++)
                ck_assert_uint_eq(p[i], i);
        ck_assert_uint_eq(k.blob_len, 8);
        ck_assert_mem_eq(k.blob, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
        ck_assert_str_eq(k.key_id, KEY_UUID);
        ck_assert_uint_eq(k.key_version, KC_AWS_KEY_VERSION);
        kc_data_key_clear(&k);
}
END_TEST

START_TEST(test_re_encrypt_reads_no_plaintext) {
        /* ReEncrypt has no Plaintext; one that is there (even broken) is not looked at. */
        const char *body = "{\"CiphertextBlob\": \"" BLOB "\", \"Plaintext\": \"!\", \"SourceKeyId\": \"x\"}";
        struct kc_data_key k = {};
        struct kc_err err = {};

        ck_assert_int_eq(kc_aws_response_data_key("ReEncrypt", body, strlen(body), 0, &k, &err), 0);
        ck_assert_ptr_null(k.plaintext);
        ck_assert_uint_eq(k.blob_len, 8);
        ck_assert_str_eq(k.key_id, "");   /* no KeyId: none, as before */
        ck_assert_str_eq(k.source_key_id, "x");
        kc_data_key_clear(&k);
}
END_TEST

START_TEST(test_re_encrypt_source_key) {
        /* The source key's id comes from SourceKeyId, whatever name (an alias) the request gave. */
        const char *body = "{\"CiphertextBlob\": \"" BLOB "\", \"KeyId\": \"" KEY_ARN "\", "
                           "\"SourceKeyId\": \"arn:aws:kms:eu-west-1:111122223333:key/src-0123\"}";
        const char *bad = "{\"CiphertextBlob\": \"" BLOB "\", \"SourceKeyId\": \"key/../x\"}";
        const char *none = "{\"CiphertextBlob\": \"" BLOB "\", \"KeyId\": \"" KEY_ARN "\"}";
        struct kc_data_key k = {};
        struct kc_err err = {};

        ck_assert_int_eq(kc_aws_response_data_key("ReEncrypt", body, strlen(body), 0, &k, &err), 0);
        ck_assert_str_eq(k.key_id, KEY_UUID);
        ck_assert_str_eq(k.source_key_id, "src-0123");
        ck_assert_uint_eq(k.source_key_version, KC_AWS_KEY_VERSION);
        kc_data_key_clear(&k);
        assert_refused(kc_aws_response_data_key("ReEncrypt", bad, strlen(bad), 0, &k, &err), -EBADMSG, &err,
                       "SourceKeyId has a key id with characters other than");
        ck_assert_int_eq(kc_aws_response_data_key("ReEncrypt", none, strlen(none), 0, &k, &err), 0);
        ck_assert_str_eq(k.source_key_id, "");
        ck_assert_uint_eq(k.source_key_version, 0);
        kc_data_key_clear(&k);
        /* Only ReEncrypt has one: elsewhere the member is not read. */
        ck_assert_int_eq(kc_aws_response_data_key("Encrypt", bad, strlen(bad), 0, &k, &err), 0);
        ck_assert_str_eq(k.source_key_id, "");
        kc_data_key_clear(&k);
}
END_TEST

START_TEST(test_body_not_nul_terminated) {
        /* Only len bytes are the body: what follows in memory is not read. */
        char body[] = "{\"CiphertextBlob\": \"" BLOB "\"}XXXX";
        struct kc_data_key k = {};
        struct kc_err err = {};

        ck_assert_int_eq(kc_aws_response_data_key("ReEncrypt", body, strlen(body) - 4, 0, &k, &err), 0);
        kc_data_key_clear(&k);
        ck_assert_int_lt(kc_aws_response_data_key("ReEncrypt", body, 10, 0, &k, &err), 0);
}
END_TEST

static const struct bad {
        const char *body;
        size_t nbytes;
        const char *want;
} bad_data_keys[] = {
        { "", 32, "empty response body" },
        { "{\"CiphertextBlob\": ", 32, "response is not valid JSON (unexpected end of data, at byte 19)" },
        { "[\"CiphertextBlob\"]", 32, "response is an array, not a JSON object" },
        { "{\"a\": 1} trailing", 32, "response is not valid JSON (data after the object, at byte 9)" },
        { "{\"Plaintext\": \"" PT32 "\"}", 32, "no CiphertextBlob string" },
        { "{\"CiphertextBlob\": 7, \"Plaintext\": \"" PT32 "\"}", 32, "no CiphertextBlob string" },
        { "{\"CiphertextBlob\": null, \"Plaintext\": \"" PT32 "\"}", 32, "no CiphertextBlob string" },
        { "{\"CiphertextBlob\": \"AQID BAUG\", \"Plaintext\": \"" PT32 "\"}", 32, "CiphertextBlob is not base64" },
        { "{\"CiphertextBlob\": \"\", \"Plaintext\": \"" PT32 "\"}", 32, "CiphertextBlob is not base64" },
        /* A "\u0000" would cut the blob short: "AQIDBAUGBwg=" alone decodes. */
        { "{\"CiphertextBlob\": \"" BLOB "\\u0000AAAA\", \"Plaintext\": \"" PT32 "\"}", 32,
          "no CiphertextBlob string" },
        { "{\"CiphertextBlob\": \"" BLOB "\"}", 32, "no Plaintext string" },
        { "{\"CiphertextBlob\": \"" BLOB "\", \"Plaintext\": [\"" PT32 "\"]}", 32, "no Plaintext string" },
        { "{\"CiphertextBlob\": \"" BLOB "\", \"Plaintext\": \"" PT16 "\"}", 32, "has 16 bytes, not the 32" },
        { "{\"CiphertextBlob\": \"" BLOB "\", \"Plaintext\": \"" PT32 "\"}", 64, "has 32 bytes, not the 64" },
        { "{\"CiphertextBlob\": \"" BLOB "\", \"Plaintext\": \"AAA\"}", 32, "Plaintext is not base64" },
        { "{\"CiphertextBlob\": \"" BLOB "\", \"Plaintext\": \"AA=A\"}", 32, "Plaintext is not base64" },
        { "{\"CiphertextBlob\": \"" BLOB "\", \"Plaintext\": \"A===\"}", 32, "Plaintext is not base64" },
        { "{\"CiphertextBlob\": \"" BLOB "\", \"Plaintext\": \"AAAA\\nAAAA\"}", 32, "Plaintext is not base64" },
        { "{\"CiphertextBlob\": \"" BLOB "\", \"Plaintext\": \"AAAA\\u0000AAAA\"}", 32, "Plaintext holds a NUL" },
        { "{\"CiphertextBlob\": \"" BLOB "\", \"Plaintext\": \"" PT32 "\", \"KeyId\": 12}", 32,
          "KeyId is not a string" },
        { "{\"CiphertextBlob\": \"" BLOB "\", \"Plaintext\": \"" PT32 "\", \"KeyId\": \"" KEY_ARN "0123456789012345"
          "678901234567890\"}", 32, "key id of 67 characters, not 1..64" },
        { "{\"CiphertextBlob\": \"" BLOB "\", \"Plaintext\": \"" PT32 "\", \"KeyId\": \"arn:aws:kms:r:1:key/\"}", 32,
          "key id of 0 characters" },
        { "{\"CiphertextBlob\": \"" BLOB "\", \"Plaintext\": \"" PT32 "\", \"KeyId\": \"" KEY_ARN "\\n\"}", 32,
          "characters other than" },
        { "{\"CiphertextBlob\": \"" BLOB "\", \"Plaintext\": \"" PT32 "\", \"KeyId\": \"key/../x\"}", 32,
          "characters other than" },
        { "{\"CiphertextBlob\": \"" BLOB "\", \"Plaintext\": \"" PT32 "\", \"KeyId\": \"" KEY_ARN "\\u0000x\"}", 32,
          "KeyId is not a string" },
};

START_TEST(test_data_key_refused) {
        const struct bad *b = &bad_data_keys[_i];
        struct kc_data_key k = { .blob_len = 4242 };
        struct kc_err err = {};
        int r = kc_aws_response_data_key("GenerateDataKey", b->body, strlen(b->body), b->nbytes, &k, &err);

        assert_refused(r, -EBADMSG, &err, b->want);
        ck_assert_str_eq(strstr(err.msg, "AWS KMS GenerateDataKey: ") ? "" : err.msg, "");
        ck_assert_uint_eq(k.blob_len, 4242);   /* ret untouched */
        ck_assert_ptr_null(k.plaintext);
}
END_TEST

START_TEST(test_data_key_sizes) {
        /* The bounds themselves are accepted, one past them refused, before anything is decoded. */
        static const struct { size_t n; bool plaintext, ok; } cases[] = {
                { KC_AWS_MAX_DATA_KEY, true, true }, { KC_AWS_MAX_DATA_KEY + 1, true, false },
                { KC_AWS_MAX_CIPHERTEXT, false, true }, { KC_AWS_MAX_CIPHERTEXT + 1, false, false },
        };

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                _cleanup_free_ char *b64 = repeat(cases[i].n, true), *body = NULL;
                struct kc_data_key k = {};
                struct kc_err err = {};
                size_t nbytes = cases[i].plaintext ? KC_AWS_MAX_DATA_KEY : 0;
                int r;

                ck_assert_int_ge(asprintf(&body, "{\"CiphertextBlob\": \"%s\", \"Plaintext\": \"%s\"}",
                                          cases[i].plaintext ? BLOB : b64, b64), 0);
                r = kc_aws_response_data_key("GenerateDataKey", body, strlen(body), nbytes, &k, &err);
                if (cases[i].ok) {
                        ck_assert_int_eq(r, 0);
                        ck_assert_uint_eq(cases[i].plaintext ? kc_secret_size(k.plaintext) : k.blob_len, cases[i].n);
                } else
                        assert_refused(r, -EBADMSG, &err, cases[i].plaintext ? "" : "CiphertextBlob is not base64");
                kc_data_key_clear(&k);
        }
}
END_TEST

START_TEST(test_data_key_nbytes_over_limit) {
        struct kc_data_key k = {};
        struct kc_err err = {};

        assert_refused(kc_aws_response_data_key("GenerateDataKey", "{}", 2, KC_AWS_MAX_DATA_KEY + 1, &k, &err),
                       -EINVAL, &err, "over 1024 bytes");
}
END_TEST

/* ---- Decrypt ------------------------------------------------------------------------------ */

START_TEST(test_decrypt) {
        const char *body = "{\"Plaintext\": \"" PT16 "\", \"KeyId\": \"" KEY_ARN "\", \"EncryptionAlgorithm\": "
                           "\"SYMMETRIC_DEFAULT\"}";
        _cleanup_secret_ void *p = NULL;
        char id[65];
        struct kc_err err = {};

        ck_assert_int_eq(kc_aws_response_decrypt(body, strlen(body), &p, id, &err), 0);
        ck_assert_uint_eq(kc_secret_size(p), 16);
        ck_assert_mem_eq(p, "xxxxxxxxxxxxxxxx", 16);
        ck_assert_str_eq(id, KEY_UUID);
}
END_TEST

START_TEST(test_decrypt_refused) {
        static const struct { const char *body, *want; } cases[] = {
                { "{\"KeyId\": \"" KEY_ARN "\"}", "no Plaintext string" },
                { "{\"Plaintext\": \"\"}", "Plaintext is not base64 of 1..4096 bytes" },
                { "{\"Plaintext\": \"" PT16 "\", \"KeyId\": \"has space\"}", "characters other than" },
                { "{\"Plaintext\": \"" PT16 "\", \"KeyId\": {\"Arn\": \"x\"}}", "KeyId is not a string" },
                { "null", "response is null, not a JSON object" },
        };
        _cleanup_free_ char *big = repeat(KC_AWS_MAX_PLAINTEXT + 1, true), *body = NULL;
        void *p = (void *) 1;
        char id[65] = "untouched";
        struct kc_err err = {};

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                err = (struct kc_err) {};
                assert_refused(kc_aws_response_decrypt(cases[i].body, strlen(cases[i].body), &p, id, &err), -EBADMSG,
                               &err, cases[i].want);
                ck_assert_ptr_eq(p, (void *) 1);
                ck_assert_str_eq(id, "untouched");
        }
        ck_assert_int_ge(asprintf(&body, "{\"Plaintext\": \"%s\"}", big), 0);
        err = (struct kc_err) {};
        assert_refused(kc_aws_response_decrypt(body, strlen(body), &p, id, &err), -EBADMSG, &err, "not base64");
}
END_TEST

/* ---- DescribeKey, ScheduleKeyDeletion ----------------------------------------------------- */

START_TEST(test_describe_key) {
        /* moto's answer for a key pending deletion, trimmed. */
        const char *body = "{\"KeyMetadata\": {\"AWSAccountId\": \"111122223333\", \"Arn\": \"" KEY_ARN "\", "
                           "\"CreationDate\": 1714564800.798404, \"Description\": \"pgdata key\", \"Enabled\": false, "
                           "\"KeyId\": \"" KEY_UUID "\", \"KeyUsage\": null, \"KeyState\": \"PendingDeletion\", "
                           "\"DeletionDate\": 1715169600}}";
        struct kc_key_info info;
        struct kc_err err = {};

        ck_assert_int_eq(kc_aws_response_describe_key(body, strlen(body), &info, &err), 0);
        ck_assert_str_eq(info.provider, "aws");
        ck_assert_str_eq(info.arn, "aws:" KEY_ARN);
        ck_assert_str_eq(info.key_id, KEY_UUID);
        ck_assert_str_eq(info.alias, "");
        ck_assert_str_eq(info.description, "pgdata key");
        ck_assert_int_eq(info.state, KC_KEY_PENDING_DELETION);
        ck_assert_int_eq(info.created, 1714564800);
        ck_assert_int_eq(info.deletion_date, 1714564800 + 7 * 86400);
        ck_assert_uint_eq(info.current_version, KC_AWS_KEY_VERSION);
}
END_TEST

START_TEST(test_describe_key_defaults) {
        /* No KeyId: the Arn's; no dates: 0. */
        const char *body = "{\"KeyMetadata\": {\"Arn\": \"" KEY_ARN "\", \"KeyState\": \"PendingImport\"}}";
        struct kc_key_info info;
        struct kc_err err = {};

        ck_assert_int_eq(kc_aws_response_describe_key(body, strlen(body), &info, &err), 0);
        ck_assert_str_eq(info.key_id, KEY_UUID);
        ck_assert_int_eq(info.state, KC_KEY_PENDING_IMPORT);
        ck_assert_int_eq(info.created, 0);
        ck_assert_int_eq(info.deletion_date, 0);
}
END_TEST

/*
 * Every KeyState AWS KMS documents is read as itself, shown by its own
 * name, and only those of a key its owner withdrew (or whose material is
 * gone) revoke: a custom key store disconnected, a replica being made, a
 * primary Region being changed are not the owner's word on this key, and
 * a revoke=suspend volume must not be suspended for them.
 */
START_TEST(test_describe_key_states) {
        static const struct { const char *name; enum kc_key_state state; bool revoked; } cases[] = {
                { "Enabled", KC_KEY_ENABLED, false },
                { "Disabled", KC_KEY_DISABLED, true },
                { "PendingDeletion", KC_KEY_PENDING_DELETION, true },
                { "PendingReplicaDeletion", KC_KEY_PENDING_REPLICA_DELETION, true },
                { "PendingImport", KC_KEY_PENDING_IMPORT, true },
                { "Unavailable", KC_KEY_UNAVAILABLE, false },
                { "Creating", KC_KEY_CREATING, false },
                { "Updating", KC_KEY_UPDATING, false },
        };

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                _cleanup_free_ char *body = NULL;
                struct kc_key_info info;
                struct kc_err err = {};
                int r;

                ck_assert_int_ge(asprintf(&body, "{\"KeyMetadata\": {\"Arn\": \"" KEY_ARN "\", \"KeyState\": \"%s\"}}",
                                          cases[i].name), 0);
                r = kc_aws_response_describe_key(body, strlen(body), &info, &err);
                ck_assert_msg(r == 0, "%s: %s", cases[i].name, kc_err_msg(&err, r));
                ck_assert_int_eq(info.state, cases[i].state);
                ck_assert_str_eq(kc_key_state_to_string(info.state), cases[i].name);
                ck_assert_msg(kc_key_state_revoked(info.state) == cases[i].revoked, "%s", cases[i].name);
        }
        /* The local keystore's last state: a key whose material is gone. */
        ck_assert(kc_key_state_revoked(KC_KEY_DESTROYED));
}
END_TEST

START_TEST(test_describe_key_description) {
        /* Control characters become '?'; a cut at 255 bytes does not split "é" (c3 a9). */
        _cleanup_free_ char *body = NULL, *long_desc = malloc(2 * 200 + 3);
        struct kc_key_info info;
        struct kc_err err = {};
        size_t n;

        ck_assert_ptr_nonnull(long_desc);
        memcpy(long_desc, "ab", 2);
        for (size_t i = 0; i < 200; i++)
                memcpy(long_desc + 2 + 2 * i, "\xc3\xa9", 2);
        long_desc[402] = '\0';
        body = strdup("{\"KeyMetadata\": {\"Arn\": \"" KEY_ARN "\", \"KeyState\": \"Enabled\", "
                      "\"Description\": \"\\u001b[2Jx\\u007f\"}}");
        ck_assert_int_eq(kc_aws_response_describe_key(body, strlen(body), &info, &err), 0);
        ck_assert_str_eq(info.description, "?[2Jx?");
        free(body);
        ck_assert_int_ge(asprintf(&body, "{\"KeyMetadata\": {\"Arn\": \"" KEY_ARN "\", \"KeyState\": \"Enabled\", "
                                  "\"Description\": \"%s\"}}", long_desc), 0);
        ck_assert_int_eq(kc_aws_response_describe_key(body, strlen(body), &info, &err), 0);
        n = strlen(info.description);
        ck_assert_uint_eq(n, 254);   /* "ab" + 126 whole "é": the half at byte 254 is dropped */
        ck_assert_int_eq(memcmp(info.description, long_desc, n), 0);
}
END_TEST

START_TEST(test_describe_key_refused) {
        static const struct { const char *body, *want; } cases[] = {
                { "{\"Arn\": \"" KEY_ARN "\"}", "no KeyMetadata object" },
                { "{\"KeyMetadata\": \"" KEY_ARN "\"}", "no KeyMetadata object" },
                { "{\"KeyMetadata\": {\"KeyId\": \"" KEY_UUID "\"}}", "no Arn string" },
                { "{\"KeyMetadata\": {\"Arn\": 5}}", "no Arn string" },
                { "{\"KeyMetadata\": {\"Arn\": \"key/" KEY_UUID "\"}}", "Arn is not an ARN" },
                { "{\"KeyMetadata\": {\"Arn\": \"arn:aws:kms x\"}}", "Arn is not an ARN" },
                { "{\"KeyMetadata\": {\"Arn\": \"" KEY_ARN "\\u0000 x\"}}", "no Arn string" },
                { "{\"KeyMetadata\": {\"Arn\": \"" KEY_ARN "\", \"Description\": \"a\\u0000b\"}}",
                  "Description or KeyState" },
                { "{\"KeyMetadata\": {\"Arn\": \"" KEY_ARN "\", \"Description\": 5}}", "Description or KeyState" },
                { "{\"KeyMetadata\": {\"Arn\": \"" KEY_ARN "\", \"KeyState\": true}}", "Description or KeyState" },
                { "{\"KeyMetadata\": {\"Arn\": \"" KEY_ARN "\", \"CreationDate\": 1e300}}",
                  "CreationDate is not a date in 1970..9999" },
                { "{\"KeyMetadata\": {\"Arn\": \"" KEY_ARN "\", \"CreationDate\": -1}}",
                  "CreationDate is not a date" },
                { "{\"KeyMetadata\": {\"Arn\": \"" KEY_ARN "\", \"CreationDate\": 253402300800}}",
                  "CreationDate is not a date" },
                { "{\"KeyMetadata\": {\"Arn\": \"" KEY_ARN "\", \"DeletionDate\": \"2024-05-01\"}}",
                  "DeletionDate is not a number" },
                { "{\"KeyMetadata\": {\"Arn\": \"" KEY_ARN "\", \"DeletionDate\": null}}",
                  "DeletionDate is not a number" },
                { "{\"KeyMetadata\": {\"Arn\": \"" KEY_ARN "\", \"KeyId\": \"" KEY_UUID KEY_UUID "\"}}",
                  "key id of 72 characters" },
                /* Not "disabled", as it was: a state added later would suspend revoke=suspend volumes. */
                { "{\"KeyMetadata\": {\"Arn\": \"" KEY_ARN "\"}}", "no KeyState" },
                { "{\"KeyMetadata\": {\"Arn\": \"" KEY_ARN "\", \"KeyState\": \"Hibernating\"}}",
                  "KeyState \"Hibernating\" is not one" },
                /* The local keystore's last state, which AWS does not have. */
                { "{\"KeyMetadata\": {\"Arn\": \"" KEY_ARN "\", \"KeyState\": \"Destroyed\"}}",
                  "KeyState \"Destroyed\" is not one" },
                { "{\"KeyMetadata\": {\"Arn\": \"" KEY_ARN "\", \"KeyState\": \"Dis\\u001babled\"}}",
                  "KeyState \"(not printable)\"" },
        };
        struct kc_key_info info = { .created = 4242 };

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct kc_err err = {};
                int r = kc_aws_response_describe_key(cases[i].body, strlen(cases[i].body), &info, &err);

                assert_refused(r, -EBADMSG, &err, cases[i].want);
                ck_assert_int_eq(info.created, 4242);
        }
}
END_TEST

START_TEST(test_describe_key_arn_too_long) {
        _cleanup_free_ char *body = NULL, *pad = repeat(300, false);
        struct kc_key_info info;
        struct kc_err err = {};

        ck_assert_int_ge(asprintf(&body, "{\"KeyMetadata\": {\"Arn\": \"" KEY_ARN "%s\"}}", pad), 0);
        assert_refused(kc_aws_response_describe_key(body, strlen(body), &info, &err), -EBADMSG, &err,
                       "at most 251 printable characters");
}
END_TEST

START_TEST(test_deletion_date) {
        static const struct { const char *body; int r; time_t t; } cases[] = {
                { "{\"KeyId\": \"k\", \"DeletionDate\": 1715169600.001229}", 0, 1715169600 },
                { "{\"KeyId\": \"k\", \"DeletionDate\": 1715169600}", 0, 1715169600 },
                { "{\"KeyId\": \"k\"}", 0, 0 },   /* a multi-Region primary with replicas */
                { "{\"DeletionDate\": -1.5}", -EBADMSG, 0 },
                { "{\"DeletionDate\": 1e19}", -EBADMSG, 0 },
                { "{\"DeletionDate\": \"1715169600\"}", -EBADMSG, 0 },
                { "{\"DeletionDate\": [1715169600]}", -EBADMSG, 0 },
                { "", -EBADMSG, 0 },
        };

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct kc_err err = {};
                time_t t = 4242;
                int r = kc_aws_response_deletion_date(cases[i].body, strlen(cases[i].body), &t, &err);

                ck_assert_int_eq(r, cases[i].r);
                ck_assert_int_eq(t, r == 0 ? cases[i].t : 4242);
                if (r < 0)
                        assert_refused(r, r, &err, "AWS KMS ScheduleKeyDeletion: ");
        }
}
END_TEST

/* ---- error bodies ------------------------------------------------------------------------- */

static const struct error_case {
        long status;
        const char *body;
        int error;
        bool retry;
        const char *want;
} error_cases[] = {
        { 400, "{\"__type\": \"NotFoundException\", \"message\": \"Key 'x' does not exist\"}", -ENOKEY, false,
          "no such key (NotFoundException, HTTP 400, request id r-1): Key 'x' does not exist" },
        { 400, "{\"__type\": \"com.amazonaws.kms#DisabledException\", \"Message\": \"off\"}", -EKEYREVOKED, false,
          "the key is disabled (DisabledException" },
        { 400, "{\"__type\": \"ThrottlingException\"}", -EBUSY, true, "throttled" },
        { 400, "{\"message\": \"no type\"}", -EIO, false, "request failed (no error type, HTTP 400" },
        { 403, "{\"message\": \"The security token included in the request is invalid\"}", -EACCES, false,
          "no error type, HTTP 403" },
        { 429, "", -EBUSY, true, "HTTP 429" },
        { 500, "<html>Internal Server Error</html>", -EAGAIN, true, "no error type, HTTP 500" },
        { 503, "{\"__type\": ", -EAGAIN, true, "HTTP 503" },
        { 400, "{\"__type\": 42}", -EIO, false, "request failed (42, HTTP 400" },
        { 400, "{\"__type\": \"Bad\\nType\", \"message\": \"line\\r\\nX-Injected: 1\"}", -EIO, false,
          "(Bad?Type, HTTP 400, request id r-1): line??X-Injected: 1" },
        { 400, "[\"__type\", \"DisabledException\"]", -EIO, false, "no error type" },
        /* A front end's throttle: the type has a ":<url>" suffix, or is in the header only. */
        { 400, "{\"__type\": \"ThrottlingException:http://internal.amazon.com/coral/com.amazon.coral.availability/\"}",
          -EBUSY, true, "throttled (ThrottlingException, HTTP 400" },
        { 400, "{\"__type\": \"com.amazonaws.kms#DisabledException:http://internal/\"}", -EKEYREVOKED, false,
          "(DisabledException, HTTP 400" },
        /* The body's "code" names the type over its "__type". */
        { 400, "{\"__type\": \"ValidationException\", \"code\": \"NotFoundException\"}", -ENOKEY, false,
          "(NotFoundException" },
};

/* The type in an X-Amzn-ErrorType header, which names it over the body. */
static const struct error_header_case {
        const char *header, *body;
        int error;
        bool retry;
        const char *want;
} error_header_cases[] = {
        { "ThrottlingException:http://internal.amazon.com/coral/com.amazon.coral.availability/",
          "{\"message\": \"Rate exceeded\"}", -EBUSY, true, "throttled (ThrottlingException, HTTP 400" },
        { "ThrottlingException", "", -EBUSY, true, "throttled (ThrottlingException" },
        { "DisabledException", "{\"__type\": \"ValidationException\"}", -EKEYREVOKED, false, "(DisabledException" },
        { "", "{\"__type\": \"NotFoundException\"}", -ENOKEY, false, "(NotFoundException" },
};

START_TEST(test_error_map) {
        const struct error_case *c = &error_cases[_i];
        struct kc_err err = {};
        bool retry = !c->retry;
        int r = kc_aws_error_map(c->status, NULL, c->body, strlen(c->body), "Decrypt", "r-1", &retry, &err);

        assert_refused(r, c->error, &err, c->want);
        ck_assert_int_eq(retry, c->retry);
        ck_assert_str_eq(strstr(err.msg, "AWS KMS Decrypt: ") == err.msg ? "" : err.msg, "");
        for (const char *p = err.msg; *p; p++)
                ck_assert_int_ge((unsigned char) *p, 0x20);
}
END_TEST

START_TEST(test_error_header) {
        const struct error_header_case *c = &error_header_cases[_i];
        struct kc_err err = {};
        bool retry = !c->retry;
        int r = kc_aws_error_map(400, c->header, c->body, strlen(c->body), "Decrypt", "r-1", &retry, &err);

        assert_refused(r, c->error, &err, c->want);
        ck_assert_int_eq(retry, c->retry);
}
END_TEST

/* Refusals for the request's time, which the provider answers with a clock correction, and look-alikes. */
START_TEST(test_error_clock_skew) {
        static const struct { const char *header, *body; bool skew; } cases[] = {
                { NULL, "{\"__type\": \"InvalidSignatureException\", \"message\": \"Signature expired: "
                  "20240101T000000Z is now earlier than 20240101T000500Z (20240101T001000Z - 5 min.)\"}", true },
                { NULL, "{\"__type\": \"InvalidSignatureException\", \"message\": \"Signature not yet current: "
                  "20240101T010000Z is still later than 20240101T000500Z (20240101T000000Z + 5 min.)\"}", true },
                { NULL, "{\"code\": \"SignatureDoesNotMatch\", \"Message\": \"Signature expired: ...\"}", true },
                { NULL, "{\"__type\": \"com.amazonaws.s3#RequestTimeTooSkewed\"}", true },
                { "RequestExpired", "", true },
                { NULL, "{\"__type\": \"RequestInTheFuture\", \"message\": \"m\"}", true },
                /* A signature refused for another reason (a wrong secret key) is not a clock's fault. */
                { NULL, "{\"__type\": \"InvalidSignatureException\", \"message\": \"The request signature we "
                  "calculated does not match the signature you provided.\"}", false },
                { NULL, "{\"__type\": \"InvalidSignatureException\"}", false },
                { NULL, "{\"__type\": \"AccessDeniedException\", \"message\": \"Signature expired\"}", false },
                { "ThrottlingException", "{\"__type\": \"RequestTimeTooSkewed\"}", false },
                { NULL, "Signature expired", false },
                { NULL, "", false },
        };

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
                ck_assert_msg(kc_aws_error_clock_skew(cases[i].header, cases[i].body, strlen(cases[i].body)) ==
                              cases[i].skew, "case %zu", i);
        ck_assert(!kc_aws_error_clock_skew(NULL, NULL, 0));
}
END_TEST

START_TEST(test_error_body_by_length) {
        /* The body ends at its length: a type in the bytes after it is not read. */
        const char body[] = "{\"message\": \"m\"}{\"__type\": \"DisabledException\"}";
        struct kc_err err = {};
        int r = kc_aws_error_map(400, NULL, body, strlen("{\"message\": \"m\"}"), "Decrypt", NULL, NULL, &err);

        assert_refused(r, -EIO, &err, "no error type");
        err = (struct kc_err) {};
        r = kc_aws_error_map(400, NULL, body + 16, strlen(body + 16) - 2, "Decrypt", NULL, NULL, &err);
        assert_refused(r, -EIO, &err, "no error type");   /* cut inside the value: not JSON */
}
END_TEST

/*
 * A refusal for the key's state (KMSInvalidStateException) is an outage
 * exactly for the states the revocation check does not act on: neither
 * Enabled nor withdrawn (kc_key_state_revoked()), and is retried for
 * Enabled too (test_error_state_changed).  Those name the state and what
 * it means, and both request ids; every withdrawn state leaves the refusal
 * as it was.
 */
START_TEST(test_error_state_outage) {
        for (enum kc_key_state s = KC_KEY_ENABLED; kc_key_state_to_string(s); s++) {
                bool outage = !kc_key_state_revoked(s);
                struct kc_err err = {};
                int r = kc_aws_error_state_outage("Decrypt", "r-1", "1234abcd", s, "r-2", &err);

                ck_assert_msg(r == (outage ? -EAGAIN : 0), "%s: %d", kc_key_state_to_string(s), r);
                if (!outage) {
                        ck_assert_int_eq(err.error, 0);
                        continue;
                }
                assert_refused(r, -EAGAIN, &err, "AWS KMS Decrypt: key 1234abcd is ");
                ck_assert_ptr_nonnull(strstr(err.msg, kc_key_state_to_string(s)));
                ck_assert_ptr_nonnull(strstr(err.msg, "(KMSInvalidStateException, request id r-1; "
                                                      "DescribeKey request id r-2)"));
        }
}
END_TEST

START_TEST(test_error_state_outage_unavailable) {
        struct kc_err err = {};
        int r = kc_aws_error_state_outage("GenerateDataKey", NULL, "1234abcd", KC_KEY_UNAVAILABLE, "", &err);

        assert_refused(r, -EAGAIN, &err, "AWS KMS GenerateDataKey: key 1234abcd is Unavailable: its custom key "
                       "store is disconnected; an outage, not a refusal (KMSInvalidStateException, request id none; "
                       "DescribeKey request id none)");
        err = (struct kc_err) {};
        assert_refused(kc_aws_error_state_outage("Decrypt", "r-1", "k", KC_KEY_CREATING, "r-2", &err), -EAGAIN,
                       &err, "is Creating: it is a multi-Region replica still being created");
}
END_TEST

/*
 * Refused for its state, then Enabled by DescribeKey: the key changed in
 * between (enabled again), a race that a new try wins, not a refusal nor
 * an outage of its store.
 */
START_TEST(test_error_state_changed) {
        struct kc_err err = {};
        int r = kc_aws_error_state_outage("Decrypt", "r-1", "1234abcd", KC_KEY_ENABLED, "r-2", &err);

        assert_refused(r, -EAGAIN, &err, "AWS KMS Decrypt: key 1234abcd is Enabled: its state changed while the "
                       "request ran; retryable, not a refusal (KMSInvalidStateException, request id r-1; "
                       "DescribeKey request id r-2)");
        /* The neighbours keep their meanings: Disabled stands, Unavailable is an outage. */
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_aws_error_state_outage("Decrypt", "r-1", "k", KC_KEY_DISABLED, "r-2", &err), 0);
        ck_assert_int_eq(err.error, 0);
        assert_refused(kc_aws_error_state_outage("Decrypt", "r-1", "k", KC_KEY_UNAVAILABLE, "r-2", &err), -EAGAIN,
                       &err, "disconnected; an outage, not a refusal");
}
END_TEST

/* ---- credentials -------------------------------------------------------------------------- */

#define CREDS(extra) \
        "{\"Code\": \"Success\", \"Type\": \"AWS-HMAC\", \"AccessKeyId\": \"ASIAEXAMPLE\", " \
        "\"SecretAccessKey\": \"wJalrXUtnFEMI/K7MDENG\", \"Token\": \"IQoJb3JpZ2lu+/=\"" extra "}"

START_TEST(test_credentials) {
        const char *body = CREDS(", \"Expiration\": \"2024-05-01T12:00:00Z\"");
        _cleanup_(kc_aws_credentials_clear) struct kc_aws_credentials c = {};
        struct kc_err err = {};

        ck_assert_int_eq(kc_aws_response_credentials("instance metadata", 200, body, strlen(body), &c, &err), 0);
        ck_assert_str_eq(c.access_key_id, "ASIAEXAMPLE");
        ck_assert_str_eq(c.secret_access_key, "wJalrXUtnFEMI/K7MDENG");
        ck_assert_str_eq(c.session_token, "IQoJb3JpZ2lu+/=");
        ck_assert_uint_eq(kc_secret_size(c.secret_access_key), strlen("wJalrXUtnFEMI/K7MDENG") + 1);
        ck_assert_int_eq(c.expiration, 1714564800);
        ck_assert_ptr_null(c.source);
}
END_TEST

START_TEST(test_credentials_long_term) {
        /* The container endpoint sends no Code; keys without a token or an expiry do not expire. */
        const char *body = "{\"AccessKeyId\": \"AKIAEXAMPLE\", \"SecretAccessKey\": \"s3cr3t\"}";
        _cleanup_(kc_aws_credentials_clear) struct kc_aws_credentials c = {};
        struct kc_err err = {};

        ck_assert_int_eq(kc_aws_response_credentials("container", 200, body, strlen(body), &c, &err), 0);
        ck_assert_ptr_null(c.session_token);
        ck_assert_int_eq(c.expiration, 0);
}
END_TEST

static const struct cred_case {
        long status;
        const char *body;
        int error;
        const char *want;
} cred_cases[] = {
        { 404, CREDS(""), -EACCES, "container credentials: HTTP 404" },
        { 500, "", -EACCES, "HTTP 500" },
        { 200, "", -EBADMSG, "empty response body" },
        { 200, "{\"AccessKeyId\": ", -EBADMSG, "not valid JSON (unexpected end of data" },
        { 200, CREDS(", \"Code\": \"AssumeRoleUnauthorizedAccess\""), -EACCES, "Code is not Success" },
        { 200, "{\"Code\": 0, \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"s\"}", -EACCES, "Code is not Success" },
        { 200, "{\"AccessKeyId\": \"AKIAEXAMPLE\"}", -EBADMSG, "AccessKeyId or SecretAccessKey missing" },
        { 200, "{\"SecretAccessKey\": \"s\"}", -EBADMSG, "AccessKeyId or SecretAccessKey missing" },
        { 200, "{\"AccessKeyId\": \"\", \"SecretAccessKey\": \"s\"}", -EBADMSG, "AccessKeyId is not a string of printable" },
        { 200, "{\"AccessKeyId\": 12345, \"SecretAccessKey\": \"s\"}", -EBADMSG, "AccessKeyId is not a string" },
        { 200, "{\"AccessKeyId\": \"A\\r\\nX: 1\", \"SecretAccessKey\": \"s\"}", -EBADMSG, "AccessKeyId is not" },
        { 200, "{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"s \"}", -EBADMSG, "SecretAccessKey is not" },
        { 200, CREDS(", \"Token\": \"t\\nX-Injected: 1\""), -EBADMSG, "Token is not a string of printable" },
        { 200, CREDS(", \"Token\": \"t\\u0000u\""), -EBADMSG, "Token is not" },
        { 200, CREDS(", \"Expiration\": \"2024-05-01 12:00:00\""), -EBADMSG, "Expiration is not a date" },
        { 200, CREDS(", \"Expiration\": 1714564800"), -EBADMSG, "Expiration is not a date" },
        { 200, CREDS(", \"Expiration\": null"), -EBADMSG, "Expiration is not a date" },
        { 200, CREDS(", \"Expiration\": \"2024-02-30T12:00:00Z\""), -EBADMSG, "Expiration is not a date" },
        { 200, CREDS(", \"Expiration\": \"2024-05-01T12:00:00Z\\u0000x\""), -EBADMSG, "Expiration is not a date" },
};

START_TEST(test_credentials_refused) {
        const struct cred_case *c = &cred_cases[_i];
        _cleanup_(kc_aws_credentials_clear) struct kc_aws_credentials creds = {};
        struct kc_err err = {};
        int r = kc_aws_response_credentials("container", c->status, c->body, strlen(c->body), &creds, &err);

        assert_refused(r, c->error, &err, c->want);
        ck_assert_ptr_null(creds.access_key_id);
        ck_assert_ptr_null(creds.secret_access_key);
        ck_assert_ptr_null(creds.session_token);
}
END_TEST

START_TEST(test_imds_token) {
        static const char body[] = "AQAEAEXAMPLE-token_=\n";
        _cleanup_secret_ char *t = NULL;
        char *none = NULL;
        struct kc_err err = {};

        ck_assert_int_eq(kc_aws_response_imds_token(200, body, strlen(body), &t, &err), 0);
        ck_assert_str_eq(t, "AQAEAEXAMPLE-token_=");
        assert_refused(kc_aws_response_imds_token(403, "forbidden", 9, &none, &err), -EACCES, &err, "HTTP 403");
        err = (struct kc_err) {};
        assert_refused(kc_aws_response_imds_token(200, NULL, 0, &none, &err), -EACCES, &err, "HTTP 200");
        err = (struct kc_err) {};
        assert_refused(kc_aws_response_imds_token(200, " \r\n", 3, &none, &err), -EBADMSG, &err, "of 0 bytes");
        err = (struct kc_err) {};
        assert_refused(kc_aws_response_imds_token(200, "tok\r\nX-Injected: 1", 19, &none, &err), -EBADMSG, &err,
                       "not printable ASCII");
        err = (struct kc_err) {};
        assert_refused(kc_aws_response_imds_token(200, "tok\0en", 6, &none, &err), -EBADMSG, &err,
                       "not printable ASCII");
        ck_assert_ptr_null(none);
}
END_TEST

START_TEST(test_imds_role) {
        static const struct { long status; const char *body; int r; const char *role; } cases[] = {
                { 200, "kmscrypt-role", 0, "kmscrypt-role" },
                { 200, "kmscrypt-role\r\nsecond-role\n", 0, "kmscrypt-role" },
                { 200, "  padded \n", 0, "padded" },
                { 404, "", -ENOENT, "no IAM role attached (HTTP 404)" },
                { 200, "", -ENOENT, "no IAM role attached (HTTP 200)" },
                { 200, "\nrole", -EBADMSG, "bad role name" },
                { 200, "../../user-data", -EBADMSG, "bad role name" },
                { 200, "role?x=1", -EBADMSG, "bad role name" },
                { 200, "two words", -EBADMSG, "bad role name" },
                { 200, "r%2e", -EBADMSG, "bad role name" },
        };
        _cleanup_free_ char *long_role = repeat(129, false);

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                _cleanup_free_ char *role = NULL;
                struct kc_err err = {};
                int r = kc_aws_response_imds_role(cases[i].status, cases[i].body, strlen(cases[i].body), &role, &err);

                if (cases[i].r == 0) {
                        ck_assert_int_eq(r, 0);
                        ck_assert_str_eq(role, cases[i].role);
                } else {
                        assert_refused(r, cases[i].r, &err, cases[i].role);
                        ck_assert_ptr_null(role);
                }
        }
        {
                char *role = NULL;
                struct kc_err err = {};
                assert_refused(kc_aws_response_imds_role(200, long_role, 129, &role, &err), -EBADMSG, &err,
                               "bad role name");
                err = (struct kc_err) {};
                assert_refused(kc_aws_response_imds_role(200, "ro\0le", 5, &role, &err), -EBADMSG, &err,
                               "bad role name");
        }
}
END_TEST

/* ---- timestamps --------------------------------------------------------------------------- */

struct time_case {
        const char *s;
        time_t t;
};

/* parse takes every good text to its time and refuses every bad one (and NULL), leaving ret alone. */
static void check_time_parser(int (*parse)(const char *s, time_t *ret), const struct time_case *good, size_t n_good,
                              const char *const *bad, size_t n_bad) {
        for (size_t i = 0; i < n_good; i++) {
                time_t t = -1;
                ck_assert_msg(parse(good[i].s, &t) == 0, "%s refused", good[i].s);
                ck_assert_int_eq(t, good[i].t);
        }
        for (size_t i = 0; i < n_bad; i++) {
                time_t t = 4242;
                ck_assert_msg(parse(bad[i], &t) == -EINVAL, "\"%s\" accepted", bad[i]);
                ck_assert_int_eq(t, 4242);
        }
        ck_assert_int_eq(parse(NULL, &(time_t) { 0 }), -EINVAL);
}

START_TEST(test_parse_http_date) {
        static const struct time_case good[] = {
                { "Wed, 01 May 2024 12:00:00 GMT", 1714564800 },
                { "Thu, 29 Feb 2024 00:00:00 GMT", 1709164800 },
                { "Thu, 01 Jan 1970 00:00:00 GMT", 0 },
                { "Fri, 31 Dec 9999 23:59:59 GMT", KC_AWS_TIME_MAX },
        };
        static const char *const bad[] = {
                "", "Wed, 01 May 2024 12:00:00", "Wed, 01 May 2024 12:00:00 UTC", "Wed, 01 May 2024 12:00:00 GMT ",
                "Wed, 1 May 2024 12:00:00 GMT", "Wed 01 May 2024 12:00:00 GMT", "Xyz, 01 May 2024 12:00:00 GMT",
                "Wed, 01 Mai 2024 12:00:00 GMT", "Wed, 01 may 2024 12:00:00 GMT", "Wed, 31 Apr 2024 12:00:00 GMT",
                "Wed, 00 May 2024 12:00:00 GMT", "Wed, 01 May 2024 24:00:00 GMT", "Wed, 01 May 1969 12:00:00 GMT",
                "Wed, 01 May 2024 12:00:60 GMT", "Wed, 01 May 2024 12-00-00 GMT",
                /* RFC 850 and asctime: obsolete, no AWS endpoint sends them. */
                "Wednesday, 01-May-24 12:00:00 GMT", "Wed May  1 12:00:00 2024",
        };

        check_time_parser(kc_aws_parse_http_date, good, ARRAY_SIZE(good), bad, ARRAY_SIZE(bad));
}
END_TEST

START_TEST(test_parse_time) {
        static const struct time_case good[] = {
                { "2024-05-01T12:00:00Z", 1714564800 },
                { "2024-05-01T12:00:00.999999Z", 1714564800 },
                { "2024-05-01T12:00:00+00:00", 1714564800 },
                { "2024-02-29T00:00:00Z", 1709164800 },
                { "1970-01-01T00:00:00Z", 0 },
                { "9999-12-31T23:59:59Z", KC_AWS_TIME_MAX },
        };
        static const char *const bad[] = {
                "", "2024-05-01", "2024-05-01T12:00:00", "2024-05-01T12:00:00z", "2024-05-01T12:00:00+01:00",
                "2024-05-01T12:00:00.Z", "2024-05-01T12:00:00Z ", " 2024-05-01T12:00:00Z", "+024-05-01T12:00:00Z",
                "2024-5-01T12:00:00Z", "2024-05-01 12:00:00Z", "2023-02-29T00:00:00Z", "2024-04-31T00:00:00Z",
                "2024-13-01T00:00:00Z", "2024-00-01T00:00:00Z", "2024-05-00T00:00:00Z", "2024-05-01T24:00:00Z",
                "2024-05-01T12:60:00Z", "2024-05-01T12:00:60Z", "1969-12-31T23:59:59Z", "0000-01-01T00:00:00Z",
                "20240-05-01T12:00:00Z", "2024-05-01T12:00:00.5",
        };

        check_time_parser(kc_aws_parse_time, good, ARRAY_SIZE(good), bad, ARRAY_SIZE(bad));
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("aws-response");
        TCase *tc = tcase_create("kms");

        tcase_add_test(tc, test_generate_data_key);
        tcase_add_test(tc, test_re_encrypt_reads_no_plaintext);
        tcase_add_test(tc, test_re_encrypt_source_key);
        tcase_add_test(tc, test_body_not_nul_terminated);
        tcase_add_loop_test(tc, test_data_key_refused, 0, ARRAY_SIZE(bad_data_keys));
        tcase_add_test(tc, test_data_key_sizes);
        tcase_add_test(tc, test_data_key_nbytes_over_limit);
        tcase_add_test(tc, test_decrypt);
        tcase_add_test(tc, test_decrypt_refused);
        tcase_add_test(tc, test_describe_key);
        tcase_add_test(tc, test_describe_key_defaults);
        tcase_add_test(tc, test_describe_key_states);
        tcase_add_test(tc, test_describe_key_description);
        tcase_add_test(tc, test_describe_key_refused);
        tcase_add_test(tc, test_describe_key_arn_too_long);
        tcase_add_test(tc, test_deletion_date);
        tcase_add_loop_test(tc, test_error_map, 0, ARRAY_SIZE(error_cases));
        tcase_add_loop_test(tc, test_error_header, 0, ARRAY_SIZE(error_header_cases));
        tcase_add_test(tc, test_error_clock_skew);
        tcase_add_test(tc, test_error_body_by_length);
        tcase_add_test(tc, test_error_state_outage);
        tcase_add_test(tc, test_error_state_outage_unavailable);
        tcase_add_test(tc, test_error_state_changed);
        suite_add_tcase(s, tc);

        tc = tcase_create("credentials");
        tcase_add_test(tc, test_credentials);
        tcase_add_test(tc, test_credentials_long_term);
        tcase_add_loop_test(tc, test_credentials_refused, 0, ARRAY_SIZE(cred_cases));
        tcase_add_test(tc, test_imds_token);
        tcase_add_test(tc, test_imds_role);
        tcase_add_test(tc, test_parse_time);
        tcase_add_test(tc, test_parse_http_date);
        suite_add_tcase(s, tc);
        return s;
}
