/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * What the aws provider reads from the network (agent/aws/response.h,
 * kc_aws_error_map).  The first byte picks the parser, modulo the number
 * of parsers (the table below: 0 GenerateDataKey of 32 bytes, 1 of 64,
 * 2 ReEncrypt, 3 Decrypt, 4 DescribeKey, 5 ScheduleKeyDeletion, 6 an error
 * body, 7 container credentials, 8 IMDS credentials, 9 IMDS session token,
 * 10 IMDS role list, 11 a timestamp, 12 an HTTP Date header); the parsers that look at the HTTP
 * status take it from the second byte (status_of), and the rest is the body.
 * A refusal must be one line; what is accepted must be well-formed: sizes
 * in range, ids bounded, dates in 1970..9999, secrets in kc_secret memory.
 */

#include <ctype.h>

#include "agent/aws/errors.h"
#include "agent/aws/response.h"
#include "lib/secret.h"
#include "tests/fuzz/fuzz.h"

/* Statuses a KMS or metadata endpoint answers with, 200 first. */
static const long statuses[] = { 200, 200, 400, 401, 403, 404, 429, 500, 503, 301 };

static long status_of(uint8_t b) {
        return statuses[b % ARRAY_SIZE(statuses)];
}

/* A key id as it may go into a token or an audit record: "" or 1..64 of [A-Za-z0-9_-]. */
static void assert_key_id(const char *id) {
        size_t n = strnlen(id, KC_AWS_KEY_ID_MAX + 1);

        FUZZ_ASSERT(n <= KC_AWS_KEY_ID_MAX);
        FUZZ_ASSERT(strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == n);
}

static void assert_time(time_t t) {
        FUZZ_ASSERT(t >= 0 && t <= KC_AWS_TIME_MAX);
}

/* A secret that becomes an HTTP header value: kc_secret memory, visible ASCII, not empty. */
static void assert_header_secret(const char *s) {
        FUZZ_ASSERT(s && kc_secret_size(s) == strlen(s) + 1 && s[0]);
        for (; *s; s++)
                FUZZ_ASSERT(*s > 0x20 && *s < 0x7f);
}

static void data_key(const char *op, size_t nbytes, const char *body, size_t len) {
        struct kc_data_key k;
        struct kc_err err = {};
        int r = kc_aws_response_data_key(op, body, len, nbytes, &k, &err);

        fuzz_assert_refusal(r, &err);
        if (r < 0)
                return;
        FUZZ_ASSERT(k.blob && k.blob_len >= 1 && k.blob_len <= KC_AWS_MAX_CIPHERTEXT);
        FUZZ_ASSERT(nbytes ? k.plaintext && kc_secret_size(k.plaintext) == nbytes : !k.plaintext);
        FUZZ_ASSERT(k.key_version == KC_AWS_KEY_VERSION);
        assert_key_id(k.key_id);
        kc_data_key_clear(&k);
}

static void generate_32(long status, const char *body, size_t len) {
        data_key("GenerateDataKey", 32, body, len);
}

static void generate_64(long status, const char *body, size_t len) {
        data_key("GenerateDataKey", 64, body, len);
}

static void re_encrypt(long status, const char *body, size_t len) {
        data_key("ReEncrypt", 0, body, len);
}

static void decrypt(long status, const char *body, size_t len) {
        _cleanup_secret_ void *plaintext = NULL;
        char key_id[65];
        struct kc_err err = {};
        int r = kc_aws_response_decrypt(body, len, &plaintext, key_id, &err);

        fuzz_assert_refusal(r, &err);
        if (r < 0)
                return;
        FUZZ_ASSERT(kc_secret_size(plaintext) >= 1 && kc_secret_size(plaintext) <= KC_AWS_MAX_PLAINTEXT);
        assert_key_id(key_id);
}

static void describe_key(long status, const char *body, size_t len) {
        struct kc_key_info info;
        struct kc_err err = {};
        int r = kc_aws_response_describe_key(body, len, &info, &err);

        fuzz_assert_refusal(r, &err);
        if (r < 0)
                return;
        FUZZ_ASSERT(streq(info.provider, "aws") && info.alias[0] == '\0');
        FUZZ_ASSERT(strncmp(info.arn, "aws:arn:", 8) == 0 && strnlen(info.arn, sizeof(info.arn)) < sizeof(info.arn));
        for (const char *p = info.arn; *p; p++)
                FUZZ_ASSERT(*p > 0x20 && *p < 0x7f);
        FUZZ_ASSERT(info.key_id[0]);   /* the Arn's id when KeyId is absent */
        assert_key_id(info.key_id);
        FUZZ_ASSERT(strnlen(info.description, sizeof(info.description)) < sizeof(info.description));
        for (const char *p = info.description; *p; p++)
                FUZZ_ASSERT((unsigned char) *p >= 0x20 && *p != 0x7f);
        /* One of AWS's own states, never the local keystore's Destroyed. */
        FUZZ_ASSERT(kc_key_state_to_string(info.state) && info.state != KC_KEY_DESTROYED);
        FUZZ_ASSERT(info.current_version == KC_AWS_KEY_VERSION);
        assert_time(info.created);
        assert_time(info.deletion_date);
}

static void deletion_date(long status, const char *body, size_t len) {
        struct kc_err err = {};
        time_t t;
        int r = kc_aws_response_deletion_date(body, len, &t, &err);

        fuzz_assert_refusal(r, &err);
        if (r >= 0)
                assert_time(t);
}

/* Always a refusal, with a message, whatever the body; only some are retried. */
static void error_body(long status, const char *body, size_t len) {
        struct kc_err err = {};
        bool retry = true;
        long st = status == 200 ? 400 : status;
        int r = kc_aws_error_map(st, NULL, body, len, "Decrypt", "0f1e2d3c-request", &retry, &err);

        FUZZ_ASSERT(r < 0 && r != -ENOMEM);
        fuzz_assert_refusal(r, &err);
        FUZZ_ASSERT(strncmp(err.msg, "AWS KMS Decrypt: ", 17) == 0);
        /* A client error is retried only when the body names a retryable type (throttling). */
        FUZZ_ASSERT(!retry || st >= 500 || st == 429 || r == -EBUSY || r == -EAGAIN);
        /* What a clock correction answers is a refusal for the request's time, never a retryable one. */
        FUZZ_ASSERT(!kc_aws_error_clock_skew(NULL, body, len) || r == -EACCES);
}

static void credentials(const char *what, long status, const char *body, size_t len) {
        _cleanup_(kc_aws_credentials_clear) struct kc_aws_credentials c = {};
        struct kc_err err = {};
        int r = kc_aws_response_credentials(what, status, body, len, &c, &err);

        fuzz_assert_refusal(r, &err);
        if (r < 0) {
                FUZZ_ASSERT(!c.access_key_id && !c.secret_access_key && !c.session_token);
                return;
        }
        FUZZ_ASSERT(status == 200);
        assert_header_secret(c.access_key_id);
        assert_header_secret(c.secret_access_key);
        if (c.session_token)
                assert_header_secret(c.session_token);
        assert_time(c.expiration);
}

static void container(long status, const char *body, size_t len) {
        credentials("container", status, body, len);
}

static void imds(long status, const char *body, size_t len) {
        credentials("instance metadata", status, body, len);
}

static void imds_token(long status, const char *body, size_t len) {
        _cleanup_secret_ char *t = NULL;
        struct kc_err err = {};
        int r = kc_aws_response_imds_token(status, body, len, &t, &err);

        fuzz_assert_refusal(r, &err);
        if (r >= 0)
                assert_header_secret(t);
}

static void imds_role(long status, const char *body, size_t len) {
        _cleanup_free_ char *role = NULL;
        struct kc_err err = {};
        int r = kc_aws_response_imds_role(status, body, len, &role, &err);

        fuzz_assert_refusal(r, &err);
        if (r < 0)
                return;
        /* It is appended to a URL: one plain path segment. */
        FUZZ_ASSERT(role[0] && strlen(role) <= 128 && !strpbrk(role, "/?#%"));
        for (const char *p = role; *p; p++)
                FUZZ_ASSERT(*p > 0x20 && *p < 0x7f);
}

/* Accepted times print back to a string that parses to the same second. */
static void timestamp(long status, const char *body, size_t len) {
        _cleanup_free_ char *s = fuzz_strndup((const uint8_t *) body, len);
        struct tm tm;
        char back[32];
        time_t t, t2;

        if (kc_aws_parse_time(s, &t) < 0)
                return;
        assert_time(t);
        FUZZ_ASSERT(gmtime_r(&t, &tm));
        FUZZ_ASSERT(strftime(back, sizeof(back), "%Y-%m-%dT%H:%M:%SZ", &tm) == 20);
        FUZZ_ASSERT(strncmp(back, s, 19) == 0);
        FUZZ_ASSERT(kc_aws_parse_time(back, &t2) == 0 && t2 == t);
}

/* An accepted Date prints back, as an HTTP date, to the same text. */
static void http_date(long status, const char *body, size_t len) {
        _cleanup_free_ char *s = fuzz_strndup((const uint8_t *) body, len);
        struct tm tm;
        char back[40];
        time_t t;

        if (kc_aws_parse_http_date(s, &t) < 0)
                return;
        assert_time(t);
        FUZZ_ASSERT(gmtime_r(&t, &tm));
        FUZZ_ASSERT(strftime(back, sizeof(back), "%d %b %Y %H:%M:%S GMT", &tm) == 24);
        FUZZ_ASSERT(streq(back, s + 5));
}

static const struct parser {
        void (*parse)(long status, const char *body, size_t len);
        bool takes_status;
} parsers[] = {
        { .parse = generate_32 },
        { .parse = generate_64 },
        { .parse = re_encrypt },
        { .parse = decrypt },
        { .parse = describe_key },
        { .parse = deletion_date },
        { .parse = error_body, .takes_status = true },
        { .parse = container, .takes_status = true },
        { .parse = imds, .takes_status = true },
        { .parse = imds_token, .takes_status = true },
        { .parse = imds_role, .takes_status = true },
        { .parse = timestamp },
        { .parse = http_date },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const struct parser *p;
        long status = 200;

        if (size < 1)
                return 0;
        p = &parsers[data[0] % ARRAY_SIZE(parsers)];
        data++, size--;
        if (p->takes_status) {
                if (size < 1)
                        return 0;
                status = status_of(data[0]);
                data++, size--;
        }
        p->parse(status, (const char *) data, size);
        return 0;
}
