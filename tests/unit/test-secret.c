/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>
#include <signal.h>
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
        /* /proc/self/smaps is the proof: the mapping holding the secret must be Locked and marked dd (do not dump). */
        _cleanup_secret_ unsigned char *p = kc_secret_alloc(100);
        _cleanup_secret_ unsigned char *q = kc_secret_alloc(100); /* not the first slot of its chunk */
        bool in_map = false, locked = false, dontdump = false;
        unsigned long lo, hi, addr = (unsigned long) q;
        char line[512];
        FILE *f = fopen("/proc/self/smaps", "re");

        ck_assert_ptr_nonnull(p);
        ck_assert_ptr_nonnull(f);
        while (fgets(line, sizeof(line), f)) {
                char c;
                /* A mapping header line is "lo-hi perms ..."; the other lines are "Name: value". */
                if (sscanf(line, "%lx-%lx %c", &lo, &hi, &c) == 3) {
                        in_map = addr >= lo && addr < hi;
                        continue;
                }
                if (!in_map)
                        continue;
                if (strncmp(line, "Locked:", 7) == 0 && strtoul(line + 7, NULL, 10) > 0)
                        locked = true;
                if (strncmp(line, "VmFlags:", 8) == 0 && strstr(line, " dd"))
                        dontdump = true;
        }
        fclose(f);
        ck_assert_msg(dontdump, "secret mapping is not excluded from core dumps");
#if defined(__SANITIZE_ADDRESS__)
        locked = true; /* ASan intercepts mlock() as a no-op: nothing to observe */
#endif
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

/* Slots are reused after a wipe; neighbours never see each other's bytes. */
START_TEST(test_pool_reuse_and_isolation) {
        unsigned char *a = kc_secret_alloc(40), *b = kc_secret_alloc(40), *c;

        ck_assert_ptr_nonnull(a);
        ck_assert_ptr_nonnull(b);
        ck_assert_ptr_ne(a, b);
        memset(a, 0xAA, 40);
        memset(b, 0xBB, 40);
        kc_secret_free(a);
        c = kc_secret_alloc(33);
        ck_assert_uint_eq(kc_secret_size(c), 33);
        for (size_t i = 0; i < 64; i++) /* the whole slot came back wiped */
                ck_assert_uint_eq(c[i], 0);
        for (size_t i = 0; i < 40; i++)
                ck_assert_uint_eq(b[i], 0xBB);
        kc_secret_free(b);
        kc_secret_free(c);
}
END_TEST

/* More live secrets than one chunk holds, in every size class and beyond. */
START_TEST(test_many_sizes) {
        static const size_t sizes[] = { 1, 31, 32, 33, 64, 100, 512, 1024, 4096, 4097, 20000 };
        void *p[3000];
        size_t n = 0;

        for (size_t round = 0; round < 270; round++)
                for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
                        p[n] = kc_secret_alloc(sizes[i]);
                        ck_assert_ptr_nonnull(p[n]);
                        memset(p[n], (int) i + 1, sizes[i]);
                        n++;
                }
        for (size_t k = 0; k < n; k++) {
                size_t want = sizes[k % ARRAY_SIZE(sizes)];
                ck_assert_uint_eq(kc_secret_size(p[k]), want);
                ck_assert_uint_eq(((unsigned char *) p[k])[want - 1], (k % ARRAY_SIZE(sizes)) + 1);
        }
        for (size_t k = 0; k < n; k++)
                kc_secret_free(p[k]);
}
END_TEST

/* A double free or a pointer into the middle of a secret stops the process instead of corrupting it. */
START_TEST(test_double_free_aborts) {
        unsigned char *p = kc_secret_alloc(16);
        kc_secret_free(p);
        kc_secret_free(p);
}
END_TEST

START_TEST(test_interior_pointer_aborts) {
        unsigned char *p = kc_secret_alloc(16);
        kc_secret_free(p + 1);
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
        tcase_add_test(tc, test_pool_reuse_and_isolation);
        tcase_add_test(tc, test_many_sizes);
        tcase_add_test_raise_signal(tc, test_double_free_aborts, SIGABRT);
        tcase_add_test_raise_signal(tc, test_interior_pointer_aborts, SIGABRT);
        suite_add_tcase(s, tc);
        return s;
}
