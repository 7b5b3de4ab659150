/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kernel-keyring against this machine's real kernel keyring.  Every key
 * gets a description unique to the test process ("kmscrypt:test-<pid>-..."),
 * and every /proc/keys check runs in the process that added the key.
 */
#include <keyutils.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "kernel-keyring/keyring.h"
#include "lib/secret.h"
#include "tests/unit/check-main.h"

#define DESC_BUF 128

/* Description unique to this process and name, so parallel runs and other helpers never collide. */
static void test_description(char buf[static DESC_BUF], const char *name) {
        snprintf(buf, DESC_BUF, "kmscrypt:test-%d-%s", (int) getpid(), name);
}

/* n random bytes of key material in secret memory, as real callers hold it. */
static unsigned char *random_key(size_t n) {
        unsigned char *k = kc_secret_alloc(n);

        ck_assert_ptr_nonnull(k);
        ck_assert_int_eq(getrandom(k, n, 0), (ssize_t) n);
        return k;
}

/* Payload length /proc/keys shows for the key described exactly `desc`; -1 when no such key is listed. */
static long proc_keys_len(const char *desc) {
        _cleanup_fclose_ FILE *f = fopen("/proc/keys", "re");
        size_t n = strlen(desc);
        char line[8192];

        ck_assert_ptr_nonnull(f);
        while (fgets(line, sizeof(line), f)) {
                /* Fields are "serial flags usage timeout perm uid gid type description[: len]". */
                char *p = strstr(line, " logon ");
                long len = 0;

                if (!p)
                        continue;
                p += strlen(" logon ");
                p += strspn(p, " ");
                if (strncmp(p, desc, n) != 0 || !strchr(":\n", p[n]))
                        continue;
                if (p[n] == ':')
                        len = strtol(p + n + 1, NULL, 10);
                return len;
        }
        return -1;
}

/* Poll /proc/keys (up to 2 s, inside Check's 4 s timeout) until `desc` is gone: the kernel GC is asynchronous. */
static bool wait_gone(const char *desc) {
        const struct timespec step = { .tv_nsec = 20 * 1000 * 1000 };

        for (int i = 0; i < 100; i++) {
                if (proc_keys_len(desc) < 0)
                        return true;
                nanosleep(&step, NULL);
        }
        return false;
}

/* Add a fresh random key of n bytes under `desc` to @t and return its serial. */
static kc_key_serial_t add_test_key(const char *desc, size_t n) {
        _cleanup_secret_ unsigned char *key = random_key(n);
        kc_key_serial_t serial = 0;

        ck_assert_int_eq(kc_keyring_add_logon(desc, key, n, &serial), 0);
        ck_assert_int_gt(serial, 0);
        return serial;
}

START_TEST(test_add_find_describe) {
        char desc[DESC_BUF], want_tail[DESC_BUF + 1];
        _cleanup_free_ char *info = NULL;
        kc_key_serial_t serial, found = 0;

        test_description(desc, "add");
        serial = add_test_key(desc, 64);

        ck_assert_int_eq(kc_keyring_find_logon(desc, &found), 0);
        ck_assert_int_eq(found, serial);

        /* keyctl_describe: "type;uid;gid;perm;description". */
        ck_assert_int_ge(keyctl_describe_alloc(serial, &info), 0);
        ck_assert_msg(strncmp(info, "logon;", 6) == 0, "key type is not logon: %s", info);
        snprintf(want_tail, sizeof(want_tail), ";%s", desc);
        ck_assert_str_eq(info + strlen(info) - strlen(want_tail), want_tail);

        /* The kernel holds the whole payload. */
        ck_assert_int_eq(proc_keys_len(desc), 64);

        ck_assert_int_eq(kc_keyring_drop(serial), 0);
        ck_assert_msg(wait_gone(desc), "%s still in /proc/keys after drop", desc);
}
END_TEST

START_TEST(test_not_readable) {
        char desc[DESC_BUF];
        unsigned char buf[256];
        void *alloc = NULL;
        kc_key_serial_t serial;
        long r;

        test_description(desc, "read");
        serial = add_test_key(desc, 64);

        errno = 0;
        r = keyctl_read(serial, (char *) buf, sizeof(buf));
        ck_assert_int_eq(r, -1);
        ck_assert_msg(errno == EOPNOTSUPP || errno == EACCES, "keyctl_read: unexpected errno %d", errno);
        ck_assert_int_eq(keyctl_read_alloc(serial, &alloc), -1);
        ck_assert_ptr_null(alloc);

        ck_assert_int_eq(kc_keyring_drop(serial), 0);
}
END_TEST

START_TEST(test_add_again_updates) {
        char desc[DESC_BUF];
        kc_key_serial_t first, second;

        test_description(desc, "update");
        first = add_test_key(desc, 32);
        ck_assert_int_eq(proc_keys_len(desc), 32);

        /* Same description in @t: the kernel updates in place instead of failing with EEXIST. */
        second = add_test_key(desc, 64);
        ck_assert_int_eq(second, first);
        ck_assert_int_eq(proc_keys_len(desc), 64);

        ck_assert_int_eq(kc_keyring_drop(first), 0);
        ck_assert(wait_gone(desc));
}
END_TEST

START_TEST(test_unlink_thread) {
        char desc[DESC_BUF];
        kc_key_serial_t serial, found = 12345;

        test_description(desc, "unlink");
        serial = add_test_key(desc, 64);

        ck_assert_int_eq(kc_keyring_unlink_thread(serial), 0);
        ck_assert_int_eq(kc_keyring_find_logon(desc, &found), -ENOKEY);
        ck_assert_int_eq(found, 12345);
        ck_assert_msg(wait_gone(desc), "%s still in /proc/keys after its last unlink", desc);
        /* Its last link is gone, so the key is. */
        ck_assert_int_eq(kc_keyring_unlink_thread(serial), -ENOKEY);
}
END_TEST

START_TEST(test_unlink_not_linked) {
        char desc[DESC_BUF], other[DESC_BUF];
        _cleanup_secret_ unsigned char *key = random_key(64);
        kc_key_serial_t serial, other_serial;

        /* A key in @t makes sure this thread has a thread keyring at all (else -ENOKEY). */
        test_description(other, "thread-resident");
        other_serial = add_test_key(other, 16);

        test_description(desc, "process");
        /* In @p only: not linked in @t, which unlink must say rather than pretend. */
        ck_assert_int_eq(kc_keyring_add_logon_to(KC_KEYRING_PROCESS, desc, key, 64, &serial), 0);
        ck_assert_int_eq(kc_keyring_find_logon(desc, NULL), 0);
        ck_assert_int_eq(kc_keyring_unlink_thread(serial), -ENOENT);
        ck_assert_int_eq(kc_keyring_drop(other_serial), 0);

        ck_assert_int_eq(kc_keyring_unlink(serial, KC_KEYRING_PROCESS), 0);
        ck_assert_int_eq(kc_keyring_find_logon(desc, NULL), -ENOKEY);
        ck_assert(wait_gone(desc));
}
END_TEST

START_TEST(test_revoke) {
        char desc[DESC_BUF];
        kc_key_serial_t serial;

        test_description(desc, "revoke");
        serial = add_test_key(desc, 64);

        ck_assert_int_eq(kc_keyring_revoke(serial), 0);
        ck_assert_int_eq(kc_keyring_find_logon(desc, NULL), -ENOKEY);
        ck_assert_int_eq(kc_keyring_revoke(serial), -EKEYREVOKED);
        ck_assert_int_eq(kc_keyring_invalidate(serial), -EKEYREVOKED);
        /* Revoked keys stay listed until the revoked-key GC delay (minutes)... */
        ck_assert_int_ge(proc_keys_len(desc), 0);

        /* ...unless drop unlinks them, which frees them now. */
        ck_assert_int_eq(kc_keyring_drop(serial), 0);
        ck_assert_msg(wait_gone(desc), "%s still in /proc/keys after drop of a revoked key", desc);
}
END_TEST

START_TEST(test_invalidate) {
        char desc[DESC_BUF];
        kc_key_serial_t serial;

        test_description(desc, "invalidate");
        serial = add_test_key(desc, 64);

        ck_assert_int_eq(kc_keyring_invalidate(serial), 0);
        ck_assert_int_eq(kc_keyring_find_logon(desc, NULL), -ENOKEY);
        ck_assert_int_eq(kc_keyring_invalidate(serial), -ENOKEY);
        ck_assert_msg(wait_gone(desc), "%s still in /proc/keys after invalidate", desc);
}
END_TEST

START_TEST(test_drop_idempotent_and_no_op) {
        char desc[DESC_BUF];
        kc_key_serial_t serial;

        test_description(desc, "drop");
        serial = add_test_key(desc, 64);

        /* Serials <= 0 are no-ops: in particular drop(KC_KEYRING_THREAD) must not touch @t. */
        ck_assert_int_eq(kc_keyring_drop(0), 0);
        ck_assert_int_eq(kc_keyring_drop(KC_KEYRING_THREAD), 0);
        ck_assert_int_eq(kc_keyring_find_logon(desc, NULL), 0);

        ck_assert_int_eq(kc_keyring_drop(serial), 0);
        ck_assert_int_eq(kc_keyring_find_logon(desc, NULL), -ENOKEY);
        ck_assert_int_eq(kc_keyring_drop(serial), 0);
        ck_assert(wait_gone(desc));
}
END_TEST

/* In a child (the filter must not outlive it): drop without invalidate; exit code 0, or the failed step. */
static int fallback_child(int error) {
        _cleanup_secret_ unsigned char *key = kc_secret_alloc(64);
        char desc[DESC_BUF];
        kc_key_serial_t serial;
        int r;

        if (!key || getrandom(key, 64, 0) != 64)
                return 1;
        /* As on a kernel without KEYCTL_INVALIDATE. */
        if (kc_test_refuse_syscall(__NR_keyctl, KEYCTL_INVALIDATE, error) < 0)
                return 77;
        test_description(desc, "fallback");
        if (kc_keyring_add_logon(desc, key, 64, &serial) < 0)
                return 2;
        if (kc_keyring_invalidate(serial) != -error)
                return 3;
        if (kc_keyring_drop(serial) != 0)
                return 4;
        if (kc_keyring_find_logon(desc, NULL) != -ENOKEY)
                return 5;
        /* Revoked, or already collected: either way unusable. */
        r = kc_keyring_revoke(serial);
        if (r != -EKEYREVOKED && r != -ENOKEY)
                return 6;
        if (!wait_gone(desc))
                return 7;
        return 0;
}

START_TEST(test_drop_fallback_without_invalidate) {
        static const int errors[] = { EOPNOTSUPP, ENOSYS };
        int error = errors[_i], status;
        pid_t pid = fork();

        ck_assert_int_ge(pid, 0);
        if (pid == 0)
                _exit(fallback_child(error));
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFEXITED(status));
        if (WEXITSTATUS(status) == 77) {
                printf("NOTE: seccomp unavailable, drop fallback for %s not exercised\n", strerror(error));
                return;
        }
        ck_assert_msg(WEXITSTATUS(status) == 0, "drop fallback (%s): step %d failed",
                      strerror(error), WEXITSTATUS(status));
}
END_TEST

struct thread_probe {
        const char *desc;
        bool add;               /* add the key (true) or only look for it (false) */
        sem_t added, checked;
        int add_r, find_r;
        kc_key_serial_t serial;
};

/* Adds or looks up probe->desc in this thread; results are asserted by the main thread. */
static void *thread_probe_run(void *userdata) {
        struct thread_probe *p = userdata;
        _cleanup_secret_ unsigned char *key = kc_secret_alloc(64);

        if (p->add) {
                p->add_r = key ? kc_keyring_add_logon(p->desc, key, 64, &p->serial) : -ENOMEM;
                p->find_r = kc_keyring_find_logon(p->desc, NULL);
                sem_post(&p->added);
                sem_wait(&p->checked);  /* keep @t alive while the main thread looks */
        } else
                p->find_r = kc_keyring_find_logon(p->desc, NULL);
        return NULL;
}

START_TEST(test_thread_keyring_private) {
        char desc[DESC_BUF];
        struct thread_probe p = { .desc = desc, .add = true };
        pthread_t t;
        kc_key_serial_t serial;

        test_description(desc, "thread-other");
        ck_assert_int_eq(sem_init(&p.added, 0, 0), 0);
        ck_assert_int_eq(sem_init(&p.checked, 0, 0), 0);
        ck_assert_int_eq(pthread_create(&t, NULL, thread_probe_run, &p), 0);
        ck_assert_int_eq(sem_wait(&p.added), 0);

        ck_assert_int_eq(p.add_r, 0);
        ck_assert_int_eq(p.find_r, 0);
        ck_assert_int_ge(proc_keys_len(desc), 0);
        ck_assert_int_eq(kc_keyring_find_logon(desc, NULL), -ENOKEY);

        sem_post(&p.checked);
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        /* Its thread keyring died with the thread, and the key with it. */
        ck_assert_msg(wait_gone(desc), "%s outlived the thread that added it", desc);

        /* The other way round: a new thread does not see this thread's keys. */
        sem_destroy(&p.added);
        sem_destroy(&p.checked);
        test_description(desc, "thread-main");
        serial = add_test_key(desc, 64);
        p = (struct thread_probe) { .desc = desc, .add = false };
        ck_assert_int_eq(pthread_create(&t, NULL, thread_probe_run, &p), 0);
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        ck_assert_int_eq(p.find_r, -ENOKEY);
        ck_assert_int_eq(kc_keyring_find_logon(desc, NULL), 0);
        ck_assert_int_eq(kc_keyring_drop(serial), 0);
}
END_TEST

START_TEST(test_invalid_inputs_refused) {
        _cleanup_secret_ unsigned char *key = random_key(KC_KEY_PAYLOAD_MAX + 1);
        char desc[DESC_BUF], long_desc[KC_KEY_DESCRIPTION_MAX + 2];
        static const char *const bad[] = {
                "", "nocolon", ":rest", "prefix:", "kmscrypt:a b", "kmscrypt:a\tb",
                "kmscrypt:a\nb", "kmscrypt:a\x7f", "kmscrypt\x01:x",
        };
        kc_key_serial_t serial = 4242;

        test_description(desc, "invalid");
        ck_assert_int_eq(kc_keyring_add_logon(NULL, key, 64, &serial), -EINVAL);
        ck_assert_int_eq(kc_keyring_add_logon(desc, NULL, 64, &serial), -EINVAL);
        ck_assert_int_eq(kc_keyring_add_logon(desc, key, 0, &serial), -EINVAL);
        ck_assert_int_eq(kc_keyring_add_logon(desc, key, KC_KEY_PAYLOAD_MAX + 1, &serial), -EINVAL);
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                ck_assert_int_eq(kc_keyring_add_logon(bad[i], key, 64, &serial), -EINVAL);
                ck_assert_int_eq(kc_keyring_find_logon(bad[i], &serial), -EINVAL);
        }

        /* One byte over the kernel's description limit. */
        memset(long_desc, 'x', sizeof(long_desc) - 1);
        long_desc[sizeof(long_desc) - 1] = '\0';
        memcpy(long_desc, desc, strlen(desc));
        ck_assert_int_eq(kc_keyring_add_logon(long_desc, key, 64, &serial), -EINVAL);
        ck_assert_int_eq(kc_keyring_find_logon(NULL, &serial), -EINVAL);
        ck_assert_int_eq(serial, 4242);  /* never written on failure */
        ck_assert_int_eq(proc_keys_len(desc), -1);

        /* Special keyring ids are not keys: refused before they reach a whole keyring. */
        ck_assert_int_eq(kc_keyring_revoke(KC_KEYRING_THREAD), -EINVAL);
        ck_assert_int_eq(kc_keyring_invalidate(0), -EINVAL);
        ck_assert_int_eq(kc_keyring_unlink(KC_KEYRING_SESSION, KC_KEYRING_USER), -EINVAL);
}
END_TEST

START_TEST(test_limits_accepted) {
        _cleanup_secret_ unsigned char *key = random_key(KC_KEY_PAYLOAD_MAX);
        char desc[DESC_BUF], long_desc[KC_KEY_DESCRIPTION_MAX + 1];
        kc_key_serial_t serial, found;

        /* Exactly the limits: the kernel must accept both. */
        test_description(desc, "limits");
        ck_assert_int_eq(kc_keyring_add_logon(desc, key, KC_KEY_PAYLOAD_MAX, &serial), 0);
        ck_assert_int_eq(proc_keys_len(desc), KC_KEY_PAYLOAD_MAX);
        ck_assert_int_eq(kc_keyring_drop(serial), 0);

        memset(long_desc, 'y', sizeof(long_desc) - 1);
        long_desc[sizeof(long_desc) - 1] = '\0';
        memcpy(long_desc, desc, strlen(desc));
        ck_assert_int_eq(kc_keyring_add_logon(long_desc, key, 32, &serial), 0);
        ck_assert_int_eq(kc_keyring_find_logon(long_desc, &found), 0);
        ck_assert_int_eq(found, serial);
        ck_assert_int_eq(kc_keyring_drop(serial), 0);
}
END_TEST

START_TEST(test_volume_description) {
        static const char uuid[] = "5b3f3f5e-8c5e-4b38-9f3c-2b1d7e0a9c11";
        static const char *const bad[] = { "", "5b3f 3f5e", "5b3f\t3f5e", "5b3f\n", "\x7f", "uuid\x1b[0m" };
        char *out = (char *) "untouched";
        _cleanup_free_ char *desc = NULL, *longest = NULL, *too_long = NULL;
        size_t max = KC_KEY_DESCRIPTION_MAX - strlen("kmscrypt:");
        _cleanup_free_ char *long_uuid = malloc(max + 2);
        kc_key_serial_t serial, found;

        ck_assert_int_eq(kc_keyring_volume_description(uuid, &desc), 0);
        ck_assert_str_eq(desc, "kmscrypt:5b3f3f5e-8c5e-4b38-9f3c-2b1d7e0a9c11");

        /* What it builds is what add/find accept. */
        {
                _cleanup_secret_ unsigned char *key = random_key(64);
                ck_assert_int_eq(kc_keyring_add_logon(desc, key, 64, &serial), 0);
        }
        ck_assert_int_eq(kc_keyring_find_logon(desc, &found), 0);
        ck_assert_int_eq(found, serial);
        ck_assert_int_eq(kc_keyring_drop(serial), 0);

        for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
                ck_assert_int_eq(kc_keyring_volume_description(bad[i], &out), -EINVAL);
        ck_assert_int_eq(kc_keyring_volume_description(NULL, &out), -EINVAL);
        ck_assert_int_eq(kc_keyring_volume_description(uuid, NULL), -EINVAL);
        ck_assert_str_eq(out, "untouched");

        /* The longest uuid that still fits the description limit, and one byte more. */
        ck_assert_ptr_nonnull(long_uuid);
        memset(long_uuid, 'a', max + 1);
        long_uuid[max + 1] = '\0';
        ck_assert_int_eq(kc_keyring_volume_description(long_uuid, &too_long), -EINVAL);
        long_uuid[max] = '\0';
        ck_assert_int_eq(kc_keyring_volume_description(long_uuid, &longest), 0);
        ck_assert_uint_eq(strlen(longest), KC_KEY_DESCRIPTION_MAX);
}
END_TEST

/* A child in a session keyring of its own, as systemd's KeyringMode=private gives a service, runs fn. */
static void in_new_session(int (*fn)(const char *desc), const char *desc) {
        pid_t pid = fork();
        int status;

        ck_assert_int_ge(pid, 0);
        if (pid == 0)
                _exit(keyctl_join_session_keyring(NULL) < 0 ? 2 : fn(desc));
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
}

/* Exit codes of the children: 0, or the step that failed. */
static int read_and_clear_mark(const char *desc) {
        char seen[64];

        if (kc_keyring_mark_get(desc, seen, sizeof(seen)) < 0 || strcmp(seen, "CRYPT-LUKS2-two") != 0)
                return 3;
        return kc_keyring_mark_clear(desc) < 0 ? 4 : 0;
}

static int set_mark_twice(const char *desc) {
        char seen[64];

        if (kc_keyring_mark_set(desc, "CRYPT-LUKS2-three") < 0 || kc_keyring_mark_set(desc, "CRYPT-LUKS2-four") < 0)
                return 3;
        if (kc_keyring_mark_get(desc, seen, sizeof(seen)) < 0 || strcmp(seen, "CRYPT-LUKS2-four") != 0)
                return 4;
        return 0;
}

/*
 * Marks live in @u: set, read back, replaced, cleared (twice: nothing to
 * clear is no error), refused when malformed.  A process in a session
 * keyring of its own, which does not link @u and so possesses nothing in
 * it, reads and clears a mark another set, and sets one another reads.
 */
START_TEST(test_marks) {
        char desc[DESC_BUF], buf[64], small[4];

        test_description(desc, "mark");
        ck_assert_int_eq(kc_keyring_mark_get(desc, buf, sizeof(buf)), -ENOKEY);
        ck_assert_int_eq(kc_keyring_mark_set(desc, "CRYPT-LUKS2-one"), 0);
        ck_assert_int_eq(kc_keyring_mark_get(desc, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "CRYPT-LUKS2-one");
        ck_assert_int_eq(kc_keyring_mark_set(desc, "CRYPT-LUKS2-two"), 0);
        ck_assert_int_eq(kc_keyring_mark_get(desc, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "CRYPT-LUKS2-two");
        ck_assert_int_eq(kc_keyring_mark_get(desc, small, sizeof(small)), -ENOBUFS);
        /* A logon key of that description is no mark, nor is the mark a logon key. */
        ck_assert_int_eq(kc_keyring_find_logon(desc, NULL), -ENOKEY);

        in_new_session(read_and_clear_mark, desc);
        ck_assert_int_eq(kc_keyring_mark_get(desc, buf, sizeof(buf)), -ENOKEY);
        ck_assert_int_eq(kc_keyring_mark_clear(desc), 0);

        in_new_session(set_mark_twice, desc);
        ck_assert_int_eq(kc_keyring_mark_get(desc, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "CRYPT-LUKS2-four");
        ck_assert_int_eq(kc_keyring_mark_clear(desc), 0);
        ck_assert_int_eq(kc_keyring_mark_get(desc, buf, sizeof(buf)), -ENOKEY);

        ck_assert_int_eq(kc_keyring_mark_set(desc, ""), -EINVAL);
        ck_assert_int_eq(kc_keyring_mark_set(desc, NULL), -EINVAL);
        ck_assert_int_eq(kc_keyring_mark_set("no-prefix", "x"), -EINVAL);
        ck_assert_int_eq(kc_keyring_mark_set("kmscrypt:with blank", "x"), -EINVAL);
        ck_assert_int_eq(kc_keyring_mark_get(desc, buf, 0), -EINVAL);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("keyring");
        TCase *tc = tcase_create("kernel");
        int r;

        /* ENOKEY means keyctl(2) works; ENOSYS (no CONFIG_KEYS) or EPERM (container seccomp) means it cannot run here. */
        r = kc_keyring_find_logon("kmscrypt:probe-absent", NULL);
        if (r == -ENOSYS || r == -EPERM)
                kc_test_skip("kernel keyring unavailable");

        tcase_add_test(tc, test_add_find_describe);
        tcase_add_test(tc, test_not_readable);
        tcase_add_test(tc, test_add_again_updates);
        tcase_add_test(tc, test_unlink_thread);
        tcase_add_test(tc, test_unlink_not_linked);
        tcase_add_test(tc, test_revoke);
        tcase_add_test(tc, test_invalidate);
        tcase_add_test(tc, test_drop_idempotent_and_no_op);
        tcase_add_loop_test(tc, test_drop_fallback_without_invalidate, 0, 2);
        tcase_add_test(tc, test_thread_keyring_private);
        tcase_add_test(tc, test_invalid_inputs_refused);
        tcase_add_test(tc, test_limits_accepted);
        tcase_add_test(tc, test_volume_description);
        tcase_add_test(tc, test_marks);
        suite_add_tcase(s, tc);
        return s;
}
