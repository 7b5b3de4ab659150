/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * LD_PRELOAD shim for the CLI tests: time() runs KC_TEST_TIME_OFFSET seconds
 * ahead, so that a key's deletion window can pass without waiting 7 days.
 * Only time() is replaced; the audit log's clock_gettime() stays real.
 */
#include <stdlib.h>
#include <time.h>

time_t time(time_t *t) {
        const char *offset = getenv("KC_TEST_TIME_OFFSET");
        struct timespec ts;
        time_t now;

        clock_gettime(CLOCK_REALTIME, &ts);
        now = ts.tv_sec + (offset ? (time_t) strtoll(offset, NULL, 10) : 0);
        if (t)
                *t = now;
        return now;
}
