/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "agent/aws/credentials.h"
#include "agent/aws/errors.h"
#include "agent/aws/http.h"
#include "agent/aws/response.h"
#include "agent/aws/sigv4.h"
#include "agent/kms.h"
#include "lib/backoff.h"
#include "lib/fault.h"
#include "lib/log.h"
#include "lib/secret.h"

/*
 * The `aws` provider: AWS KMS's JSON protocol (POST /, X-Amz-Target:
 * TrentService.<Operation>, application/x-amz-json-1.1), SigV4-signed,
 * over HTTPS with libcurl.  Key references are key or alias ARNs:
 *
 *     aws:arn:aws:kms:eu-west-1:111122223333:key/1234abcd-...
 *     aws:arn:aws:kms:eu-west-1:111122223333:alias/pgdata
 *
 * (a bare key id or alias/name uses the default region).  The ARN's region
 * picks the endpoint kms.<region>.amazonaws.com unless AWS_ENDPOINT_URL_KMS,
 * AWS_ENDPOINT_URL or kmscrypt.conf's aws-endpoint overrides it.  The encryption context goes to KMS as
 * its native EncryptionContext map, KeyId is always sent with Decrypt, and
 * the request id of the last exchange is kept for the audit record.
 * Settings (environment; see docs/aws.md):
 *
 *   KMSCRYPT_AWS_CA_FILE / AWS_CA_BUNDLE   CA bundle for verification (over aws-ca-file)
 *   KMSCRYPT_AWS_ALLOW_HTTP=1              plain http, loopback endpoints only
 *   KMSCRYPT_AWS_CONNECT_TIMEOUT_MS        per attempt (default 2000)
 *   KMSCRYPT_AWS_TIMEOUT_MS                per attempt, whole exchange (default 5000)
 *   KMSCRYPT_AWS_DEADLINE_MS               all attempts and backoff (default 15000)
 */

#define DEFAULT_CONNECT_TIMEOUT_MS 2000L
#define DEFAULT_TIMEOUT_MS 5000L
#define DEFAULT_DEADLINE_MS 15000L
#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 2000
/* An attempt with less time than this left before the deadline is not started: it could hardly be answered. */
#define ATTEMPT_MIN_MS 50
/*
 * A refusal for the request's time is followed by a clock correction only
 * when the server's Date is this far from the (corrected) clock we signed
 * with, as in the AWS SDK for Java v2: a nearer clock cannot have been the
 * cause, KMS allowing 5 minutes either way.
 */
#define CLOCK_SKEW_MIN_S (4 * 60)

struct aws_state {
        struct kc_http *http;
        struct kc_aws_credentials creds;
        char *default_region;     /* NULL: only ARNs name a region */
        char *endpoint;           /* override, NULL: regional endpoint */
        char *ca_file;
        long connect_timeout_ms, timeout_ms, deadline_ms;
        char request_id[96];      /* of the last exchange, "" if none */
        long long clock_offset;   /* seconds to add to our clock to sign: the KMS's clock, once it refused ours */
};

/* ---- settings ------------------------------------------------------------------------------- */

static int env_ms(const char *name, long def, long *ret, struct kc_err *err) {
        const char *v = getenv(name);
        char *end;
        long n;

        if (!v || !v[0]) {
                *ret = def;
                return 0;
        }
        errno = 0;
        n = strtol(v, &end, 10);
        if (errno || *end || n < 1 || n > 600000)
                return kc_err_set(err, -EINVAL, "%s must be 1..600000 milliseconds, not \"%.32s\"", name, v);
        *ret = n;
        return 0;
}

static const char *env_nonempty(const char *name) {
        const char *v = getenv(name);
        return v && v[0] ? v : NULL;
}

/*
 * https anywhere; plain http only to a loopback host and only when explicitly
 * allowed.  No path but "/": requests are signed (SigV4) for that one.
 * source: where url comes from, for the message.
 */
static int check_endpoint(const char *url, const char *source, struct kc_err *err) {
        const char *allow = getenv("KMSCRYPT_AWS_ALLOW_HTTP");
        const char *host = strstr(url, "://"), *path = host ? strchr(host + 3, '/') : NULL;

        if (path && !streq(path, "/"))
                return kc_err_set(err, -EINVAL, "%s: AWS KMS endpoint \"%.128s\" may not have a path (%.64s): "
                                  "requests are signed for \"/\"", source, url, path);
        if (kc_http_url_is_https(url))
                return 0;
        if (strncasecmp(url, "http://", 7) != 0)
                return kc_err_set(err, -EINVAL, "AWS KMS endpoint \"%.128s\" is neither https:// nor http://", url);
        if (!kc_http_url_is_loopback(url))
                return kc_err_set(err, -EPERM, "AWS KMS endpoint \"%.128s\": plain http is allowed for loopback "
                                  "endpoints only", url);
        if (!allow || !streq(allow, "1"))
                return kc_err_set(err, -EPERM, "AWS KMS endpoint \"%.128s\" is plain http: set "
                                  "KMSCRYPT_AWS_ALLOW_HTTP=1 to allow it on loopback", url);
        return 0;
}

static void aws_close(void *p) {
        struct aws_state *s = p;

        if (!s)
                return;
        kc_http_free(s->http);
        kc_aws_credentials_clear(&s->creds);
        free(s->default_region);
        free(s->endpoint);
        free(s->ca_file);
        free(s);
}

/*
 * Where the endpoint comes from, in the AWS SDKs' order (docs/aws.md): the
 * service's variable, the global one, then configuration (kmscrypt.conf
 * aws-endpoint, where the SDKs read endpoint_url from their config file);
 * AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true ignores all three.  NULL: regional.
 */
static const char *configured_endpoint(const struct kc_kms_config *cfg, const char **ret_source) {
        static const char *const vars[] = { "AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL" };
        const char *ignore = getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");

        if (ignore && strcasecmp(ignore, "true") == 0)
                return NULL;
        for (size_t i = 0; i < ARRAY_SIZE(vars); i++)
                if (env_nonempty(vars[i])) {
                        *ret_source = vars[i];
                        return env_nonempty(vars[i]);
                }
        *ret_source = "aws-endpoint";
        return cfg->aws_endpoint;
}

/* A CA bundle that cannot be read is named now, not reported later as a TLS failure. */
static int check_ca_file(const char *path, struct kc_err *err) {
        if (access(path, R_OK) < 0)
                return kc_err_set(err, negative_errno(), "AWS CA file %.200s: %m", path);
        return 0;
}

/* Region of bare key ids: AWS_REGION, AWS_DEFAULT_REGION, aws-region, the AWS config file. */
static int default_region(const struct kc_kms_config *cfg, char **ret) {
        if (!env_nonempty("AWS_REGION") && !env_nonempty("AWS_DEFAULT_REGION") && cfg->aws_region) {
                *ret = strdup(cfg->aws_region);
                return *ret ? 0 : -ENOMEM;
        }
        return kc_aws_default_region(ret);
}

static int aws_open(const struct kc_kms_config *cfg, void **ret_state, struct kc_err *err) {
        struct aws_state *s = calloc(1, sizeof(*s));
        const char *source = NULL, *endpoint = configured_endpoint(cfg, &source);
        const char *ca = env_nonempty("KMSCRYPT_AWS_CA_FILE") ?: env_nonempty("AWS_CA_BUNDLE") ?: cfg->aws_ca_file;
        int r;

        if (!s)
                return -ENOMEM;
        r = kc_http_new(&s->http);
        if (r >= 0)
                r = env_ms("KMSCRYPT_AWS_CONNECT_TIMEOUT_MS", DEFAULT_CONNECT_TIMEOUT_MS, &s->connect_timeout_ms, err);
        if (r >= 0)
                r = env_ms("KMSCRYPT_AWS_TIMEOUT_MS", DEFAULT_TIMEOUT_MS, &s->timeout_ms, err);
        if (r >= 0)
                r = env_ms("KMSCRYPT_AWS_DEADLINE_MS", DEFAULT_DEADLINE_MS, &s->deadline_ms, err);
        if (r >= 0 && endpoint) {
                r = check_endpoint(endpoint, source, err);
                if (r >= 0 && !(s->endpoint = strdup(endpoint)))
                        r = -ENOMEM;
        }
        if (r >= 0 && ca) {
                r = check_ca_file(ca, err);
                if (r >= 0 && !(s->ca_file = strdup(ca)))
                        r = -ENOMEM;
        }
        if (r >= 0 && default_region(cfg, &s->default_region) < 0)
                s->default_region = NULL;   /* key ARNs carry their region */
        if (r < 0) {
                aws_close(s);
                return r;
        }
        *ret_state = s;
        return 0;
}

/* ---- key references ------------------------------------------------------------------------- */

struct key_ref {
        char region[32];
        char partition[16];
        const char *key_id;       /* what KMS gets as KeyId: the ARN, or the bare id/alias */
};

static bool region_valid(const char *r, size_t n) {
        if (n == 0 || n >= 32)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!islower((unsigned char) r[i]) && !isdigit((unsigned char) r[i]) && r[i] != '-')
                        return false;
        return true;
}

static bool resource_valid(const char *s) {
        if (strncmp(s, "key/", 4) != 0 && strncmp(s, "alias/", 6) != 0)
                return false;
        if (!s[strncmp(s, "key/", 4) == 0 ? 4 : 6] || strlen(s) > 256 + 6)
                return false;
        for (; *s; s++)
                if (!isalnum((unsigned char) *s) && !strchr("/_-", *s))
                        return false;
        return true;
}

/* "arn:<partition>:kms:<region>:<12-digit account>:key/<id>" or ":alias/<name>"; else a bare id/alias. */
static int parse_key(const struct aws_state *s, const char *key, struct key_ref *ret, struct kc_err *err) {
        const char *f[6];
        const char *p = key;
        size_t n = 0;

        if (!key || !key[0])
                return kc_err_set(err, -EINVAL, "no AWS KMS key given");
        *ret = (struct key_ref) { .key_id = key };
        if (strncmp(key, "arn:", 4) != 0) {
                /* Bare key id or alias/name: the default region must be known. */
                bool ok = strncmp(key, "alias/", 6) == 0 ? resource_valid(key)
                        : strlen(key) <= 64 && strspn(key, "0123456789abcdefmrk-") == strlen(key);
                if (!ok)
                        return kc_err_set(err, -EINVAL, "\"%.128s\" is not an AWS KMS key ARN, key id or alias", key);
                if (!s->default_region)
                        return kc_err_set(err, -EINVAL, "key \"%.128s\" names no region and none is configured "
                                          "(AWS_REGION, AWS_DEFAULT_REGION, aws-region or the profile)", key);
                kc_strscpy(ret->region, sizeof(ret->region), s->default_region);
                kc_strscpy(ret->partition, sizeof(ret->partition), "aws");
                return 0;
        }
        for (f[n++] = p; n < 6 && (p = strchr(p, ':')); f[n++] = ++p)
                ;
        if (n != 6 || (size_t) (f[2] - f[1]) > sizeof(ret->partition) || strncmp(f[2], "kms:", 4) != 0 ||
            strncmp(f[1], "aws", 3) != 0 || !region_valid(f[3], (size_t) (f[4] - f[3] - 1)) ||
            f[5] - f[4] - 1 != 12 || strspn(f[4], "0123456789") != 12 || !resource_valid(f[5]))
                return kc_err_set(err, -EINVAL, "\"%.160s\" is not an AWS KMS key or alias ARN "
                                  "(arn:aws:kms:REGION:ACCOUNT:key/ID)", key);
        memcpy(ret->partition, f[1], (size_t) (f[2] - f[1] - 1));
        memcpy(ret->region, f[3], (size_t) (f[4] - f[3] - 1));
        return 0;
}

/* The id part of a key ARN ("key/<id>"), or the whole string; cut to 64 characters. */
static void key_id_of(const char *arn, char ret[65]) {
        const char *k = arn ? strstr(arn, ":key/") : NULL;

        kc_strscpy(ret, 65, k ? k + 5 : arn ?: "");
}

/*
 * For the audit trail, whose records name an AWS key by the id part of its
 * ARN: a key ARN or a bare id, without a call.  An alias would need one.
 */
static int aws_peek_key_id(const struct kc_kms_config *cfg, const char *key, char ret_key_id[65],
                           struct kc_err *err) {
        bool arn = strncmp(key, "arn:", 4) == 0;

        if ((arn && !strstr(key, ":key/")) || (!arn && strncmp(key, "alias/", 6) == 0))
                return kc_err_set(err, -EOPNOTSUPP, "%.128s: AWS KMS aliases are not looked up here; "
                                  "give the key id or key ARN", key);
        key_id_of(key, ret_key_id);
        return 0;
}

/* ---- one signed call, retried --------------------------------------------------------------- */

static long now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* The deadline of a call started now, on now_ms()'s clock: its attempts and backoff all end by then. */
static long call_deadline(const struct aws_state *s) {
        return now_ms() + s->deadline_ms;
}

static bool transport_retryable(int r) {
        return r == -ECONNREFUSED || r == -ECONNRESET || r == -ETIMEDOUT || r == -EHOSTUNREACH;
}

/*
 * Whether a call may be sent again after a failure that leaves open whether
 * KMS carried it out (a reset or a timeout after sending, a 5xx).  Sent
 * again, a ScheduleKeyDeletion that went through meets a key already
 * pending deletion and fails: the change would be reported, and audited,
 * as not made.  Those are retried only where nothing was sent.
 */
static bool operation_idempotent(const char *operation) {
        return !streq(operation, "ScheduleKeyDeletion") && !streq(operation, "CancelKeyDeletion") &&
               !streq(operation, "CreateKey");
}

static int endpoint_for(const struct aws_state *s, const struct key_ref *k, char **ret) {
        if (s->endpoint)
                *ret = strdup(s->endpoint);
        else if (asprintf(ret, "https://kms.%s.amazonaws.com%s/", k->region,
                          streq(k->partition, "aws-cn") ? ".cn" : "") < 0)
                *ret = NULL;
        return *ret ? 0 : -ENOMEM;
}

/* "host[:port]" of url, signed and sent as the Host header. */
static int host_of(const char *url, char **ret) {
        const char *p = strstr(url, "://");
        size_t n;

        if (!p)
                return -EINVAL;
        p += 3;
        n = strcspn(p, "/?#");
        if (n == 0 || memchr(p, '@', n))
                return -EINVAL;
        *ret = strndup(p, n);
        return *ret ? 0 : -ENOMEM;
}

/*
 * The time by the clock this session signs with: ours, or the KMS's once it
 * refused ours (correct_clock()).  Temporary credentials expire by the
 * clock of the service that issued them, so their expiry is judged by this
 * one too: a host an hour behind would otherwise keep a set past its end.
 */
static time_t session_now(const struct aws_state *s) {
        return time(NULL) + (time_t) s->clock_offset;
}

/*
 * One signed exchange: 0 and the response, or a transport error.  The
 * Authorization value is wiped like the session token: its signature,
 * with the request, is good for a replay for five minutes.
 */
static int exchange(struct aws_state *s, const char *url, const char *host, const char *region,
                    const char *target, const char *body, long timeout_ms, struct kc_http_response *resp,
                    struct kc_err *err) {
        _cleanup_free_ char *h_host = NULL, *h_date = NULL, *h_target = NULL;
        _cleanup_wipe_str_ char *authz = NULL, *h_authz = NULL, *h_token = NULL;
        char date[17];
        struct kc_sigv4_header sh[5] = {
                { "Content-Type", "application/x-amz-json-1.1" },
                { "Host", host },
                { "X-Amz-Date", date },
                { "X-Amz-Target", target },
                { "X-Amz-Security-Token", s->creds.session_token },
        };
        const char *headers[7] = {};
        int r;

        kc_sigv4_format_date((long long) session_now(s), date);
        r = kc_sigv4_authorization(&(struct kc_sigv4_signer) {
                .access_key_id = s->creds.access_key_id, .secret_access_key = s->creds.secret_access_key,
                .region = region, .service = "kms", .amz_date = date,
        }, &(struct kc_sigv4_request) {
                .method = "POST", .path = "/", .headers = sh, .n_headers = s->creds.session_token ? 5 : 4,
                .payload = body, .payload_len = strlen(body),
        }, &authz);
        if (r < 0)
                return kc_err_set(err, r, "cannot sign the AWS KMS request");
        /* Exact-size blocks (kc_format_exact): the Authorization and token lines are wiped when freed. */
        if (kc_format_exact(&h_host, "Host: %s", host) < 0 || kc_format_exact(&h_date, "X-Amz-Date: %s", date) < 0 ||
            kc_format_exact(&h_target, "X-Amz-Target: %s", target) < 0 ||
            kc_format_exact(&h_authz, "Authorization: %s", authz) < 0 ||
            (s->creds.session_token &&
             kc_format_exact(&h_token, "X-Amz-Security-Token: %s", s->creds.session_token) < 0))
                return -ENOMEM;
        headers[0] = "Content-Type: application/x-amz-json-1.1";
        headers[1] = h_host;
        headers[2] = h_date;
        headers[3] = h_target;
        headers[4] = h_authz;
        headers[5] = h_token;
        return kc_http_perform(s->http, &(struct kc_http_request) {
                .method = "POST", .url = url, .headers = headers, .body = body, .body_len = strlen(body),
                .connect_timeout_ms = s->connect_timeout_ms < timeout_ms ? s->connect_timeout_ms : timeout_ms,
                .timeout_ms = timeout_ms, .ca_file = s->ca_file,
        }, resp, err);
}

/*
 * After a refusal for the request's time (kc_aws_error_clock_skew), the
 * AWS SDKs' correction: the offset of the server's clock, from the Date
 * header of the refusal, kept for the rest of the session and signed
 * with from now on.  True when it changed enough to try again.  A clock
 * set right later is corrected back the same way.
 */
static bool correct_clock(struct aws_state *s, const char *date) {
        long long now = (long long) time(NULL), offset;
        time_t server;

        if (kc_aws_parse_http_date(date, &server) < 0)
                return false;
        offset = (long long) server - now;
        if (llabs(offset - s->clock_offset) < CLOCK_SKEW_MIN_S)
                return false;
        log_debug("AWS KMS refused the request's time: signing with the server's clock (Date: %s), %+lld s from ours",
                  date, offset);
        s->clock_offset = offset;
        return true;
}

/*
 * Call operation with the request body (JSON text; the caller's, which may
 * be kc_secret memory: it is only read); on 200 the response, its body in
 * kc_secret memory for agent/aws/response.h to parse (ret NULL: not wanted).
 * Throttling, 5xx and transport failures are retried with exponential
 * backoff and full jitter until deadline, a now_ms() time: call_deadline()
 * for a call of its own, the operation's for a call that serves one.
 */
static int aws_call_body(struct aws_state *s, const struct key_ref *k, const char *operation, const char *body,
                         long deadline, struct kc_http_response *ret, struct kc_err *err) {
        _cleanup_free_ char *url = NULL, *host = NULL, *target = NULL;
        bool clock_corrected = false;
        int r;

        s->request_id[0] = '\0';
        r = endpoint_for(s, k, &url);
        if (r >= 0)
                r = host_of(url, &host);
        if (r < 0)
                return kc_err_set(err, r, "bad AWS KMS endpoint");
        if (asprintf(&target, "TrentService.%s", operation) < 0)
                return -ENOMEM;

        for (unsigned attempt = 0;; attempt++) {
                struct kc_http_response resp = {};
                struct kc_err e = {};
                long left, backoff;
                bool retry = false;
                int status = 0;

                r = kc_aws_credentials_refresh(s->http, &s->creds, session_now(s), err);
                if (r < 0)
                        return r;
                /* After the credentials, which may have taken a metadata service's time. */
                left = deadline - now_ms();
                if (left <= 0)
                        return kc_err_set(err, -ETIMEDOUT, "AWS KMS %s: no time left within %ld ms", operation,
                                          s->deadline_ms);
                r = exchange(s, url, host, k->region, target, body, left < s->timeout_ms ? left : s->timeout_ms,
                             &resp, &e);
                if (r >= 0) {
                        memcpy(s->request_id, resp.request_id, sizeof(s->request_id));
                        /* Calls whose answer is not needed (EnableKey's is empty, or "null") skip parsing. */
                        if (resp.status == 200 && ret) {
                                *ret = resp;
                                return 0;
                        }
                        status = (int) resp.status;
                        r = resp.status == 200 ? 0 : kc_aws_error_map(resp.status, resp.error_type, resp.body,
                                                                      resp.body_len, operation, resp.request_id,
                                                                      &retry, &e);
                        /* Signed again with the server's time, once per call. */
                        if (r < 0 && !clock_corrected &&
                            kc_aws_error_clock_skew(resp.error_type, resp.body, resp.body_len) &&
                            correct_clock(s, resp.date))
                                retry = clock_corrected = true;
                        kc_http_response_clear(&resp);
                        if (r >= 0)
                                return 0;
                        if (r == -EACCES && strstr(e.msg, "ExpiredToken")) {
                                kc_aws_credentials_clear(&s->creds);   /* reloaded for one more try */
                                retry = attempt == 0;
                        }
                        if (status >= 500 && !operation_idempotent(operation))
                                retry = false;
                } else
                        retry = transport_retryable(r) &&
                                (operation_idempotent(operation) || r == -ECONNREFUSED || r == -EHOSTUNREACH);
                /* Full jitter: sleep uniformly in [0, min(cap, base * 2^attempt)]. */
                backoff = kc_backoff_ceiling(attempt, BACKOFF_BASE_MS, BACKOFF_CAP_MS);
                backoff = kc_backoff_draw((unsigned) backoff, (unsigned) backoff);
                if (!retry || now_ms() + backoff + ATTEMPT_MIN_MS >= deadline) {
                        if (retry)
                                return kc_err_set(err, r, "%s (gave up after %u attempts within %ld ms)",
                                                  kc_err_msg(&e, r), attempt + 1, s->deadline_ms);
                        return kc_err_set(err, r, "%s", kc_err_msg(&e, r));
                }
                log_debug("AWS KMS %s: %s; retrying in %ld ms", operation, kc_err_msg(&e, r), backoff);
                nanosleep(&(struct timespec) { backoff / 1000, (backoff % 1000) * 1000000L }, NULL);
        }
}

/* aws_call_body() with the JSON request req, which carries no secret (json-c's buffers are not wiped). */
static int aws_call(struct aws_state *s, const struct key_ref *k, const char *operation, struct json_object *req,
                    long deadline, struct kc_http_response *ret, struct kc_err *err) {
        _cleanup_free_ char *body = strdup(json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN));

        if (!body)
                return -ENOMEM;
        return aws_call_body(s, k, operation, body, deadline, ret, err);
}

/* ---- JSON helpers --------------------------------------------------------------------------- */

static int b64_encode(const uint8_t *in, size_t n, char **ret) {
        char *out = malloc(4 * ((n + 2) / 3) + 1);

        if (!out)
                return -ENOMEM;
        EVP_EncodeBlock((unsigned char *) out, in, (int) n);
        *ret = out;
        return 0;
}

static int add_string(struct json_object *o, const char *name, const char *value) {
        struct json_object *v = json_object_new_string(value);

        if (!v || json_object_object_add(o, name, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int add_blob(struct json_object *o, const char *name, const uint8_t *blob, size_t len) {
        _cleanup_free_ char *b64 = NULL;
        int r = b64_encode(blob, len, &b64);

        return r < 0 ? r : add_string(o, name, b64);
}

static int add_context(struct json_object *o, const char *name, const struct kc_context *ctx) {
        struct json_object *m = NULL;
        int r = kc_context_to_json(ctx, &m);

        if (r < 0)
                return r;
        if (json_object_object_add(o, name, m) < 0) {
                json_object_put(m);
                return -ENOMEM;
        }
        return 0;
}

DEFINE_CLEANUP_FUNC(struct json_object *, json_object_put)

/* ---- operations ----------------------------------------------------------------------------- */

/* DescribeKey of key, its attempts ending by deadline. */
static int describe_key(struct aws_state *s, const char *key, long deadline, struct kc_key_info *ret,
                        struct kc_err *err) {
        _cleanup_(json_object_putp) struct json_object *req = json_object_new_object();
        _cleanup_(kc_http_response_clear) struct kc_http_response resp = {};
        struct kc_key_info info;
        const char *alias;
        struct key_ref k;
        int r;

        r = parse_key(s, key, &k, err);
        if (r < 0)
                return r;
        if (!req || add_string(req, "KeyId", k.key_id) < 0)
                return -ENOMEM;
        r = aws_call(s, &k, "DescribeKey", req, deadline, &resp, err);
        if (r >= 0)
                r = kc_aws_response_describe_key(resp.body, resp.body_len, &info, err);
        if (r < 0)
                return r;
        /* The response names no alias: the one asked by is the one shown. */
        alias = strstr(key, "alias/");
        if (alias)
                kc_strscpy(info.alias, sizeof(info.alias), alias);
        *ret = info;
        return 0;
}

/*
 * KMSInvalidStateException (r is -EKEYEXPIRED: errors.c maps nothing else
 * to it) says that the state of a key forbids the operation, not which
 * state: pending deletion, which is final, or a disconnected custom key
 * store (Unavailable; AWS disconnects them for maintenance too), or a
 * multi-Region replica being made or changed (Creating, Updating), which
 * pass.  DescribeKey tells them apart, as the revocation check does.  A
 * key it finds Enabled changed state between the two calls (enabled again,
 * its store reconnected): the refusal no longer holds either.  The refusal
 * becomes -EAGAIN, which kmscryptd retries, only when each of the
 * operation's keys (key, and other for ReEncrypt) is in a state that
 * passes or Enabled: a deletion never turns into a retry loop, nor does a
 * DescribeKey that fails (a policy without kms:DescribeKey).  The
 * operation itself is not sent again here, and its request id is left as
 * the last one: the audit record is the operation's.  The DescribeKey
 * calls have what is left of the operation's deadline, so that the whole
 * takes no longer than KMSCRYPT_AWS_DEADLINE_MS; with no time left for
 * them, the refusal stands as it was.
 */
static int explain_invalid_state(struct aws_state *s, const char *operation, const char *key, const char *other,
                                 long deadline, int r, struct kc_err *err) {
        const char *keys[2] = { key, other && !streq(other, key) ? other : NULL };
        char request_id[sizeof(s->request_id)];
        struct kc_err outage = {};
        bool final = false, changed = false;

        if (r != -EKEYEXPIRED)
                return r;
        kc_fault_point("aws:before-explain");   /* tests/aws: the deadline runs out here */
        memcpy(request_id, s->request_id, sizeof(request_id));
        for (size_t i = 0; i < ARRAY_SIZE(keys) && keys[i] && !final; i++) {
                struct kc_key_info info;
                struct kc_err e = {};

                if (deadline - now_ms() < ATTEMPT_MIN_MS) {
                        log_debug("AWS KMS %s refused for the key's state, with no time left within %ld ms to ask "
                                  "DescribeKey which", operation, s->deadline_ms);
                        final = true;
                } else if (describe_key(s, keys[i], deadline, &info, &e) < 0) {
                        log_debug("AWS KMS %s refused for the key's state, which DescribeKey does not tell: %s",
                                  operation, e.msg);
                        final = true;
                } else if (kc_aws_error_state_outage(operation, request_id, info.key_id, info.state, s->request_id,
                                                     &e) == 0)
                        final = true;
                /* ReEncrypt's other key in an outage explains more than one found Enabled again. */
                else if (outage.error == 0 || (changed && info.state != KC_KEY_ENABLED)) {
                        outage = e;
                        changed = info.state == KC_KEY_ENABLED;
                }
        }
        memcpy(s->request_id, request_id, sizeof(s->request_id));
        if (final || outage.error == 0)
                return r;
        if (err)
                *err = outage;   /* kc_err_set() keeps the first error: this one says more */
        return outage.error;
}

static int aws_generate_data_key(void *state, const char *key, const struct kc_context *ctx, size_t nbytes,
                                 struct kc_data_key *ret, struct kc_err *err) {
        struct aws_state *s = state;
        _cleanup_(json_object_putp) struct json_object *req = json_object_new_object();
        _cleanup_(kc_http_response_clear) struct kc_http_response resp = {};
        struct key_ref k;
        long deadline;
        int r;

        if (!ctx)
                return kc_err_set(err, -EINVAL, "an encryption context is required");
        if (nbytes < 1 || nbytes > KC_AWS_MAX_DATA_KEY)
                return kc_err_set(err, -EINVAL, "data key size must be 1..%d bytes, not %zu", KC_AWS_MAX_DATA_KEY,
                                  nbytes);
        r = parse_key(s, key, &k, err);
        if (r < 0)
                return r;
        if (!req || add_string(req, "KeyId", k.key_id) < 0 || add_context(req, "EncryptionContext", ctx) < 0 ||
            json_object_object_add(req, "NumberOfBytes", json_object_new_int((int) nbytes)) < 0)
                return -ENOMEM;
        deadline = call_deadline(s);
        r = aws_call(s, &k, "GenerateDataKey", req, deadline, &resp, err);
        if (r < 0)
                return explain_invalid_state(s, "GenerateDataKey", key, NULL, deadline, r, err);
        return kc_aws_response_data_key("GenerateDataKey", resp.body, resp.body_len, nbytes, ret, err);
}

static int aws_decrypt(void *state, const char *key, const uint8_t *blob, size_t blob_len,
                       const struct kc_context *ctx, void **ret_plaintext,
                       char ret_key_id[65], uint32_t *ret_key_version, struct kc_err *err) {
        struct aws_state *s = state;
        _cleanup_(json_object_putp) struct json_object *req = json_object_new_object();
        _cleanup_(kc_http_response_clear) struct kc_http_response resp = {};
        struct key_ref k;
        long deadline;
        int r;

        if (!ctx)
                return kc_err_set(err, -EINVAL, "an encryption context is required");
        /* KeyId is always sent: KMS then refuses a blob of any other key (IncorrectKeyException). */
        if (!key)
                return kc_err_set(err, -EINVAL, "the aws provider needs the key ARN to decrypt");
        r = parse_key(s, key, &k, err);
        if (r < 0)
                return r;
        if (!req || add_blob(req, "CiphertextBlob", blob, blob_len) < 0 || add_string(req, "KeyId", k.key_id) < 0 ||
            add_context(req, "EncryptionContext", ctx) < 0)
                return -ENOMEM;
        deadline = call_deadline(s);
        r = aws_call(s, &k, "Decrypt", req, deadline, &resp, err);
        if (r < 0)
                return explain_invalid_state(s, "Decrypt", key, NULL, deadline, r, err);
        r = kc_aws_response_decrypt(resp.body, resp.body_len, ret_plaintext, ret_key_id, err);
        if (r < 0)
                return r;
        *ret_key_version = KC_AWS_KEY_VERSION;
        return 0;
}

static int aws_re_encrypt(void *state, const char *src_key, const uint8_t *blob, size_t blob_len,
                          const struct kc_context *src_ctx, const char *dst_key,
                          const struct kc_context *dst_ctx, struct kc_data_key *ret, bool *source_refused,
                          struct kc_err *err) {
        struct aws_state *s = state;
        _cleanup_(json_object_putp) struct json_object *req = json_object_new_object();
        _cleanup_(kc_http_response_clear) struct kc_http_response resp = {};
        struct key_ref src, dst;
        long deadline;
        int r;

        if (!src_ctx)
                return kc_err_set(err, -EINVAL, "an encryption context is required");
        if (!src_key)
                return kc_err_set(err, -EINVAL, "the aws provider needs the source key ARN to re-encrypt");
        r = parse_key(s, src_key, &src, err);
        if (r >= 0)
                r = parse_key(s, dst_key ?: src_key, &dst, err);
        if (r < 0)
                return r;
        /* One call goes to one region: KMS cannot re-encrypt across regions. */
        if (!streq(src.region, dst.region))
                return kc_err_set(err, -EXDEV, "cannot re-encrypt from region %s to region %s in one call",
                                  src.region, dst.region);
        if (!req || add_blob(req, "CiphertextBlob", blob, blob_len) < 0 ||
            add_string(req, "SourceKeyId", src.key_id) < 0 ||
            add_context(req, "SourceEncryptionContext", src_ctx) < 0 ||
            add_string(req, "DestinationKeyId", dst.key_id) < 0 ||
            add_context(req, "DestinationEncryptionContext", dst_ctx ?: src_ctx) < 0)
                return -ENOMEM;
        deadline = call_deadline(s);
        r = aws_call(s, &src, "ReEncrypt", req, deadline, &resp, err);
        /*
         * InvalidCiphertextException and IncorrectKeyException are the source's: the blob, its key or
         * context.  A disabled key, one pending deletion or not found may be either: KMS does not say.
         */
        if (r == -EBADMSG)
                *source_refused = true;
        if (r < 0)
                return explain_invalid_state(s, "ReEncrypt", src_key, dst_key, deadline, r, err);
        /* KMS re-wraps inside the HSM: no plaintext reaches this host (ret->plaintext stays NULL). */
        return kc_aws_response_data_key("ReEncrypt", resp.body, resp.body_len, 0, ret, err);
}

/*
 * The Encrypt request body in kc_secret memory: {"Plaintext":"<base64>",
 * then the members of rest, the JSON object of the other members that
 * json-c made.  The plaintext never passes through json-c, whose strings
 * and printbuf (grown with realloc()) are freed unwiped; base64 needs no
 * JSON escaping.
 */
static int encrypt_body(const char *rest, const void *plaintext, size_t len, char **ret) {
        static const char head[] = "{\"Plaintext\":\"";
        size_t b64_len = 4 * ((len + 2) / 3), rest_len = rest ? strlen(rest) : 0;
        char *body, *p;

        /* rest is "{...}" and not empty (KeyId): its members follow ours after a comma. */
        if (rest_len < 3 || rest[0] != '{')
                return -EINVAL;
        body = kc_secret_alloc(sizeof(head) - 1 + b64_len + 2 + rest_len);
        if (!body)
                return -ENOMEM;
        p = stpcpy(body, head);
        EVP_EncodeBlock((unsigned char *) p, plaintext, (int) len);
        p = stpcpy(p + b64_len, "\",");
        strcpy(p, rest + 1);
        *ret = body;
        return 0;
}

static int aws_encrypt(void *state, const char *key, const struct kc_context *ctx, const void *plaintext,
                       size_t len, struct kc_data_key *ret, struct kc_err *err) {
        struct aws_state *s = state;
        _cleanup_(json_object_putp) struct json_object *req = json_object_new_object();
        _cleanup_(kc_http_response_clear) struct kc_http_response resp = {};
        _cleanup_secret_ char *body = NULL;
        struct key_ref k;
        long deadline;
        int r;

        if (!ctx)
                return kc_err_set(err, -EINVAL, "an encryption context is required");
        if (!plaintext || len < 1 || len > KC_AWS_MAX_PLAINTEXT)
                return kc_err_set(err, -EINVAL, "plaintext size must be 1..%d bytes, not %zu", KC_AWS_MAX_PLAINTEXT,
                                  len);
        r = parse_key(s, key, &k, err);
        if (r < 0)
                return r;
        if (!req || add_string(req, "KeyId", k.key_id) < 0 || add_context(req, "EncryptionContext", ctx) < 0)
                return -ENOMEM;
        r = encrypt_body(json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN), plaintext, len, &body);
        if (r < 0)
                return r == -EINVAL ? -ENOMEM : r;   /* json-c gave no text */
        deadline = call_deadline(s);
        r = aws_call_body(s, &k, "Encrypt", body, deadline, &resp, err);
        if (r < 0)
                return explain_invalid_state(s, "Encrypt", key, NULL, deadline, r, err);
        /* The answer carries no Plaintext: the caller holds it, ret->plaintext stays NULL. */
        return kc_aws_response_data_key("Encrypt", resp.body, resp.body_len, 0, ret, err);
}

static int aws_describe_key(void *state, const char *key, struct kc_key_info *ret, struct kc_err *err) {
        struct aws_state *s = state;

        return describe_key(s, key, call_deadline(s), ret, err);
}

/* ---- key management that maps one to one ------------------------------------------------- */

static int simple_call(struct aws_state *s, const char *key, const char *operation,
                       struct kc_http_response *ret_resp, int days, struct kc_err *err) {
        _cleanup_(json_object_putp) struct json_object *req = json_object_new_object();
        char id[65];
        struct key_ref k;
        int r = parse_key(s, key, &k, err);

        if (r < 0)
                return r;
        /*
         * Key management is never cross-account, so the bare id in the ARN's
         * region names the same key; some KMS implementations (moto) accept
         * only the id here.
         */
        key_id_of(k.key_id, id);
        if (!req || add_string(req, "KeyId", id) < 0 ||
            (days > 0 && json_object_object_add(req, "PendingWindowInDays", json_object_new_int(days)) < 0))
                return -ENOMEM;
        return aws_call(s, &k, operation, req, call_deadline(s), ret_resp, err);
}

static int aws_set_enabled(void *state, const char *key, bool enabled, struct kc_err *err) {
        return simple_call(state, key, enabled ? "EnableKey" : "DisableKey", NULL, 0, err);
}

static int aws_schedule_deletion(void *state, const char *key, unsigned days, time_t *ret_date, struct kc_err *err) {
        _cleanup_(kc_http_response_clear) struct kc_http_response resp = {};
        time_t date;
        int r;

        /* AWS's own bounds for the waiting period. */
        if (days < 7 || days > 30)
                return kc_err_set(err, -EINVAL, "AWS KMS deletion waiting period must be 7..30 days, not %u", days);
        r = simple_call(state, key, "ScheduleKeyDeletion", &resp, (int) days, err);
        if (r < 0)
                return r;
        r = kc_aws_response_deletion_date(resp.body, resp.body_len, &date, err);
        if (r < 0)
                return r;
        if (ret_date)
                *ret_date = date;
        return 0;
}

static int aws_cancel_deletion(void *state, const char *key, struct kc_err *err) {
        return simple_call(state, key, "CancelKeyDeletion", NULL, 0, err);
}

static const char *aws_last_request_id(void *state) {
        struct aws_state *s = state;
        return s->request_id[0] ? s->request_id : NULL;
}

const struct kc_kms_provider kc_kms_provider_aws = {
        .name = "aws",
        .open = aws_open,
        .close = aws_close,
        .generate_data_key = aws_generate_data_key,
        .decrypt = aws_decrypt,
        .re_encrypt = aws_re_encrypt,
        .describe_key = aws_describe_key,
        .encrypt = aws_encrypt,
        .set_enabled = aws_set_enabled,
        .schedule_deletion = aws_schedule_deletion,
        .cancel_deletion = aws_cancel_deletion,
        .last_request_id = aws_last_request_id,
        .peek_key_id = aws_peek_key_id,
};
