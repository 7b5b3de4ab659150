/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <keyutils.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "kernel-keyring/keyring.h"
#include "lib/log.h"
#include "lib/macro.h"

/* Prefix of every description kmscrypt gives a volume key. */
#define KC_VOLUME_DESCRIPTION_PREFIX "kmscrypt:"

/* libkeyutils' KEY_SPEC_* must be the values our header promises callers. */
_Static_assert(KC_KEYRING_THREAD == KEY_SPEC_THREAD_KEYRING, "KC_KEYRING_THREAD");
_Static_assert(KC_KEYRING_PROCESS == KEY_SPEC_PROCESS_KEYRING, "KC_KEYRING_PROCESS");
_Static_assert(KC_KEYRING_SESSION == KEY_SPEC_SESSION_KEYRING, "KC_KEYRING_SESSION");
_Static_assert(KC_KEYRING_USER == KEY_SPEC_USER_KEYRING, "KC_KEYRING_USER");

/* libkeyutils reports failure as -1 with errno: this is the one place that becomes a negative errno. */
static int keyutils_result(long r) {
        return r < 0 ? negative_errno() : (int) r;
}

/* Whether c may appear in a description: dm-crypt tables are split on whitespace, and control bytes garble /proc/keys. */
static bool description_char_ok(unsigned char c) {
        return c > ' ' && c != 0x7f;
}

/* Check the characters of a description or of a part of one; -EINVAL naming the first bad byte. */
static int check_chars(const char *s, size_t n, const char *what) {
        for (size_t i = 0; i < n; i++)
                if (!description_char_ok((unsigned char) s[i]))
                        return log_debug_errno(-EINVAL, "Refusing %s: byte 0x%02x at offset %zu is whitespace or a control character",
                                               what, (unsigned char) s[i], i);
        return 0;
}

/* A logon description is "prefix:rest" with both parts non-empty, printable, and at most KC_KEY_DESCRIPTION_MAX bytes. */
static int check_description(const char *description) {
        const char *colon;
        size_t n;

        if (!description)
                return log_debug_errno(-EINVAL, "Refusing key description: NULL");
        n = strnlen(description, KC_KEY_DESCRIPTION_MAX + 1);
        if (n > KC_KEY_DESCRIPTION_MAX)
                return log_debug_errno(-EINVAL, "Refusing key description: longer than %d bytes", KC_KEY_DESCRIPTION_MAX);
        colon = memchr(description, ':', n);
        if (!colon || colon == description)
                return log_debug_errno(-EINVAL, "Refusing key description \"%.64s\": logon keys need a \"prefix:\"", description);
        if ((size_t) (colon - description) + 1 == n)
                return log_debug_errno(-EINVAL, "Refusing key description \"%.64s\": nothing after the prefix", description);
        return check_chars(description, n, "key description");
}

/* The payload must be non-empty and at most KC_KEY_PAYLOAD_MAX bytes; its bytes are never looked at. */
static int check_payload(const void *key, size_t key_len) {
        if (!key)
                return log_debug_errno(-EINVAL, "Refusing key payload: NULL");
        if (key_len == 0 || key_len > KC_KEY_PAYLOAD_MAX)
                return log_debug_errno(-EINVAL, "Refusing key payload of %zu bytes: must be 1..%d",
                                       key_len, KC_KEY_PAYLOAD_MAX);
        return 0;
}

/* Special keyring ids (<= 0) are not keys: revoking or invalidating one would hit a whole keyring. */
static int check_key(kc_key_serial_t key) {
        if (key <= 0)
                return log_debug_errno(-EINVAL, "Refusing key serial %d: not a key", key);
        return 0;
}

/* Add a logon key to the calling thread's keyring; the payload goes straight from the caller's buffer to the kernel. */
int kc_keyring_add_logon(const char *description, const void *key, size_t key_len,
                         kc_key_serial_t *ret_serial) {
        return kc_keyring_add_logon_to(KC_KEYRING_THREAD, description, key, key_len, ret_serial);
}

/* Add a logon key to `keyring`; ret_serial may be NULL when the caller only needs the key to exist. */
int kc_keyring_add_logon_to(kc_key_serial_t keyring, const char *description,
                            const void *key, size_t key_len, kc_key_serial_t *ret_serial) {
        int r;

        r = check_description(description);
        if (r < 0)
                return r;
        r = check_payload(key, key_len);
        if (r < 0)
                return r;

        r = keyutils_result(add_key("logon", description, key, key_len, keyring));
        if (r < 0)
                return log_debug_errno(r, "Failed to add logon key \"%s\" to keyring %d: %m", description, keyring);

        log_debug("Added logon key \"%s\" (%zu bytes) as %d to keyring %d", description, key_len, r, keyring);
        if (ret_serial)
                *ret_serial = r;
        return 0;
}

/* Find a logon key the caller possesses; request_key() without callout info searches @t, @p, @s and never upcalls. */
int kc_keyring_find_logon(const char *description, kc_key_serial_t *ret_serial) {
        int r;

        r = check_description(description);
        if (r < 0)
                return r;

        r = keyutils_result(request_key("logon", description, NULL, 0));
        if (r < 0)
                return log_debug_errno(r, "No logon key \"%s\" found: %m", description);

        if (ret_serial)
                *ret_serial = r;
        return 0;
}

/* Unlink key from keyring: -ENOENT when it was not linked there, -ENOKEY when key or keyring does not exist. */
int kc_keyring_unlink(kc_key_serial_t key, kc_key_serial_t keyring) {
        int r;

        r = check_key(key);
        if (r < 0)
                return r;
        r = keyutils_result(keyctl_unlink(key, keyring));
        if (r < 0)
                return log_debug_errno(r, "Failed to unlink key %d from keyring %d: %m", key, keyring);
        return 0;
}

/* Unlink from the calling thread's keyring (-ENOKEY when this thread has none). */
int kc_keyring_unlink_thread(kc_key_serial_t key) {
        return kc_keyring_unlink(key, KC_KEYRING_THREAD);
}

/* Apply a single-key keyctl operation (revoke, invalidate) to a real key, never to a special keyring id. */
static int key_op(kc_key_serial_t key, long (*op)(key_serial_t), const char *what) {
        int r;

        r = check_key(key);
        if (r < 0)
                return r;
        r = keyutils_result(op(key));
        if (r < 0)
                return log_debug_errno(r, "Failed to %s key %d: %m", what, key);
        return 0;
}

/* Revoke: every later use fails; revoking again gives -EKEYREVOKED. */
int kc_keyring_revoke(kc_key_serial_t key) {
        return key_op(key, keyctl_revoke, "revoke");
}

/* Invalidate: -EOPNOTSUPP (or -ENOSYS) on kernels before 3.5, which lack KEYCTL_INVALIDATE. */
int kc_keyring_invalidate(kc_key_serial_t key) {
        return key_op(key, keyctl_invalidate, "invalidate");
}

/* Revoke (unless already revoked) and unlink from @t, for kernels without invalidate; not linked there is fine. */
static int revoke_and_unlink(kc_key_serial_t key, bool revoked) {
        int r;

        if (!revoked) {
                r = kc_keyring_revoke(key);
                if (r < 0 && r != -EKEYREVOKED)
                        return r;
        }
        r = kc_keyring_unlink_thread(key);
        if (r < 0 && r != -ENOENT && r != -ENOKEY)
                return r;
        return 0;
}

/*
 * Drop a key for good, idempotently: serial <= 0 and a key that is already
 * gone (-ENOKEY) are successes; an already revoked key, which invalidate
 * refuses and which would stay linked until the revoked-key GC delay, is
 * unlinked from @t instead.
 */
int kc_keyring_drop(kc_key_serial_t key) {
        int r;

        if (key <= 0)
                return 0;

        r = kc_keyring_invalidate(key);
        switch (r) {
        case 0:
        case -ENOKEY:
                return 0;
        case -EOPNOTSUPP:
        case -ENOSYS:
                return revoke_and_unlink(key, false);
        case -EKEYREVOKED:
                return revoke_and_unlink(key, true);
        default:
                return r;
        }
}

/* ---- marks ---- */

/* The mark's serial in the user keyring: -ENOKEY when there is none. */
static int mark_find(const char *description) {
        int r = check_description(description);

        if (r < 0)
                return r;
        /* Searched in @u only: a mark is the user keyring's, never a key some other keyring holds. */
        return keyutils_result(keyctl_search(KEY_SPEC_USER_KEYRING, "user", description, 0));
}

int kc_keyring_mark_set(const char *description, const char *payload) {
        size_t n = payload ? strnlen(payload, KC_KEY_PAYLOAD_MAX) : 0;
        int key, r;

        r = check_description(description);
        if (r < 0)
                return r;
        if (n == 0 || n == KC_KEY_PAYLOAD_MAX)
                return log_debug_errno(-EINVAL, "Refusing mark payload: must be 1..%d bytes", KC_KEY_PAYLOAD_MAX - 1);
        /*
         * Made in this thread's keyring, which it possesses, and only then linked into @u (displacing
         * an older mark of that description): a process whose session keyring does not link @u (an
         * agent under KeyringMode=private) does not possess what it finds there, so the owner must be
         * allowed to search and read it, and only a possessor may set that.
         */
        key = keyutils_result(add_key("user", description, payload, n, KEY_SPEC_THREAD_KEYRING));
        if (key < 0)
                return log_debug_errno(key, "Failed to make mark \"%s\": %m", description);
        r = keyutils_result(keyctl_setperm(key, KEY_POS_ALL | KEY_USR_VIEW | KEY_USR_READ | KEY_USR_SEARCH |
                                                KEY_USR_WRITE | KEY_USR_SETATTR));
        if (r >= 0)
                r = keyutils_result(keyctl_link(key, KEY_SPEC_USER_KEYRING));
        (void) keyctl_unlink(key, KEY_SPEC_THREAD_KEYRING);
        if (r < 0) {
                (void) kc_keyring_drop(key);
                return log_debug_errno(r, "Failed to set mark \"%s\": %m", description);
        }
        return 0;
}

int kc_keyring_mark_get(const char *description, char *buf, size_t size) {
        long n;
        int key;

        if (!buf || size == 0)
                return -EINVAL;
        key = mark_find(description);
        if (key < 0)
                return key;
        n = keyctl_read(key, buf, size - 1);
        if (n < 0)
                return negative_errno();
        if ((size_t) n > size - 1)
                return -ENOBUFS;        /* keyctl_read() says how long the payload is, and copied part of it */
        buf[n] = '\0';
        return 0;
}

int kc_keyring_mark_clear(const char *description) {
        int key = mark_find(description);

        if (key == -ENOKEY)
                return 0;
        if (key < 0)
                return key;
        return kc_keyring_unlink(key, KEY_SPEC_USER_KEYRING);
}

/* Build "kmscrypt:<uuid>"; the uuid must be non-empty, without whitespace or control bytes, and fit the description limit. */
int kc_keyring_volume_description(const char *luks_uuid, char **ret_description) {
        const size_t max = KC_KEY_DESCRIPTION_MAX - strlen(KC_VOLUME_DESCRIPTION_PREFIX);
        char *description;
        size_t n;
        int r;

        if (!luks_uuid || !ret_description)
                return log_debug_errno(-EINVAL, "Refusing volume key description: NULL argument");
        n = strnlen(luks_uuid, max + 1);
        if (n == 0 || n > max)
                return log_debug_errno(-EINVAL, "Refusing LUKS UUID of length %zu: must be 1..%zu bytes", n, max);
        r = check_chars(luks_uuid, n, "LUKS UUID");
        if (r < 0)
                return r;

        if (asprintf(&description, KC_VOLUME_DESCRIPTION_PREFIX "%s", luks_uuid) < 0)
                return -ENOMEM;
        *ret_description = description;
        return 0;
}
