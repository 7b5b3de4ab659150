/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "agent/blob.h"
#include "lib/log.h"
#include "lib/secret.h"

#define BLOB_MAGIC "KCW\x01"
#define BLOB_MAGIC_LEN 4
#define BLOB_ALG_AES_256_GCM 1
#define BLOB_CMK_SIZE 32

/* Offsets of agent/blob.h; L is the key id length. */
#define OFF_ALG 4
#define OFF_KEY_ID_LEN 5
#define OFF_KEY_ID 6
#define HEADER_LEN(L) (26 + (size_t) (L))
#define TOTAL_LEN(L, P) (HEADER_LEN(L) + (size_t) (P) + KC_BLOB_TAG_SIZE)

static uint32_t get_u32be(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static void put_u32be(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
}

/* Key ids are printable ASCII without spaces, so they can be logged and typed as they are. */
static bool key_id_valid(const uint8_t *id, size_t len) {
        if (len < 1 || len > KC_BLOB_KEY_ID_MAX)
                return false;
        for (size_t i = 0; i < len; i++)
                if (id[i] <= 0x20 || id[i] >= 0x7F)
                        return false;
        return true;
}

int kc_blob_peek(const uint8_t *blob, size_t len, struct kc_blob_header *ret, struct kc_err *err) {
        size_t key_id_len, plaintext_len, total;
        uint32_t version;

        if (!blob || len < OFF_KEY_ID)
                return kc_err_set(err, -EINVAL, "wrapped key truncated: %zu bytes, header needs at least %zu",
                                  len, HEADER_LEN(1));
        if (memcmp(blob, BLOB_MAGIC, BLOB_MAGIC_LEN) != 0)
                return kc_err_set(err, -EINVAL, "not a kmscrypt wrapped key (bad magic)");
        if (blob[OFF_ALG] != BLOB_ALG_AES_256_GCM)
                return kc_err_set(err, -EINVAL, "wrapped key uses unknown algorithm %u", blob[OFF_ALG]);
        key_id_len = blob[OFF_KEY_ID_LEN];
        if (key_id_len < 1 || key_id_len > KC_BLOB_KEY_ID_MAX)
                return kc_err_set(err, -EINVAL, "wrapped key has a key id length of %zu, not 1..%d",
                                  key_id_len, KC_BLOB_KEY_ID_MAX);
        if (len < HEADER_LEN(key_id_len))
                return kc_err_set(err, -EINVAL, "wrapped key truncated: %zu bytes, header needs %zu",
                                  len, HEADER_LEN(key_id_len));
        if (!key_id_valid(blob + OFF_KEY_ID, key_id_len))
                return kc_err_set(err, -EINVAL, "wrapped key has a key id that is not printable ASCII");

        version = get_u32be(blob + OFF_KEY_ID + key_id_len);
        if (version == 0)
                return kc_err_set(err, -EINVAL, "wrapped key names CMK version 0 (versions start at 1)");
        plaintext_len = get_u32be(blob + OFF_KEY_ID + key_id_len + 4 + KC_BLOB_NONCE_SIZE);
        if (plaintext_len < 1 || plaintext_len > KC_BLOB_PLAINTEXT_MAX)
                return kc_err_set(err, -EINVAL, "wrapped key has a plaintext length of %zu, not 1..%d",
                                  plaintext_len, KC_BLOB_PLAINTEXT_MAX);
        total = TOTAL_LEN(key_id_len, plaintext_len);
        if (len < total)
                return kc_err_set(err, -EINVAL, "wrapped key truncated: %zu bytes of %zu", len, total);
        if (len > total)
                return kc_err_set(err, -EINVAL, "wrapped key has %zu trailing bytes after the tag", len - total);

        memcpy(ret->key_id, blob + OFF_KEY_ID, key_id_len);
        ret->key_id[key_id_len] = '\0';
        ret->key_version = version;
        ret->plaintext_len = plaintext_len;
        return 0;
}

/* header || canonical context: everything that must match for the key to come back. */
static int build_aad(const uint8_t *header, size_t header_len, const struct kc_context *ctx,
                     uint8_t **ret, size_t *ret_len) {
        _cleanup_free_ uint8_t *canonical = NULL;
        size_t canonical_len;
        uint8_t *aad;
        int r;

        r = kc_context_canonical(ctx, &canonical, &canonical_len);
        if (r < 0)
                return r;
        aad = malloc(header_len + canonical_len);
        if (!aad)
                return -ENOMEM;
        memcpy(aad, header, header_len);
        memcpy(aad + header_len, canonical, canonical_len);
        *ret = aad;
        *ret_len = header_len + canonical_len;
        return 0;
}

static void cipher_ctx_freep(EVP_CIPHER_CTX **p) {
        EVP_CIPHER_CTX_free(*p); /* cleanses the key schedule */
}

/*
 * Fetching the cipher implementation costs as much as the GCM pass itself
 * for a 64-byte key, so fetch it once per process; OpenSSL 3 cipher
 * objects are safe to share between threads.
 */
static EVP_CIPHER *gcm_cipher;
static pthread_once_t gcm_cipher_once = PTHREAD_ONCE_INIT;

static void gcm_cipher_fetch(void) {
        gcm_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

/*
 * One AES-256-GCM pass over in[0..n) into out, with aad.  Sealing writes
 * the tag to tag; opening checks it against tag and returns -EBADMSG when it
 * does not match (or -EIO if OpenSSL fails for another reason).
 */
static int gcm_run(bool encrypt, const uint8_t key[BLOB_CMK_SIZE], const uint8_t nonce[KC_BLOB_NONCE_SIZE],
                   const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t n, uint8_t *out,
                   uint8_t tag[KC_BLOB_TAG_SIZE]) {
        _cleanup_(cipher_ctx_freep) EVP_CIPHER_CTX *cctx = NULL;
        OSSL_PARAM params[2] = { OSSL_PARAM_END, OSSL_PARAM_END };
        int outl = 0, finl = 0;

        (void) pthread_once(&gcm_cipher_once, gcm_cipher_fetch);
        cctx = EVP_CIPHER_CTX_new();
        if (!gcm_cipher || !cctx)
                goto fail;
        /* 12 bytes is GCM's default IV length, so no parameter is needed for it. */
        if (EVP_CipherInit_ex2(cctx, gcm_cipher, key, nonce, encrypt, NULL) != 1 ||
            EVP_CipherUpdate(cctx, NULL, &outl, aad, (int) aad_len) != 1 ||
            EVP_CipherUpdate(cctx, out, &outl, in, (int) n) != 1)
                goto fail;
        if (!encrypt) {
                params[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, KC_BLOB_TAG_SIZE);
                if (EVP_CIPHER_CTX_set_params(cctx, params) != 1)
                        goto fail;
        }
        if (EVP_CipherFinal_ex(cctx, out + outl, &finl) != 1) {
                ERR_clear_error();
                return encrypt ? -EIO : -EBADMSG;
        }
        if (encrypt) {
                params[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, KC_BLOB_TAG_SIZE);
                if (EVP_CIPHER_CTX_get_params(cctx, params) != 1)
                        goto fail;
        }
        if ((size_t) outl + (size_t) finl != n)
                goto fail;
        return 0;
fail:
        ERR_clear_error();
        return -EIO;
}

static int write_header(uint8_t *blob, const char *key_id, size_t key_id_len, uint32_t key_version,
                        const uint8_t *nonce, size_t plaintext_len) {
        uint8_t *p = blob + OFF_KEY_ID + key_id_len;

        memcpy(blob, BLOB_MAGIC, BLOB_MAGIC_LEN);
        blob[OFF_ALG] = BLOB_ALG_AES_256_GCM;
        blob[OFF_KEY_ID_LEN] = (uint8_t) key_id_len;
        memcpy(blob + OFF_KEY_ID, key_id, key_id_len);
        put_u32be(p, key_version);
        if (nonce)
                memcpy(p + 4, nonce, KC_BLOB_NONCE_SIZE);
        else if (RAND_bytes(p + 4, KC_BLOB_NONCE_SIZE) != 1) {
                ERR_clear_error();
                return -EIO;
        }
        put_u32be(p + 4 + KC_BLOB_NONCE_SIZE, (uint32_t) plaintext_len);
        return 0;
}

int kc_blob_seal(const uint8_t cmk[32], const char *key_id, uint32_t key_version,
                 const struct kc_context *ctx, const void *plaintext, size_t plaintext_len,
                 const uint8_t *nonce, uint8_t **ret_blob, size_t *ret_len) {
        _cleanup_free_ uint8_t *blob = NULL, *aad = NULL;
        size_t key_id_len, header_len, aad_len, total;
        int r;

        if (!cmk || !key_id || !ctx || !plaintext)
                return -EINVAL;
        key_id_len = strlen(key_id);
        if (!key_id_valid((const uint8_t *) key_id, key_id_len) || key_version == 0 ||
            plaintext_len < 1 || plaintext_len > KC_BLOB_PLAINTEXT_MAX)
                return -EINVAL;

        header_len = HEADER_LEN(key_id_len);
        total = TOTAL_LEN(key_id_len, plaintext_len);
        blob = malloc(total);
        if (!blob)
                return -ENOMEM;
        r = write_header(blob, key_id, key_id_len, key_version, nonce, plaintext_len);
        if (r < 0)
                return r;
        r = build_aad(blob, header_len, ctx, &aad, &aad_len);
        if (r < 0)
                return r;
        r = gcm_run(true, cmk, blob + header_len - 4 - KC_BLOB_NONCE_SIZE, aad, aad_len,
                    plaintext, plaintext_len, blob + header_len, blob + total - KC_BLOB_TAG_SIZE);
        if (r < 0)
                return r;

        log_debug("Sealed %zu bytes under %s version %u", plaintext_len, key_id, key_version);
        *ret_len = total;
        *ret_blob = TAKE_PTR(blob);
        return 0;
}

int kc_blob_open(const uint8_t cmk[32], const uint8_t *blob, size_t len,
                 const struct kc_context *ctx, void **ret_plaintext, struct kc_err *err) {
        _cleanup_secret_ uint8_t *plaintext = NULL;
        _cleanup_free_ uint8_t *aad = NULL;
        struct kc_blob_header h;
        size_t header_len, aad_len;
        uint8_t tag[KC_BLOB_TAG_SIZE];
        int r;

        if (!cmk || !ctx)
                return kc_err_set(err, -EINVAL, "missing key or context");
        r = kc_blob_peek(blob, len, &h, err);
        if (r < 0)
                return r;

        header_len = HEADER_LEN(strlen(h.key_id));
        r = build_aad(blob, header_len, ctx, &aad, &aad_len);
        if (r < 0)
                return r;
        plaintext = kc_secret_alloc(h.plaintext_len);
        if (!plaintext)
                return -ENOMEM;
        /* GCM decrypts before it verifies: the secret buffer is wiped by its cleanup if the tag is wrong. */
        memcpy(tag, blob + len - KC_BLOB_TAG_SIZE, KC_BLOB_TAG_SIZE);
        r = gcm_run(false, cmk, blob + header_len - 4 - KC_BLOB_NONCE_SIZE, aad, aad_len,
                    blob + header_len, h.plaintext_len, plaintext, tag);
        if (r == -EBADMSG)
                return kc_err_set(err, r, "wrapped key does not authenticate "
                                  "(wrong CMK, wrong encryption context, or modified)");
        if (r < 0)
                return kc_err_set(err, r, "AES-GCM failed");

        log_debug("Opened %zu bytes sealed under %s version %u", h.plaintext_len, h.key_id, h.key_version);
        *ret_plaintext = TAKE_PTR(plaintext);
        return 0;
}
