/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>

#include "tests/unit/check-main.h"
#include "udev/unit-name.h"

static void expect_escape(const char *in, const char *want) {
        char *out = NULL;

        ck_assert_int_eq(kc_unit_name_escape(in, &out), 0);
        ck_assert_str_eq(out, want);
        free(out);
}

static void expect_path(const char *in, const char *want) {
        char *out = NULL;

        ck_assert_int_eq(kc_unit_name_from_path(in, ".device", &out), 0);
        ck_assert_str_eq(out, want);
        free(out);
}

/* Expected values are what `systemd-escape` and `systemd-escape -p` print. */
START_TEST(escape_names) {
        expect_escape("pgdata", "pgdata");
        expect_escape("pg-data", "pg\\x2ddata");
        expect_escape("db.wal_1:x", "db.wal_1:x");
        expect_escape(".hidden", "\\x2ehidden");
        expect_escape("a b/c", "a\\x20b-c");
}
END_TEST

START_TEST(escape_paths) {
        expect_path("/dev/mapper/pg-data", "dev-mapper-pg\\x2ddata.device");
        expect_path("/dev/disk/by-uuid/0b7e-11", "dev-disk-by\\x2duuid-0b7e\\x2d11.device");
        expect_path("//dev//vdb/", "dev-vdb.device");
        expect_path("/", "-.device");
}
END_TEST

START_TEST(refuse_bad_input) {
        char *out = NULL;

        ck_assert_int_eq(kc_unit_name_escape("", &out), -EINVAL);
        ck_assert_int_eq(kc_unit_name_from_path("dev/vdb", ".device", &out), -EINVAL);
        ck_assert_int_eq(kc_udev_escape_tag("", &out), -EINVAL);
        ck_assert_ptr_null(out);
}
END_TEST

START_TEST(udev_tags) {
        char *out = NULL;

        ck_assert_int_eq(kc_udev_escape_tag("my disk/1", &out), 0);
        ck_assert_str_eq(out, "my\\x20disk\\x2f1");
        free(out);
        /* As udev's by-label links: blkid's set kept, anything else hex, UTF-8 kept. */
        ck_assert_int_eq(kc_udev_escape_tag("db(1),$x#+-.:=@_\xc3\xa9", &out), 0);
        ck_assert_str_eq(out, "db\\x281\\x29\\x2c\\x24x#+-.:=@_\xc3\xa9");
        free(out);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("unit-name");
        TCase *tc = tcase_create("escape");

        tcase_add_test(tc, escape_names);
        tcase_add_test(tc, escape_paths);
        tcase_add_test(tc, refuse_bad_input);
        tcase_add_test(tc, udev_tags);
        suite_add_tcase(s, tc);
        return s;
}
