/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The local provider's keystore (format and rules in docs/keystore.md):
 * a 0700 directory holding one MAC'd JSON file per CMK under keys/, the
 * CMK versions wrapped under a 32-byte root key.
 *
 * A struct kc_keystore caches every key file it has validated, with the
 * unwrapped version keys in kc_secret memory, for as long as it is open;
 * a change counter kept in <keystore>/.lock tells it when another process
 * wrote, so the cache is reloaded only then.
 *
 * Errors (see docs/keystore.md): -ENOKEY unknown key or alias,
 * -EKEYREVOKED disabled, -EKEYEXPIRED pending deletion, -EKEYREJECTED
 * destroyed, -EUCLEAN corrupted file, -EINVAL bad argument, each with a
 * one-line message in err.
 */

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "agent/kms.h"
#include "lib/error.h"

#define KC_KEYSTORE_DEFAULT_DIR KC_STATEDIR "/keystore"
#define KC_KEYSTORE_KEY_ID_LEN 36         /* random UUID, like AWS */
#define KC_KEYSTORE_ALIAS_NAME_MAX 250    /* after "alias/" */
#define KC_KEYSTORE_DESCRIPTION_MAX 255
#define KC_KEYSTORE_DELETION_DAYS_MIN 7
#define KC_KEYSTORE_DELETION_DAYS_MAX 30
#define KC_KEYSTORE_ROOT_KEY_CREDENTIAL "kmscrypt-root-key"

struct kc_keystore;

/*
 * Open (creating the 0700 directory, keys/ and .lock if missing) the keystore
 * at dir.  root_key_file NULL means <dir>/root.key; a systemd credential
 * $CREDENTIALS_DIRECTORY/kmscrypt-root-key takes precedence over it.
 * The root key itself is created by the first kc_keystore_create_key().
 * A keystore that holds keys but whose root key is missing fails every call
 * that reads them with -EAGAIN (unavailable), not -ENOENT (no such key).
 */
int kc_keystore_open(const char *dir, const char *root_key_file, struct kc_keystore **ret, struct kc_err *err);
void kc_keystore_close(struct kc_keystore *ks);
DEFINE_CLEANUP_FUNC(struct kc_keystore *, kc_keystore_close)
#define _cleanup_keystore_ _cleanup_(kc_keystore_closep)

/*
 * Have fn called around each destruction of a key whose deletion window has
 * passed (see kc_kms_destroy_fn).  When it refuses the intent, the key stays
 * pending deletion, unusable all the same, and the next use tries again.
 */
void kc_keystore_set_destroy_hook(struct kc_keystore *ks, kc_kms_destroy_fn fn, void *userdata);

/* Key management.  key is a key id or "alias/NAME". */
int kc_keystore_create_key(struct kc_keystore *ks, const char *alias, const char *description,
                           struct kc_key_info *ret, struct kc_err *err);
int kc_keystore_list(struct kc_keystore *ks, struct kc_key_info **ret, size_t *ret_n, struct kc_err *err);
int kc_keystore_describe(struct kc_keystore *ks, const char *key, struct kc_key_info *ret, struct kc_err *err);
int kc_keystore_set_enabled(struct kc_keystore *ks, const char *key, bool enabled, struct kc_err *err);
int kc_keystore_rotate(struct kc_keystore *ks, const char *key, uint32_t *ret_version, struct kc_err *err);
int kc_keystore_schedule_deletion(struct kc_keystore *ks, const char *key, unsigned days,
                                  time_t *ret_date, struct kc_err *err);
int kc_keystore_cancel_deletion(struct kc_keystore *ks, const char *key, struct kc_err *err);

/*
 * For a cryptographic use of key: check that it is Enabled and hand out the
 * 32-byte key of version (0: the current one).  *ret_cmk points into the
 * keystore's cache (kc_secret memory) and stays valid until the next call on
 * ks; ret_key_id gets the key's id.  Destroys the key first when its
 * deletion window has passed.
 */
int kc_keystore_use_key(struct kc_keystore *ks, const char *key, uint32_t version,
                        const uint8_t **ret_cmk, char ret_key_id[static KC_KEYSTORE_KEY_ID_LEN + 1],
                        uint32_t *ret_version, struct kc_err *err);

/* The id of key (an id or "alias/NAME"), whatever the key's state. */
int kc_keystore_resolve(struct kc_keystore *ks, const char *key, char ret_key_id[static KC_KEYSTORE_KEY_ID_LEN + 1],
                        struct kc_err *err);

/*
 * The same without opening the keystore for use, for readers that must change
 * nothing (audit list --key alias/NAME): the keystore at dir (root key as for
 * kc_keystore_open()) is only read, a key id given is returned as it is, and
 * an alias is looked up in the key files as they are now.  No lock file or
 * directory is made, no key whose deletion window has passed is destroyed.
 */
int kc_keystore_peek_id(const char *dir, const char *root_key_file, const char *key,
                        char ret_key_id[static KC_KEYSTORE_KEY_ID_LEN + 1], struct kc_err *err);

/*
 * How many key files the keystore at dir holds, whatever their state and
 * whether or not they are valid: each was written by a change that the KMS
 * layer wrote ahead to the audit trail, so a keystore that holds any is
 * evidence that the trail held records (docs/audit.md).  Only reads the
 * names in keys/: no root key, no lock, nothing created; no keystore (or no
 * keys/ in it) is 0 keys.
 */
int kc_keystore_count_keys(const char *dir, size_t *ret, struct kc_err *err);

/* Whether text is a key id of this keystore's form (lower-case UUID). */
bool kc_keystore_key_id_valid(const char *text);
/* Whether text is "alias/" followed by 1..250 of [A-Za-z0-9/_-]; err says why not. */
int kc_keystore_alias_check(const char *text, struct kc_err *err);

/*
 * Fuzzers and tests only: validate text[0..len) as the key file of key id
 * exactly as the keystore does when it loads keys/<id>.json (one JSON
 * object, members, MAC, unwrapping of every version) under root_key,
 * without a keystore directory.  name stands for the path in messages.
 * -EUCLEAN with a message for a bad file.
 */
int kc_keystore_parse_key_file(const uint8_t root_key[static 32], const char *id, const char *text, size_t len,
                               const char *name, struct kc_key_info *ret, struct kc_err *err);

/* Tests only: replace time(NULL) as the keystore's clock; NULL restores it. */
typedef time_t (*kc_keystore_clock_t)(void);
void kc_keystore_set_clock(kc_keystore_clock_t clock);
