/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/error.h"
#include "lib/fileio.h"
#include "lib/macro.h"
#include "lib/secret.h"
#include "tests/unit/check-main.h"

static char *file_with(const char *text) {
        _cleanup_free_ char *dir = kc_test_tmpdir();
        char *path;
        FILE *f;

        ck_assert_int_ge(asprintf(&path, "%s/f", dir), 0);
        f = fopen(path, "we");
        ck_assert_ptr_nonnull(f);
        fputs(text, f);
        ck_assert_int_eq(fclose(f), 0);
        return path;
}

START_TEST(test_whole_file_nul_terminated) {
        _cleanup_free_ char *path = file_with("a = b\n"), *buf = NULL;
        size_t len = 0;

        ck_assert_int_eq(kc_read_small_file(path, 64, &buf, &len, NULL), 0);
        ck_assert_uint_eq(len, 6);
        ck_assert_str_eq(buf, "a = b\n");
}
END_TEST

START_TEST(test_limit_is_inclusive) {
        _cleanup_free_ char *path = file_with("12345678"), *buf = NULL;
        struct kc_err err = {};
        char *none = NULL;

        ck_assert_int_eq(kc_read_small_file(path, 8, &buf, NULL, NULL), 0);
        ck_assert_int_eq(kc_read_small_file(path, 7, &none, NULL, &err), -EFBIG);
        ck_assert_ptr_null(none);
        ck_assert_msg(strstr(err.msg, "larger than 7 bytes"), "%s", err.msg);
}
END_TEST

START_TEST(test_refusals_name_the_path) {
        _cleanup_free_ char *dir = kc_test_tmpdir(), *missing = NULL, *fifo = NULL;
        struct kc_err err = {};
        char *none = NULL;

        ck_assert_int_eq(kc_read_small_file(dir, 64, &none, NULL, &err), -EINVAL);
        ck_assert_msg(strstr(err.msg, "not a regular file") && strstr(err.msg, dir), "%s", err.msg);
        ck_assert_int_ge(asprintf(&fifo, "%s/fifo", dir), 0);
        ck_assert_int_eq(mkfifo(fifo, 0600), 0);
        err = (struct kc_err) {};
        /* Refused at once: an open that waits for a writer would hang here until the test times out. */
        ck_assert_int_eq(kc_read_small_file(fifo, 64, &none, NULL, &err), -EINVAL);
        ck_assert_msg(strstr(err.msg, "not a regular file") && strstr(err.msg, fifo), "%s", err.msg);
        unlink(fifo);
        ck_assert_int_ge(asprintf(&missing, "%s/nothing", dir), 0);
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_read_small_file(missing, 64, &none, NULL, &err), -ENOENT);
        ck_assert_msg(strstr(err.msg, missing), "%s", err.msg);
        ck_assert_ptr_null(none);
}
END_TEST

/*
 * A file that yields more than its fstat() size is refused, not cut at that
 * size: /proc files are regular files of size 0 with content, which is the
 * same thing as a file growing between fstat() and read().
 */
START_TEST(test_growth_while_reading_refused) {
        _cleanup_close_ int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
        char *none = NULL;

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(kc_read_full_fd(fd, 1 << 20, 0, &none, NULL), -EFBIG);
        ck_assert_ptr_null(none);
}
END_TEST

START_TEST(test_secret_buffer) {
        _cleanup_free_ char *path = file_with("aws_secret_access_key = x\n");
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_secret_ char *buf = NULL;

        ck_assert_int_eq(kc_read_full_fd(fd, 4096, KC_READ_SECRET, &buf, NULL), 0);
        ck_assert_uint_ge(kc_secret_size(buf), strlen(buf) + 1);
        ck_assert_str_eq(buf, "aws_secret_access_key = x\n");
}
END_TEST

START_TEST(test_size_of_files_and_nothing_else) {
        _cleanup_free_ char *path = file_with("12345"), *dir = kc_test_tmpdir();
        uint64_t size = 0;

        ck_assert_int_eq(kc_path_size(path, &size), 0);
        ck_assert_uint_eq(size, 5);
        /* Neither a directory nor a character device has a size a volume could use. */
        ck_assert_int_eq(kc_path_size(dir, &size), -ENOTBLK);
        ck_assert_int_eq(kc_path_size("/dev/null", &size), -ENOTBLK);
        ck_assert_int_eq(kc_path_size("/nonexistent/kmscrypt", &size), -ENOENT);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("fileio");
        TCase *tc = tcase_create("core");
        tcase_add_test(tc, test_whole_file_nul_terminated);
        tcase_add_test(tc, test_limit_is_inclusive);
        tcase_add_test(tc, test_refusals_name_the_path);
        tcase_add_test(tc, test_growth_while_reading_refused);
        tcase_add_test(tc, test_secret_buffer);
        tcase_add_test(tc, test_size_of_files_and_nothing_else);
        suite_add_tcase(s, tc);
        return s;
}
