/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Data key replacement on file-backed LUKS2 volumes (offline: libcryptsetup
 * reencrypts an image file through the kernel crypto API, no device-mapper
 * needed), against a real local KMS.  The data check is independent of
 * libcryptsetup: sectors are encrypted with OpenSSL's AES-XTS under the old
 * key before, and must decrypt under the new key after.  Refusals compare
 * the header bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libcryptsetup.h>
#include <openssl/evp.h>

#include "agent/kms.h"
#include "agent/reencrypt.h"
#include "agent/volume.h"
#include "lib/secret.h"
#include "tests/unit/check-main.h"
#include "tests/unit/luks-util.h"

#define SECTOR 512
#define N_SECTORS 64                /* sectors written with a known plaintext */
#define FIRST_SECTOR 1000

static struct {
        char *dir, *keystore, *audit_log, *img;
        struct kc_kms *kms;
        struct kc_caller caller;
        struct kc_context *ctx;
        uint64_t data_offset;       /* bytes */
} f;

static struct kc_kms_request req(void) {
        return (struct kc_kms_request) { .caller = &f.caller };
}

/* The key the token unwraps to, proven against the digest. */
static void *token_key(struct kc_token *ret_token) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        _cleanup_free_ char *ref = NULL;
        struct kc_kms_request rq = req();
        struct kc_err err = {};
        void *key = NULL;
        int r;

        ck_assert_int_eq(kc_luks_open(f.img, NULL, &l, &err), 0);
        ck_assert_int_eq(kc_luks_token_read(l, ret_token, NULL, &err), 0);
        ck_assert_int_eq(kc_token_key_ref(ret_token, &ref), 0);
        r = kc_kms_decrypt(f.kms, &rq, ref, ret_token->wrapped_key, ret_token->wrapped_key_len, ret_token->context,
                           &key, NULL, NULL, &err);
        ck_assert_msg(r == 0, "unwrap: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(kc_luks_verify_key(l, key, kc_secret_size(key), NULL), 0);
        /* Every writer of a token binds the key it proved: the next attach skips the PBKDF2. */
        ck_assert_int_eq(kc_luks_key_check_verify(l, key, kc_secret_size(key), ret_token), 0);
        return key;
}

/* aes-xts-plain64 of one 512-byte sector: the IV is the sector number, little endian. */
static void xts(const void *key, uint64_t sector, const uint8_t *in, uint8_t *out, bool enc) {
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        uint8_t iv[16] = {};
        int n = 0;

        for (int i = 0; i < 8; i++)
                iv[i] = (uint8_t) (sector >> (8 * i));
        ck_assert_ptr_nonnull(c);
        ck_assert_int_eq(EVP_CipherInit_ex(c, EVP_aes_256_xts(), NULL, key, iv, enc), 1);
        ck_assert_int_eq(EVP_CipherUpdate(c, out, &n, in, SECTOR), 1);
        ck_assert_int_eq(n, SECTOR);
        EVP_CIPHER_CTX_free(c);
}

static void plaintext(uint64_t sector, uint8_t *buf) {
        for (int i = 0; i < SECTOR; i++)
                buf[i] = (uint8_t) (sector * 131 + (uint64_t) i * 7);
}

/* Write (enc) or check (!enc) the known plaintext of N_SECTORS sectors under key. */
static void sectors(const void *key, bool enc) {
        int fd = open(f.img, enc ? O_RDWR : O_RDONLY);
        uint8_t want[SECTOR], buf[SECTOR], out[SECTOR];

        ck_assert_int_ge(fd, 0);
        for (uint64_t s = FIRST_SECTOR; s < FIRST_SECTOR + N_SECTORS; s++) {
                off_t at = (off_t) (f.data_offset + s * SECTOR);

                plaintext(s, want);
                if (enc) {
                        xts(key, s, want, out, true);
                        ck_assert_int_eq(pwrite(fd, out, SECTOR, at), SECTOR);
                        continue;
                }
                ck_assert_int_eq(pread(fd, buf, SECTOR, at), SECTOR);
                xts(key, s, buf, out, false);
                ck_assert_msg(memcmp(out, want, SECTOR) == 0, "sector %llu does not decrypt under the new key",
                              (unsigned long long) s);
        }
        close(fd);
}

static void setup(void) {
        struct kc_kms_config cfg;
        struct kc_kms_request rq;
        struct kc_key_info info;
        struct kc_volume_format_params p;
        struct kc_volume_result res;
        struct kc_err err = {};
        int r;

        memset(&f, 0, sizeof(f));
        f.dir = kc_test_tmpdir();
        ck_assert_int_ge(asprintf(&f.keystore, "%s/keystore", f.dir), 0);
        ck_assert_int_ge(asprintf(&f.audit_log, "%s/audit.log", f.dir), 0);
        cfg = (struct kc_kms_config) { .keystore_dir = f.keystore, .audit_log = f.audit_log };
        ck_assert_int_eq(kc_caller_self(&f.caller), 0);
        ck_assert_int_eq(kc_kms_open(&cfg, &f.kms, &err), 0);
        rq = req();
        ck_assert_int_eq(kc_kms_create_key(f.kms, &rq, NULL, "alias/a", "", &info, &err), 0);
        ck_assert_int_eq(kc_context_parse_kv("db-id=db-1,volume-id=vol-1", &f.ctx, &err), 0);
        /* The smallest image libcryptsetup reencrypts without complaint: 16 MiB header + some data. */
        f.img = kc_test_image(f.dir, "v.img", 20ULL << 20);
        p = (struct kc_volume_format_params) {
                .ref = { .device = f.img }, .key_ref = "alias/a", .context = f.ctx, .sector_size = SECTOR,
        };
        r = kc_volume_format(f.kms, &f.caller, &p, &res, &err);
        ck_assert_msg(r == 0, "format: %s", kc_err_msg(&err, r));
        {
                _cleanup_luks_ struct kc_luks *l = NULL;
                struct kc_luks_segment seg;

                ck_assert_int_eq(kc_luks_open(f.img, NULL, &l, &err), 0);
                ck_assert_int_eq(kc_luks_segment(l, &seg), 0);
                f.data_offset = seg.offset * 512;
        }
}

static void teardown(void) {
        kc_kms_close(f.kms);
        kc_context_free(f.ctx);
        free(f.img);
        free(f.dir);
        free(f.keystore);
        free(f.audit_log);
}

static unsigned audit_count(const char *needle) {
        char line[8192];
        unsigned n = 0;
        FILE *a = fopen(f.audit_log, "re");

        ck_assert_ptr_nonnull(a);
        while (fgets(line, sizeof(line), a))
                if (strstr(line, needle))
                        n++;
        fclose(a);
        return n;
}

static int reencrypt(const struct kc_reencrypt_params *in, struct kc_reencrypt_result *res, struct kc_err *err) {
        struct kc_reencrypt_params p = *in;

        p.ref.device = f.img;
        p.offline = true;
        return kc_reencrypt(f.kms, &f.caller, &p, res, err);
}

static unsigned active_keyslots(void) {
        struct crypt_device *cd = NULL;
        unsigned n = 0;

        ck_assert_int_eq(crypt_init(&cd, f.img), 0);
        ck_assert_int_eq(crypt_load(cd, CRYPT_LUKS2, NULL), 0);
        for (int i = 0; i < crypt_keyslot_max(CRYPT_LUKS2); i++)
                n += crypt_keyslot_status(cd, i) >= CRYPT_SLOT_ACTIVE;
        crypt_free(cd);
        return n;
}

START_TEST(test_reencrypt_data) {
        _cleanup_(kc_token_clear) struct kc_token before = {}, after = {};
        _cleanup_secret_ void *old = NULL, *new = NULL;
        struct kc_reencrypt_result res;
        struct kc_err err = {};
        int r;

        old = token_key(&before);
        sectors(old, true);
        r = reencrypt(&(struct kc_reencrypt_params) {}, &res, &err);
        ck_assert_msg(r == 0, "reencrypt: %s", kc_err_msg(&err, r));
        ck_assert(!res.resumed && !res.stopped);
        ck_assert_str_eq(res.mapping, "");
        ck_assert_int_eq(res.recovery_keyslot, -1);

        new = token_key(&after);
        ck_assert_ptr_null(after.reencrypt);
        ck_assert_uint_eq(kc_secret_size(new), 64);
        ck_assert(!kc_memeq_const(old, new, 64));
        ck_assert_str_eq(after.key_id, before.key_id);
        ck_assert(kc_context_equal(after.context, before.context));
        sectors(new, false);
        ck_assert_uint_eq(active_keyslots(), 0);
        /* Start and finish, each written ahead: intent, then outcome. */
        ck_assert_uint_eq(audit_count("\"ReencryptVolume\""), 4);
        ck_assert_uint_eq(audit_count("\"result\":\"pending\",\"error\":null,\"detail\":\"start\""), 1);
        ck_assert_uint_eq(audit_count("\"result\":\"ok\",\"error\":null,\"detail\":\"started\""), 1);
        ck_assert_uint_eq(audit_count("\"result\":\"pending\",\"error\":null,\"detail\":\"finish, "), 1);
        ck_assert_uint_eq(audit_count("\"result\":\"ok\",\"error\":null,\"detail\":\"finished, "), 1);
        ck_assert_uint_eq(audit_count("\"purpose\":\"reencrypt\""), 1);   /* the Encrypt of the passphrase */
        ck_assert_int_eq(kc_reencrypt_pending(&(struct kc_volume_ref) { .device = f.img }, &err), 0);
}
END_TEST

static int stop_at_first(uint64_t done, uint64_t total, void *userdata) {
        unsigned *calls = userdata;

        (void) total;
        return ++*calls >= 2 && done > 0;
}

/* Stopped mid-way (as a crash would leave it, minus the hotzone): resume finishes; so does a finished one. */
START_TEST(test_reencrypt_stop_and_resume) {
        _cleanup_(kc_token_clear) struct kc_token mid = {}, after = {};
        _cleanup_secret_ void *old = NULL, *new = NULL;
        _cleanup_free_ char *mid_json = NULL;
        struct kc_reencrypt_result res;
        struct kc_err err = {};
        unsigned calls = 0;
        int r;

        old = token_key(&mid);
        kc_token_clear(&mid);
        sectors(old, true);
        r = reencrypt(&(struct kc_reencrypt_params) { .progress = stop_at_first, .userdata = &calls,
                                                      .rate_limit = 4u << 20 }, &res, &err);
        ck_assert_msg(r == 0, "reencrypt: %s", kc_err_msg(&err, r));
        ck_assert(res.stopped);
        ck_assert_int_eq(kc_reencrypt_pending(&(struct kc_volume_ref) { .device = f.img }, &err), 1);
        {
                _cleanup_luks_ struct kc_luks *l = NULL;

                ck_assert_int_eq(kc_luks_open(f.img, NULL, &l, &err), 0);
                ck_assert_int_eq(kc_luks_token_read(l, &mid, NULL, &err), 0);
                ck_assert_ptr_nonnull(mid.reencrypt);
                ck_assert_int_eq(kc_token_format(&mid, &mid_json), 0);
        }
        /* The two temporary keyslots and libcryptsetup's own "reencrypt" keyslot (the hotzone's state). */
        ck_assert_uint_eq(active_keyslots(), 3);

        r = reencrypt(&(struct kc_reencrypt_params) { .resume = true }, &res, &err);
        ck_assert_msg(r == 0, "resume: %s", kc_err_msg(&err, r));
        ck_assert(res.resumed && !res.stopped);
        new = token_key(&after);
        ck_assert_ptr_null(after.reencrypt);
        sectors(new, false);
        ck_assert_uint_eq(active_keyslots(), 0);

        /* A crash after the keyslots went but before the token lost its member: resume only finishes. */
        kc_test_token_set_raw(f.img, NULL, 0, mid_json);
        r = reencrypt(&(struct kc_reencrypt_params) { .resume = true }, &res, &err);
        ck_assert_msg(r == 0, "finish: %s", kc_err_msg(&err, r));
        kc_token_clear(&after);
        kc_secret_free(token_key(&after));
        ck_assert_ptr_null(after.reencrypt);
        sectors(new, false);
}
END_TEST

/* Refused before any write: the header bytes stay as they were. */
START_TEST(test_reencrypt_refusals) {
        _cleanup_(kc_token_clear) struct kc_token t = {};
        _cleanup_context_ struct kc_context *other = NULL;
        _cleanup_free_ char *json = NULL;
        struct kc_reencrypt_result res;
        struct kc_err err = {};
        uint64_t before = kc_test_file_hash(f.img);

        ck_assert_int_eq(reencrypt(&(struct kc_reencrypt_params) { .resume = true }, &res, &err), -ENOENT);
        ck_assert_int_eq(kc_context_parse_kv("db-id=db-1,volume-id=vol-2", &other, &err), 0);
        err = (struct kc_err) {};
        ck_assert_int_eq(reencrypt(&(struct kc_reencrypt_params) { .expect = other }, &res, &err), -EPERM);
        ck_assert_ptr_nonnull(strstr(err.msg, "context"));
        ck_assert_int_eq(reencrypt(&(struct kc_reencrypt_params) { .resilience = "none" }, &res, &err), -EINVAL);
        ck_assert_uint_eq(kc_test_file_hash(f.img), before);
        ck_assert_uint_eq(audit_count("\"ReencryptVolume\""), 0);

        /* A forged member: well-formed, but its blobs are not the KMS's.  Nothing is written. */
        kc_secret_free(token_key(&t));
        t.reencrypt = calloc(1, sizeof(*t.reencrypt));
        ck_assert_ptr_nonnull(t.reencrypt);
        t.reencrypt->wrapped_passphrase = malloc(48);
        t.reencrypt->wrapped_key = malloc(t.wrapped_key_len);
        ck_assert(t.reencrypt->wrapped_passphrase && t.reencrypt->wrapped_key);
        memset(t.reencrypt->wrapped_passphrase, 0x5a, 48);
        memcpy(t.reencrypt->wrapped_key, t.wrapped_key, t.wrapped_key_len);
        t.reencrypt->wrapped_key[t.wrapped_key_len - 1] ^= 1;   /* a tampered copy of the real blob */
        *t.reencrypt = (struct kc_token_reencrypt) {
                .wrapped_passphrase = t.reencrypt->wrapped_passphrase, .wrapped_passphrase_len = 48,
                .wrapped_key = t.reencrypt->wrapped_key, .wrapped_key_len = t.wrapped_key_len,
                .key_version = 1, .keyslot_old = 1, .keyslot_new = 2,
        };
        ck_assert_int_eq(kc_token_format(&t, &json), 0);
        kc_test_token_set_raw(f.img, NULL, 0, json);
        before = kc_test_file_hash(f.img);
        ck_assert_int_lt(reencrypt(&(struct kc_reencrypt_params) { .resume = true }, &res, &err), 0);
        ck_assert_uint_eq(kc_test_file_hash(f.img), before);
        ck_assert_int_lt(reencrypt(&(struct kc_reencrypt_params) {}, &res, &err), 0);
        ck_assert_uint_eq(kc_test_file_hash(f.img), before);
        ck_assert_uint_eq(active_keyslots(), 0);

        /* A mangled member: the token does not parse, so nothing goes on. */
        free(json);
        json = NULL;
        t.reencrypt->keyslot_new = 1;
        ck_assert_int_lt(kc_token_format(&t, &json), 0);
        kc_test_token_set_raw(f.img, NULL, 0,
                "{\"type\":\"kmscrypt\",\"keyslots\":[],\"kmscrypt_version\":1,\"provider\":\"local\","
                "\"key_id\":\"x\",\"key_version\":1,\"context\":{\"db-id\":\"d\",\"volume-id\":\"v\"},"
                "\"wrapped_key\":\"AAAA\",\"kmscrypt_reencrypt\":{\"wrapped_passphrase\":\"AAAA\","
                "\"wrapped_key\":\"AAAA\",\"key_version\":1,\"keyslot_old\":1,\"keyslot_new\":99}}");
        before = kc_test_file_hash(f.img);
        err = (struct kc_err) {};
        ck_assert_int_lt(reencrypt(&(struct kc_reencrypt_params) { .resume = true }, &res, &err), 0);
        ck_assert_ptr_nonnull(strstr(err.msg, "keyslot_new"));
        ck_assert_uint_eq(kc_test_file_hash(f.img), before);
}
END_TEST

/* A recovery keyslot (passphrase pass) for key, as kmscrypt format --recovery-passphrase-file adds. */
static void add_recovery(const void *key, const char *pass) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        struct kc_err err = {};

        ck_assert_int_eq(kc_luks_open(f.img, NULL, &l, &err), 0);
        ck_assert_int_eq(kc_luks_set_pbkdf(l, &kc_test_fast_pbkdf, &err), 0);
        ck_assert_int_ge(kc_luks_add_passphrase(l, key, 64, pass, strlen(pass), &err), 0);
}

/* A recovery keyslot is not silently lost: refused without its passphrase, re-created with it. */
START_TEST(test_reencrypt_recovery) {
        _cleanup_(kc_token_clear) struct kc_token t = {};
        _cleanup_secret_ void *key = NULL, *new = NULL, *by_pass = NULL;
        _cleanup_luks_ struct kc_luks *l = NULL;
        struct kc_reencrypt_result res;
        struct kc_err err = {};
        const char pass[] = "recovery words";
        uint64_t before;
        int r;

        key = token_key(&t);
        add_recovery(key, pass);
        before = kc_test_file_hash(f.img);
        err = (struct kc_err) {};
        ck_assert_int_eq(reencrypt(&(struct kc_reencrypt_params) {}, &res, &err), -EPERM);
        ck_assert_ptr_nonnull(strstr(err.msg, "recovery keyslot"));
        ck_assert_uint_eq(kc_test_file_hash(f.img), before);
        /* A cost libcryptsetup refuses for the new recovery keyslot: refused before any keyslot or KMS call. */
        err = (struct kc_err) {};
        ck_assert_int_eq(reencrypt(&(struct kc_reencrypt_params) { .recovery_passphrase = pass, .recovery_passphrase_len = strlen(pass),
                                                                   .pbkdf = &(struct kc_luks_pbkdf) { "pbkdf2", 999, 0 } },
                                   &res, &err), -EINVAL);
        ck_assert_ptr_nonnull(strstr(err.msg, "refused by libcryptsetup"));
        ck_assert_uint_eq(kc_test_file_hash(f.img), before);
        ck_assert_uint_eq(active_keyslots(), 1);
        ck_assert_uint_eq(audit_count("\"ReencryptVolume\""), 0);
        ck_assert_int_lt(reencrypt(&(struct kc_reencrypt_params) { .recovery_passphrase = "wrong", .recovery_passphrase_len = 5,
                                                                   .pbkdf = &kc_test_fast_pbkdf }, &res, &err), 0);
        ck_assert_uint_eq(kc_test_file_hash(f.img), before);

        r = reencrypt(&(struct kc_reencrypt_params) { .recovery_passphrase = pass, .recovery_passphrase_len = strlen(pass),
                                                      .pbkdf = &kc_test_fast_pbkdf }, &res, &err);
        ck_assert_msg(r == 0, "reencrypt: %s", kc_err_msg(&err, r));
        ck_assert_int_ge(res.recovery_keyslot, 0);
        ck_assert_uint_eq(active_keyslots(), 1);
        kc_token_clear(&t);
        new = token_key(&t);
        ck_assert_int_eq(kc_luks_open(f.img, NULL, &l, &err), 0);
        ck_assert_int_eq(kc_luks_volume_key_by_passphrase(l, pass, strlen(pass), &by_pass, &err), 0);
        ck_assert(kc_memeq_const(by_pass, new, 64));
}
END_TEST

/*
 * Killed after the start's token write, before the keyslots (a KMS call
 * failing there ends it the same way): the resume must not finish without
 * a recovery keyslot for the new key, since libcryptsetup wipes the old
 * key's at the end.  Without the passphrase it is refused, with the old
 * recovery keyslot kept; with it, the new key gets one.
 */
START_TEST(test_reencrypt_resume_keeps_recovery) {
        _cleanup_(kc_token_clear) struct kc_token t = {};
        _cleanup_secret_ void *key = NULL, *new = NULL, *by_pass = NULL;
        _cleanup_luks_ struct kc_luks *l = NULL;
        struct kc_reencrypt_result res;
        struct kc_err err = {};
        const char pass[] = "recovery words";
        int status, r;
        pid_t pid;

        key = token_key(&t);
        add_recovery(key, pass);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                /* A process of its own, as a killed kmscrypt is: secret memory is wiped in a forked child. */
                struct kc_kms_config cfg = { .keystore_dir = f.keystore, .audit_log = f.audit_log };

                kc_kms_close(f.kms);
                if (kc_kms_open(&cfg, &f.kms, &err) < 0)
                        _exit(1);
                setenv("KC_FAULT_STEP", "reencrypt:after-start", 1);
                (void) reencrypt(&(struct kc_reencrypt_params) { .recovery_passphrase = pass,
                                                                 .recovery_passphrase_len = strlen(pass),
                                                                 .pbkdf = &kc_test_fast_pbkdf }, &res, &err);
                _exit(0);       /* not reached: the fault point kills */
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        err = (struct kc_err) {};
        ck_assert_int_eq(reencrypt(&(struct kc_reencrypt_params) { .resume = true }, &res, &err), -EPERM);
        ck_assert_ptr_nonnull(strstr(err.msg, "recovery keyslot"));
        ck_assert_int_eq(kc_luks_open(f.img, NULL, &l, &err), 0);
        ck_assert_int_eq(kc_luks_volume_key_by_passphrase(l, pass, strlen(pass), &by_pass, &err), 0);
        ck_assert(kc_memeq_const(by_pass, key, 64));
        kc_luks_close(TAKE_PTR(l));
        kc_secret_free(TAKE_PTR(by_pass));

        r = reencrypt(&(struct kc_reencrypt_params) { .resume = true, .recovery_passphrase = pass,
                                                      .recovery_passphrase_len = strlen(pass),
                                                      .pbkdf = &kc_test_fast_pbkdf }, &res, &err);
        ck_assert_msg(r == 0, "resume: %s", kc_err_msg(&err, r));
        ck_assert_int_ge(res.recovery_keyslot, 0);
        kc_token_clear(&t);
        new = token_key(&t);
        ck_assert_ptr_null(t.reencrypt);
        ck_assert_int_eq(kc_luks_open(f.img, NULL, &l, &err), 0);
        ck_assert_int_eq(kc_luks_volume_key_by_passphrase(l, pass, strlen(pass), &by_pass, &err), 0);
        ck_assert(kc_memeq_const(by_pass, new, 64));
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("reencrypt");
        TCase *tc = tcase_create("reencrypt");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_reencrypt_data);
        tcase_add_test(tc, test_reencrypt_stop_and_resume);
        tcase_add_test(tc, test_reencrypt_refusals);
        tcase_add_test(tc, test_reencrypt_recovery);
        tcase_add_test(tc, test_reencrypt_resume_keeps_recovery);
        suite_add_tcase(s, tc);
        return s;
}
