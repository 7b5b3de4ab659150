/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Secret memory.  Every buffer that holds key material (data keys, master
 * keys, passphrases, anything derived from them) comes from here:
 *
 *  - its own anonymous mapping, so a wipe or munlock never touches a
 *    neighbour's memory;
 *  - mlock()ed, so it is never written to swap;
 *  - MADV_DONTDUMP, so it never appears in a core dump;
 *  - size-tracked and wiped with a wipe the compiler cannot elide on free.
 *
 * Allocation failures return NULL with errno set; mlock failure (e.g.
 * RLIMIT_MEMLOCK exhausted for an unprivileged test) is not fatal, but is
 * reported through kc_secret_locked(), and by kc_secret_warn_unlocked()
 * as one warning, which every program gives.
 */

#include <stdbool.h>
#include <stddef.h>

#include "lib/macro.h"

/* Zeroed, locked buffer of n bytes (n > 0). NULL and errno on failure. */
void *kc_secret_alloc(size_t n);

/* Wipe, unlock and release. Accepts NULL. */
void kc_secret_free(void *p);

/* Size given to kc_secret_alloc(); 0 for NULL. */
size_t kc_secret_size(const void *p);

/* Copy n bytes of src into a new secret buffer. */
void *kc_secret_memdup(const void *src, size_t n);

/* NUL-terminated copy of s in secret memory (kc_secret_size() includes the NUL). */
char *kc_secret_strdup(const char *s);

/* Whether every secret allocation so far could be mlock()ed. */
bool kc_secret_locked(void);

/* One warning (the first time only) if some secret memory is not locked. */
void kc_secret_warn_unlocked(void);

/*
 * Lock every page of this process, present and future, once it is touched
 * (mlockall MCL_ONFAULT: thread stacks and arenas are not faulted in whole).
 * Our secrets live in locked memory anyway; this keeps the copies other
 * libraries make out of swap too: GnuTLS's record buffers holding a KMS
 * response's Plaintext, OpenSSL's cipher contexts, libcryptsetup's volume
 * key.  Only where nothing can then fail for want of lockable memory: with
 * CAP_IPC_LOCK, or no RLIMIT_MEMLOCK; -EPERM otherwise, and nothing done.
 */
int kc_secret_lock_all(void);

/* Wipe memory in a way the compiler may not optimise away. */
void kc_wipe(void *p, size_t n);

/* Constant-time comparison of n bytes: true when equal. */
bool kc_memeq_const(const void *a, const void *b, size_t n);

static inline void kc_secret_freep(void *p) { kc_secret_free(*(void **)p); }
#define _cleanup_secret_ _cleanup_(kc_secret_freep)

/* Wipe a plain (non-secret) string buffer before freeing it, e.g. JSON text that carried a wrapped key. */
void kc_wipe_free_str(char *s);
static inline void kc_wipe_free_strp(char **p) { kc_wipe_free_str(*p); }
#define _cleanup_wipe_str_ _cleanup_(kc_wipe_free_strp)

/*
 * printf into a plain string of the exact size, measured first: for text
 * that carries a secret (a signature, a session token) and is freed with
 * kc_wipe_free_str().  Not asprintf(): glibc's grows its buffer as it
 * writes and frees the outgrown ones unwiped.  -ENOMEM on failure.
 */
int kc_format_exact(char **ret, const char *fmt, ...) _printf_(2, 3);
