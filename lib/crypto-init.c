/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <pthread.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "lib/crypto-init.h"
#include "lib/thread.h"

void kc_crypto_init(void) {
        /* NO_ADD_ALL marks the table as added: a later request for it (libssl makes one) does nothing. */
        (void) OPENSSL_init_crypto(OPENSSL_INIT_NO_ADD_ALL_CIPHERS | OPENSSL_INIT_NO_ATEXIT, NULL);
}

void kc_crypto_fetch(void) {
        EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
        EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
        EVP_CIPHER *cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);

        /* OpenSSL's store keeps what it built; these references are only ours. */
        EVP_MD_free(md);
        EVP_MAC_free(mac);
        EVP_KDF_free(kdf);
        EVP_CIPHER_free(cipher);
}

static void *prefetch(void *arg) {
        kc_crypto_fetch();
        return arg;
}

void kc_crypto_prefetch(void) {
        (void) kc_thread_start(NULL, true, prefetch, NULL);
}
