/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "agent/aws/credentials.h"
#include "agent/aws/http.h"
#include "agent/aws/response.h"
#include "agent/kms.h"
#include "lib/secret.h"
#include "tests/unit/check-main.h"

/*
 * No copy of a secret is left in freed heap by the libraries the aws
 * provider hands secrets to: json-c, which grows its tokener buffer with
 * realloc() while it parses a Plaintext or a SecretAccessKey, and libcurl,
 * which copies request headers (a session token) into buffers of its own.
 *
 * This program replaces realloc() and free(): before a block is moved or
 * freed, it looks in it for marker strings planted inside the secrets.  A
 * sanitizer brings its own allocator, so under one the program skips.
 */

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KC_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define KC_SANITIZED 1
#endif
#endif

static const char *const *markers;   /* NULL-terminated; NULL: not looking */
static int residues;

#ifndef KC_SANITIZED
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);

static void look(const void *p, const char *how) {
        size_t n;

        if (!p || !markers)
                return;
        n = malloc_usable_size((void *) p);
        for (size_t i = 0; markers[i]; i++)
                if (memmem(p, n, markers[i], strlen(markers[i]))) {
                        residues++;
                        fprintf(stderr, "%s a block holding \"%s\" unwiped\n", how, markers[i]);
                }
}

void *realloc(void *p, size_t n) {
        void *q;
        size_t old = p ? malloc_usable_size(p) : 0;

        q = __libc_realloc(p, n);
        if (q && p && q != p && markers) {
                /* The old block was freed as it was; what it held was copied to q: look there. */
                for (size_t i = 0; markers[i]; i++)
                        if (memmem(q, old < n ? old : n, markers[i], strlen(markers[i]))) {
                                residues++;
                                fprintf(stderr, "realloc() moved and freed a block holding \"%s\" unwiped\n",
                                        markers[i]);
                        }
        }
        return q;
}

void free(void *p) {
        look(p, "free() of");
        __libc_free(p);
}
#endif

static void watch(const char *const *m) {
        residues = 0;
        markers = m;
}

static int unwatch(void) {
        markers = NULL;
        return residues;
}

START_TEST(test_data_key_parse) {
        static const char *const m[] = { "PLAINKEYMARK", NULL };
        char blob[401], pt[89];
        _cleanup_free_ char *body = NULL;
        struct kc_data_key dk = {};
        struct kc_err err = {};
        int r;

        /* Plaintext before a longer CiphertextBlob: the member order is the server's choice. */
        memset(blob, 'Q', 400);
        blob[400] = '\0';
        memset(pt, 'P', 86);
        memcpy(pt + 20, "PLAINKEYMARK", 12);
        memcpy(pt + 86, "==", 3);
        ck_assert_int_ge(asprintf(&body, "{\"KeyId\":\"arn:aws:kms:eu-west-1:111122223333:key/"
                                  "1234abcd-12ab-34cd-56ef-1234567890ab\",\"Plaintext\":\"%s\","
                                  "\"CiphertextBlob\":\"%s\"}", pt, blob), 0);
        watch(m);
        r = kc_aws_response_data_key("GenerateDataKey", body, strlen(body), 64, &dk, &err);
        ck_assert_int_eq(unwatch(), 0);
        ck_assert_msg(r == 0, "%s", err.msg);
        kc_data_key_clear(&dk);
}
END_TEST

START_TEST(test_credentials_parse) {
        static const char *const m[] = { "SeCrEtAcCeSsKeY", "ToKeNmArKeR", NULL };
        char token[1201];
        _cleanup_free_ char *body = NULL;
        struct kc_aws_credentials c = {};
        struct kc_err err = {};
        int r;

        memset(token, 'A', 1200);
        memcpy(token + 600, "ToKeNmArKeR", 11);
        token[1200] = '\0';
        /* IMDS's own order: the secret key, then the much longer session token. */
        ck_assert_int_ge(asprintf(&body, "{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"2012-04-26T16:39:16Z\",\n"
                                  "  \"Type\" : \"AWS-HMAC\",\n  \"AccessKeyId\" : \"ASIAIOSFODNN7EXAMPLE\",\n"
                                  "  \"SecretAccessKey\" : \"wJalrXUtnFEMI/SeCrEtAcCeSsKeY/bPxRfiCYEXAMPLEKEY\",\n"
                                  "  \"Token\" : \"%s\",\n  \"Expiration\" : \"2037-05-17T15:09:54Z\"\n}\n", token), 0);
        watch(m);
        r = kc_aws_response_credentials("instance metadata", 200, body, strlen(body), &c, &err);
        ck_assert_int_eq(unwatch(), 0);
        ck_assert_msg(r == 0, "%s", err.msg);
        kc_aws_credentials_clear(&c);
}
END_TEST

struct stub {
        int listener;
        const char *body;         /* the answer's body */
        const char **publish;     /* non-NULL: the request's signature goes there, as a marker */
        char signature[65];
};

/* One HTTP exchange on 127.0.0.1: read a request, answer stub->body. */
static void *serve_one(void *arg) {
        struct stub *st = arg;
        int c = accept(st->listener, NULL, NULL);
        const char *body = st->body;
        char buf[8192], reply[512], *sig;
        size_t have = 0;
        ssize_t n;

        if (c < 0)
                return NULL;
        /* Headers, then the two bytes of body the client sends. */
        while (have < sizeof(buf) - 1 && (n = read(c, buf + have, sizeof(buf) - 1 - have)) > 0) {
                char *end;

                have += (size_t) n;
                buf[have] = '\0';
                end = strstr(buf, "\r\n\r\n");
                if (end && (size_t) (end + 4 - buf) + 2 <= have)
                        break;
        }
        /* Seen on the wire before the answer goes: the client frees its copies only after. */
        if (st->publish && (sig = strstr(buf, "Signature=")) && strspn(sig + 10, "0123456789abcdef") >= 64) {
                memcpy(st->signature, sig + 10, 64);
                __atomic_store_n(st->publish, st->signature, __ATOMIC_RELEASE);
        }
        n = snprintf(reply, sizeof(reply), "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
        (void) !write(c, reply, (size_t) n);
        close(c);
        return NULL;
}

/* A stub answering one request with body on a loopback port: its listener, the URL in url. */
static int stub_start(struct stub *st, const char *body, char url[64], pthread_t *t) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t salen = sizeof(sa);

        *st = (struct stub) { .body = body };
        st->listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(st->listener, 0);
        ck_assert_int_eq(bind(st->listener, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(st->listener, 1), 0);
        ck_assert_int_eq(getsockname(st->listener, (struct sockaddr *) &sa, &salen), 0);
        snprintf(url, 64, "http://127.0.0.1:%u/", ntohs(sa.sin_port));
        return pthread_create(t, NULL, serve_one, st);
}

START_TEST(test_http_headers) {
        static const char *const m[] = { "HDRTOKENMARK", "BODYMARKBODYMARK", NULL };
        const char *headers[] = {
                "X-Amz-Security-Token: IQoJb3JpZ2luX2VjEHDRTOKENMARKxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                NULL,
        };
        struct kc_http_response resp = {};
        struct kc_err err = {};
        struct kc_http *h = NULL;
        struct stub st;
        long status;
        char url[64];
        pthread_t t;
        int r;

        ck_assert_int_eq(stub_start(&st, "{\"Plaintext\":\"PPPPBODYMARKBODYMARKPPPP==\"}", url, &t), 0);

        r = kc_http_new(&h);
        if (r < 0) {
                pthread_cancel(t);
                ck_abort_msg("libcurl not loadable here: %d", r);
        }
        watch(m);
        r = kc_http_perform(h, &(struct kc_http_request) { .method = "POST", .url = url, .headers = headers,
                                                           .body = "{}", .body_len = 2 }, &resp, &err);
        status = resp.status;
        kc_http_response_clear(&resp);
        kc_http_free(h);
        ck_assert_int_eq(unwatch(), 0);
        ck_assert_msg(r == 0 && status == 200, "perform: %d (status %ld) %s", r, status, err.msg);
        pthread_join(t, NULL);
        close(st.listener);
}
END_TEST

#define KEY_ARN "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

/*
 * One Encrypt of the 18 bytes whose base64 is pt_b64 through the aws
 * provider, against a stub on loopback, with m watched; publish as in
 * struct stub.  The number of residues found.
 */
static int encrypt_watched(const char *pt_b64, const char **m, const char **publish) {
        _cleanup_context_ struct kc_context *ctx = NULL;
        _cleanup_secret_ uint8_t *pt = kc_secret_alloc(18);
        struct kc_data_key dk = {};
        struct kc_err err = {};
        void *state = NULL;
        struct stub st;
        char url[64];
        pthread_t t;
        int r, residue;

        ck_assert_ptr_nonnull(pt);
        ck_assert_int_eq(EVP_DecodeBlock(pt, (const unsigned char *) pt_b64, 24), 18);
        ck_assert_int_eq(kc_context_parse_kv("db-id=db-1,volume-id=vol-1", &ctx, &err), 0);
        ck_assert_int_eq(stub_start(&st, "{\"CiphertextBlob\":\"AQIDBA==\",\"KeyId\":\"" KEY_ARN "\"}", url, &t), 0);
        st.publish = publish;
        setenv("AWS_ENDPOINT_URL_KMS", url, 1);
        setenv("KMSCRYPT_AWS_ALLOW_HTTP", "1", 1);
        setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
        r = kc_kms_provider_aws.open(&(struct kc_kms_config) {}, &state, &err);
        if (r < 0) {
                pthread_cancel(t);
                ck_abort_msg("aws provider: %d %s", r, err.msg);
        }
        watch(m);
        r = kc_kms_provider_aws.encrypt(state, KEY_ARN, ctx, pt, 18, &dk, &err);
        kc_kms_provider_aws.close(state);
        residue = unwatch();
        ck_assert_msg(r == 0, "encrypt: %d %s", r, err.msg);
        ck_assert_int_eq(dk.blob_len, 4);
        ck_assert_ptr_null(dk.plaintext);
        kc_data_key_clear(&dk);
        pthread_join(t, NULL);
        close(st.listener);
        return residue;
}

/*
 * Encrypt through the provider: the request body carries the caller's key
 * (base64), which must never pass through json-c's buffers or a plain
 * malloc() copy, and goes to libcurl, whose copies are wiped.
 */
START_TEST(test_encrypt_request) {
        static const char *m[] = { "ENCRYPTPLAINMARK", NULL };

        setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE", 1);
        setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", 1);
        /* The marker at a multiple of 4 characters: the key's base64 spells it again. */
        ck_assert_int_eq(encrypt_watched("AAAAENCRYPTPLAINMARKAAAA", m, NULL), 0);
}
END_TEST

/*
 * The signed headers of a call: Authorization carries the signature (with
 * the request, good for five minutes) and the access key id, next to
 * X-Amz-Security-Token.  The signature is taken off the wire by the stub.
 */
START_TEST(test_signed_headers) {
        static const char *m[] = { "AKIDAUTHZMARK", "SESSIONTOKMARK", NULL, NULL };

        setenv("AWS_ACCESS_KEY_ID", "AKIDAUTHZMARK0EXAMPLE", 1);
        setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", 1);
        setenv("AWS_SESSION_TOKEN", "IQoJb3JpZ2luX2VjSESSIONTOKMARKxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 1);
        ck_assert_int_eq(encrypt_watched("AAAAAAAAAAAAAAAAAAAAAAAA", m, &m[2]), 0);
        ck_assert_msg(m[2], "the stub saw no Signature= in the request");
        unsetenv("AWS_SESSION_TOKEN");
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s;
        TCase *tc;

#ifdef KC_SANITIZED
        /* Before the suite exists: LeakSanitizer would report it as leaked. */
        kc_test_skip("a sanitizer's allocator cannot be watched from here");
#endif
        s = suite_create("aws-residue");
        tc = tcase_create("core");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_data_key_parse);
        tcase_add_test(tc, test_credentials_parse);
        tcase_add_test(tc, test_http_headers);
        tcase_add_test(tc, test_encrypt_request);
        tcase_add_test(tc, test_signed_headers);
        suite_add_tcase(s, tc);
        return s;
}
