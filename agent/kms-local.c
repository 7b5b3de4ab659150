/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include <openssl/rand.h>

#include "agent/blob.h"
#include "agent/keystore.h"
#include "agent/kms.h"
#include "lib/secret.h"

/*
 * The `local` provider: CMKs in the keystore of this host (agent/keystore.c),
 * data keys wrapped in the blob format of agent/blob.h.  The provider state
 * is the open keystore, whose cache keeps every CMK version unwrapped in
 * kc_secret memory, so a call costs one pread (has anyone written?) plus the
 * AES-GCM work.
 */

static int local_open(const struct kc_kms_config *cfg, void **ret_state, struct kc_err *err) {
        struct kc_keystore *ks;
        int r = kc_keystore_open(cfg->keystore_dir ?: KC_KEYSTORE_DEFAULT_DIR, cfg->root_key_file, &ks, err);

        if (r < 0)
                return r;
        *ret_state = ks;
        return 0;
}

static void local_close(void *state) {
        kc_keystore_close(state);
}

/* Seal plaintext under the current version of key (or the given version). */
static int seal(struct kc_keystore *ks, const char *key, const struct kc_context *ctx, void *plaintext,
                struct kc_data_key *ret, struct kc_err *err) {
        const uint8_t *cmk;
        char id[KC_KEYSTORE_KEY_ID_LEN + 1];
        uint32_t version;
        uint8_t *blob;
        size_t len;
        int r;

        r = kc_keystore_use_key(ks, key, 0, &cmk, id, &version, err);
        if (r < 0)
                return r;
        r = kc_blob_seal(cmk, id, version, ctx, plaintext, kc_secret_size(plaintext), NULL, &blob, &len);
        if (r < 0)
                return kc_err_set(err, r, "cannot wrap the data key under key %s: %s", id, strerror(-r));
        *ret = (struct kc_data_key) { .plaintext = plaintext, .blob = blob, .blob_len = len, .key_version = version };
        memcpy(ret->key_id, id, sizeof(id));
        return 0;
}

static int local_generate_data_key(void *state, const char *key, const struct kc_context *ctx, size_t nbytes,
                                   struct kc_data_key *ret, struct kc_err *err) {
        _cleanup_secret_ void *plaintext = NULL;
        int r;

        if (!ctx)
                return kc_err_set(err, -EINVAL, "an encryption context is required");
        if (nbytes < 1 || nbytes > KC_BLOB_PLAINTEXT_MAX)
                return kc_err_set(err, -EINVAL, "data key size must be 1..%d bytes, not %zu", KC_BLOB_PLAINTEXT_MAX, nbytes);
        plaintext = kc_secret_alloc(nbytes);
        if (!plaintext)
                return -ENOMEM;
        if (RAND_priv_bytes(plaintext, (int) nbytes) != 1)
                return kc_err_set(err, -EIO, "random generator failed");
        r = seal(state, key, ctx, plaintext, ret, err);
        if (r < 0)
                return r;
        TAKE_PTR(plaintext);
        return 0;
}

/* AWS semantics: a KeyId given with Decrypt must be the key that wrapped the blob. */
static int check_blob_key(struct kc_keystore *ks, const char *key, const char *blob_key_id, struct kc_err *err) {
        char id[KC_KEYSTORE_KEY_ID_LEN + 1];
        int r;

        if (!key || streq(key, blob_key_id))
                return 0;
        if (kc_keystore_key_id_valid(key))
                return kc_err_set(err, -EBADMSG, "wrapped key belongs to key %s, not to %s", blob_key_id, key);
        r = kc_keystore_resolve(ks, key, id, err);
        if (r < 0)
                return r;
        if (!streq(id, blob_key_id))
                return kc_err_set(err, -EBADMSG, "wrapped key belongs to key %s, not to %s (%s)", blob_key_id, key, id);
        return 0;
}

static int local_decrypt(void *state, const char *key, const uint8_t *blob, size_t blob_len,
                         const struct kc_context *ctx, void **ret_plaintext,
                         char ret_key_id[65], uint32_t *ret_key_version, struct kc_err *err) {
        struct kc_keystore *ks = state;
        struct kc_blob_header h;
        struct kc_err open_err = {};
        const uint8_t *cmk;
        char id[KC_KEYSTORE_KEY_ID_LEN + 1];
        uint32_t version;
        void *plaintext;
        int r;

        if (!ctx)
                return kc_err_set(err, -EINVAL, "an encryption context is required");
        r = kc_blob_peek(blob, blob_len, &h, err);
        if (r < 0)
                return r;
        /* The id comes from untrusted bytes: it must be an id, never an alias to look up. */
        if (!kc_keystore_key_id_valid(h.key_id))
                return kc_err_set(err, -ENOKEY, "wrapped key names \"%.64s\", which is not a key of this keystore", h.key_id);
        r = check_blob_key(ks, key, h.key_id, err);
        if (r < 0)
                return r;
        r = kc_keystore_use_key(ks, h.key_id, h.key_version, &cmk, id, &version, err);
        if (r < 0)
                return r;
        r = kc_blob_open(cmk, blob, blob_len, ctx, &plaintext, &open_err);
        if (r == -EBADMSG)
                return kc_err_set(err, r, "wrapped key does not match this key or encryption context");
        if (r < 0)
                return kc_err_set(err, r, "%s", kc_err_msg(&open_err, r));
        *ret_plaintext = plaintext;
        memcpy(ret_key_id, id, sizeof(id));
        *ret_key_version = version;
        return 0;
}

static int local_re_encrypt(void *state, const char *src_key, const uint8_t *blob, size_t blob_len,
                            const struct kc_context *src_ctx, const char *dst_key,
                            const struct kc_context *dst_ctx, struct kc_data_key *ret, bool *source_refused,
                            struct kc_err *err) {
        _cleanup_secret_ void *plaintext = NULL;
        char src_id[65];
        uint32_t src_version;
        int r;

        /* The plaintext stays in this function and is wiped on every path. */
        r = local_decrypt(state, src_key, blob, blob_len, src_ctx, &plaintext, src_id, &src_version, err);
        if (r < 0) {
                *source_refused = true;
                return r;
        }
        r = seal(state, dst_key ?: src_id, dst_ctx ?: src_ctx, plaintext, ret, err);
        if (r < 0)
                return r;
        /* ReEncrypt never hands the plaintext out: the cleanup above wipes it. */
        ret->plaintext = NULL;
        memcpy(ret->source_key_id, src_id, sizeof(src_id));
        ret->source_key_version = src_version;
        return 0;
}

static int local_encrypt(void *state, const char *key, const struct kc_context *ctx, const void *plaintext,
                         size_t len, struct kc_data_key *ret, struct kc_err *err) {
        _cleanup_secret_ void *copy = NULL;
        int r;

        if (!ctx)
                return kc_err_set(err, -EINVAL, "an encryption context is required");
        if (!plaintext || len < 1 || len > KC_BLOB_PLAINTEXT_MAX)
                return kc_err_set(err, -EINVAL, "plaintext size must be 1..%d bytes, not %zu", KC_BLOB_PLAINTEXT_MAX, len);
        /* seal() takes its length from a secret buffer, and the caller's buffer stays the caller's. */
        copy = kc_secret_memdup(plaintext, len);
        if (!copy)
                return -ENOMEM;
        r = seal(state, key, ctx, copy, ret, err);
        if (r < 0)
                return r;
        ret->plaintext = NULL;
        return 0;
}

static int local_describe_key(void *state, const char *key, struct kc_key_info *ret, struct kc_err *err) {
        return kc_keystore_describe(state, key, ret, err);
}

static int local_create_key(void *state, const char *alias, const char *description,
                            struct kc_key_info *ret, struct kc_err *err) {
        return kc_keystore_create_key(state, alias, description, ret, err);
}

static int local_list_keys(void *state, struct kc_key_info **ret, size_t *ret_n, struct kc_err *err) {
        return kc_keystore_list(state, ret, ret_n, err);
}

static int local_set_enabled(void *state, const char *key, bool enabled, struct kc_err *err) {
        return kc_keystore_set_enabled(state, key, enabled, err);
}

static int local_rotate_key(void *state, const char *key, uint32_t *ret_new_version, struct kc_err *err) {
        return kc_keystore_rotate(state, key, ret_new_version, err);
}

static int local_schedule_deletion(void *state, const char *key, unsigned days, time_t *ret_date,
                                   struct kc_err *err) {
        return kc_keystore_schedule_deletion(state, key, days, ret_date, err);
}

static int local_cancel_deletion(void *state, const char *key, struct kc_err *err) {
        return kc_keystore_cancel_deletion(state, key, err);
}

/* Read-only, for the audit trail: its records name local keys by id. */
static int local_peek_key_id(const struct kc_kms_config *cfg, const char *key, char ret_key_id[65],
                             struct kc_err *err) {
        return kc_keystore_peek_id(cfg->keystore_dir ?: KC_KEYSTORE_DEFAULT_DIR, cfg->root_key_file, key, ret_key_id,
                                   err);
}

/* Untrusted bytes: only a header that parses and names a key id (never an alias) names a key. */
static int local_peek_blob_key(const uint8_t *blob, size_t blob_len, char ret_key_id[65],
                               uint32_t *ret_key_version) {
        struct kc_blob_header h;
        int r = kc_blob_peek(blob, blob_len, &h, NULL);

        if (r < 0)
                return r;
        if (!kc_keystore_key_id_valid(h.key_id))
                return -ENOKEY;
        kc_strscpy(ret_key_id, 65, h.key_id);
        *ret_key_version = h.key_version;
        return 0;
}

static void local_set_destroy_hook(void *state, kc_kms_destroy_fn fn, void *userdata) {
        kc_keystore_set_destroy_hook(state, fn, userdata);
}

const struct kc_kms_provider kc_kms_provider_local = {
        .name = "local",
        .open = local_open,
        .close = local_close,
        .generate_data_key = local_generate_data_key,
        .decrypt = local_decrypt,
        .re_encrypt = local_re_encrypt,
        .describe_key = local_describe_key,
        .encrypt = local_encrypt,
        .create_key = local_create_key,
        .list_keys = local_list_keys,
        .set_enabled = local_set_enabled,
        .rotate_key = local_rotate_key,
        .schedule_deletion = local_schedule_deletion,
        .cancel_deletion = local_cancel_deletion,
        .set_destroy_hook = local_set_destroy_hook,
        .peek_key_id = local_peek_key_id,
        .peek_blob_key = local_peek_blob_key,
};
