/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "agent/aws/sigv4.h"
#include "lib/macro.h"
#include "lib/secret.h"
#include "tests/unit/check-main.h"

/*
 * Known answers from the AWS Signature Version 4 test suite (the published
 * "aws-sig-v4-test-suite": request, canonical request, string to sign and
 * Authorization header per case).  Credentials, region, service and date
 * are the suite's own published example values.
 */

#define SUITE_AKID "AKIDEXAMPLE"
#define SUITE_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_DATE "20150830T123600Z"
#define SUITE_TOKEN \
        "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/" \
        "qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
#define HOST { "Host", "example.amazonaws.com" }
#define DATE { "X-Amz-Date", SUITE_DATE }
#define STS_HEAD "AWS4-HMAC-SHA256\n" SUITE_DATE "\n20150830/us-east-1/service/aws4_request\n"
#define CRED "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "

struct vector {
        const char *name;
        const char *method, *path, *query, *body;
        struct kc_sigv4_header headers[8];
        const char *creq;               /* NULL: not checked */
        const char *sts_hash;           /* last line of the string to sign; NULL: not checked */
        const char *authz;
};

static const struct vector vectors[] = {
        {
                .name = "get-vanilla", .method = "GET", .path = "/",
                .headers = { HOST, DATE },
                .creq = "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                .sts_hash = "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
                .authz = CRED "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        },
        {
                .name = "get-vanilla-empty-query-key", .method = "GET", .path = "/", .query = "Param1=value1",
                .headers = { HOST, DATE },
                .sts_hash = "1e24db194ed7d0eec2de28d7369675a243488e08526e8c1c73571282f7c517ab",
                .authz = CRED "SignedHeaders=host;x-amz-date, Signature=a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb",
        },
        {
                .name = "get-vanilla-query-order-key", .method = "GET", .path = "/", .query = "Param1=value2&Param1=Value1",
                .headers = { HOST, DATE },
                .creq = "GET\n/\nParam1=Value1&Param1=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
                        "host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                .sts_hash = "704b4cef673542d84cdff252633f065e8daeba5f168b77116f8b1bcaf3d38f89",
                .authz = CRED "SignedHeaders=host;x-amz-date, Signature=eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1",
        },
        {
                .name = "get-vanilla-query-order-key-case", .method = "GET", .path = "/", .query = "Param2=value2&Param1=value1",
                .headers = { HOST, DATE },
                .sts_hash = "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0",
                .authz = CRED "SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        },
        {
                .name = "get-vanilla-query-order-value", .method = "GET", .path = "/", .query = "Param1=value2&Param1=value1",
                .headers = { HOST, DATE },
                .authz = CRED "SignedHeaders=host;x-amz-date, Signature=5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694",
        },
        {
                .name = "get-header-key-duplicate", .method = "GET", .path = "/",
                .headers = { HOST, { "My-Header1", "value2" }, { "My-Header1", "value2" }, { "My-Header1", "value1" }, DATE },
                .creq = "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\nx-amz-date:20150830T123600Z\n\n"
                        "host;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                .sts_hash = "dc7f04a3abfde8d472b0ab1a418b741b7c67174dad1551b4117b15527fbe966c",
                .authz = CRED "SignedHeaders=host;my-header1;x-amz-date, Signature=c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
        },
        {
                .name = "get-header-value-order", .method = "GET", .path = "/",
                .headers = { HOST, { "My-Header1", "value4" }, { "My-Header1", "value1" }, { "My-Header1", "value3" },
                             { "My-Header1", "value2" }, DATE },
                .sts_hash = "31ce73cd3f3d9f66977ad3dd957dc47af14df92fcd8509f59b349e9137c58b86",
                .authz = CRED "SignedHeaders=host;my-header1;x-amz-date, Signature=08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
        },
        {
                .name = "get-header-value-trim", .method = "GET", .path = "/",
                .headers = { HOST, { "My-Header1", " value1" }, { "My-Header2", " \"a   b   c\"" }, DATE },
                .creq = "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\n"
                        "host;my-header1;my-header2;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                .sts_hash = "a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
                .authz = CRED "SignedHeaders=host;my-header1;my-header2;x-amz-date, Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        },
        {
                .name = "get-unreserved", .method = "GET",
                .path = "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                .headers = { HOST, DATE },
                .sts_hash = "6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082757446f9",
                .authz = CRED "SignedHeaders=host;x-amz-date, Signature=07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
        },
        {
                .name = "post-vanilla", .method = "POST", .path = "/",
                .headers = { HOST, DATE },
                .sts_hash = "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
                .authz = CRED "SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        },
        {
                .name = "post-x-www-form-urlencoded", .method = "POST", .path = "/", .body = "Param1=value1",
                .headers = { { "Content-Type", "application/x-www-form-urlencoded" }, HOST, DATE },
                .creq = "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\n"
                        "x-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n"
                        "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
                .sts_hash = "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281",
                .authz = CRED "SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        },
        {
                .name = "post-sts-header-before", .method = "POST", .path = "/",
                .headers = { HOST, DATE, { "X-Amz-Security-Token", SUITE_TOKEN } },
                .authz = CRED "SignedHeaders=host;x-amz-date;x-amz-security-token, "
                         "Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
        },
        {
                /* The token is sent but added after signing: the signature is post-vanilla's. */
                .name = "post-sts-header-after", .method = "POST", .path = "/",
                .headers = { HOST, DATE },
                .authz = CRED "SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        },
};

static const struct kc_sigv4_signer suite_signer = {
        .access_key_id = SUITE_AKID, .secret_access_key = SUITE_SECRET,
        .region = "us-east-1", .service = "service", .amz_date = SUITE_DATE,
};

static struct kc_sigv4_request request_of(const struct vector *v) {
        size_t n = 0;

        while (n < ARRAY_SIZE(v->headers) && v->headers[n].name)
                n++;
        return (struct kc_sigv4_request) {
                .method = v->method, .path = v->path, .query = v->query,
                .headers = v->headers, .n_headers = n,
                .payload = v->body, .payload_len = v->body ? strlen(v->body) : 0,
        };
}

START_TEST(test_suite_vector) {
        const struct vector *v = &vectors[_i];
        struct kc_sigv4_request req = request_of(v);
        _cleanup_secret_ char *creq = NULL;
        _cleanup_free_ char *sh = NULL, *sts = NULL, *authz = NULL;

        ck_assert_int_eq(kc_sigv4_canonical_request(&req, &creq, &sh), 0);
        if (v->creq)
                ck_assert_msg(streq(creq, v->creq), "%s: canonical request\n%s\n!=\n%s", v->name, creq, v->creq);
        ck_assert_int_eq(kc_sigv4_string_to_sign(&suite_signer, creq, &sts), 0);
        ck_assert_msg(strncmp(sts, STS_HEAD, strlen(STS_HEAD)) == 0, "%s: string to sign head: %s", v->name, sts);
        if (v->sts_hash)
                ck_assert_msg(streq(sts + strlen(STS_HEAD), v->sts_hash), "%s: string to sign %s", v->name, sts);
        ck_assert_int_eq(kc_sigv4_authorization(&suite_signer, &req, &authz), 0);
        ck_assert_msg(streq(authz, v->authz), "%s:\n%s\n!=\n%s", v->name, authz, v->authz);
}
END_TEST

/* Any change to the secret, the date scope or a signed header changes the signature. */
START_TEST(test_signature_depends_on_inputs) {
        struct kc_sigv4_request req = request_of(&vectors[0]);
        struct kc_sigv4_signer s = suite_signer;
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL;

        s.secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEZ";
        ck_assert_int_eq(kc_sigv4_authorization(&s, &req, &a), 0);
        ck_assert_str_ne(a, vectors[0].authz);
        s = suite_signer;
        s.region = "eu-west-1";
        ck_assert_int_eq(kc_sigv4_authorization(&s, &req, &b), 0);
        ck_assert_ptr_nonnull(strstr(b, "/20150830/eu-west-1/service/aws4_request"));
        ck_assert_str_ne(strstr(b, "Signature="), strstr(vectors[0].authz, "Signature="));
        req.method = "POST";
        ck_assert_int_eq(kc_sigv4_authorization(&suite_signer, &req, &c), 0);
        ck_assert_str_eq(c, vectors[9].authz);  /* post-vanilla */
}
END_TEST

START_TEST(test_refuses_incomplete_signer) {
        struct kc_sigv4_request req = request_of(&vectors[0]);
        struct kc_sigv4_signer s = suite_signer;
        char *out = NULL;

        s.secret_access_key = NULL;
        ck_assert_int_eq(kc_sigv4_authorization(&s, &req, &out), -EINVAL);
        s = suite_signer;
        s.amz_date = "20150830";
        ck_assert_int_eq(kc_sigv4_authorization(&s, &req, &out), -EINVAL);
        ck_assert_ptr_null(out);
}
END_TEST

START_TEST(test_query_encoding) {
        struct kc_sigv4_header h[] = { HOST, DATE };
        struct kc_sigv4_request req = {
                .method = "GET", .path = "/", .query = "b=x y&a=1/2&a=", .headers = h, .n_headers = 2,
        };
        _cleanup_secret_ char *creq = NULL;
        _cleanup_free_ char *sh = NULL;

        ck_assert_int_eq(kc_sigv4_canonical_request(&req, &creq, &sh), 0);
        ck_assert_ptr_nonnull(strstr(creq, "\na=&a=1%2F2&b=x%20y\n"));
        ck_assert_str_eq(sh, "host;x-amz-date");
}
END_TEST

/* The canonical request holds the session token in clear: it comes back in secret memory. */
START_TEST(test_canonical_request_is_secret) {
        struct kc_sigv4_header h[] = { HOST, DATE, { "X-Amz-Security-Token", "FQoGZXIvYXdzEXAMPLETOKEN" } };
        struct kc_sigv4_request req = { .method = "POST", .path = "/", .headers = h, .n_headers = 3 };
        _cleanup_secret_ char *creq = NULL;
        _cleanup_free_ char *sh = NULL;

        ck_assert_int_eq(kc_sigv4_canonical_request(&req, &creq, &sh), 0);
        ck_assert_ptr_nonnull(strstr(creq, "\nx-amz-security-token:FQoGZXIvYXdzEXAMPLETOKEN\n"));
        ck_assert_uint_ge(kc_secret_size(creq), strlen(creq) + 1);
        ck_assert_str_eq(sh, "host;x-amz-date;x-amz-security-token");
}
END_TEST

START_TEST(test_format_date) {
        char d[17];

        kc_sigv4_format_date(1440938160, d);   /* 2015-08-30 12:36:00 UTC */
        ck_assert_str_eq(d, SUITE_DATE);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("sigv4");
        TCase *tc = tcase_create("suite");

        tcase_add_loop_test(tc, test_suite_vector, 0, ARRAY_SIZE(vectors));
        tcase_add_test(tc, test_signature_depends_on_inputs);
        tcase_add_test(tc, test_refuses_incomplete_signer);
        tcase_add_test(tc, test_query_encoding);
        tcase_add_test(tc, test_canonical_request_is_secret);
        tcase_add_test(tc, test_format_date);
        suite_add_tcase(s, tc);
        return s;
}
