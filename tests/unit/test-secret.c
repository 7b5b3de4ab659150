/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>
#include <sys/mman.h>

#include "lib/secret.h"
#include "tests/unit/check-main.h"

START_TEST(test_alloc_zeroed_and_sized) {
        _cleanup_secret_ unsigned char *p = kc_secret_alloc(64);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq(kc_secret_size(p), 64);
        for (size_t i = 0; i < 64; i++)
                ck_assert_uint_eq(p[i], 0);
}
END_TEST

START_TEST(test_alloc_zero_refused) {
        errno = 0;
        ck_assert_ptr_null(kc_secret_alloc(0));
        ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(test_memdup_strdup) {
        _cleanup_secret_ char *s = kc_secret_strdup("passphrase");
        _cleanup_secret_ unsigned char *m = kc_secret_memdup("\x01\x02\x03", 3);
        ck_assert_str_eq(s, "passphrase");
        ck_assert_uint_eq(kc_secret_size(s), 11);
        ck_assert_mem_eq(m, "\x01\x02\x03", 3);
}
END_TEST

START_TEST(test_locked_and_not_dumped) {
        /* mincore() is no proof of mlock; /proc/self/smaps is: the mapping must be Locked and marked dd (do not dump). */
        _cleanup_secret_ unsigned char *p = kc_secret_alloc(4000);
        char line[256], want[64];
        bool in_map = false, locked = false, dontdump = false;
        FILE *f = fopen("/proc/self/smaps", "re");
        unsigned long start = (unsigned long) p & ~4095UL;

        ck_assert_ptr_nonnull(f);
        snprintf(want, sizeof(want), "%lx-", start);
        while (fgets(line, sizeof(line), f)) {
                if (strchr(line, '-') && strchr(line, ' ') > strchr(line, '-') && strncmp(line, "VmFlags", 7) != 0 &&
                    line[0] != ' ' && strspn(line, "0123456789abcdef") > 0 && strchr(line, '-') == line + strspn(line, "0123456789abcdef"))
                        in_map = strncmp(line, want, strlen(want)) == 0;
                if (!in_map)
                        continue;
                if (strncmp(line, "Locked:", 7) == 0 && strtoul(line + 7, NULL, 10) > 0)
                        locked = true;
                if (strncmp(line, "VmFlags:", 8) == 0 && strstr(line, " dd"))
                        dontdump = true;
        }
        fclose(f);
        ck_assert_msg(dontdump, "secret mapping is not excluded from core dumps");
        if (kc_secret_locked())
                ck_assert_msg(locked, "kc_secret_locked() claims mlock but smaps disagrees");
}
END_TEST

START_TEST(test_memeq_const) {
        ck_assert(kc_memeq_const("abcd", "abcd", 4));
        ck_assert(!kc_memeq_const("abcd", "abce", 4));
        ck_assert(kc_memeq_const("x", "y", 0));
}
END_TEST

START_TEST(test_free_null) {
        kc_secret_free(NULL);
        ck_assert_uint_eq(kc_secret_size(NULL), 0);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("secret");
        TCase *tc = tcase_create("core");
        tcase_add_test(tc, test_alloc_zeroed_and_sized);
        tcase_add_test(tc, test_alloc_zero_refused);
        tcase_add_test(tc, test_memdup_strdup);
        tcase_add_test(tc, test_locked_and_not_dumped);
        tcase_add_test(tc, test_memeq_const);
        tcase_add_test(tc, test_free_null);
        suite_add_tcase(s, tc);
        return s;
}
