/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kc_spawn_wait (agent/daemon/spawn.c), how kmscryptd runs kmscrypt to
 * finish an interrupted reencryption: the exit status, the last line of
 * stderr, a stop that sends SIGTERM (and none before it is asked for),
 * the signal mask the child starts with, and a program that is not there.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/daemon/spawn.h"
#include "lib/macro.h"
#include "tests/unit/check-main.h"

/* /bin/sh -c SCRIPT; the array is static: one call at a time. */
static char *const *sh_argv(const char *script) {
        static char *argv[4];

        argv[0] = "/bin/sh";
        argv[1] = "-c";
        argv[2] = (char *) script;
        argv[3] = NULL;
        return argv;
}

static bool never(void *userdata) {
        (void) userdata;
        return false;
}

/* Says stop once it has been asked *userdata times. */
static bool after(void *userdata) {
        int *left = userdata;

        return --*left <= 0;
}

/* Says stop once the file userdata names exists. */
static bool once_there(void *userdata) {
        return access(userdata, F_OK) == 0;
}

START_TEST(test_status_and_last_line) {
        char line[64];

        ck_assert_int_eq(kc_spawn_wait(sh_argv("echo first >&2; echo out; echo last line >&2; exit 3"), never, NULL,
                                       line, sizeof(line)), 3);
        ck_assert_str_eq(line, "last line");
        ck_assert_int_eq(kc_spawn_wait(sh_argv("printf 'no newline' >&2"), never, NULL, line, sizeof(line)), 0);
        ck_assert_str_eq(line, "no newline");
        ck_assert_int_eq(kc_spawn_wait(sh_argv("true"), NULL, NULL, line, sizeof(line)), 0);
        ck_assert_str_eq(line, "");
}
END_TEST

START_TEST(test_long_line_cut) {
        char line[16];

        ck_assert_int_eq(kc_spawn_wait(sh_argv("head -c 5000 /dev/zero | tr '\\0' x >&2"), never, NULL, line,
                                       sizeof(line)), 0);
        ck_assert_str_eq(line, "xxxxxxxxxxxxxxx");
}
END_TEST

START_TEST(test_stop_sends_sigterm) {
        struct timespec a, b;
        int asks = 3;

        clock_gettime(CLOCK_MONOTONIC, &a);
        ck_assert_int_eq(kc_spawn_wait(sh_argv("sleep 30"), after, &asks, NULL, 0), 128 + SIGTERM);
        clock_gettime(CLOCK_MONOTONIC, &b);
        ck_assert_int_lt(b.tv_sec - a.tv_sec, 10);
}
END_TEST

/*
 * The caller's blocked signals are not the child's: a SIGTERM reaches a shell trap even when blocked here.
 * Sent once the shell says its trap is set, not after a while: a shell slow to start (a loaded machine)
 * would die of it before.
 */
START_TEST(test_child_signal_mask_empty) {
        _cleanup_free_ char *dir = kc_test_tmpdir(), *mark = NULL, *script = NULL;
        sigset_t set, old;
        char line[64];

        ck_assert(asprintf(&mark, "%s/trapped", dir) > 0);
        ck_assert(asprintf(&script, "trap 'echo stopped >&2; exit 7' TERM; : > '%s'; while :; do sleep 0.05; done",
                           mark) > 0);
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
        ck_assert_int_eq(kc_spawn_wait(sh_argv(script), once_there, mark, line, sizeof(line)), 7);
        ck_assert_str_eq(line, "stopped");
        ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
}
END_TEST

START_TEST(test_missing_program) {
        char *const argv[] = { "/nonexistent/kmscrypt", NULL };
        char line[8] = "x";

        ck_assert_int_eq(kc_spawn_wait(argv, never, NULL, line, sizeof(line)), -ENOENT);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("spawn");
        TCase *tc = tcase_create("spawn");

        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_status_and_last_line);
        tcase_add_test(tc, test_long_line_cut);
        tcase_add_test(tc, test_stop_sends_sigterm);
        tcase_add_test(tc, test_child_signal_mask_empty);
        tcase_add_test(tc, test_missing_program);
        suite_add_tcase(s, tc);
        return s;
}
