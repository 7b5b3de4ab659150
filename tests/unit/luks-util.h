/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Helpers for tests that work on LUKS2 image files (test-luks). */

#include <stdbool.h>
#include <stdint.h>

#include "agent/luks.h"
#include "agent/token.h"

#define KC_TEST_IMAGE_SIZE (32ULL << 20)   /* sparse: costs nothing on disk */

/* PBKDF2 with the minimum 1000 iterations: keyslot operations take milliseconds. */
extern const struct kc_luks_pbkdf kc_test_fast_pbkdf;

/* dir/name as a sparse file of size bytes (0: empty). Caller frees the path. */
char *kc_test_image(const char *dir, const char *name, uint64_t size);
/* dir/name holding text. Caller frees the path. */
char *kc_test_write_file(const char *dir, const char *name, const char *text);
/* n random bytes in secret memory. */
void *kc_test_random_key(size_t n);

/* A valid token (60-byte blob, context db-id=db-1,volume-id=vol-2) with the given CMK version. */
void kc_test_token(struct kc_token *t, uint32_t key_version);
bool kc_test_token_equal(const struct kc_token *a, const struct kc_token *b);

/* Run a shell command built from fmt; the test fails unless it exits 0. Returns its stdout; caller frees. */
char *kc_test_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Images made by the stock tool: LUKS1, and LUKS2 without any token, both with passphrase "old passphrase"
 * (its file is dir/name.pass). */
char *kc_test_luks1(const char *dir, const char *name);
char *kc_test_luks2_plain(const char *dir, const char *name, const char *cipher_args);
/* The volume key as `cryptsetup luksDump --dump-volume-key` shows it (secret memory). */
void *kc_test_cryptsetup_volume_key(const char *img, const char *header, const char *passfile);
/* Store token JSON raw through libcryptsetup (json NULL: remove token id); the test fails if it refuses. */
void kc_test_token_set_raw(const char *img, const char *header, int id, const char *json);

bool kc_test_file_is_zero(const char *path);
/* FNV-1a over the whole file: "these bytes did not change". */
uint64_t kc_test_file_hash(const char *path);
