/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <openssl/crypto.h>

#include "lib/crypto-init.h"

void kc_crypto_init(void) {
        /* NO_ADD_ALL marks the table as added: a later request for it (libssl makes one) does nothing. */
        (void) OPENSSL_init_crypto(OPENSSL_INIT_NO_ADD_ALL_CIPHERS | OPENSSL_INIT_NO_ATEXIT, NULL);
}
