/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/sha.h>

#include "agent/audit.h"
#include "agent/caller.h"
#include "lib/strv.h"
#include "tests/unit/check-main.h"

/* ---- fixtures ---- */

struct paths {
        char dir[256];
        char log[512];
        char head[512];
};

static struct paths paths_new(void) {
        _cleanup_free_ char *dir = kc_test_tmpdir();
        struct paths p = {};

        ck_assert_uint_lt(strlen(dir), sizeof(p.dir));
        strcpy(p.dir, dir);
        snprintf(p.log, sizeof(p.log), "%s/audit.log", p.dir);
        snprintf(p.head, sizeof(p.head), "%s/audit.head", p.dir);
        return p;
}

static char *slurp(const char *path) {
        FILE *f = fopen(path, "re");
        char *buf = NULL;
        size_t size = 0;
        FILE *m = open_memstream(&buf, &size);
        int c;

        ck_assert_ptr_nonnull(f);
        ck_assert_ptr_nonnull(m);
        while ((c = fgetc(f)) != EOF)
                fputc(c, m);
        fclose(f);
        fclose(m);
        return buf;
}

static void spew(const char *path, const char *text) {
        FILE *f = fopen(path, "we");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(fputs(text, f) >= 0, 1);
        ck_assert_int_eq(fclose(f), 0);
}

/* The log's lines without their newlines. */
static char **read_lines(const char *path) {
        _cleanup_free_ char *text = slurp(path);
        char **v = NULL, *p = text, *nl;

        while ((nl = strchr(p, '\n'))) {
                *nl = '\0';
                ck_assert_int_eq(kc_strv_push(&v, p), 0);
                p = nl + 1;
        }
        ck_assert_str_eq(p, "");        /* every line ended with a newline */
        return v;
}

static void write_lines(const char *path, char **v) {
        FILE *f = fopen(path, "we");
        ck_assert_ptr_nonnull(f);
        for (size_t i = 0; v && v[i]; i++)
                fprintf(f, "%s\n", v[i]);
        ck_assert_int_eq(fclose(f), 0);
}

static off_t file_size(const char *path) {
        struct stat st;
        ck_assert_int_eq(stat(path, &st), 0);
        return st.st_size;
}

static void write_records(const char *log, const char *head, unsigned n, const char *tag) {
        _cleanup_audit_ struct kc_audit *a = NULL;
        struct kc_caller self;
        struct kc_err err = {};
        char detail[64];

        ck_assert_int_eq(kc_caller_self(&self), 0);
        ck_assert_msg(kc_audit_open(log, head, NULL, &a, &err) == 0, "open: %s", err.msg);
        for (unsigned i = 0; i < n; i++) {
                snprintf(detail, sizeof(detail), "%s %u", tag, i);
                struct kc_audit_record rec = {
                        .operation = i % 3 == 0 ? "GenerateDataKey" : "Decrypt",
                        .key_id = i % 2 == 0 ? "local:k1" : "local:k2",
                        .key_version = 1 + i % 4,
                        .caller = &self,
                        .volume = "0b1f6e2a-5d1c-4b9e-9f00-1234567890ab",
                        .result = i % 5 == 4 ? -EACCES : 0,
                        .detail = detail,
                };
                ck_assert_int_eq(kc_audit_write(a, &rec), 0);
        }
}

static void sha256_hex(const char *s, char out[65]) {
        unsigned char md[SHA256_DIGEST_LENGTH];
        SHA256((const unsigned char *) s, strlen(s), md);
        for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
                sprintf(out + 2 * i, "%02x", md[i]);
}

static int verify(const struct paths *p, struct kc_audit_verify *v) {
        memset(v, 0xaa, sizeof(*v));
        return kc_audit_verify(p->log, p->head, NULL, v);
}

static void assert_verify_bad(const struct paths *p, uint64_t line, const char *reason_part) {
        struct kc_audit_verify v;
        ck_assert_int_eq(verify(p, &v), -EBADMSG);
        ck_assert_msg(v.bad_line == line, "bad_line %llu, expected %llu (%s)",
                      (unsigned long long) v.bad_line, (unsigned long long) line, v.reason);
        ck_assert_msg(strstr(v.reason, reason_part), "reason \"%s\" lacks \"%s\"", v.reason, reason_part);
}

static void assert_verify_ok(const struct paths *p, uint64_t records) {
        struct kc_audit_verify v;
        int r = verify(p, &v);
        ck_assert_msg(r == 0, "verify: %d line %llu: %s", r, (unsigned long long) v.bad_line, v.reason);
        ck_assert_uint_eq(v.records, records);
        ck_assert_uint_eq(v.bad_line, 0);
}

static int open_refused(const struct paths *p, struct kc_err *err) {
        struct kc_audit *a = NULL;
        int r = kc_audit_open(p->log, p->head, NULL, &a, err);
        ck_assert_ptr_null(a);
        return r;
}

/* Open must fail with error and a message that contains part. */
static void assert_open_refused(const struct paths *p, int error, const char *part) {
        struct kc_err err = {};
        ck_assert_int_eq(open_refused(p, &err), error);
        ck_assert_msg(strstr(err.msg, part), "message \"%s\" lacks \"%s\"", err.msg, part);
}

static void append_text(const char *path, const char *text) {
        FILE *f = fopen(path, "ae");
        ck_assert_ptr_nonnull(f);
        fputs(text, f);
        ck_assert_int_eq(fclose(f), 0);
}

/* ---- the chain as documented ---- */

START_TEST(test_chain_rule) {
        struct paths p = paths_new();
        _cleanup_strv_ char **lines = NULL;
        _cleanup_free_ char *head = NULL;
        char prev[65] = "0000000000000000000000000000000000000000000000000000000000000000", want[160];

        write_records(p.log, p.head, 10, "chain");
        lines = read_lines(p.log);
        ck_assert_uint_eq(kc_strv_length(lines), 10);
        /* Recomputed here from docs/audit.md, independently of the code under test. */
        for (size_t i = 0; i < 10; i++) {
                struct json_object *o = json_tokener_parse(lines[i]), *v;
                ck_assert_ptr_nonnull(o);
                ck_assert(json_object_object_get_ex(o, "seq", &v));
                ck_assert_int_eq(json_object_get_int64(v), (int64_t) i + 1);
                ck_assert(json_object_object_get_ex(o, "prev", &v));
                ck_assert_str_eq(json_object_get_string(v), prev);
                json_object_put(o);
                sha256_hex(lines[i], prev);
        }
        head = slurp(p.head);
        snprintf(want, sizeof(want), "{\"seq\":10,\"sha256\":\"%s\"}\n", prev);
        ck_assert_str_eq(head, want);
        assert_verify_ok(&p, 10);
}
END_TEST

/* The chain is found again however long the last record is (the tail is read a page first). */
START_TEST(test_long_last_record) {
        struct paths p = paths_new();
        static const size_t sizes[] = { 4000, 4093, 4094, 4095, 4096, 4097, 9000, 40000 };

        for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
                _cleanup_audit_ struct kc_audit *a = NULL;
                _cleanup_free_ char *detail = malloc(sizes[i] + 1);
                struct kc_err err = {};
                off_t before;

                ck_assert_ptr_nonnull(detail);
                memset(detail, 'a' + (int) i, sizes[i]);
                detail[sizes[i]] = '\0';
                struct kc_audit_record rec = { .operation = "Decrypt", .key_id = "local:k1", .detail = detail };
                /* Each open re-reads the tail the previous write left: a long line must be found whole. */
                ck_assert_msg(kc_audit_open(p.log, p.head, NULL, &a, &err) == 0, "open after %zu: %s", i, err.msg);
                before = file_size(p.log);
                ck_assert_int_eq(kc_audit_write(a, &rec), 0);
                ck_assert_int_gt(file_size(p.log) - before, (off_t) sizes[i]);
        }
        write_records(p.log, p.head, 2, "after");
        assert_verify_ok(&p, ARRAY_SIZE(sizes) + 2);
}
END_TEST

/* A record exactly as long as a line may be is written, and the next append still finds the chain after it. */
START_TEST(test_longest_record) {
        struct paths p = paths_new();
        _cleanup_audit_ struct kc_audit *a = NULL;
        _cleanup_free_ char *detail = NULL;
        struct kc_audit_record rec = { .operation = "Decrypt", .key_id = "local:k1", .detail = "x" };
        off_t before;
        size_t rest;

        ck_assert_int_eq(kc_audit_open(p.log, p.head, NULL, &a, NULL), 0);
        ck_assert_int_eq(kc_audit_write(a, &rec), 0);
        /* The same record with a longer detail (same seq width, fixed-width time): 65536 bytes with it. */
        rest = (size_t) file_size(p.log) - 1 - 1;
        detail = malloc(64 * 1024 - rest + 1);
        ck_assert_ptr_nonnull(detail);
        memset(detail, 'y', 64 * 1024 - rest);
        detail[64 * 1024 - rest] = '\0';
        rec.detail = detail;
        before = file_size(p.log);
        ck_assert_int_eq(kc_audit_write(a, &rec), 0);
        ck_assert_int_eq(file_size(p.log) - before, 64 * 1024 + 1);
        kc_audit_close(TAKE_PTR(a));
        ck_assert_int_eq(kc_audit_open(p.log, p.head, NULL, &a, NULL), 0);
        rec.detail = "after";
        ck_assert_int_eq(kc_audit_write(a, &rec), 0);
        assert_verify_ok(&p, 3);
}
END_TEST

START_TEST(test_record_fields) {
        struct paths p = paths_new();
        _cleanup_audit_ struct kc_audit *a = NULL;
        _cleanup_strv_ char **lines = NULL;
        struct kc_caller self;
        struct json_object *o, *v, *c;
        static const char *order[] = { "{\"seq\":1,\"time\":\"", "\"operation\":", "\"key_id\":", "\"key_version\":",
                                       "\"encryption_context\":", "\"caller\":", "\"volume\":", "\"result\":",
                                       "\"error\":", "\"detail\":", "\"prev\":" };
        const char *last = NULL;
        struct tm tm = {};
        time_t now = time(NULL), t;

        ck_assert_int_eq(kc_caller_self(&self), 0);
        ck_assert_int_eq(kc_audit_open(p.log, p.head, NULL, &a, NULL), 0);
        ck_assert_int_eq(kc_audit_write(a, &(struct kc_audit_record) {
                .operation = "Decrypt", .key_id = "local:k1", .key_version = 3, .caller = &self,
                .volume = "vol/a", .result = -EACCES, .error = "context mismatch",
                .detail = "line\nbreak and bad utf-8 \xff\xc0\xaf end",
        }), 0);
        ck_assert_int_eq(kc_audit_write(a, &(struct kc_audit_record) { .operation = "CreateKey", .result = -ENOENT }), 0);
        ck_assert_int_eq(kc_audit_write(a, &(struct kc_audit_record) { .operation = "CreateKey" }), 0);
        /* An intent: "pending" whatever result says, and no error. */
        ck_assert_int_eq(kc_audit_write(a, &(struct kc_audit_record) {
                .operation = "RotateKey", .intent = true, .result = -EIO, .error = "ignored" }), 0);
        lines = read_lines(p.log);
        ck_assert_uint_eq(kc_strv_length(lines), 4);

        for (size_t i = 0; i < ARRAY_SIZE(order); i++) {
                const char *at = strstr(lines[0], order[i]);
                ck_assert_msg(at && at > last, "member %s missing or out of order in %s", order[i], lines[0]);
                last = at;
        }
        /* Strict JSON with valid UTF-8 even though the detail was not. */
        struct json_tokener *tok = json_tokener_new();
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        o = json_tokener_parse_ex(tok, lines[0], (int) strlen(lines[0]));
        json_tokener_free(tok);
        ck_assert_ptr_nonnull(o);
        ck_assert(json_object_object_get_ex(o, "detail", &v));
        ck_assert_str_eq(json_object_get_string(v), "line\nbreak and bad utf-8 \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd end");
        ck_assert(json_object_object_get_ex(o, "caller", &c));
        ck_assert(json_object_object_get_ex(c, "uid", &v));
        ck_assert_int_eq(json_object_get_int64(v), getuid());
        ck_assert(json_object_object_get_ex(c, "pid", &v));
        ck_assert_int_eq(json_object_get_int64(v), getpid());
        ck_assert(json_object_object_get_ex(c, "exe", &v));
        ck_assert_str_eq(json_object_get_string(v), self.exe);
        ck_assert(json_object_object_get_ex(o, "key_version", &v));
        ck_assert_int_eq(json_object_get_int64(v), 3);
        ck_assert(json_object_object_get_ex(o, "result", &v));
        ck_assert_str_eq(json_object_get_string(v), "error");
        ck_assert(json_object_object_get_ex(o, "error", &v));
        ck_assert_str_eq(json_object_get_string(v), "context mismatch");
        ck_assert(json_object_object_get_ex(o, "encryption_context", &v));
        ck_assert_ptr_null(v);
        ck_assert(json_object_object_get_ex(o, "time", &v));
        ck_assert_int_eq(strlen(json_object_get_string(v)), 24);
        ck_assert_ptr_nonnull(strptime(json_object_get_string(v), "%Y-%m-%dT%H:%M:%S", &tm));
        t = timegm(&tm);
        ck_assert_msg(t >= now - 5 && t <= now + 5, "time %s is not now", json_object_get_string(v));
        json_object_put(o);

        /* No message given: the errno's text; success: error null, no key: nulls. */
        ck_assert_ptr_nonnull(strstr(lines[1], "\"result\":\"error\",\"error\":\"No such file or directory\""));
        ck_assert_ptr_nonnull(strstr(lines[2], "\"key_id\":null,\"key_version\":null,\"encryption_context\":null,"
                                               "\"caller\":null,\"volume\":null,\"result\":\"ok\",\"error\":null,\"detail\":null"));
        ck_assert_ptr_nonnull(strstr(lines[3], "\"operation\":\"RotateKey\","));
        ck_assert_ptr_nonnull(strstr(lines[3], "\"result\":\"pending\",\"error\":null,"));
        assert_verify_ok(&p, 4);
}
END_TEST

START_TEST(test_record_context) {
        struct paths p = paths_new();
        _cleanup_audit_ struct kc_audit *a = NULL;
        _cleanup_context_ struct kc_context *ctx = NULL, *back = NULL;
        _cleanup_strv_ char **lines = NULL;
        struct json_object *o, *v;

        /* Given out of order, recorded in canonical (byte) order. */
        ck_assert_int_eq(kc_context_parse_kv("volume-id=vol-2,aws:rds:db-id=db-1,db-id=d\\,b\"1\"", &ctx, NULL), 0);
        ck_assert_int_eq(kc_audit_open(p.log, p.head, NULL, &a, NULL), 0);
        ck_assert_int_eq(kc_audit_write(a, &(struct kc_audit_record) {
                .operation = "GenerateDataKey", .key_id = "local:k1", .key_version = 1, .context = ctx }), 0);
        lines = read_lines(p.log);
        ck_assert_ptr_nonnull(strstr(lines[0], "\"encryption_context\":{\"aws:rds:db-id\":\"db-1\","
                                               "\"db-id\":\"d,b\\\"1\\\"\",\"volume-id\":\"vol-2\"},"));
        o = json_tokener_parse(lines[0]);
        ck_assert_ptr_nonnull(o);
        ck_assert(json_object_object_get_ex(o, "encryption_context", &v));
        ck_assert_int_eq(kc_context_from_json(v, &back, NULL), 0);
        ck_assert(kc_context_equal(ctx, back));
        json_object_put(o);
        assert_verify_ok(&p, 1);
}
END_TEST

START_TEST(test_bad_records_refused) {
        struct paths p = paths_new();
        _cleanup_audit_ struct kc_audit *a = NULL;
        _cleanup_free_ char *big = malloc(70000);

        ck_assert_int_eq(kc_audit_open(p.log, p.head, NULL, &a, NULL), 0);
        ck_assert_int_eq(kc_audit_write(a, &(struct kc_audit_record) { .operation = NULL }), -EINVAL);
        ck_assert_int_eq(kc_audit_write(a, &(struct kc_audit_record) { .operation = "" }), -EINVAL);
        memset(big, 'x', 69999);
        big[69999] = '\0';
        ck_assert_int_eq(kc_audit_write(a, &(struct kc_audit_record) { .operation = "Decrypt", .detail = big }), -E2BIG);
        ck_assert_int_eq(file_size(p.log), 0);
        ck_assert_int_eq(kc_audit_write(a, &(struct kc_audit_record) { .operation = "Decrypt" }), 0);
        assert_verify_ok(&p, 1);
}
END_TEST

/* ---- tampering ---- */

/* Flip the low bit of the byte that follows the first `after` in line `line`. */
/* A one-record trail written by hand, chain and head correct, with this time and result. */
static void write_one_record_at(const struct paths *p, const char *time, const char *result) {
        _cleanup_free_ char *line = NULL, *text = NULL, *head = NULL;
        char hash[65];

        ck_assert_int_ge(asprintf(&line, "{\"seq\":1,\"time\":\"%s\",\"operation\":\"RotateKey\","
                                  "\"key_id\":null,\"key_version\":null,\"encryption_context\":null,\"caller\":null,"
                                  "\"volume\":null,\"result\":\"%s\",\"error\":null,\"detail\":null,"
                                  "\"prev\":\"%064d\"}", time, result, 0), 0);
        sha256_hex(line, hash);
        ck_assert_int_ge(asprintf(&text, "%s\n", line), 0);
        ck_assert_int_ge(asprintf(&head, "{\"seq\":1,\"sha256\":\"%s\"}\n", hash), 0);
        spew(p->log, text);
        spew(p->head, head);
}

static void write_one_record(const struct paths *p, const char *result) {
        write_one_record_at(p, "2026-11-27T23:59:59.123Z", result);
}

/* Only the spelling the writer uses is a time: strptime() alone takes more. */
START_TEST(test_time_values) {
        static const char *const good[] = { "2026-11-27T23:59:59.123Z", "2024-02-29T00:00:00.000Z" };
        static const char *const bad[] = {
                "2026-02-31T12:00:00.000Z",     /* timegm() would make it March 3 */
                "2025-02-29T12:00:00.000Z",     /* not a leap year */
                "2026-11-27T23:59:60.123Z",     /* a leap second format_time() never writes */
                "2026-1-2T3:4:5.123Z",          /* digits not padded */
                " 2026-11-27T23:59:59.123Z",    /* a leading blank */
                "2026-11-27T23:59:59.12Z",
                "1969-12-31T23:59:58.000Z",     /* before the epoch: format_time() writes the clock's time */
                "999-12-31T23:59:59.000Z",      /* a year of three digits */
        };

        for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
                struct paths p = paths_new();
                write_one_record_at(&p, good[i], "ok");
                assert_verify_ok(&p, 1);
        }
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                struct paths p = paths_new();
                write_one_record_at(&p, bad[i], "ok");
                assert_verify_bad(&p, 1, "\"time\"");
        }
}
END_TEST

/* --since as the operator gives it: the documented forms, and only dates that exist. */
START_TEST(test_since_values) {
        static const struct { const char *text; time_t t; } good[] = {
                { "2026-11-27", 1795737600 },
                { "2026-11-27T23:45:48Z", 1795823148 },
                { "2024-02-29", 1709164800 },
                { "1970-01-01", 0 },
                { "@0", 0 },
                { "@1795823148", 1795823148 },
        };
        static const char *const bad[] = {
                "2026-02-31",                   /* timegm() would make it March 3 */
                "2025-02-29",                   /* not a leap year */
                "2026-13-01",
                "2026-11-27T24:00:00Z",
                "2026-11-27T23:59:60Z",         /* a leap second no record has */
                "2026-1-5",                     /* digits not padded */
                " 2026-11-27",                  /* a leading blank */
                "2026-11-27 ",
                "2026-11-27T23:45:48.123Z",     /* a record's spelling, not one of --since */
                "2026-11-27T23:45:48",          /* no Z: UTC or local? */
                "2026-11-27T23:45",
                "2026-11-27T",
                "2026-11-27T23:45:48z",
                "2026-11-27T23:45:48ZZ",        /* trailing junk */
                "2026-11-27T23:45:48Z ",
                "2026-11-27T23:45:48+00:00",    /* an offset, even UTC's: not a documented form */
                "2026-11-27x",
                "2026-11-27T25:00:00Z",         /* out of range */
                "2026-11-00",
                "2026-11-31",
                "2026-00-27",
                "2026-11-27T23:60:00Z",
                "1969-12-31",                   /* before the epoch */
                "@-1", "@", "@1x", "yesterday", "",
        };
        time_t t;

        for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
                t = -1;
                ck_assert_msg(kc_audit_parse_list_time(good[i].text, &t) == 0, "\"%s\" refused", good[i].text);
                ck_assert_msg(t == good[i].t, "\"%s\": %lld", good[i].text, (long long) t);
        }
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                t = 12345;
                ck_assert_msg(kc_audit_parse_list_time(bad[i], &t) == -EINVAL, "\"%s\" taken", bad[i]);
                ck_assert_int_eq(t, 12345);
        }
}
END_TEST

/* "pending" (an intent) is a result like "ok" and "error"; anything else is not a record. */
START_TEST(test_result_values) {
        static const char *const good[] = { "ok", "error", "pending" };
        static const char *const bad[] = { "maybe", "", "Pending", "ok " };

        for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
                struct paths p = paths_new();
                write_one_record(&p, good[i]);
                assert_verify_ok(&p, 1);
        }
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                struct paths p = paths_new();
                write_one_record(&p, bad[i]);
                assert_verify_bad(&p, 1, "\"result\"");
        }
}
END_TEST

static void edit_line(const struct paths *p, size_t line, const char *after) {
        _cleanup_strv_ char **lines = read_lines(p->log);
        char *at = strstr(lines[line - 1], after);

        ck_assert_ptr_nonnull(at);
        at[strlen(after)] ^= 0x01;
        write_lines(p->log, lines);
}

START_TEST(test_edit_detected) {
        /* What is edited, and which line verify must name. */
        static const struct { size_t line; const char *after; } cases[] = {
                { 5, "\"operation\":\"De" },      /* payload: caught by line 6's prev link */
                { 5, "\"prev\":\"" },             /* line 5's own link */
                { 5, "\"seq\":" },                /* its number */
                { 1, "\"detail\":\"tamp" },       /* the first line */
                { 10, "\"volume\":\"" },          /* the newest line: caught by the head */
                { 10, "\"prev\":\"" },
        };

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct paths p = paths_new();
                struct kc_audit_verify v;

                write_records(p.log, p.head, 10, "tamper");
                assert_verify_ok(&p, 10);
                edit_line(&p, cases[i].line, cases[i].after);
                assert_verify_bad(&p, cases[i].line, "");
                ck_assert_int_eq(verify(&p, &v), -EBADMSG);
                ck_assert_uint_eq(v.records, cases[i].line - 1);
                /* Edits before the last line are not the open check's business; the last line is. */
                if (cases[i].line == 10)
                        assert_open_refused(&p, -EBADMSG, "audit log");
        }
}
END_TEST

START_TEST(test_delete_middle_line) {
        struct paths p = paths_new();
        _cleanup_strv_ char **lines = NULL;

        write_records(p.log, p.head, 10, "delete");
        lines = read_lines(p.log);
        free(lines[4]);
        memmove(lines + 4, lines + 5, 6 * sizeof(char *));
        write_lines(p.log, lines);
        assert_verify_bad(&p, 5, "removed");
}
END_TEST

START_TEST(test_swap_lines) {
        struct paths p = paths_new();
        _cleanup_strv_ char **lines = NULL;
        char *t;

        write_records(p.log, p.head, 10, "swap");
        lines = read_lines(p.log);
        t = lines[3], lines[3] = lines[4], lines[4] = t;
        write_lines(p.log, lines);
        assert_verify_bad(&p, 4, "moved");
}
END_TEST

START_TEST(test_insert_line) {
        struct paths p = paths_new();
        _cleanup_strv_ char **lines = NULL;
        char **v = NULL;

        write_records(p.log, p.head, 6, "insert");
        lines = read_lines(p.log);
        for (size_t i = 0; i < 6; i++) {
                ck_assert_int_eq(kc_strv_push(&v, lines[i]), 0);
                if (i == 2)
                        ck_assert_int_eq(kc_strv_push(&v, lines[i]), 0);   /* a replayed record */
        }
        write_lines(p.log, v);
        kc_strv_free(v);
        assert_verify_bad(&p, 4, "inserted");
}
END_TEST

START_TEST(test_truncation_caught_by_head) {
        for (size_t removed = 1; removed <= 10; removed += 4) {
                struct paths p = paths_new();
                _cleanup_strv_ char **lines = NULL;
                struct kc_audit_verify v;

                write_records(p.log, p.head, 10, "truncate");
                lines = read_lines(p.log);
                for (size_t i = 10 - removed; i < 10; i++) {
                        free(lines[i]);
                        lines[i] = NULL;
                }
                write_lines(p.log, lines);
                ck_assert_int_eq(verify(&p, &v), -EBADMSG);
                ck_assert_uint_eq(v.records, 10 - removed);
                ck_assert_uint_eq(v.bad_line, 10 - removed + 1);
                ck_assert_ptr_nonnull(strstr(v.reason, "newest records were removed"));
                /* Opening for append is refused too: new records would paper over the gap. */
                assert_open_refused(&p, -EBADMSG, "does not match its chain head");
        }
}
END_TEST

START_TEST(test_appended_garbage) {
        static const struct { const char *text, *verify_says, *open_says; } cases[] = {
                { "garbage\n", "not valid JSON", "last line" },
                { "{\"seq\":11}\n", "\"prev\"", "last line" },
                { "{\"seq\":11,", "incomplete last line", "incomplete line" },
                { "\n", "not valid JSON", "last line" },
        };

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct paths p = paths_new();

                write_records(p.log, p.head, 10, "garbage");
                append_text(p.log, cases[i].text);
                assert_verify_bad(&p, 11, cases[i].verify_says);
                assert_open_refused(&p, -EBADMSG, cases[i].open_says);
        }
}
END_TEST

START_TEST(test_head_missing_refused) {
        struct paths p = paths_new();

        write_records(p.log, p.head, 3, "nohead");
        ck_assert_int_eq(unlink(p.head), 0);
        assert_open_refused(&p, -EBADMSG, "missing");
        assert_verify_bad(&p, 0, "missing");
        ck_assert_int_eq(access(p.head, F_OK), -1);     /* refusing did not invent a head */
}
END_TEST

START_TEST(test_head_malformed_refused) {
        static const char *heads[] = {
                "", "{\"seq\":3}\n", "{\"seq\":3,\"sha256\":\"00\"}\n", "{\"seq\":3,\"sha256\":\"0\"}",
                "{\"seq\":0,\"sha256\":\"1111111111111111111111111111111111111111111111111111111111111111\"}\n",
                "{\"seq\":-1,\"sha256\":\"0000000000000000000000000000000000000000000000000000000000000000\"}\n",
        };

        for (size_t i = 0; i < ARRAY_SIZE(heads); i++) {
                struct paths p = paths_new();
                struct kc_audit_verify v;

                write_records(p.log, p.head, 3, "badhead");
                spew(p.head, heads[i]);
                assert_open_refused(&p, -EBADMSG, p.head);
                ck_assert_int_eq(verify(&p, &v), -EBADMSG);
        }
}
END_TEST

START_TEST(test_empty_log_with_head_refused) {
        struct paths p = paths_new();

        write_records(p.log, p.head, 3, "empty");
        ck_assert_int_eq(truncate(p.log, 0), 0);
        assert_open_refused(&p, -EBADMSG, "empty");
        assert_verify_bad(&p, 1, "removed");

        /* The log deleted outright: same refusal. */
        ck_assert_int_eq(unlink(p.log), 0);
        assert_verify_bad(&p, 1, "log missing");
        assert_open_refused(&p, -EBADMSG, "empty");
}
END_TEST

/* ---- a chain with no records and no head (docs/audit.md, "A lost chain") ---- */

/* Evidence as the KMS layer gives it: keys in a keystore, each created with a record. */
struct keys_evidence {
        unsigned keys;
        int error;      /* < 0: cannot tell */
};

static int keys_check(const void *userdata, char *buf, size_t size) {
        const struct keys_evidence *k = userdata;

        if (k->error < 0)
                return k->error;
        if (k->keys == 0)
                return 0;
        snprintf(buf, size, "keystore /ks holds %u keys, whose creation was audited", k->keys);
        return 1;
}

static struct kc_audit_evidence keys_evidence(const struct keys_evidence *k) {
        return (struct kc_audit_evidence) { .check = keys_check, .userdata = k };
}

static int verify_with(const struct paths *p, const struct keys_evidence *k, struct kc_audit_verify *v) {
        struct kc_audit_evidence e = keys_evidence(k);

        memset(v, 0xaa, sizeof(*v));
        return kc_audit_verify(p->log, p->head, &e, v);
}

static int open_with(const struct paths *p, const struct keys_evidence *k, struct kc_audit **ret, struct kc_err *err) {
        struct kc_audit_evidence e = keys_evidence(k);

        return kc_audit_open(p->log, p->head, &e, ret, err);
}

static void assert_lost(const struct paths *p, const struct keys_evidence *k, const char *state) {
        struct kc_audit_verify v;

        ck_assert_int_eq(verify_with(p, k, &v), -EBADMSG);
        ck_assert_uint_eq(v.records, 0);
        ck_assert_uint_eq(v.bad_line, 0);
        ck_assert_msg(strstr(v.reason, state) && strstr(v.reason, p->head) &&
                      strstr(v.reason, "keystore /ks holds 2 keys") && strstr(v.reason, "not a fresh one"),
                      "reason \"%s\" lacks \"%s\", the head or the evidence", v.reason, state);
}

/* Nothing says records existed: both files missing, or an empty log without a head, is a fresh chain. */
START_TEST(test_lost_chain_fresh_host) {
        struct paths p = paths_new();
        struct keys_evidence none = {};
        _cleanup_audit_ struct kc_audit *a = NULL;
        struct kc_audit_verify v;

        ck_assert_int_eq(verify_with(&p, &none, &v), 0);
        ck_assert_uint_eq(v.records, 0);
        ck_assert_int_eq(open_with(&p, &none, &a, NULL), 0);
        ck_assert_int_eq(kc_audit_write(a, &(struct kc_audit_record) { .operation = "CreateKey" }), 0);
        assert_verify_ok(&p, 1);
}
END_TEST

/* Remove the log (or empty it) and its head, as someone hiding the records would. */
static void lose_chain(const struct paths *p, bool empty) {
        if (empty)
                ck_assert_int_eq(truncate(p->log, 0), 0);
        else
                ck_assert_int_eq(unlink(p->log), 0);
        ck_assert_int_eq(unlink(p->head), 0);
}

/* Log and head deleted, or the log emptied and the head deleted, while the keystore holds keys: lost, not fresh. */
START_TEST(test_lost_chain_verify) {
        static const struct {
                bool empty;
                const char *state;
        } ways[] = { { false, "both missing" }, { true, "is empty" } };

        for (size_t i = 0; i < ARRAY_SIZE(ways); i++) {
                struct paths p = paths_new();
                struct keys_evidence keys = { .keys = 2 };

                write_records(p.log, p.head, 4, "lost");
                lose_chain(&p, ways[i].empty);
                assert_lost(&p, &keys, ways[i].state);
                /* Without the evidence it is what it was before: a fresh chain. */
                assert_verify_ok(&p, 0);
        }
}
END_TEST

/* Opening must not start a new chain over the lost one, nor create a file that would change what verify sees. */
START_TEST(test_lost_chain_open_refused) {
        struct paths p = paths_new();
        struct keys_evidence keys = { .keys = 2 };
        struct kc_audit *a = NULL;
        struct kc_err err = {};

        ck_assert_int_eq(open_with(&p, &keys, &a, &err), -EBADMSG);
        ck_assert_ptr_null(a);
        ck_assert_msg(strstr(err.msg, "both missing") && strstr(err.msg, "refusing a new chain, see kmscrypt audit restart"),
                      "message: %s", err.msg);
        ck_assert_int_eq(access(p.log, F_OK), -1);
        ck_assert_int_eq(access(p.head, F_OK), -1);
        assert_lost(&p, &keys, "both missing");

        spew(p.log, "");
        err = (struct kc_err) {};
        ck_assert_int_eq(open_with(&p, &keys, &a, &err), -EBADMSG);
        ck_assert_msg(strstr(err.msg, "is empty") && strstr(err.msg, "refusing"), "message: %s", err.msg);
        ck_assert_int_eq(access(p.head, F_OK), -1);     /* no head of seq 0 written */
        ck_assert_int_eq(file_size(p.log), 0);
}
END_TEST

/*
 * The evidence is asked when the loss is found, not when the handle was
 * opened: an agent opened on a fresh host, keys created since, then log and
 * head deleted.  The parent's open file still holds the old records; a
 * forked child reopens the path and must not start a new chain there.
 */
START_TEST(test_lost_chain_write_after_fork_refused) {
        struct paths p = paths_new();
        struct keys_evidence keys = {};
        _cleanup_audit_ struct kc_audit *a = NULL;
        int status;
        pid_t pid;

        ck_assert_int_eq(open_with(&p, &keys, &a, NULL), 0);
        ck_assert_int_eq(kc_audit_write(a, &(struct kc_audit_record) { .operation = "CreateKey", .intent = true }), 0);
        keys.keys = 2;
        lose_chain(&p, false);
        ck_assert_int_eq(kc_audit_write(a, &(struct kc_audit_record) { .operation = "Decrypt" }), -EBADMSG);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0)
                _exit(kc_audit_write(a, &(struct kc_audit_record) { .operation = "Decrypt" }) == -EBADMSG &&
                      access(p.log, F_OK) < 0 && access(p.head, F_OK) < 0 ? 0 : 1);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child started a new chain");
        assert_lost(&p, &keys, "both missing");
}
END_TEST

/* Evidence that cannot be checked is no evidence of a fresh chain: neither verify nor open says so. */
START_TEST(test_lost_chain_evidence_unreadable) {
        struct paths p = paths_new();
        struct keys_evidence broken = { .error = -EACCES };
        struct kc_audit *a = NULL;
        struct kc_audit_verify v;
        struct kc_err err = {};

        ck_assert_int_eq(verify_with(&p, &broken, &v), -EACCES);
        ck_assert_msg(strstr(v.reason, "cannot tell"), "reason: %s", v.reason);
        ck_assert_int_eq(open_with(&p, &broken, &a, &err), -EACCES);
        ck_assert_msg(strstr(err.msg, "cannot tell"), "message: %s", err.msg);
        ck_assert_int_eq(access(p.log, F_OK), -1);
}
END_TEST

/* Restart: a new chain whose first record says what was lost; afterwards the chain is a chain like any other. */
START_TEST(test_lost_chain_restart) {
        struct paths p = paths_new();
        struct keys_evidence keys = { .keys = 2 };
        struct kc_audit_evidence e = keys_evidence(&keys);
        _cleanup_audit_ struct kc_audit *a = NULL;
        _cleanup_strv_ char **lines = NULL;
        struct kc_caller self;
        struct kc_audit_verify v;
        struct kc_err err = {};

        ck_assert_int_eq(kc_caller_self(&self), 0);
        write_records(p.log, p.head, 4, "restart");
        lose_chain(&p, false);
        ck_assert_msg(kc_audit_restart(p.log, p.head, &e, &self, &err) == 1, "restart: %s", err.msg);
        lines = read_lines(p.log);
        ck_assert_uint_eq(kc_strv_length(lines), 1);
        ck_assert_msg(strstr(lines[0], "\"seq\":1,") && strstr(lines[0], "\"operation\":\"RestartChain\"") &&
                      strstr(lines[0], "\"result\":\"ok\"") && strstr(lines[0], "\"uid\":") &&
                      strstr(lines[0], "both missing, but keystore /ks holds 2 keys") &&
                      strstr(lines[0], "the records before this one are lost") &&
                      strstr(lines[0], "\"prev\":\"0000000000000000000000000000000000000000000000000000000000000000\""),
                      "first record: %s", lines[0]);
        ck_assert_int_eq(verify_with(&p, &keys, &v), 0);
        ck_assert_uint_eq(v.records, 1);

        /* A chain is there now: restart has nothing to do, open and write go on. */
        ck_assert_int_eq(kc_audit_restart(p.log, p.head, &e, &self, NULL), 0);
        ck_assert_int_eq(open_with(&p, &keys, &a, NULL), 0);
        ck_assert_int_eq(kc_audit_write(a, &(struct kc_audit_record) { .operation = "Decrypt" }), 0);
        ck_assert_int_eq(verify_with(&p, &keys, &v), 0);
        ck_assert_uint_eq(v.records, 2);

        /* An emptied log is restarted the same way, the record saying so. */
        kc_audit_close(TAKE_PTR(a));
        lose_chain(&p, true);
        ck_assert_int_eq(kc_audit_restart(p.log, p.head, &e, NULL, NULL), 1);
        kc_strv_free(lines);
        lines = read_lines(p.log);
        ck_assert_uint_eq(kc_strv_length(lines), 1);
        ck_assert_msg(strstr(lines[0], "is empty and its head"), "first record: %s", lines[0]);
        ck_assert_int_eq(verify_with(&p, &keys, &v), 0);
}
END_TEST

/* Restart never touches a chain that is there, broken or not, nor makes one where nothing was lost. */
START_TEST(test_lost_chain_restart_refuses_others) {
        struct paths p = paths_new();
        struct keys_evidence none = {}, keys = { .keys = 2 };
        struct kc_audit_evidence e = keys_evidence(&keys), no = keys_evidence(&none);
        _cleanup_free_ char *before = NULL, *after = NULL;
        struct kc_err err = {};

        /* Fresh: nothing lost, nothing made. */
        ck_assert_int_eq(kc_audit_restart(p.log, p.head, &no, NULL, NULL), 0);
        ck_assert_int_eq(access(p.log, F_OK), -1);
        ck_assert_int_eq(access(p.head, F_OK), -1);
        assert_verify_ok(&p, 0);

        /* Broken (head missing, records there): refused, nothing written. */
        write_records(p.log, p.head, 3, "broken");
        ck_assert_int_eq(unlink(p.head), 0);
        before = slurp(p.log);
        ck_assert_int_eq(kc_audit_restart(p.log, p.head, &e, NULL, &err), -EBADMSG);
        ck_assert_msg(strstr(err.msg, "missing"), "message: %s", err.msg);
        after = slurp(p.log);
        ck_assert_str_eq(before, after);
        ck_assert_int_eq(access(p.head, F_OK), -1);
}
END_TEST

START_TEST(test_fresh_files_private) {
        struct paths p = paths_new();
        _cleanup_audit_ struct kc_audit *a = NULL;
        _cleanup_free_ char *head = NULL;
        struct stat st;
        mode_t old = umask(0);  /* the code must not rely on the caller's umask */

        assert_verify_ok(&p, 0);        /* neither file: a fresh trail */
        ck_assert_int_eq(kc_audit_open(p.log, p.head, NULL, &a, NULL), 0);
        umask(old);
        ck_assert_int_eq(stat(p.log, &st), 0);
        ck_assert_uint_eq(st.st_mode & 07777, 0600);
        ck_assert_int_eq(stat(p.head, &st), 0);
        ck_assert_uint_eq(st.st_mode & 07777, 0600);
        head = slurp(p.head);
        ck_assert_str_eq(head, "{\"seq\":0,\"sha256\":\"0000000000000000000000000000000000000000000000000000000000000000\"}\n");
        assert_verify_ok(&p, 0);

        umask(0);
        ck_assert_int_eq(kc_audit_write(a, &(struct kc_audit_record) { .operation = "CreateKey" }), 0);
        umask(old);
        ck_assert_int_eq(stat(p.head, &st), 0);
        ck_assert_uint_eq(st.st_mode & 07777, 0600);
        assert_verify_ok(&p, 1);
}
END_TEST

/* Records 1..before, then the head as it was, then more records: the head left behind by more. */
static char *head_left_behind(const struct paths *p, unsigned before, unsigned more) {
        _cleanup_free_ char *old_head = NULL;

        write_records(p->log, p->head, before, "crash");
        old_head = slurp(p->head);
        write_records(p->log, p->head, more, "crash");
        char *new_head = slurp(p->head);
        spew(p->head, old_head);        /* as if the process died after the log's fsync */
        return new_head;
}

START_TEST(test_crash_between_log_and_head_repaired) {
        /* One record behind, and a whole batch of them (the most one batch writes). */
        static const unsigned behind[] = { 1, 3, 64 };

        for (size_t i = 0; i < ARRAY_SIZE(behind); i++) {
                struct paths p = paths_new();
                _cleanup_free_ char *new_head = head_left_behind(&p, 5, behind[i]), *repaired = NULL;
                _cleanup_audit_ struct kc_audit *a = NULL;
                struct kc_audit_verify v;
                struct kc_err err = {};

                ck_assert_int_eq(verify(&p, &v), 0);
                ck_assert_uint_eq(v.records, 5 + behind[i]);
                ck_assert_ptr_nonnull(strstr(v.reason, "behind"));

                ck_assert_msg(kc_audit_open(p.log, p.head, NULL, &a, &err) == 0, "open: %s", err.msg);
                repaired = slurp(p.head);
                ck_assert_str_eq(repaired, new_head);
                ck_assert_int_eq(kc_audit_write(a, &(struct kc_audit_record) { .operation = "Decrypt" }), 0);
                assert_verify_ok(&p, 5 + behind[i] + 1);
        }
}
END_TEST

START_TEST(test_head_behind_by_more_than_a_batch_refused) {
        struct paths p = paths_new();
        _cleanup_free_ char *new_head = head_left_behind(&p, 5, 65);

        assert_open_refused(&p, -EBADMSG, "does not match its chain head");
        assert_verify_bad(&p, 6, "rolled back");
}
END_TEST

START_TEST(test_head_behind_with_an_edited_record_refused) {
        /* Lines 6..8 past the head's 5: an edit in 6 or 7 breaks a link the repair follows. */
        for (size_t line = 6; line <= 7; line++) {
                struct paths p = paths_new();
                _cleanup_free_ char *new_head = head_left_behind(&p, 5, 3);
                struct kc_audit_verify v;

                edit_line(&p, line, "\"detail\":\"cr");
                assert_open_refused(&p, -EBADMSG, "does not match its chain head");
                ck_assert_int_eq(verify(&p, &v), -EBADMSG);
        }
}
END_TEST

/* ---- failing writes ---- */

START_TEST(test_write_fails_closed_when_file_cannot_grow) {
        struct paths p = paths_new();
        _cleanup_audit_ struct kc_audit *a = NULL;
        _cleanup_free_ char *head = NULL, *head_after = NULL;
        struct rlimit rl;
        off_t size;

        write_records(p.log, p.head, 3, "fsize");
        size = file_size(p.log);
        head = slurp(p.head);
        ck_assert_int_eq(kc_audit_open(p.log, p.head, NULL, &a, NULL), 0);

        /* Room for 20 more bytes: the first write is short, the next fails with EFBIG. */
        signal(SIGXFSZ, SIG_IGN);
        ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
        struct rlimit small = { .rlim_cur = size + 20, .rlim_max = rl.rlim_max };
        ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
        ck_assert_int_eq(kc_audit_write(a, &(struct kc_audit_record) { .operation = "Decrypt" }), -EFBIG);
        ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);

        /* Rolled back: nothing half written, head untouched, and the trail goes on. */
        ck_assert_int_eq(file_size(p.log), size);
        head_after = slurp(p.head);
        ck_assert_str_eq(head_after, head);
        assert_verify_ok(&p, 3);
        ck_assert_int_eq(kc_audit_write(a, &(struct kc_audit_record) { .operation = "Decrypt" }), 0);
        assert_verify_ok(&p, 4);
}
END_TEST

START_TEST(test_write_fails_closed_when_head_cannot_be_written) {
        struct paths p = paths_new();
        _cleanup_audit_ struct kc_audit *a = NULL;
        char longname[600];
        off_t size;

        /*
         * A head that is a symbolic link (readable, never rewritten in place)
         * whose name leaves no room for the temporary file that would
         * replace it: it cannot be written at all.
         */
        write_records(p.log, p.head, 2, "head");
        size = file_size(p.log);
        snprintf(longname, sizeof(longname), "%s/%0250d", p.dir, 0);
        ck_assert_int_eq(symlink(p.head, longname), 0);
        ck_assert_int_eq(kc_audit_open(p.log, longname, NULL, &a, NULL), 0);
        ck_assert_int_eq(kc_audit_write(a, &(struct kc_audit_record) { .operation = "Decrypt" }), -ENAMETOOLONG);
        ck_assert_int_eq(file_size(p.log), size);       /* rolled back */
        ck_assert_int_eq(unlink(longname), 0);
        assert_verify_ok(&p, 2);
}
END_TEST

/* Once it exists, the head is rewritten in place (one flush a record), private, one line. */
START_TEST(test_head_rewritten_in_place) {
        struct paths p = paths_new();
        struct stat a, b;

        write_records(p.log, p.head, 1, "inplace");
        ck_assert_int_eq(stat(p.head, &a), 0);
        write_records(p.log, p.head, 12, "inplace");     /* seq 9 -> 10 and 13: the line grows */
        ck_assert_int_eq(stat(p.head, &b), 0);
        ck_assert_uint_eq(a.st_ino, b.st_ino);
        ck_assert_uint_eq(b.st_mode & 07777, 0600);
        ck_assert_int_eq(b.st_size, (off_t) strlen("{\"seq\":13,\"sha256\":\"\"}\n") + 64);
        assert_verify_ok(&p, 13);
}
END_TEST

START_TEST(test_write_refused_when_head_vanishes) {
        struct paths p = paths_new();
        _cleanup_audit_ struct kc_audit *a = NULL;
        off_t size;

        /* Every write checks the tail against the head again, under the lock. */
        write_records(p.log, p.head, 2, "vanish");
        size = file_size(p.log);
        ck_assert_int_eq(kc_audit_open(p.log, p.head, NULL, &a, NULL), 0);
        ck_assert_int_eq(unlink(p.head), 0);
        ck_assert_int_eq(kc_audit_write(a, &(struct kc_audit_record) { .operation = "Decrypt" }), -EBADMSG);
        ck_assert_int_eq(file_size(p.log), size);
        ck_assert_int_eq(access(p.head, F_OK), -1);
}
END_TEST

START_TEST(test_log_must_be_regular_file) {
        static const char *targets[] = { "/dev/null", "/dev/full" };

        for (size_t i = 0; i < ARRAY_SIZE(targets); i++) {
                struct paths p = paths_new();
                struct kc_audit_verify v;

                ck_assert_int_eq(symlink(targets[i], p.log), 0);
                assert_open_refused(&p, -EINVAL, "not a regular file");
                ck_assert_int_eq(kc_audit_verify(p.log, p.head, NULL, &v), -EINVAL);
        }
}
END_TEST

START_TEST(test_unopenable_log) {
        struct paths p = paths_new();

        snprintf(p.log, sizeof(p.log), "%s/no/such/dir/audit.log", p.dir);
        assert_open_refused(&p, -ENOENT, "cannot open audit log");
}
END_TEST

/* ---- concurrency ---- */

static void run_writers(const struct paths *p, struct kc_audit *shared, unsigned writers, unsigned each) {
        pid_t pids[16];

        for (unsigned w = 0; w < writers; w++) {
                pids[w] = fork();
                ck_assert_int_ge(pids[w], 0);
                if (pids[w] == 0) {
                        struct kc_audit *a = shared;
                        char detail[32];
                        int ok = 1;

                        if (!a && kc_audit_open(p->log, p->head, NULL, &a, NULL) < 0)
                                _exit(2);
                        for (unsigned i = 0; i < each && ok; i++) {
                                snprintf(detail, sizeof(detail), "writer %u record %u", w, i);
                                ok = kc_audit_write(a, &(struct kc_audit_record) {
                                        .operation = "Decrypt", .detail = detail }) == 0;
                        }
                        _exit(ok ? 0 : 1);
                }
        }
        for (unsigned w = 0; w < writers; w++) {
                int status;
                ck_assert_int_eq(waitpid(pids[w], &status, 0), pids[w]);
                ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer %u failed", w);
        }
}

static int count_writer(struct json_object *o, void *userdata) {
        unsigned *counts = userdata;
        struct json_object *d;
        unsigned w, i;

        ck_assert(json_object_object_get_ex(o, "detail", &d));
        ck_assert_int_eq(sscanf(json_object_get_string(d), "writer %u record %u", &w, &i), 2);
        ck_assert_uint_lt(w, 4);
        ck_assert_uint_eq(i, counts[w]);        /* each writer's records in its own order */
        counts[w]++;
        return 0;
}

/* Four writers' 50 records each, each writer's in its own order, and the chain intact. */
static void assert_four_writers_of_50(const struct paths *p, unsigned counts[static 4]) {
        assert_verify_ok(p, 200);
        ck_assert_int_eq(kc_audit_foreach(p->log, NULL, count_writer, counts), 0);
        for (unsigned w = 0; w < 4; w++)
                ck_assert_uint_eq(counts[w], 50);
}

START_TEST(test_concurrent_writers) {
        struct paths p = paths_new();
        unsigned counts[4] = {};

        run_writers(&p, NULL, 4, 50);
        assert_four_writers_of_50(&p, counts);
}
END_TEST

START_TEST(test_concurrent_writers_sharing_a_handle_across_fork) {
        struct paths p = paths_new();
        _cleanup_audit_ struct kc_audit *a = NULL;

        /* Children inherit one open file, whose flock would not exclude them from each other. */
        ck_assert_int_eq(kc_audit_open(p.log, p.head, NULL, &a, NULL), 0);
        run_writers(&p, a, 4, 50);
        assert_verify_ok(&p, 200);
        ck_assert_int_eq(kc_audit_write(a, &(struct kc_audit_record) { .operation = "Decrypt" }), 0);
        assert_verify_ok(&p, 201);
}
END_TEST

/* ---- one chain a process: shared handles, batches, the cached tail ---- */

struct thread_writer {
        const struct paths *p;
        struct kc_audit *audit; /* NULL: the thread opens its own */
        unsigned id, each;
        int result;
};

static void *thread_writer_main(void *userdata) {
        struct thread_writer *w = userdata;
        _cleanup_audit_ struct kc_audit *a = w->audit;
        char detail[32];

        if (!a)
                w->result = kc_audit_open(w->p->log, w->p->head, NULL, &a, NULL);
        for (unsigned i = 0; i < w->each && w->result == 0; i++) {
                snprintf(detail, sizeof(detail), "writer %u record %u", w->id, i);
                w->result = kc_audit_write(a, &(struct kc_audit_record) { .operation = "Decrypt", .detail = detail });
        }
        return NULL;
}

/*
 * Write-like system calls of this process so far (/proc/self/io), -1 if
 * unknown.  No ck_assert in here: Check notes each one with a write.
 */
static long long syscw(void) {
        char buf[1024];
        long long v = -1;
        FILE *f = fopen("/proc/self/io", "re");

        while (f && fgets(buf, sizeof(buf), f))
                if (sscanf(buf, "syscw: %lld", &v) == 1)
                        break;
        if (f)
                fclose(f);
        return v;
}

/* n threads writing each records, with handles of their own: handles[i], or (handles NULL) opened by each. */
static void run_threads(const struct paths *p, struct thread_writer *w, pthread_t *t, unsigned n, unsigned each,
                        struct kc_audit **handles) {
        for (unsigned i = 0; i < n; i++) {
                w[i] = (struct thread_writer) { .p = p, .audit = handles ? handles[i] : NULL, .id = i, .each = each };
                ck_assert_int_eq(pthread_create(&t[i], NULL, thread_writer_main, &w[i]), 0);
        }
}

static void join_threads(struct thread_writer *w, pthread_t *t, unsigned n) {
        for (unsigned i = 0; i < n; i++) {
                ck_assert_int_eq(pthread_join(t[i], NULL), 0);
                ck_assert_msg(w[i].result == 0, "writer %u: %s", i, strerror(-w[i].result));
        }
}

START_TEST(test_threads_with_own_handles) {
        struct paths p = paths_new();
        struct thread_writer w[4];
        pthread_t t[4];
        unsigned counts[4] = {};

        run_threads(&p, w, t, 4, 50, NULL);
        join_threads(w, t, 4);
        assert_four_writers_of_50(&p, counts);
}
END_TEST

START_TEST(test_waiting_records_go_out_together) {
        struct paths p = paths_new();
        struct thread_writer w[8];
        struct kc_audit *handles[8];
        pthread_t t[8];
        _cleanup_close_ int other = -1;
        long long writes;
        off_t size;

        write_records(p.log, p.head, 1, "first");
        size = file_size(p.log);
        for (unsigned i = 0; i < 8; i++)
                ck_assert_int_eq(kc_audit_open(p.log, p.head, NULL, &handles[i], NULL), 0);
        /* Another process's writer holds the log: this one's records queue up meanwhile. */
        other = open(p.log, O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(other, 0);
        ck_assert_int_eq(flock(other, LOCK_EX), 0);
        run_threads(&p, w, t, 8, 1, handles);
        usleep(300 * 1000);
        ck_assert_int_eq(file_size(p.log), size);
        /* From here to the count, no ck_assert: Check notes each one with a write. */
        writes = syscw();
        (void) flock(other, LOCK_UN);
        for (unsigned i = 0; i < 8; i++)
                (void) pthread_join(t[i], NULL);
        writes = syscw() - writes;
        for (unsigned i = 0; i < 8; i++)
                ck_assert_msg(w[i].result == 0, "writer %u: %s", i, strerror(-w[i].result));
        assert_verify_ok(&p, 9);
        /* Written alone, 8 records take 16 writes (log and head each); in batches, fewer. */
        ck_assert_msg(writes < 16, "%lld writes for 8 records: no batch", writes);
}
END_TEST

struct opener {
        const struct paths *p;
        struct kc_audit *audit;
        int result;
};

static void *opener_main(void *userdata) {
        struct opener *o = userdata;

        o->result = kc_audit_open(o->p->log, o->p->head, NULL, &o->audit, NULL);
        return NULL;
}

/*
 * In a child: an open whose check holds this process's log while it waits
 * for another open file's flock; eight writers queue behind it meanwhile,
 * so that once the lock is let go one of them writes all eight at once.
 * KC_FAULT_STEP kills the child right after that batch's log write.
 */
static void die_in_a_batch(const struct paths *p) {
        struct thread_writer w[8];
        struct kc_audit *handles[8];
        struct opener o = { .p = p };
        pthread_t t[8], ot;
        int other;

        for (unsigned i = 0; i < 8; i++)
                if (kc_audit_open(p->log, p->head, NULL, &handles[i], NULL) < 0)
                        _exit(2);
        other = open(p->log, O_RDONLY | O_CLOEXEC);
        if (other < 0 || flock(other, LOCK_EX) < 0 || setenv("KC_FAULT_STEP", "audit:after-append", 1) < 0 ||
            pthread_create(&ot, NULL, opener_main, &o) != 0)
                _exit(3);
        usleep(200 * 1000);
        for (unsigned i = 0; i < 8; i++) {
                w[i] = (struct thread_writer) { .p = p, .audit = handles[i], .id = i, .each = 1 };
                if (pthread_create(&t[i], NULL, thread_writer_main, &w[i]) != 0)
                        _exit(4);
        }
        usleep(300 * 1000);
        (void) flock(other, LOCK_UN);
        (void) pthread_join(ot, NULL);
        for (unsigned i = 0; i < 8; i++)
                (void) pthread_join(t[i], NULL);
        _exit(5);       /* not killed */
}

START_TEST(test_crash_in_a_batch_repaired) {
        struct paths p = paths_new();
        _cleanup_audit_ struct kc_audit *a = NULL;
        struct kc_audit_verify v;
        struct kc_err err = {};
        unsigned behind;
        int status;
        pid_t pid;

        write_records(p.log, p.head, 1, "first");
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0)
                die_in_a_batch(&p);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status 0x%x, not killed", status);

        /* Killed after the log's write of the batch (all 8, unless a writer came late), before the head's. */
        ck_assert_int_eq(verify(&p, &v), 0);
        ck_assert_msg(sscanf(v.reason, "head %u records behind", &behind) == 1, "reason: %s", v.reason);
        ck_assert_uint_ge(behind, 2);
        ck_assert_uint_eq(v.records, 1 + behind);
        ck_assert_msg(kc_audit_open(p.log, p.head, NULL, &a, &err) == 0, "open: %s", err.msg);
        ck_assert_int_eq(kc_audit_write(a, &(struct kc_audit_record) { .operation = "Decrypt" }), 0);
        assert_verify_ok(&p, 1 + behind + 1);
}
END_TEST

START_TEST(test_edit_between_writes_caught) {
        /* Same-size edits of the last line or of the head, made between two writes of one handle. */
        static const char *const heads[] = { NULL, "\"seq\":" };
        static const char *const lines[] = { "\"volume\":\"", NULL };

        for (size_t i = 0; i < ARRAY_SIZE(heads); i++) {
                struct paths p = paths_new();
                _cleanup_audit_ struct kc_audit *a = NULL;
                struct kc_audit_record rec = { .operation = "Decrypt", .volume = "vol" };
                off_t size;

                ck_assert_int_eq(kc_audit_open(p.log, p.head, NULL, &a, NULL), 0);
                ck_assert_int_eq(kc_audit_write(a, &rec), 0);
                ck_assert_int_eq(kc_audit_write(a, &rec), 0);
                if (lines[i])
                        edit_line(&p, 2, lines[i]);
                else {
                        _cleanup_free_ char *head = slurp(p.head);
                        char *at = strstr(head, heads[i]);

                        ck_assert_ptr_nonnull(at);
                        at[strlen(heads[i])] ^= 0x01;   /* '2' -> '3' */
                        spew(p.head, head);
                }
                size = file_size(p.log);
                ck_assert_int_eq(kc_audit_write(a, &rec), -EBADMSG);
                ck_assert_int_eq(file_size(p.log), size);
        }
}
END_TEST

START_TEST(test_open_follows_a_replaced_log) {
        struct paths p = paths_new();
        _cleanup_audit_ struct kc_audit *a = NULL, *b = NULL;
        struct kc_audit_record rec = { .operation = "Decrypt" };
        struct paths old;
        off_t size;

        ck_assert_int_eq(kc_audit_open(p.log, p.head, NULL, &a, NULL), 0);
        ck_assert_int_eq(kc_audit_write(a, &rec), 0);
        /* The chain moved aside: writes alone stay on the file they were opened on... */
        old = p;
        snprintf(old.log, sizeof(old.log), "%s/old.log", p.dir);
        snprintf(old.head, sizeof(old.head), "%s/old.head", p.dir);
        ck_assert_int_eq(rename(p.log, old.log), 0);
        ck_assert_int_eq(rename(p.head, old.head), 0);
        ck_assert_int_eq(kc_audit_write(a, &rec), -EBADMSG);     /* ...whose head is gone from its path */
        size = file_size(old.log);
        /* ...and a handle opened now starts the chain at the path, and takes the first one along. */
        ck_assert_int_eq(kc_audit_open(p.log, p.head, NULL, &b, NULL), 0);
        ck_assert_int_eq(kc_audit_write(a, &rec), 0);
        ck_assert_int_eq(kc_audit_write(b, &rec), 0);
        assert_verify_ok(&p, 2);
        ck_assert_int_eq(file_size(old.log), size);
}
END_TEST

/* ---- foreach ---- */

struct collected {
        unsigned n;
        unsigned stop_after;
        char key_ids[32][16];
};

static int collect(struct json_object *o, void *userdata) {
        struct collected *c = userdata;
        struct json_object *k;

        ck_assert(json_object_object_get_ex(o, "key_id", &k));
        snprintf(c->key_ids[c->n % 32], sizeof(c->key_ids[0]), "%s", json_object_get_string(k));
        c->n++;
        return c->stop_after && c->n >= c->stop_after ? -ECANCELED : 0;
}

START_TEST(test_foreach_filters) {
        struct paths p = paths_new();
        struct collected all = {}, k1 = {}, future = {}, past = {}, stopped = { .stop_after = 3 };

        ck_assert_int_eq(kc_audit_foreach(p.log, NULL, collect, &all), 0);     /* no log: no records */
        ck_assert_uint_eq(all.n, 0);
        write_records(p.log, p.head, 9, "list");

        ck_assert_int_eq(kc_audit_foreach(p.log, NULL, collect, &all), 0);
        ck_assert_uint_eq(all.n, 9);
        ck_assert_int_eq(kc_audit_foreach(p.log, &(struct kc_audit_filter) { .key_id = "local:k1" }, collect, &k1), 0);
        ck_assert_uint_eq(k1.n, 5);
        for (unsigned i = 0; i < k1.n; i++)
                ck_assert_str_eq(k1.key_ids[i], "local:k1");
        ck_assert_int_eq(kc_audit_foreach(p.log, &(struct kc_audit_filter) { .since = time(NULL) + 3600 }, collect, &future), 0);
        ck_assert_uint_eq(future.n, 0);
        ck_assert_int_eq(kc_audit_foreach(p.log, &(struct kc_audit_filter) { .key_id = "local:k2", .since = time(NULL) - 3600 },
                                          collect, &past), 0);
        ck_assert_uint_eq(past.n, 4);
        ck_assert_int_eq(kc_audit_foreach(p.log, NULL, collect, &stopped), -ECANCELED);
        ck_assert_uint_eq(stopped.n, 3);

        append_text(p.log, "not json\n");
        all.n = 0;
        ck_assert_int_eq(kc_audit_foreach(p.log, NULL, collect, &all), -EBADMSG);
        ck_assert_uint_eq(all.n, 9);
}
END_TEST

/* ---- caller ---- */

static void own_exe(char *buf, size_t size) {
        ssize_t n = readlink("/proc/self/exe", buf, size - 1);
        ck_assert_int_gt(n, 0);
        buf[n] = '\0';
}

START_TEST(test_caller_self) {
        struct kc_caller c;
        char exe[4096];

        own_exe(exe, sizeof(exe));
        ck_assert_int_eq(kc_caller_self(&c), 0);
        ck_assert_int_eq(c.uid, getuid());
        ck_assert_int_eq(c.pid, getpid());
        ck_assert_str_eq(c.exe, exe);
}
END_TEST

START_TEST(test_caller_from_socket) {
        struct paths p = paths_new();
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct kc_caller c = { .pid = -5 };
        int sv[2], pipefd[2], lfd, cfd, status;
        char exe[4096];
        pid_t child;

        own_exe(exe, sizeof(exe));
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        ck_assert_int_eq(kc_caller_from_socket(sv[0], &c), 0);
        ck_assert_int_eq(c.pid, getpid());
        ck_assert_int_eq(c.uid, getuid());
        ck_assert_str_eq(c.exe, exe);
        close(sv[0]);
        close(sv[1]);

        /* A real peer: a child connects to our listening socket. */
        ck_assert_uint_lt(strlen(p.dir) + strlen("/sock"), sizeof(sa.sun_path));
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%.*s/sock", (int) (sizeof(sa.sun_path) - 6), p.dir);
        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(lfd, 0);
        ck_assert_int_eq(bind(lfd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(lfd, 1), 0);
        ck_assert_int_eq(pipe(pipefd), 0);
        child = fork();
        ck_assert_int_ge(child, 0);
        if (child == 0) {
                int fd = socket(AF_UNIX, SOCK_STREAM, 0);
                char b;
                if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                        _exit(1);
                close(pipefd[1]);
                /* Stay alive until the parent has looked (it closes the pipe). */
                _exit(read(pipefd[0], &b, 1) < 0 ? 1 : 0);
        }
        close(pipefd[0]);
        cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        ck_assert_int_ge(cfd, 0);
        ck_assert_int_eq(kc_caller_from_socket(cfd, &c), 0);
        ck_assert_int_eq(c.pid, child);
        ck_assert_int_eq(c.uid, getuid());
        ck_assert_str_eq(c.exe, exe);
        close(pipefd[1]);
        ck_assert_int_eq(waitpid(child, &status, 0), child);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        close(cfd);
        close(lfd);

        /* A socket with no peer, and no socket at all. */
        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        c.pid = -5;
        ck_assert_int_eq(kc_caller_from_socket(lfd, &c), -ENOTCONN);
        ck_assert_int_eq(c.pid, -5);            /* untouched on failure */
        close(lfd);
        ck_assert_int_eq(pipe(pipefd), 0);
        ck_assert_int_eq(kc_caller_from_socket(pipefd[0], &c), -ENOTSOCK);
        close(pipefd[0]);
        close(pipefd[1]);
        ck_assert_int_eq(kc_caller_from_socket(-1, &c), -EINVAL);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("audit");
        TCase *chain = tcase_create("chain");
        TCase *tamper = tcase_create("tamper");
        TCase *lost = tcase_create("lost");
        TCase *io = tcase_create("io");
        TCase *caller = tcase_create("caller");

        tcase_add_test(chain, test_chain_rule);
        tcase_add_test(chain, test_long_last_record);
        tcase_add_test(chain, test_longest_record);
        tcase_add_test(chain, test_record_fields);
        tcase_add_test(chain, test_record_context);
        tcase_add_test(chain, test_bad_records_refused);
        tcase_add_test(chain, test_result_values);
        tcase_add_test(chain, test_time_values);
        tcase_add_test(chain, test_since_values);
        tcase_add_test(chain, test_foreach_filters);
        tcase_add_test(tamper, test_edit_detected);
        tcase_add_test(tamper, test_delete_middle_line);
        tcase_add_test(tamper, test_swap_lines);
        tcase_add_test(tamper, test_insert_line);
        tcase_add_test(tamper, test_truncation_caught_by_head);
        tcase_add_test(tamper, test_appended_garbage);
        tcase_add_test(tamper, test_head_missing_refused);
        tcase_add_test(tamper, test_head_malformed_refused);
        tcase_add_test(tamper, test_empty_log_with_head_refused);
        tcase_add_test(lost, test_lost_chain_fresh_host);
        tcase_add_test(lost, test_lost_chain_verify);
        tcase_add_test(lost, test_lost_chain_open_refused);
        tcase_add_test(lost, test_lost_chain_write_after_fork_refused);
        tcase_add_test(lost, test_lost_chain_evidence_unreadable);
        tcase_add_test(lost, test_lost_chain_restart);
        tcase_add_test(lost, test_lost_chain_restart_refuses_others);
        tcase_add_test(io, test_fresh_files_private);
        tcase_add_test(io, test_crash_between_log_and_head_repaired);
        tcase_add_test(io, test_head_behind_by_more_than_a_batch_refused);
        tcase_add_test(io, test_head_behind_with_an_edited_record_refused);
        tcase_add_test(io, test_write_fails_closed_when_file_cannot_grow);
        tcase_add_test(io, test_write_fails_closed_when_head_cannot_be_written);
        tcase_add_test(io, test_head_rewritten_in_place);
        tcase_add_test(io, test_write_refused_when_head_vanishes);
        tcase_add_test(io, test_log_must_be_regular_file);
        tcase_add_test(io, test_unopenable_log);
        tcase_add_test(io, test_concurrent_writers);
        tcase_add_test(io, test_concurrent_writers_sharing_a_handle_across_fork);
        tcase_add_test(io, test_threads_with_own_handles);
        tcase_add_test(io, test_waiting_records_go_out_together);
        tcase_add_test(io, test_crash_in_a_batch_repaired);
        tcase_add_test(io, test_edit_between_writes_caught);
        tcase_add_test(io, test_open_follows_a_replaced_log);
        tcase_set_timeout(io, 60);
        tcase_add_test(caller, test_caller_self);
        tcase_add_test(caller, test_caller_from_socket);
        suite_add_tcase(s, chain);
        suite_add_tcase(s, tamper);
        suite_add_tcase(s, lost);
        suite_add_tcase(s, io);
        suite_add_tcase(s, caller);
        return s;
}
