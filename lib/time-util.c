/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/time-util.h"

int kc_time_digits(const char *s, size_t n, int *ret) {
        int v = 0;

        if (n == 0 || n > 9)
                return -EINVAL;
        /* One byte at a time: a short string ends at its NUL, never read past. */
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (s[i] - '0');
        }
        *ret = v;
        return 0;
}

static bool is_leap_year(int y) {
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m) {
        static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

        return days[m - 1] + (m == 2 && is_leap_year(y));
}

/* Leap years among 1..y (the Gregorian rule, as if it had always held). */
static int64_t leap_years_through(int y) {
        return y / 4 - y / 100 + y / 400;
}

int kc_time_from_utc(const struct kc_utc *u, time_t *ret) {
        int64_t days, t;

        if (u->year < 1970 || u->year > 9999 || u->month < 1 || u->month > 12 || u->day < 1 ||
            u->day > days_in_month(u->year, u->month) || u->hour < 0 || u->hour > 23 || u->minute < 0 ||
            u->minute > 59 || u->second < 0 || u->second > 59)
                return -EINVAL;
        days = 365 * (int64_t) (u->year - 1970) + leap_years_through(u->year - 1) - leap_years_through(1969);
        for (int m = 1; m < u->month; m++)
                days += days_in_month(u->year, m);
        days += u->day - 1;
        t = ((days * 24 + u->hour) * 60 + u->minute) * 60 + u->second;
        if ((int64_t) (time_t) t != t)          /* a 32-bit time_t past 2038 */
                return -EINVAL;
        *ret = (time_t) t;
        return 0;
}

/* "YYYY-MM-DD" at s into u; the end of it, or NULL.  Each test stops at a NUL before the next. */
static const char *scan_date(const char *s, struct kc_utc *u) {
        if (kc_time_digits(s, 4, &u->year) < 0 || s[4] != '-' || kc_time_digits(s + 5, 2, &u->month) < 0 ||
            s[7] != '-' || kc_time_digits(s + 8, 2, &u->day) < 0)
                return NULL;
        return s + 10;
}

/* u, read up to end, as seconds; *ret_end = end. */
static int scanned(const struct kc_utc *u, const char *end, time_t *ret, const char **ret_end) {
        int r = kc_time_from_utc(u, ret);

        if (r < 0)
                return r;
        *ret_end = end;
        return 0;
}

int kc_time_parse_date(const char *s, time_t *ret, const char **ret_end) {
        struct kc_utc u = {};
        const char *end = s ? scan_date(s, &u) : NULL;

        return end ? scanned(&u, end, ret, ret_end) : -EINVAL;
}

int kc_time_parse_datetime(const char *s, time_t *ret, const char **ret_end) {
        struct kc_utc u = {};
        const char *p = s ? scan_date(s, &u) : NULL;

        if (!p || p[0] != 'T' || kc_time_digits(p + 1, 2, &u.hour) < 0 || p[3] != ':' ||
            kc_time_digits(p + 4, 2, &u.minute) < 0 || p[6] != ':' || kc_time_digits(p + 7, 2, &u.second) < 0)
                return -EINVAL;
        return scanned(&u, p + 9, ret, ret_end);
}
