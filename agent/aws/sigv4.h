/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * AWS Signature Version 4 (HMAC-SHA256), the parts a JSON-protocol client
 * needs: canonical request, string to sign, signing key and the
 * Authorization header value.  Proven against the vectors of the
 * published AWS SigV4 test suite in tests/unit/test-sigv4.c.
 *
 * The path is used as given (already URI-encoded, no dot-segment
 * normalisation: KMS is always "/"); query parameters are encoded and
 * sorted here.  Header names are lower-cased, values trimmed with inner
 * runs of spaces collapsed, repeated names joined with ',' in the order
 * given.  Every header passed is signed; add transport-only headers (such
 * as a token added after signing) to the request yourself.
 */

#include <stddef.h>

struct kc_sigv4_header {
        const char *name;
        const char *value;
};

struct kc_sigv4_request {
        const char *method;              /* "POST" */
        const char *path;                /* "/" */
        const char *query;               /* "a=b&c=d", NULL or "" for none */
        const struct kc_sigv4_header *headers;   /* must include host and x-amz-date */
        size_t n_headers;
        const void *payload;
        size_t payload_len;
};

struct kc_sigv4_signer {
        const char *access_key_id;
        const char *secret_access_key;   /* kc_secret memory */
        const char *region;              /* "eu-west-1" */
        const char *service;             /* "kms" */
        const char *amz_date;            /* "20150830T123600Z", also sent as X-Amz-Date */
};

/* Lower-case hex SHA-256 of data (65 bytes with the NUL). */
void kc_sigv4_sha256_hex(const void *data, size_t len, char ret[65]);

/*
 * Canonical request text and the signed header list ("host;x-amz-date").  The
 * text carries header values such as the session token: it is kc_secret memory,
 * freed with kc_secret_free(); the header list is freed with free().
 */
int kc_sigv4_canonical_request(const struct kc_sigv4_request *req, char **ret_creq, char **ret_signed_headers);

/* "AWS4-HMAC-SHA256\n<date>\n<scope>\n<hex sha256 of creq>". Caller frees. */
int kc_sigv4_string_to_sign(const struct kc_sigv4_signer *s, const char *creq, char **ret);

/*
 * Full Authorization header value ("AWS4-HMAC-SHA256 Credential=...,
 * SignedHeaders=..., Signature=...").  With the request, the signature is
 * good for a replay for five minutes: free it with kc_wipe_free_str().
 * No outgrown copy of it is left in freed heap.
 */
int kc_sigv4_authorization(const struct kc_sigv4_signer *s, const struct kc_sigv4_request *req, char **ret);

/* "YYYYMMDDTHHMMSSZ" for t in UTC (17 bytes with the NUL). */
void kc_sigv4_format_date(long long t, char ret[17]);
