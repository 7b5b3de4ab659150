/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <arpa/inet.h>
#include <ctype.h>
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <malloc.h>
#include <openssl/ssl.h>

#include "agent/aws/http.h"
#include "lib/json-util.h"
#include "lib/log.h"
#include "lib/secret.h"

/*
 * libcurl is loaded on the aws provider's first use, not linked: it and the
 * libraries it pulls in (TLS, IDN, SSH, LDAP, Kerberos, ...) cost every
 * kmscrypt process about 16 ms of start-up on real hardware, three times
 * what the rest of the program costs, although only volumes of the aws
 * provider need it.  Each call below goes through this table.
 */
static struct {
        CURLcode (*global_init_mem)(long flags, curl_malloc_callback m, curl_free_callback f,
                                    curl_realloc_callback r, curl_strdup_callback s, curl_calloc_callback c);
        CURL *(*easy_init)(void);
        void (*easy_cleanup)(CURL *c);
        void (*easy_reset)(CURL *c);
        CURLcode (*easy_setopt)(CURL *c, CURLoption option, ...);
        CURLcode (*easy_perform)(CURL *c);
        CURLcode (*easy_getinfo)(CURL *c, CURLINFO info, ...);
        const char *(*easy_strerror)(CURLcode code);
        struct curl_slist *(*slist_append)(struct curl_slist *l, const char *s);
        void (*slist_free_all)(struct curl_slist *l);
        CURLU *(*url)(void);
        CURLUcode (*url_set)(CURLU *u, CURLUPart what, const char *part, unsigned flags);
        CURLUcode (*url_get)(const CURLU *u, CURLUPart what, char **part, unsigned flags);
        void (*url_cleanup)(CURLU *u);
        void (*free)(void *p);
        curl_version_info_data *(*version_info)(CURLversion age);
        /* From the libssl libcurl loaded, when it is OpenSSL 3; else NULL. */
        uint64_t (*ssl_ctx_set_options)(SSL_CTX *ctx, uint64_t options);
} lc;
static int lc_status = -ENOPKG;
static pthread_once_t lc_once = PTHREAD_ONCE_INIT;

/*
 * A KMS response carries a plaintext data key (base64).  OpenSSL keeps each
 * TLS record it decrypted in its read buffer until the next one overwrites
 * it; SSL_OP_CLEANSE_PLAINTEXT has it wipe the record once delivered.  We
 * link no libssl (libcurl is loaded, not linked, and may use another TLS
 * library): when libcurl's TLS is OpenSSL 3, its libssl is already in the
 * process, and we take SSL_CTX_set_options from it for the
 * CURLOPT_SSL_CTX_FUNCTION callback below.
 */
static void lc_find_openssl(void) {
        const curl_version_info_data *v = lc.version_info(CURLVERSION_NOW);
        void *ssl;

        if (!v || !v->ssl_version || strncmp(v->ssl_version, "OpenSSL/3", 9) != 0) {
                log_debug("libcurl's TLS is %s, not OpenSSL 3: its buffers are not cleansed",
                          v && v->ssl_version ? v->ssl_version : "unknown");
                return;
        }
        ssl = dlopen("libssl.so.3", RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
        if (ssl)
                lc.ssl_ctx_set_options = (uint64_t (*)(SSL_CTX *, uint64_t)) dlsym(ssl, "SSL_CTX_set_options");
        if (!lc.ssl_ctx_set_options)
                log_debug("libcurl uses %s, but its SSL_CTX_set_options was not found", v->ssl_version);
}

static CURLcode ssl_ctx_cb(CURL *c, void *ssl_ctx, void *userdata) {
        lc.ssl_ctx_set_options(ssl_ctx, SSL_OP_CLEANSE_PLAINTEXT);
        log_debug("TLS: OpenSSL cleanses received plaintext once delivered");
        return CURLE_OK;
}

/*
 * curl copies every request header (X-Amz-Security-Token, the IMDS and
 * container tokens) into buffers it grows with realloc() and frees as they
 * are; our own header list is wiped, its copies were not.  Its allocations
 * go through these, which wipe a block before giving it back.
 */
static void wiping_free(void *p) {
        if (!p)
                return;
        kc_wipe(p, malloc_usable_size(p));
        free(p);
}

static void *wiping_realloc(void *p, size_t n) {
        size_t old;
        void *q;

        if (!p)
                return malloc(n);
        if (n == 0) {
                wiping_free(p);
                return NULL;
        }
        old = malloc_usable_size(p);
        q = malloc(n);
        if (!q)
                return NULL;
        memcpy(q, p, old < n ? old : n);
        wiping_free(p);
        return q;
}

static void lc_load_once(void) {
        void *dl = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
        const struct {
                void **fn;
                const char *name;
        } syms[] = {
                { (void **) &lc.global_init_mem, "curl_global_init_mem" },
                { (void **) &lc.easy_init,     "curl_easy_init" },
                { (void **) &lc.easy_cleanup,  "curl_easy_cleanup" },
                { (void **) &lc.easy_reset,    "curl_easy_reset" },
                { (void **) &lc.easy_setopt,   "curl_easy_setopt" },
                { (void **) &lc.easy_perform,  "curl_easy_perform" },
                { (void **) &lc.easy_getinfo,  "curl_easy_getinfo" },
                { (void **) &lc.easy_strerror, "curl_easy_strerror" },
                { (void **) &lc.slist_append,  "curl_slist_append" },
                { (void **) &lc.slist_free_all, "curl_slist_free_all" },
                { (void **) &lc.url,           "curl_url" },
                { (void **) &lc.url_set,       "curl_url_set" },
                { (void **) &lc.url_get,       "curl_url_get" },
                { (void **) &lc.url_cleanup,   "curl_url_cleanup" },
                { (void **) &lc.free,          "curl_free" },
                { (void **) &lc.version_info,  "curl_version_info" },
        };

        if (!dl) {
                log_debug("cannot load libcurl.so.4: %s", dlerror());
                return;
        }
        for (size_t i = 0; i < ARRAY_SIZE(syms); i++) {
                *syms[i].fn = dlsym(dl, syms[i].name);
                if (!*syms[i].fn) {
                        log_debug("libcurl.so.4 lacks %s", syms[i].name);
                        return; /* the handle stays open: harmless, and lc is never used */
                }
        }
        /* Once per process, before any thread uses curl (its documented rule). */
        lc_status = lc.global_init_mem(CURL_GLOBAL_DEFAULT, malloc, wiping_free, wiping_realloc, strdup, calloc)
                == CURLE_OK ? 0 : -EIO;
        if (lc_status == 0)
                lc_find_openssl();
}

static int lc_load(void) {
        (void) pthread_once(&lc_once, lc_load_once);
        return lc_status;
}

struct kc_http {
        CURL *curl;
};

int kc_http_new(struct kc_http **ret) {
        struct kc_http *h;
        int r;

        r = lc_load();
        if (r < 0)
                return r;
        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->curl = lc.easy_init();
        if (!h->curl) {
                free(h);
                return -ENOMEM;
        }
        *ret = h;
        return 0;
}

void kc_http_free(struct kc_http *h) {
        if (!h)
                return;
        lc.easy_cleanup(h->curl);
        free(h);
}

void kc_http_response_clear(struct kc_http_response *r) {
        if (!r)
                return;
        kc_secret_free(r->body);
        *r = (struct kc_http_response) {};
}

/* The body goes into one kc_secret buffer of the maximum size: never copied, never realloc()ed. */
struct sink {
        char *buf;
        size_t len;
        bool overflow;
};

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userdata) {
        struct sink *s = userdata;
        size_t n = size * nmemb;

        if (!s->buf)
                s->buf = kc_secret_alloc(KC_HTTP_MAX_RESPONSE + 1);
        if (!s->buf || n > KC_HTTP_MAX_RESPONSE - s->len) {
                s->overflow = s->buf != NULL;
                kc_wipe(data, n);       /* refused, but curl's buffer held it all the same */
                return 0;
        }
        memcpy(s->buf + s->len, data, n);
        s->len += n;
        /* curl delivered it from its download buffer, which it reuses and frees unwiped. */
        kc_wipe(data, n);
        return n;
}

/*
 * value (n bytes) without leading blanks, visible characters only (with
 * spaces, inner spaces too): it ends up in messages and the audit record.
 */
static void header_value(const char *v, const char *end, bool spaces, char *dst, size_t size) {
        size_t o = 0;

        while (v < end && (*v == ' ' || *v == '\t'))
                v++;
        for (; v < end && o + 1 < size; v++)
                if (isgraph((unsigned char) *v) || (spaces && *v == ' '))
                        dst[o++] = *v;
        while (o > 0 && dst[o - 1] == ' ')
                o--;
        dst[o] = '\0';
}

static size_t header_cb(char *data, size_t size, size_t nmemb, void *userdata) {
        struct kc_http_response *r = userdata;
        size_t n = size * nmemb, name_len;
        const char *colon = memchr(data, ':', n);

        if (!colon)
                return n;
        name_len = (size_t) (colon - data);
        if ((name_len == 16 && strncasecmp(data, "x-amzn-RequestId", 16) == 0) ||
            (name_len == 16 && strncasecmp(data, "x-amz-request-id", 16) == 0))
                header_value(colon + 1, data + n, false, r->request_id, sizeof(r->request_id));
        /* Some front ends name the error type only here (errors.h). */
        else if (name_len == 16 && strncasecmp(data, "x-amzn-ErrorType", 16) == 0)
                header_value(colon + 1, data + n, false, r->error_type, sizeof(r->error_type));
        else if (name_len == 4 && strncasecmp(data, "Date", 4) == 0)
                header_value(colon + 1, data + n, true, r->date, sizeof(r->date));
        return n;
}

static int curl_to_errno(CURLcode c) {
        static const struct {
                CURLcode code;
                int error;
        } map[] = {
                { CURLE_OPERATION_TIMEDOUT, -ETIMEDOUT },
                { CURLE_COULDNT_CONNECT, -ECONNREFUSED },
                { CURLE_COULDNT_RESOLVE_HOST, -EHOSTUNREACH },
                { CURLE_COULDNT_RESOLVE_PROXY, -EHOSTUNREACH },
                { CURLE_SSL_CONNECT_ERROR, -EPROTO },
                { CURLE_PEER_FAILED_VERIFICATION, -EPROTO },
                { CURLE_SSL_CACERT_BADFILE, -EPROTO },
                { CURLE_SSL_CERTPROBLEM, -EPROTO },
                { CURLE_GOT_NOTHING, -ECONNRESET },
                { CURLE_SEND_ERROR, -ECONNRESET },
                { CURLE_RECV_ERROR, -ECONNRESET },
                /* Closed before the whole body came (Content-Length or chunks short): a reset, retried. */
                { CURLE_PARTIAL_FILE, -ECONNRESET },
                { CURLE_UNSUPPORTED_PROTOCOL, -EPROTONOSUPPORT },
                { CURLE_URL_MALFORMAT, -EINVAL },
                { CURLE_OUT_OF_MEMORY, -ENOMEM },
        };

        for (size_t i = 0; i < ARRAY_SIZE(map); i++)
                if (map[i].code == c)
                        return map[i].error;
        return -EIO;
}

#define SETOPT(h, opt, val) \
        do { if (lc.easy_setopt((h), (opt), (val)) != CURLE_OK) return -EINVAL; } while (0)

static int setup(CURL *c, const struct kc_http_request *req, struct curl_slist *headers, struct sink *sink,
                 struct kc_http_response *resp, char *errbuf) {
        lc.easy_reset(c);
        SETOPT(c, CURLOPT_URL, req->url);
        SETOPT(c, CURLOPT_PROTOCOLS_STR, "http,https");
        SETOPT(c, CURLOPT_FOLLOWLOCATION, 0L);
        SETOPT(c, CURLOPT_NOSIGNAL, 1L);
        SETOPT(c, CURLOPT_SSL_VERIFYPEER, 1L);
        SETOPT(c, CURLOPT_SSL_VERIFYHOST, 2L);
        /*
         * A named bundle is the whole trust store, as AWS_CA_BUNDLE is in the
         * SDKs: libcurl would otherwise still trust its built-in CA directory
         * (/etc/ssl/certs on Debian) beside it, and any public CA with it.
         */
        if (req->ca_file) {
                SETOPT(c, CURLOPT_CAINFO, req->ca_file);
                SETOPT(c, CURLOPT_CAPATH, NULL);
        }
        SETOPT(c, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms > 0 ? req->connect_timeout_ms : 3000L);
        SETOPT(c, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 10000L);
        SETOPT(c, CURLOPT_CUSTOMREQUEST, req->method);
        if (req->body) {
                SETOPT(c, CURLOPT_POSTFIELDS, req->body);
                SETOPT(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
        } else if (streq(req->method, "PUT") || streq(req->method, "POST")) {
                SETOPT(c, CURLOPT_POSTFIELDS, "");
                SETOPT(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) 0);
        }
        SETOPT(c, CURLOPT_HTTPHEADER, headers);
        SETOPT(c, CURLOPT_WRITEFUNCTION, write_cb);
        SETOPT(c, CURLOPT_WRITEDATA, sink);
        SETOPT(c, CURLOPT_HEADERFUNCTION, header_cb);
        SETOPT(c, CURLOPT_HEADERDATA, resp);
        SETOPT(c, CURLOPT_ERRORBUFFER, errbuf);
        if (lc.ssl_ctx_set_options)
                SETOPT(c, CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_cb);
        return 0;
}

static void slist_free_wiped(struct curl_slist *l) {
        /* Header lines may carry a session token or an IMDS token. */
        for (struct curl_slist *i = l; i; i = i->next)
                kc_wipe(i->data, strlen(i->data));
        lc.slist_free_all(l);
}

int kc_http_perform(struct kc_http *h, const struct kc_http_request *req, struct kc_http_response *ret,
                    struct kc_err *err) {
        struct kc_http_response resp = {};
        struct curl_slist *headers = NULL;
        struct sink sink = {};
        char errbuf[CURL_ERROR_SIZE] = "";
        CURLcode c;
        int r;

        /* Refuse curl's "Expect: 100-continue" round trip. */
        headers = lc.slist_append(headers, "Expect:");
        for (size_t i = 0; headers && req->headers && req->headers[i]; i++) {
                struct curl_slist *n = lc.slist_append(headers, req->headers[i]);
                if (!n) {
                        slist_free_wiped(headers);
                        return -ENOMEM;
                }
                headers = n;
        }
        if (!headers)
                return -ENOMEM;
        r = setup(h->curl, req, headers, &sink, &resp, errbuf);
        if (r < 0) {
                slist_free_wiped(headers);
                return kc_err_set(err, r, "cannot set up the HTTP request to %s", req->url);
        }
        c = lc.easy_perform(h->curl);
        /* Drop curl's pointers to our header list before wiping it. */
        lc.easy_setopt(h->curl, CURLOPT_HTTPHEADER, NULL);
        slist_free_wiped(headers);
        if (c != CURLE_OK) {
                kc_secret_free(sink.buf);
                if (sink.overflow)
                        return kc_err_set(err, -EMSGSIZE, "response from %s larger than %d bytes",
                                          req->url, KC_HTTP_MAX_RESPONSE);
                return kc_err_set(err, curl_to_errno(c), "%s %s: %s", req->method, req->url,
                                  errbuf[0] ? errbuf : lc.easy_strerror(c));
        }
        lc.easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &resp.status);
        resp.body = sink.buf;
        resp.body_len = sink.len;
        log_debug("%s %s: HTTP %ld, %zu bytes, request id %s", req->method, req->url, resp.status,
                  resp.body_len, resp.request_id[0] ? resp.request_id : "none");
        *ret = resp;
        return 0;
}

static int url_host(const char *url, char **ret_host, char **ret_scheme) {
        CURLU *u;
        int r = lc_load();

        if (r < 0)
                return r;
        u = lc.url();
        if (!u)
                return -ENOMEM;
        if (lc.url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
            (ret_host && lc.url_get(u, CURLUPART_HOST, ret_host, 0) != CURLUE_OK) ||
            (ret_scheme && lc.url_get(u, CURLUPART_SCHEME, ret_scheme, 0) != CURLUE_OK))
                r = -EINVAL;
        lc.url_cleanup(u);
        return r;
}

bool kc_http_url_is_loopback(const char *url) {
        char *host = NULL;
        struct in_addr a4;
        struct in6_addr a6;
        bool loopback = false;
        size_t n;

        if (url_host(url, &host, NULL) < 0)
                return false;
        n = strlen(host);
        /* curl keeps an IPv6 literal in brackets. */
        if (n > 2 && host[0] == '[' && host[n - 1] == ']') {
                host[n - 1] = '\0';
                loopback = inet_pton(AF_INET6, host + 1, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
        } else if (inet_pton(AF_INET, host, &a4) == 1)
                loopback = (ntohl(a4.s_addr) >> 24) == 127;
        else
                loopback = strcasecmp(host, "localhost") == 0;
        lc.free(host);
        return loopback;
}

bool kc_http_url_is_https(const char *url) {
        char *scheme = NULL;
        bool https;

        if (url_host(url, NULL, &scheme) < 0)
                return false;
        https = strcasecmp(scheme, "https") == 0;
        lc.free(scheme);
        return https;
}

/* ---- JSON that carries secrets ------------------------------------------------------------ */

int kc_http_json_parse(const char *body, size_t len, struct json_object **ret, struct kc_err *err) {
        static const struct kc_json_parse secret = { .secret = true };
        struct kc_err why = {};
        int r;

        if (!body || len == 0)
                return kc_err_set(err, -EBADMSG, "empty response body");
        r = kc_json_parse_object(body, len, &secret, ret, &why);
        if (r == -EBADMSG)
                return kc_err_set(err, r, "response is %s", why.msg);
        return r;
}

int kc_http_json_take_secret(struct json_object *obj, const char *name, char **ret) {
        struct json_object *v;
        char *s, *copy;
        size_t n;
        bool nul;

        if (!json_object_object_get_ex(obj, name, &v) || !json_object_is_type(v, json_type_string))
                return -ENOENT;
        /* json-c hands out its own storage; we wipe it once copied, all of it even past a "\u0000". */
        s = (char *) json_object_get_string(v);
        n = (size_t) json_object_get_string_len(v);
        /* A NUL inside would cut the secret short without a word: refused instead. */
        nul = strlen(s) != n;
        copy = nul ? NULL : kc_secret_strdup(s);
        kc_wipe(s, n);
        if (nul)
                return -EBADMSG;
        if (!copy)
                return -ENOMEM;
        *ret = copy;
        return 0;
}
