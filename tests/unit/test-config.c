/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "agent/config.h"
#include "tests/unit/check-main.h"

static void clear_env(void) {
        static const char *const vars[] = { "KMSCRYPT_CONFIG", "KMSCRYPT_KEYSTORE", "KMSCRYPT_AUDIT_LOG",
                                            "KMSCRYPT_AUDIT_HEAD", "KMSCRYPT_ROOT_KEY_FILE" };
        for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
                unsetenv(vars[i]);
}

static char *write_file(const char *text) {
        _cleanup_free_ char *dir = kc_test_tmpdir();
        char *path;
        FILE *f;

        ck_assert_int_ge(asprintf(&path, "%s/kmscrypt.conf", dir), 0);
        f = fopen(path, "we");
        ck_assert_ptr_nonnull(f);
        fputs(text, f);
        fclose(f);
        return path;
}

/* Parse text into fresh defaults; returns r and the message. */
static int parse(const char *text, struct kc_config *c, struct kc_err *err) {
        ck_assert_int_eq(kc_config_init(c), 0);
        return kc_config_parse_text(c, text, strlen(text), "test.conf", err);
}

START_TEST(test_defaults) {
        struct kc_config c;

        ck_assert_int_eq(kc_config_init(&c), 0);
        ck_assert_ptr_nonnull(c.keystore_dir);
        ck_assert_ptr_nonnull(c.audit_log);
        ck_assert_ptr_null(c.audit_head);
        ck_assert_ptr_null(c.root_key_file);
        ck_assert_uint_eq(c.deletion_window_days, 30);
        ck_assert(c.syslog);
        ck_assert(!c.initramfs_keystore);      /* the keystore stays out of an initramfs unless asked */
        kc_config_done(&c);
        kc_config_done(&c);   /* twice is harmless */
}
END_TEST

START_TEST(test_full_file) {
        struct kc_config c;
        struct kc_err err = {};
        const char *text =
                "# kmscrypt\n"
                "\n"
                "keystore = /srv/ks\n"
                "  audit-log=/srv/audit.log  \n"
                "audit-head = /srv/audit.head\r\n"
                "root-key-file = /run/credentials/root.key\n"
                "default-key = alias/pgdata\n"
                "deletion-window-days = 7\n"
                "log-level = debug\n"
                "aws-endpoint = https://kms.example.test:8443/\n"
                "aws-region = us-gov-east-1\n"
                "aws-ca-file = /etc/kmscrypt/aws-ca.pem\n"
                "initramfs-keystore = yes\n"
                "syslog = no";   /* last line without newline */

        ck_assert_int_eq(parse(text, &c, &err), 0);
        ck_assert_str_eq(c.keystore_dir, "/srv/ks");
        ck_assert_str_eq(c.audit_log, "/srv/audit.log");
        ck_assert_str_eq(c.audit_head, "/srv/audit.head");
        ck_assert_str_eq(c.root_key_file, "/run/credentials/root.key");
        ck_assert_str_eq(c.default_key, "alias/pgdata");
        ck_assert_uint_eq(c.deletion_window_days, 7);
        ck_assert_int_eq(c.log_level, LOG_DEBUG);
        ck_assert(!c.syslog);
        ck_assert(c.initramfs_keystore);
        ck_assert_str_eq(c.aws_endpoint, "https://kms.example.test:8443/");
        ck_assert_str_eq(c.aws_region, "us-gov-east-1");
        ck_assert_str_eq(c.aws_ca_file, "/etc/kmscrypt/aws-ca.pem");
        kc_config_done(&c);
}
END_TEST

/* Each bad line, the errno, and a piece of the message that must name what is wrong and where. */
static const struct {
        const char *text;
        int error;
        const char *msg;
} bad[] = {
        { "keystore = /a\nkeystroe = /b\n", -EINVAL, "test.conf:2: unknown key \"keystroe\"" },
        { "keystore /a\n", -EINVAL, "test.conf:1: expected \"key = value\"" },
        { "= /a\n", -EINVAL, "test.conf:1: missing key" },
        { "keystore =\n", -EINVAL, "test.conf:1: keystore: empty value" },
        { "keystore = relative/dir\n", -EINVAL, "test.conf:1: keystore: path must be absolute" },
        { "#\n\nkeystore = /a\nkeystore = /b\n", -EINVAL, "test.conf:4: \"keystore\" already set on line 3" },
        { "deletion-window-days = 6\n", -EINVAL, "test.conf:1: deletion-window-days: expected a number" },
        { "deletion-window-days = 31\n", -EINVAL, "from 7 to 30" },
        { "deletion-window-days = 10days\n", -EINVAL, "\"10days\"" },
        { "deletion-window-days = -7\n", -EINVAL, "\"-7\"" },
        { "deletion-window-days = 99999999999999999999\n", -EINVAL, "deletion-window-days" },
        { "log-level = loud\n", -EINVAL, "log-level: expected err" },
        { "syslog = maybe\n", -EINVAL, "syslog: expected yes or no" },
        { "initramfs-keystore = always\n", -EINVAL, "test.conf:1: initramfs-keystore: expected yes or no" },
        { "initramfs-keystore =\n", -EINVAL, "initramfs-keystore: empty value" },
        { "initramfs-keystore = yes\ninitramfs-keystore = no\n", -EINVAL, "test.conf:2: \"initramfs-keystore\" already set" },
        { "default-key = alias/a b\n", -EINVAL, "default-key: not a key reference" },
        { "[global]\n", -EINVAL, "test.conf:1: expected" },
        { "audit-log = /a\tb\n", -EINVAL, "control character" },
        { "aws-endpoint = kms.eu-west-1.amazonaws.com\n", -EINVAL, "test.conf:1: aws-endpoint: expected an https://" },
        { "aws-endpoint = ftp://kms.test/\n", -EINVAL, "aws-endpoint: expected an https:// or http:// URL" },
        { "aws-endpoint = https://\n", -EINVAL, "aws-endpoint: URL has no host" },
        { "aws-endpoint = https://:443/\n", -EINVAL, "aws-endpoint: URL has no host" },
        { "aws-endpoint = https://user:pw@kms.test/\n", -EINVAL, "aws-endpoint: URL may not hold" },
        { "aws-endpoint = https://kms.test/?a=b\n", -EINVAL, "aws-endpoint: URL may not hold" },
        { "aws-endpoint = https://kms test/\n", -EINVAL, "aws-endpoint: URL may not hold" },
        /* SigV4 signs the path "/": an endpoint under a path would have every request refused. */
        { "aws-endpoint = https://kms.test/kms/\n", -EINVAL,
          "test.conf:1: aws-endpoint: URL may not have a path (/kms/): requests are signed for \"/\": https://kms.test/kms/" },
        { "aws-endpoint = http://127.0.0.1:4566/x\n", -EINVAL, "test.conf:1: aws-endpoint: URL may not have a path (/x)" },
        { "aws-endpoint = https://a\naws-endpoint = https://b\n", -EINVAL, "test.conf:2: \"aws-endpoint\" already set" },
        { "aws-region = EU-WEST-1\n", -EINVAL, "aws-region: not an AWS region name: \"EU-WEST-1\"" },
        { "aws-region = eu_west_1\n", -EINVAL, "aws-region: not an AWS region name" },
        { "aws-region = 1eu\n", -EINVAL, "aws-region: not an AWS region name" },
        { "aws-region = eu-west-\n", -EINVAL, "aws-region: not an AWS region name" },
        { "aws-region = abcdefghijklmnopqrstuvwxyz-123456\n", -EINVAL, "aws-region: not an AWS region name" },
        { "aws-ca-file = ca.pem\n", -EINVAL, "aws-ca-file: path must be absolute" },
        { "aws-ca-file =\n", -EINVAL, "aws-ca-file: empty value" },
};

START_TEST(test_bad_lines) {
        struct kc_config c;
        struct kc_err err = {};
        int r = parse(bad[_i].text, &c, &err);

        ck_assert_int_eq(r, bad[_i].error);
        ck_assert_msg(strstr(err.msg, bad[_i].msg), "message \"%s\" lacks \"%s\"", err.msg, bad[_i].msg);
        ck_assert_ptr_null(strchr(err.msg, '\n'));
        kc_config_done(&c);
}
END_TEST

START_TEST(test_nul_and_long_line) {
        struct kc_config c;
        struct kc_err err = {};
        char *longline = malloc(KC_CONFIG_LINE_MAX + 64);

        ck_assert_int_eq(kc_config_init(&c), 0);
        ck_assert_int_eq(kc_config_parse_text(&c, "# ok\nkeystore = /a\0b\n", 21, "x.conf", &err), -EINVAL);
        ck_assert_msg(strstr(err.msg, "x.conf:2: NUL"), "message \"%s\" does not name line 2", err.msg);
        kc_config_done(&c);

        memset(longline, '#', KC_CONFIG_LINE_MAX + 63);
        longline[KC_CONFIG_LINE_MAX + 63] = '\0';
        err = (struct kc_err) {};
        ck_assert_int_eq(parse(longline, &c, &err), -EINVAL);
        ck_assert_ptr_nonnull(strstr(err.msg, "test.conf:1: line longer"));
        kc_config_done(&c);
        free(longline);
}
END_TEST

START_TEST(test_precedence) {
        _cleanup_free_ char *path = write_file("keystore = /file/ks\naudit-log = /file/audit\n"
                                                "root-key-file = /file/root\n");
        struct kc_config_overrides o = { .config_file = path };
        struct kc_config c;
        struct kc_err err = {};

        clear_env();
        /* file over default */
        ck_assert_int_eq(kc_config_load(&o, &c, &err), 0);
        ck_assert_str_eq(c.keystore_dir, "/file/ks");
        ck_assert_str_eq(c.source, path);
        kc_config_done(&c);

        /* environment over file; an empty variable counts as unset */
        setenv("KMSCRYPT_KEYSTORE", "/env/ks", 1);
        setenv("KMSCRYPT_AUDIT_LOG", "", 1);
        ck_assert_int_eq(kc_config_load(&o, &c, &err), 0);
        ck_assert_str_eq(c.keystore_dir, "/env/ks");
        ck_assert_str_eq(c.audit_log, "/file/audit");
        kc_config_done(&c);

        /* option over environment; relative paths are fine on the command line */
        o.keystore_dir = "rel/ks";
        o.audit_log = "/opt/audit";
        ck_assert_int_eq(kc_config_load(&o, &c, &err), 0);
        ck_assert_str_eq(c.keystore_dir, "rel/ks");
        ck_assert_str_eq(c.audit_log, "/opt/audit");
        ck_assert_str_eq(c.root_key_file, "/file/root");
        kc_config_done(&c);
        clear_env();
}
END_TEST

START_TEST(test_config_file_from_env) {
        _cleanup_free_ char *path = write_file("keystore = /from/env/file\n");
        struct kc_config c;
        struct kc_err err = {};

        clear_env();
        setenv("KMSCRYPT_CONFIG", path, 1);
        ck_assert_int_eq(kc_config_load(NULL, &c, &err), 0);
        ck_assert_str_eq(c.keystore_dir, "/from/env/file");
        kc_config_done(&c);
        clear_env();
}
END_TEST

START_TEST(test_named_file_must_exist) {
        struct kc_config_overrides o = { .config_file = "/nonexistent/kmscrypt.conf" };
        struct kc_config c = { .keystore_dir = (char *) "untouched" };
        struct kc_err err = {};

        clear_env();
        ck_assert_int_eq(kc_config_load(&o, &c, &err), -ENOENT);
        ck_assert_ptr_nonnull(strstr(err.msg, "/nonexistent/kmscrypt.conf"));
        ck_assert_str_eq(c.keystore_dir, "untouched");   /* ret untouched on failure */
}
END_TEST

START_TEST(test_bad_file_names_path_and_line) {
        _cleanup_free_ char *path = write_file("keystore = /ks\n\nsyslgo = yes\n");
        _cleanup_free_ char *want = NULL;
        struct kc_config_overrides o = { .config_file = path };
        struct kc_config c;
        struct kc_err err = {};

        clear_env();
        ck_assert_int_eq(kc_config_load(&o, &c, &err), -EINVAL);
        ck_assert_int_ge(asprintf(&want, "%s:3: unknown key \"syslgo\"", path), 0);
        ck_assert_str_eq(err.msg, want);
}
END_TEST

START_TEST(test_bad_env_and_option) {
        struct kc_config_overrides o = { .config_file = "/dev/null" };
        struct kc_config c;
        struct kc_err err = {};

        clear_env();
        ck_assert_int_eq(kc_config_load(&o, &c, &err), -EINVAL);   /* not a regular file */
        ck_assert_ptr_nonnull(strstr(err.msg, "not a regular file"));

        o.config_file = NULL;
        setenv("KMSCRYPT_CONFIG", "/nonexistent/conf", 1);
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_config_load(&o, &c, &err), -ENOENT);   /* named by env: must exist */
        clear_env();

        {
                _cleanup_free_ char *path = write_file("");
                o.config_file = path;
                setenv("KMSCRYPT_AUDIT_LOG", "/a\nb", 1);
                err = (struct kc_err) {};
                ck_assert_int_eq(kc_config_load(&o, &c, &err), -EINVAL);
                ck_assert_ptr_nonnull(strstr(err.msg, "KMSCRYPT_AUDIT_LOG"));
                clear_env();
                o.keystore_dir = "/a\x01";
                err = (struct kc_err) {};
                ck_assert_int_eq(kc_config_load(&o, &c, &err), -EINVAL);
                ck_assert_ptr_nonnull(strstr(err.msg, "--keystore"));
        }
}
END_TEST

/* One set of level names for log-level and kmscryptd --log-level, "error" included. */
START_TEST(test_log_levels) {
        static const struct { const char *name; int level; } levels[] = {
                { "err", LOG_ERR }, { "error", LOG_ERR }, { "warning", LOG_WARNING }, { "notice", LOG_NOTICE },
                { "info", LOG_INFO }, { "debug", LOG_DEBUG },
        };
        struct kc_config c;

        for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
                ck_assert_int_eq(kc_config_log_level(levels[i].name), levels[i].level);
                ck_assert_int_eq(kc_config_init(&c), 0);
                ck_assert_int_eq(kc_config_set(&c, "log-level", levels[i].name, NULL), 0);
                ck_assert_int_eq(c.log_level, levels[i].level);
                kc_config_done(&c);
        }
        ck_assert_int_eq(kc_config_log_level("verbose"), -EINVAL);
        ck_assert_int_eq(kc_config_log_level("ERR"), -EINVAL);
        ck_assert_int_eq(kc_config_log_level(""), -EINVAL);
}
END_TEST

START_TEST(test_set_unknown_key) {
        struct kc_config c;
        struct kc_err err = {};

        ck_assert_int_eq(kc_config_init(&c), 0);
        ck_assert_int_eq(kc_config_set(&c, "nope", "1", &err), -ENOENT);
        ck_assert_int_eq(kc_config_set(&c, "deletion-window-days", "12", NULL), 0);
        ck_assert_uint_eq(c.deletion_window_days, 12);
        kc_config_done(&c);
}
END_TEST

START_TEST(test_kms_view) {
        struct kc_config c;
        struct kc_kms_config k;

        ck_assert_int_eq(kc_config_init(&c), 0);
        ck_assert_int_eq(kc_config_set(&c, "audit-head", "/h", NULL), 0);
        kc_config_kms(&c, &k);
        ck_assert_ptr_eq(k.keystore_dir, c.keystore_dir);
        ck_assert_ptr_eq(k.audit_log, c.audit_log);
        ck_assert_str_eq(k.audit_head, "/h");
        ck_assert_ptr_null(k.root_key_file);
        ck_assert_ptr_null(k.aws_endpoint);
        ck_assert_int_eq(kc_config_set(&c, "aws-endpoint", "http://127.0.0.1:4566", NULL), 0);
        ck_assert_int_eq(kc_config_set(&c, "aws-region", "eu-west-1", NULL), 0);
        ck_assert_int_eq(kc_config_set(&c, "aws-ca-file", "ca.pem", NULL), 0);   /* relative: not from a file */
        kc_config_kms(&c, &k);
        ck_assert_str_eq(k.aws_endpoint, "http://127.0.0.1:4566");
        ck_assert_str_eq(k.aws_region, "eu-west-1");
        ck_assert_str_eq(k.aws_ca_file, "ca.pem");
        kc_config_done(&c);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("config");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_defaults);
        tcase_add_test(tc, test_full_file);
        tcase_add_loop_test(tc, test_bad_lines, 0, sizeof(bad) / sizeof(bad[0]));
        tcase_add_test(tc, test_nul_and_long_line);
        tcase_add_test(tc, test_precedence);
        tcase_add_test(tc, test_config_file_from_env);
        tcase_add_test(tc, test_named_file_must_exist);
        tcase_add_test(tc, test_bad_file_names_path_and_line);
        tcase_add_test(tc, test_bad_env_and_option);
        tcase_add_test(tc, test_log_levels);
        tcase_add_test(tc, test_set_unknown_key);
        tcase_add_test(tc, test_kms_view);
        suite_add_tcase(s, tc);
        return s;
}
