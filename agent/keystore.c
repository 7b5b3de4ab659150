/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <json-c/json.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "agent/keystore.h"
#include "lib/fault.h"
#include "lib/fileio.h"
#include "lib/json-util.h"
#include "lib/log.h"
#include "lib/secret.h"

/*
 * Layout, file format and locking are described in docs/keystore.md.  In
 * short: keys/<id>.json holds a key's metadata, its versions wrapped with
 * AES-256-GCM under a key derived from the root key, and an HMAC-SHA256 over
 * the canonical form of all of it.  Writers hold flock(LOCK_EX) on .lock,
 * readers LOCK_SH; every write is temp file + fsync + rename + fsync(dir)
 * and then bumps the change counter kept in the first 8 bytes of .lock.
 */

#define KS_FORMAT 1
#define KS_FILE_MAX (1024 * 1024)
#define KS_CMK_SIZE 32
#define KS_NONCE_SIZE 12
#define KS_TAG_SIZE 16
#define KS_WRAPPED_SIZE (KS_NONCE_SIZE + KS_CMK_SIZE + KS_TAG_SIZE)
#define KS_WRAPPED_B64_LEN (KS_WRAPPED_SIZE / 3 * 4)   /* 60 bytes: no padding */
#define KS_MAC_SIZE 32
#define KS_ALIAS_MAX (6 + KC_KEYSTORE_ALIAS_NAME_MAX)

/* The root secret buffer: the root key and the two keys derived from it. */
enum { KS_ROOT = 0, KS_WRAP_KEY = 32, KS_MAC_KEY = 64, KS_ROOT_BUF = 96 };

struct ks_version {
        uint32_t version;
        int64_t created;
        char material[KS_WRAPPED_B64_LEN + 1];   /* base64 of nonce||ct||tag, "" once destroyed */
};

struct ks_key {
        char id[KC_KEYSTORE_KEY_ID_LEN + 1];
        char alias[KS_ALIAS_MAX + 1];
        char description[KC_KEYSTORE_DESCRIPTION_MAX + 1];
        enum kc_key_state state;
        int64_t created;
        int64_t deletion_date;
        uint32_t current_version;
        struct ks_version *versions;
        size_t n_versions;
        uint8_t *cmk;        /* kc_secret: n_versions * 32 unwrapped keys; NULL when destroyed */
};

/* One file of keys/: either a validated key or the reason it is not. */
struct ks_entry {
        char id[KC_KEYSTORE_KEY_ID_LEN + 1];
        struct ks_key *key;
        struct kc_err error;
};

struct kc_keystore {
        char *dir;
        char *keys_dir;
        char *lock_path;
        char *root_key_path;      /* where the root key is (or will be) read from */
        bool root_from_credential;
        int lock_fd;
        const uint64_t *generation_map;   /* first 8 bytes of .lock, shared with every process */
        uint8_t *root;            /* kc_secret KS_ROOT_BUF, NULL until loaded */

        bool loaded;
        uint64_t generation;      /* change counter the cache reflects */
        int64_t next_deadline;    /* earliest deletion date among cached keys, 0: none */
        struct ks_entry *entries;
        size_t n_entries;

        kc_kms_destroy_fn destroy_hook;   /* records each destruction; NULL: none */
        void *destroy_hook_data;
};

static kc_keystore_clock_t ks_clock;

void kc_keystore_set_clock(kc_keystore_clock_t clock) {
        ks_clock = clock;
}

static int64_t ks_now(void) {
        return ks_clock ? (int64_t) ks_clock() : (int64_t) time(NULL);
}

static int state_from_string(const char *s, enum kc_key_state *ret) {
        for (enum kc_key_state i = KC_KEY_ENABLED; i <= KC_KEY_DESTROYED; i++)
                if (streq(s, kc_key_state_to_string(i))) {
                        *ret = i;
                        return 0;
                }
        return -EINVAL;
}

/* ---- names ---------------------------------------------------------------------------------- */

bool kc_keystore_key_id_valid(const char *text) {
        if (!text || strlen(text) != KC_KEYSTORE_KEY_ID_LEN)
                return false;
        for (size_t i = 0; i < KC_KEYSTORE_KEY_ID_LEN; i++) {
                bool dash = i == 8 || i == 13 || i == 18 || i == 23;
                if (dash ? text[i] != '-' : !strchr("0123456789abcdef", text[i]) || text[i] == '\0')
                        return false;
        }
        return true;
}

int kc_keystore_alias_check(const char *text, struct kc_err *err) {
        size_t n;

        if (!text || strncmp(text, "alias/", 6) != 0)
                return kc_err_set(err, -EINVAL, "alias \"%s\" does not start with \"alias/\"", strna(text));
        n = strlen(text + 6);
        if (n < 1 || n > KC_KEYSTORE_ALIAS_NAME_MAX)
                return kc_err_set(err, -EINVAL, "alias name must be 1..%d characters", KC_KEYSTORE_ALIAS_NAME_MAX);
        if (strspn(text + 6, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/_-") != n)
                return kc_err_set(err, -EINVAL, "alias \"%.64s\" may only contain A-Z a-z 0-9 / _ -", text);
        return 0;
}

static int description_check(const char *text, struct kc_err *err) {
        if (strlen(text) > KC_KEYSTORE_DESCRIPTION_MAX)
                return kc_err_set(err, -EINVAL, "description is longer than %d bytes", KC_KEYSTORE_DESCRIPTION_MAX);
        for (const unsigned char *p = (const unsigned char *) text; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        return kc_err_set(err, -EINVAL, "description contains a control character");
        return 0;
}

static int new_key_id(char ret[static KC_KEYSTORE_KEY_ID_LEN + 1]) {
        uint8_t b[16];

        if (RAND_bytes(b, sizeof(b)) != 1)
                return -EIO;
        b[6] = (b[6] & 0x0f) | 0x40;    /* version 4 */
        b[8] = (b[8] & 0x3f) | 0x80;    /* RFC 4122 variant */
        snprintf(ret, KC_KEYSTORE_KEY_ID_LEN + 1,
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                 b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
        return 0;
}

/* ---- crypto --------------------------------------------------------------------------------- */

static int hkdf(const uint8_t *ikm, const char *info, uint8_t out[static 32]) {
        EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
        EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
        OSSL_PARAM params[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *) "SHA256", 0),
                OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *) ikm, KS_CMK_SIZE),
                OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *) "kmscrypt-keystore", 17),
                OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *) info, strlen(info)),
                OSSL_PARAM_construct_end(),
        };
        int r = ctx && EVP_KDF_derive(ctx, out, 32, params) == 1 ? 0 : -EIO;

        EVP_KDF_CTX_free(ctx);
        EVP_KDF_free(kdf);
        return r;
}

/* The AAD of a wrapped CMK version: binds it to its key id and version number. */
static void version_aad(const char *key_id, uint32_t version, uint8_t aad[static 16 + KC_KEYSTORE_KEY_ID_LEN + 4]) {
        memcpy(aad, "kmscrypt-cmk-v1:", 16);
        memcpy(aad + 16, key_id, KC_KEYSTORE_KEY_ID_LEN);
        for (int i = 0; i < 4; i++)
                aad[16 + KC_KEYSTORE_KEY_ID_LEN + i] = (uint8_t) (version >> (24 - 8 * i));
}

static int wrap_cmk(const uint8_t wrap_key[static 32], const char *key_id, uint32_t version,
                    const uint8_t cmk[static KS_CMK_SIZE], char ret_b64[static KS_WRAPPED_B64_LEN + 1]) {
        uint8_t aad[16 + KC_KEYSTORE_KEY_ID_LEN + 4], out[KS_WRAPPED_SIZE];
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        int len, r = -EIO;

        version_aad(key_id, version, aad);
        if (c && RAND_bytes(out, KS_NONCE_SIZE) == 1 &&
            EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, wrap_key, out) == 1 &&
            EVP_EncryptUpdate(c, NULL, &len, aad, sizeof(aad)) == 1 &&
            EVP_EncryptUpdate(c, out + KS_NONCE_SIZE, &len, cmk, KS_CMK_SIZE) == 1 &&
            EVP_EncryptFinal_ex(c, out + KS_NONCE_SIZE + len, &len) == 1 &&
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, KS_TAG_SIZE, out + KS_NONCE_SIZE + KS_CMK_SIZE) == 1) {
                EVP_EncodeBlock((unsigned char *) ret_b64, out, KS_WRAPPED_SIZE);
                r = 0;
        }
        EVP_CIPHER_CTX_free(c);
        return r;
}

/* -EBADMSG when the wrapped key does not authenticate. */
static int unwrap_cmk(const uint8_t wrap_key[static 32], const char *key_id, uint32_t version,
                      const char *b64, uint8_t ret_cmk[static KS_CMK_SIZE]) {
        uint8_t aad[16 + KC_KEYSTORE_KEY_ID_LEN + 4], in[KS_WRAPPED_SIZE];
        EVP_CIPHER_CTX *c;
        int len, r = -EBADMSG;

        if (strlen(b64) != KS_WRAPPED_B64_LEN ||
            EVP_DecodeBlock(in, (const unsigned char *) b64, KS_WRAPPED_B64_LEN) != KS_WRAPPED_SIZE)
                return -EBADMSG;
        version_aad(key_id, version, aad);
        c = EVP_CIPHER_CTX_new();
        if (!c)
                return -ENOMEM;
        if (EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, wrap_key, in) == 1 &&
            EVP_DecryptUpdate(c, NULL, &len, aad, sizeof(aad)) == 1 &&
            EVP_DecryptUpdate(c, ret_cmk, &len, in + KS_NONCE_SIZE, KS_CMK_SIZE) == 1 &&
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, KS_TAG_SIZE, in + KS_NONCE_SIZE + KS_CMK_SIZE) == 1 &&
            EVP_DecryptFinal_ex(c, ret_cmk + len, &len) == 1)
                r = 0;
        EVP_CIPHER_CTX_free(c);
        if (r < 0)
                kc_wipe(ret_cmk, KS_CMK_SIZE);
        return r;
}

/* ---- canonical form and MAC ----------------------------------------------------------------- */

struct buf {
        uint8_t *p;
        size_t n, cap;
        bool failed;
};

static void buf_put(struct buf *b, const void *data, size_t n) {
        if (b->failed)
                return;
        if (b->n + n > b->cap) {
                size_t cap = (b->n + n) * 2;
                uint8_t *p = realloc(b->p, cap);
                if (!p) {
                        b->failed = true;
                        return;
                }
                b->p = p;
                b->cap = cap;
        }
        memcpy(b->p + b->n, data, n);
        b->n += n;
}

static void buf_u64(struct buf *b, uint64_t v) {
        uint8_t x[8];
        for (int i = 0; i < 8; i++)
                x[i] = (uint8_t) (v >> (56 - 8 * i));
        buf_put(b, x, 8);
}

static void buf_str(struct buf *b, const char *s) {
        buf_u64(b, strlen(s));
        buf_put(b, s, strlen(s));
}

/*
 * "KCKS1" || every field in a fixed order, strings length-prefixed, numbers
 * u64be: the MAC covers exactly what the parser accepts, and nothing else.
 */
static int key_mac(const struct kc_keystore *ks, const struct ks_key *k, uint8_t ret[static KS_MAC_SIZE]) {
        struct buf b = {};
        size_t len = 0;
        int r = 0;

        buf_put(&b, "KCKS1", 5);
        buf_str(&b, k->id);
        buf_str(&b, k->alias);
        buf_str(&b, k->description);
        buf_str(&b, kc_key_state_to_string(k->state));
        buf_u64(&b, (uint64_t) k->created);
        buf_u64(&b, (uint64_t) k->deletion_date);
        buf_u64(&b, k->current_version);
        buf_u64(&b, k->n_versions);
        for (size_t i = 0; i < k->n_versions; i++) {
                buf_u64(&b, k->versions[i].version);
                buf_u64(&b, (uint64_t) k->versions[i].created);
                buf_str(&b, k->state == KC_KEY_DESTROYED ? "" : k->versions[i].material);
        }
        if (b.failed ||
            !EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, ks->root + KS_MAC_KEY, 32, b.p, b.n, ret, KS_MAC_SIZE, &len) ||
            len != KS_MAC_SIZE)
                r = -ENOMEM;
        free(b.p);
        return r;
}

static void hex(const uint8_t *in, size_t n, char *out) {
        for (size_t i = 0; i < n; i++)
                sprintf(out + 2 * i, "%02x", in[i]);
}

/* ---- key records ---------------------------------------------------------------------------- */

static void key_free(struct ks_key *k) {
        if (!k)
                return;
        kc_secret_free(k->cmk);
        free(k->versions);
        free(k);
}
DEFINE_CLEANUP_FUNC(struct ks_key *, key_free)

static void key_info(const struct ks_key *k, struct kc_key_info *ret) {
        *ret = (struct kc_key_info) {
                .state = k->state,
                .created = (time_t) k->created,
                .deletion_date = (time_t) k->deletion_date,
                .current_version = k->current_version,
                .versions = (uint32_t) k->n_versions,
        };
        snprintf(ret->provider, sizeof(ret->provider), "local");
        snprintf(ret->key_id, sizeof(ret->key_id), "%s", k->id);
        snprintf(ret->arn, sizeof(ret->arn), "local:%s", k->id);
        snprintf(ret->alias, sizeof(ret->alias), "%s", k->alias);
        snprintf(ret->description, sizeof(ret->description), "%s", k->description);
}

static int corrupt(struct kc_err *err, const char *path, const char *fmt, ...) _printf_(3, 4);
static int corrupt(struct kc_err *err, const char *path, const char *fmt, ...) {
        char reason[160];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);
        return kc_err_set(err, -EUCLEAN, "keystore file %s is corrupted: %s", path, reason);
}

static const char *member_string(struct json_object *o, const char *name) {
        struct json_object *v;
        return json_object_object_get_ex(o, name, &v) && json_object_is_type(v, json_type_string)
                ? json_object_get_string(v) : NULL;
}

static bool member_int(struct json_object *o, const char *name, int64_t min, int64_t max, int64_t *ret) {
        struct json_object *v;
        int64_t x;

        if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_int))
                return false;
        errno = 0;
        x = json_object_get_int64(v);
        if (errno != 0 || x < min || x > max)
                return false;
        *ret = x;
        return true;
}

static int parse_versions(struct json_object *arr, struct ks_key *k, const char *path, struct kc_err *err) {
        size_t n = json_object_array_length(arr);
        bool destroyed = k->state == KC_KEY_DESTROYED;

        if (n < 1 || n > UINT32_MAX / 2)
                return corrupt(err, path, "no versions");
        k->versions = calloc(n, sizeof(struct ks_version));
        if (!k->versions)
                return -ENOMEM;
        k->n_versions = n;
        for (size_t i = 0; i < n; i++) {
                struct json_object *v = json_object_array_get_idx(arr, i);
                struct ks_version *kv = &k->versions[i];
                const char *m;
                int64_t x;

                if (!json_object_is_type(v, json_type_object) ||
                    json_object_object_length(v) != (destroyed ? 2 : 3))
                        return corrupt(err, path, "version %zu has the wrong members", i + 1);
                if (!member_int(v, "version", 1, UINT32_MAX, &x) || x != (int64_t) i + 1)
                        return corrupt(err, path, "versions are not numbered 1..%zu", n);
                kv->version = (uint32_t) x;
                if (!member_int(v, "created", 0, INT64_MAX, &kv->created))
                        return corrupt(err, path, "version %zu has no creation time", i + 1);
                if (destroyed)
                        continue;
                m = member_string(v, "material");
                if (!m || strlen(m) != KS_WRAPPED_B64_LEN)
                        return corrupt(err, path, "version %zu has no valid material", i + 1);
                memcpy(kv->material, m, KS_WRAPPED_B64_LEN + 1);
        }
        return 0;
}

static int parse_metadata(struct json_object *o, struct ks_key *k, const char *path, struct kc_err *err) {
        const char *id = member_string(o, "id"), *alias = member_string(o, "alias"),
                   *desc = member_string(o, "description"), *state = member_string(o, "state");
        int64_t format, cur;

        if (json_object_object_length(o) != 10)
                return corrupt(err, path, "unexpected set of members");
        if (!member_int(o, "format", KS_FORMAT, KS_FORMAT, &format))
                return corrupt(err, path, "unknown format");
        if (!id || !kc_keystore_key_id_valid(id))
                return corrupt(err, path, "bad key id");
        if (!alias || (alias[0] && kc_keystore_alias_check(alias, NULL) < 0))
                return corrupt(err, path, "bad alias");
        if (!desc || description_check(desc, NULL) < 0)
                return corrupt(err, path, "bad description");
        if (!state || state_from_string(state, &k->state) < 0)
                return corrupt(err, path, "bad state");
        if (!member_int(o, "created", 0, INT64_MAX, &k->created) ||
            !member_int(o, "deletion_date", 0, INT64_MAX, &k->deletion_date) ||
            !member_int(o, "current_version", 1, UINT32_MAX, &cur))
                return corrupt(err, path, "bad dates or current version");
        /* A tombstone keeps the date it was due, as the record of when it went. */
        if ((k->state == KC_KEY_PENDING_DELETION || k->state == KC_KEY_DESTROYED) != (k->deletion_date != 0))
                return corrupt(err, path, "deletion date does not match state");
        snprintf(k->id, sizeof(k->id), "%s", id);
        snprintf(k->alias, sizeof(k->alias), "%s", alias);
        snprintf(k->description, sizeof(k->description), "%s", desc);
        k->current_version = (uint32_t) cur;
        return 0;
}

/*
 * Validate text[0..len), the file of key id, (one JSON object and nothing
 * after it; MAC, names, versions) and unwrap its versions.
 */
static int key_parse(const struct kc_keystore *ks, const char *id, const char *text, size_t len, const char *path,
                     struct ks_key **ret, struct kc_err *err) {
        _cleanup_json_ struct json_object *o = NULL;
        _cleanup_(key_freep) struct ks_key *k = NULL;
        struct json_object *versions;
        uint8_t mac[KS_MAC_SIZE], want[KS_MAC_SIZE];
        struct kc_err why = {};
        const char *mac_hex;
        int r;

        /*
         * The MAC covers every value, not the bytes around them: text after
         * the object (a second one, an editor's or a tool's leftovers) is
         * not the file kmscrypt wrote, and reading only its first object
         * would hide that.
         */
        r = kc_json_parse_object(text, len, NULL, &o, &why);
        if (r == -EBADMSG)
                return corrupt(err, path, "%s", why.msg);
        if (r < 0)
                return r;
        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        r = parse_metadata(o, k, path, err);
        if (r < 0)
                return r;
        if (!streq(k->id, id))
                return corrupt(err, path, "it holds key %s", k->id);
        if (!json_object_object_get_ex(o, "versions", &versions) || !json_object_is_type(versions, json_type_array))
                return corrupt(err, path, "no versions");
        r = parse_versions(versions, k, path, err);
        if (r < 0)
                return r;
        if (k->current_version != k->n_versions)
                return corrupt(err, path, "current version is not the newest");

        mac_hex = member_string(o, "mac");
        if (!mac_hex || strlen(mac_hex) != 2 * KS_MAC_SIZE ||
            OPENSSL_hexstr2buf_ex(want, sizeof(want), NULL, mac_hex, '\0') != 1)
                return corrupt(err, path, "no MAC");
        r = key_mac(ks, k, mac);
        if (r < 0)
                return r;
        if (!kc_memeq_const(mac, want, KS_MAC_SIZE))
                return corrupt(err, path, "MAC mismatch (edited, or made with another root key)");

        if (k->state != KC_KEY_DESTROYED) {
                k->cmk = kc_secret_alloc(k->n_versions * KS_CMK_SIZE);
                if (!k->cmk)
                        return -ENOMEM;
                for (size_t i = 0; i < k->n_versions; i++)
                        if (unwrap_cmk(ks->root + KS_WRAP_KEY, k->id, k->versions[i].version,
                                       k->versions[i].material, k->cmk + i * KS_CMK_SIZE) < 0)
                                return corrupt(err, path, "version %zu does not unwrap", i + 1);
        }
        *ret = TAKE_PTR(k);
        return 0;
}

/* JSON text of k with a fresh MAC.  Caller frees. */
static int key_format(const struct kc_keystore *ks, const struct ks_key *k, char **ret) {
        _cleanup_(json_object_putp) struct json_object *o = json_object_new_object(), *versions = json_object_new_array();
        uint8_t mac[KS_MAC_SIZE];
        char mac_hex[2 * KS_MAC_SIZE + 1];
        char *text;
        int r;

        if (!o || !versions)
                return -ENOMEM;
        r = key_mac(ks, k, mac);
        if (r < 0)
                return r;
        hex(mac, sizeof(mac), mac_hex);
        for (size_t i = 0; i < k->n_versions; i++) {
                struct json_object *v = json_object_new_object();
                if (!v || json_object_array_add(versions, v) < 0)
                        return -ENOMEM;
                json_object_object_add(v, "version", json_object_new_int64(k->versions[i].version));
                json_object_object_add(v, "created", json_object_new_int64(k->versions[i].created));
                if (k->state != KC_KEY_DESTROYED)
                        json_object_object_add(v, "material", json_object_new_string(k->versions[i].material));
        }
        json_object_object_add(o, "format", json_object_new_int(KS_FORMAT));
        json_object_object_add(o, "id", json_object_new_string(k->id));
        json_object_object_add(o, "alias", json_object_new_string(k->alias));
        json_object_object_add(o, "description", json_object_new_string(k->description));
        json_object_object_add(o, "state", json_object_new_string(kc_key_state_to_string(k->state)));
        json_object_object_add(o, "created", json_object_new_int64(k->created));
        json_object_object_add(o, "deletion_date", json_object_new_int64(k->deletion_date));
        json_object_object_add(o, "current_version", json_object_new_int64(k->current_version));
        json_object_object_add(o, "versions", TAKE_PTR(versions));
        json_object_object_add(o, "mac", json_object_new_string(mac_hex));

        text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
}

/* ---- files ---------------------------------------------------------------------------------- */

static int fsync_dir_of(const char *path) {
        _cleanup_free_ char *dir = strdup(path);
        _cleanup_close_ int fd = -1;
        char *slash;

        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (slash == dir)
                slash[1] = '\0';
        else if (slash)
                *slash = '\0';
        else
                strcpy(dir, ".");
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
                return negative_errno();
        return 0;
}

/*
 * Write path atomically: a 0600 temp file created O_EXCL beside it (never
 * any wider mode, not even for a moment), fsync, rename over path (or, with
 * noreplace, fail with -EEXIST if it exists), fsync the directory.
 */
static int write_atomic(const char *path, const void *data, size_t n, bool noreplace, struct kc_err *err) {
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -1;
        uint8_t rnd[6];
        const char *slash = strrchr(path, '/');
        int dirlen = slash ? (int) (slash - path + 1) : 0;
        int r;

        if (RAND_bytes(rnd, sizeof(rnd)) != 1)
                return -EIO;
        if (asprintf(&tmp, "%.*s.%s.tmp-%02x%02x%02x%02x%02x%02x", dirlen, path, path + dirlen,
                     rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]) < 0)
                return -ENOMEM;
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return kc_err_set(err, negative_errno(), "cannot create %s: %m", tmp);
        for (size_t done = 0; done < n;) {
                ssize_t w = write(fd, (const uint8_t *) data + done, n - done);
                if (w < 0) {
                        r = kc_err_set(err, negative_errno(), "cannot write %s: %m", tmp);
                        goto fail;
                }
                done += (size_t) w;
        }
        if (fsync(fd) < 0) {
                r = kc_err_set(err, negative_errno(), "cannot fsync %s: %m", tmp);
                goto fail;
        }
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, noreplace ? RENAME_NOREPLACE : 0) < 0) {
                r = negative_errno();
                if (!(noreplace && r == -EEXIST))
                        kc_err_set(err, r, "cannot rename %s into place: %m", tmp);
                goto fail;
        }
        kc_fault_point("keystore:after-rename");
        r = fsync_dir_of(path);
        if (r < 0)
                return kc_err_set(err, r, "cannot fsync the directory of %s: %m", path);
        return 0;
fail:
        (void) unlink(tmp);
        return r;
}

/* Whole regular file into a NUL-terminated malloc()ed buffer, and its length (it may hold a NUL). */
static int read_file(const char *path, char **ret, size_t *ret_len, struct kc_err *err) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        int r;

        if (fd < 0)
                return kc_err_set(err, negative_errno(), "cannot open keystore file %s: %m", path);
        r = kc_read_full_fd(fd, KS_FILE_MAX, 0, ret, ret_len);
        if (r == -EINVAL || r == -EFBIG)
                return corrupt(err, path, "not a regular file of at most %d bytes", KS_FILE_MAX);
        if (r < 0)
                return kc_err_set(err, r, "cannot read keystore file %s: %s", path, strerror(-r));
        return 0;
}

/* Refuse a directory or key file others could read or replace. */
static int check_private(const char *path, const struct stat *st, struct kc_err *err) {
        if (st->st_uid != geteuid())
                return kc_err_set(err, -EPERM, "%s is owned by uid %u, not by us", path, (unsigned) st->st_uid);
        if (st->st_mode & 077)
                return kc_err_set(err, -EPERM, "%s is accessible by group or others (mode %04o), expected %s",
                                  path, (unsigned) (st->st_mode & 07777), S_ISDIR(st->st_mode) ? "0700" : "0600");
        return 0;
}

static int ensure_private_dir(const char *path, struct kc_err *err) {
        struct stat st;

        if (mkdir(path, 0700) < 0 && errno != EEXIST)
                return kc_err_set(err, negative_errno(), "cannot create keystore directory %s: %m", path);
        if (lstat(path, &st) < 0)
                return kc_err_set(err, negative_errno(), "cannot stat %s: %m", path);
        if (!S_ISDIR(st.st_mode))
                return kc_err_set(err, -ENOTDIR, "%s is not a directory", path);
        return check_private(path, &st, err);
}

/* ---- root key ------------------------------------------------------------------------------- */

static int root_derive(struct kc_keystore *ks) {
        int r = hkdf(ks->root + KS_ROOT, "wrap v1", ks->root + KS_WRAP_KEY);
        return r < 0 ? r : hkdf(ks->root + KS_ROOT, "mac v1", ks->root + KS_MAC_KEY);
}

/* Load the root key if it exists: 0 loaded, -ENOENT absent. */
static int root_load(struct kc_keystore *ks, struct kc_err *err) {
        _cleanup_secret_ uint8_t *root = NULL;
        _cleanup_close_ int fd = -1;
        struct stat st;
        ssize_t n;
        int r;

        if (ks->root)
                return 0;
        fd = open(ks->root_key_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 && errno == ENOENT)
                return -ENOENT;
        if (fd < 0)
                return kc_err_set(err, negative_errno(), "cannot open root key %s: %m", ks->root_key_path);
        if (fstat(fd, &st) < 0)
                return negative_errno();
        /* systemd hands credentials out 0400 in a private directory; our own file must be 0600. */
        if (!ks->root_from_credential) {
                r = check_private(ks->root_key_path, &st, err);
                if (r < 0)
                        return r;
        }
        root = kc_secret_alloc(KS_ROOT_BUF);
        if (!root)
                return -ENOMEM;
        n = read(fd, root, KS_CMK_SIZE + 1);
        if (n < 0)
                return kc_err_set(err, negative_errno(), "cannot read root key %s: %m", ks->root_key_path);
        if (n != KS_CMK_SIZE)
                return kc_err_set(err, -EUCLEAN, "root key %s is not %d bytes", ks->root_key_path, KS_CMK_SIZE);
        ks->root = TAKE_PTR(root);
        r = root_derive(ks);
        if (r < 0) {
                kc_secret_free(ks->root);
                ks->root = NULL;
        }
        return r;
}

/* Called with the write lock held, before the first key is written. */
static int root_ensure(struct kc_keystore *ks, struct kc_err *err) {
        _cleanup_secret_ uint8_t *root = NULL;
        int r = root_load(ks, err);

        if (r != -ENOENT)
                return r;
        /* Unavailable, as a root key missing beside keys is (ks_reload_locked()). */
        if (ks->root_from_credential)
                return kc_err_set(err, -EAGAIN, "root key credential %s vanished", ks->root_key_path);
        root = kc_secret_alloc(KS_CMK_SIZE);
        if (!root)
                return -ENOMEM;
        if (RAND_priv_bytes(root, KS_CMK_SIZE) != 1)
                return -EIO;
        /* Never replace a root key someone else created meanwhile: keys made under it would be lost. */
        r = write_atomic(ks->root_key_path, root, KS_CMK_SIZE, true, err);
        if (r < 0 && r != -EEXIST)
                return r;
        log_debug("keystore: %s root key %s", r == 0 ? "created" : "found", ks->root_key_path);
        return root_load(ks, err);
}

int kc_keystore_parse_key_file(const uint8_t root_key[static 32], const char *id, const char *text, size_t len,
                               const char *name, struct kc_key_info *ret, struct kc_err *err) {
        _cleanup_(key_freep) struct ks_key *k = NULL;
        struct kc_keystore ks = { .lock_fd = -1 };
        int r;

        if (!id || !text || !name)
                return -EINVAL;
        ks.root = kc_secret_alloc(KS_ROOT_BUF);
        if (!ks.root)
                return -ENOMEM;
        memcpy(ks.root + KS_ROOT, root_key, KS_CMK_SIZE);
        r = root_derive(&ks);
        if (r >= 0)
                r = key_parse(&ks, id, text, len, name, &k, err);
        kc_secret_free(ks.root);
        if (r < 0)
                return r;
        if (ret)
                key_info(k, ret);
        return 0;
}

/* ---- cache, locking, change counter --------------------------------------------------------- */

static void entries_free(struct kc_keystore *ks) {
        for (size_t i = 0; i < ks->n_entries; i++)
                key_free(ks->entries[i].key);
        free(ks->entries);
        ks->entries = NULL;
        ks->n_entries = 0;
        ks->loaded = false;
}

static int ks_lock(struct kc_keystore *ks, int how, struct kc_err *err) {
        while (flock(ks->lock_fd, how) < 0)
                if (errno != EINTR)
                        return kc_err_set(err, negative_errno(), "cannot lock %s: %m", ks->lock_path);
        return 0;
}

static void ks_unlock(struct kc_keystore *ks) {
        (void) flock(ks->lock_fd, LOCK_UN);
}

static uint64_t generation_read(const struct kc_keystore *ks) {
        /*
         * Read without the lock and without a system call, from the shared
         * mapping of .lock: a torn read yields either the old value (as if
         * read just before the write) or a new one (a reload, under the
         * lock).  Either is correct.  A keystore peeked at read-only
         * (kc_keystore_peek_id) has no mapping and never reloads.
         */
        return ks->generation_map ? __atomic_load_n(ks->generation_map, __ATOMIC_ACQUIRE) : 0;
}

static int generation_bump(struct kc_keystore *ks) {
        uint64_t g = generation_read(ks) + 1;
        return pwrite(ks->lock_fd, &g, sizeof(g), 0) == sizeof(g) ? 0 : negative_errno();
}

/* Open .lock and map its change counter, making the file 8 bytes long first if it is new. */
static int lock_file_open(struct kc_keystore *ks, struct kc_err *err) {
        struct stat st;
        void *m;
        int r;

        ks->lock_fd = open(ks->lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (ks->lock_fd < 0)
                return kc_err_set(err, negative_errno(), "cannot open %s: %m", ks->lock_path);
        if (fstat(ks->lock_fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode))
                return kc_err_set(err, -EUCLEAN, "%s is not a regular file", ks->lock_path);
        if (st.st_size < (off_t) sizeof(uint64_t)) {
                /* Under the lock, so that two first openers do not both write a counter. */
                r = ks_lock(ks, LOCK_EX, err);
                if (r < 0)
                        return r;
                if (fstat(ks->lock_fd, &st) >= 0 && st.st_size < (off_t) sizeof(uint64_t) &&
                    ftruncate(ks->lock_fd, sizeof(uint64_t)) < 0)
                        r = kc_err_set(err, negative_errno(), "cannot initialise %s: %m", ks->lock_path);
                ks_unlock(ks);
                if (r < 0)
                        return r;
        }
        m = mmap(NULL, sizeof(uint64_t), PROT_READ, MAP_SHARED, ks->lock_fd, 0);
        if (m == MAP_FAILED)
                return kc_err_set(err, negative_errno(), "cannot map %s: %m", ks->lock_path);
        ks->generation_map = m;
        return 0;
}

/*
 * Find the keystore on disk and open its lock file.  Only key creation
 * makes the directories: a keystore that is not there (its file system not
 * mounted yet at boot, or a restore still to come) must not be replaced by
 * a new empty one that later keys and audit heads would land in.  Until it
 * appears every call fails with -ENOENT and the next call looks again, so a
 * running agent picks it up without a restart.
 */
static int ks_attach_dir(struct kc_keystore *ks, bool create, struct kc_err *err) {
        struct stat st;
        int r;

        if (ks->lock_fd >= 0)
                return 0;
        if (create) {
                r = ensure_private_dir(ks->dir, err);
        } else if (lstat(ks->dir, &st) < 0) {
                if (errno == ENOENT)
                        return kc_err_set(err, -ENOENT, "keystore %s does not exist (no key created yet, "
                                          "or its file system is not mounted)", ks->dir);
                return kc_err_set(err, negative_errno(), "cannot stat %s: %m", ks->dir);
        } else
                r = S_ISDIR(st.st_mode) ? check_private(ks->dir, &st, err) :
                    kc_err_set(err, -ENOTDIR, "%s is not a directory", ks->dir);
        if (r >= 0)
                r = ensure_private_dir(ks->keys_dir, err);
        if (r >= 0)
                r = lock_file_open(ks, err);
        if (r >= 0) {
                r = root_load(ks, err);
                if (r == -ENOENT)
                        r = 0;
        }
        if (r < 0 && ks->lock_fd >= 0) {
                if (ks->generation_map)
                        munmap((void *) ks->generation_map, sizeof(uint64_t));
                ks->generation_map = NULL;
                close(ks->lock_fd);
                ks->lock_fd = -1;
        }
        return r;
}

static int entry_load(struct kc_keystore *ks, struct ks_entry *e) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        size_t len;
        int r;

        if (asprintf(&path, "%s/%s.json", ks->keys_dir, e->id) < 0)
                return -ENOMEM;
        r = read_file(path, &text, &len, &e->error);
        if (r >= 0)
                r = key_parse(ks, e->id, text, len, path, &e->key, &e->error);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                log_debug("keystore: %s", kc_err_msg(&e->error, r));
        return 0;
}

/* Whether name, an entry of keys/, is a key file <id>.json; temp files start with '.' and are not. */
static bool key_file_name(const char *name, char ret_id[static KC_KEYSTORE_KEY_ID_LEN + 1]) {
        if (strlen(name) != KC_KEYSTORE_KEY_ID_LEN + 5 || !streq(name + KC_KEYSTORE_KEY_ID_LEN, ".json"))
                return false;
        memcpy(ret_id, name, KC_KEYSTORE_KEY_ID_LEN);
        ret_id[KC_KEYSTORE_KEY_ID_LEN] = '\0';
        return kc_keystore_key_id_valid(ret_id);
}

/* Re-read every key file.  Called with the lock (shared or exclusive) held, or by kc_keystore_peek_id. */
static int ks_reload_locked(struct kc_keystore *ks, struct kc_err *err) {
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        uint64_t gen = generation_read(ks);
        char id[KC_KEYSTORE_KEY_ID_LEN + 1];
        int r;

        entries_free(ks);
        ks->next_deadline = 0;
        d = opendir(ks->keys_dir);
        if (!d)
                return kc_err_set(err, negative_errno(), "cannot read %s: %m", ks->keys_dir);
        while ((de = readdir(d))) {
                struct ks_entry *e;

                if (!key_file_name(de->d_name, id))
                        continue;
                e = reallocarray(ks->entries, ks->n_entries + 1, sizeof(*e));
                if (!e)
                        return -ENOMEM;
                ks->entries = e;
                e = &ks->entries[ks->n_entries++];
                *e = (struct ks_entry) {};
                memcpy(e->id, id, sizeof(id));
                if (!ks->root) {
                        /*
                         * Not -ENOENT, "no such key or volume" (kmscrypt status 3): the keys are
                         * there, none can be used.  -EAGAIN, unavailable (status 5), which
                         * kmscryptd retries as it does a keystore not mounted yet: a root key on
                         * another file system, or a credential, may still come.
                         */
                        r = root_load(ks, err);
                        if (r == -ENOENT)
                                return kc_err_set(err, -EAGAIN, "keystore %s holds keys but its root key %s is missing",
                                                  ks->dir, ks->root_key_path);
                        if (r < 0)
                                return r;
                }
                r = entry_load(ks, e);
                if (r < 0)
                        return r;
                if (e->key && e->key->state == KC_KEY_PENDING_DELETION &&
                    (ks->next_deadline == 0 || e->key->deletion_date < ks->next_deadline))
                        ks->next_deadline = e->key->deletion_date;
        }
        ks->generation = gen;
        ks->loaded = true;
        return 0;
}

/* Make the cache current: costs one pread when nobody wrote since the last call. */
static int ks_refresh(struct kc_keystore *ks, struct kc_err *err) {
        int r = ks_attach_dir(ks, false, err);

        if (r < 0)
                return r;
        if (ks->loaded && generation_read(ks) == ks->generation)
                return 0;
        r = ks_lock(ks, LOCK_SH, err);
        if (r < 0)
                return r;
        r = ks_reload_locked(ks, err);
        ks_unlock(ks);
        return r;
}

static int key_write(struct kc_keystore *ks, const struct ks_key *k, struct kc_err *err) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        int r;

        r = key_format(ks, k, &text);
        if (r < 0)
                return r;
        if (asprintf(&path, "%s/%s.json", ks->keys_dir, k->id) < 0)
                return -ENOMEM;
        /*
         * The change counter first, under the write lock: a reader that sees
         * it waits for that lock, then reloads what is there.  After the
         * rename, a writer killed in between, or a write_atomic failing at
         * the directory's fsync (the file already replaced), left the
         * counter behind, and the agent kept a key disabled on disk usable.
         * A write that then fails costs readers one reload.
         */
        r = generation_bump(ks);
        if (r < 0)
                return kc_err_set(err, r, "cannot count the change in %s/.lock: %s", ks->dir, strerror(-r));
        return write_atomic(path, text, strlen(text), false, err);
}

/* Rewrite a key whose deletion window has passed as a Destroyed tombstone: material and alias gone. */
static int key_destroy(struct kc_keystore *ks, const struct ks_key *k, struct kc_err *err) {
        struct ks_key t = *k;

        t.state = KC_KEY_DESTROYED;
        t.alias[0] = '\0';
        t.cmk = NULL;
        log_debug("keystore: destroying key %s (deletion date passed)", k->id);
        return key_write(ks, &t, err);
}

/*
 * With the write lock held: destroy every key whose window has passed, then
 * reload.  Each destruction is a change of state, so it is written ahead to
 * the audit trail through the hook; a key whose intent record cannot be
 * written is left pending deletion for a later use to destroy.
 */
static int ks_sweep_locked(struct kc_keystore *ks, struct kc_err *err) {
        int64_t now = ks_now();
        bool wrote = false;
        int r;

        for (size_t i = 0; i < ks->n_entries; i++) {
                const struct ks_key *k = ks->entries[i].key;
                if (!k || k->state != KC_KEY_PENDING_DELETION || now < k->deletion_date)
                        continue;
                if (ks->destroy_hook &&
                    ks->destroy_hook(ks->destroy_hook_data, k->id, (time_t) k->deletion_date, true, 0, NULL) < 0)
                        continue;
                r = key_destroy(ks, k, err);
                if (ks->destroy_hook)
                        ks->destroy_hook(ks->destroy_hook_data, k->id, (time_t) k->deletion_date, false, r, err);
                if (r < 0)
                        return r;
                wrote = true;
        }
        return wrote ? ks_reload_locked(ks, err) : 0;
}

/* Take the write lock, re-read and validate every file, destroy what is due. */
static int ks_write_begin(struct kc_keystore *ks, bool create, struct kc_err *err) {
        int r = ks_attach_dir(ks, create, err);

        if (r >= 0)
                r = ks_lock(ks, LOCK_EX, err);
        if (r < 0)
                return r;
        r = ks_reload_locked(ks, err);
        if (r >= 0)
                r = ks_sweep_locked(ks, err);
        if (r < 0)
                ks_unlock(ks);
        return r;
}

/* Refresh, and destroy due keys first if any is due, so that readers never see a stale state. */
static int ks_prepare(struct kc_keystore *ks, struct kc_err *err) {
        int r = ks_refresh(ks, err);

        if (r < 0 || ks->next_deadline == 0 || ks_now() < ks->next_deadline)
                return r;
        r = ks_write_begin(ks, false, err);
        if (r < 0)
                return r;
        ks_unlock(ks);
        return 0;
}

/* ---- lookup --------------------------------------------------------------------------------- */

static int ks_find(struct kc_keystore *ks, const char *key, struct ks_key **ret, struct kc_err *err) {
        struct ks_entry *bad = NULL;

        if (!key)
                return kc_err_set(err, -EINVAL, "no key given");
        if (kc_keystore_key_id_valid(key)) {
                for (size_t i = 0; i < ks->n_entries; i++)
                        if (streq(ks->entries[i].id, key)) {
                                if (!ks->entries[i].key)
                                        return kc_err_set(err, ks->entries[i].error.error, "%s", ks->entries[i].error.msg);
                                *ret = ks->entries[i].key;
                                return 0;
                        }
                return kc_err_set(err, -ENOKEY, "unknown key %s", key);
        }
        if (strncmp(key, "alias/", 6) != 0)
                return kc_err_set(err, -EINVAL, "\"%.64s\" is neither a key id nor an alias/NAME", key);
        for (size_t i = 0; i < ks->n_entries; i++) {
                if (!ks->entries[i].key)
                        bad = &ks->entries[i];
                else if (streq(ks->entries[i].key->alias, key)) {
                        *ret = ks->entries[i].key;
                        return 0;
                }
        }
        /* The alias may belong to the file that cannot be read: say so rather than "unknown". */
        if (bad)
                return kc_err_set(err, bad->error.error, "%s not found; %s", key, bad->error.msg);
        return kc_err_set(err, -ENOKEY, "unknown alias %s", key);
}

/* The key as of now: cache refreshed and due keys destroyed first. */
static int ks_lookup(struct kc_keystore *ks, const char *key, struct ks_key **ret, struct kc_err *err) {
        int r = ks_prepare(ks, err);
        return r < 0 ? r : ks_find(ks, key, ret, err);
}

static int state_refusal(const struct ks_key *k, struct kc_err *err) {
        switch (k->state) {
        case KC_KEY_ENABLED:
                return 0;
        case KC_KEY_DISABLED:
                return kc_err_set(err, -EKEYREVOKED, "key %s is disabled", k->id);
        case KC_KEY_PENDING_DELETION:
                return kc_err_set(err, -EKEYEXPIRED, "key %s is pending deletion", k->id);
        case KC_KEY_DESTROYED:
                return kc_err_set(err, -EKEYREJECTED, "key %s has been destroyed", k->id);
        default:
                break;          /* states of AWS KMS, never read from a keystore file */
        }
        return -EINVAL;
}

/* ---- public --------------------------------------------------------------------------------- */

/* The paths of the keystore at dir, nothing opened yet; root key as kc_keystore_open() finds it. */
static int ks_new(const char *dir, const char *root_key_file, struct kc_keystore **ret, struct kc_err *err) {
        _cleanup_keystore_ struct kc_keystore *ks = NULL;
        const char *creds = getenv("CREDENTIALS_DIRECTORY");

        if (!dir || !dir[0])
                return kc_err_set(err, -EINVAL, "no keystore directory given");
        ks = calloc(1, sizeof(*ks));
        if (!ks)
                return -ENOMEM;
        ks->lock_fd = -1;
        if (!(ks->dir = strdup(dir)) ||
            asprintf(&ks->keys_dir, "%s/keys", dir) < 0 ||
            asprintf(&ks->lock_path, "%s/.lock", dir) < 0)
                return -ENOMEM;

        /* A root key handed in by systemd (LoadCredential=/LoadCredentialEncrypted=) wins. */
        if (creds && creds[0]) {
                if (asprintf(&ks->root_key_path, "%s/" KC_KEYSTORE_ROOT_KEY_CREDENTIAL, creds) < 0)
                        return -ENOMEM;
                ks->root_from_credential = access(ks->root_key_path, F_OK) == 0;
                if (!ks->root_from_credential) {
                        free(ks->root_key_path);
                        ks->root_key_path = NULL;
                }
        }
        if (!ks->root_key_path &&
            !(ks->root_key_path = root_key_file ? strdup(root_key_file) : NULL) &&
            asprintf(&ks->root_key_path, "%s/root.key", dir) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(ks);
        return 0;
}

int kc_keystore_open(const char *dir, const char *root_key_file, struct kc_keystore **ret, struct kc_err *err) {
        _cleanup_keystore_ struct kc_keystore *ks = NULL;
        int r;

        r = ks_new(dir, root_key_file, &ks, err);
        if (r < 0)
                return r;
        /* An absent keystore is not an error yet (ks_attach_dir()); anything else wrong with it is. */
        r = ks_attach_dir(ks, false, err);
        if (r < 0 && r != -ENOENT)
                return r;
        *ret = TAKE_PTR(ks);
        return 0;
}

void kc_keystore_set_destroy_hook(struct kc_keystore *ks, kc_kms_destroy_fn fn, void *userdata) {
        ks->destroy_hook = fn;
        ks->destroy_hook_data = userdata;
}

void kc_keystore_close(struct kc_keystore *ks) {
        if (!ks)
                return;
        entries_free(ks);
        kc_secret_free(ks->root);
        if (ks->generation_map)
                munmap((void *) ks->generation_map, sizeof(uint64_t));
        if (ks->lock_fd >= 0)
                close(ks->lock_fd);
        free(ks->dir);
        free(ks->keys_dir);
        free(ks->lock_path);
        free(ks->root_key_path);
        free(ks);
}

int kc_keystore_create_key(struct kc_keystore *ks, const char *alias, const char *description,
                           struct kc_key_info *ret, struct kc_err *err) {
        _cleanup_secret_ uint8_t *cmk = NULL;
        struct ks_version v = { .version = 1 };
        struct ks_key k = { .state = KC_KEY_ENABLED, .current_version = 1, .versions = &v, .n_versions = 1 };
        struct ks_key *existing;
        int r;

        if (alias && alias[0] && (r = kc_keystore_alias_check(alias, err)) < 0)
                return r;
        if ((r = description_check(description ?: "", err)) < 0)
                return r;
        cmk = kc_secret_alloc(KS_CMK_SIZE);
        if (!cmk)
                return -ENOMEM;
        if (RAND_priv_bytes(cmk, KS_CMK_SIZE) != 1 || new_key_id(k.id) < 0)
                return -EIO;
        snprintf(k.alias, sizeof(k.alias), "%s", alias ?: "");
        snprintf(k.description, sizeof(k.description), "%s", description ?: "");
        k.created = v.created = ks_now();

        r = ks_write_begin(ks, true, err);
        if (r < 0)
                return r;
        if (k.alias[0]) {
                r = ks_find(ks, k.alias, &existing, NULL);
                if (r == 0)
                        r = kc_err_set(err, -EEXIST, "alias %s already names key %s", k.alias, existing->id);
                else if (r == -ENOKEY)
                        r = 0;
                else    /* an unreadable file might hold the alias: refuse rather than duplicate it */
                        r = ks_find(ks, k.alias, &existing, err);
        }
        if (r >= 0)
                r = root_ensure(ks, err);
        if (r >= 0)
                r = wrap_cmk(ks->root + KS_WRAP_KEY, k.id, 1, cmk, v.material);
        if (r >= 0)
                r = key_write(ks, &k, err);
        ks_unlock(ks);
        if (r < 0)
                return r;
        log_debug("keystore: created key %s %s", k.id, k.alias);
        if (ret)
                key_info(&k, ret);
        return 0;
}

int kc_keystore_list(struct kc_keystore *ks, struct kc_key_info **ret, size_t *ret_n, struct kc_err *err) {
        _cleanup_free_ struct kc_key_info *list = NULL;
        int r = ks_prepare(ks, err);

        if (r < 0)
                return r;
        /* A listing that silently skipped a damaged key would hide it: fail instead. */
        for (size_t i = 0; i < ks->n_entries; i++)
                if (!ks->entries[i].key)
                        return kc_err_set(err, ks->entries[i].error.error, "%s", ks->entries[i].error.msg);
        list = calloc(ks->n_entries + 1, sizeof(*list));
        if (!list)
                return -ENOMEM;
        for (size_t i = 0; i < ks->n_entries; i++)
                key_info(ks->entries[i].key, &list[i]);
        *ret = TAKE_PTR(list);
        *ret_n = ks->n_entries;
        return 0;
}

int kc_keystore_describe(struct kc_keystore *ks, const char *key, struct kc_key_info *ret, struct kc_err *err) {
        struct ks_key *k;
        int r = ks_lookup(ks, key, &k, err);

        if (r < 0)
                return r;
        key_info(k, ret);
        return 0;
}

/*
 * The shape of every state change: lock, re-read and validate, find the key,
 * let change() edit a copy (it may refuse), write it back.
 */
static int ks_modify(struct kc_keystore *ks, const char *key,
                     int (*change)(struct ks_key *k, void *userdata, struct kc_err *err),
                     void *userdata, struct kc_err *err) {
        struct ks_key *found, copy;
        int r = ks_write_begin(ks, false, err);

        if (r < 0)
                return r;
        r = ks_find(ks, key, &found, err);
        if (r >= 0) {
                copy = *found;
                r = change(&copy, userdata, err);
        }
        if (r >= 0) {
                r = key_write(ks, &copy, err);
                if (copy.versions != found->versions)   /* rotate made a longer array */
                        free(copy.versions);
        }
        ks_unlock(ks);
        return r;
}

static int change_enabled(struct ks_key *k, void *userdata, struct kc_err *err) {
        if (k->state == KC_KEY_PENDING_DELETION)
                return kc_err_set(err, -EKEYEXPIRED, "key %s is pending deletion; cancel the deletion first", k->id);
        if (k->state == KC_KEY_DESTROYED)
                return state_refusal(k, err);
        k->state = *(bool *) userdata ? KC_KEY_ENABLED : KC_KEY_DISABLED;
        return 0;
}

int kc_keystore_set_enabled(struct kc_keystore *ks, const char *key, bool enabled, struct kc_err *err) {
        return ks_modify(ks, key, change_enabled, &enabled, err);
}

struct rotate_args {
        const struct kc_keystore *ks;
        uint32_t version;
};

static int change_rotate(struct ks_key *k, void *userdata, struct kc_err *err) {
        struct rotate_args *a = userdata;
        _cleanup_secret_ uint8_t *cmk = NULL;
        struct ks_version *v;
        int r = state_refusal(k, err);

        if (r < 0)
                return r;
        cmk = kc_secret_alloc(KS_CMK_SIZE);
        v = calloc(k->n_versions + 1, sizeof(*v));
        if (!cmk || !v) {
                free(v);
                return -ENOMEM;
        }
        memcpy(v, k->versions, k->n_versions * sizeof(*v));
        v[k->n_versions] = (struct ks_version) { .version = (uint32_t) k->n_versions + 1, .created = ks_now() };
        if (RAND_priv_bytes(cmk, KS_CMK_SIZE) != 1 ||
            wrap_cmk(a->ks->root + KS_WRAP_KEY, k->id, v[k->n_versions].version, cmk, v[k->n_versions].material) < 0) {
                free(v);
                return -EIO;
        }
        k->versions = v;
        k->n_versions++;
        k->current_version = a->version = (uint32_t) k->n_versions;
        return 0;
}

int kc_keystore_rotate(struct kc_keystore *ks, const char *key, uint32_t *ret_version, struct kc_err *err) {
        struct rotate_args a = { .ks = ks };
        int r = ks_modify(ks, key, change_rotate, &a, err);

        if (r < 0)
                return r;
        if (ret_version)
                *ret_version = a.version;
        return 0;
}

static int change_schedule(struct ks_key *k, void *userdata, struct kc_err *err) {
        int64_t *date = userdata;

        if (k->state == KC_KEY_PENDING_DELETION)
                return kc_err_set(err, -EKEYEXPIRED, "key %s is already pending deletion", k->id);
        if (k->state == KC_KEY_DESTROYED)
                return state_refusal(k, err);
        k->state = KC_KEY_PENDING_DELETION;
        k->deletion_date = *date;
        return 0;
}

int kc_keystore_schedule_deletion(struct kc_keystore *ks, const char *key, unsigned days,
                                  time_t *ret_date, struct kc_err *err) {
        int64_t date;
        int r;

        if (days < KC_KEYSTORE_DELETION_DAYS_MIN || days > KC_KEYSTORE_DELETION_DAYS_MAX)
                return kc_err_set(err, -EINVAL, "deletion window must be %d..%d days, not %u",
                                  KC_KEYSTORE_DELETION_DAYS_MIN, KC_KEYSTORE_DELETION_DAYS_MAX, days);
        date = ks_now() + (int64_t) days * 86400;
        r = ks_modify(ks, key, change_schedule, &date, err);
        if (r < 0)
                return r;
        if (ret_date)
                *ret_date = (time_t) date;
        return 0;
}

static int change_cancel(struct ks_key *k, void *userdata, struct kc_err *err) {
        if (k->state != KC_KEY_PENDING_DELETION)
                return k->state == KC_KEY_DESTROYED ? state_refusal(k, err)
                        : kc_err_set(err, -EINVAL, "key %s is not pending deletion", k->id);
        /* Like AWS: a key whose deletion is cancelled comes back disabled. */
        k->state = KC_KEY_DISABLED;
        k->deletion_date = 0;
        return 0;
}

int kc_keystore_cancel_deletion(struct kc_keystore *ks, const char *key, struct kc_err *err) {
        return ks_modify(ks, key, change_cancel, NULL, err);
}

int kc_keystore_resolve(struct kc_keystore *ks, const char *key, char ret_key_id[static KC_KEYSTORE_KEY_ID_LEN + 1],
                        struct kc_err *err) {
        struct ks_key *k;
        int r = ks_lookup(ks, key, &k, err);

        if (r < 0)
                return r;
        memcpy(ret_key_id, k->id, KC_KEYSTORE_KEY_ID_LEN + 1);
        return 0;
}

/*
 * Read-only: no lock file (opening it may create it), no directory made, no
 * key due for destruction destroyed.  Each key file is replaced whole by a
 * rename, so every file read is one version of itself, validated as a load
 * validates it; and an alias never moves from one key to another, so the
 * files need not be read as one generation.
 */
int kc_keystore_peek_id(const char *dir, const char *root_key_file, const char *key,
                        char ret_key_id[static KC_KEYSTORE_KEY_ID_LEN + 1], struct kc_err *err) {
        _cleanup_keystore_ struct kc_keystore *ks = NULL;
        struct ks_key *k;
        struct stat st;
        int r;

        if (key && kc_keystore_key_id_valid(key)) {
                memcpy(ret_key_id, key, KC_KEYSTORE_KEY_ID_LEN + 1);
                return 0;
        }
        r = ks_new(dir, root_key_file, &ks, err);
        if (r < 0)
                return r;
        if (lstat(ks->dir, &st) < 0)
                return kc_err_set(err, negative_errno(), "cannot read keystore %s: %m", ks->dir);
        r = S_ISDIR(st.st_mode) ? check_private(ks->dir, &st, err) :
            kc_err_set(err, -ENOTDIR, "%s is not a directory", ks->dir);
        if (r >= 0)
                r = ks_reload_locked(ks, err);
        if (r >= 0)
                r = ks_find(ks, key, &k, err);
        if (r < 0)
                return r;
        memcpy(ret_key_id, k->id, KC_KEYSTORE_KEY_ID_LEN + 1);
        return 0;
}

int kc_keystore_count_keys(const char *dir, size_t *ret, struct kc_err *err) {
        _cleanup_free_ char *keys_dir = NULL;
        _cleanup_(closedirp) DIR *d = NULL;
        char id[KC_KEYSTORE_KEY_ID_LEN + 1];
        struct dirent *de;
        size_t n = 0;

        if (!dir || !dir[0])
                return kc_err_set(err, -EINVAL, "no keystore directory given");
        if (asprintf(&keys_dir, "%s/keys", dir) < 0)
                return -ENOMEM;
        d = opendir(keys_dir);
        if (!d) {
                if (errno != ENOENT)
                        return kc_err_set(err, negative_errno(), "cannot read %s: %m", keys_dir);
                *ret = 0;
                return 0;
        }
        for (;;) {
                errno = 0;
                de = readdir(d);
                if (!de)
                        break;
                if (key_file_name(de->d_name, id))
                        n++;
        }
        if (errno != 0)
                return kc_err_set(err, negative_errno(), "cannot read %s: %m", keys_dir);
        *ret = n;
        return 0;
}

int kc_keystore_use_key(struct kc_keystore *ks, const char *key, uint32_t version,
                        const uint8_t **ret_cmk, char ret_key_id[static KC_KEYSTORE_KEY_ID_LEN + 1],
                        uint32_t *ret_version, struct kc_err *err) {
        struct ks_key *k;
        int r = ks_lookup(ks, key, &k, err);

        if (r >= 0)
                r = state_refusal(k, err);
        if (r < 0)
                return r;
        if (version == 0)
                version = k->current_version;
        if (version > k->n_versions)
                return kc_err_set(err, -EBADMSG, "key %s has no version %u", k->id, version);
        *ret_cmk = k->cmk + (size_t) (version - 1) * KS_CMK_SIZE;
        memcpy(ret_key_id, k->id, KC_KEYSTORE_KEY_ID_LEN + 1);
        *ret_version = version;
        return 0;
}
