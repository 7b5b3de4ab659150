/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kc_thread_start() (lib/thread.h): the stack it gives, detached or joinable, and a refused start. */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/thread.h"
#include "tests/unit/check-main.h"

struct seen {
        size_t stack_size;
        int detach_state;
        sem_t done;
};

static void *look(void *arg) {
        struct seen *s = arg;
        pthread_attr_t attr;

        if (pthread_getattr_np(pthread_self(), &attr) == 0) {
                (void) pthread_attr_getstacksize(&attr, &s->stack_size);
                (void) pthread_attr_getdetachstate(&attr, &s->detach_state);
                pthread_attr_destroy(&attr);
        }
        sem_post(&s->done);
        return s;
}

START_TEST(test_joinable) {
        struct seen s = { .detach_state = -1 };
        pthread_t t;
        void *back = NULL;

        sem_init(&s.done, 0, 0);
        ck_assert_int_eq(kc_thread_start(&t, false, look, &s), 0);
        ck_assert_int_eq(pthread_join(t, &back), 0);
        ck_assert_ptr_eq(back, &s);
        /* Not glibc's default (RLIMIT_STACK, 8 MiB here), and under a 2 MiB huge page. */
        ck_assert_uint_eq(s.stack_size, KC_THREAD_STACK_SIZE);
        ck_assert_uint_lt(s.stack_size, 2 * 1024 * 1024);
        ck_assert_int_eq(s.detach_state, PTHREAD_CREATE_JOINABLE);
        sem_destroy(&s.done);
}
END_TEST

START_TEST(test_detached) {
        struct seen s = { .detach_state = -1 };

        sem_init(&s.done, 0, 0);
        ck_assert_int_eq(kc_thread_start(NULL, true, look, &s), 0);
        ck_assert_int_eq(sem_wait(&s.done), 0);
        ck_assert_uint_eq(s.stack_size, KC_THREAD_STACK_SIZE);
        ck_assert_int_eq(s.detach_state, PTHREAD_CREATE_DETACHED);
        sem_destroy(&s.done);
}
END_TEST

/*
 * No thread to be had (a pids cgroup at its limit): a negative errno, and
 * ret untouched.  In a child that leaves with _exit(): LeakSanitizer's
 * check at exit needs a clone of its own.
 */
static int refused_child(void) {
        struct seen s = {};
        pthread_t t = (pthread_t) 0;

        sem_init(&s.done, 0, 0);
        if (kc_test_refuse_syscall(__NR_clone3, -1, EAGAIN) < 0 || kc_test_refuse_syscall(__NR_clone, -1, EAGAIN) < 0)
                return 1;
        if (kc_thread_start(&t, false, look, &s) != -EAGAIN || t != (pthread_t) 0)
                return 2;
        if (kc_thread_start(NULL, true, look, &s) != -EAGAIN)
                return 3;
        if (sem_trywait(&s.done) != -1)
                return 4;
        return 0;
}

START_TEST(test_refused) {
        int status;
        pid_t pid = fork();

        ck_assert_int_ge(pid, 0);
        if (pid == 0)
                _exit(refused_child());
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: status %#x", status);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("thread");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_joinable);
        tcase_add_test(tc, test_detached);
        tcase_add_test(tc, test_refused);
        suite_add_tcase(s, tc);
        return s;
}
