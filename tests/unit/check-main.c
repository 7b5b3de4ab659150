/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "lib/log.h"
#include "tests/unit/check-main.h"

void kc_test_skip(const char *why) {
        printf("SKIP: %s\n", why);
        exit(77);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static char *tmpdirs[64];
static size_t n_tmpdirs;

static void rm_tmpdirs(void) {
        for (size_t i = 0; i < n_tmpdirs; i++) {
                nftw(tmpdirs[i], rm_one, 16, FTW_DEPTH | FTW_PHYS);
                free(tmpdirs[i]);
        }
}

char *kc_test_tmpdir(void) {
        const char *base = getenv("TMPDIR") ?: "/tmp";
        char *p;

        if (asprintf(&p, "%s/kmscrypt-test.XXXXXX", base) < 0 || !mkdtemp(p))
                abort();
        if (n_tmpdirs == 0)
                atexit(rm_tmpdirs);
        if (n_tmpdirs < 64)
                tmpdirs[n_tmpdirs++] = strdup(p);
        return p;
}

int main(void) {
        SRunner *sr;
        int failed;

        if (getenv("KC_TEST_DEBUG")) {
                kc_log_set_sink(kc_log_sink_stderr, NULL);
                kc_log_set_max_priority(LOG_DEBUG);
        }
        sr = srunner_create(kc_test_suite());
        /* Forking per test keeps a crash in one test from hiding the others. */
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

void kc_test_with_file_limit(off_t limit, void (*fn)(void *userdata), void *userdata) {
        struct rlimit old, rl;
        int r_freeze, r_thaw;

        ck_assert_ptr_ne(signal(SIGXFSZ, SIG_IGN), SIG_ERR);
        ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
        rl = old;
        rl.rlim_cur = (rlim_t) limit;
        r_freeze = setrlimit(RLIMIT_FSIZE, &rl);
        if (r_freeze == 0)
                fn(userdata);
        r_thaw = setrlimit(RLIMIT_FSIZE, &old);
        ck_assert_int_eq(r_thaw, 0);
        ck_assert_int_eq(r_freeze, 0);
}
