/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kmscryptd's mapper processes (agent/daemon/mapper.c) on the host: what a
 * mapper answers is what kc_mapping_load answers in the caller's thread,
 * error line included; dead mappers are skipped, and with none left the
 * caller loads the mapping itself; the mappers are reaped when freed and
 * die with the agent.  The mapping itself fails here (no device-mapper, or
 * a table on /dev/null where there is one): that failure is the answer
 * compared.  The vm tier (tests/vm/guest/agent-mapper.sh) makes real ones.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/daemon/mapper.h"
#include "tests/unit/check-main.h"

#define KEY_BYTES 64

static const struct kc_mapping mapping = {
        .name = "kc-test-mapper",
        .dm_uuid = "CRYPT-LUKS2-00000000000000000000000000000000-kc-test-mapper",
        .key_description = "kmscrypt:00000000-0000-0000-0000-000000000000",
        .params = "aes-xts-plain64 :64:logon:kmscrypt:00000000-0000-0000-0000-000000000000 0 /dev/null 0",
        .size = 8,
};
static const unsigned char key[KEY_BYTES] = { 1, 2, 3, 4 };

/* The answer of kc_mapping_load in this thread: the reference. */
static int in_thread(const struct kc_mapping *m, struct kc_err *err) {
        *err = (struct kc_err) {};
        return kc_mapping_load(m, key, sizeof(key), err);
}

/* The pids whose parent is pid, into pids (at most n); how many. */
static size_t children_of(pid_t pid, pid_t *pids, size_t n) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        size_t found = 0;

        ck_assert_ptr_nonnull(d);
        while ((e = readdir(d)) && found < n) {
                char path[300], line[256];
                FILE *f;
                long ppid = -1;

                if (e->d_name[0] < '0' || e->d_name[0] > '9')
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/status", e->d_name);
                f = fopen(path, "re");
                if (!f)
                        continue;
                while (fgets(line, sizeof(line), f))
                        if (sscanf(line, "PPid: %ld", &ppid) == 1)
                                break;
                fclose(f);
                if (ppid == pid)
                        pids[found++] = (pid_t) atol(e->d_name);
        }
        closedir(d);
        return found;
}

/* Whether pid is gone or a zombie. */
static bool gone(pid_t pid) {
        char path[64], state = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return true;
        if (fscanf(f, "%*d (%*[^)]) %c", &state) != 1)
                state = 0;
        fclose(f);
        return state == 'Z' || state == 'X';
}

static void assert_no_children_left(void) {
        ck_assert_int_eq(waitpid(-1, NULL, WNOHANG), -1);
        ck_assert_int_eq(errno, ECHILD);
}

START_TEST(test_answer_is_kc_mapping_load_s) {
        struct kc_mapper *mp = NULL;
        struct kc_err want, have = {};
        pid_t pids[4];
        int r;

        ck_assert_int_eq(kc_mapper_new(2, &mp), 0);
        ck_assert_uint_eq(children_of(getpid(), pids, 4), 2);
        r = kc_mapper_load(mp, &mapping, key, sizeof(key), &have);
        ck_assert_int_lt(r, 0);
        ck_assert_int_eq(r, in_thread(&mapping, &want));
        ck_assert_str_eq(have.msg, want.msg);
        /* Both mappers alive: the failure was the mapping's, not a mapper's. */
        ck_assert(!gone(pids[0]) && !gone(pids[1]));
        kc_mapper_free(mp);
        assert_no_children_left();
}
END_TEST

START_TEST(test_dead_mappers_are_skipped) {
        struct kc_mapper *mp = NULL;
        struct kc_err want, have = {};
        pid_t pids[4];

        ck_assert_int_eq(kc_mapper_new(3, &mp), 0);
        ck_assert_uint_eq(children_of(getpid(), pids, 4), 3);
        /* Two killed idle: the third answers. */
        ck_assert_int_eq(kill(pids[0], SIGKILL), 0);
        ck_assert_int_eq(kill(pids[1], SIGKILL), 0);
        while (!gone(pids[0]) || !gone(pids[1]))
                usleep(10000);
        ck_assert_int_eq(kc_mapper_load(mp, &mapping, key, sizeof(key), &have), in_thread(&mapping, &want));
        ck_assert_str_eq(have.msg, want.msg);
        /* All dead: this thread loads it. */
        ck_assert_int_eq(kill(pids[2], SIGKILL), 0);
        while (!gone(pids[2]))
                usleep(10000);
        have = (struct kc_err) {};
        ck_assert_int_eq(kc_mapper_load(mp, &mapping, key, sizeof(key), &have), in_thread(&mapping, &want));
        ck_assert_str_eq(have.msg, want.msg);
        kc_mapper_free(mp);
        assert_no_children_left();
}
END_TEST

/* A key check that counts its runs. */
static int check_runs;

static int counted_check(void *userdata) {
        (void) userdata;
        check_runs++;
        return 0;
}

/* The key check runs once per load whoever loads: a mapper, this thread after the mappers died, kc_mapping_load. */
START_TEST(test_check_runs_once) {
        struct kc_mapping checked = mapping;
        struct kc_mapper *mp = NULL;
        struct kc_err want, have = {};
        pid_t pids[2];

        checked.check = counted_check;
        ck_assert_int_eq(kc_mapper_new(1, &mp), 0);
        ck_assert_uint_eq(children_of(getpid(), pids, 2), 1);
        check_runs = 0;
        ck_assert_int_eq(kc_mapper_load(mp, &checked, key, sizeof(key), &have), in_thread(&mapping, &want));
        ck_assert_str_eq(have.msg, want.msg);
        ck_assert_int_eq(check_runs, 1);

        ck_assert_int_eq(kill(pids[0], SIGKILL), 0);
        while (!gone(pids[0]))
                usleep(10000);
        check_runs = 0;
        have = (struct kc_err) {};
        ck_assert_int_eq(kc_mapper_load(mp, &checked, key, sizeof(key), &have), in_thread(&mapping, &want));
        ck_assert_str_eq(have.msg, want.msg);
        ck_assert_int_eq(check_runs, 1);

        check_runs = 0;
        ck_assert_int_eq(in_thread(&checked, &have), in_thread(&mapping, &want));
        ck_assert_int_eq(check_runs, 1);
        kc_mapper_free(mp);
        assert_no_children_left();
}
END_TEST

START_TEST(test_sigterm_ignored) {
        struct kc_mapper *mp = NULL;
        pid_t pids[2];

        ck_assert_int_eq(kc_mapper_new(1, &mp), 0);
        ck_assert_uint_eq(children_of(getpid(), pids, 2), 1);
        ck_assert_int_eq(kill(pids[0], SIGTERM), 0);
        usleep(200000);
        ck_assert(!gone(pids[0]));
        kc_mapper_free(mp);
        assert_no_children_left();
}
END_TEST

START_TEST(test_long_table_loaded_in_thread) {
        struct kc_mapper *mp = NULL;
        struct kc_mapping m = mapping;
        struct kc_err want, have = {};
        size_t n = 8192;
        char *params = malloc(n + 1);

        ck_assert_ptr_nonnull(params);
        memset(params, 'x', n);
        params[n] = '\0';
        m.params = params;
        ck_assert_int_eq(kc_mapper_new(1, &mp), 0);
        ck_assert_int_eq(kc_mapper_load(mp, &m, key, sizeof(key), &have), in_thread(&m, &want));
        ck_assert_str_eq(have.msg, want.msg);
        kc_mapper_free(mp);
        free(params);
}
END_TEST

/* A mapper outlives no agent: the agent here is a child that gets killed. */
START_TEST(test_mappers_die_with_the_agent) {
        int p[2];
        pid_t agent, pids[3];

        ck_assert_int_eq(pipe(p), 0);
        agent = fork();
        ck_assert_int_ge(agent, 0);
        if (agent == 0) {
                struct kc_mapper *mp = NULL;
                char c = kc_mapper_new(3, &mp) == 0 ? 'y' : 'n';

                (void) write(p[1], &c, 1);
                pause();
                _exit(0);
        }
        close(p[1]);
        {
                char c = 0;

                ck_assert_int_eq(read(p[0], &c, 1), 1);
                ck_assert_int_eq(c, 'y');
        }
        ck_assert_uint_eq(children_of(agent, pids, 3), 3);
        ck_assert_int_eq(kill(agent, SIGKILL), 0);
        ck_assert_int_eq(waitpid(agent, NULL, 0), agent);
        for (int i = 0; i < 3; i++) {
                int tries = 0;

                while (!gone(pids[i]) && tries++ < 200)
                        usleep(10000);
                ck_assert_msg(gone(pids[i]), "mapper %d outlived its agent", (int) pids[i]);
        }
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("mapper");
        TCase *tc = tcase_create("mapper");

        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_answer_is_kc_mapping_load_s);
        tcase_add_test(tc, test_dead_mappers_are_skipped);
        tcase_add_test(tc, test_check_runs_once);
        tcase_add_test(tc, test_sigterm_ignored);
        tcase_add_test(tc, test_long_table_loaded_in_thread);
        tcase_add_test(tc, test_mappers_die_with_the_agent);
        suite_add_tcase(s, tc);
        return s;
}
