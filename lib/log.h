/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Logging.  Library code (everything under lib/, kernel-keyring/,
 * dmsetup-helpers/ and the agent library) logs at debug level only, and
 * only through the sink the program installs.  Programs log and return in
 * one step:
 *
 *         return log_error_errno(r, "Failed to attach %s: %m", name);
 *
 * %m expands to strerror(-r).  The *_errno variants return -abs(error), so
 * a caller can pass either sign.  Never pass a secret to any of these.
 */

#include <stdarg.h>
#include <syslog.h>

#include "lib/error.h"
#include "lib/macro.h"

/* One line: what failed (a path or two and words) and its kc_err message, whole. */
#define KC_LOG_LINE_MAX (2 * KC_ERR_MSG_MAX)

typedef void (*kc_log_sink_t)(int priority, const char *message, void *userdata);

/* Route messages at or below max_priority (LOG_DEBUG..LOG_EMERG) to sink; NULL sink drops them. */
void kc_log_set_sink(kc_log_sink_t sink, void *userdata);
void kc_log_set_max_priority(int max_priority);
int kc_log_get_max_priority(void);

/* Ready-made sinks: "prog: message" on stderr, and syslog (which journald also collects). */
void kc_log_sink_stderr(int priority, const char *message, void *userdata);
void kc_log_sink_syslog(int priority, const char *message, void *userdata);

/* Program name used by the stderr sink. */
void kc_log_set_program(const char *name);

int kc_log_internal(int priority, int error, const char *fmt, ...) _printf_(3, 4);

#define log_full_errno(prio, error, ...) kc_log_internal((prio), (error), __VA_ARGS__)
#define log_debug(...)   (void) kc_log_internal(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...)    (void) kc_log_internal(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...)  (void) kc_log_internal(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) (void) kc_log_internal(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...)   (void) kc_log_internal(LOG_ERR, 0, __VA_ARGS__)
#define log_debug_errno(e, ...)   kc_log_internal(LOG_DEBUG, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) kc_log_internal(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...)   kc_log_internal(LOG_ERR, (e), __VA_ARGS__)
