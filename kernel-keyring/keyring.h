/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * kernel-keyring: the only module that calls libkeyutils.
 *
 * Data keys reach dm-crypt as kernel "logon" keys: the kernel hands their
 * payload to dm-crypt, but no userspace read (keyctl read/print/pipe) ever
 * returns it.  dm-crypt finds the key with request_key() in the keyrings of
 * the thread that loads the table, so keys are added to the calling
 * thread's own thread keyring (@t): no other thread or process possesses
 * it, and it dies with the thread.  After the table load the key is
 * unlinked; dm-crypt keeps its own copy of the payload.
 *
 * Every function returns 0 (or a key serial >= 0 where stated) on success
 * and a negative errno on failure; output parameters (ret_*) are written
 * only on success.
 */

#include <stddef.h>
#include <stdint.h>

typedef int32_t kc_key_serial_t;

/* Keyring identifiers accepted where a keyring is expected (libkeyutils' KEY_SPEC_*). */
#define KC_KEYRING_THREAD  (-1)
#define KC_KEYRING_PROCESS (-2)
#define KC_KEYRING_SESSION (-3)
#define KC_KEYRING_USER    (-4)

/* Longest description accepted (the kernel's limit is 4095 bytes). */
#define KC_KEY_DESCRIPTION_MAX 4095
/* Longest logon payload accepted; dm-crypt keys are at most 1 KiB here. */
#define KC_KEY_PAYLOAD_MAX 1024

/*
 * Add a logon key `description` with payload key[0..key_len) to the calling
 * thread's keyring (created on demand).  The description must be of the
 * form "prefix:rest" (the logon type requires a prefix).  -EINVAL for an
 * empty or over-long key or a malformed description; -EEXIST is never
 * returned: an existing key of that description in @t is updated, which
 * is what the kernel does for add_key().  The caller keeps ownership of
 * key and wipes it.
 */
int kc_keyring_add_logon(const char *description, const void *key, size_t key_len,
                         kc_key_serial_t *ret_serial);

/* Same, into an explicit keyring (a serial or one of KC_KEYRING_*). */
int kc_keyring_add_logon_to(kc_key_serial_t keyring, const char *description,
                            const void *key, size_t key_len, kc_key_serial_t *ret_serial);

/* Find a logon key by description in the keyrings the caller possesses. -ENOKEY if none. */
int kc_keyring_find_logon(const char *description, kc_key_serial_t *ret_serial);

/* Unlink key from keyring; once its last link goes the kernel frees it. -ENOENT if not linked. */
int kc_keyring_unlink(kc_key_serial_t key, kc_key_serial_t keyring);

/* Unlink from the calling thread's keyring: the usual clean-up after a table load. */
int kc_keyring_unlink_thread(kc_key_serial_t key);

/* Revoke: the key stays visible as revoked until garbage-collected, and is unusable at once. */
int kc_keyring_revoke(kc_key_serial_t key);

/* Invalidate: the key is unusable at once and removed from every keyring it is linked into. */
int kc_keyring_invalidate(kc_key_serial_t key);

/*
 * Drop a key for good: invalidate (falls back to revoke + unlink on kernels
 * without KEYCTL_INVALIDATE).  Accepts serial <= 0 as a no-op so it can be
 * used on every error path.
 */
int kc_keyring_drop(kc_key_serial_t key);

/*
 * Marks: small records that are no secret, kept by the kernel for as long
 * as it runs, as "user" keys in the caller's user keyring (@u, per UID,
 * whatever session keyring the caller has: systemd's KeyringMode=private
 * included).  For state that must outlive a process but not a boot, and
 * must not depend on a file system having room: what the agent knows of
 * a mapping, which lives exactly as long.  description as for logon keys
 * ("prefix:rest", no blanks); payload a string of 1..KC_KEY_PAYLOAD_MAX-1
 * bytes.
 */
/* Set (or replace) the mark. */
int kc_keyring_mark_set(const char *description, const char *payload);
/* Its payload into buf (NUL-terminated, size bytes): -ENOKEY when there is none, -ENOBUFS when it does not fit. */
int kc_keyring_mark_get(const char *description, char *buf, size_t size);
/* Remove it: 0, also when there was none. */
int kc_keyring_mark_clear(const char *description);

/* Key description kmscrypt uses for a LUKS UUID: "kmscrypt:<uuid>". Caller frees. */
int kc_keyring_volume_description(const char *luks_uuid, char **ret_description);
