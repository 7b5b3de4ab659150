/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdbool.h>

#include "lib/backoff.h"
#include "lib/macro.h"
#include "tests/unit/check-main.h"

/*
 * lib/backoff.h, which paces kmscryptd's retries of a volume (1 s doubling
 * to 30 s, the upper half drawn) and the aws provider's retries of a call
 * (100 ms doubling to 2 s, full jitter).
 */

START_TEST(test_ceiling_doubles_to_the_cap) {
        static const unsigned want[] = { 1000, 2000, 4000, 8000, 16000, 30000, 30000 };

        for (unsigned i = 0; i < ARRAY_SIZE(want); i++)
                ck_assert_uint_eq(kc_backoff_ceiling(i, 1000, 30000), want[i]);
        /* No overflow however many attempts, and a base above the cap is the cap. */
        ck_assert_uint_eq(kc_backoff_ceiling(40, 1000, 30000), 30000);
        ck_assert_uint_eq(kc_backoff_ceiling(1000000, 100, 2000), 2000);
        ck_assert_uint_eq(kc_backoff_ceiling(0, 5000, 2000), 2000);
        ck_assert_uint_eq(kc_backoff_ceiling(3, 3000000000u, 4000000000u), 4000000000u);
}
END_TEST

/* n draws: all in [lo, hi], the mean, and how many distinct values among the first 64. */
static void draws(unsigned ceiling, unsigned spread, unsigned lo, unsigned hi, double *ret_mean, unsigned *ret_distinct) {
        unsigned seen[64], distinct = 0;
        double sum = 0;
        const unsigned n = 4000;

        for (unsigned i = 0; i < n; i++) {
                unsigned d = kc_backoff_draw(ceiling, spread);
                bool known = false;

                ck_assert_msg(d >= lo && d <= hi, "draw %u outside [%u, %u]", d, lo, hi);
                sum += d;
                for (unsigned j = 0; j < distinct; j++)
                        known = known || seen[j] == d;
                if (!known && distinct < ARRAY_SIZE(seen))
                        seen[distinct++] = d;
        }
        *ret_mean = sum / n;
        *ret_distinct = distinct;
}

START_TEST(test_draw_upper_half) {
        double mean;
        unsigned distinct;

        draws(8000, 4000, 4000, 8000, &mean, &distinct);
        /* Uniform over [4000, 8000]: mean 6000 (4000 draws: standard error about 18). */
        ck_assert_msg(mean > 5850 && mean < 6150, "mean %.0f", mean);
        ck_assert_uint_ge(distinct, 60);
}
END_TEST

START_TEST(test_draw_full_jitter) {
        double mean;
        unsigned distinct;

        draws(2000, 2000, 0, 2000, &mean, &distinct);
        ck_assert_msg(mean > 925 && mean < 1075, "mean %.0f", mean);
        ck_assert_uint_ge(distinct, 60);
}
END_TEST

START_TEST(test_draw_edges) {
        double mean;
        unsigned distinct;

        ck_assert_uint_eq(kc_backoff_draw(1234, 0), 1234);
        ck_assert_uint_eq(kc_backoff_draw(0, 0), 0);
        ck_assert_uint_eq(kc_backoff_draw(0, 100), 0);
        /* A spread above the ceiling is the ceiling: never a wrapped-around huge delay. */
        draws(10, 1000000, 0, 10, &mean, &distinct);
        ck_assert_uint_eq(distinct, 11);
        draws(4000000000u, 4000000000u, 0, 4000000000u, &mean, &distinct);
        ck_assert_uint_ge(distinct, 60);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("backoff");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_ceiling_doubles_to_the_cap);
        tcase_add_test(tc, test_draw_upper_half);
        tcase_add_test(tc, test_draw_full_jitter);
        tcase_add_test(tc, test_draw_edges);
        suite_add_tcase(s, tc);
        return s;
}
