/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "lib/error.h"
#include "lib/json-util.h"
#include "lib/macro.h"
#include "tests/unit/check-main.h"

/*
 * lib/json-util.h: kc_json_parse_object(), the one parse of every JSON text
 * kmscrypt reads (requests and replies, tokens, contexts, LUKS2 metadata,
 * AWS responses, key files, audit records), and the reasons it gives.
 */

struct bad {
        const char *text;
        size_t n;               /* 0: strlen(text) */
        const char *reason;     /* the whole message */
};

static const struct bad bad[] = {
        { "", 0, "not valid JSON (empty)" },
        { " \n\t\r", 0, "not valid JSON (empty)" },
        { "{\"a\":1", 0, "not valid JSON (unexpected end of data, at byte 6)" },
        { "{\"a\":1,}", 0, "not valid JSON (unexpected character, at byte 7)" },
        { "{\"a\":'1'}", 0, "not valid JSON (unexpected character, at byte 5)" },
        { "{\"a\":1}} ", 0, "not valid JSON (data after the object, at byte 7)" },
        { "{\"a\":1} \n{}", 0, "not valid JSON (data after the object, at byte 9)" },
        { "{\"a\":1}\0{}", 10, "not valid JSON (a NUL byte, at byte 7)" },
        { "{\"a\":\"x\0\"}", 10, "not valid JSON (a NUL byte, at byte 7)" },
        /* json-c's strict mode takes these two */
        { "{'a':1}", 0, "not valid JSON (a single-quoted name, at byte 1)" },
        { "{\"a\":{\"b\\\"'\":1,'c':2}}", 0, "not valid JSON (a single-quoted name, at byte 15)" },
        { "{\"a\":\"x\ty\"}", 0, "not valid JSON (a control character in a string, at byte 7)" },
        { "{\"a\n\":1}", 0, "not valid JSON (a control character in a string, at byte 3)" },
        { "[1,2]", 0, "an array, not a JSON object" },
        { "[1] x", 0, "an array, not a JSON object" },
        { "\"s\"", 0, "a string, not a JSON object" },
        { "12", 0, "a number, not a JSON object" },
        { "null", 0, "null, not a JSON object" },
};

START_TEST(test_refused) {
        const struct bad *b = &bad[_i];
        struct json_object *o = NULL;
        struct kc_err err = {};

        ck_assert_int_eq(kc_json_parse_object(b->text, b->n ?: strlen(b->text), NULL, &o, &err), -EBADMSG);
        ck_assert_str_eq(err.msg, b->reason);
        ck_assert_ptr_null(o);
        /* The same refusal for a secret text, whose objects are released wiped. */
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_json_parse_object(b->text, b->n ?: strlen(b->text), &(struct kc_json_parse) { .secret = true },
                                              &o, &err), -EBADMSG);
        ck_assert_str_eq(err.msg, b->reason);
}
END_TEST

START_TEST(test_accepted) {
        static const char *const good[] = {
                "{}", " {} ", "{\"a\":[1,{\"b\":null}]}\n", "\r\n\t{\"a\":\"\\u0000\"}\r\n",
                "{\"it's\":\"\\\"'\\\\\",\"t\":\"\\t\"}",
                /* what json-c's strict mode takes and writes back as it came */
                "{\"a\":NaN,\"b\":-Infinity,\"c\":1.}",
        };

        for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
                _cleanup_json_ struct json_object *o = NULL;
                struct kc_err err = {};

                ck_assert_msg(kc_json_parse_object(good[i], strlen(good[i]), NULL, &o, &err) == 0, "%s: %s", good[i],
                              err.msg);
                ck_assert(json_object_is_type(o, json_type_object));
        }
}
END_TEST

/* The text is read by its length: what follows is not looked at. */
START_TEST(test_length_bounds_the_text) {
        _cleanup_json_ struct json_object *o = NULL;

        ck_assert_int_eq(kc_json_parse_object("{\"a\":1}garbage", 7, NULL, &o, NULL), 0);
        ck_assert_int_eq(json_object_get_int(json_object_object_get(o, "a")), 1);
}
END_TEST

START_TEST(test_utf8_flag) {
        static const char text[] = "{\"a\":\"\xc3\x28\"}";
        const struct kc_json_parse utf8 = { .flags = JSON_TOKENER_VALIDATE_UTF8 };
        _cleanup_json_ struct json_object *o = NULL;
        struct kc_err err = {};

        ck_assert_int_eq(kc_json_parse_object(text, strlen(text), &utf8, &o, &err), -EBADMSG);
        ck_assert_str_eq(err.msg, "not valid JSON (invalid utf-8 string, at byte 7)");
        ck_assert_int_eq(kc_json_parse_object(text, strlen(text), NULL, &o, NULL), 0);
}
END_TEST

START_TEST(test_depth) {
        static const char three[] = "{\"a\":{\"b\":{}}}", four[] = "{\"a\":{\"b\":{\"c\":{}}}}";
        const struct kc_json_parse shallow = { .depth = 3 };
        _cleanup_json_ struct json_object *o = NULL;
        struct kc_err err = {};

        ck_assert_int_eq(kc_json_parse_object(three, strlen(three), &shallow, &o, NULL), 0);
        ck_assert_int_eq(kc_json_parse_object(four, strlen(four), &shallow, &o, &err), -EBADMSG);
        ck_assert_str_eq(err.msg, "not valid JSON (nesting too deep, at byte 15)");
}
END_TEST

START_TEST(test_secret_parsed) {
        static const char text[] = "{\"Plaintext\":\"c2VjcmV0\",\"a\":[\"x\"]}";
        struct json_object *o = NULL;

        ck_assert_int_eq(kc_json_parse_object(text, strlen(text), &(struct kc_json_parse) { .secret = true }, &o, NULL), 0);
        ck_assert_str_eq(json_object_get_string(json_object_object_get(o, "Plaintext")), "c2VjcmV0");
        kc_json_put_wiped(o);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("json-util");
        TCase *tc = tcase_create("parse");

        tcase_add_loop_test(tc, test_refused, 0, ARRAY_SIZE(bad));
        tcase_add_test(tc, test_accepted);
        tcase_add_test(tc, test_length_bounds_the_text);
        tcase_add_test(tc, test_utf8_flag);
        tcase_add_test(tc, test_depth);
        tcase_add_test(tc, test_secret_parsed);
        suite_add_tcase(s, tc);
        return s;
}
