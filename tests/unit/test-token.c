/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "agent/token.h"
#include "lib/json-util.h"
#include "lib/macro.h"
#include "tests/unit/check-main.h"


/* A valid token with a 60-byte blob whose bytes are 0, 1, 2, ... */
static void token_sample(struct kc_token *t) {
        struct kc_err err = {};

        *t = (struct kc_token) { .version = KC_TOKEN_VERSION, .key_version = 3 };
        strcpy(t->provider, "local");
        strcpy(t->key_id, "5f0c6a1e0e8b4f0d9a3c2b1a00112233");
        ck_assert_int_eq(kc_context_parse_kv("db-id=db-1,volume-id=vol-2,aws:rds:db-id=x", &t->context, &err), 0);
        t->wrapped_key_len = 60;
        t->wrapped_key = malloc(t->wrapped_key_len);
        ck_assert_ptr_nonnull(t->wrapped_key);
        for (size_t i = 0; i < t->wrapped_key_len; i++)
                t->wrapped_key[i] = (uint8_t) i;
}

static char *sample_json(void) {
        _cleanup_(kc_token_clear) struct kc_token t = {};
        char *json = NULL;

        token_sample(&t);
        ck_assert_int_eq(kc_token_format(&t, &json), 0);
        return json;
}

/* The sample token as a json-c object, for tests that break one member. */
static struct json_object *sample_object(void) {
        _cleanup_free_ char *json = sample_json();
        struct json_object *o = json_tokener_parse(json);

        ck_assert_ptr_nonnull(o);
        return o;
}

/* Parse o; expect failure r with a message containing want; the output must stay untouched. */
static void expect_refused(struct json_object *o, int r, const char *want) {
        const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        struct kc_token t = { .key_version = 4242 };
        struct kc_err err = {};

        ck_assert_int_eq(kc_token_parse(text, &t, &err), r);
        ck_assert_msg(strstr(err.msg, want), "message \"%s\" lacks \"%s\" for %.300s", err.msg, want, text);
        ck_assert_uint_eq(t.key_version, 4242);
        ck_assert_ptr_null(t.context);
}

static void expect_text_refused(const char *text, int r, const char *want) {
        struct kc_token t = { .key_version = 4242 };
        struct kc_err err = {};

        ck_assert_int_eq(kc_token_parse(text, &t, &err), r);
        ck_assert_msg(strstr(err.msg, want), "message \"%s\" lacks \"%s\"", err.msg, want);
        ck_assert_uint_eq(t.key_version, 4242);
}

static const char *const members[] = {
        "type", "keyslots", "kmscrypt_version", "provider", "key_id", "key_version", "context", "wrapped_key",
};

START_TEST(test_round_trip) {
        _cleanup_(kc_token_clear) struct kc_token a = {}, b = {};
        _cleanup_free_ char *json = NULL, *again = NULL;
        struct kc_err err = {};

        token_sample(&a);
        ck_assert_int_eq(kc_token_format(&a, &json), 0);
        ck_assert_int_eq(kc_token_parse(json, &b, &err), 0);
        ck_assert_uint_eq(b.version, KC_TOKEN_VERSION);
        ck_assert_str_eq(b.provider, a.provider);
        ck_assert_str_eq(b.key_id, a.key_id);
        ck_assert_uint_eq(b.key_version, a.key_version);
        ck_assert(kc_context_equal(a.context, b.context));
        ck_assert_uint_eq(b.wrapped_key_len, a.wrapped_key_len);
        ck_assert_mem_eq(b.wrapped_key, a.wrapped_key, a.wrapped_key_len);
        /* One spelling: formatting the parsed token gives the same text. */
        ck_assert_int_eq(kc_token_format(&b, &again), 0);
        ck_assert_str_eq(json, again);
        ck_assert_ptr_nonnull(strstr(json, "\"type\":\"kmscrypt\""));
        ck_assert_ptr_nonnull(strstr(json, "\"keyslots\":[]"));
}
END_TEST

/* The optional key check: absent stays absent; present round-trips, after wrapped_key; else refused. */
START_TEST(test_key_check) {
        _cleanup_(kc_token_clear) struct kc_token a = {}, b = {}, c = {};
        _cleanup_free_ char *json = NULL, *plain = NULL;
        static const char *const bad[] = {
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",         /* 31 bytes */
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g",         /* 33 bytes */
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",          /* not base64 */
                "",
        };
        struct kc_err err = {};

        token_sample(&a);
        ck_assert_int_eq(kc_token_format(&a, &plain), 0);
        ck_assert_ptr_null(strstr(plain, "key_check"));
        ck_assert_int_eq(kc_token_parse(plain, &c, &err), 0);
        ck_assert(!c.has_key_check);

        a.has_key_check = true;
        for (size_t i = 0; i < sizeof(a.key_check); i++)
                a.key_check[i] = (uint8_t) i;
        ck_assert_int_eq(kc_token_format(&a, &json), 0);
        ck_assert_ptr_nonnull(strstr(json, "\"wrapped_key\":\"AAEC"));
        ck_assert_ptr_nonnull(strstr(json, "\",\"key_check\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"}"));
        ck_assert_int_eq(kc_token_parse(json, &b, &err), 0);
        ck_assert(b.has_key_check);
        ck_assert_mem_eq(b.key_check, a.key_check, sizeof(a.key_check));

        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                _cleanup_json_ struct json_object *o = sample_object();

                json_object_object_add(o, "key_check", json_object_new_string(bad[i]));
                expect_refused(o, -EINVAL, "key_check");
        }
        {
                _cleanup_json_ struct json_object *o = sample_object();

                json_object_object_add(o, "key_check", json_object_new_int(1));
                expect_refused(o, -EINVAL, "member \"key_check\" is not a string");
        }
}
END_TEST

START_TEST(test_parse_documented_example) {
        /* The example in docs/token.md; "AAECAw==" is the bytes 0 1 2 3. */
        static const char json[] =
                "{\"type\":\"kmscrypt\",\"keyslots\":[],\"kmscrypt_version\":1,\"provider\":\"local\","
                "\"key_id\":\"5f0c6a1e0e8b4f0d9a3c2b1a00112233\",\"key_version\":3,"
                "\"context\":{\"db-id\":\"db-1\",\"volume-id\":\"vol-2\"},\"wrapped_key\":\"AAECAw==\"}";
        _cleanup_(kc_token_clear) struct kc_token t = {};
        _cleanup_free_ char *ref = NULL;
        struct kc_err err = {};

        ck_assert_int_eq(kc_token_parse(json, &t, &err), 0);
        ck_assert_uint_eq(t.wrapped_key_len, 4);
        ck_assert_mem_eq(t.wrapped_key, "\x00\x01\x02\x03", 4);
        ck_assert_str_eq(kc_context_get(t.context, "volume-id"), "vol-2");
        ck_assert_int_eq(kc_token_key_ref(&t, &ref), 0);
        ck_assert_str_eq(ref, "local:5f0c6a1e0e8b4f0d9a3c2b1a00112233");
}
END_TEST

START_TEST(test_base64_lengths) {
        /* Every padding case round-trips. */
        for (size_t n = 1; n <= 7; n++) {
                _cleanup_(kc_token_clear) struct kc_token a = {}, b = {};
                _cleanup_free_ char *json = NULL;
                struct kc_err err = {};

                token_sample(&a);
                a.wrapped_key_len = n;
                ck_assert_int_eq(kc_token_format(&a, &json), 0);
                ck_assert_int_eq(kc_token_parse(json, &b, &err), 0);
                ck_assert_uint_eq(b.wrapped_key_len, n);
                ck_assert_mem_eq(b.wrapped_key, a.wrapped_key, n);
        }
}
END_TEST

START_TEST(test_missing_member) {
        const char *name = members[_i];
        _cleanup_json_ struct json_object *o = sample_object();
        char want[64];

        json_object_object_del(o, name);
        snprintf(want, sizeof(want), "no \"%s\"", name);
        expect_refused(o, -EINVAL, want);
}
END_TEST

START_TEST(test_wrong_type) {
        const char *name = members[_i];
        _cleanup_json_ struct json_object *o = sample_object();
        struct json_object *cur = json_object_object_get(o, name);
        char want[64];

        /* A string where a string belongs would not be wrong: use an integer there, a string elsewhere. */
        json_object_object_add(o, name, json_object_is_type(cur, json_type_string) ? json_object_new_int(1)
                                                                                      : json_object_new_string("1"));
        snprintf(want, sizeof(want), "\"%s\" is not", name);
        expect_refused(o, -EINVAL, want);

        /* null, boolean and double are wrong for every member too. */
        json_object_object_add(o, name, NULL);
        expect_refused(o, -EINVAL, want);
        json_object_object_add(o, name, json_object_new_boolean(1));
        expect_refused(o, -EINVAL, want);
        json_object_object_add(o, name, json_object_new_double(1.5));
        expect_refused(o, -EINVAL, want);
}
END_TEST

START_TEST(test_unknown_member) {
        _cleanup_json_ struct json_object *o = sample_object();

        json_object_object_add(o, "keyslot_priority", json_object_new_string("high"));
        expect_refused(o, -EINVAL, "unknown member \"keyslot_priority\"");
        json_object_object_del(o, "keyslot_priority");
        /* A name that is not plain is not echoed. */
        json_object_object_add(o, "we\"ird\n", json_object_new_int(1));
        expect_refused(o, -EINVAL, "unknown member");
}
END_TEST

START_TEST(test_version) {
        _cleanup_json_ struct json_object *o = sample_object();

        json_object_object_add(o, "kmscrypt_version", json_object_new_int(2));
        expect_refused(o, -EPROTONOSUPPORT, "unsupported kmscrypt token version 2");
        json_object_object_add(o, "kmscrypt_version", json_object_new_int(0));
        expect_refused(o, -EPROTONOSUPPORT, "version 0");
        json_object_object_add(o, "kmscrypt_version", json_object_new_int(-1));
        expect_refused(o, -ERANGE, "\"kmscrypt_version\" is out of range");
        /* A version 2 token with members we do not know is "unsupported", not "unknown member". */
        json_object_object_add(o, "kmscrypt_version", json_object_new_int(2));
        json_object_object_add(o, "key_policy", json_object_new_string("new"));
        json_object_object_del(o, "key_version");
        expect_refused(o, -EPROTONOSUPPORT, "unsupported kmscrypt token version 2");
}
END_TEST

START_TEST(test_type_and_keyslots) {
        _cleanup_json_ struct json_object *o = sample_object(), *p = sample_object();
        struct json_object *slots = json_object_new_array();

        json_object_object_add(o, "type", json_object_new_string("systemd-tpm2"));
        expect_refused(o, -EINVAL, "token type is not \"kmscrypt\"");

        json_object_array_add(slots, json_object_new_string("0"));
        json_object_object_add(p, "keyslots", slots);
        expect_refused(p, -EINVAL, "keyslots must be empty");
}
END_TEST

START_TEST(test_provider_and_key_id) {
        static const struct {
                const char *member, *value;
                int r;
                const char *want;
        } cases[] = {
                { "provider", "", -EINVAL, "\"provider\" has invalid characters" },
                { "provider", "Local", -EINVAL, "\"provider\" has invalid characters" },
                { "provider", "lo:cal", -EINVAL, "\"provider\" has invalid characters" },
                { "provider", "averyveryverylongprovider", -E2BIG, "\"provider\" is longer than 15" },
                { "key_id", "", -EINVAL, "\"key_id\" has invalid characters" },
                { "key_id", "has space", -EINVAL, "\"key_id\" has invalid characters" },
                { "key_id", "tab\there", -EINVAL, "\"key_id\" has invalid characters" },
                { "key_id", "caf\xc3\xa9", -EINVAL, "\"key_id\" has invalid characters" },
        };

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                _cleanup_json_ struct json_object *o = sample_object();

                json_object_object_add(o, cases[i].member, json_object_new_string(cases[i].value));
                expect_refused(o, cases[i].r, cases[i].want);
        }
}
END_TEST

START_TEST(test_key_id_size) {
        _cleanup_json_ struct json_object *o = sample_object();
        _cleanup_(kc_token_clear) struct kc_token t = {};
        char id[257];
        struct kc_err err = {};

        memset(id, 'k', 255);
        id[255] = '\0';
        json_object_object_add(o, "key_id", json_object_new_string(id));
        ck_assert_int_eq(kc_token_parse(json_object_to_json_string(o), &t, &err), 0);
        ck_assert_uint_eq(strlen(t.key_id), 255);

        memset(id, 'k', 256);
        id[256] = '\0';
        json_object_object_add(o, "key_id", json_object_new_string(id));
        expect_refused(o, -E2BIG, "\"key_id\" is longer than 255");
}
END_TEST

START_TEST(test_embedded_nul) {
        expect_text_refused("{\"type\":\"kmscrypt\",\"keyslots\":[],\"kmscrypt_version\":1,\"provider\":\"lo\\u0000cal\","
                            "\"key_id\":\"k\",\"key_version\":1,\"context\":{\"db-id\":\"d\",\"volume-id\":\"v\"},"
                            "\"wrapped_key\":\"AAAA\"}",
                            -EINVAL, "\"provider\" contains a NUL");
}
END_TEST

START_TEST(test_key_version_range) {
        static const char *const bad[] = { "0", "-1", "4294967296", "99999999999999999999", "-99999999999999999999" };

        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                char json[512];

                snprintf(json, sizeof(json),
                         "{\"type\":\"kmscrypt\",\"keyslots\":[],\"kmscrypt_version\":1,\"provider\":\"local\","
                         "\"key_id\":\"k\",\"key_version\":%s,\"context\":{\"db-id\":\"d\",\"volume-id\":\"v\"},"
                         "\"wrapped_key\":\"AAAA\"}", bad[i]);
                expect_text_refused(json, -ERANGE, "\"key_version\" is out of range");
        }
        {
                _cleanup_(kc_token_clear) struct kc_token t = {};
                struct kc_err err = {};

                ck_assert_int_eq(kc_token_parse("{\"type\":\"kmscrypt\",\"keyslots\":[],\"kmscrypt_version\":1,"
                                                "\"provider\":\"local\",\"key_id\":\"k\",\"key_version\":4294967295,"
                                                "\"context\":{\"db-id\":\"d\",\"volume-id\":\"v\"},"
                                                "\"wrapped_key\":\"AAAA\"}", &t, &err), 0);
                ck_assert_uint_eq(t.key_version, UINT32_MAX);
        }
}
END_TEST

START_TEST(test_bad_base64) {
        static const char *const bad[] = {
                "",             /* empty */
                "AAA",          /* not a multiple of 4 */
                "AA=A",         /* padding inside */
                "A===",         /* three pads */
                "AA!A",         /* outside the alphabet */
                "AA-_",         /* URL-safe alphabet */
                "AAAA AAAA",    /* whitespace */
                "AAAA\n",
                "AR==",         /* non-zero bits under the padding: a second spelling of "AQ==" */
                "AAB=",         /* likewise for one pad ("AAE=" is canonical) */
                "====",
        };

        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                _cleanup_json_ struct json_object *o = sample_object();

                json_object_object_add(o, "wrapped_key", json_object_new_string(bad[i]));
                expect_refused(o, -EINVAL, "wrapped_key is not valid base64");
        }
}
END_TEST

static char *b64_of_zeros(size_t n) {
        size_t len = (n + 2) / 3 * 4;
        char *s = malloc(len + 1);

        ck_assert_ptr_nonnull(s);
        memset(s, 'A', len);
        if (n % 3 == 1)
                memcpy(s + len - 2, "==", 2);
        else if (n % 3 == 2)
                s[len - 1] = '=';
        s[len] = '\0';
        return s;
}

START_TEST(test_wrapped_size) {
        _cleanup_json_ struct json_object *o = sample_object();
        _cleanup_free_ char *ok = b64_of_zeros(KC_TOKEN_WRAPPED_MAX), *over = b64_of_zeros(KC_TOKEN_WRAPPED_MAX + 1),
                            *huge = b64_of_zeros(5000);
        _cleanup_(kc_token_clear) struct kc_token t = {};
        struct kc_err err = {};

        json_object_object_add(o, "wrapped_key", json_object_new_string(ok));
        ck_assert_int_eq(kc_token_parse(json_object_to_json_string(o), &t, &err), 0);
        ck_assert_uint_eq(t.wrapped_key_len, KC_TOKEN_WRAPPED_MAX);

        json_object_object_add(o, "wrapped_key", json_object_new_string(over));
        expect_refused(o, -E2BIG, "wrapped_key is longer than 2048");
        json_object_object_add(o, "wrapped_key", json_object_new_string(huge));
        expect_refused(o, -E2BIG, "wrapped_key is longer than 2048");
}
END_TEST

START_TEST(test_json_size) {
        _cleanup_json_ struct json_object *o = sample_object();
        _cleanup_free_ char *pad = malloc(KC_TOKEN_JSON_MAX);

        /* Over the limit the text is refused before it is parsed at all. */
        memset(pad, 'x', KC_TOKEN_JSON_MAX - 1);
        pad[KC_TOKEN_JSON_MAX - 1] = '\0';
        json_object_object_add(o, "padding", json_object_new_string(pad));
        expect_refused(o, -E2BIG, "token JSON is larger than 8192");
}
END_TEST

START_TEST(test_malformed_json) {
        static const char *const bad[] = {
                "",
                "{",
                "{\"type\":\"kmscrypt\",}",
                "{\"type\":'kmscrypt'}",
                "{\"type\":\"kmscrypt\"} trailing",
                "{\"type\":\"kmscrypt\"}{}",
                "{\"type\":\"km\xffscrypt\"}",         /* invalid UTF-8 */
        };
        static const char *const not_object[] = { "[]", "\"kmscrypt\"", "1", "null" };

        for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
                expect_text_refused(bad[i], -EINVAL, "token is not valid JSON");
        for (size_t i = 0; i < ARRAY_SIZE(not_object); i++)
                expect_text_refused(not_object[i], -EINVAL, ", not a JSON object");
        /* json-c takes NaN even in strict mode; it is still no integer. */
        expect_text_refused("{\"kmscrypt_version\":NaN}", -EINVAL, "\"kmscrypt_version\" is not an integer");
}
END_TEST

START_TEST(test_context_invalid) {
        static const char *const bad[] = {
                "{\"db-id\":1}",                /* value not a string */
                "{\"db-id\":{\"a\":\"b\"}}",
                "{\"\":\"empty key\"}",
                "{\"db-id\":\"tab\\tin value\"}", /* control character */
        };

        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                _cleanup_json_ struct json_object *o = sample_object();
                struct kc_token t = {};
                struct kc_err err = {};

                json_object_object_add(o, "context", json_tokener_parse(bad[i]));
                ck_assert_int_lt(kc_token_parse(json_object_to_json_string(o), &t, &err), 0);
                ck_assert_msg(err.msg[0], "no message for context %s", bad[i]);
                ck_assert_ptr_null(t.context);
        }
}
END_TEST

START_TEST(test_format_refuses_invalid) {
        _cleanup_(kc_token_clear) struct kc_token t = {};
        _cleanup_free_ char *ref = NULL;
        char *json = NULL;

        token_sample(&t);
        t.version = 2;
        ck_assert_int_eq(kc_token_format(&t, &json), -EPROTONOSUPPORT);
        t.version = KC_TOKEN_VERSION;
        t.key_version = 0;
        ck_assert_int_eq(kc_token_format(&t, &json), -EINVAL);
        t.key_version = 1;
        strcpy(t.provider, "Bad");
        ck_assert_int_eq(kc_token_format(&t, &json), -EINVAL);
        ck_assert_int_eq(kc_token_key_ref(&t, &ref), -EINVAL);
        strcpy(t.provider, "local");
        t.wrapped_key_len = KC_TOKEN_WRAPPED_MAX + 1;
        ck_assert_int_eq(kc_token_format(&t, &json), -E2BIG);
        t.wrapped_key_len = 0;
        ck_assert_int_eq(kc_token_format(&t, &json), -EINVAL);
        ck_assert_ptr_null(json);
}
END_TEST

START_TEST(test_clear_twice) {
        struct kc_token t = {};

        token_sample(&t);
        kc_token_clear(&t);
        ck_assert_ptr_null(t.context);
        ck_assert_ptr_null(t.wrapped_key);
        kc_token_clear(&t);
        kc_token_clear(NULL);
}
END_TEST

/* The reencryption member: round trip, and every way it can be broken is refused by name. */
static struct json_object *reencrypt_object(void) {
        struct json_object *o = sample_object(), *re = json_object_new_object();

        ck_assert_ptr_nonnull(re);
        json_object_object_add(re, "wrapped_passphrase", json_object_new_string("AAECAw=="));
        json_object_object_add(re, "wrapped_key", json_object_new_string("BAUGBwg="));
        json_object_object_add(re, "key_version", json_object_new_int(4));
        json_object_object_add(re, "keyslot_old", json_object_new_int(1));
        json_object_object_add(re, "keyslot_new", json_object_new_int(2));
        json_object_object_add(o, "kmscrypt_reencrypt", re);
        return o;
}

START_TEST(test_reencrypt_member) {
        _cleanup_(kc_token_clear) struct kc_token t = {};
        _cleanup_free_ char *again = NULL;
        struct json_object *o = reencrypt_object(), *re;
        const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        struct kc_err err = {};

        ck_assert_int_eq(kc_token_parse(text, &t, &err), 0);
        ck_assert_ptr_nonnull(t.reencrypt);
        ck_assert_uint_eq(t.reencrypt->wrapped_passphrase_len, 4);
        ck_assert_uint_eq(t.reencrypt->wrapped_key[4], 8);
        ck_assert_uint_eq(t.reencrypt->key_version, 4);
        ck_assert_int_eq(t.reencrypt->keyslot_old, 1);
        ck_assert_int_eq(t.reencrypt->keyslot_new, 2);
        ck_assert_int_eq(kc_token_format(&t, &again), 0);
        ck_assert_str_eq(again, text);
        json_object_put(o);

        o = reencrypt_object();
        re = json_object_object_get(o, "kmscrypt_reencrypt");
        json_object_object_add(re, "extra", json_object_new_int(1));
        expect_refused(o, -EINVAL, "kmscrypt_reencrypt has unknown member \"extra\"");
        json_object_put(o);
        o = reencrypt_object();
        json_object_object_del(json_object_object_get(o, "kmscrypt_reencrypt"), "wrapped_passphrase");
        expect_refused(o, -EINVAL, "has no \"wrapped_passphrase\"");
        json_object_put(o);
        o = reencrypt_object();
        json_object_object_add(json_object_object_get(o, "kmscrypt_reencrypt"), "keyslot_new", json_object_new_int(32));
        expect_refused(o, -ERANGE, "keyslot_new");
        json_object_put(o);
        o = reencrypt_object();
        json_object_object_add(json_object_object_get(o, "kmscrypt_reencrypt"), "keyslot_new", json_object_new_int(1));
        expect_refused(o, -EINVAL, "keyslot 1 twice");
        json_object_put(o);
        o = reencrypt_object();
        json_object_object_add(json_object_object_get(o, "kmscrypt_reencrypt"), "wrapped_key", json_object_new_string("AB=="));
        expect_refused(o, -EINVAL, "wrapped_key is not valid base64");
        json_object_put(o);
        o = reencrypt_object();
        json_object_object_add(json_object_object_get(o, "kmscrypt_reencrypt"), "key_version", json_object_new_int(0));
        expect_refused(o, -ERANGE, "key_version");
        json_object_put(o);
        o = sample_object();
        json_object_object_add(o, "kmscrypt_reencrypt", json_object_new_string("x"));
        expect_refused(o, -EINVAL, "\"kmscrypt_reencrypt\" is not an object");
        json_object_put(o);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("token");
        TCase *tc = tcase_create("parse");

        tcase_add_test(tc, test_round_trip);
        tcase_add_test(tc, test_reencrypt_member);
        tcase_add_test(tc, test_parse_documented_example);
        tcase_add_test(tc, test_base64_lengths);
        tcase_add_loop_test(tc, test_missing_member, 0, ARRAY_SIZE(members));
        tcase_add_loop_test(tc, test_wrong_type, 0, ARRAY_SIZE(members));
        tcase_add_test(tc, test_unknown_member);
        tcase_add_test(tc, test_version);
        tcase_add_test(tc, test_type_and_keyslots);
        tcase_add_test(tc, test_provider_and_key_id);
        tcase_add_test(tc, test_key_id_size);
        tcase_add_test(tc, test_embedded_nul);
        tcase_add_test(tc, test_key_version_range);
        tcase_add_test(tc, test_bad_base64);
        tcase_add_test(tc, test_wrapped_size);
        tcase_add_test(tc, test_json_size);
        tcase_add_test(tc, test_malformed_json);
        tcase_add_test(tc, test_context_invalid);
        tcase_add_test(tc, test_format_refuses_invalid);
        tcase_add_test(tc, test_clear_twice);
        tcase_add_test(tc, test_key_check);
        suite_add_tcase(s, tc);
        return s;
}
