/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Encryption context: a map of UTF-8 string keys to UTF-8 string values
 * that a wrapped key is bound to (as AES-GCM additional data) and that every
 * audit record names.  The one canonical byte form is defined here and in
 * docs/encryption-context.md, with test vectors in tests/unit/test-context.c:
 *
 *     "KCX1" || u32be(n) || n * ( u32be(len(key)) || key || u32be(len(value)) || value )
 *
 * pairs sorted by key bytes (memcmp order), no duplicate keys.
 *
 * Limits (refused with -EINVAL / -E2BIG and a message in err):
 *   keys 1..KC_CONTEXT_KEY_MAX bytes, values 0..KC_CONTEXT_VALUE_MAX bytes,
 *   at most KC_CONTEXT_PAIRS_MAX pairs, canonical form at most
 *   KC_CONTEXT_BYTES_MAX bytes; valid UTF-8 (no overlongs, no surrogates),
 *   no control characters (U+0000..U+001F, U+007F..U+009F) in keys or values.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "lib/error.h"

#define KC_CONTEXT_KEY_MAX    256
#define KC_CONTEXT_VALUE_MAX  1024
#define KC_CONTEXT_PAIRS_MAX  32
#define KC_CONTEXT_BYTES_MAX  8192

struct kc_context;

int kc_context_new(struct kc_context **ret);
void kc_context_free(struct kc_context *c);
DEFINE_CLEANUP_FUNC(struct kc_context *, kc_context_free)
#define _cleanup_context_ _cleanup_(kc_context_freep)

/* Add a pair, validated; -EEXIST for a duplicate key. */
int kc_context_add(struct kc_context *c, const char *key, const char *value, struct kc_err *err);
/* Add or replace (used by rebind). */
int kc_context_set(struct kc_context *c, const char *key, const char *value, struct kc_err *err);

/*
 * "db-id=db-1,volume-id=vol-2".  A backslash escapes the next character, so
 * values may contain ',' '=' or '\'.  Keys may contain ':' (aws:rds:db-id).
 */
int kc_context_parse_kv(const char *text, struct kc_context **ret, struct kc_err *err);
/* A JSON object of string values; duplicate member names are refused (json-c would keep the last). */
int kc_context_parse_json(const char *text, struct kc_context **ret, struct kc_err *err);
/* From an already parsed json object (tokens). Duplicates cannot be detected at this level. */
int kc_context_from_json(struct json_object *obj, struct kc_context **ret, struct kc_err *err);

/* New JSON object with the pairs in canonical order. */
int kc_context_to_json(const struct kc_context *c, struct json_object **ret);
/* Compact JSON text, e.g. {"db-id":"db-1","volume-id":"vol-2"}. Caller frees. */
int kc_context_to_string(const struct kc_context *c, char **ret);

/* The canonical byte form above. Caller frees. */
int kc_context_canonical(const struct kc_context *c, uint8_t **ret, size_t *ret_len);

size_t kc_context_count(const struct kc_context *c);
const char *kc_context_key(const struct kc_context *c, size_t i);
const char *kc_context_value(const struct kc_context *c, size_t i);
/* Value for key, NULL if absent. */
const char *kc_context_get(const struct kc_context *c, const char *key);
bool kc_context_equal(const struct kc_context *a, const struct kc_context *b);
int kc_context_copy(const struct kc_context *c, struct kc_context **ret);
