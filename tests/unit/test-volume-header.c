/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Header-side volume workflows (format, adopt, dump) against a real local
 * KMS in a temporary keystore with its audit log, on sparse image files.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/attach.h"
#include "agent/kms.h"
#include "agent/volume.h"
#include "lib/fileio.h"
#include "lib/json-util.h"
#include "lib/secret.h"
#include "tests/unit/check-main.h"
#include "tests/unit/luks-util.h"

struct env {
        char *dir;
        char *keystore;
        char *audit_log;
        struct kc_kms *kms;
        struct kc_caller caller;
        struct kc_key_info key;
        struct kc_context *ctx;
};

static void env_init(struct env *e) {
        struct kc_kms_config cfg;
        struct kc_kms_request req = { .caller = &e->caller };
        struct kc_err err = {};
        int r;

        *e = (struct env) {};
        e->dir = kc_test_tmpdir();
        ck_assert_int_ge(asprintf(&e->keystore, "%s/keystore", e->dir), 0);
        ck_assert_int_ge(asprintf(&e->audit_log, "%s/audit.log", e->dir), 0);
        cfg = (struct kc_kms_config) { .keystore_dir = e->keystore, .audit_log = e->audit_log };
        ck_assert_int_eq(kc_caller_self(&e->caller), 0);
        r = kc_kms_open(&cfg, &e->kms, &err);
        ck_assert_msg(r == 0, "kc_kms_open: %s", kc_err_msg(&err, r));
        r = kc_kms_create_key(e->kms, &req, NULL, "alias/pgdata", "volumes", &e->key, &err);
        ck_assert_msg(r == 0, "create key: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(kc_context_parse_kv("db-id=db-1,volume-id=vol-2", &e->ctx, &err), 0);
}

static void env_done(struct env *e) {
        kc_kms_close(e->kms);
        kc_context_free(e->ctx);
        free(e->dir);
        free(e->keystore);
        free(e->audit_log);
}

/* Audit records so far whose operation is op (NULL: all). */
/* The audit records whose line holds text (NULL: all). */
static unsigned audit_count_text(const struct env *e, const char *text) {
        char line[8192];
        unsigned n = 0;
        FILE *f = fopen(e->audit_log, "re");

        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (!text || strstr(line, text))
                        n++;
        fclose(f);
        return n;
}

static unsigned audit_count(const struct env *e, const char *op) {
        char want[64];

        snprintf(want, sizeof(want), "\"operation\":\"%s\"", op ?: "");
        return audit_count_text(e, op ? want : NULL);
}

/* Unwrap the token on img through the KMS, as attach will; the key in secret memory. */
static void *token_unwrap(const struct env *e, const char *img, const char *hdr) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        _cleanup_(kc_token_clear) struct kc_token t = {};
        _cleanup_free_ char *ref = NULL;
        struct kc_kms_request req = { .caller = &e->caller };
        struct kc_err err = {};
        void *key = NULL;
        int r;

        ck_assert_int_eq(kc_luks_open(img, hdr, &l, &err), 0);
        ck_assert_int_eq(kc_luks_token_read(l, &t, NULL, &err), 0);
        ck_assert_int_eq(kc_token_key_ref(&t, &ref), 0);
        r = kc_kms_decrypt(e->kms, &req, ref, t.wrapped_key, t.wrapped_key_len, t.context, &key, NULL, NULL, &err);
        ck_assert_msg(r == 0, "unwrap: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(kc_luks_verify_key(l, key, kc_secret_size(key), NULL), 0);
        /* Every writer of a token binds the key it proved: the next attach skips the PBKDF2. */
        ck_assert_int_eq(kc_luks_key_check_verify(l, key, kc_secret_size(key), &t), 0);
        return key;
}

static struct kc_volume_format_params format_params(const struct env *e, const char *img) {
        return (struct kc_volume_format_params) {
                .ref = { .device = img }, .key_ref = "alias/pgdata", .context = e->ctx,
        };
}

START_TEST(test_encrypt) {
        _cleanup_secret_ uint8_t *key = kc_test_random_key(64);
        _cleanup_secret_ void *back = NULL;
        _cleanup_context_ struct kc_context *other = NULL;
        struct kc_data_key dk = {}, none = {};
        struct kc_kms_request req;
        struct kc_err err = {};
        struct env e;

        env_init(&e);
        req = (struct kc_kms_request) { .caller = &e.caller, .volume = "adopted" };
        ck_assert_int_eq(kc_kms_encrypt(e.kms, &req, "alias/pgdata", e.ctx, key, 64, &dk, &err), 0);
        ck_assert_ptr_null(dk.plaintext);
        ck_assert_str_eq(dk.key_id, e.key.key_id);
        ck_assert_uint_eq(dk.key_version, 1);
        ck_assert_int_eq(kc_kms_decrypt(e.kms, &req, "alias/pgdata", dk.blob, dk.blob_len, e.ctx, &back, NULL, NULL, &err), 0);
        ck_assert_uint_eq(kc_secret_size(back), 64);
        ck_assert_mem_eq(back, key, 64);
        ck_assert_uint_eq(audit_count(&e, "Encrypt"), 1);

        /* Bound to the context like any wrapped key. */
        ck_assert_int_eq(kc_context_parse_kv("db-id=db-1,volume-id=vol-3", &other, &err), 0);
        kc_secret_free(TAKE_PTR(back));
        ck_assert_int_eq(kc_kms_decrypt(e.kms, &req, NULL, dk.blob, dk.blob_len, other, &back, NULL, NULL, &err), -EBADMSG);

        ck_assert_int_eq(kc_kms_encrypt(e.kms, &req, "alias/pgdata", e.ctx, key, 0, &none, NULL), -EINVAL);
        ck_assert_int_eq(kc_kms_encrypt(e.kms, &req, "alias/pgdata", e.ctx, key, 1025, &none, NULL), -EINVAL);
        ck_assert_int_eq(kc_kms_encrypt(e.kms, &req, "alias/pgdata", NULL, key, 64, &none, NULL), -EINVAL);
        ck_assert_int_lt(kc_kms_encrypt(e.kms, &req, "alias/none", e.ctx, key, 64, &none, NULL), 0);
        ck_assert_ptr_null(none.blob);
        /* Refusals are audited too. */
        ck_assert_uint_eq(audit_count(&e, "Encrypt"), 5);
        kc_data_key_clear(&dk);
        env_done(&e);
}
END_TEST

START_TEST(test_format) {
        struct env e;
        env_init(&e);
        _cleanup_free_ char *img = kc_test_image(e.dir, "a.img", KC_TEST_IMAGE_SIZE);
        _cleanup_secret_ void *key = NULL;
        _cleanup_luks_ struct kc_luks *l = NULL;
        struct kc_volume_format_params p = format_params(&e, img);
        struct kc_volume_result res;
        struct kc_luks_segment seg;
        struct kc_err err = {};
        char line[4096];
        FILE *f;
        int r;

        p.label = "pgdata";
        r = kc_volume_format(e.kms, &e.caller, &p, &res, &err);
        ck_assert_msg(r == 0, "format: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(res.token_id, 0);
        ck_assert_int_eq(res.recovery_keyslot, -1);
        ck_assert_str_eq(res.key_id, e.key.key_id);
        ck_assert_uint_eq(res.key_version, 1);

        ck_assert_int_eq(kc_luks_open(img, NULL, &l, &err), 0);
        ck_assert_int_eq(kc_luks_segment(l, &seg), 0);
        ck_assert_str_eq(seg.uuid, res.uuid);
        ck_assert_str_eq(seg.label, "pgdata");
        ck_assert_uint_eq(seg.sector_size, 4096);
        key = token_unwrap(&e, img, NULL);
        ck_assert_uint_eq(kc_secret_size(key), 64);

        /* GenerateDataKey, then the read-back Decrypt, both naming the new volume. */
        ck_assert_uint_eq(audit_count(&e, "GenerateDataKey"), 1);
        ck_assert_uint_ge(audit_count(&e, "Decrypt"), 1);
        f = fopen(e.audit_log, "re");
        ck_assert_ptr_nonnull(f);
        while (fgets(line, sizeof(line), f))
                if (strstr(line, "GenerateDataKey"))
                        ck_assert_msg(strstr(line, res.uuid), "record does not name the volume: %s", line);
        fclose(f);
        env_done(&e);
}
END_TEST

START_TEST(test_format_recovery_interop) {
        struct env e;
        env_init(&e);
        _cleanup_free_ char *img = kc_test_image(e.dir, "a.img", KC_TEST_IMAGE_SIZE),
                            *pass = kc_test_write_file(e.dir, "pass", "recover me"), *dump = NULL;
        _cleanup_secret_ void *key = NULL, *mk = NULL;
        struct kc_volume_format_params p = format_params(&e, img);
        struct kc_volume_result res;
        struct kc_err err = {};
        int r;

        p.recovery_passphrase = "recover me";
        p.recovery_passphrase_len = strlen("recover me");
        p.pbkdf = &kc_test_fast_pbkdf;
        r = kc_volume_format(e.kms, &e.caller, &p, &res, &err);
        ck_assert_msg(r == 0, "format: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(res.recovery_keyslot, 0);

        /* Stock cryptsetup: the token is listed, and the recovery keyslot opens the key the KMS unwraps. */
        dump = kc_test_run("cryptsetup luksDump '%s'", img);
        ck_assert_ptr_nonnull(strstr(dump, "kmscrypt"));
        key = token_unwrap(&e, img, NULL);
        mk = kc_test_cryptsetup_volume_key(img, NULL, pass);
        ck_assert_uint_eq(kc_secret_size(mk), 64);
        ck_assert_mem_eq(mk, key, 64);
        free(kc_test_run("cryptsetup open --test-passphrase --key-file '%s' '%s'", pass, img));
        env_done(&e);
}
END_TEST

START_TEST(test_format_detached) {
        struct env e;
        env_init(&e);
        _cleanup_free_ char *img = kc_test_image(e.dir, "data.img", KC_TEST_IMAGE_SIZE), *hdr = NULL;
        _cleanup_secret_ void *key = NULL;
        struct kc_volume_format_params p = format_params(&e, img);
        struct kc_volume_result res;
        struct kc_err err = {};
        int r;

        ck_assert_int_ge(asprintf(&hdr, "%s/new-header", e.dir), 0);
        p.ref.header = hdr;

        /* A failed format removes the header file it created. */
        p.key_ref = "alias/missing";
        ck_assert_int_lt(kc_volume_format(e.kms, &e.caller, &p, &res, &err), 0);
        ck_assert_int_eq(access(hdr, F_OK), -1);

        p.key_ref = "alias/pgdata";
        err = (struct kc_err) {};
        r = kc_volume_format(e.kms, &e.caller, &p, &res, &err);
        ck_assert_msg(r == 0, "format: %s", kc_err_msg(&err, r));
        ck_assert(kc_test_file_is_zero(img));
        key = token_unwrap(&e, img, hdr);

        /* The header now carries a signature: formatting onto it again needs force. */
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_volume_format(e.kms, &e.caller, &p, &res, &err), -EEXIST);
        ck_assert_msg(strstr(err.msg, "crypto_LUKS"), "%s", err.msg);
        env_done(&e);
}
END_TEST

/* Each refusal: before the KMS is asked (no audit record) and with the device untouched. */
START_TEST(test_format_refusals) {
        struct env e;
        env_init(&e);
        _cleanup_free_ char *img = kc_test_image(e.dir, "a.img", KC_TEST_IMAGE_SIZE),
                            *luks = kc_test_luks2_plain(e.dir, "luks.img", NULL),
                            *small = kc_test_image(e.dir, "small.img", 16ULL << 20);
        _cleanup_context_ struct kc_context *no_vol = NULL, *no_db = NULL, *empty_vol = NULL;
        struct kc_volume_format_params p;
        struct kc_volume_result res;
        uint64_t before = kc_test_file_hash(img), luks_before = kc_test_file_hash(luks), size;
        unsigned records = audit_count(&e, NULL);
        struct kc_err err = {};

        ck_assert_int_eq(kc_context_parse_kv("db-id=db-1", &no_vol, &err), 0);
        ck_assert_int_eq(kc_context_parse_kv("volume-id=v", &no_db, &err), 0);
        ck_assert_int_eq(kc_context_parse_kv("db-id=db-1,volume-id=", &empty_vol, &err), 0);
        const struct {
                const char *device;
                const struct kc_context *ctx;
                int r;
                const char *want;
        } cases[] = {
                { img, no_vol, -EINVAL, "must name volume-id" },
                { img, no_db, -EINVAL, "must name db-id" },
                { img, empty_vol, -EINVAL, "must name volume-id" },
                { img, NULL, -EINVAL, "no encryption context" },
                { luks, e.ctx, -EEXIST, "crypto_LUKS" },
                { "/nonexistent/dev", e.ctx, -ENOENT, "/nonexistent/dev" },
                { e.dir, e.ctx, -EISDIR, e.dir },
                /* All header, no data: libcryptsetup would format it. */
                { small, e.ctx, -ENOSPC, "is 16777216 bytes; it needs at least 16777728" },
        };

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                err = (struct kc_err) {};
                p = format_params(&e, cases[i].device);
                p.context = cases[i].ctx;
                ck_assert_int_eq(kc_volume_format(e.kms, &e.caller, &p, &res, &err), cases[i].r);
                ck_assert_msg(strstr(err.msg, cases[i].want), "case %zu: %s", i, err.msg);
        }
        p = format_params(&e, img);
        p.key_ref = "kmip:key/x"; /* no such provider */
        ck_assert_int_eq(kc_volume_format(e.kms, &e.caller, &p, &res, &err), -EPROTONOSUPPORT);
        p.key_ref = "";
        ck_assert_int_eq(kc_volume_format(e.kms, &e.caller, &p, &res, &err), -EINVAL);
        /* A recovery keyslot cost libcryptsetup refuses: before the KMS makes a data key. */
        p = format_params(&e, img);
        p.recovery_passphrase = "pw";
        p.recovery_passphrase_len = 2;
        p.pbkdf = &(const struct kc_luks_pbkdf) { .type = "pbkdf2", .iterations = 999 };
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_volume_format(e.kms, &e.caller, &p, &res, &err), -EINVAL);
        ck_assert_msg(strstr(err.msg, "pbkdf2"), "%s", err.msg);
        /* A sector size the device cannot take: kc_luks_format()'s line, before the KMS makes a data key. */
        p = format_params(&e, img);
        p.sector_size = 768;
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_volume_format(e.kms, &e.caller, &p, &res, &err), -EINVAL);
        ck_assert_str_eq(err.msg, "sector size 768 is not a power of two between 512 and 4096");

        ck_assert_uint_eq(audit_count(&e, NULL), records);
        ck_assert_uint_eq(kc_test_file_hash(img), before);
        ck_assert_uint_eq(kc_test_file_hash(luks), luks_before);
        ck_assert(kc_test_file_is_zero(small));
        ck_assert_int_eq(kc_path_size(small, &size), 0);
        ck_assert_uint_eq(size, 16ULL << 20);

        /* A key the KMS refuses: audited, and still nothing written. */
        p = format_params(&e, img);
        p.key_ref = "alias/missing";
        ck_assert_int_lt(kc_volume_format(e.kms, &e.caller, &p, &res, &err), 0);
        ck_assert_uint_eq(audit_count(&e, "GenerateDataKey"), 1);
        ck_assert_uint_eq(kc_test_file_hash(img), before);

        /* force formats over the LUKS device. */
        p = format_params(&e, luks);
        p.force = true;
        err = (struct kc_err) {};
        ck_assert_msg(kc_volume_format(e.kms, &e.caller, &p, &res, &err) == 0, "%s", err.msg);
        env_done(&e);
}
END_TEST

/*
 * A format that fails once libcryptsetup has written its header (here the
 * recovery keyslot's PBKDF costs, which it refuses only then) leaves the
 * device blank again, so the same format with good costs needs no force; a
 * header this call did not write (forced, failed before writing) is left alone.
 */
START_TEST(test_format_failure_leaves_device_blank) {
        struct env e;
        env_init(&e);
        _cleanup_free_ char *img = kc_test_image(e.dir, "a.img", KC_TEST_IMAGE_SIZE),
                            *luks = kc_test_luks2_plain(e.dir, "luks.img", NULL);
        const struct kc_luks_pbkdf refused = { .type = "pbkdf2", .iterations = 1 };
        struct kc_volume_format_params p = format_params(&e, img);
        uint64_t luks_before = kc_test_file_hash(luks);
        struct kc_volume_result res;
        struct kc_err err = {};

        p.recovery_passphrase = "recover";
        p.recovery_passphrase_len = 7;
        p.pbkdf = &refused;
        ck_assert_int_eq(kc_volume_format(e.kms, &e.caller, &p, &res, &err), -EINVAL);
        ck_assert_msg(kc_luks_check_blank(img, &err) == 0, "%s", err.msg);
        p.pbkdf = &kc_test_fast_pbkdf;
        ck_assert_msg(kc_volume_format(e.kms, &e.caller, &p, &res, &err) == 0, "%s", err.msg);

        p = format_params(&e, luks);
        p.force = true;
        p.sector_size = 768;
        ck_assert_int_eq(kc_volume_format(e.kms, &e.caller, &p, &res, &err), -EINVAL);
        ck_assert_uint_eq(kc_test_file_hash(luks), luks_before);
        env_done(&e);
}
END_TEST

START_TEST(test_format_read_only) {
        struct env e;
        env_init(&e);
        _cleanup_free_ char *img = kc_test_image(e.dir, "a.img", KC_TEST_IMAGE_SIZE);
        struct kc_volume_format_params p = format_params(&e, img);
        struct kc_volume_result res;
        struct kc_err err = {};
        int fd, flags = 0, r;

        /* Root ignores file modes; the immutable flag stops even root. */
        fd = open(img, O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0 || (flags |= FS_IMMUTABLE_FL, ioctl(fd, FS_IOC_SETFLAGS, &flags) < 0)) {
                close(fd);
                env_done(&e);
                return;   /* this filesystem or capability set cannot say "read-only" to root */
        }
        r = kc_volume_format(e.kms, &e.caller, &p, &res, &err);
        flags &= ~FS_IMMUTABLE_FL;
        ck_assert_int_eq(ioctl(fd, FS_IOC_SETFLAGS, &flags), 0);
        close(fd);
        ck_assert_int_eq(r, -EROFS);
        ck_assert_msg(strstr(err.msg, "read-only"), "%s", err.msg);
        ck_assert_uint_eq(audit_count(&e, "GenerateDataKey"), 0);
        ck_assert(kc_test_file_is_zero(img));
        env_done(&e);
}
END_TEST

/* Bytes of the data area at a few offsets, to prove adopt never touches data. */
static void data_sample(const char *img, uint8_t out[3][512]) {
        static const off_t where[3] = { 16 << 20, 20 << 20, (32 << 20) - 512 };
        int fd = open(img, O_RDONLY | O_CLOEXEC);

        ck_assert_int_ge(fd, 0);
        for (size_t i = 0; i < 3; i++)
                ck_assert_int_eq(pread(fd, out[i], 512, where[i]), 512);
        close(fd);
}

static void data_fill(const char *img) {
        uint8_t buf[4096];
        int fd = open(img, O_WRONLY | O_CLOEXEC);

        ck_assert_int_ge(fd, 0);
        for (size_t i = 0; i < sizeof(buf); i++)
                buf[i] = (uint8_t) (i * 31 + 7);
        for (off_t off = 16 << 20; off < 32 << 20; off += 1 << 20)
                ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), off), (ssize_t) sizeof(buf));
        ck_assert_int_eq(pwrite(fd, buf, 512, (32 << 20) - 512), 512);
        close(fd);
}

static struct kc_volume_adopt_params adopt_params(const struct env *e, const char *img, const char *pass) {
        return (struct kc_volume_adopt_params) {
                .ref = { .device = img }, .key_ref = "alias/pgdata", .context = e->ctx,
                .passphrase = pass, .passphrase_len = pass ? strlen(pass) : 0,
        };
}

START_TEST(test_adopt) {
        struct env e;
        env_init(&e);
        _cleanup_free_ char *img = kc_test_luks2_plain(e.dir, "a.img", NULL), *pass = NULL, *dump = NULL;
        _cleanup_secret_ void *key = NULL, *mk = NULL;
        struct kc_volume_adopt_params p = adopt_params(&e, img, "old passphrase");
        struct kc_volume_result res;
        struct kc_err err = {};
        uint8_t before[3][512], after[3][512];
        int r;

        ck_assert_int_ge(asprintf(&pass, "%s.pass", img), 0);
        data_fill(img);
        data_sample(img, before);
        r = kc_volume_adopt(e.kms, &e.caller, &p, &res, &err);
        ck_assert_msg(r == 0, "adopt: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(res.token_id, 0);
        ck_assert_int_eq(res.removed_keyslots, 0);
        ck_assert_str_eq(res.key_id, e.key.key_id);
        data_sample(img, after);
        ck_assert_mem_eq(before, after, sizeof(before));

        /* The token opens the same key as the passphrase, which still works. */
        key = token_unwrap(&e, img, NULL);
        mk = kc_test_cryptsetup_volume_key(img, NULL, pass);
        ck_assert_uint_eq(kc_secret_size(key), kc_secret_size(mk));
        ck_assert_mem_eq(key, mk, kc_secret_size(mk));
        ck_assert_uint_eq(audit_count(&e, "Encrypt"), 1);
        /* adopt asked the KMS to unwrap once (before writing), token_unwrap() once more. */
        ck_assert_uint_eq(audit_count(&e, "Decrypt"), 2);

        /* Adopting twice is refused before anything is unlocked. */
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_volume_adopt(e.kms, &e.caller, &p, &res, &err), -EEXIST);
        ck_assert_ptr_nonnull(strstr(err.msg, "already has a kmscrypt token"));
        ck_assert_uint_eq(audit_count(&e, "Encrypt"), 1);

        dump = kc_test_run("cryptsetup luksDump '%s'", img);
        ck_assert_ptr_nonnull(strstr(dump, "kmscrypt"));
        ck_assert_ptr_nonnull(strstr(dump, "0: luks2"));
        env_done(&e);
}
END_TEST

/* Length of the first audit record of operation op, newline included; 0 if none. */
static size_t audit_record_len(const struct env *e, const char *op) {
        char line[8192], want[64];
        size_t n = 0;
        FILE *f = fopen(e->audit_log, "re");

        ck_assert_ptr_nonnull(f);
        snprintf(want, sizeof(want), "\"operation\":\"%s\"", op);
        while (n == 0 && fgets(line, sizeof(line), f))
                if (strstr(line, want))
                        n = strlen(line);
        fclose(f);
        return n;
}

/*
 * The KMS wraps the key but will not unwrap it (here: its audit log cannot
 * take the Decrypt record, through the file size limit): adopt fails and
 * the header is as it was, no token in it, so adopting again once the KMS
 * is back needs nothing undone by hand.
 */
START_TEST(test_adopt_unproven_writes_nothing) {
        struct env e;
        env_init(&e);
        _cleanup_free_ char *img = kc_test_luks2_plain(e.dir, "a.img", NULL),
                            *twin = kc_test_luks2_plain(e.dir, "b.img", NULL);
        struct kc_volume_adopt_params p = adopt_params(&e, twin, "old passphrase");
        struct kc_kms_request req = { .caller = &e.caller };
        struct kc_volume_result res;
        struct kc_key_info info;
        struct rlimit old, small;
        struct kc_err err = {};
        uint64_t before = kc_test_file_hash(img);
        struct stat st;
        size_t record;
        int r;

        /* The limit must fall in the audit log only, well past the two LUKS2 header copies. */
        do
                ck_assert_int_eq(kc_kms_describe_key(e.kms, &req, "alias/pgdata", &info, &err), 0);
        while (stat(e.audit_log, &st) == 0 && st.st_size < 128 * 1024);
        r = kc_volume_adopt(e.kms, &e.caller, &p, &res, &err);
        ck_assert_msg(r == 0, "adopt the twin: %s", kc_err_msg(&err, r));
        record = audit_record_len(&e, "Encrypt");
        ck_assert_uint_gt(record, 0);

        /* Room for the Encrypt record of img, not for a Decrypt record after it. */
        ck_assert_int_eq(stat(e.audit_log, &st), 0);
        signal(SIGXFSZ, SIG_IGN);
        ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
        small = (struct rlimit) { .rlim_cur = (rlim_t) st.st_size + record + record / 2, .rlim_max = old.rlim_max };
        ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
        p = adopt_params(&e, img, "old passphrase");
        err = (struct kc_err) {};
        r = kc_volume_adopt(e.kms, &e.caller, &p, &res, &err);
        ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
        ck_assert_msg(r < 0, "adopt succeeded without a Decrypt record");
        ck_assert_msg(kc_test_file_hash(img) == before, "adopt failed (%s), but changed the header", err.msg);

        err = (struct kc_err) {};
        r = kc_volume_adopt(e.kms, &e.caller, &p, &res, &err);
        ck_assert_msg(r == 0, "adopt again: %s", kc_err_msg(&err, r));
        env_done(&e);
}
END_TEST

START_TEST(test_adopt_remove_passphrase) {
        struct env e;
        env_init(&e);
        /* A 256-bit XTS volume: adopt keeps whatever key the volume has. */
        _cleanup_free_ char *img = kc_test_luks2_plain(e.dir, "a.img", "--key-size 256"), *pass = NULL, *dump = NULL,
                            *cmd = NULL;
        _cleanup_secret_ void *key = NULL;
        _cleanup_luks_ struct kc_luks *l = NULL;
        struct kc_volume_adopt_params p = adopt_params(&e, img, "old passphrase");
        struct kc_volume_result res;
        struct kc_err err = {};
        uint8_t before[3][512], after[3][512];
        void *none = NULL;
        int r;

        ck_assert_int_ge(asprintf(&pass, "%s.pass", img), 0);
        data_fill(img);
        data_sample(img, before);
        p.remove_passphrase = true;
        r = kc_volume_adopt(e.kms, &e.caller, &p, &res, &err);
        ck_assert_msg(r == 0, "adopt: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(res.removed_keyslots, 1);
        data_sample(img, after);
        ck_assert_mem_eq(before, after, sizeof(before));

        key = token_unwrap(&e, img, NULL);
        ck_assert_uint_eq(kc_secret_size(key), 32);
        ck_assert_int_eq(kc_luks_open(img, NULL, &l, &err), 0);
        ck_assert_int_lt(kc_luks_volume_key_by_passphrase(l, "old passphrase", 14, &none, &err), 0);
        dump = kc_test_run("cryptsetup luksDump '%s'", img);
        ck_assert_ptr_null(strstr(dump, "0: luks2"));
        ck_assert_int_ge(asprintf(&cmd, "cryptsetup open --test-passphrase --key-file '%s' '%s' 2>/dev/null", pass, img), 0);
        ck_assert_int_ne(system(cmd), 0);
        env_done(&e);
}
END_TEST

START_TEST(test_adopt_refusals) {
        struct env e;
        env_init(&e);
        _cleanup_free_ char *img = kc_test_luks2_plain(e.dir, "a.img", NULL),
                            *l1 = kc_test_luks1(e.dir, "l1.img"),
                            *zero = kc_test_image(e.dir, "z.img", KC_TEST_IMAGE_SIZE);
        _cleanup_context_ struct kc_context *no_vol = NULL;
        uint64_t before = kc_test_file_hash(img), l1_before = kc_test_file_hash(l1);
        struct kc_volume_adopt_params p;
        struct kc_volume_result res;
        struct kc_err err = {};

        ck_assert_int_eq(kc_context_parse_kv("db-id=db-1", &no_vol, &err), 0);
        const struct {
                const char *device, *pass;
                const struct kc_context *ctx;
                int r;
                const char *want;
        } cases[] = {
                { img, "wrong passphrase", e.ctx, -EPERM, "no keyslot" },
                { img, NULL, e.ctx, -EINVAL, "no passphrase" },
                { img, "old passphrase", no_vol, -EINVAL, "must name volume-id" },
                { l1, "old passphrase", e.ctx, -EINVAL, "is LUKS1" },
                { zero, "old passphrase", e.ctx, -EINVAL, "not a LUKS2 device" },
                { "/nonexistent/dev", "old passphrase", e.ctx, -ENOENT, "/nonexistent/dev" },
        };

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                err = (struct kc_err) {};
                p = adopt_params(&e, cases[i].device, cases[i].pass);
                p.context = cases[i].ctx;
                p.remove_passphrase = true;
                ck_assert_int_eq(kc_volume_adopt(e.kms, &e.caller, &p, &res, &err), cases[i].r);
                ck_assert_msg(strstr(err.msg, cases[i].want), "case %zu: %s", i, err.msg);
        }
        ck_assert_uint_eq(audit_count(&e, "Encrypt"), 0);
        ck_assert_uint_eq(kc_test_file_hash(img), before);
        ck_assert_uint_eq(kc_test_file_hash(l1), l1_before);

        /* A volume with a broken kmscrypt token is not adopted over it. */
        kc_test_token_set_raw(img, NULL, -1, "{\"type\":\"kmscrypt\",\"keyslots\":[],\"kmscrypt_version\":7}");
        before = kc_test_file_hash(img);
        p = adopt_params(&e, img, "old passphrase");
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_volume_adopt(e.kms, &e.caller, &p, &res, &err), -EPROTONOSUPPORT);
        ck_assert_msg(strstr(err.msg, "unsupported kmscrypt token version 7"), "%s", err.msg);
        ck_assert_uint_eq(kc_test_file_hash(img), before);
        env_done(&e);
}
END_TEST

START_TEST(test_dump) {
        struct env e;
        env_init(&e);
        _cleanup_free_ char *img = kc_test_image(e.dir, "a.img", KC_TEST_IMAGE_SIZE),
                            *plain = kc_test_luks2_plain(e.dir, "plain.img", NULL),
                            *zero = kc_test_image(e.dir, "z.img", KC_TEST_IMAGE_SIZE);
        struct kc_volume_format_params p = format_params(&e, img);
        struct kc_volume_ref ref = { .device = img };
        struct kc_volume_result res;
        struct kc_err err = {}, terr = {};
        struct json_object *o = NULL, *kc;
        unsigned records;

        ck_assert_int_eq(kc_volume_format(e.kms, &e.caller, &p, &res, &err), 0);
        records = audit_count(&e, NULL);

        ck_assert_int_eq(kc_volume_dump(&ref, &o, &terr, &err), 0);
        ck_assert_int_eq(terr.error, 0);
        ck_assert_str_eq(json_object_get_string(json_object_object_get(o, "LuksUuid")), res.uuid);
        /* The names and units kmscrypt status uses for the same facts. */
        ck_assert_str_eq(json_object_get_string(json_object_object_get(o, "Cipher")), "aes-xts-plain64");
        /* Without a keyslot libcryptsetup does not record the key size: null, not 0. */
        ck_assert(json_object_object_get_ex(o, "KeySize", NULL) && !json_object_object_get(o, "KeySize"));
        json_object_object_foreach(o, name, v) {
                (void) v;
                ck_assert_msg(name[0] >= 'A' && name[0] <= 'Z' && !strchr(name, '_'), "member %s", name);
        }
        kc = json_object_object_get(o, "KmscryptToken");
        ck_assert_ptr_nonnull(kc);
        ck_assert_str_eq(json_object_get_string(json_object_object_get(kc, "KeyId")), e.key.key_id);
        ck_assert_int_eq(json_object_get_int(json_object_object_get(kc, "TokenId")), res.token_id);
        ck_assert_str_eq(json_object_get_string(json_object_object_get(json_object_object_get(kc, "EncryptionContext"), "db-id")),
                         "db-1");
        ck_assert_int_gt(json_object_get_int(json_object_object_get(kc, "CiphertextBlobLength")), 0);
        ck_assert_int_eq(json_object_get_int(json_object_object_get(
                                 json_object_array_get_idx(json_object_object_get(o, "Tokens"), 0), "Id")), res.token_id);
        json_object_put(TAKE_PTR(o));
        /* No KMS involved. */
        ck_assert_uint_eq(audit_count(&e, NULL), records);

        /* LUKS2 without a token: the facts, and the reason. */
        ref.device = plain;
        ck_assert_int_eq(kc_volume_dump(&ref, &o, &terr, &err), 0);
        ck_assert_int_eq(terr.error, -ENOENT);
        ck_assert_ptr_nonnull(strstr(terr.msg, "has no kmscrypt token"));
        ck_assert(!json_object_object_get_ex(o, "KmscryptToken", NULL));
        ck_assert_uint_eq(json_object_array_length(json_object_object_get(o, "Keyslots")), 1);
        ck_assert_str_eq(json_object_get_string(json_object_object_get(
                                 json_object_array_get_idx(json_object_object_get(o, "Keyslots"), 0), "Kdf")), "pbkdf2");
        ck_assert_int_eq(json_object_get_int(json_object_object_get(o, "KeySize")), 512);
        json_object_put(TAKE_PTR(o));

        terr = (struct kc_err) {};
        kc_test_token_set_raw(plain, NULL, -1, "{\"type\":\"kmscrypt\",\"keyslots\":[],\"kmscrypt_version\":1}");
        ck_assert_int_eq(kc_volume_dump(&ref, &o, &terr, &err), 0);
        ck_assert_int_eq(terr.error, -EINVAL);
        json_object_put(TAKE_PTR(o));

        ref.device = zero;
        ck_assert_int_eq(kc_volume_dump(&ref, &o, &terr, &err), -EINVAL);
        ck_assert_ptr_null(o);
        env_done(&e);
}
END_TEST

/*
 * A LUKS2 device without a kmscrypt token is refused with -ENOKEY, not
 * -ENOENT: the agent takes -ENOENT for a device not there yet and would wait
 * for it forever.  Nothing is asked of the KMS, nothing written.
 */
START_TEST(test_attach_without_token) {
        struct env e;
        env_init(&e);
        _cleanup_free_ char *plain = kc_test_luks2_plain(e.dir, "plain.img", NULL);
        struct kc_kms_request req = { .caller = &e.caller };
        struct kc_attach_params p = { .device = plain, .expect = e.ctx };
        struct kc_attach_result res;
        struct kc_err err = {};
        uint64_t before = kc_test_file_hash(plain);
        unsigned records = audit_count(&e, NULL);

        ck_assert_int_eq(kc_attach(e.kms, &req, &p, &res, &err), -ENOKEY);
        ck_assert_ptr_nonnull(strstr(err.msg, "has no kmscrypt token"));
        ck_assert_ptr_nonnull(strstr(err.msg, plain));
        ck_assert_uint_eq(kc_test_file_hash(plain), before);
        ck_assert_uint_eq(audit_count(&e, NULL), records);
        env_done(&e);
}
END_TEST

/* kc_attach_params.open_kms: the test's KMS, counting the calls. */
struct kms_opens {
        struct kc_kms *kms;
        unsigned n;
};

static int count_open(void *userdata, struct kc_kms **ret) {
        struct kms_opens *o = userdata;

        o->n++;
        *ret = o->kms;
        return 0;
}

/*
 * An attach that leaves the KMS to kc_attach() opens it only once the
 * header shows a volume to unwrap: a device refused from its header alone
 * (not LUKS2, no kmscrypt token, an image file) opens nothing, so on a
 * fresh host no keystore or audit log is made for it.  A refusal of the
 * host's policy is audited, so that one opens it.
 */
START_TEST(test_attach_opens_kms_late) {
        struct env e;
        env_init(&e);
        _cleanup_free_ char *plain = kc_test_luks2_plain(e.dir, "plain.img", NULL);
        _cleanup_free_ char *zero = kc_test_image(e.dir, "zero.img", KC_TEST_IMAGE_SIZE);
        _cleanup_free_ char *img = kc_test_image(e.dir, "kc.img", KC_TEST_IMAGE_SIZE);
        _cleanup_context_ struct kc_context *other = NULL;
        struct kc_volume_format_params fp = format_params(&e, img);
        struct kms_opens opens = { .kms = e.kms };
        struct kc_kms_request req = { .caller = &e.caller };
        struct kc_attach_params p = { .open_kms = count_open, .open_kms_userdata = &opens };
        struct kc_attach_result res;
        struct kc_volume_result vres;
        struct kc_err err = {};
        char want[256];

        ck_assert_int_eq(kc_volume_format(e.kms, &e.caller, &fp, &vres, &err), 0);
        p.device = plain;
        ck_assert_int_eq(kc_attach(NULL, &req, &p, &res, &err), -ENOKEY);
        p.device = zero;
        ck_assert_int_eq(kc_attach(NULL, &req, &p, &res, &(struct kc_err) {}), -EINVAL);
        p.device = img;
        ck_assert_int_eq(kc_attach(NULL, &req, &p, &res, &(struct kc_err) {}), -ENOTBLK);
        ck_assert_uint_eq(opens.n, 0);

        ck_assert_int_eq(kc_context_parse_kv("db-id=other,volume-id=other", &other, NULL), 0);
        p.expect = other;
        ck_assert_int_eq(kc_attach(NULL, &req, &p, &res, &(struct kc_err) {}), -EPERM);
        ck_assert_uint_eq(opens.n, 1);
        ck_assert_uint_eq(audit_count(&e, "Attach"), 1);
        /* Its key as the KMS's own records name it (docs/audit.md): what audit list --key finds. */
        snprintf(want, sizeof(want), "\"operation\":\"Attach\",\"key_id\":\"%s\",\"key_version\":%u,",
                 e.key.key_id, e.key.current_version);
        ck_assert_uint_eq(audit_count_text(&e, want), 1);
        env_done(&e);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("volume-header");
        TCase *tc = tcase_create("workflows");

        if (getuid() != 0 && access("/run/cryptsetup", W_OK) < 0)
                kc_test_skip("needs /run/cryptsetup writable (root)");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_encrypt);
        tcase_add_test(tc, test_format);
        tcase_add_test(tc, test_format_recovery_interop);
        tcase_add_test(tc, test_format_detached);
        tcase_add_test(tc, test_format_refusals);
        tcase_add_test(tc, test_format_failure_leaves_device_blank);
        tcase_add_test(tc, test_format_read_only);
        tcase_add_test(tc, test_adopt);
        tcase_add_test(tc, test_adopt_unproven_writes_nothing);
        tcase_add_test(tc, test_adopt_remove_passphrase);
        tcase_add_test(tc, test_adopt_refusals);
        tcase_add_test(tc, test_dump);
        tcase_add_test(tc, test_attach_without_token);
        tcase_add_test(tc, test_attach_opens_kms_late);
        suite_add_tcase(s, tc);
        return s;
}
