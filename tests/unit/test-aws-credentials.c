/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/aws/credentials.h"
#include "agent/aws/http.h"
#include "lib/secret.h"
#include "tests/unit/check-main.h"

/*
 * The credential chain of the aws provider (agent/aws/credentials.h) over
 * files and the environment only: each test starts from an environment
 * with no AWS variable, metadata disabled and both shared files named but
 * absent, so nothing here reaches the network (a container endpoint, where
 * one is named, is a loopback port where nothing listens).
 */

static char *tmp;
static struct kc_http *http;

static void isolate(void) {
        extern char **environ;
        _cleanup_free_ char *creds = NULL, *config = NULL;

        /* Unset every AWS_ variable, then name what the chain may read. */
        for (size_t i = 0; environ[i];)
                if (strncmp(environ[i], "AWS_", 4) == 0) {
                        _cleanup_free_ char *name = strndup(environ[i], strcspn(environ[i], "="));
                        ck_assert_ptr_nonnull(name);
                        ck_assert_int_eq(unsetenv(name), 0);
                } else
                        i++;
        tmp = kc_test_tmpdir();
        ck_assert_int_ge(asprintf(&creds, "%s/credentials", tmp), 0);
        ck_assert_int_ge(asprintf(&config, "%s/config", tmp), 0);
        setenv("AWS_SHARED_CREDENTIALS_FILE", creds, 1);
        setenv("AWS_CONFIG_FILE", config, 1);
        setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
        ck_assert_int_eq(kc_http_new(&http), 0);
}

static void teardown(void) {
        kc_http_free(http);
        http = NULL;
        free(tmp);
        tmp = NULL;
}

/* Temporary credentials as IMDS gives them, expiring at expiration. */
static struct kc_aws_credentials held(const char *key_id, time_t expiration) {
        struct kc_aws_credentials c = {
                .access_key_id = kc_secret_strdup(key_id),
                .secret_access_key = kc_secret_strdup("old-secret"),
                .session_token = kc_secret_strdup("old-token"),
                .expiration = expiration,
                .source = "imds",
        };

        ck_assert(c.access_key_id && c.secret_access_key && c.session_token);
        return c;
}

/* Long-term keys in the environment, the first source of the chain. */
static void env_keys(void) {
        setenv("AWS_ACCESS_KEY_ID", "AKIANEW", 1);
        setenv("AWS_SECRET_ACCESS_KEY", "new-secret", 1);
}

/* ---- refresh ------------------------------------------------------------------------------ */

START_TEST(test_refresh_keeps_unexpired_when_reload_fails) {
        time_t now = time(NULL);
        _cleanup_(kc_aws_credentials_clear) struct kc_aws_credentials c = held("ASIAOLD", now + 60);
        struct kc_err err = {};

        /* In the refresh window, and no source answers: the set still signs for a minute. */
        ck_assert(kc_aws_credentials_stale(&c, now));
        ck_assert_int_eq(kc_aws_credentials_refresh(http, &c, now, &err), 0);
        ck_assert_int_eq(err.error, 0);
        ck_assert_str_eq(c.access_key_id, "ASIAOLD");
        ck_assert_str_eq(c.session_token, "old-token");
        ck_assert_int_eq(c.expiration, now + 60);
}
END_TEST

START_TEST(test_refresh_gives_up_expired) {
        time_t now = time(NULL);
        _cleanup_(kc_aws_credentials_clear) struct kc_aws_credentials c = held("ASIAOLD", now);
        struct kc_err err = {};

        ck_assert_int_eq(kc_aws_credentials_refresh(http, &c, now, &err), -ENOKEY);
        ck_assert_ptr_nonnull(strstr(err.msg, "no AWS credentials"));
}
END_TEST

START_TEST(test_refresh_replaces_stale) {
        time_t now = time(NULL);
        _cleanup_(kc_aws_credentials_clear) struct kc_aws_credentials c = held("ASIAOLD", now + 60);

        env_keys();
        ck_assert_int_eq(kc_aws_credentials_refresh(http, &c, now, NULL), 0);
        ck_assert_str_eq(c.access_key_id, "AKIANEW");
        ck_assert_str_eq(c.secret_access_key, "new-secret");
        ck_assert_ptr_null(c.session_token);
        ck_assert_int_eq(c.expiration, 0);
        ck_assert_str_eq(c.source, "environment");
}
END_TEST

START_TEST(test_refresh_leaves_fresh) {
        time_t now = time(NULL);
        _cleanup_(kc_aws_credentials_clear) struct kc_aws_credentials c = held("ASIAOLD", now + 3600);

        env_keys();
        ck_assert_int_eq(kc_aws_credentials_refresh(http, &c, now, NULL), 0);
        ck_assert_str_eq(c.access_key_id, "ASIAOLD");
}
END_TEST

START_TEST(test_refresh_loads_empty) {
        _cleanup_(kc_aws_credentials_clear) struct kc_aws_credentials c = {};
        struct kc_err err = {};

        /* Nothing held (or cleared after ExpiredTokenException): nothing to fall back on. */
        ck_assert_int_eq(kc_aws_credentials_refresh(http, &c, time(NULL), &err), -ENOKEY);
        ck_assert_ptr_null(c.access_key_id);
        env_keys();
        ck_assert_int_eq(kc_aws_credentials_refresh(http, &c, time(NULL), NULL), 0);
        ck_assert_str_eq(c.access_key_id, "AKIANEW");
}
END_TEST

/* ---- the named profile ---------------------------------------------------------------------- */

static void write_file(const char *name, const char *text) {
        _cleanup_free_ char *path = NULL;
        FILE *f;

        ck_assert_int_ge(asprintf(&path, "%s/%s", tmp, name), 0);
        f = fopen(path, "we");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_ge(fputs(text, f), 0);
        ck_assert_int_eq(fclose(f), 0);
}

/*
 * A source after the shared files that would answer if asked: the container
 * endpoint, on a loopback port where nothing listens (refused at once).
 */
static void container_next(void) {
        setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/creds", 1);
}

START_TEST(test_profile_missing_stops_the_chain) {
        _cleanup_(kc_aws_credentials_clear) struct kc_aws_credentials c = {};
        struct kc_err err = {};

        write_file("credentials", "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = s\n");
        write_file("config", "[profile other]\nregion = eu-west-1\n");
        setenv("AWS_PROFILE", "prdo", 1);
        container_next();
        ck_assert_int_eq(kc_aws_credentials_load(http, &c, &err), -ENOKEY);
        ck_assert_msg(strstr(err.msg, "profile \"prdo\" (AWS_PROFILE) is in neither"), "%s", err.msg);
        ck_assert_ptr_null(c.access_key_id);
}
END_TEST

START_TEST(test_profile_without_keys_goes_on) {
        _cleanup_(kc_aws_credentials_clear) struct kc_aws_credentials c = {};
        struct kc_err err = {};

        /* There, with a region only: the next source is asked, as in the SDKs. */
        write_file("config", "[profile prod]\nregion = eu-west-1\n");
        setenv("AWS_PROFILE", "prod", 1);
        container_next();
        ck_assert_int_eq(kc_aws_credentials_load(http, &c, &err), -ECONNREFUSED);
        ck_assert_msg(strstr(err.msg, "AWS credentials (container)"), "%s", err.msg);
}
END_TEST

START_TEST(test_profile_found) {
        _cleanup_(kc_aws_credentials_clear) struct kc_aws_credentials c = {};

        write_file("credentials", "[prod]\naws_access_key_id = AKIAPROD\naws_secret_access_key = s\n");
        setenv("AWS_PROFILE", "prod", 1);
        container_next();
        ck_assert_int_eq(kc_aws_credentials_load(http, &c, NULL), 0);
        ck_assert_str_eq(c.access_key_id, "AKIAPROD");
        ck_assert_str_eq(c.source, "shared-file");
}
END_TEST

START_TEST(test_default_profile_absent_goes_on) {
        _cleanup_(kc_aws_credentials_clear) struct kc_aws_credentials c = {};
        struct kc_err err = {};

        /* No AWS_PROFILE, or "default": no profile was chosen, so none is missing. */
        container_next();
        ck_assert_int_eq(kc_aws_credentials_load(http, &c, &err), -ECONNREFUSED);
        setenv("AWS_PROFILE", "default", 1);
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_aws_credentials_load(http, &c, &err), -ECONNREFUSED);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("aws-credentials");
        TCase *tc = tcase_create("refresh");

        tcase_add_checked_fixture(tc, isolate, teardown);
        tcase_add_test(tc, test_refresh_keeps_unexpired_when_reload_fails);
        tcase_add_test(tc, test_refresh_gives_up_expired);
        tcase_add_test(tc, test_refresh_replaces_stale);
        tcase_add_test(tc, test_refresh_leaves_fresh);
        tcase_add_test(tc, test_refresh_loads_empty);
        suite_add_tcase(s, tc);

        tc = tcase_create("profile");
        tcase_add_checked_fixture(tc, isolate, teardown);
        tcase_add_test(tc, test_profile_missing_stops_the_chain);
        tcase_add_test(tc, test_profile_without_keys_goes_on);
        tcase_add_test(tc, test_profile_found);
        tcase_add_test(tc, test_default_profile_absent_goes_on);
        suite_add_tcase(s, tc);
        return s;
}
