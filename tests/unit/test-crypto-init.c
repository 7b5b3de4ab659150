/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/provider.h>

#include "lib/crypto-init.h"
#include "tests/unit/check-main.h"

/*
 * lib/crypto-init.h: after kc_crypto_init(), OpenSSL has no legacy cipher
 * table, and every way kmscrypt, libcryptsetup and libssl find an
 * algorithm still works.  One test, in this order: the table, once built
 * in a process, stays.
 */

/* A round of AES-256-GCM through a legacy cipher object, as keystore.c does: it fetches by name. */
static void gcm_through_legacy_object(void) {
        static const unsigned char key[32], iv[12], in[16];
        unsigned char out[sizeof(in)], tag[16];
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        int n = 0;

        ck_assert_ptr_nonnull(c);
        ck_assert_int_eq(EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv), 1);
        ck_assert_int_eq(EVP_EncryptUpdate(c, out, &n, in, sizeof(in)), 1);
        ck_assert_int_eq(n, (int) sizeof(in));
        ck_assert_int_eq(EVP_EncryptFinal_ex(c, out + n, &n), 1);
        ck_assert_int_eq(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, sizeof(tag), tag), 1);
        EVP_CIPHER_CTX_free(c);
}

/* What libcryptsetup does: a library context of its own, its providers, fetches by name. */
static void own_context_fetches(void) {
        OSSL_LIB_CTX *x = OSSL_LIB_CTX_new();
        OSSL_PROVIDER *p;
        EVP_CIPHER *c;
        EVP_MD *md;

        ck_assert_ptr_nonnull(x);
        p = OSSL_PROVIDER_load(x, "default");
        ck_assert_ptr_nonnull(p);
        md = EVP_MD_fetch(x, "sha256", NULL);
        c = EVP_CIPHER_fetch(x, "aes-256-xts", NULL);
        ck_assert_ptr_nonnull(md);
        ck_assert_ptr_nonnull(c);
        EVP_MD_free(md);
        EVP_CIPHER_free(c);
        OSSL_PROVIDER_unload(p);
        OSSL_LIB_CTX_free(x);
}

START_TEST(test_no_cipher_table_yet_everything_fetches) {
        EVP_CIPHER *c;

        kc_crypto_init();
        kc_crypto_init();       /* harmless twice */

        /* The table is not built: a lookup in it finds nothing... */
        ck_assert_ptr_null(EVP_get_cipherbyname("aes-256-gcm"));
        ck_assert_ptr_null(EVP_get_cipherbyname("AES-256-XTS"));
        /* ...while a fetch by the provider's names (blob.c) finds the cipher. */
        c = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
        ck_assert_ptr_nonnull(c);
        EVP_CIPHER_free(c);
        gcm_through_legacy_object();
        own_context_fetches();
        /* Still not built by any of that. */
        ck_assert_ptr_null(EVP_get_cipherbyname("aes-256-gcm"));
        /* The digest table stays: X.509 verification looks a signature's digest up there. */
        ck_assert_ptr_nonnull(EVP_get_digestbyname("sha256"));
        ck_assert_ptr_nonnull(EVP_get_digestbynid(NID_sha384));
}
END_TEST

/*
 * The prefetch thread builds what this thread fetches at the same time:
 * OpenSSL's store takes both (one of them builds for nothing), and what
 * this thread gets works.  Several rounds, each in a fresh process: one
 * where the two threads race, as a command that needs a key at once would.
 */
START_TEST(test_prefetch_beside_fetches) {
        static const unsigned char key[32] = { 1 };
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int mac_len = 0;
        EVP_KDF *kdf;
        EVP_MAC *hmac;

        kc_crypto_init();
        kc_crypto_prefetch();
        hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
        ck_assert_ptr_nonnull(hmac);
        ck_assert_ptr_nonnull(kdf);
        gcm_through_legacy_object();
        ck_assert_ptr_nonnull(HMAC(EVP_sha256(), key, sizeof(key), key, sizeof(key), mac, &mac_len));
        ck_assert_uint_eq(mac_len, 32);
        EVP_MAC_free(hmac);
        EVP_KDF_free(kdf);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("crypto-init");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_no_cipher_table_yet_everything_fetches);
        tcase_add_loop_test(tc, test_prefetch_beside_fetches, 0, 8);
        suite_add_tcase(s, tc);
        return s;
}
