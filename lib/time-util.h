/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>
#include <time.h>

/*
 * UTC times read strictly, at fixed positions: every digit spelled ("05",
 * never "5"), no blank, no sign, no locale, a year of four digits from
 * 1970 to 9999, a date that exists (2024-02-29 but not 2025-02-29) and a
 * time of day 00:00:00..23:59:59 (no leap second).  No timegm(): it moves
 * 2026-02-31 to March 3, and its -1 for an error is also 1969-12-31T23:59:59.
 * The parsers of dates (AWS responses, audit records, audit list --since)
 * build on this core and each decides what may follow the seconds.
 */

#define KC_TIME_MAX 253402300799LL      /* 9999-12-31T23:59:59Z */

struct kc_utc {
        int year;       /* 1970..9999 */
        int month;      /* 1..12 */
        int day;        /* 1..the month's last */
        int hour;
        int minute;
        int second;
};

/* The n (1..9) decimal digits at s as a number; -EINVAL at the first byte that is not one (a NUL too). */
int kc_time_digits(const char *s, size_t n, int *ret);

/* u as seconds since the epoch; -EINVAL for a time that does not exist or is out of range (see above). */
int kc_time_from_utc(const struct kc_utc *u, time_t *ret);

/* "YYYY-MM-DD" at the start of s as its midnight; *ret_end after it.  -EINVAL if there is none. */
int kc_time_parse_date(const char *s, time_t *ret, const char **ret_end);

/*
 * "YYYY-MM-DDTHH:MM:SS" at the start of s; *ret_end after the seconds
 * (whatever follows, a fraction, "Z", an offset, is the caller's to read).
 * -EINVAL if there is none.
 */
int kc_time_parse_datetime(const char *s, time_t *ret, const char **ret_end);
