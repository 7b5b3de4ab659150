/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The kmscryptd protocol.  First input byte even: the rest is a request as
 * the daemon receives it from any local client (kc_request_parse); an
 * attach request by device is rebuilt with kc_request_attach_device() and
 * must parse back to the same parameters.  Odd: the rest is a reply as the
 * CLI receives it (kc_reply_parse_text), whose result is also read as each
 * payload the CLI expects.
 */

#include "agent/daemon/protocol.h"
#include "tests/fuzz/fuzz.h"

static void check_attach_round_trip(const struct kc_request *req) {
        _cleanup_free_ char *text = NULL;
        struct json_object *o = NULL;
        struct kc_request back;
        struct kc_err err = {};

        FUZZ_ASSERT(kc_request_attach_device(&req->attach, &o) == 0);
        text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
        FUZZ_ASSERT(text);
        FUZZ_ASSERT(kc_request_parse(text, strlen(text), &back, &err) == 0);
        FUZZ_ASSERT(back.op == KC_OP_ATTACH && streq(back.attach.device, req->attach.device));
        FUZZ_ASSERT(back.attach.read_only == req->attach.read_only && back.attach.flags == req->attach.flags);
        FUZZ_ASSERT(!req->attach.name == !back.attach.name);
        FUZZ_ASSERT(!req->attach.name || streq(back.attach.name, req->attach.name));
        FUZZ_ASSERT(!req->expect == !back.expect);
        FUZZ_ASSERT(!req->expect || kc_context_equal(back.expect, req->expect));
        kc_request_clear(&back);
}

static void request(const char *msg, size_t len) {
        struct kc_request req;
        struct kc_err err = {};
        int r;

        r = kc_request_parse(msg, len, &req, &err);
        fuzz_assert_refusal(r, &err);
        if (r < 0)
                return;
        FUZZ_ASSERT(req.op < _KC_OP_MAX && kc_op_to_string(req.op));
        if (req.op == KC_OP_ATTACH && req.attach.device)
                check_attach_round_trip(&req);
        kc_request_clear(&req);
}

static void reply(const char *msg, size_t len) {
        struct json_object *o = NULL, *result = NULL;
        struct kc_attach_result ar;
        struct kc_volume_status vs;
        struct kc_agent_volume av;
        struct kc_err err = {};
        int r;

        r = kc_reply_parse_text(msg, len, &o, &result, &err);
        /* A malformed reply is named; an error reply carries the daemon's own message. */
        if (r == -EPROTO)
                FUZZ_ASSERT(err.msg[0] != '\0');
        if (r == 0 && result) {
                (void) kc_attach_result_from_json(result, &ar);
                (void) kc_volume_status_from_json(result, &vs);
                (void) kc_agent_volume_from_json(result, &av);
        }
        json_object_put(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        if (data[0] & 1)
                reply((const char *) data + 1, size - 1);
        else
                request((const char *) data + 1, size - 1);
        return 0;
}
