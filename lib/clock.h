/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* Milliseconds on the monotonic clock: for deadlines and intervals, never for dates. */
static inline uint64_t kc_now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

/* A condition variable whose timed waits run on kc_now_ms()'s clock, for kc_cond_wait_until(). */
static inline void kc_cond_init_monotonic(pthread_cond_t *cond) {
        pthread_condattr_t ca;

        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(cond, &ca);
        pthread_condattr_destroy(&ca);
}

/* Lock held: wait on cond (made by kc_cond_init_monotonic()) until the kc_now_ms() time at_ms at most. */
static inline void kc_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *lock, uint64_t at_ms) {
        struct timespec ts = { .tv_sec = (time_t) (at_ms / 1000), .tv_nsec = (long) (at_ms % 1000) * 1000000 };

        (void) pthread_cond_timedwait(cond, lock, &ts);
}
