/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The agent's request parser, authorization and reply envelope (agent/daemon/protocol.c). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "agent/daemon/protocol.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "lib/strv.h"
#include "tests/unit/check-main.h"

static int parse(const char *text, struct kc_request *ret, struct kc_err *err) {
        return kc_request_parse(text, strlen(text), ret, err);
}

/* Parse text that must be refused with error, and whose reason mentions what. */
static void refused(const char *text, int error, const char *what) {
        struct kc_request req = { .name = (char *) "untouched" };
        struct kc_err err = {};
        int r = parse(text, &req, &err);

        /* Of a long request, its start: Check refuses a failure message over 4 KiB. */
        ck_assert_msg(r == error, "%.200s: got %d (%.200s), want %d", text, r, err.msg, error);
        ck_assert_msg(strstr(err.msg, what), "%.200s: reason \"%s\" does not mention \"%s\"", text, err.msg, what);
        ck_assert_str_eq(req.name, "untouched");
}

START_TEST(test_simple_ops) {
        static const struct { const char *text; enum kc_op op; } cases[] = {
                { "{\"v\":1,\"op\":\"ping\"}", KC_OP_PING },
                { "{\"op\":\"list\",\"v\":1}", KC_OP_LIST },
                { "{\"v\":1,\"op\":\"status\"}", KC_OP_STATUS },
                { "{\"v\":1,\"op\":\"reload\"}\n", KC_OP_RELOAD },
                { " {\"v\":1,\"op\":\"attach-all\"} ", KC_OP_ATTACH_ALL },
        };

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct kc_request req;
                struct kc_err err = {};

                ck_assert_msg(parse(cases[i].text, &req, &err) == 0, "%s: %s", cases[i].text, err.msg);
                ck_assert_int_eq(req.op, cases[i].op);
                ck_assert_ptr_null(req.names);
                kc_request_clear(&req);
        }
}
END_TEST

START_TEST(test_status_names_and_detach) {
        struct kc_request req;
        struct kc_err err = {};

        ck_assert_int_eq(parse("{\"v\":1,\"op\":\"status\",\"names\":[\"a\",\"b\"]}", &req, &err), 0);
        ck_assert_uint_eq(kc_strv_length(req.names), 2);
        ck_assert_str_eq(req.names[1], "b");
        kc_request_clear(&req);

        ck_assert_int_eq(parse("{\"v\":1,\"op\":\"detach\",\"name\":\"pg\",\"deferred\":true}", &req, &err), 0);
        ck_assert_int_eq(req.op, KC_OP_DETACH);
        ck_assert_str_eq(req.name, "pg");
        ck_assert(req.deferred);
        kc_request_clear(&req);

        ck_assert_int_eq(parse("{\"v\":1,\"op\":\"attach-all\",\"wait\":false}", &req, &err), 0);
        ck_assert(!req.wait);
        kc_request_clear(&req);
}
END_TEST

START_TEST(test_attach_device_options) {
        struct kc_request req;
        struct kc_err err = {};
        const char *text =
                "{\"v\":1,\"op\":\"attach\",\"device\":\"UUID=1234\",\"options\":{"
                "\"name\":\"pg\",\"header\":\"/h\",\"read-only\":true,\"allow-discards\":true,"
                "\"perf\":\"same_cpu_crypt\",\"context\":{\"db-id\":\"d1\",\"volume-id\":\"v1\"}}}";

        ck_assert_msg(parse(text, &req, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(req.op, KC_OP_ATTACH);
        ck_assert_ptr_null(req.volume);
        ck_assert_str_eq(req.attach.device, "UUID=1234");
        ck_assert_str_eq(req.attach.name, "pg");
        ck_assert_str_eq(req.attach.header, "/h");
        ck_assert(req.attach.read_only);
        /* allow-discards given before perf survives it */
        ck_assert_uint_eq(req.attach.flags, KC_CRYPT_SAME_CPU_CRYPT | KC_CRYPT_ALLOW_DISCARDS);
        ck_assert_ptr_eq(req.attach.expect, req.expect);
        ck_assert_str_eq(kc_context_get(req.expect, "volume-id"), "v1");
        kc_request_clear(&req);

        ck_assert_int_eq(parse("{\"v\":1,\"op\":\"attach\",\"volume\":\"pgdata\"}", &req, &err), 0);
        ck_assert_str_eq(req.volume, "pgdata");
        ck_assert_uint_eq(req.attach.flags, KC_CRYPT_DEFAULT_FLAGS);
        kc_request_clear(&req);
}
END_TEST

START_TEST(test_attach_request_round_trip) {
        _cleanup_context_ struct kc_context *ctx = NULL;
        struct kc_attach_params p = {
                .device = "/dev/vdb", .name = "data", .header = "/etc/h.img", .read_only = true,
                .flags = KC_CRYPT_NO_READ_WORKQUEUE | KC_CRYPT_ALLOW_DISCARDS,
        };
        struct json_object *o;
        struct kc_request req;
        struct kc_err err = {};
        const char *text;

        ck_assert_int_eq(kc_context_parse_kv("db-id=x,volume-id=y", &ctx, NULL), 0);
        p.expect = ctx;
        ck_assert_int_eq(kc_request_attach_device(&p, &o), 0);
        text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        ck_assert_msg(parse(text, &req, &err) == 0, "%s: %s", text, err.msg);
        ck_assert_str_eq(req.attach.device, p.device);
        ck_assert_str_eq(req.attach.name, p.name);
        ck_assert_str_eq(req.attach.header, p.header);
        ck_assert(req.attach.read_only);
        ck_assert_uint_eq(req.attach.flags, p.flags);
        ck_assert(kc_context_equal(req.expect, ctx));
        kc_request_clear(&req);
        json_object_put(o);
}
END_TEST

START_TEST(test_envelope_refused) {
        refused("{\"op\":\"ping\"}", -EPROTO, "\"v\"");
        refused("{\"v\":2,\"op\":\"ping\"}", -EPROTO, "version 2");
        refused("{\"v\":\"1\",\"op\":\"ping\"}", -EPROTO, "integer");
        refused("{\"v\":1.0,\"op\":\"ping\"}", -EPROTO, "integer");
        refused("{\"v\":1}", -EINVAL, "missing member \"op\"");
        refused("{\"v\":1,\"op\":7}", -EINVAL, "\"op\" must be a string");
        refused("{\"v\":1,\"op\":\"format\"}", -EINVAL, "unknown op \"format\"");
        refused("{\"v\":1,\"op\":\"PING\"}", -EINVAL, "unknown op");
}
END_TEST

START_TEST(test_syntax_refused) {
        static const char nul[] = "{\"v\":1,\"op\":\"ping\"}\0";
        struct kc_request req;
        struct kc_err err = {};

        refused("", -EINVAL, "empty");
        refused("[1,2]", -EINVAL, "not a JSON object");
        refused("\"ping\"", -EINVAL, "not a JSON object");
        refused("{\"v\":1,\"op\":\"ping\"", -EINVAL, "request is not valid JSON (unexpected end of data, at byte 18)");
        refused("{\"v\":1,\"op\":\"ping\"}{}", -EINVAL, "request is not valid JSON (data after the object, at byte 19)");
        refused("{\"v\":1,\"op\":\"ping\"} x", -EINVAL, "(data after the object, at byte 20)");
        refused("{\"v\":1,\"op\":\"ping\"}\n\n{\"v\":1,\"op\":\"ping\"}", -EINVAL, "(data after the object, at byte 21)");
        refused("{'v':1,'op':'ping'}", -EINVAL, "not valid JSON");
        refused("{\"v\":1,\"op\":\"ping\",}", -EINVAL, "not valid JSON");
        ck_assert_int_eq(kc_request_parse(nul, sizeof(nul) - 1, &req, &err), -EINVAL);
        ck_assert_ptr_nonnull(strstr(err.msg, "NUL"));
}
END_TEST

START_TEST(test_oversized_refused) {
        size_t n = KC_PROTOCOL_REQUEST_MAX + 1;
        _cleanup_free_ char *big = malloc(n);
        struct kc_request req;
        struct kc_err err = {};
        const char *head = "{\"v\":1,\"op\":\"ping\"}";

        ck_assert_ptr_nonnull(big);
        memset(big, ' ', n);
        memcpy(big, head, strlen(head));
        ck_assert_int_eq(kc_request_parse(big, n, &req, &err), -EMSGSIZE);
        ck_assert_ptr_nonnull(strstr(err.msg, "exceeds"));
        /* One byte less is a valid request padded with whitespace. */
        ck_assert_int_eq(kc_request_parse(big, n - 1, &req, &err), 0);
        kc_request_clear(&req);
}
END_TEST

START_TEST(test_members_refused) {
        refused("{\"v\":1,\"op\":\"ping\",\"x\":1}", -EINVAL, "unknown member \"x\"");
        refused("{\"v\":1,\"op\":\"list\",\"names\":[]}", -EINVAL, "unknown member \"names\"");
        refused("{\"v\":1,\"op\":\"detach\"}", -EINVAL, "missing member \"name\"");
        refused("{\"v\":1,\"op\":\"detach\",\"name\":1}", -EINVAL, "\"name\" must be a string");
        refused("{\"v\":1,\"op\":\"detach\",\"name\":\"\"}", -EINVAL, "empty");
        refused("{\"v\":1,\"op\":\"detach\",\"name\":\"a\\u0000b\"}", -EINVAL, "NUL");
        refused("{\"v\":1,\"op\":\"detach\",\"name\":\"a\",\"deferred\":\"yes\"}", -EINVAL, "boolean");
        refused("{\"v\":1,\"op\":\"status\",\"names\":\"a\"}", -EINVAL, "array");
        refused("{\"v\":1,\"op\":\"status\",\"names\":[\"a\",2]}", -EINVAL, "\"names\"[1]");
        refused("{\"v\":1,\"op\":\"attach-all\",\"wait\":1}", -EINVAL, "boolean");
}
END_TEST

START_TEST(test_attach_refused) {
        refused("{\"v\":1,\"op\":\"attach\"}", -EINVAL, "exactly one");
        refused("{\"v\":1,\"op\":\"attach\",\"volume\":\"a\",\"device\":\"/dev/x\"}", -EINVAL, "exactly one");
        refused("{\"v\":1,\"op\":\"attach\",\"volume\":\"a\",\"options\":{\"read-only\":true}}", -EINVAL,
                "volumes file");
        refused("{\"v\":1,\"op\":\"attach\",\"volume\":\"a\",\"options\":{}}", -EINVAL,
                "\"options\" apply to \"device\" only");
        refused("{\"v\":1,\"op\":\"attach\",\"volume\":\"a\",\"options\":{\"read-only\":false}}", -EINVAL,
                "\"options\" apply to \"device\" only");
        refused("{\"v\":1,\"op\":\"attach\",\"device\":\"/d\",\"options\":{\"perf\":\"\"}}", -EINVAL,
                "\"perf\" is empty");
        refused("{\"v\":1,\"op\":\"attach\",\"device\":\"/d\",\"options\":{\"ro\":true}}", -EINVAL,
                "unknown member \"ro\" in options");
        refused("{\"v\":1,\"op\":\"attach\",\"device\":\"/d\",\"options\":[]}", -EINVAL, "object");
        refused("{\"v\":1,\"op\":\"attach\",\"device\":\"/d\",\"options\":{\"perf\":\"turbo\"}}", -EINVAL, "perf");
        refused("{\"v\":1,\"op\":\"attach\",\"device\":\"/d\",\"options\":{\"context\":{\"db-id\":1}}}", -EINVAL,
                "");
        refused("{\"v\":1,\"op\":\"attach\",\"device\":\"/d\",\"options\":{\"read-only\":\"true\"}}", -EINVAL,
                "boolean");
}
END_TEST

START_TEST(test_attach_wait) {
        struct kc_request req;
        struct kc_err err = {};

        /* By volume: one try unless "wait" asks to wait for the volume to settle. */
        ck_assert_int_eq(parse("{\"v\":1,\"op\":\"attach\",\"volume\":\"a\"}", &req, &err), 0);
        ck_assert(!req.wait);
        kc_request_clear(&req);
        ck_assert_int_eq(parse("{\"v\":1,\"op\":\"attach\",\"volume\":\"a\",\"wait\":true}", &req, &err), 0);
        ck_assert(req.wait);
        ck_assert_str_eq(req.volume, "a");
        kc_request_clear(&req);
        ck_assert_int_eq(parse("{\"v\":1,\"op\":\"attach\",\"volume\":\"a\",\"wait\":false}", &req, &err), 0);
        ck_assert(!req.wait);
        kc_request_clear(&req);
        /* attach-all keeps its own default. */
        ck_assert_int_eq(parse("{\"v\":1,\"op\":\"attach-all\"}", &req, &err), 0);
        ck_assert(req.wait);
        kc_request_clear(&req);

        refused("{\"v\":1,\"op\":\"attach\",\"volume\":\"a\",\"wait\":1}", -EINVAL, "\"wait\" must be a boolean");
        refused("{\"v\":1,\"op\":\"attach\",\"volume\":\"a\",\"wait\":\"yes\"}", -EINVAL, "boolean");
        refused("{\"v\":1,\"op\":\"attach\",\"device\":\"/d\",\"wait\":true}", -EINVAL,
                "\"wait\" applies to \"volume\" only");
        refused("{\"v\":1,\"op\":\"attach\",\"device\":\"/d\",\"wait\":false}", -EINVAL,
                "\"wait\" applies to \"volume\" only");
        refused("{\"v\":1,\"op\":\"attach\",\"device\":\"/d\",\"options\":{\"wait\":true}}", -EINVAL,
                "unknown member \"wait\" in options");
}
END_TEST

START_TEST(test_hotplug) {
        struct kc_request req;
        struct kc_err err = {};

        ck_assert_int_eq(parse("{\"v\":1,\"op\":\"hotplug\",\"device\":\"254:16\"}", &req, &err), 0);
        ck_assert_int_eq(req.op, KC_OP_HOTPLUG);
        ck_assert_uint_eq(major(req.devno), 254);
        ck_assert_uint_eq(minor(req.devno), 16);
        kc_request_clear(&req);
        ck_assert(kc_op_privileged(KC_OP_HOTPLUG));

        refused("{\"v\":1,\"op\":\"hotplug\"}", -EINVAL, "missing member \"device\"");
        refused("{\"v\":1,\"op\":\"hotplug\",\"device\":254}", -EINVAL, "string");
        refused("{\"v\":1,\"op\":\"hotplug\",\"device\":\"/dev/vdb\"}", -EINVAL, "MAJOR:MINOR");
        refused("{\"v\":1,\"op\":\"hotplug\",\"device\":\"254:16x\"}", -EINVAL, "MAJOR:MINOR");
        refused("{\"v\":1,\"op\":\"hotplug\",\"device\":\"254:16:1\"}", -EINVAL, "MAJOR:MINOR");
        refused("{\"v\":1,\"op\":\"hotplug\",\"device\":\"-1:16\"}", -EINVAL, "MAJOR:MINOR");
        refused("{\"v\":1,\"op\":\"hotplug\",\"device\":\" 254:16\"}", -EINVAL, "MAJOR:MINOR");
        refused("{\"v\":1,\"op\":\"hotplug\",\"device\":\"254:\"}", -EINVAL, "MAJOR:MINOR");
        refused("{\"v\":1,\"op\":\"hotplug\",\"device\":\"4096:0\"}", -EINVAL, "MAJOR:MINOR");
        /* Numbers past 32 bits must not wrap into range: 2^32 + 8 is not major 8 (sd). */
        refused("{\"v\":1,\"op\":\"hotplug\",\"device\":\"4294967304:1\"}", -EINVAL, "MAJOR:MINOR");
        refused("{\"v\":1,\"op\":\"hotplug\",\"device\":\"8:4294967297\"}", -EINVAL, "MAJOR:MINOR");
        refused("{\"v\":1,\"op\":\"hotplug\",\"device\":\"99999999999999999999:1\"}", -EINVAL, "MAJOR:MINOR");
        refused("{\"v\":1,\"op\":\"hotplug\",\"device\":\"8:1\\u0000:2\"}", -EINVAL, "MAJOR:MINOR");
        refused("{\"v\":1,\"op\":\"hotplug\",\"device\":\":1\"}", -EINVAL, "MAJOR:MINOR");
        refused("{\"v\":1,\"op\":\"hotplug\",\"device\":\"1:2\",\"volume\":\"a\"}", -EINVAL,
                "unknown member \"volume\"");
}
END_TEST

START_TEST(test_authorize) {
        const gid_t extra[] = { 5, 42 };
        struct kc_peer root = { .uid = 0, .gid = 0 };
        struct kc_peer member = { .uid = 1000, .gid = 1000, .groups = extra, .n_groups = 2 };
        struct kc_peer primary = { .uid = 1001, .gid = 42 };
        struct kc_peer other = { .uid = 1002, .gid = 1002 };
        struct kc_err err = {};

        for (enum kc_op op = 0; op < _KC_OP_MAX; op++) {
                ck_assert_int_eq(kc_protocol_authorize(op, &root, 42, NULL), 0);
                ck_assert_int_eq(kc_protocol_authorize(op, &other, 42, NULL), -EPERM);
                ck_assert_int_eq(kc_protocol_authorize(op, &member, 42, NULL), kc_op_privileged(op) ? -EPERM : 0);
                ck_assert_int_eq(kc_protocol_authorize(op, &primary, 42, NULL), kc_op_privileged(op) ? -EPERM : 0);
                /* without a status group only root gets in */
                ck_assert_int_eq(kc_protocol_authorize(op, &member, (gid_t) -1, NULL), -EPERM);
        }
        ck_assert(kc_op_privileged(KC_OP_ATTACH) && kc_op_privileged(KC_OP_DETACH) &&
                  kc_op_privileged(KC_OP_ATTACH_ALL) && kc_op_privileged(KC_OP_RELOAD));
        ck_assert(!kc_op_privileged(KC_OP_STATUS) && !kc_op_privileged(KC_OP_LIST) && !kc_op_privileged(KC_OP_PING));
        ck_assert_int_eq(kc_protocol_authorize(KC_OP_DETACH, &member, 42, &err), -EPERM);
        ck_assert_str_eq(err.msg, "detach needs root (peer uid 1000)");
}
END_TEST

START_TEST(test_reply_envelope) {
        struct json_object *ok = kc_reply_ok(json_object_new_string("x")), *res = NULL;
        struct json_object *bad = kc_reply_error(-ENODEV, "no device with UUID=1");
        struct json_object *junk = json_tokener_parse("{\"v\":1,\"ok\":false,\"errno\":0,\"error\":\"?\"}");
        struct json_object *v2 = json_tokener_parse("{\"v\":2,\"ok\":true}");
        struct json_object *unnamed = json_tokener_parse("{\"v\":1,\"ok\":false,\"errno\":5,\"error\":\"\"}");
        struct kc_err err = {};

        ck_assert_int_eq(kc_reply_parse(ok, &res, &err), 0);
        ck_assert_str_eq(json_object_get_string(res), "x");
        ck_assert_int_eq(kc_reply_parse(bad, &res, &err), -ENODEV);
        ck_assert_str_eq(err.msg, "no device with UUID=1");
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_reply_parse(junk, &res, &err), -EPROTO);
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_reply_parse(v2, &res, &err), -EPROTO);
        /* An error reply must name its error, or the caller prints an empty line. */
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_reply_parse(unnamed, &res, &err), -EPROTO);
        ck_assert_str_eq(err.msg, "malformed error reply from the agent");
        json_object_put(ok);
        json_object_put(bad);
        json_object_put(junk);
        json_object_put(v2);
        json_object_put(unnamed);
}
END_TEST

/* A reply's text as the client reads it: one strict JSON object, then the envelope. */
START_TEST(test_reply_text) {
        static const struct { const char *text; int error; const char *reason; } cases[] = {
                { "{\"v\":1,\"ok\":true,\"result\":\"x\"}\n", 0, "" },
                { "{\"v\":1,\"ok\":false,\"errno\":19,\"error\":\"gone\"}", -ENODEV, "gone" },
                { "", -EPROTO, "the agent sent a reply that is not valid JSON (empty)" },
                { "{\"v\":1,\"ok\":true}{\"v\":1,\"ok\":false}", -EPROTO,
                  "the agent sent a reply that is not valid JSON (data after the object, at byte 17)" },
                { "{\"v\":1,\"ok\":tru", -EPROTO, "not valid JSON (unexpected end of data, at byte 15)" },
                { "[{\"v\":1,\"ok\":true}]", -EPROTO, "the agent sent a reply that is an array, not a JSON object" },
                { "{\"v\":1,\"ok\":\"yes\"}", -EPROTO, "malformed reply from the agent" },
        };

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct json_object *reply = NULL, *res = NULL;
                struct kc_err err = {};
                int r = kc_reply_parse_text(cases[i].text, strlen(cases[i].text), &reply, &res, &err);

                ck_assert_msg(r == cases[i].error, "%s: %d (%s)", cases[i].text, r, err.msg);
                ck_assert_msg(strstr(err.msg, cases[i].reason), "%s: \"%s\"", cases[i].text, err.msg);
                ck_assert(!reply == (r < 0));
                if (r == 0)
                        ck_assert_str_eq(json_object_get_string(res), "x");
                json_object_put(reply);
        }
}
END_TEST

START_TEST(test_payload_round_trip) {
        struct kc_volume_status s = {
                .name = "pg", .luks_uuid = "0b7e", .device = "/dev/vdb", .cipher = "aes-xts-plain64",
                .key_size = 64, .key_description = "kmscrypt:0b7e", .sector_size = 4096, .size = 2048,
                .offset = 32768, .flags = KC_CRYPT_NO_READ_WORKQUEUE, .read_only = true, .open_count = 3,
                .has_token = true, .provider = "local", .key_id = "5f0c", .key_version = 2,
        }, back;
        struct kc_agent_volume v = {
                .name = "pg", .device = "UUID=1", .state = KC_VOLUME_WAITING, .since = 1700000000,
                .attempts = 4, .next_try = 1700000008, .error = -ECONNREFUSED, .reason = "KMS down",
                .nofail = true,
        }, vback;
        struct kc_attach_result a = { .name = "pg", .luks_uuid = "u", .device = "/dev/vdb", .already = true }, aback;
        struct json_object *o;

        ck_assert_int_eq(kc_context_parse_kv("db-id=d", &s.context, NULL), 0);
        o = kc_volume_status_to_json(&s);
        ck_assert_int_eq(kc_volume_status_from_json(o, &back), 0);
        json_object_put(o);
        ck_assert_str_eq(back.name, s.name);
        ck_assert_str_eq(back.key_description, s.key_description);
        ck_assert_uint_eq(back.key_size, s.key_size);
        ck_assert_uint_eq(back.offset, s.offset);
        ck_assert_uint_eq(back.flags, s.flags);
        ck_assert_uint_eq(back.key_version, 2);
        ck_assert(back.read_only && back.has_token && !back.suspended);
        ck_assert(kc_context_equal(back.context, s.context));
        /* the contexts by hand: kc_volume_status_clear() would pull in the activation path */
        kc_context_free(back.context);
        kc_context_free(s.context);

        o = kc_agent_volume_to_json(&v);
        ck_assert_int_eq(kc_agent_volume_from_json(o, &vback), 0);
        json_object_put(o);
        ck_assert_int_eq(vback.state, KC_VOLUME_WAITING);
        ck_assert_int_eq(vback.error, -ECONNREFUSED);
        ck_assert_int_eq(vback.next_try, v.next_try);
        ck_assert_str_eq(vback.reason, "KMS down");
        ck_assert(vback.nofail);

        o = kc_attach_result_to_json(&a);
        ck_assert_int_eq(kc_attach_result_from_json(o, &aback), 0);
        json_object_put(o);
        ck_assert_str_eq(aback.device, "/dev/vdb");
        ck_assert(aback.already);
}
END_TEST

/* "/" and then n - 1 bytes of 'p': a path of n bytes (caller frees). */
static char *long_path(size_t n) {
        char *p = malloc(n + 1);

        ck_assert_ptr_nonnull(p);
        memset(p, 'p', n);
        p[0] = '/';
        p[n] = '\0';
        return p;
}

/*
 * Paths up to PATH_MAX with its NUL go through the protocol whole: a device
 * and a header in an attach request (which still fits a request), and the
 * device of every reply payload that names one.  A longer one is refused by
 * the parser, naming its start and why.
 */
START_TEST(test_long_paths) {
        _cleanup_free_ char *dev = long_path(PATH_MAX - 1), *hdr = long_path(PATH_MAX - 1), *text = NULL;
        _cleanup_free_ char *too_long = long_path(PATH_MAX), *refused_text = NULL;
        struct kc_attach_params p = { .device = dev, .header = hdr, .name = "data" };
        struct kc_agent_volume v = { .name = "pg", .state = KC_VOLUME_PENDING }, vback;
        struct kc_attach_result a = { .name = "pg" }, aback;
        struct kc_volume_status st = { .name = "pg" }, sback;
        struct kc_request req;
        struct kc_err err = {};
        struct json_object *o;

        ck_assert_int_eq(kc_request_attach_device(&p, &o), 0);
        text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
        ck_assert_uint_lt(strlen(text), KC_PROTOCOL_REQUEST_MAX);
        ck_assert_msg(parse(text, &req, &err) == 0, "%s", err.msg);
        ck_assert_str_eq(req.attach.device, dev);
        ck_assert_str_eq(req.attach.header, hdr);
        kc_request_clear(&req);

        ck_assert_int_gt(asprintf(&refused_text, "{\"v\":1,\"op\":\"attach\",\"device\":\"%s\"}", too_long), 0);
        refused(refused_text, -ENAMETOOLONG, "...: a path of 4096 bytes, longer than 4095");
        free(refused_text);
        ck_assert_int_gt(asprintf(&refused_text, "{\"v\":1,\"op\":\"attach\",\"device\":\"/dev/vdb\","
                                  "\"options\":{\"header\":\"%s\"}}", too_long), 0);
        refused(refused_text, -ENAMETOOLONG, "header /ppp");
        free(refused_text);
        refused_text = NULL;

        memcpy(v.device, dev, PATH_MAX);
        o = kc_agent_volume_to_json(&v);
        ck_assert_int_eq(kc_agent_volume_from_json(o, &vback), 0);
        json_object_put(o);
        ck_assert_str_eq(vback.device, dev);

        memcpy(a.device, dev, PATH_MAX);
        o = kc_attach_result_to_json(&a);
        ck_assert_int_eq(kc_attach_result_from_json(o, &aback), 0);
        json_object_put(o);
        ck_assert_str_eq(aback.device, dev);

        memcpy(st.device, dev, PATH_MAX);
        o = kc_volume_status_to_json(&st);
        ck_assert_int_eq(kc_volume_status_from_json(o, &sback), 0);
        json_object_put(o);
        ck_assert_str_eq(sback.device, dev);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("protocol");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_simple_ops);
        tcase_add_test(tc, test_status_names_and_detach);
        tcase_add_test(tc, test_attach_device_options);
        tcase_add_test(tc, test_attach_request_round_trip);
        tcase_add_test(tc, test_envelope_refused);
        tcase_add_test(tc, test_syntax_refused);
        tcase_add_test(tc, test_oversized_refused);
        tcase_add_test(tc, test_members_refused);
        tcase_add_test(tc, test_attach_refused);
        tcase_add_test(tc, test_attach_wait);
        tcase_add_test(tc, test_hotplug);
        tcase_add_test(tc, test_authorize);
        tcase_add_test(tc, test_reply_envelope);
        tcase_add_test(tc, test_reply_text);
        tcase_add_test(tc, test_payload_round_trip);
        tcase_add_test(tc, test_long_paths);
        suite_add_tcase(s, tc);
        return s;
}
