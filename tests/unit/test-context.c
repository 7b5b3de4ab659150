/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <string.h>

#include "agent/context.h"
#include "tests/unit/check-main.h"

/*
 * The published vectors of docs/encryption-context.md (recomputed
 * independently by tests/vectors/crosscheck.py).  Each context is given in
 * both text syntaxes and as pairs in a non-canonical order; all three must
 * produce exactly the canonical hex.
 */
static const struct vector {
        const char *name;
        const char *kv;
        const char *json;
        const char *pairs[5][2];
        const char *canonical_hex;
} vectors[] = {
        {
                .name = "basic",
                .kv = "volume-id=vol-ad8c6542,db-id=db-CQYSMDPBRZ7BPMH7Y3RTDG5QY",
                .json = "{\"db-id\":\"db-CQYSMDPBRZ7BPMH7Y3RTDG5QY\",\"volume-id\":\"vol-ad8c6542\"}",
                .pairs = { { "volume-id", "vol-ad8c6542" }, { "db-id", "db-CQYSMDPBRZ7BPMH7Y3RTDG5QY" } },
                .canonical_hex =
                        "4b435831000000020000000564622d69640000001c64622d435159534d445042525a3742504d48375933525444"
                        "4735515900000009766f6c756d652d69640000000c766f6c2d6164386336353432",
        },
        {
                .name = "colon-keys",
                .kv = "aws:rds:db-id=db-CQYSMDPBRZ7BPMH7Y3RTDG5QY,aws:ebs:id=vol-ad8c6542",
                .json = "{\"aws:rds:db-id\":\"db-CQYSMDPBRZ7BPMH7Y3RTDG5QY\",\"aws:ebs:id\":\"vol-ad8c6542\"}",
                .pairs = { { "aws:rds:db-id", "db-CQYSMDPBRZ7BPMH7Y3RTDG5QY" }, { "aws:ebs:id", "vol-ad8c6542" } },
                .canonical_hex =
                        "4b435831000000020000000a6177733a6562733a69640000000c766f6c2d61643863363534320000000d6177"
                        "733a7264733a64622d69640000001c64622d435159534d445042525a3742504d4837593352544447355159",
        },
        {
                .name = "non-ascii",
                .kv = "r\xc3\xa9gion=Z\xc3\xbcrich,db-id=db-1,Owner=\xc3\xa9quipe donn\xc3\xa9""es,"
                      "\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87=\xd0\xb7\xd0\xbd\xd0\xb0\xd1\x87\xd0\xb5\xd0\xbd\xd0\xb8\xd0\xb5",
                .json = "{ \"r\\u00e9gion\" : \"Z\xc3\xbcrich\", \"db-id\":\"db-1\",\n"
                        "  \"Owner\":\"\\u00e9quipe donn\xc3\xa9""es\", \"\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87\":"
                        "\"\\u0437\\u043d\\u0430\\u0447\\u0435\\u043d\\u0438\\u0435\" }",
                .pairs = {
                        { "r\xc3\xa9gion", "Z\xc3\xbcrich" }, { "db-id", "db-1" },
                        { "Owner", "\xc3\xa9quipe donn\xc3\xa9""es" },
                        { "\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87",
                          "\xd0\xb7\xd0\xbd\xd0\xb0\xd1\x87\xd0\xb5\xd0\xbd\xd0\xb8\xd0\xb5" },
                },
                .canonical_hex =
                        "4b43583100000004000000054f776e657200000010c3a9717569706520646f6e6ec3a965730000000564622d"
                        "69640000000464622d310000000772c3a967696f6e000000075ac3bc7269636800000008d0bad0bbd18ed187"
                        "00000010d0b7d0bdd0b0d187d0b5d0bdd0b8d0b5",
        },
        {
                .name = "prefix-empty",
                .kv = "db-id-2=x,db=,DB=upper,db-id=db-1",
                .json = "{\"db-id-2\":\"x\",\"db\":\"\",\"DB\":\"upper\",\"db-id\":\"db-1\"}",
                .pairs = { { "db-id-2", "x" }, { "db", "" }, { "DB", "upper" }, { "db-id", "db-1" } },
                .canonical_hex =
                        "4b43583100000004000000024442000000057570706572000000026462000000000000000564622d69640000"
                        "000464622d310000000764622d69642d320000000178",
        },
        {
                .name = "escaped",
                .kv = "note=a\\,b\\=c\\\\d,db-id=db-1",
                .json = "{\"note\":\"a,b=c\\\\d\",\"db-id\":\"db-1\"}",
                .pairs = { { "note", "a,b=c\\d" }, { "db-id", "db-1" } },
                .canonical_hex =
                        "4b435831000000020000000564622d69640000000464622d31000000046e6f746500000007612c623d635c64",
        },
        {
                .name = "empty",
                .kv = "",
                .json = " { } ",
                .canonical_hex = "4b43583100000000",
        },
};

static char *canonical_hex(const struct kc_context *c) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        char *hex;

        ck_assert_int_eq(kc_context_canonical(c, &buf, &len), 0);
        hex = malloc(len * 2 + 1);
        ck_assert_ptr_nonnull(hex);
        for (size_t i = 0; i < len; i++)
                sprintf(hex + 2 * i, "%02x", buf[i]);
        return hex;
}

START_TEST(test_vectors) {
        const struct vector *v = &vectors[_i];
        _cleanup_(kc_context_freep) struct kc_context *kv = NULL, *json = NULL, *built = NULL;
        _cleanup_free_ char *h1 = NULL, *h2 = NULL, *h3 = NULL;
        struct kc_err err = {};

        ck_assert_msg(kc_context_parse_kv(v->kv, &kv, &err) == 0, "%s: %s", v->name, err.msg);
        ck_assert_msg(kc_context_parse_json(v->json, &json, &err) == 0, "%s: %s", v->name, err.msg);
        ck_assert_int_eq(kc_context_new(&built), 0);
        for (size_t i = 0; i < ARRAY_SIZE(v->pairs) && v->pairs[i][0]; i++)
                ck_assert_int_eq(kc_context_add(built, v->pairs[i][0], v->pairs[i][1], &err), 0);

        h1 = canonical_hex(kv);
        h2 = canonical_hex(json);
        h3 = canonical_hex(built);
        ck_assert_str_eq(h1, v->canonical_hex);
        ck_assert_str_eq(h2, v->canonical_hex);
        ck_assert_str_eq(h3, v->canonical_hex);
        ck_assert(kc_context_equal(kv, json));
        ck_assert(kc_context_equal(json, built));
}
END_TEST

/* Keys come back in memcmp order whatever the input order. */
START_TEST(test_sorted_accessors) {
        _cleanup_(kc_context_freep) struct kc_context *c = NULL;

        ck_assert_int_eq(kc_context_parse_kv("b=2,a\\:x=3,B=1,a=4", &c, NULL), 0);
        ck_assert_uint_eq(kc_context_count(c), 4);
        ck_assert_str_eq(kc_context_key(c, 0), "B");
        ck_assert_str_eq(kc_context_key(c, 1), "a");
        ck_assert_str_eq(kc_context_key(c, 2), "a:x");
        ck_assert_str_eq(kc_context_key(c, 3), "b");
        ck_assert_str_eq(kc_context_value(c, 2), "3");
        ck_assert_ptr_null(kc_context_key(c, 4));
        ck_assert_ptr_null(kc_context_value(c, 4));
        ck_assert_str_eq(kc_context_get(c, "a:x"), "3");
        ck_assert_str_eq(kc_context_get(c, "B"), "1");
        ck_assert_ptr_null(kc_context_get(c, "A"));
        ck_assert_ptr_null(kc_context_get(c, "a:"));
        ck_assert_uint_eq(kc_context_count(NULL), 0);
}
END_TEST

struct bad_text {
        const char *text;
        int error;
        const char *msg;  /* substring the message must contain */
};

static void check_refused(int (*parse)(const char *, struct kc_context **, struct kc_err *),
                          const struct bad_text *b) {
        struct kc_context *sentinel = (struct kc_context *) &sentinel, *c = sentinel;
        struct kc_err err = {};
        int r;

        r = parse(b->text, &c, &err);
        ck_assert_msg(r == b->error, "\"%s\": got %d (%s), want %d", b->text, r, err.msg, b->error);
        ck_assert_msg(c == sentinel, "\"%s\": output written on failure", b->text);
        ck_assert_int_eq(err.error, b->error);
        ck_assert_msg(strstr(err.msg, b->msg), "\"%s\": message \"%s\" lacks \"%s\"", b->text, err.msg, b->msg);
}

static const struct bad_text bad_kv[] = {
        { "db-id", -EINVAL, "pair 1 has no '='" },
        { "db-id=1,volume-id", -EINVAL, "pair 2 has no '='" },
        { "db-id=1,", -EINVAL, "pair 2 is empty" },
        { ",db-id=1", -EINVAL, "pair 1 is empty" },
        { "db-id=1,,v=2", -EINVAL, "pair 2 is empty" },
        { "db-id=a=b", -EINVAL, "second '='" },
        { "db-id=1\\", -EINVAL, "lone backslash" },
        { "db\\", -EINVAL, "lone backslash" },
        { "=x", -EINVAL, "pair 1: empty key" },
        { "db-id=1,db-id=2", -EINVAL, "duplicate key \"db-id\"" },
        { "db-id=1,db\\-id=2", -EINVAL, "duplicate key \"db-id\"" },
        /* invalid UTF-8, in values (named by key) and in keys (named by position) */
        { "k=\xc0\xaf", -EINVAL, "key \"k\": value has overlong UTF-8 encoding at byte 0" },
        { "k=ab\xe0\x80\xaf", -EINVAL, "key \"k\": value has overlong UTF-8 encoding at byte 2" },
        { "k=\xf0\x80\x80\xaf", -EINVAL, "overlong" },
        { "k=\xed\xa0\x80", -EINVAL, "surrogate" },
        { "k=\xed\xbf\xbf", -EINVAL, "surrogate" },
        { "k=\xf4\x90\x80\x80", -EINVAL, "above U+10FFFF" },
        { "k=\xf7\xbf\xbf\xbf", -EINVAL, "above U+10FFFF" },
        { "k=\xf8\x88\x80\x80\x80", -EINVAL, "invalid UTF-8 byte" },
        { "k=\xff", -EINVAL, "invalid UTF-8 byte" },
        { "k=\x80", -EINVAL, "invalid UTF-8 byte" },
        { "k=x\xe2\x82", -EINVAL, "truncated UTF-8 sequence at byte 1" },
        { "k=\xe2\x82x", -EINVAL, "truncated UTF-8 sequence" },
        { "k=\xf0\x9f\x98", -EINVAL, "truncated UTF-8 sequence" },
        { "a=1,k\xc3=v", -EINVAL, "pair 2: key has truncated UTF-8 sequence at byte 1" },
        { "\xed\xa0\x80=v", -EINVAL, "pair 1: key has UTF-16 surrogate" },
        /* control characters, C0 and C1, in values and keys */
        { "k=a\tb", -EINVAL, "key \"k\": value has control character at byte 1" },
        { "k=\x01", -EINVAL, "control character" },
        { "k=\x1f", -EINVAL, "control character" },
        { "k=\x7f", -EINVAL, "control character" },
        { "k=\xc2\x80", -EINVAL, "control character" },
        { "k=\xc2\x85", -EINVAL, "control character" },
        { "k=\xc2\x9f", -EINVAL, "control character" },
        { "k\n=v", -EINVAL, "pair 1: key has control character at byte 1" },
        /* U+FFFD, which only a lossy decoder writes */
        { "k=a\xef\xbf\xbd", -EINVAL, "key \"k\": value has replacement character U+FFFD at byte 1" },
        { "\xef\xbf\xbd=v", -EINVAL, "pair 1: key has replacement character U+FFFD" },
};

START_TEST(test_kv_refused) {
        check_refused(kc_context_parse_kv, &bad_kv[_i]);
}
END_TEST

/* The edges of the refused ranges are accepted. */
START_TEST(test_utf8_edges_accepted) {
        static const char *const ok[] = {
                "k=~",                       /* U+007E */
                "k=\xc2\xa0",                /* U+00A0, first after C1 */
                "k=\xdf\xbf",                /* U+07FF */
                "k=\xe0\xa0\x80",            /* U+0800, shortest 3-byte */
                "k=\xed\x9f\xbf",            /* U+D7FF, before surrogates */
                "k=\xee\x80\x80",            /* U+E000, after surrogates */
                "k=\xef\xbf\xbc",            /* U+FFFC, before the refused U+FFFD */
                "k=\xef\xbf\xbe",            /* U+FFFE, after it */
                "k=\xf0\x90\x80\x80",        /* U+10000, shortest 4-byte */
                "k=\xf4\x8f\xbf\xbf",        /* U+10FFFF, the last */
                "k=a b",                     /* spaces are not control characters */
        };
        for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
                _cleanup_(kc_context_freep) struct kc_context *c = NULL;
                struct kc_err err = {};
                ck_assert_msg(kc_context_parse_kv(ok[i], &c, &err) == 0, "%zu: %s", i, err.msg);
                ck_assert_str_eq(kc_context_get(c, "k"), ok[i] + 2);
        }
}
END_TEST

static const struct bad_text bad_json[] = {
        { "{\"a\":\"1\",\"a\":\"2\"}", -EINVAL, "duplicate key \"a\"" },
        { "{\"a\":\"1\",\"b\":\"x\",\"a\":\"1\"}", -EINVAL, "duplicate key \"a\"" },
        { "{\"a\":\"1\",\"\\u0061\":\"2\"}", -EINVAL, "duplicate key \"a\"" },
        { "{\"a\":1,\"a\":\"2\"}", -EINVAL, "key \"a\": value is a number" },
        { "{\"db-id\":1}", -EINVAL, "key \"db-id\": value is a number" },
        { "{\"db-id\":-1.5e3}", -EINVAL, "value is a number" },
        { "{\"db-id\":null}", -EINVAL, "key \"db-id\": value is null" },
        { "{\"db-id\":true}", -EINVAL, "value is a boolean" },
        { "{\"db-id\":{\"x\":\"y\"}}", -EINVAL, "value is an object" },
        { "{\"db-id\":[\"x\"]}", -EINVAL, "value is an array" },
        { "{\"k\\n\":1}", -EINVAL, "pair 1: key has control character" },
        { "[\"db-id\"]", -EINVAL, "is an array, not a JSON object" },
        { "\"db-id\"", -EINVAL, "is a string, not a JSON object" },
        { "", -EINVAL, "context is not valid JSON (empty)" },
        { "{\"a\":\"1\"", -EINVAL, "context is not valid JSON (unexpected end of data, at byte 8)" },
        { "{\"a\":\"1\"} x", -EINVAL, "context is not valid JSON (data after the object, at byte 10)" },
        { "{\"a\":\"1\"}{}", -EINVAL, "context is not valid JSON (data after the object, at byte 9)" },
        { "{\"a\":\"1\",}", -EINVAL, "not valid JSON" },
        { "{'a':'1'}", -EINVAL, "not valid JSON" },
        { "{\"\":\"1\"}", -EINVAL, "pair 1: empty key" },
        /* json-c would turn these into U+FFFD; they are refused instead */
        { "{\"k\":\"\\ud800\"}", -EINVAL, "member 1: value has an unpaired UTF-16 surrogate escape" },
        { "{\"k\":\"\\udc00\"}", -EINVAL, "unpaired UTF-16 surrogate" },
        { "{\"k\":\"\\ud800\\u0041\"}", -EINVAL, "unpaired UTF-16 surrogate" },
        { "{\"k\":\"\\ud800x\"}", -EINVAL, "unpaired UTF-16 surrogate" },
        { "{\"a\":\"1\",\"\\udfff\":\"v\"}", -EINVAL, "member 2: key has an unpaired UTF-16 surrogate" },
        { "{\"k\":\"a\\u0000b\"}", -EINVAL, "key \"k\": value has control character at byte 1" },
        { "{\"k\":\"\\u0085\"}", -EINVAL, "control character" },
        { "{\"k\":\"\x01\"}", -EINVAL, "control character" },
        { "{\"k\":\"\xc0\xaf\"}", -EINVAL, "overlong" },
        { "{\"k\":\"\xed\xa0\x80\"}", -EINVAL, "surrogate" },
        { "{\"k\":\"\\ufffd\"}", -EINVAL, "key \"k\": value has replacement character U+FFFD at byte 0" },
        { "{\"k\":\"\xef\xbf\xbd\"}", -EINVAL, "replacement character U+FFFD" },
};

START_TEST(test_json_refused) {
        check_refused(kc_context_parse_json, &bad_json[_i]);
}
END_TEST

START_TEST(test_json_escapes_accepted) {
        _cleanup_(kc_context_freep) struct kc_context *c = NULL;
        struct kc_err err = {};

        ck_assert_msg(kc_context_parse_json("{\"emoji\":\"\\ud83d\\ude00\",\"s\":\"\\/\\\"\\\\\",\"a\\u003ab\":\"\"}",
                                            &c, &err) == 0, "%s", err.msg);
        ck_assert_str_eq(kc_context_get(c, "emoji"), "\xf0\x9f\x98\x80");
        ck_assert_str_eq(kc_context_get(c, "s"), "/\"\\");
        ck_assert_str_eq(kc_context_get(c, "a:b"), "");
}
END_TEST

/*
 * A pair for a code point whose low 16 bits look like a surrogate: the text
 * parser decodes it, json-c 0.16 makes U+FFFD of it, which the object path
 * refuses rather than take for the context that was written.
 */
START_TEST(test_json_escapes_json_c_loses) {
        static const char text[] = "{\"k\":\"\\ud836\\udc00\"}";
        _cleanup_(kc_context_freep) struct kc_context *c = NULL, *d = NULL;
        struct json_object *obj = json_tokener_parse(text);
        struct kc_err err = {};

        ck_assert_msg(kc_context_parse_json(text, &c, &err) == 0, "%s", err.msg);
        ck_assert_str_eq(kc_context_get(c, "k"), "\xf0\x9d\xa0\x80");
        ck_assert_ptr_nonnull(obj);
        if (!streq(json_object_get_string(json_object_object_get(obj, "k")), "\xf0\x9d\xa0\x80"))
                ck_assert_int_eq(kc_context_from_json(obj, &d, &err), -EINVAL);
        json_object_put(obj);
}
END_TEST

/* Limits are inclusive: the largest legal size passes, one more is -E2BIG. */
START_TEST(test_limits) {
        _cleanup_(kc_context_freep) struct kc_context *c = NULL;
        char key[KC_CONTEXT_KEY_MAX + 2], value[KC_CONTEXT_VALUE_MAX + 2], name[16];
        struct kc_err err = {};

        ck_assert_int_eq(kc_context_new(&c), 0);
        memset(key, 'k', sizeof(key));
        key[KC_CONTEXT_KEY_MAX] = '\0';
        ck_assert_int_eq(kc_context_add(c, key, "", &err), 0);
        key[KC_CONTEXT_KEY_MAX] = 'k';
        key[KC_CONTEXT_KEY_MAX + 1] = '\0';
        ck_assert_int_eq(kc_context_add(c, key, "", &err), -E2BIG);
        ck_assert_ptr_nonnull(strstr(err.msg, "key of 257 bytes is longer than 256"));

        err = (struct kc_err) {};
        memset(value, 'v', sizeof(value));
        value[KC_CONTEXT_VALUE_MAX] = '\0';
        ck_assert_int_eq(kc_context_add(c, "v", value, &err), 0);
        value[KC_CONTEXT_VALUE_MAX] = 'v';
        value[KC_CONTEXT_VALUE_MAX + 1] = '\0';
        ck_assert_int_eq(kc_context_add(c, "w", value, &err), -E2BIG);
        ck_assert_ptr_nonnull(strstr(err.msg, "key \"w\": value of 1025 bytes is longer than 1024"));
        ck_assert_uint_eq(kc_context_count(c), 2);

        kc_context_free(TAKE_PTR(c));
        ck_assert_int_eq(kc_context_new(&c), 0);
        for (int i = 0; i < KC_CONTEXT_PAIRS_MAX; i++) {
                snprintf(name, sizeof(name), "k%02d", i);
                ck_assert_int_eq(kc_context_add(c, name, "v", NULL), 0);
        }
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_context_add(c, "one-more", "v", &err), -E2BIG);
        ck_assert_ptr_nonnull(strstr(err.msg, "key \"one-more\": context already has the maximum of 32 pairs"));
        /* Replacing a value does not add a pair. */
        ck_assert_int_eq(kc_context_set(c, "k00", "w", NULL), 0);
        ck_assert_uint_eq(kc_context_count(c), KC_CONTEXT_PAIRS_MAX);
}
END_TEST

/* Text far larger than any valid context is refused before it is parsed. */
START_TEST(test_text_limit) {
        _cleanup_free_ char *text = malloc(65538);
        struct kc_context *c = NULL;
        struct kc_err err = {};

        ck_assert_ptr_nonnull(text);
        memset(text, 'a', 65537);
        text[65537] = '\0';
        ck_assert_int_eq(kc_context_parse_kv(text, &c, &err), -E2BIG);
        ck_assert_str_eq(err.msg, "context text of 65537 bytes is longer than 65536");
        ck_assert_int_eq(kc_context_parse_json(text, &c, NULL), -E2BIG);
        ck_assert_int_eq(kc_context_parse_json(NULL, &c, NULL), -EINVAL);
        ck_assert_ptr_null(c);
}
END_TEST

/* The canonical size limit: exactly KC_CONTEXT_BYTES_MAX fits, one byte more does not. */
START_TEST(test_canonical_limit) {
        _cleanup_(kc_context_freep) struct kc_context *c = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        char value[KC_CONTEXT_VALUE_MAX + 1], key[4];
        struct kc_err err = {};
        size_t len, total = 8;

        ck_assert_int_eq(kc_context_new(&c), 0);
        memset(value, 'v', KC_CONTEXT_VALUE_MAX);
        value[KC_CONTEXT_VALUE_MAX] = '\0';
        /* 7 pairs of 8 + 2 + 1024 bytes, then one value sized to land exactly on the limit */
        for (int i = 0; i < 7; i++) {
                snprintf(key, sizeof(key), "k%d", i);
                ck_assert_int_eq(kc_context_add(c, key, value, NULL), 0);
                total += 8 + 2 + KC_CONTEXT_VALUE_MAX;
        }
        value[KC_CONTEXT_BYTES_MAX - total - 8 - 2 + 1] = '\0';
        ck_assert_int_eq(kc_context_add(c, "k7", value, &err), -E2BIG);
        ck_assert_ptr_nonnull(strstr(err.msg, "canonical context would be 8193 bytes"));
        value[KC_CONTEXT_BYTES_MAX - total - 8 - 2] = '\0';
        ck_assert_int_eq(kc_context_add(c, "k7", value, NULL), 0);
        ck_assert_int_eq(kc_context_canonical(c, &buf, &len), 0);
        ck_assert_uint_eq(len, KC_CONTEXT_BYTES_MAX);
        /* Growing a value through set is held to the same limit, and leaves the old value. */
        err = (struct kc_err) {};
        value[KC_CONTEXT_BYTES_MAX - total - 8 - 2] = 'v';
        ck_assert_int_eq(kc_context_set(c, "k7", value, &err), -E2BIG);
        ck_assert_ptr_nonnull(strstr(err.msg, "key \"k7\": canonical context would be 8193 bytes"));
        ck_assert_uint_eq(strlen(kc_context_get(c, "k7")), strlen(value) - 1);
        ck_assert_int_eq(kc_context_set(c, "k7", "", NULL), 0);
}
END_TEST

START_TEST(test_add_set) {
        _cleanup_(kc_context_freep) struct kc_context *c = NULL;
        struct kc_err err = {};

        ck_assert_int_eq(kc_context_new(&c), 0);
        ck_assert_int_eq(kc_context_add(c, "db-id", "db-1", &err), 0);
        ck_assert_int_eq(kc_context_add(c, "db-id", "db-2", &err), -EEXIST);
        ck_assert_str_eq(err.msg, "duplicate key \"db-id\"");
        ck_assert_str_eq(kc_context_get(c, "db-id"), "db-1");
        ck_assert_int_eq(kc_context_set(c, "db-id", "db-2", NULL), 0);
        ck_assert_int_eq(kc_context_set(c, "volume-id", "vol-1", NULL), 0);
        ck_assert_str_eq(kc_context_get(c, "db-id"), "db-2");
        ck_assert_uint_eq(kc_context_count(c), 2);
        ck_assert_int_eq(kc_context_set(c, "volume-id", "\x01", NULL), -EINVAL);
        ck_assert_str_eq(kc_context_get(c, "volume-id"), "vol-1");
        ck_assert_int_eq(kc_context_add(c, NULL, "x", NULL), -EINVAL);
        ck_assert_int_eq(kc_context_add(c, "x", NULL, NULL), -EINVAL);
}
END_TEST

/* A long key is quoted shortened, and never cut inside a character. */
START_TEST(test_message_quotes_key_prefix) {
        _cleanup_(kc_context_freep) struct kc_context *c = NULL;
        char key[200];
        struct kc_err err = {};

        memset(key, 'a', 63);
        strcpy(key + 63, "\xc3\xa9tail-that-is-not-quoted");
        ck_assert_int_eq(kc_context_new(&c), 0);
        ck_assert_int_eq(kc_context_add(c, key, "\x01", &err), -EINVAL);
        ck_assert_ptr_null(strstr(err.msg, "tail"));
        ck_assert_ptr_null(strstr(err.msg, "\xc3\""));
        ck_assert_ptr_nonnull(strstr(err.msg, "aaaa\": value has control character"));
}
END_TEST

START_TEST(test_equal_copy) {
        _cleanup_(kc_context_freep) struct kc_context *a = NULL, *copy = NULL;
        static const char *const different[] = {
                "db-id=db-1",                         /* missing pair */
                "db-id=db-1,volume-id=vol-1,x=y",     /* extra pair */
                "db-id=db-1,volume-id=vol-2",         /* changed value */
                "DB-ID=db-1,volume-id=vol-1",         /* key case */
                "db-id=db-1,volume-id=vol-1 ",        /* trailing space in value */
        };

        ck_assert_int_eq(kc_context_parse_kv("db-id=db-1,volume-id=vol-1", &a, NULL), 0);
        ck_assert_int_eq(kc_context_copy(a, &copy), 0);
        ck_assert(kc_context_equal(a, copy));
        ck_assert(kc_context_equal(NULL, NULL));
        ck_assert(!kc_context_equal(a, NULL));
        for (size_t i = 0; i < ARRAY_SIZE(different); i++) {
                _cleanup_(kc_context_freep) struct kc_context *b = NULL;
                ck_assert_int_eq(kc_context_parse_kv(different[i], &b, NULL), 0);
                ck_assert_msg(!kc_context_equal(a, b), "%s", different[i]);
        }
        /* The copy is independent of the original. */
        ck_assert_int_eq(kc_context_set(copy, "db-id", "db-9", NULL), 0);
        ck_assert_str_eq(kc_context_get(a, "db-id"), "db-1");
}
END_TEST

START_TEST(test_to_string_round_trip) {
        const struct vector *v = &vectors[_i];
        _cleanup_(kc_context_freep) struct kc_context *c = NULL, *back = NULL;
        _cleanup_free_ char *s = NULL;
        struct kc_err err = {};

        ck_assert_int_eq(kc_context_parse_kv(v->kv, &c, NULL), 0);
        ck_assert_int_eq(kc_context_to_string(c, &s), 0);
        ck_assert_msg(kc_context_parse_json(s, &back, &err) == 0, "%s: %s", s, err.msg);
        ck_assert(kc_context_equal(c, back));
}
END_TEST

START_TEST(test_to_string_form) {
        _cleanup_(kc_context_freep) struct kc_context *c = NULL;
        _cleanup_free_ char *s = NULL;

        ck_assert_int_eq(kc_context_parse_kv("volume-id=vol-2,db-id=db-1,p=a/b\\\\\"", &c, NULL), 0);
        ck_assert_int_eq(kc_context_to_string(c, &s), 0);
        ck_assert_str_eq(s, "{\"db-id\":\"db-1\",\"p\":\"a/b\\\\\\\"\",\"volume-id\":\"vol-2\"}");
}
END_TEST

START_TEST(test_from_json_object) {
        _cleanup_(kc_context_freep) struct kc_context *c = NULL, *d = NULL;
        struct kc_context *sentinel = (struct kc_context *) &sentinel, *e = sentinel;
        struct json_object *obj = NULL, *bad = NULL;
        struct kc_err err = {};

        ck_assert_int_eq(kc_context_parse_kv("volume-id=vol-2,db-id=db-1", &c, NULL), 0);
        ck_assert_int_eq(kc_context_to_json(c, &obj), 0);
        ck_assert_int_eq(kc_context_from_json(obj, &d, &err), 0);
        ck_assert(kc_context_equal(c, d));

        bad = json_tokener_parse("{\"db-id\":\"db-1\",\"n\":42}");
        ck_assert_int_eq(kc_context_from_json(bad, &e, &err), -EINVAL);
        ck_assert_str_eq(err.msg, "key \"n\": value is a number, not a string");
        ck_assert_ptr_eq(e, sentinel);
        json_object_put(bad);

        err = (struct kc_err) {};
        bad = json_object_new_array();
        ck_assert_int_eq(kc_context_from_json(bad, &e, &err), -EINVAL);
        ck_assert_str_eq(err.msg, "context is an array, not a JSON object");
        json_object_put(bad);
        json_object_put(obj);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("context");
        TCase *tc = tcase_create("core");

        tcase_add_loop_test(tc, test_vectors, 0, ARRAY_SIZE(vectors));
        tcase_add_test(tc, test_sorted_accessors);
        tcase_add_loop_test(tc, test_kv_refused, 0, ARRAY_SIZE(bad_kv));
        tcase_add_test(tc, test_utf8_edges_accepted);
        tcase_add_loop_test(tc, test_json_refused, 0, ARRAY_SIZE(bad_json));
        tcase_add_test(tc, test_json_escapes_accepted);
        tcase_add_test(tc, test_limits);
        tcase_add_test(tc, test_text_limit);
        tcase_add_test(tc, test_canonical_limit);
        tcase_add_test(tc, test_add_set);
        tcase_add_test(tc, test_message_quotes_key_prefix);
        tcase_add_test(tc, test_equal_copy);
        tcase_add_loop_test(tc, test_to_string_round_trip, 0, ARRAY_SIZE(vectors));
        tcase_add_test(tc, test_to_string_form);
        tcase_add_test(tc, test_from_json_object);
        tcase_add_test(tc, test_json_escapes_json_c_loses);
        suite_add_tcase(s, tc);
        return s;
}
