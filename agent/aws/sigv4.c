/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "agent/aws/sigv4.h"
#include "lib/macro.h"
#include "lib/secret.h"

static void hex(const uint8_t *in, size_t n, char *out) {
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[in[i] >> 4];
                out[2 * i + 1] = digits[in[i] & 0xf];
        }
        out[2 * n] = '\0';
}

void kc_sigv4_sha256_hex(const void *data, size_t len, char ret[65]) {
        uint8_t md[SHA256_DIGEST_LENGTH];

        SHA256(data, len, md);
        hex(md, sizeof(md), ret);
}

void kc_sigv4_format_date(long long t, char ret[17]) {
        time_t tt = (time_t) t;
        struct tm tm;

        gmtime_r(&tt, &tm);
        strftime(ret, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* ---- canonical request ---------------------------------------------------------------------- */

struct hdr {
        char *name;             /* lower-cased */
        char *value;            /* trimmed, inner space runs collapsed */
        size_t order;           /* position given, to keep repeated names in order */
};

static int hdr_cmp(const void *a, const void *b) {
        const struct hdr *x = a, *y = b;
        int c = strcmp(x->name, y->name);

        return c ? c : (x->order > y->order) - (x->order < y->order);
}

static char *lower_dup(const char *s) {
        char *d = strdup(s);

        for (char *p = d; p && *p; p++)
                *p = (char) tolower((unsigned char) *p);
        return d;
}

static char *trim_dup(const char *s) {
        size_t n = strlen(s);
        char *d = malloc(n + 1), *o = d;

        if (!d)
                return NULL;
        while (*s == ' ' || *s == '\t')
                s++;
        for (; *s; s++) {
                if (*s == ' ' || *s == '\t') {
                        if (o > d && o[-1] != ' ')
                                *o++ = ' ';
                        continue;
                }
                *o++ = *s;
        }
        while (o > d && o[-1] == ' ')
                o--;
        *o = '\0';
        return d;
}

static void hdrs_free(struct hdr *h, size_t n) {
        for (size_t i = 0; h && i < n; i++) {
                free(h[i].name);
                /* A header value may be a session token: wipe it. */
                kc_wipe_free_str(h[i].value);
        }
        free(h);
}

/*
 * The canonical request carries the session token in clear, so it is built
 * in kc_secret memory: growing copies it into a bigger secret buffer and
 * frees (wipes) the old one, where a memstream's realloc() would leave
 * copies of the token behind in freed heap.
 */
struct sbuf {
        char *p;                /* kc_secret, NUL-terminated */
        size_t n, cap;
        bool failed;
};

static void sbuf_add(struct sbuf *b, const char *s, size_t n) {
        char *p;

        if (b->failed)
                return;
        if (b->n + n + 1 > b->cap) {
                size_t cap = 2 * (b->n + n + 1);

                p = kc_secret_alloc(cap);
                if (!p) {
                        b->failed = true;
                        return;
                }
                if (b->p)
                        memcpy(p, b->p, b->n);
                kc_secret_free(b->p);
                b->p = p;
                b->cap = cap;
        }
        memcpy(b->p + b->n, s, n);
        b->n += n;
        b->p[b->n] = '\0';
}

static void sbuf_str(struct sbuf *b, const char *s) {
        sbuf_add(b, s, strlen(s));
}

/* RFC 3986 unreserved characters stay, everything else is %XX (upper-case hex). */
static void uri_encode(struct sbuf *b, const char *s, size_t n) {
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];
                char esc[4];

                if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
                        sbuf_add(b, s + i, 1);
                else {
                        snprintf(esc, sizeof(esc), "%%%02X", c);
                        sbuf_add(b, esc, 3);
                }
        }
}

struct qparam {
        const char *key, *value;
        size_t key_len, value_len;
};

static int qparam_cmp(const void *a, const void *b) {
        const struct qparam *x = a, *y = b;
        size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
        int c = memcmp(x->key, y->key, n);

        if (c || x->key_len != y->key_len)
                return c ? c : (x->key_len > y->key_len) - (x->key_len < y->key_len);
        n = x->value_len < y->value_len ? x->value_len : y->value_len;
        c = memcmp(x->value, y->value, n);
        return c ? c : (x->value_len > y->value_len) - (x->value_len < y->value_len);
}

/* Parameters sorted by key then value, each part URI-encoded. */
static int write_query(struct sbuf *b, const char *query) {
        _cleanup_free_ struct qparam *p = NULL;
        size_t n = 0, cap = 0;

        for (const char *s = query; s && *s;) {
                const char *end = strchrnul(s, '&'), *eq = memchr(s, '=', (size_t) (end - s));

                if (end > s) {
                        if (n == cap) {
                                struct qparam *np = reallocarray(p, cap = cap ? 2 * cap : 8, sizeof(*p));
                                if (!np)
                                        return -ENOMEM;
                                p = np;
                        }
                        p[n++] = (struct qparam) {
                                .key = s, .key_len = (size_t) ((eq ?: end) - s),
                                .value = eq ? eq + 1 : end, .value_len = eq ? (size_t) (end - eq - 1) : 0,
                        };
                }
                s = *end ? end + 1 : end;
        }
        if (n > 0)
                qsort(p, n, sizeof(*p), qparam_cmp);
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        sbuf_str(b, "&");
                uri_encode(b, p[i].key, p[i].key_len);
                sbuf_str(b, "=");
                uri_encode(b, p[i].value, p[i].value_len);
        }
        return 0;
}

int kc_sigv4_canonical_request(const struct kc_sigv4_request *req, char **ret_creq, char **ret_signed_headers) {
        struct hdr *h;
        struct sbuf b = {};
        _cleanup_free_ char *signed_headers = NULL;
        size_t sh_len = 0;
        _cleanup_fclose_ FILE *sh = NULL;
        char payload_hash[65];
        int r = 0;

        if (!req->method || !req->path || (req->n_headers > 0 && !req->headers))
                return -EINVAL;
        h = calloc(req->n_headers ?: 1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        for (size_t i = 0; i < req->n_headers; i++) {
                h[i] = (struct hdr) {
                        .name = lower_dup(req->headers[i].name),
                        .value = trim_dup(req->headers[i].value),
                        .order = i,
                };
                if (!h[i].name || !h[i].value) {
                        hdrs_free(h, i + 1);
                        return -ENOMEM;
                }
        }
        qsort(h, req->n_headers, sizeof(*h), hdr_cmp);

        sh = open_memstream(&signed_headers, &sh_len);
        if (!sh) {
                hdrs_free(h, req->n_headers);
                return -ENOMEM;
        }
        sbuf_str(&b, req->method);
        sbuf_str(&b, "\n");
        sbuf_str(&b, req->path);
        sbuf_str(&b, "\n");
        r = write_query(&b, req->query);
        sbuf_str(&b, "\n");
        /* One line per distinct name, repeated names joined with ','. */
        for (size_t i = 0; r >= 0 && i < req->n_headers; i++) {
                bool first = i == 0 || strcmp(h[i].name, h[i - 1].name) != 0;

                if (first) {
                        if (i > 0)
                                sbuf_str(&b, "\n");
                        sbuf_str(&b, h[i].name);
                        sbuf_str(&b, ":");
                        fprintf(sh, "%s%s", ftell(sh) > 0 ? ";" : "", h[i].name);
                } else
                        sbuf_str(&b, ",");
                sbuf_str(&b, h[i].value);
        }
        hdrs_free(h, req->n_headers);
        if (fclose(TAKE_PTR(sh)) != 0)
                r = -ENOMEM;
        kc_sigv4_sha256_hex(req->payload ?: "", req->payload_len, payload_hash);
        sbuf_str(&b, "\n\n");
        sbuf_str(&b, signed_headers ?: "");
        sbuf_str(&b, "\n");
        sbuf_str(&b, payload_hash);
        if (r >= 0 && b.failed)
                r = -ENOMEM;
        if (r < 0) {
                kc_secret_free(b.p);
                return r;
        }
        *ret_creq = b.p;
        *ret_signed_headers = TAKE_PTR(signed_headers);
        return 0;
}

/* ---- signing -------------------------------------------------------------------------------- */

static int scope(const struct kc_sigv4_signer *s, char **ret) {
        if (!s->amz_date || strlen(s->amz_date) != 16 || !s->region || !s->service)
                return -EINVAL;
        return asprintf(ret, "%.8s/%s/%s/aws4_request", s->amz_date, s->region, s->service) < 0 ? -ENOMEM : 0;
}

int kc_sigv4_string_to_sign(const struct kc_sigv4_signer *s, const char *creq, char **ret) {
        _cleanup_free_ char *sc = NULL;
        char h[65];
        int r = scope(s, &sc);

        if (r < 0)
                return r;
        kc_sigv4_sha256_hex(creq, strlen(creq), h);
        return asprintf(ret, "AWS4-HMAC-SHA256\n%s\n%s\n%s", s->amz_date, sc, h) < 0 ? -ENOMEM : 0;
}

static int hmac(const void *key, size_t key_len, const char *msg, uint8_t out[32]) {
        unsigned int len = 32;

        return HMAC(EVP_sha256(), key, (int) key_len, (const unsigned char *) msg, strlen(msg), out, &len) ? 0 : -EIO;
}

/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request") */
static int signing_key(const struct kc_sigv4_signer *s, uint8_t ret[32]) {
        size_t n = strlen(s->secret_access_key);
        _cleanup_secret_ char *k0 = kc_secret_alloc(n + 5);
        _cleanup_secret_ uint8_t *k = kc_secret_alloc(32);
        char date[9];
        int r;

        if (!k0 || !k)
                return -ENOMEM;
        memcpy(k0, "AWS4", 4);
        memcpy(k0 + 4, s->secret_access_key, n);
        memcpy(date, s->amz_date, 8);
        date[8] = '\0';
        r = hmac(k0, n + 4, date, k);
        if (r >= 0)
                r = hmac(k, 32, s->region, k);
        if (r >= 0)
                r = hmac(k, 32, s->service, k);
        if (r >= 0)
                r = hmac(k, 32, "aws4_request", ret);
        return r;
}

int kc_sigv4_authorization(const struct kc_sigv4_signer *s, const struct kc_sigv4_request *req, char **ret) {
        _cleanup_secret_ char *creq = NULL;
        _cleanup_free_ char *signed_headers = NULL, *sts = NULL, *sc = NULL;
        _cleanup_secret_ uint8_t *key = kc_secret_alloc(32);
        uint8_t sig[32];
        char sig_hex[65];
        int r;

        if (!key)
                return -ENOMEM;
        if (!s->access_key_id || !s->secret_access_key)
                return -EINVAL;
        r = kc_sigv4_canonical_request(req, &creq, &signed_headers);
        if (r >= 0)
                r = kc_sigv4_string_to_sign(s, creq, &sts);
        if (r >= 0)
                r = scope(s, &sc);
        if (r >= 0)
                r = signing_key(s, key);
        if (r >= 0)
                r = hmac(key, 32, sts, sig);
        if (r < 0)
                return r;
        hex(sig, sizeof(sig), sig_hex);
        r = kc_format_exact(ret, "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
                            s->access_key_id, sc, signed_headers, sig_hex);
        kc_wipe(sig, sizeof(sig));
        kc_wipe(sig_hex, sizeof(sig_hex));
        return r;
}
