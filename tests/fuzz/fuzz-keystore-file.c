/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * A key file of the local keystore (keys/<id>.json) through
 * kc_keystore_parse_key_file(), the same validation the keystore applies
 * when it loads one.  Input: the key id the file is expected to hold, a
 * newline, the file.  The root key is fixed (32 bytes of 'k'), and the seeds
 * were made under it (tests/fuzz/README), so they pass the MAC and reach the
 * unwrapping of every version; a mutation past the MAC is refused by it.
 */

#include "agent/keystore.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *text = fuzz_strndup(data, size);
        struct kc_key_info info;
        struct kc_err err = {};
        uint8_t root[32];
        char *nl;
        int r;

        nl = strchr(text, '\n');
        if (!nl)
                return 0;
        *nl = '\0';
        memset(root, 'k', sizeof(root));
        /* The file by its length: a NUL byte in it is the parser's to refuse. */
        r = kc_keystore_parse_key_file(root, text, nl + 1, size - (size_t) (nl + 1 - text), "fuzz.json", &info, &err);
        fuzz_assert_refusal(r, &err);
        if (r < 0) {
                FUZZ_ASSERT(r == -EUCLEAN || r == -ENOMEM);
                return 0;
        }
        FUZZ_ASSERT(streq(info.key_id, text));
        FUZZ_ASSERT(info.versions >= 1 && info.current_version == info.versions);
        return 0;
}
