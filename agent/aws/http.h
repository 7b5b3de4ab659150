/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * One HTTP(S) exchange over libcurl, for the aws provider and its
 * credential sources.  Certificate verification is always on (a CA file may
 * be named, and is then the only one trusted); redirects are never
 * followed; only http and https.  The
 * response body is received straight into kc_secret memory (it may carry a
 * plaintext data key or credentials) and is wiped when cleared.  curl
 * failures become negative errno with a message in err:
 *
 *   -ETIMEDOUT      connect or total timeout hit
 *   -ECONNREFUSED   nothing listening / connection failed
 *   -EHOSTUNREACH   name did not resolve
 *   -EPROTO         TLS handshake or certificate failure
 *   -ECONNRESET     connection closed before or while the response came
 *   -EMSGSIZE       response larger than KC_HTTP_MAX_RESPONSE
 */

#include <stdbool.h>
#include <stddef.h>

#include "lib/error.h"

#define KC_HTTP_MAX_RESPONSE (64 * 1024)

struct kc_http;   /* a reusable connection (keep-alive) */

int kc_http_new(struct kc_http **ret);
void kc_http_free(struct kc_http *h);
DEFINE_CLEANUP_FUNC(struct kc_http *, kc_http_free)

struct kc_http_request {
        const char *method;               /* "GET", "PUT", "POST" */
        const char *url;
        const char *const *headers;       /* "Name: value", NULL-terminated; may hold a token */
        const void *body;
        size_t body_len;
        long connect_timeout_ms;
        long timeout_ms;                  /* whole exchange */
        const char *ca_file;              /* NULL: system store */
};

struct kc_http_response {
        long status;
        char *body;                       /* kc_secret memory, NUL-terminated; NULL when empty */
        size_t body_len;
        char request_id[96];              /* x-amzn-RequestId (or x-amz-request-id), "" if none */
        char error_type[96];              /* X-Amzn-ErrorType, "" if none */
        char date[40];                    /* Date, "" if none: the server's clock, for a skew correction */
};

int kc_http_perform(struct kc_http *h, const struct kc_http_request *req, struct kc_http_response *ret,
                    struct kc_err *err);
void kc_http_response_clear(struct kc_http_response *r);

/* Whether url's host is a loopback address or "localhost" (host part parsed by curl). */
bool kc_http_url_is_loopback(const char *url);
/* The scheme of url is "https". */
bool kc_http_url_is_https(const char *url);

/*
 * JSON bodies that carry secrets (a Plaintext key, credentials).  Parse
 * with the tokener's own buffer wiped afterwards, and take string members
 * out into kc_secret memory, wiping json-c's copy; a body refused before its
 * secrets were taken is released with kc_json_put_wiped() (lib/json-util.h).
 */
struct json_object;
int kc_http_json_parse(const char *body, size_t len, struct json_object **ret, struct kc_err *err);
/* Member name of obj as a kc_secret string; -ENOENT when absent or not a string, -EBADMSG when it holds a NUL. */
int kc_http_json_take_secret(struct json_object *obj, const char *name, char **ret);
