/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * OpenSSL for a kmscrypt program: call first in main(), before anything
 * (ours, libcryptsetup's or libcurl's) uses OpenSSL.
 *
 * It keeps OpenSSL 3 from building its legacy cipher table: every cipher
 * of OpenSSL 1.1 with all its aliases, built on the first fetch and then
 * copied into the name map of every library context, ours and the one
 * libcryptsetup makes for itself.  Nothing of ours, libcryptsetup's or
 * libssl's looks a cipher up there (EVP_get_cipherbyname() and kin): all
 * fetch ciphers by a provider's own names (EVP_CIPHER_fetch(), or
 * EVP_aes_256_gcm() and the like, which fetch by name).  The digest table
 * stays: X.509 verification finds a certificate's signature digest there
 * (without it, every certificate's digest is "too weak").
 *
 * What it saves is start-up: about a third of OpenSSL's first use, which
 * under emulation is a large part of one `kmscrypt attach`
 * (docs/attach.md).
 *
 * It also leaves OpenSSL's tear-down at exit to the kernel, as kmscrypt's
 * _exit() did already: initialised here, OpenSSL would otherwise tear its
 * state down at every exit, even of a command that never used it (a
 * third more CPU for `kmscrypt --version`).  OpenSSL holds no secret of
 * ours: keys live in kc_secret memory, and cipher contexts are freed,
 * and so cleansed, where they are used.
 *
 * Should OpenSSL fail to initialise here (no memory), it fails again at
 * its first use, and says so there.
 */
void kc_crypto_init(void);

/*
 * Have OpenSSL build, on a thread of its own, what a kmscrypt attach
 * fetches: SHA-256 (the audit chain), HMAC (the keystore, the key check),
 * HKDF (the keystore) and AES-256-GCM (the wrapped key).  Its first fetch of
 * each kind builds every algorithm of that kind its provider offers, on
 * the attach's path; begun here, that runs on another CPU while the
 * command reads its configuration and the header, as the header load does
 * (docs/attach.md).  Best effort: without a thread, the first fetches do
 * the work, as before.  For a command that will use OpenSSL: the thread
 * takes a CPU and OpenSSL's locks, and outlives nothing (exit ends it):
 * for a program that ends with _exit(), as kmscrypt does, not with exit(),
 * whose destructors (libcryptsetup's frees its OpenSSL context) could run
 * while the thread still works.
 */
void kc_crypto_prefetch(void);

/* The fetches of kc_crypto_prefetch(), on the calling thread: for a thread of the caller's own. */
void kc_crypto_fetch(void);
