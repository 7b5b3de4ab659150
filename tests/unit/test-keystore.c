/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "agent/keystore.h"
#include "lib/secret.h"
#include "tests/unit/check-main.h"

/* The keystore's clock, moved by the tests. */
static time_t fake_now = 1800000000;
static time_t fake_clock(void) {
        return fake_now;
}

static char *new_keystore_dir(void) {
        _cleanup_free_ char *tmp = kc_test_tmpdir();
        char *dir;
        ck_assert_int_ge(asprintf(&dir, "%s/keystore", tmp), 0);
        return dir;
}

static struct kc_keystore *open_ks(const char *dir) {
        struct kc_keystore *ks = NULL;
        struct kc_err err = {};
        int r = kc_keystore_open(dir, NULL, &ks, &err);
        ck_assert_msg(r == 0, "open %s: %s", dir, kc_err_msg(&err, r));
        return ks;
}

static void create(struct kc_keystore *ks, const char *alias, struct kc_key_info *ret) {
        struct kc_err err = {};
        int r = kc_keystore_create_key(ks, alias, "test key", ret, &err);
        ck_assert_msg(r == 0, "create %s: %s", alias, kc_err_msg(&err, r));
}

static char *key_path(const char *dir, const char *id) {
        char *p;
        ck_assert_int_ge(asprintf(&p, "%s/keys/%s.json", dir, id), 0);
        return p;
}

static size_t read_bytes(const char *path, uint8_t *buf, size_t cap) {
        FILE *f = fopen(path, "re");
        size_t n;
        ck_assert_ptr_nonnull(f);
        n = fread(buf, 1, cap, f);
        fclose(f);
        return n;
}

static void write_bytes(const char *path, const void *buf, size_t n) {
        FILE *f = fopen(path, "we");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
        fclose(f);
}

static void setup(void) {
        kc_keystore_set_clock(fake_clock);
        fake_now = 1800000000;
        unsetenv("CREDENTIALS_DIRECTORY");
}

START_TEST(test_create_list_describe) {
        _cleanup_free_ char *dir = new_keystore_dir();
        _cleanup_keystore_ struct kc_keystore *ks = open_ks(dir);
        _cleanup_free_ struct kc_key_info *list = NULL;
        struct kc_key_info a, b, d;
        struct kc_err err = {};
        size_t n = 0;

        create(ks, "alias/pgdata", &a);
        create(ks, NULL, &b);
        ck_assert(kc_keystore_key_id_valid(a.key_id));
        ck_assert_uint_eq(strlen(a.key_id), 36);
        ck_assert_str_ne(a.key_id, b.key_id);
        ck_assert_str_eq(a.provider, "local");
        ck_assert_str_eq(a.alias, "alias/pgdata");
        ck_assert_str_eq(a.description, "test key");
        ck_assert_int_eq(a.state, KC_KEY_ENABLED);
        ck_assert_int_eq(a.created, fake_now);
        ck_assert_uint_eq(a.current_version, 1);
        ck_assert_str_eq(b.alias, "");

        ck_assert_int_eq(kc_keystore_describe(ks, "alias/pgdata", &d, &err), 0);
        ck_assert_str_eq(d.key_id, a.key_id);
        ck_assert_int_eq(kc_keystore_describe(ks, b.key_id, &d, &err), 0);
        ck_assert_str_eq(d.arn + strlen("local:"), b.key_id);

        ck_assert_int_eq(kc_keystore_list(ks, &list, &n, &err), 0);
        ck_assert_uint_eq(n, 2);
        ck_assert(streq(list[0].key_id, a.key_id) || streq(list[1].key_id, a.key_id));

        /* A second handle (another process) sees the same keys. */
        _cleanup_keystore_ struct kc_keystore *ks2 = open_ks(dir);
        ck_assert_int_eq(kc_keystore_describe(ks2, "alias/pgdata", &d, &err), 0);
        ck_assert_str_eq(d.key_id, a.key_id);
}
END_TEST

START_TEST(test_unknown_and_bad_names) {
        _cleanup_free_ char *dir = new_keystore_dir();
        _cleanup_keystore_ struct kc_keystore *ks = open_ks(dir);
        struct kc_key_info info;
        struct kc_err err = {};
        char long_alias[300];

        create(ks, "alias/a", NULL);
        ck_assert_int_eq(kc_keystore_describe(ks, "alias/nope", &info, &err), -ENOKEY);
        ck_assert_str_eq(err.msg, "unknown alias alias/nope");
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_keystore_describe(ks, "00000000-0000-4000-8000-000000000000", &info, &err), -ENOKEY);
        ck_assert_int_eq(kc_keystore_describe(ks, "../../etc/passwd", &info, NULL), -EINVAL);

        err = (struct kc_err) {};
        ck_assert_int_eq(kc_keystore_create_key(ks, "alias/a", NULL, NULL, &err), -EEXIST);
        ck_assert_ptr_nonnull(strstr(err.msg, "already names"));
        ck_assert_int_eq(kc_keystore_create_key(ks, "alias/", NULL, NULL, NULL), -EINVAL);
        ck_assert_int_eq(kc_keystore_create_key(ks, "alias/sp ace", NULL, NULL, NULL), -EINVAL);
        ck_assert_int_eq(kc_keystore_create_key(ks, "pgdata", NULL, NULL, NULL), -EINVAL);
        ck_assert_int_eq(kc_keystore_create_key(ks, "alias/x", "bad\ndescription", NULL, NULL), -EINVAL);

        strcpy(long_alias, "alias/");
        memset(long_alias + 6, 'x', 251);
        long_alias[6 + 251] = '\0';
        ck_assert_int_eq(kc_keystore_create_key(ks, long_alias, NULL, NULL, NULL), -EINVAL);
        long_alias[6 + 250] = '\0';
        ck_assert_int_eq(kc_keystore_create_key(ks, long_alias, NULL, &info, NULL), 0);
        ck_assert_str_eq(info.alias, long_alias);
}
END_TEST

static void assert_mode(const char *path, mode_t want) {
        struct stat st;
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_msg((st.st_mode & 07777) == want, "%s has mode %04o, want %04o", path,
                      (unsigned) (st.st_mode & 07777), (unsigned) want);
}

START_TEST(test_file_modes) {
        _cleanup_free_ char *dir = new_keystore_dir(), *keys = NULL, *root = NULL, *lock = NULL, *file = NULL;
        _cleanup_keystore_ struct kc_keystore *ks = NULL;
        struct kc_key_info a;

        umask(0);   /* modes must not depend on the umask */
        ks = open_ks(dir);
        create(ks, "alias/m", &a);
        ck_assert_int_ge(asprintf(&keys, "%s/keys", dir), 0);
        ck_assert_int_ge(asprintf(&root, "%s/root.key", dir), 0);
        ck_assert_int_ge(asprintf(&lock, "%s/.lock", dir), 0);
        file = key_path(dir, a.key_id);
        assert_mode(dir, 0700);
        assert_mode(keys, 0700);
        assert_mode(root, 0600);
        assert_mode(lock, 0600);
        assert_mode(file, 0600);
        ck_assert_int_eq(kc_keystore_rotate(ks, a.key_id, NULL, NULL), 0);
        assert_mode(file, 0600);
}
END_TEST

/*
 * A keystore that is not there yet (its file system not mounted at boot) is
 * not made anew by readers: calls fail with -ENOENT and nothing is created;
 * once it appears, the same handle uses it.  Only key creation makes it.
 */
START_TEST(test_absent_keystore_not_created) {
        _cleanup_free_ char *dir = new_keystore_dir();
        _cleanup_keystore_ struct kc_keystore *reader = open_ks(dir);
        struct kc_key_info a, b;
        struct kc_err err = {};
        struct stat st;

        ck_assert_int_eq(kc_keystore_describe(reader, "alias/a", &a, &err), -ENOENT);
        ck_assert_msg(strstr(err.msg, "does not exist"), "%s", err.msg);
        ck_assert_int_eq(kc_keystore_rotate(reader, "alias/a", NULL, NULL), -ENOENT);
        ck_assert_int_eq(lstat(dir, &st), -1);
        ck_assert_int_eq(errno, ENOENT);
        {
                _cleanup_keystore_ struct kc_keystore *writer = open_ks(dir);
                create(writer, "alias/a", &a);
        }
        ck_assert_int_eq(kc_keystore_describe(reader, "alias/a", &b, NULL), 0);
        ck_assert_str_eq(a.key_id, b.key_id);
}
END_TEST

/* For readers of the audit trail: an alias to its id, the keystore only read (no .lock, no destruction). */
START_TEST(test_peek_id_reads_only) {
        _cleanup_free_ char *dir = new_keystore_dir(), *lock = NULL, *file = NULL;
        char id[KC_KEYSTORE_KEY_ID_LEN + 1];
        uint8_t before[8192], after[8192];
        struct kc_key_info a, d;
        struct kc_err err = {};
        size_t n;
        time_t date;

        ck_assert_int_eq(kc_keystore_peek_id(dir, NULL, "alias/a", id, &err), -ENOENT);
        ck_assert_int_eq(access(dir, F_OK), -1);
        {
                _cleanup_keystore_ struct kc_keystore *ks = open_ks(dir);
                create(ks, "alias/a", &a);
                ck_assert_int_eq(kc_keystore_schedule_deletion(ks, "alias/a", 7, &date, NULL), 0);
        }
        ck_assert_int_ge(asprintf(&lock, "%s/.lock", dir), 0);
        ck_assert_int_eq(unlink(lock), 0);
        file = key_path(dir, a.key_id);
        n = read_bytes(file, before, sizeof(before));

        /* Past its window: a use would destroy it, a peek leaves it as it is. */
        fake_now = date + 1;
        ck_assert_int_eq(kc_keystore_peek_id(dir, NULL, "alias/a", id, NULL), 0);
        ck_assert_str_eq(id, a.key_id);
        ck_assert_int_eq(kc_keystore_peek_id(dir, NULL, a.key_id, id, NULL), 0);
        ck_assert_str_eq(id, a.key_id);
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_keystore_peek_id(dir, NULL, "alias/b", id, &err), -ENOKEY);
        ck_assert_msg(strstr(err.msg, "alias/b"), "%s", err.msg);
        ck_assert_int_eq(kc_keystore_peek_id(dir, NULL, "b", id, NULL), -EINVAL);
        ck_assert_int_eq(access(lock, F_OK), -1);
        ck_assert_uint_eq(read_bytes(file, after, sizeof(after)), n);
        ck_assert_int_eq(memcmp(before, after, n), 0);
        {
                _cleanup_keystore_ struct kc_keystore *ks = open_ks(dir);
                ck_assert_int_eq(kc_keystore_describe(ks, a.key_id, &d, NULL), 0);
                ck_assert_int_eq(d.state, KC_KEY_DESTROYED);
        }
}
END_TEST

/* For the audit trail's evidence: key files counted by name, whatever their state; nothing created. */
START_TEST(test_count_keys) {
        _cleanup_free_ char *dir = new_keystore_dir(), *stray = NULL, *other = NULL, *lock = NULL;
        struct kc_key_info a, b;
        time_t date;
        size_t n = 99;

        ck_assert_int_eq(kc_keystore_count_keys(dir, &n, NULL), 0);
        ck_assert_uint_eq(n, 0);
        ck_assert_int_eq(access(dir, F_OK), -1);
        {
                _cleanup_keystore_ struct kc_keystore *ks = open_ks(dir);
                create(ks, "alias/a", &a);
                create(ks, NULL, &b);
                ck_assert_int_eq(kc_keystore_schedule_deletion(ks, "alias/a", 7, &date, NULL), 0);
                fake_now = date;
                ck_assert_int_eq(kc_keystore_describe(ks, a.key_id, &a, NULL), 0);
                ck_assert_int_eq(a.state, KC_KEY_DESTROYED);
        }
        /* A temp file, a file of another name: not keys. */
        ck_assert_int_ge(asprintf(&stray, "%s/keys/.%s.json.tmp-x", dir, b.key_id), 0);
        write_bytes(stray, "{}", 2);
        ck_assert_int_ge(asprintf(&other, "%s/keys/README.json", dir), 0);
        write_bytes(other, "{}", 2);
        ck_assert_int_ge(asprintf(&lock, "%s/.lock", dir), 0);
        ck_assert_int_eq(unlink(lock), 0);
        ck_assert_int_eq(kc_keystore_count_keys(dir, &n, NULL), 0);
        ck_assert_uint_eq(n, 2);
        ck_assert_int_eq(access(lock, F_OK), -1);
        ck_assert_int_eq(kc_keystore_count_keys("", &n, NULL), -EINVAL);
}
END_TEST

START_TEST(test_refuses_open_directory) {
        _cleanup_free_ char *dir = new_keystore_dir();
        struct kc_keystore *ks = NULL;
        struct kc_err err = {};

        ck_assert_int_eq(mkdir(dir, 0755), 0);
        ck_assert_int_eq(chmod(dir, 0755), 0);
        ck_assert_int_eq(kc_keystore_open(dir, NULL, &ks, &err), -EPERM);
        ck_assert_ptr_null(ks);
        ck_assert_ptr_nonnull(strstr(err.msg, "group or others"));
}
END_TEST

static void use(struct kc_keystore *ks, const char *key, uint32_t version, uint8_t out[32], uint32_t *ret_version) {
        const uint8_t *cmk;
        char id[KC_KEYSTORE_KEY_ID_LEN + 1];
        struct kc_err err = {};
        int r = kc_keystore_use_key(ks, key, version, &cmk, id, ret_version, &err);
        ck_assert_msg(r == 0, "use %s: %s", key, kc_err_msg(&err, r));
        memcpy(out, cmk, 32);
}

START_TEST(test_rotate_keeps_old_versions) {
        _cleanup_free_ char *dir = new_keystore_dir();
        _cleanup_keystore_ struct kc_keystore *ks = open_ks(dir);
        uint8_t v1[32], v2[32], again[32];
        uint32_t version = 0, got;
        struct kc_key_info a;

        create(ks, "alias/r", &a);
        use(ks, "alias/r", 0, v1, &got);
        ck_assert_uint_eq(got, 1);
        ck_assert_int_eq(kc_keystore_rotate(ks, "alias/r", &version, NULL), 0);
        ck_assert_uint_eq(version, 2);
        use(ks, "alias/r", 0, v2, &got);
        ck_assert_uint_eq(got, 2);
        ck_assert(memcmp(v1, v2, 32) != 0);

        /* A fresh handle unwraps the same material from disk. */
        _cleanup_keystore_ struct kc_keystore *ks2 = open_ks(dir);
        use(ks2, a.key_id, 1, again, &got);
        ck_assert_mem_eq(again, v1, 32);
        use(ks2, a.key_id, 2, again, &got);
        ck_assert_mem_eq(again, v2, 32);
        ck_assert_int_eq(kc_keystore_use_key(ks2, a.key_id, 3, &(const uint8_t *) { NULL }, (char[37]) {}, &got, NULL),
                         -EBADMSG);
        ck_assert_int_eq(kc_keystore_describe(ks2, a.key_id, &a, NULL), 0);
        ck_assert_uint_eq(a.versions, 2);
        ck_assert_uint_eq(a.current_version, 2);
}
END_TEST

static int use_rc(struct kc_keystore *ks, const char *key, struct kc_err *err) {
        const uint8_t *cmk;
        char id[KC_KEYSTORE_KEY_ID_LEN + 1];
        uint32_t v;
        *err = (struct kc_err) {};
        return kc_keystore_use_key(ks, key, 0, &cmk, id, &v, err);
}

START_TEST(test_disable_enable_seen_by_other_handle) {
        _cleanup_free_ char *dir = new_keystore_dir();
        _cleanup_keystore_ struct kc_keystore *agent = open_ks(dir), *cli = open_ks(dir);
        struct kc_err err;

        create(cli, "alias/d", NULL);
        ck_assert_int_eq(use_rc(agent, "alias/d", &err), 0);      /* agent caches it */
        ck_assert_int_eq(kc_keystore_set_enabled(cli, "alias/d", false, NULL), 0);
        ck_assert_int_eq(use_rc(agent, "alias/d", &err), -EKEYREVOKED);
        ck_assert_ptr_nonnull(strstr(err.msg, "disabled"));
        ck_assert_int_eq(kc_keystore_set_enabled(cli, "alias/d", true, NULL), 0);
        ck_assert_int_eq(use_rc(agent, "alias/d", &err), 0);
}
END_TEST

/* A writer killed right after its rename (kill -9, OOM): the change is counted, the agent sees it. */
START_TEST(test_disable_seen_after_writer_killed) {
        _cleanup_free_ char *dir = new_keystore_dir();
        _cleanup_keystore_ struct kc_keystore *agent = open_ks(dir);
        struct kc_err err;
        int status;
        pid_t pid;

        create(agent, "alias/k", NULL);
        ck_assert_int_eq(use_rc(agent, "alias/k", &err), 0);      /* agent caches it */
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                struct kc_keystore *cli = open_ks(dir);

                setenv("KC_FAULT_STEP", "keystore:after-rename", 1);
                (void) kc_keystore_set_enabled(cli, "alias/k", false, NULL);
                _exit(0);       /* not reached: the fault point kills */
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        ck_assert_int_eq(use_rc(agent, "alias/k", &err), -EKEYREVOKED);
        ck_assert_ptr_nonnull(strstr(err.msg, "disabled"));
}
END_TEST

START_TEST(test_deletion_window) {
        _cleanup_free_ char *dir = new_keystore_dir(), *file = NULL;
        _cleanup_keystore_ struct kc_keystore *ks = open_ks(dir);
        struct kc_key_info a, d;
        struct kc_err err = {};
        time_t date = 0;
        uint8_t text[8192];
        size_t n;

        create(ks, "alias/del", &a);
        ck_assert_int_eq(kc_keystore_schedule_deletion(ks, "alias/del", 6, &date, &err), -EINVAL);
        ck_assert_int_eq(kc_keystore_schedule_deletion(ks, "alias/del", 31, &date, NULL), -EINVAL);
        ck_assert_int_eq(date, 0);
        ck_assert_int_eq(kc_keystore_schedule_deletion(ks, "alias/del", 7, &date, NULL), 0);
        ck_assert_int_eq(date, fake_now + 7 * 86400);
        ck_assert_int_eq(kc_keystore_schedule_deletion(ks, "alias/del", 7, &date, NULL), -EKEYEXPIRED);

        ck_assert_int_eq(use_rc(ks, "alias/del", &err), -EKEYEXPIRED);
        ck_assert_int_eq(kc_keystore_set_enabled(ks, "alias/del", true, NULL), -EKEYEXPIRED);
        ck_assert_int_eq(kc_keystore_rotate(ks, "alias/del", NULL, NULL), -EKEYEXPIRED);
        ck_assert_int_eq(kc_keystore_describe(ks, "alias/del", &d, NULL), 0);
        ck_assert_int_eq(d.state, KC_KEY_PENDING_DELETION);
        ck_assert_int_eq(d.deletion_date, date);

        /* Cancel: back to Disabled, like AWS. */
        ck_assert_int_eq(kc_keystore_cancel_deletion(ks, "alias/del", NULL), 0);
        ck_assert_int_eq(kc_keystore_describe(ks, "alias/del", &d, NULL), 0);
        ck_assert_int_eq(d.state, KC_KEY_DISABLED);
        ck_assert_int_eq(d.deletion_date, 0);
        ck_assert_int_eq(kc_keystore_cancel_deletion(ks, "alias/del", NULL), -EINVAL);

        /* Schedule again, then let the window pass: the next use destroys it. */
        ck_assert_int_eq(kc_keystore_schedule_deletion(ks, a.key_id, 30, &date, NULL), 0);
        fake_now = date - 1;
        ck_assert_int_eq(use_rc(ks, a.key_id, &err), -EKEYEXPIRED);
        fake_now = date;
        ck_assert_int_eq(use_rc(ks, a.key_id, &err), -EKEYREJECTED);
        ck_assert_ptr_nonnull(strstr(err.msg, "destroyed"));
        ck_assert_int_eq(kc_keystore_describe(ks, a.key_id, &d, NULL), 0);
        ck_assert_int_eq(d.state, KC_KEY_DESTROYED);
        ck_assert_uint_eq(d.versions, 1);
        ck_assert_int_eq(kc_keystore_cancel_deletion(ks, a.key_id, NULL), -EKEYREJECTED);
        ck_assert_int_eq(kc_keystore_set_enabled(ks, a.key_id, true, NULL), -EKEYREJECTED);

        /* The tombstone holds no material, and the alias is free again (AWS deletes aliases). */
        file = key_path(dir, a.key_id);
        n = read_bytes(file, text, sizeof(text) - 1);
        text[n] = '\0';
        ck_assert_ptr_null(strstr((char *) text, "material"));
        ck_assert_ptr_nonnull(strstr((char *) text, "\"Destroyed\""));
        ck_assert_int_eq(kc_keystore_describe(ks, "alias/del", &d, NULL), -ENOKEY);
        create(ks, "alias/del", &d);
        ck_assert_str_ne(d.key_id, a.key_id);
}
END_TEST

START_TEST(test_destroyed_on_write_open) {
        _cleanup_free_ char *dir = new_keystore_dir();
        _cleanup_keystore_ struct kc_keystore *ks = open_ks(dir);
        struct kc_key_info a, d;
        time_t date;

        create(ks, NULL, &a);
        ck_assert_int_eq(kc_keystore_schedule_deletion(ks, a.key_id, 10, &date, NULL), 0);
        fake_now = date + 1;
        /* Any write (here: creating another key) destroys what is due, in another handle too. */
        _cleanup_keystore_ struct kc_keystore *other = open_ks(dir);
        create(other, NULL, NULL);
        fake_now = date - 100;   /* even if the clock now disagrees, the tombstone stays */
        ck_assert_int_eq(kc_keystore_describe(ks, a.key_id, &d, NULL), 0);
        ck_assert_int_eq(d.state, KC_KEY_DESTROYED);
}
END_TEST

/* Every operation on a damaged file fails with -EUCLEAN naming the file, and leaves it as it was. */
static void assert_corruption_refused(const char *dir, const char *id, const char *alias) {
        _cleanup_free_ char *file = key_path(dir, id);
        _cleanup_free_ struct kc_key_info *list = NULL;
        _cleanup_keystore_ struct kc_keystore *ks = open_ks(dir);
        static uint8_t before[65536], after[65536];
        size_t n_before = read_bytes(file, before, sizeof(before)), n;
        const char *refs[] = { id, alias };
        struct kc_key_info info;
        struct kc_err err;
        time_t date;
        int r;

        for (size_t i = 0; i < ARRAY_SIZE(refs); i++) {
                const char *ref = refs[i];
                int results[7];

                err = (struct kc_err) {};
                results[0] = kc_keystore_describe(ks, ref, &info, &err);
                ck_assert_msg(results[0] == -EUCLEAN, "describe %s: %d %s", ref, results[0], err.msg);
                ck_assert_msg(strstr(err.msg, file), "message \"%s\" does not name %s", err.msg, file);
                results[1] = use_rc(ks, ref, &err);
                results[2] = kc_keystore_set_enabled(ks, ref, false, NULL);
                results[3] = kc_keystore_rotate(ks, ref, NULL, NULL);
                results[4] = kc_keystore_schedule_deletion(ks, ref, 7, &date, NULL);
                results[5] = kc_keystore_cancel_deletion(ks, ref, NULL);
                results[6] = kc_keystore_set_enabled(ks, ref, true, NULL);
                for (size_t j = 1; j < ARRAY_SIZE(results); j++)
                        ck_assert_msg(results[j] == -EUCLEAN, "operation %zu on %s: %d", j, ref, results[j]);
                n = read_bytes(file, after, sizeof(after));
                ck_assert_uint_eq(n, n_before);
                ck_assert_mem_eq(after, before, n);
        }
        size_t count;
        ck_assert_int_eq(kc_keystore_list(ks, &list, &count, NULL), -EUCLEAN);
        /* The alias might be in the unreadable file: a new key may not take it. */
        ck_assert_int_eq(kc_keystore_create_key(ks, alias, NULL, NULL, NULL), -EUCLEAN);
        /* Keys in other files keep working, and writing them leaves the damaged file alone. */
        r = kc_keystore_create_key(ks, NULL, NULL, &info, &err);
        ck_assert_int_eq(r, 0);
        ck_assert_int_eq(kc_keystore_rotate(ks, info.key_id, NULL, NULL), 0);
        n = read_bytes(file, after, sizeof(after));
        ck_assert_uint_eq(n, n_before);
        ck_assert_mem_eq(after, before, n);
}

static void corrupt_and_check(void (*damage)(uint8_t *text, size_t *n)) {
        _cleanup_free_ char *dir = new_keystore_dir(), *file = NULL;
        static uint8_t text[65536];
        struct kc_key_info a;
        size_t n;

        {
                _cleanup_keystore_ struct kc_keystore *ks = open_ks(dir);
                create(ks, "alias/victim", &a);
                ck_assert_int_eq(kc_keystore_rotate(ks, a.key_id, NULL, NULL), 0);
        }
        file = key_path(dir, a.key_id);
        n = read_bytes(file, text, sizeof(text));
        damage(text, &n);
        write_bytes(file, text, n);
        assert_corruption_refused(dir, a.key_id, "alias/victim");
}

static void flip_state(uint8_t *text, size_t *n) {
        /* A valid JSON edit an attacker would make: change the state by hand. */
        char *s = strstr((char *) text, "\"Enabled\"");
        ck_assert_ptr_nonnull(s);
        memmove(s + 10, s + 9, *n - (size_t) ((uint8_t *) s + 9 - text));
        memcpy(s, "\"Disabled\"", 10);
        (*n)++;
}

static void flip_material_byte(uint8_t *text, size_t *n) {
        char *s = strstr((char *) text, "\"material\"");
        ck_assert_ptr_nonnull(s);
        s = strchr(s + 10, '"') + 5;
        *s = *s == 'A' ? 'B' : 'A';
}

static void flip_description_byte(uint8_t *text, size_t *n) {
        char *s = strstr((char *) text, "test key");
        ck_assert_ptr_nonnull(s);
        s[0] = 'b';   /* still valid JSON, only the MAC can tell */
}

static void truncate_half(uint8_t *text, size_t *n) {
        *n /= 2;
}

/* Text after the object: every value, so the MAC, is as written; the file is not. */
static void append(uint8_t *text, size_t *n, const char *tail, size_t len) {
        memcpy(text + *n, tail, len);
        *n += len;
}

static void append_text(uint8_t *text, size_t *n) { append(text, n, "\ngarbage\n", 9); }
static void append_object(uint8_t *text, size_t *n) { append(text, n, "{}", 2); }
static void append_after_nul(uint8_t *text, size_t *n) { append(text, n, "\0garbage", 8); }

START_TEST(test_corrupt_state) { corrupt_and_check(flip_state); }
END_TEST
START_TEST(test_corrupt_material) { corrupt_and_check(flip_material_byte); }
END_TEST
START_TEST(test_corrupt_mac_only) { corrupt_and_check(flip_description_byte); }
END_TEST
START_TEST(test_corrupt_truncated) { corrupt_and_check(truncate_half); }
END_TEST

START_TEST(test_corrupt_appended_text) { corrupt_and_check(append_text); }
END_TEST
START_TEST(test_corrupt_appended_object) { corrupt_and_check(append_object); }
END_TEST
START_TEST(test_corrupt_appended_after_nul) { corrupt_and_check(append_after_nul); }
END_TEST

/* describe of a one-key keystore whose file has tail (n bytes) appended; its path in *ret_file. */
static int describe_with_tail(const char *tail, size_t n, char **ret_file, struct kc_err *err) {
        _cleanup_free_ char *dir = new_keystore_dir();
        _cleanup_keystore_ struct kc_keystore *ks = open_ks(dir);
        static uint8_t text[65536];
        struct kc_key_info a;
        size_t len;

        create(ks, "alias/a", &a);
        *ret_file = key_path(dir, a.key_id);
        len = read_bytes(*ret_file, text, sizeof(text));
        append(text, &len, tail, n);
        write_bytes(*ret_file, text, len);
        kc_keystore_close(TAKE_PTR(ks));
        ks = open_ks(dir);
        return kc_keystore_describe(ks, a.key_id, &a, err);
}

/* Whitespace after the object is part of a JSON text (RFC 8259); anything else is named. */
START_TEST(test_trailing_text_named) {
        _cleanup_free_ char *spaced = NULL, *file = NULL;
        struct kc_err err = {};

        ck_assert_int_eq(describe_with_tail(" \n\t\r\n", 5, &spaced, &err), 0);
        ck_assert_int_eq(describe_with_tail("\nx", 2, &file, &err), -EUCLEAN);
        ck_assert_msg(strstr(err.msg, file) && strstr(err.msg, "data after the object") && !strchr(err.msg, '\n'),
                      "message: %s", err.msg);
}
END_TEST

START_TEST(test_swapped_file_detected) {
        _cleanup_free_ char *dir = new_keystore_dir(), *fa = NULL, *fb = NULL;
        static uint8_t text[65536];
        struct kc_key_info a, b;
        struct kc_err err = {};
        size_t n;

        {
                _cleanup_keystore_ struct kc_keystore *ks = open_ks(dir);
                create(ks, "alias/a", &a);
                create(ks, "alias/b", &b);
        }
        fa = key_path(dir, a.key_id);
        fb = key_path(dir, b.key_id);
        n = read_bytes(fa, text, sizeof(text));
        write_bytes(fb, text, n);
        _cleanup_keystore_ struct kc_keystore *ks = open_ks(dir);
        ck_assert_int_eq(kc_keystore_describe(ks, b.key_id, &b, &err), -EUCLEAN);
        ck_assert_ptr_nonnull(strstr(err.msg, "holds key"));
}
END_TEST

START_TEST(test_wrong_root_key) {
        _cleanup_free_ char *dir = new_keystore_dir(), *root = NULL;
        struct kc_key_info a;
        struct kc_err err = {};
        uint8_t other[32] = { 1, 2, 3 };

        {
                _cleanup_keystore_ struct kc_keystore *ks = open_ks(dir);
                create(ks, "alias/a", &a);
        }
        ck_assert_int_ge(asprintf(&root, "%s/root.key", dir), 0);
        write_bytes(root, other, sizeof(other));
        _cleanup_keystore_ struct kc_keystore *ks = open_ks(dir);
        ck_assert_int_eq(kc_keystore_describe(ks, a.key_id, &a, &err), -EUCLEAN);
        ck_assert_ptr_nonnull(strstr(err.msg, "MAC"));

        write_bytes(root, other, 31);
        struct kc_keystore *bad = NULL;
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_keystore_open(dir, NULL, &bad, &err), -EUCLEAN);
        ck_assert_ptr_nonnull(strstr(err.msg, "not 32 bytes"));

        ck_assert_int_eq(unlink(root), 0);
        _cleanup_keystore_ struct kc_keystore *none = open_ks(dir);
        err = (struct kc_err) {};
        /* Unavailable (kmscrypt status 5), not "no such key" (-ENOENT, status 3): the key is there. */
        ck_assert_int_eq(kc_keystore_describe(none, a.key_id, &a, &err), -EAGAIN);
        ck_assert_ptr_nonnull(strstr(err.msg, "holds keys but its root key"));
}
END_TEST

START_TEST(test_root_key_credential_wins) {
        _cleanup_free_ char *dir = new_keystore_dir(), *creds = kc_test_tmpdir(), *cred = NULL, *root = NULL;
        uint8_t key[32];
        struct kc_key_info a, d;
        struct kc_err err = {};
        struct stat st;

        for (size_t i = 0; i < sizeof(key); i++)
                key[i] = (uint8_t) (i * 7 + 1);
        ck_assert_int_ge(asprintf(&cred, "%s/kmscrypt-root-key", creds), 0);
        ck_assert_int_ge(asprintf(&root, "%s/root.key", dir), 0);
        write_bytes(cred, key, sizeof(key));
        ck_assert_int_eq(chmod(cred, 0400), 0);
        ck_assert_int_eq(setenv("CREDENTIALS_DIRECTORY", creds, 1), 0);
        {
                _cleanup_keystore_ struct kc_keystore *ks = open_ks(dir);
                create(ks, "alias/c", &a);
        }
        /* No root key was written into the keystore: the credential was used. */
        ck_assert_int_eq(stat(root, &st), -1);
        {
                _cleanup_keystore_ struct kc_keystore *ks = open_ks(dir);
                ck_assert_int_eq(kc_keystore_describe(ks, "alias/c", &d, &err), 0);
        }
        /* Without the credential the keys cannot be read. */
        unsetenv("CREDENTIALS_DIRECTORY");
        _cleanup_keystore_ struct kc_keystore *ks = open_ks(dir);
        ck_assert_int_eq(kc_keystore_describe(ks, "alias/c", &d, NULL), -EAGAIN);
}
END_TEST

START_TEST(test_root_key_file_elsewhere) {
        _cleanup_free_ char *dir = new_keystore_dir(), *other = kc_test_tmpdir(), *root = NULL;
        struct kc_keystore *ks = NULL;
        struct kc_key_info a;
        struct kc_err err = {};
        struct stat st;

        ck_assert_int_ge(asprintf(&root, "%s/root.key", other), 0);
        ck_assert_int_eq(kc_keystore_open(dir, root, &ks, &err), 0);
        create(ks, NULL, &a);
        kc_keystore_close(ks);
        ck_assert_int_eq(stat(root, &st), 0);
        ck_assert_int_eq(st.st_size, 32);
        ck_assert_int_eq(st.st_mode & 0777, 0600);
        ck_assert_int_eq(kc_keystore_open(dir, root, &ks, &err), 0);
        ck_assert_int_eq(kc_keystore_describe(ks, a.key_id, &a, &err), 0);
        kc_keystore_close(ks);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("keystore");
        TCase *tc = tcase_create("core");
        tcase_add_checked_fixture(tc, setup, NULL);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_create_list_describe);
        tcase_add_test(tc, test_unknown_and_bad_names);
        tcase_add_test(tc, test_file_modes);
        tcase_add_test(tc, test_refuses_open_directory);
        tcase_add_test(tc, test_absent_keystore_not_created);
        tcase_add_test(tc, test_peek_id_reads_only);
        tcase_add_test(tc, test_count_keys);
        tcase_add_test(tc, test_rotate_keeps_old_versions);
        tcase_add_test(tc, test_disable_enable_seen_by_other_handle);
        tcase_add_test(tc, test_disable_seen_after_writer_killed);
        tcase_add_test(tc, test_deletion_window);
        tcase_add_test(tc, test_destroyed_on_write_open);
        tcase_add_test(tc, test_corrupt_state);
        tcase_add_test(tc, test_corrupt_material);
        tcase_add_test(tc, test_corrupt_mac_only);
        tcase_add_test(tc, test_corrupt_truncated);
        tcase_add_test(tc, test_corrupt_appended_text);
        tcase_add_test(tc, test_corrupt_appended_object);
        tcase_add_test(tc, test_corrupt_appended_after_nul);
        tcase_add_test(tc, test_trailing_text_named);
        tcase_add_test(tc, test_swapped_file_detected);
        tcase_add_test(tc, test_wrong_root_key);
        tcase_add_test(tc, test_root_key_credential_wins);
        tcase_add_test(tc, test_root_key_file_elsewhere);
        suite_add_tcase(s, tc);
        return s;
}
