/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "lib/macro.h"
#include "lib/time-util.h"
#include "tests/unit/check-main.h"

/*
 * lib/time-util.h, the one strict reader of UTC times under the AWS
 * response parsers and the audit log's record times and --since: fixed
 * positions, every digit, a four-digit year from 1970, a date that exists.
 */

START_TEST(test_datetime_good) {
        static const struct { const char *s; time_t t; } good[] = {
                { "1970-01-01T00:00:00", 0 },
                { "1970-01-01T00:00:01", 1 },
                { "2000-02-29T12:34:56", 951827696 },           /* a leap year, though a century */
                { "2024-02-29T00:00:00", 1709164800 },
                { "2026-11-27T23:45:48", 1795823148 },
                { "2038-01-19T03:14:08", 2147483648 },          /* past a 32-bit time_t's last second */
                { "2100-03-01T00:00:00", 4107542400 },
                { "9999-12-31T23:59:59", KC_TIME_MAX },
        };

        for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
                const char *end = NULL;
                time_t t = -1;

                if (sizeof(time_t) < 8 && good[i].t > INT32_MAX)
                        continue;
                ck_assert_msg(kc_time_parse_datetime(good[i].s, &t, &end) == 0, "\"%s\" refused", good[i].s);
                ck_assert_msg(t == good[i].t, "\"%s\": %lld", good[i].s, (long long) t);
                ck_assert_ptr_eq(end, good[i].s + 19);
        }
}
END_TEST

START_TEST(test_datetime_bad) {
        static const char *const bad[] = {
                "2023-02-29T00:00:00",          /* not a leap year */
                "2100-02-29T00:00:00",          /* a century, not a leap year */
                "2024-04-31T00:00:00",
                "2024-13-01T00:00:00",
                "2024-00-01T00:00:00",
                "2024-05-00T00:00:00",
                "2024-05-32T00:00:00",
                "2024-05-01T24:00:00",
                "2024-05-01T12:60:00",
                "2024-05-01T12:00:60",          /* no leap second */
                "1969-12-31T23:59:59",          /* timegm()'s -1, and before the epoch */
                "1900-01-01T00:00:00",
                "0000-01-01T00:00:00",
                "999-01-01T00:00:00",           /* a year of three digits */
                "0999-01-01T00:00:00",
                "10000-01-01T00:00:00",         /* of five */
                "+024-05-01T12:00:00",          /* a sign */
                "-2024-05-01T12:00:00",
                "2024-+5-01T12:00:00",
                " 2024-05-01T12:00:00",         /* blanks */
                "2024-05-01 12:00:00",
                "2024-05-01T 2:00:00",
                "2024-5-01T12:00:00",           /* digits not padded */
                "2024-05-01T12:00:0",
                "2024-05-01t12:00:00",
                "2024/05/01T12:00:00",
                "2024-05-01T12.00.00",
                "2024-05-01",
                "2024",
                "",
        };

        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                const char *end = "untouched";
                time_t t = 4242;

                ck_assert_msg(kc_time_parse_datetime(bad[i], &t, &end) == -EINVAL, "\"%s\" taken", bad[i]);
                ck_assert_int_eq(t, 4242);
                ck_assert_str_eq(end, "untouched");
        }
        ck_assert_int_eq(kc_time_parse_datetime(NULL, &(time_t) { 0 }, &(const char *) { NULL }), -EINVAL);
}
END_TEST

/* What follows the seconds is the caller's: the core only says where it starts. */
START_TEST(test_datetime_rest) {
        static const char *const rest[] = { "", "Z", ".123Z", "+00:00", " trailing", "0" };

        for (size_t i = 0; i < ARRAY_SIZE(rest); i++) {
                char s[64];
                const char *end;
                time_t t;

                snprintf(s, sizeof(s), "2024-05-01T12:00:00%s", rest[i]);
                ck_assert_int_eq(kc_time_parse_datetime(s, &t, &end), 0);
                ck_assert_int_eq(t, 1714564800);
                ck_assert_str_eq(end, rest[i]);
        }
}
END_TEST

START_TEST(test_date) {
        const char *end;
        time_t t;

        ck_assert_int_eq(kc_time_parse_date("2024-02-29", &t, &end), 0);
        ck_assert_int_eq(t, 1709164800);
        ck_assert_str_eq(end, "");
        ck_assert_int_eq(kc_time_parse_date("1970-01-01T23:59:59Z", &t, &end), 0);
        ck_assert_int_eq(t, 0);
        ck_assert_str_eq(end, "T23:59:59Z");

        static const char *const bad[] = {
                "2025-02-29", "2024-02-30", "2024-13-01", "2024-01-00", "2024-01-32", "1969-12-31",
                "999-01-01", "10000-01-01", "-2024-01-01", " 2024-01-01", "2024-1-01", "2024-01-1", "",
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                t = 4242;
                ck_assert_msg(kc_time_parse_date(bad[i], &t, &end) == -EINVAL, "\"%s\" taken", bad[i]);
                ck_assert_int_eq(t, 4242);
        }
}
END_TEST

/* Every day from 1970 to 2200, and steps to 9999, at a varying time of day: as gmtime() spells it. */
START_TEST(test_against_gmtime) {
        const time_t last = sizeof(time_t) < 8 ? INT32_MAX : (time_t) KC_TIME_MAX;
        unsigned n = 0;

        for (time_t t = 0; t >= 0 && t <= last; n++) {
                struct tm tm;
                char s[32];
                const char *end;
                time_t back = -1;

                ck_assert_ptr_nonnull(gmtime_r(&t, &tm));
                ck_assert_uint_eq(strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm), 19);
                ck_assert_msg(kc_time_parse_datetime(s, &back, &end) == 0, "\"%s\" refused", s);
                ck_assert_msg(back == t, "\"%s\": %lld, not %lld", s, (long long) back, (long long) t);
                t += t < 7258118400 ? 86400 + n % 3607 : 86400 * 397 + n % 86399;
        }
}
END_TEST

START_TEST(test_from_utc) {
        time_t t = 4242;

        ck_assert_int_eq(kc_time_from_utc(&(struct kc_utc) { 2024, 2, 29, 23, 59, 59 }, &t), 0);
        ck_assert_int_eq(t, 1709251199);
        t = 4242;
        ck_assert_int_eq(kc_time_from_utc(&(struct kc_utc) { 2024, 2, 29, -1, 0, 0 }, &t), -EINVAL);
        ck_assert_int_eq(kc_time_from_utc(&(struct kc_utc) { 2024, 2, 29, 0, -1, 0 }, &t), -EINVAL);
        ck_assert_int_eq(kc_time_from_utc(&(struct kc_utc) { 2024, 2, 29, 0, 0, -1 }, &t), -EINVAL);
        ck_assert_int_eq(kc_time_from_utc(&(struct kc_utc) { 2024, 0, 1, 0, 0, 0 }, &t), -EINVAL);
        ck_assert_int_eq(kc_time_from_utc(&(struct kc_utc) { 10000, 1, 1, 0, 0, 0 }, &t), -EINVAL);
        ck_assert_int_eq(t, 4242);
}
END_TEST

START_TEST(test_digits) {
        int v = -1;

        ck_assert_int_eq(kc_time_digits("0009", 4, &v), 0);
        ck_assert_int_eq(v, 9);
        ck_assert_int_eq(kc_time_digits("123456789x", 9, &v), 0);
        ck_assert_int_eq(v, 123456789);
        v = -1;
        ck_assert_int_eq(kc_time_digits("12", 3, &v), -EINVAL);         /* stops at the NUL */
        ck_assert_int_eq(kc_time_digits("1x3", 3, &v), -EINVAL);
        ck_assert_int_eq(kc_time_digits("+12", 3, &v), -EINVAL);
        ck_assert_int_eq(kc_time_digits("1234567890", 10, &v), -EINVAL); /* more than an int can hold */
        ck_assert_int_eq(kc_time_digits("1", 0, &v), -EINVAL);
        ck_assert_int_eq(v, -1);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("time-util");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_datetime_good);
        tcase_add_test(tc, test_datetime_bad);
        tcase_add_test(tc, test_datetime_rest);
        tcase_add_test(tc, test_date);
        tcase_add_test(tc, test_against_gmtime);
        tcase_add_test(tc, test_from_utc);
        tcase_add_test(tc, test_digits);
        suite_add_tcase(s, tc);
        return s;
}
