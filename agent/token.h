/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The LUKS2 token of type "kmscrypt" (layout in docs/token.md):
 *
 *   {
 *     "type": "kmscrypt",
 *     "keyslots": [],                       // required by LUKS2; always empty: the key comes from the KMS
 *     "kmscrypt_version": 1,
 *     "provider": "local",
 *     "key_id": "5f0c6a1e-...",             // CMK id at the provider
 *     "key_version": 3,
 *     "context": {"db-id": "...", "volume-id": "..."},
 *     "wrapped_key": "<base64 blob>",
 *     "key_check": "<base64, 32 bytes>"    // optional
 *   }
 *
 * Parsing is strict: every field present with the right type, no unknown
 * format version, sizes bounded; unknown extra members are refused too, so
 * that a token never carries something kmscrypt would silently ignore.
 */

#include <stddef.h>
#include <stdint.h>

#include "agent/context.h"
#include "lib/error.h"

#define KC_TOKEN_TYPE "kmscrypt"
#define KC_TOKEN_VERSION 1
#define KC_TOKEN_JSON_MAX 8192        /* bytes of token JSON accepted */
#define KC_TOKEN_WRAPPED_MAX 2048     /* bytes of wrapped key (decoded) */
#define KC_TOKEN_KEYSLOTS_MAX 32      /* LUKS2 keyslot numbers are below this */
#define KC_TOKEN_KEY_CHECK_SIZE 32    /* HMAC-SHA256 */

/*
 * A data key replacement in progress (agent/reencrypt.h), optional member
 * "kmscrypt_reencrypt" of the token:
 *
 *   {"wrapped_passphrase": "<base64>",   // KMS Encrypt of the random passphrase of the two keyslots,
 *                                        // same CMK, context plus purpose=reencrypt
 *    "wrapped_key": "<base64>",          // the new data key (GenerateDataKey), same CMK and context
 *    "key_version": 4,                   // CMK version of wrapped_key
 *    "keyslot_old": 1, "keyslot_new": 2} // the temporary keyslots, removed at the end
 */
struct kc_token_reencrypt {
        uint8_t *wrapped_passphrase;
        size_t wrapped_passphrase_len;
        uint8_t *wrapped_key;
        size_t wrapped_key_len;
        uint32_t key_version;
        int keyslot_old;
        int keyslot_new;
};

struct kc_token {
        unsigned version;
        char provider[16];
        char key_id[256];
        uint32_t key_version;
        struct kc_context *context;
        uint8_t *wrapped_key;
        size_t wrapped_key_len;
        struct kc_token_reencrypt *reencrypt; /* NULL: no reencryption in progress */
        /*
         * Optional "key_check": proof, made by kmscrypt when it last saw
         * this key match the header's LUKS2 digest, that lets an attach
         * skip the digest's PBKDF2 (kc_luks_verify_key(), docs/token.md).
         */
        bool has_key_check;
        uint8_t key_check[KC_TOKEN_KEY_CHECK_SIZE];
};

void kc_token_clear(struct kc_token *t);
void kc_token_reencrypt_free(struct kc_token_reencrypt *re);

/* Parse token JSON text (untrusted: from a device header). */
int kc_token_parse(const char *json, struct kc_token *ret, struct kc_err *err);

/* Serialise to JSON text for crypt_token_json_set(). Caller frees. */
int kc_token_format(const struct kc_token *t, char **ret_json);

/* The key reference for the KMS layer, "<provider>:<key_id>". Caller frees. */
int kc_token_key_ref(const struct kc_token *t, char **ret_ref);
