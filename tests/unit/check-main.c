/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ftw.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
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

int kc_test_refuse_syscall(long nr, long arg0, int error) {
        const size_t arg0_low = offsetof(struct seccomp_data, args[0]) +
                                (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__ ? 4 : 0);
        /* With arg0 -1 the comparison of the argument is jumped over. */
        struct sock_filter filter[] = {
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned) nr, 0, 3),
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, arg0_low),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned) arg0, 0, 1),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned) error & SECCOMP_RET_DATA)),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = { .len = sizeof(filter) / sizeof(filter[0]), .filter = filter };

        if (arg0 < 0) {
                filter[2] = (struct sock_filter) BPF_STMT(BPF_JMP | BPF_JA, 1);
                filter[3] = (struct sock_filter) BPF_STMT(BPF_JMP | BPF_JA, 0);
        }
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
                return -errno;
        return 0;
}
