/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <stdint.h>
#include <string.h>

#include <json-c/json.h>

#include "agent/aws/errors.h"
#include "lib/json-util.h"

static const struct aws_error {
        const char *type;
        int error;
        bool retry;
        const char *what;
} aws_errors[] = {
        { "InvalidCiphertextException", -EBADMSG, false,
          "the blob does not open under this encryption context and key (wrong context, wrong key or damaged blob)" },
        { "IncorrectKeyException", -EBADMSG, false, "the blob was not encrypted under the key given" },
        { "DisabledException", -EKEYREVOKED, false, "the key is disabled" },
        { "KMSInvalidStateException", -EKEYEXPIRED, false,
          "the key is not usable in its current state (pending deletion?)" },
        { "NotFoundException", -ENOKEY, false, "no such key" },
        { "AccessDeniedException", -EACCES, false, "access denied by the key policy or IAM" },
        { "InvalidGrantTokenException", -EACCES, false, "invalid grant token" },
        { "UnrecognizedClientException", -EACCES, false, "the access key id is not recognised" },
        { "InvalidSignatureException", -EACCES, false, "the request signature was rejected (secret key or clock?)" },
        { "SignatureDoesNotMatch", -EACCES, false, "the request signature was rejected (secret key or clock?)" },
        { "RequestTimeTooSkewed", -EACCES, false, "the request's time is too far from the KMS's clock" },
        { "RequestExpired", -EACCES, false, "the request's time is too far from the KMS's clock" },
        { "RequestInTheFuture", -EACCES, false, "the request's time is too far from the KMS's clock" },
        { "IncompleteSignature", -EACCES, false, "the request signature was incomplete" },
        { "ExpiredTokenException", -EACCES, false, "the session token has expired" },
        { "InvalidKeyUsageException", -EINVAL, false, "the key cannot be used for this operation" },
        { "KeyUnavailableException", -EAGAIN, true, "the key is temporarily unavailable" },
        { "ValidationException", -EINVAL, false, "the request was rejected as invalid" },
        { "ThrottlingException", -EBUSY, true, "throttled" },
        { "LimitExceededException", -EBUSY, true, "request rate limit exceeded" },
        { "KMSInternalException", -EAGAIN, true, "internal error in the KMS" },
        { "DependencyTimeoutException", -EAGAIN, true, "the KMS timed out on a dependency" },
};

/* Copy printable characters only, at most n-1 of them. */
static void printable(char *dst, size_t n, const char *src) {
        size_t o = 0;

        for (; src && *src && o + 1 < n; src++)
                dst[o++] = isprint((unsigned char) *src) ? *src : '?';
        dst[o] = '\0';
}

/*
 * The body as a JSON object, NULL when it is not: its length bounds it (it
 * need not be NUL-terminated).  It is parsed as strictly as any other JSON
 * kmscrypt reads; a body that is not one JSON object only loses the
 * explanation of an error the status already gives.
 */
static struct json_object *parse_body(const char *body, size_t len) {
        struct json_object *obj = NULL;

        return kc_json_parse_object(body, len, NULL, &obj, NULL) == 0 ? obj : NULL;
}

/*
 * The bare shape name of an error code as the AWS JSON protocols send it:
 * "com.amazonaws.kms#NotFoundException", and a front end's
 * "ThrottlingException:http://internal.amazon.com/coral/..." both name
 * the type before the ':' and after the '#' (the SDKs' sanitize rule).
 */
static void sanitize_type(char *dst, size_t n, const char *code) {
        char bare[80];
        const char *hash;

        printable(bare, sizeof(bare), code);
        bare[strcspn(bare, ":")] = '\0';
        hash = strchr(bare, '#');
        printable(dst, n, hash ? hash + 1 : bare);
}

/*
 * The error code: the X-Amzn-ErrorType header when there is one, else the
 * body's "code", else its "__type", as the SDKs look for it.  A throttle
 * named only in the header is still a throttle, retried.
 */
static void error_type(const char *header_type, struct json_object *obj, char *dst, size_t n) {
        struct json_object *v;
        const char *t = NULL;

        if (header_type && header_type[0])
                t = header_type;
        else if (obj && (json_object_object_get_ex(obj, "code", &v) || json_object_object_get_ex(obj, "__type", &v)))
                t = json_object_get_string(v);
        if (t)
                sanitize_type(dst, n, t);
}

/* The body's "message" (JSON protocols) or "Message", printable characters only; "" when none. */
static void error_message(struct json_object *obj, char *dst, size_t n) {
        struct json_object *v;

        if (obj && (json_object_object_get_ex(obj, "message", &v) || json_object_object_get_ex(obj, "Message", &v)))
                printable(dst, n, json_object_get_string(v));
}

int kc_aws_error_map(long status, const char *header_type, const char *body, size_t body_len,
                     const char *operation, const char *request_id, bool *ret_retry, struct kc_err *err) {
        struct json_object *obj = NULL;
        const struct aws_error *e = NULL;
        char type[80] = "", message[120] = "";
        int error;
        bool retry;

        if (body && body_len > 0)
                obj = parse_body(body, body_len);
        error_message(obj, message, sizeof(message));
        error_type(header_type, obj, type, sizeof(type));
        json_object_put(obj);
        for (size_t i = 0; i < ARRAY_SIZE(aws_errors); i++)
                if (streq(type, aws_errors[i].type))
                        e = &aws_errors[i];
        if (e) {
                error = e->error;
                retry = e->retry;
        } else {
                error = status >= 500 ? -EAGAIN : status == 429 ? -EBUSY : status == 403 ? -EACCES : -EIO;
                retry = status >= 500 || status == 429;
        }
        if (ret_retry)
                *ret_retry = retry;
        return kc_err_set(err, error, "AWS KMS %s: %s (%s, HTTP %ld%s%s)%s%s", operation,
                          e ? e->what : "request failed", type[0] ? type : "no error type", status,
                          request_id && request_id[0] ? ", request id " : "", request_id ?: "",
                          message[0] ? ": " : "", message);
}

/*
 * Refusals for the request's time, as the AWS SDKs recognise them: types
 * that say so, and a signature refused with a message that names the time
 * ("Signature expired: 20240101T000000Z is now earlier than ...", or "not
 * yet current" when our clock is ahead).  Another rejected signature (a
 * wrong secret key) is not one.
 */
bool kc_aws_error_clock_skew(const char *header_type, const char *body, size_t body_len) {
        static const char *const skew_types[] = { "RequestTimeTooSkewed", "RequestExpired", "RequestInTheFuture" };
        struct json_object *obj = body && body_len > 0 ? parse_body(body, body_len) : NULL;
        char type[80] = "", message[120] = "";
        bool skew = false;

        error_type(header_type, obj, type, sizeof(type));
        error_message(obj, message, sizeof(message));
        json_object_put(obj);
        for (size_t i = 0; i < ARRAY_SIZE(skew_types); i++)
                skew = skew || streq(type, skew_types[i]);
        if ((streq(type, "InvalidSignatureException") || streq(type, "SignatureDoesNotMatch")) &&
            (strstr(message, "Signature expired") || strstr(message, "Signature not yet current")))
                skew = true;
        return skew;
}

int kc_aws_error_state_outage(const char *operation, const char *request_id, const char *key_id,
                              enum kc_key_state state, const char *describe_request_id, struct kc_err *err) {
        const char *id = request_id && request_id[0] ? request_id : "none";
        const char *describe_id = describe_request_id && describe_request_id[0] ? describe_request_id : "none";
        /* Enabled by the time DescribeKey ran: it changed state between the two calls, and a new try sees that. */
        bool changed = state == KC_KEY_ENABLED;
        const char *what = changed ? "its state changed while the request ran" : kc_key_state_outage(state);

        if (!what)
                return 0;
        return kc_err_set(err, -EAGAIN, "AWS KMS %s: key %s is %s: %s; %s, not a refusal "
                          "(KMSInvalidStateException, request id %s; DescribeKey request id %s)",
                          operation, key_id, kc_key_state_to_string(state), what, changed ? "retryable" : "an outage",
                          id, describe_id);
}
