/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kmscryptd's mapper processes (agent/daemon/mapper.c) on the host: what a
 * mapper answers is what kc_mapping_load answers in the caller's thread,
 * error line included; dead mappers are skipped, and with none left the
 * caller loads the mapping itself; the mappers are reaped when freed and
 * die with the agent.  The mapping itself fails here (no device-mapper, or
 * a table on /dev/null where there is one): that failure is the answer
 * compared.  The vm tier (tests/vm/guest/agent-mapper.sh) makes real ones.
 * Under supervision, a dead mapper is replaced by one executed from the
 * kmscryptd this tree built (KC_TEST_KMSCRYPTD), which answers the next
 * request.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/daemon/caps.h"
#include "agent/daemon/mapper.h"
#include "lib/clock.h"
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

/* A number from /proc/PID/status ("voluntary_ctxt_switches", "CapEff" in hex, ...); -1 if none. */
static long status_field(pid_t pid, const char *name) {
        char path[64], line[256];
        long v = -1;
        size_t n = strlen(name);
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, name, n) == 0 && line[n] == ':')
                        v = strtol(line + n + 1, NULL, strncmp(name, "Cap", 3) == 0 ? 16 : 10);
        fclose(f);
        return v;
}

/* /proc/PID/WHAT into buf, NUL-terminated (empty if unreadable); its length. */
static size_t proc_read(pid_t pid, const char *what, char *buf, size_t size) {
        char path[64];
        size_t n = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/%s", (int) pid, what);
        f = fopen(path, "re");
        if (f) {
                n = fread(buf, 1, size - 1, f);
                fclose(f);
        }
        buf[n] = '\0';
        return n;
}

/* The pids whose parent is pid, into pids (at most n); how many. */
static size_t children_of(pid_t pid, pid_t *pids, size_t n) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        size_t found = 0;

        ck_assert_ptr_nonnull(d);
        while ((e = readdir(d)) && found < n) {
                if (e->d_name[0] < '0' || e->d_name[0] > '9')
                        continue;
                if (status_field((pid_t) atol(e->d_name), "PPid") == pid)
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

/*
 * Kill our child pid and wait until it is dead, without reaping it (the
 * mapper code does).  Its state turning 'Z' is not enough: that is its
 * main thread, and another of its threads (ThreadSanitizer starts one in
 * every process) may still hold its socket open, so a request sent then
 * is taken and lost.  waitid() reports the child once every thread is gone.
 */
static void kill_and_wait(pid_t pid) {
        siginfo_t info = {};

        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        while (waitid(P_PID, (id_t) pid, &info, WEXITED | WNOWAIT) < 0)
                ck_assert_int_eq(errno, EINTR);
        ck_assert_int_eq(info.si_pid, pid);
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
        kill_and_wait(pids[0]);
        kill_and_wait(pids[1]);
        ck_assert_int_eq(kc_mapper_load(mp, &mapping, key, sizeof(key), &have), in_thread(&mapping, &want));
        ck_assert_str_eq(have.msg, want.msg);
        /* All dead: this thread loads it. */
        kill_and_wait(pids[2]);
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

        kill_and_wait(pids[0]);
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

/* Whether /proc/PID/cmdline holds the argument arg. */
static bool has_arg(pid_t pid, const char *arg) {
        char buf[4096];
        size_t n = proc_read(pid, "cmdline", buf, sizeof(buf));

        for (size_t i = 0; i < n; i += strlen(buf + i) + 1)
                if (strcmp(buf + i, arg) == 0)
                        return true;
        return false;
}

/* Wait (up to 10 s) until pid sleeps waiting for a request (for a packet on its socket). */
static void wait_for_request_wait(pid_t pid) {
        char wchan[128];

        for (int tries = 0; tries < 1000; tries++) {
                proc_read(pid, "wchan", wchan, sizeof(wchan));
                if (strstr(wchan, "wait_for_more_packets"))
                        return;
                usleep(10000);
        }
        ck_abort_msg("mapper %d never waited for a request", (int) pid);
}

/* Wait (up to 10 s) until this process has n children, none of them old; their pids into pids. */
static void wait_for_new_children(pid_t *pids, size_t n, const pid_t *old, size_t n_old) {
        for (int tries = 0; tries < 1000; tries++) {
                bool fresh = children_of(getpid(), pids, n) == n;

                for (size_t i = 0; fresh && i < n; i++)
                        for (size_t k = 0; k < n_old; k++)
                                fresh = fresh && pids[i] != old[k];
                if (fresh)
                        return;
                usleep(10000);
        }
        ck_abort_msg("the dead mappers were not replaced within 10 s");
}

/*
 * A load of mapping through mp answers what kc_mapping_load answers, and
 * one of the n mappers pids, each asleep waiting for a request first, woke
 * for it (it sleeps again, one more voluntary switch, just after it
 * answered).
 */
static void assert_served_by(struct kc_mapper *mp, const pid_t *pids, size_t n) {
        struct kc_err want, have = {};
        long before = 0, after = 0;

        for (size_t i = 0; i < n; i++) {
                wait_for_request_wait(pids[i]);
                before += status_field(pids[i], "voluntary_ctxt_switches");
        }
        ck_assert_int_eq(kc_mapper_load(mp, &mapping, key, sizeof(key), &have), in_thread(&mapping, &want));
        ck_assert_str_eq(have.msg, want.msg);
        for (int tries = 0; tries < 1000 && after <= before; tries++) {
                usleep(10000);
                after = 0;
                for (size_t i = 0; i < n; i++)
                        after += status_field(pids[i], "voluntary_ctxt_switches");
        }
        ck_assert_int_gt(after, before);
}

START_TEST(test_dead_mapper_replaced) {
        struct kc_mapper *mp = NULL;
        pid_t pids[2], fresh[2];

        ck_assert_int_eq(kc_mapper_new(2, &mp), 0);
        ck_assert_int_eq(kc_mapper_supervise(mp, KC_TEST_KMSCRYPTD), 0);
        ck_assert_uint_eq(children_of(getpid(), pids, 2), 2);
        /* Killed idle: the supervisor sees the hang-up and starts one in its place. */
        ck_assert_int_eq(kill(pids[0], SIGKILL), 0);
        ck_assert_int_eq(kill(pids[1], SIGKILL), 0);
        wait_for_new_children(fresh, 2, pids, 2);
        for (int i = 0; i < 2; i++) {
                ck_assert_msg(has_arg(fresh[i], "--mapper-process"), "child %d is no mapper process", (int) fresh[i]);
                /* Ready, its capabilities reduced as a forked one's: device-mapper's alone. */
                wait_for_request_wait(fresh[i]);
                ck_assert_int_eq(status_field(fresh[i], "CapEff"),
                                 (long) ((uint64_t) status_field(getpid(), "CapEff") & kc_caps_keep_mapper()));
                ck_assert_int_eq(status_field(fresh[i], "CapPrm"), status_field(fresh[i], "CapEff"));
        }
        assert_served_by(mp, fresh, 2);
        /* None started after the free: the supervision stops first. */
        kc_mapper_free(mp);
        assert_no_children_left();
}
END_TEST

/* A key check that kills the one mapper (stopped) while it holds the request. */
static int killing_check(void *userdata) {
        pid_t pids[1];

        (void) userdata;
        ck_assert_uint_eq(children_of(getpid(), pids, 1), 1);
        ck_assert_int_eq(kill(pids[0], SIGKILL), 0);
        return 0;
}

/* Dead amid a request: that load fails, the next one goes to the mapper started in its place. */
START_TEST(test_busy_mapper_replaced) {
        struct kc_mapping killing = mapping;
        struct kc_mapper *mp = NULL;
        struct kc_err err = {};
        pid_t pids[1], fresh[1];

        killing.check = killing_check;
        ck_assert_int_eq(kc_mapper_new(1, &mp), 0);
        ck_assert_int_eq(kc_mapper_supervise(mp, KC_TEST_KMSCRYPTD), 0);
        ck_assert_uint_eq(children_of(getpid(), pids, 1), 1);
        /* Stopped, it cannot answer before the check kills it (no device-mapper here: its load fails fast). */
        wait_for_request_wait(pids[0]);
        ck_assert_int_eq(kill(pids[0], SIGSTOP), 0);
        ck_assert_int_eq(kc_mapper_load(mp, &killing, key, sizeof(key), &err), -ECONNRESET);
        ck_assert_ptr_nonnull(strstr(err.msg, "died"));
        wait_for_new_children(fresh, 1, pids, 1);
        assert_served_by(mp, fresh, 1);
        kc_mapper_free(mp);
        assert_no_children_left();
}
END_TEST

/* Stopped (or hung) amid a request: the load fails after the reply timeout, and the mapper is killed. */
START_TEST(test_hung_mapper_timed_out) {
        struct kc_mapper *mp = NULL;
        struct kc_err err = {};
        pid_t pids[1];
        uint64_t t0;

        ck_assert_int_eq(kc_mapper_new(1, &mp), 0);
        kc_mapper_set_reply_timeout(mp, 300);
        ck_assert_uint_eq(children_of(getpid(), pids, 1), 1);
        wait_for_request_wait(pids[0]);
        ck_assert_int_eq(kill(pids[0], SIGSTOP), 0);
        t0 = kc_now_ms();
        ck_assert_int_eq(kc_mapper_load(mp, &mapping, key, sizeof(key), &err), -ECONNRESET);
        ck_assert_uint_ge(kc_now_ms() - t0, 300);
        ck_assert_msg(strstr(err.msg, "did not answer within 300 ms"), "%s", err.msg);
        kc_mapper_free(mp);
        assert_no_children_left();
}
END_TEST

/* Supervised, as in kmscryptd: the hung mapper is killed and replaced, and the next load is served. */
START_TEST(test_hung_mapper_replaced) {
        struct kc_mapper *mp = NULL;
        struct kc_err err = {};
        pid_t pids[1], fresh[1];

        ck_assert_int_eq(kc_mapper_new(1, &mp), 0);
        ck_assert_int_eq(kc_mapper_supervise(mp, KC_TEST_KMSCRYPTD), 0);
        kc_mapper_set_reply_timeout(mp, 300);
        ck_assert_uint_eq(children_of(getpid(), pids, 1), 1);
        wait_for_request_wait(pids[0]);
        ck_assert_int_eq(kill(pids[0], SIGSTOP), 0);
        ck_assert_int_eq(kc_mapper_load(mp, &mapping, key, sizeof(key), &err), -ECONNRESET);
        wait_for_new_children(fresh, 1, pids, 1);
        assert_served_by(mp, fresh, 1);
        kc_mapper_free(mp);
        assert_no_children_left();
}
END_TEST

/* A mapper stopped while idle does not hold up kc_mapper_free (the agent's stop) for ever. */
START_TEST(test_free_with_a_stopped_mapper) {
        struct kc_mapper *mp = NULL;
        pid_t pids[2];
        uint64_t t0;

        ck_assert_int_eq(kc_mapper_new(2, &mp), 0);
        ck_assert_uint_eq(children_of(getpid(), pids, 2), 2);
        wait_for_request_wait(pids[0]);
        ck_assert_int_eq(kill(pids[0], SIGSTOP), 0);
        t0 = kc_now_ms();
        kc_mapper_free(mp);
        ck_assert_uint_lt(kc_now_ms() - t0, 10000);
        assert_no_children_left();
}
END_TEST

/* A replacement not started by an agent (no socket, no slots) exits at once. */
START_TEST(test_mapper_process_bad_start) {
        static const char *const bad[][2] = { { "0", "1" }, { "x", "1" }, { "0", "0" }, { "0", "-1" } };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                int status;
                pid_t pid = fork();

                ck_assert_int_ge(pid, 0);
                if (pid == 0) {
                        /* No descriptor 3 or 4, as a user running it by hand would have. */
                        close(3);
                        close(4);
                        execl(KC_TEST_KMSCRYPTD, "kmscryptd", "--mapper-process", bad[i][0], bad[i][1], (char *) NULL);
                        _exit(127);
                }
                ck_assert_int_eq(waitpid(pid, &status, 0), pid);
                ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1, "%s %s: status %d", bad[i][0],
                              bad[i][1], status);
        }
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

                if (write(p[1], &c, 1) != 1)
                        _exit(1);
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
        /* Up to 10 s each, as the other waits here: the kernel's signal, not a timer, kills them. */
        for (int i = 0; i < 3; i++) {
                int tries = 0;

                while (!gone(pids[i]) && tries++ < 1000)
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
        tcase_add_test(tc, test_dead_mapper_replaced);
        tcase_add_test(tc, test_busy_mapper_replaced);
        tcase_add_test(tc, test_hung_mapper_timed_out);
        tcase_add_test(tc, test_hung_mapper_replaced);
        tcase_add_test(tc, test_free_with_a_stopped_mapper);
        tcase_add_test(tc, test_mapper_process_bad_start);
        suite_add_tcase(s, tc);
        return s;
}
