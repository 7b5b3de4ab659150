/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Wrapped-key blob of the local provider (documented in docs/wrapped-blob.md,
 * known-answer vectors in tests/unit/test-blob.c):
 *
 *   off  len  field
 *   0    4    magic "KCW\x01"
 *   4    1    algorithm: 1 = AES-256-GCM
 *   5    1    key id length L (1..KC_BLOB_KEY_ID_MAX)
 *   6    L    CMK id (ASCII)
 *   6+L  4    CMK version, u32be (>= 1)
 *   10+L 12   nonce (random)
 *   22+L 4    plaintext length P, u32be (1..KC_BLOB_PLAINTEXT_MAX)
 *   26+L P    ciphertext
 *   ..   16   GCM tag
 *
 * AAD = bytes [0, 26+L) (the whole header) || canonical context, so the key
 * id, version and context are all authenticated.  Total length must be
 * exactly 26+L+P+16: trailing bytes are refused.
 */

#include <stddef.h>
#include <stdint.h>

#include "agent/context.h"
#include "lib/error.h"

#define KC_BLOB_KEY_ID_MAX 64
#define KC_BLOB_PLAINTEXT_MAX 1024
#define KC_BLOB_NONCE_SIZE 12
#define KC_BLOB_TAG_SIZE 16

struct kc_blob_header {
        char key_id[KC_BLOB_KEY_ID_MAX + 1];
        uint32_t key_version;
        size_t plaintext_len;
};

/* Parse and bounds-check the header only (no key needed): lets a provider find the CMK. */
int kc_blob_peek(const uint8_t *blob, size_t len, struct kc_blob_header *ret, struct kc_err *err);

/*
 * Seal plaintext under a 32-byte CMK version key.  nonce may be NULL (random)
 * or 12 fixed bytes (known-answer tests only).  Blob is plain memory (it is
 * not secret).  Caller frees.
 */
int kc_blob_seal(const uint8_t cmk[32], const char *key_id, uint32_t key_version,
                 const struct kc_context *ctx, const void *plaintext, size_t plaintext_len,
                 const uint8_t *nonce, uint8_t **ret_blob, size_t *ret_len);

/*
 * Open a blob with the CMK version key named by its header.  On success
 * *ret_plaintext is a kc_secret buffer (kc_secret_size() gives its length).
 * Any authentication failure (wrong key, context, tampering) is -EBADMSG.
 */
int kc_blob_open(const uint8_t cmk[32], const uint8_t *blob, size_t len,
                 const struct kc_context *ctx, void **ret_plaintext, struct kc_err *err);
