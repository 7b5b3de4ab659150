/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>
#include <sys/sysmacros.h>

#include "dmsetup-helpers/dmcrypt.h"
#include "tests/unit/check-main.h"

/* What the builder writes, the parser must read back field for field. */
START_TEST(test_round_trip) {
        static const struct kc_crypt_params cases[] = {
                { "aes-xts-plain64", 64, "kmscrypt:1b2c", "7:0", 0, 32768, 2048, 512, KC_CRYPT_DEFAULT_FLAGS },
                { "aes-xts-plain64", 64, "kmscrypt:1b2c", "253:4", 8, 32768, 8192, 4096,
                  KC_CRYPT_ALLOW_DISCARDS | KC_CRYPT_SAME_CPU_CRYPT },
                { "capi:xts(aes)-plain64", 32, "kmscrypt:x", "8:16", 0, 4096, 4096, 512, 0 },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                _cleanup_free_ char *params = NULL;
                struct kc_crypt_table t;

                ck_assert_int_eq(kc_crypt_table_build(&cases[i], &params), 0);
                ck_assert_int_eq(kc_crypt_table_parse(params, cases[i].size, &t), 0);
                ck_assert_str_eq(t.p.cipher, cases[i].cipher);
                ck_assert_uint_eq(t.p.key_size, cases[i].key_size);
                ck_assert_str_eq(t.p.key_description, cases[i].key_description);
                ck_assert_str_eq(t.p.device, cases[i].device);
                ck_assert_uint_eq(t.p.iv_offset, cases[i].iv_offset);
                ck_assert_uint_eq(t.p.offset, cases[i].offset);
                ck_assert_uint_eq(t.p.sector_size, cases[i].sector_size);
                ck_assert_uint_eq(t.p.flags, cases[i].flags);
                kc_crypt_table_clear(&t);
        }
}
END_TEST

/* Valid dm-crypt, but not a table kmscrypt makes: -EOPNOTSUPP, so status can skip it. */
START_TEST(test_foreign_tables) {
        static const char *const foreign[] = {
                "aes-xts-plain64 0000000000000000000000000000000000000000000000000000000000000000 0 7:0 4096",
                "aes-xts-plain64 :64:user:cryptsetup:x 0 7:0 4096",
                "aes-xts-plain64 :64:logon:kmscrypt:x 0 7:0 4096 1 high_priority",
                "aes-xts-plain64 :64:logon:kmscrypt:x 0 7:0 4096 1 integrity:28:aead",
                "aes-xts-plain64 - 0 7:0 4096",
        };
        for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
                struct kc_crypt_table t;
                ck_assert_int_eq(kc_crypt_table_parse(foreign[i], 8, &t), -EOPNOTSUPP);
        }
}
END_TEST

START_TEST(test_malformed_tables) {
        static const char *const bad[] = {
                "",
                "aes-xts-plain64",
                "aes-xts-plain64 :64:logon:kmscrypt:x 0 7:0",
                "aes-xts-plain64 :0:logon:kmscrypt:x 0 7:0 4096",
                "aes-xts-plain64 :99999:logon:kmscrypt:x 0 7:0 4096",
                "aes-xts-plain64 :64:logon: 0 7:0 4096",
                "aes-xts-plain64 :64:logon:kmscrypt:x -1 7:0 4096",
                "aes-xts-plain64 :64:logon:kmscrypt:x 0 7:0 40x6",
                "aes-xts-plain64 :64:logon:kmscrypt:x 0 7:0 4096 2 allow_discards",
                "aes-xts-plain64 :64:logon:kmscrypt:x 0 7:0 4096 1 sector_size:3000",
                "aes-xts-plain64 :64:logon:kmscrypt:x 0 7:0 4096 1 allow_discards extra",
                "aes-xts-plain64 :64:logon:kmscrypt:x 0 7:0 4096 x",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct kc_crypt_table t = { .buf = (char *) "untouched" };
                ck_assert_msg(kc_crypt_table_parse(bad[i], 8, &t) == -EINVAL, "accepted: %s", bad[i]);
                ck_assert_str_eq(t.buf, "untouched");
        }
}
END_TEST

/* The device of any dm-crypt table: wiped key, foreign key, with or without options. */
START_TEST(test_table_device) {
        static const struct {
                const char *params;
                unsigned maj, min;
        } good[] = {
                { "aes-xts-plain64 :64:logon:kmscrypt:x 0 7:0 4096", 7, 0 },
                { "aes-xts-plain64 0000000000000000 0 253:17 32768 1 allow_discards", 253, 17 },
                { "aes-cbc-essiv:sha256 00ff 8 259:4294967295 0", 259, 4294967295u },
        };
        static const char *const bad[] = {
                "", "aes-xts-plain64 :64:logon:x 0", "aes-xts-plain64 :64:logon:x 0 sda 0",
                "aes-xts-plain64 :64:logon:x 0 7: 0", "aes-xts-plain64 :64:logon:x 0 :0 0",
                "aes-xts-plain64 :64:logon:x 0 -7:0 0", "aes-xts-plain64 :64:logon:x 0 7:+1 0",
                "aes-xts-plain64 :64:logon:x 0 4294967296:1 0", "aes-xts-plain64 :64:logon:x 0 7:0x 0",
        };
        dev_t dev;

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                ck_assert_msg(kc_crypt_table_device(good[i].params, &dev) == 0, "refused: %s", good[i].params);
                ck_assert_uint_eq(major(dev), good[i].maj);
                ck_assert_uint_eq(minor(dev), good[i].min);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                ck_assert_msg(kc_crypt_table_device(bad[i], &dev) == -EINVAL, "accepted: %s", bad[i]);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("dmcrypt-parse");
        TCase *tc = tcase_create("parse");
        tcase_add_test(tc, test_round_trip);
        tcase_add_test(tc, test_foreign_tables);
        tcase_add_test(tc, test_malformed_tables);
        tcase_add_test(tc, test_table_device);
        suite_add_tcase(s, tc);
        return s;
}
