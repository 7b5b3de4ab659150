/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/fault.h"
#include "tests/unit/check-main.h"

/* Check forks each test (CK_FORK): a kill ends only the child, which Check reports. */

START_TEST(test_inert_without_variable) {
        unsetenv("KC_FAULT_STEP");
        kc_fault_point("attach:after-key-add");
        kc_fault_point(NULL);
}
END_TEST

START_TEST(test_other_step_survives) {
        ck_assert_int_eq(setenv("KC_FAULT_STEP", "attach:after-key-add", 1), 0);
        kc_fault_point("attach:after-unwrap");
        kc_fault_point("attach:after-key-add-later");   /* whole names only */
        kc_fault_point("attach:after-key");
        kc_fault_point(NULL);
}
END_TEST

START_TEST(test_named_step_kills) {
        ck_assert_int_eq(setenv("KC_FAULT_STEP", "rewrap:after-prove", 1), 0);
        kc_fault_point("rewrap:after-reencrypt");
        kc_fault_point("rewrap:after-prove");
        ck_abort_msg("kc_fault_point returned at the step KC_FAULT_STEP names");
}
END_TEST

/* A helper process's fault point takes its partner down too (kmscryptd and its mappers). */
START_TEST(test_partner_killed_too) {
        pid_t helper = fork();

        ck_assert_int_ge(helper, 0);
        if (helper == 0) {
                setenv("KC_FAULT_STEP", "attach:after-key-add", 1);
                kc_fault_set_partner(getppid());
                kc_fault_point("attach:after-key-add");
                _exit(1);
        }
        (void) waitpid(helper, NULL, 0);
        ck_abort_msg("the helper's fault point left its partner alive");
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("fault");
        TCase *tc = tcase_create("fault");

        tcase_add_test(tc, test_inert_without_variable);
        tcase_add_test(tc, test_other_step_survives);
        tcase_add_test_raise_signal(tc, test_named_step_kills, SIGKILL);
        tcase_add_test_raise_signal(tc, test_partner_killed_too, SIGKILL);
        suite_add_tcase(s, tc);
        return s;
}
