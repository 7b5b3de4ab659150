/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>

#include "lib/thread.h"

int kc_thread_start(pthread_t *ret, bool detached, void *(*fn)(void *), void *arg) {
        pthread_attr_t attr;
        pthread_t t;
        int r;

        r = pthread_attr_init(&attr);
        if (r != 0)
                return -r;
        r = pthread_attr_setstacksize(&attr, KC_THREAD_STACK_SIZE);
        if (r == 0 && detached)
                r = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (r == 0)
                r = pthread_create(&t, &attr, fn, arg);
        pthread_attr_destroy(&attr);
        if (r != 0)
                return -r;
        if (ret)
                *ret = t;
        return 0;
}
