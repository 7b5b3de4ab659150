/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"

static kc_log_sink_t log_sink;
static void *log_userdata;
static int log_max_priority = LOG_INFO;
static const char *log_program = "kmscrypt";

void kc_log_set_sink(kc_log_sink_t sink, void *userdata) {
        log_sink = sink;
        log_userdata = userdata;
}

void kc_log_set_max_priority(int max_priority) {
        log_max_priority = max_priority;
}

int kc_log_get_max_priority(void) {
        return log_max_priority;
}

void kc_log_set_program(const char *name) {
        log_program = name;
}

void kc_log_sink_stderr(int priority, const char *message, void *userdata) {
        fprintf(stderr, "%s: %s\n", log_program, message);
}

void kc_log_sink_syslog(int priority, const char *message, void *userdata) {
        syslog(priority, "%s", message);
}

int kc_log_internal(int priority, int error, const char *fmt, ...) {
        int saved_errno = errno;
        int ret = error < 0 ? error : -error;
        char buf[KC_LOG_LINE_MAX];
        va_list ap;

        if (log_sink && priority <= log_max_priority) {
                errno = -ret; /* lets %m name the error being reported */
                va_start(ap, fmt);
                vsnprintf(buf, sizeof(buf), fmt, ap);
                va_end(ap);
                log_sink(priority, buf, log_userdata);
        }
        errno = saved_errno;
        return ret;
}
