/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * KMS throughput in one process, local provider, 64-byte data keys:
 *
 *   raw        OpenSSL AES-256-GCM seal/open of the same payload and AAD
 *              (one-shot: new cipher context and random nonce per call,
 *              and with one context reused, the lower bound)
 *   blocks     kc_secret_alloc+free and kc_blob_seal/open alone: what every
 *              provider call must pay whatever the keystore does
 *   in-memory  kc_kms_provider_local ops on a keystore opened once (no audit)
 *   audited    kc_kms_generate_data_key / kc_kms_decrypt, each with its
 *              durable (fsynced) audit record
 *
 * Usage: bench-kms [SECONDS-PER-ROW] [DIRECTORY]   (defaults 1, $TMPDIR or /tmp)
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "agent/blob.h"
#include "agent/kms.h"
#include "lib/secret.h"

#define PAYLOAD 64

static double seconds_per_row = 1.0;

static double now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* Run fn until the time is up; ops per second. */
static double rate(int (*fn)(void *userdata), void *userdata) {
        double start = now(), elapsed;
        unsigned long n = 0;

        do {
                for (int i = 0; i < 64; i++, n++)
                        if (fn(userdata) < 0) {
                                fprintf(stderr, "bench-kms: operation failed\n");
                                exit(EXIT_FAILURE);
                        }
                elapsed = now() - start;
        } while (elapsed < seconds_per_row);
        return (double) n / elapsed;
}

/* ---- raw AES-256-GCM ------------------------------------------------------------------------ */

struct raw {
        uint8_t key[32], nonce[12], aad[256], pt[PAYLOAD], ct[PAYLOAD], tag[16], out[PAYLOAD];
        size_t aad_len;
        EVP_CIPHER_CTX *reused;
};

static int gcm(EVP_CIPHER_CTX *c, struct raw *w, bool seal) {
        int len;

        if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, w->key, w->nonce, seal) != 1 ||
            EVP_CipherUpdate(c, NULL, &len, w->aad, (int) w->aad_len) != 1)
                return -1;
        if (seal)
                return EVP_CipherUpdate(c, w->ct, &len, w->pt, PAYLOAD) == 1 &&
                       EVP_CipherFinal_ex(c, w->ct + len, &len) == 1 &&
                       EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, w->tag) == 1 ? 0 : -1;
        return EVP_CipherUpdate(c, w->out, &len, w->ct, PAYLOAD) == 1 &&
               EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, w->tag) == 1 &&
               EVP_CipherFinal_ex(c, w->out + len, &len) == 1 ? 0 : -1;
}

static int raw_oneshot(struct raw *w, bool seal) {
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        int r = c && (!seal || RAND_bytes(w->nonce, 12) == 1) ? gcm(c, w, seal) : -1;
        EVP_CIPHER_CTX_free(c);
        return r;
}

static int raw_seal(void *u) { return raw_oneshot(u, true); }
static int raw_open(void *u) { return raw_oneshot(u, false); }
static int raw_seal_reused(void *u) { return gcm(((struct raw *) u)->reused, u, true); }
static int raw_open_reused(void *u) { return gcm(((struct raw *) u)->reused, u, false); }

/* ---- the two building blocks the provider cannot avoid ---------------------------------------- */

static int secret_alloc_free(void *u) {
        void *p = kc_secret_alloc(PAYLOAD);
        kc_secret_free(p);
        return p ? 0 : -1;
}

struct blob_run {
        uint8_t cmk[32];
        const struct kc_context *ctx;
        uint8_t pt[PAYLOAD];
        uint8_t *blob;
        size_t len;
};

static int blob_seal(void *u) {
        struct blob_run *b = u;
        uint8_t *blob;
        size_t len;
        int r = kc_blob_seal(b->cmk, "00000000-0000-4000-8000-000000000000", 1, b->ctx, b->pt, PAYLOAD, NULL, &blob, &len);
        free(blob);
        return r;
}

static int blob_open(void *u) {
        struct blob_run *b = u;
        void *pt = NULL;
        int r = kc_blob_open(b->cmk, b->blob, b->len, b->ctx, &pt, NULL);
        kc_secret_free(pt);
        return r;
}

/* ---- provider and KMS layer ----------------------------------------------------------------- */

struct run {
        void *state;                  /* in-memory path */
        struct kc_kms *kms;           /* audited path */
        struct kc_kms_request req;
        const struct kc_context *ctx;
        struct kc_data_key dk;        /* the blob decrypt unwraps */
};

static int mem_generate(void *u) {
        struct run *x = u;
        struct kc_data_key dk = {};
        int r = kc_kms_provider_local.generate_data_key(x->state, "alias/bench", x->ctx, PAYLOAD, &dk, NULL);
        kc_data_key_clear(&dk);
        return r;
}

static int mem_decrypt(void *u) {
        struct run *x = u;
        char id[65];
        uint32_t v;
        void *pt = NULL;
        int r = kc_kms_provider_local.decrypt(x->state, "alias/bench", x->dk.blob, x->dk.blob_len, x->ctx,
                                              &pt, id, &v, NULL);
        kc_secret_free(pt);
        return r;
}

static int kms_generate(void *u) {
        struct run *x = u;
        struct kc_data_key dk = {};
        int r = kc_kms_generate_data_key(x->kms, &x->req, "alias/bench", x->ctx, PAYLOAD, &dk, NULL);
        kc_data_key_clear(&dk);
        return r;
}

static int kms_decrypt(void *u) {
        struct run *x = u;
        void *pt = NULL;
        int r = kc_kms_decrypt(x->kms, &x->req, "alias/bench", x->dk.blob, x->dk.blob_len, x->ctx, &pt,
                               NULL, NULL, NULL);
        kc_secret_free(pt);
        return r;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static int fail(const char *what, int r, const struct kc_err *err) {
        fprintf(stderr, "bench-kms: %s: %s\n", what, kc_err_msg(err, r));
        return EXIT_FAILURE;
}

int main(int argc, char **argv) {
        char dir[4096], keystore[4200], audit_log[4200];
        struct kc_kms_config cfg = { .keystore_dir = keystore, .audit_log = audit_log };
        struct kc_caller caller;
        struct kc_context *ctx = NULL;
        struct kc_key_info info;
        struct kc_err err = {};
        struct raw w = {};
        struct run x = {};
        struct blob_run b = {};
        double rs, ro, rsr, ror, sa, bs, bo, ms, mo, ks, ko;
        int r;

        if (argc > 1)
                seconds_per_row = atof(argv[1]);
        snprintf(dir, sizeof(dir), "%s/kmscrypt-bench.XXXXXX", argc > 2 ? argv[2] : getenv("TMPDIR") ?: "/tmp");
        if (!mkdtemp(dir))
                return fail("mkdtemp", -errno, NULL);
        snprintf(keystore, sizeof(keystore), "%s/keystore", dir);
        snprintf(audit_log, sizeof(audit_log), "%s/audit.log", dir);

        if ((r = kc_context_parse_kv("db-id=db-1,volume-id=vol-1", &ctx, &err)) < 0 ||
            (r = kc_caller_self(&caller)) < 0)
                return fail("context", r, &err);
        x.ctx = ctx;
        x.req = (struct kc_kms_request) { .caller = &caller, .volume = "vol-1" };
        if ((r = kc_kms_open(&cfg, &x.kms, &err)) < 0)
                return fail("kc_kms_open", r, &err);
        if ((r = kc_kms_create_key(x.kms, &x.req, "local", "alias/bench", "bench", &info, &err)) < 0 ||
            (r = kc_kms_generate_data_key(x.kms, &x.req, "alias/bench", ctx, PAYLOAD, &x.dk, &err)) < 0)
                return fail("setup", r, &err);
        if ((r = kc_kms_provider_local.open(&cfg, &x.state, &err)) < 0)
                return fail("provider open", r, &err);

        /* The raw rows use the blob's own AAD length: header (26 + id) plus the canonical context. */
        {
                uint8_t *canonical;
                size_t clen;
                if (kc_context_canonical(ctx, &canonical, &clen) < 0)
                        return fail("canonical", -ENOMEM, NULL);
                w.aad_len = 26 + strlen(info.key_id) + clen;
                free(canonical);
                if (w.aad_len > sizeof(w.aad))
                        return fail("aad", -E2BIG, NULL);
                RAND_bytes(w.key, 32);
                RAND_bytes(w.aad, (int) w.aad_len);
                RAND_bytes(w.pt, PAYLOAD);
                w.reused = EVP_CIPHER_CTX_new();
        }
        b.ctx = ctx;
        RAND_bytes(b.cmk, 32);
        if ((r = kc_blob_seal(b.cmk, "00000000-0000-4000-8000-000000000000", 1, ctx, b.pt, PAYLOAD, NULL,
                              &b.blob, &b.len)) < 0)
                return fail("kc_blob_seal", r, NULL);

        rs = rate(raw_seal, &w);
        ro = rate(raw_open, &w);
        rsr = rate(raw_seal_reused, &w);
        ror = rate(raw_open_reused, &w);
        sa = rate(secret_alloc_free, NULL);
        bs = rate(blob_seal, &b);
        bo = rate(blob_open, &b);
        ms = rate(mem_generate, &x);
        mo = rate(mem_decrypt, &x);
        ks = rate(kms_generate, &x);
        ko = rate(kms_decrypt, &x);

        printf("kmscrypt KMS throughput, local provider, %d-byte data key, %zu-byte AAD, %.1f s per row\n",
               PAYLOAD, w.aad_len, seconds_per_row);
        printf("%-44s %12s %12s\n", "", "seal/gen /s", "open/dec /s");
        printf("%-44s %12.0f %12.0f\n", "raw AES-256-GCM (one-shot context)", rs, ro);
        printf("%-44s %12.0f %12.0f\n", "raw AES-256-GCM (context reused)", rsr, ror);
        printf("%-44s %12.0f %12s\n", "block: kc_secret_alloc+free (64 B)", sa, "");
        printf("%-44s %12.0f %12.0f\n", "block: kc_blob_seal / kc_blob_open", bs, bo);
        printf("%-44s %12.0f %12.0f\n", "local provider, in memory (no audit)", ms, mo);
        printf("%-44s %12.0f %12.0f\n", "kc_kms_* with durable audit record", ks, ko);
        printf("ratio raw one-shot / in-memory:  generate %.2fx  decrypt %.2fx  (target <= 3x)\n", rs / ms, ro / mo);
        printf("ratio raw reused   / in-memory:  generate %.2fx  decrypt %.2fx\n", rsr / ms, ror / mo);
        printf("ratio in-memory    / audited:    generate %.1fx  decrypt %.1fx\n", ms / ks, mo / ko);

        EVP_CIPHER_CTX_free(w.reused);
        free(b.blob);
        kc_data_key_clear(&x.dk);
        kc_kms_provider_local.close(x.state);
        kc_kms_close(x.kms);
        kc_context_free(ctx);
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        return EXIT_SUCCESS;
}
