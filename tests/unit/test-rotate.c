/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Rewrap, rebind, key usage, key health and encrypted copies on file-backed
 * LUKS2 volumes, against a real local KMS in a temporary keystore.  The
 * refusals check the header bytes: a refused rewrap must not write at all.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/kms.h"
#include "agent/rotate.h"
#include "agent/volume.h"
#include "lib/secret.h"
#include "tests/unit/check-main.h"
#include "tests/unit/luks-util.h"

/* One keystore, two CMKs, two formatted volumes under the first. */
static struct {
        char *dir, *keystore, *audit_log;
        struct kc_kms *kms;
        struct kc_caller caller;
        struct kc_key_info a, b;
        char *img[2];
        struct kc_context *ctx[2];
        void *key[2];               /* each volume's data key as first unwrapped */
} f;

static struct kc_kms_request req(void) {
        return (struct kc_kms_request) { .caller = &f.caller };
}

/* The data key the token of img unwraps to (checked against the LUKS2 digest), and the token. */
static void *unwrap(const char *img, struct kc_token *ret_token, int *ret_id) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        _cleanup_free_ char *ref = NULL;
        struct kc_kms_request rq = req();
        struct kc_err err = {};
        void *key = NULL;
        int r;

        ck_assert_int_eq(kc_luks_open(img, NULL, &l, &err), 0);
        ck_assert_int_eq(kc_luks_token_read(l, ret_token, ret_id, &err), 0);
        ck_assert_int_eq(kc_token_key_ref(ret_token, &ref), 0);
        r = kc_kms_decrypt(f.kms, &rq, ref, ret_token->wrapped_key, ret_token->wrapped_key_len,
                           ret_token->context, &key, NULL, NULL, &err);
        ck_assert_msg(r == 0, "unwrap %s: %s", img, kc_err_msg(&err, r));
        ck_assert_int_eq(kc_luks_verify_key(l, key, kc_secret_size(key), NULL), 0);
        /* Every writer of a token binds the key it proved: the next attach skips the PBKDF2. */
        ck_assert_int_eq(kc_luks_key_check_verify(l, key, kc_secret_size(key), ret_token), 0);
        return key;
}

static void setup(void) {
        struct kc_kms_config cfg;
        struct kc_kms_request rq;
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
        ck_assert_int_eq(kc_kms_create_key(f.kms, &rq, NULL, "alias/a", "", &f.a, &err), 0);
        ck_assert_int_eq(kc_kms_create_key(f.kms, &rq, NULL, "alias/b", "", &f.b, &err), 0);

        for (int i = 0; i < 2; i++) {
                _cleanup_(kc_token_clear) struct kc_token t = {};
                char name[16], kv[64];
                struct kc_volume_format_params p;
                struct kc_volume_result res;

                snprintf(name, sizeof(name), "v%d.img", i);
                snprintf(kv, sizeof(kv), "db-id=db-1,volume-id=vol-%d", i);
                f.img[i] = kc_test_image(f.dir, name, KC_TEST_IMAGE_SIZE);
                ck_assert_int_eq(kc_context_parse_kv(kv, &f.ctx[i], &err), 0);
                p = (struct kc_volume_format_params) {
                        .ref = { .device = f.img[i] }, .key_ref = "alias/a", .context = f.ctx[i],
                };
                r = kc_volume_format(f.kms, &f.caller, &p, &res, &err);
                ck_assert_msg(r == 0, "format: %s", kc_err_msg(&err, r));
                f.key[i] = unwrap(f.img[i], &t, NULL);
        }
}

static void teardown(void) {
        kc_kms_close(f.kms);
        for (int i = 0; i < 2; i++) {
                free(f.img[i]);
                kc_context_free(f.ctx[i]);
                kc_secret_free(f.key[i]);
        }
        free(f.dir);
        free(f.keystore);
        free(f.audit_log);
}

/* Records of op (with this result, when not NULL). */
static unsigned audit_count_result(const char *op, const char *result) {
        char line[1 << 16], want[64], want_result[32];
        unsigned n = 0;
        FILE *a = fopen(f.audit_log, "re");

        ck_assert_ptr_nonnull(a);
        snprintf(want, sizeof(want), "\"operation\":\"%s\"", op);
        snprintf(want_result, sizeof(want_result), "\"result\":\"%s\"", result ?: "");
        while (fgets(line, sizeof(line), a))
                if (strstr(line, want) && (!result || strstr(line, want_result)))
                        n++;
        fclose(a);
        return n;
}

static unsigned audit_count(const char *op) {
        return audit_count_result(op, NULL);
}

static int rewrap(int i, const char *key, const struct kc_context *ctx, bool dry_run,
                  struct kc_rewrap_result *res, struct kc_err *err) {
        struct kc_rewrap_params p = {
                .ref = { .device = f.img[i] }, .dst_key_ref = key, .dst_context = ctx, .dry_run = dry_run,
        };
        return kc_rewrap(f.kms, &f.caller, &p, res, err);
}

/* The volume's token unwraps to its original key, under this CMK version. */
static void check_volume(int i, const char *key_id, uint32_t version, int token_id) {
        _cleanup_(kc_token_clear) struct kc_token t = {};
        _cleanup_secret_ void *key = NULL;
        int id;

        key = unwrap(f.img[i], &t, &id);
        ck_assert_str_eq(t.key_id, key_id);
        ck_assert_uint_eq(t.key_version, version);
        ck_assert_int_eq(id, token_id);
        ck_assert_uint_eq(kc_secret_size(key), kc_secret_size(f.key[i]));
        ck_assert(kc_memeq_const(key, f.key[i], kc_secret_size(key)));
}

START_TEST(test_rewrap_new_version) {
        struct kc_kms_request rq = req();
        struct kc_rewrap_result res;
        struct kc_err err = {};
        uint32_t v;
        uint64_t before;
        int r;

        /* Already under the newest version: nothing is asked of the KMS but DescribeKey, nothing written. */
        before = kc_test_file_hash(f.img[0]);
        ck_assert_int_eq(rewrap(0, NULL, NULL, false, &res, &err), 0);
        ck_assert(res.current);
        ck_assert(!res.changed);
        ck_assert_uint_eq(kc_test_file_hash(f.img[0]), before);
        ck_assert_uint_eq(audit_count("ReEncrypt"), 0);

        ck_assert_int_eq(kc_kms_rotate_key(f.kms, &rq, "alias/a", &v, &err), 0);
        ck_assert_uint_eq(v, 2);
        r = rewrap(0, NULL, NULL, false, &res, &err);
        ck_assert_msg(r == 0, "rewrap: %s", kc_err_msg(&err, r));
        ck_assert(res.changed);
        ck_assert_uint_eq(res.old_key_version, 1);
        ck_assert_uint_eq(res.new_key_version, 2);
        ck_assert_str_eq(res.new_key_id, f.a.key_id);
        ck_assert_int_eq(res.token_id, 0);
        check_volume(0, f.a.key_id, 2, 0);
        /* The other volume is still under version 1 and still opens. */
        check_volume(1, f.a.key_id, 1, 0);
        ck_assert_uint_eq(audit_count("ReEncrypt"), 1);
        /* Written ahead: the intent, then the outcome. */
        ck_assert_uint_eq(audit_count_result("RewrapVolume", "pending"), 1);
        ck_assert_uint_eq(audit_count_result("RewrapVolume", "ok"), 1);
}
END_TEST

/* A token without a key check (written before kmscrypt wrote them) gets one from rewrap --always. */
START_TEST(test_rewrap_adds_key_check) {
        struct kc_rewrap_params p = { .ref = { .device = f.img[0] }, .always = true };
        _cleanup_(kc_token_clear) struct kc_token t = {};
        _cleanup_luks_ struct kc_luks *l = NULL;
        struct kc_rewrap_result res;
        struct kc_err err = {};
        int id, r;

        ck_assert_int_eq(kc_luks_open(f.img[0], NULL, &l, &err), 0);
        ck_assert_int_eq(kc_luks_token_read(l, &t, &id, &err), 0);
        ck_assert(t.has_key_check);
        t.has_key_check = false;
        ck_assert_int_eq(kc_luks_token_write(l, id, &t, &err), id);
        kc_luks_close(TAKE_PTR(l));
        kc_token_clear(&t);
        ck_assert_int_eq(kc_luks_open(f.img[0], NULL, &l, &err), 0);
        ck_assert_int_eq(kc_luks_token_read(l, &t, &id, &err), 0);
        ck_assert(!t.has_key_check);

        r = kc_rewrap(f.kms, &f.caller, &p, &res, &err);
        ck_assert_msg(r == 0, "rewrap: %s", kc_err_msg(&err, r));
        ck_assert(res.changed);
        check_volume(0, f.a.key_id, 1, id);     /* which asserts the check proves the key */
}
END_TEST

/* ---- write-ahead: no intent record, no header write ---- */

static off_t log_size(void) {
        struct stat st;

        ck_assert_int_eq(stat(f.audit_log, &st), 0);
        return st.st_size;
}

struct frozen_rewrap {
        int r;
        struct kc_rewrap_result res;
        struct kc_err err;
};

static void frozen_rewrap(void *userdata) {
        struct frozen_rewrap *fr = userdata;

        fr->r = rewrap(0, "alias/b", NULL, false, &fr->res, &fr->err);
}

/*
 * Room for the ReEncrypt and Decrypt records of a rewrap but not for its
 * intent: it fails naming the audit log, and not one byte of the image
 * changes.  The log is first grown past the header area, so that the limit
 * stops the audit record, never the header write itself.
 */
START_TEST(test_rewrap_without_intent_record_writes_nothing) {
        struct kc_kms_request rq = req();
        struct frozen_rewrap fr = {};
        struct kc_rewrap_result res;
        struct kc_err err = {};
        _cleanup_free_ char *pad = malloc(60000);
        off_t before, room;
        uint64_t image;
        unsigned decrypts;
        int r;

        ck_assert_ptr_nonnull(pad);
        memset(pad, 'p', 59999);
        pad[59999] = '\0';
        while (log_size() < (1 << 20)) {
                struct kc_audit_record rec = { .operation = "Padding", .detail = pad };
                ck_assert_int_eq(kc_kms_audit_outcome(f.kms, &rq, &rec, 0, &err), 0);
        }
        /* A dry run asks the KMS what the real one will, and stops before the intent: measure it. */
        before = log_size();
        decrypts = audit_count("Decrypt");
        r = rewrap(0, "alias/b", NULL, true, &res, &err);
        ck_assert_msg(r == 0, "dry run: %s", kc_err_msg(&err, r));
        room = log_size() - before + 2;         /* + a digit more in each seq, should one roll over */
        ck_assert_uint_eq(audit_count("ReEncrypt"), 1);
        ck_assert_uint_eq(audit_count("Decrypt"), decrypts + 1);

        image = kc_test_file_hash(f.img[0]);
        /* No ck_assert in frozen_rewrap: see kc_test_with_file_limit(). */
        kc_test_with_file_limit(log_size() + room, frozen_rewrap, &fr);

        ck_assert_msg(fr.r < 0, "rewrap with no room for its intent record returned %d", fr.r);
        ck_assert_msg(strstr(fr.err.msg, "RewrapVolume not done") && strstr(fr.err.msg, "audit record could not be written"),
                      "message: %s", fr.err.msg);
        ck_assert_uint_eq(kc_test_file_hash(f.img[0]), image);
        /* The KMS calls before it were recorded, the rewrap not at all. */
        ck_assert_uint_eq(audit_count("ReEncrypt"), 2);
        ck_assert_uint_eq(audit_count("Decrypt"), decrypts + 2);
        ck_assert_uint_eq(audit_count("RewrapVolume"), 0);
        check_volume(0, f.a.key_id, 1, 0);

        /* With room again the same rewrap goes through, written ahead. */
        r = rewrap(0, "alias/b", NULL, false, &res, &err);
        ck_assert_msg(r == 0, "rewrap: %s", kc_err_msg(&err, r));
        check_volume(0, f.b.key_id, 1, 0);
        ck_assert_uint_eq(audit_count_result("RewrapVolume", "pending"), 1);
        ck_assert_uint_eq(audit_count_result("RewrapVolume", "ok"), 1);
}
END_TEST

START_TEST(test_rewrap_token_id_preserved) {
        _cleanup_(kc_token_clear) struct kc_token t = {};
        _cleanup_free_ char *json = NULL, *foreign = NULL;
        struct kc_rewrap_result res;
        struct kc_err err = {};
        int id;

        /* Move the kmscrypt token to id 5, with a foreign token at 0 that must survive. */
        kc_secret_free(unwrap(f.img[0], &t, &id));
        ck_assert_int_eq(kc_token_format(&t, &json), 0);
        kc_test_token_set_raw(f.img[0], NULL, 0, NULL);
        kc_test_token_set_raw(f.img[0], NULL, 5, json);
        kc_test_token_set_raw(f.img[0], NULL, 0, "{\"type\":\"systemd-recovery\",\"keyslots\":[]}");

        ck_assert_int_eq(rewrap(0, "alias/b", NULL, false, &res, &err), 0);
        ck_assert_int_eq(res.token_id, 5);
        check_volume(0, f.b.key_id, 1, 5);
        foreign = kc_test_run("cryptsetup token export --token-id 0 '%s'", f.img[0]);
        ck_assert_ptr_nonnull(strstr(foreign, "systemd-recovery"));
}
END_TEST

START_TEST(test_rewrap_other_key) {
        struct kc_rewrap_result res;
        struct kc_err err = {};
        int r;

        r = rewrap(1, "alias/b", NULL, false, &res, &err);
        ck_assert_msg(r == 0, "rewrap: %s", kc_err_msg(&err, r));
        ck_assert(res.changed);
        ck_assert_str_eq(res.old_key_id, f.a.key_id);
        ck_assert_str_eq(res.new_key_id, f.b.key_id);
        check_volume(1, f.b.key_id, 1, 0);

        /* Key a can now be disabled without cutting volume 1 off. */
        {
                struct kc_kms_request rq = req();
                ck_assert_int_eq(kc_kms_set_enabled(f.kms, &rq, "alias/a", false, &err), 0);
        }
        check_volume(1, f.b.key_id, 1, 0);
}
END_TEST

START_TEST(test_rewrap_dry_run) {
        struct kc_kms_request rq = req();
        struct kc_rewrap_result res;
        struct kc_err err = {};
        uint64_t before;
        uint32_t v;

        ck_assert_int_eq(kc_kms_rotate_key(f.kms, &rq, "alias/a", &v, &err), 0);
        before = kc_test_file_hash(f.img[0]);
        ck_assert_int_eq(rewrap(0, NULL, NULL, true, &res, &err), 0);
        ck_assert(!res.changed);
        ck_assert_uint_eq(res.new_key_version, 2);
        ck_assert_uint_eq(kc_test_file_hash(f.img[0]), before);
        /* It proved the way (ReEncrypt, Decrypt) but wrote nothing. */
        ck_assert_uint_eq(audit_count("ReEncrypt"), 1);
        ck_assert_uint_eq(audit_count("RewrapVolume"), 0);
        check_volume(0, f.a.key_id, 1, 0);
}
END_TEST

/* Disabled key, unknown key, other provider, bad context: refused, header bytes unchanged. */
START_TEST(test_rewrap_refusals) {
        _cleanup_context_ struct kc_context *no_vol = NULL;
        struct kc_kms_request rq = req();
        struct kc_rewrap_result res;
        struct kc_err err = {};
        uint64_t before = kc_test_file_hash(f.img[0]);

        ck_assert_int_lt(rewrap(0, "alias/none", NULL, false, &res, NULL), 0);
        ck_assert_int_lt(rewrap(0, "nosuch:key", NULL, false, &res, NULL), 0);
        ck_assert_int_eq(kc_context_parse_kv("db-id=db-1", &no_vol, NULL), 0);
        err = (struct kc_err) {};
        ck_assert_int_eq(rewrap(0, NULL, no_vol, false, &res, &err), -EINVAL);
        ck_assert_ptr_nonnull(strstr(err.msg, "volume-id"));
        ck_assert_int_eq(kc_kms_set_enabled(f.kms, &rq, "alias/b", false, &err), 0);
        ck_assert_int_lt(rewrap(0, "alias/b", NULL, false, &res, &err), 0);
        ck_assert_int_eq(kc_kms_set_enabled(f.kms, &rq, "alias/a", false, &err), 0);
        ck_assert_int_lt(rewrap(0, "alias/b", NULL, false, &res, &err), 0);
        ck_assert_uint_eq(kc_test_file_hash(f.img[0]), before);
        ck_assert_uint_eq(audit_count("RewrapVolume"), 0);
}
END_TEST

/* A mangled blob fails in the KMS; a valid blob of another volume fails the digest: neither is written. */
START_TEST(test_rewrap_tampered) {
        _cleanup_(kc_token_clear) struct kc_token t0 = {}, t1 = {};
        _cleanup_free_ char *json = NULL, *json1 = NULL;
        struct kc_rewrap_result res;
        struct kc_err err = {};
        uint64_t before;
        int r;

        kc_secret_free(unwrap(f.img[0], &t0, NULL));
        t0.wrapped_key[t0.wrapped_key_len / 2] ^= 0x01;
        ck_assert_int_eq(kc_token_format(&t0, &json), 0);
        kc_test_token_set_raw(f.img[0], NULL, 0, json);
        before = kc_test_file_hash(f.img[0]);
        ck_assert_int_lt(rewrap(0, "alias/b", NULL, false, &res, &err), 0);
        ck_assert_uint_eq(kc_test_file_hash(f.img[0]), before);

        /* Volume 1's genuine token, put on volume 0 under volume 1's context. */
        kc_secret_free(unwrap(f.img[1], &t1, NULL));
        ck_assert_int_eq(kc_token_format(&t1, &json1), 0);
        kc_test_token_set_raw(f.img[0], NULL, 0, json1);
        before = kc_test_file_hash(f.img[0]);
        err = (struct kc_err) {};
        r = rewrap(0, "alias/b", NULL, false, &res, &err);
        ck_assert_int_eq(r, -EPERM);
        ck_assert_msg(strstr(err.msg, "digest"), "%s", err.msg);
        ck_assert_uint_eq(kc_test_file_hash(f.img[0]), before);
        ck_assert_uint_eq(audit_count("RewrapVolume"), 0);
}
END_TEST

START_TEST(test_rebind) {
        _cleanup_context_ struct kc_context *clone = NULL;
        _cleanup_(kc_token_clear) struct kc_token t = {};
        _cleanup_secret_ void *key = NULL, *old = NULL;
        struct kc_kms_request rq = req();
        struct kc_rewrap_result res;
        struct kc_err err = {};
        int r;

        /* A clone: volume 0's bytes at another path. */
        _cleanup_free_ char *copy = NULL;
        ck_assert_int_ge(asprintf(&copy, "%s/clone.img", f.dir), 0);
        r = kc_copy_encrypted(f.img[0], copy, false, NULL, NULL, &err);
        ck_assert_msg(r == 0, "copy: %s", kc_err_msg(&err, r));
        ck_assert_uint_eq(kc_test_file_hash(copy), kc_test_file_hash(f.img[0]));

        ck_assert_int_eq(kc_context_parse_kv("db-id=db-1,volume-id=vol-0-clone", &clone, &err), 0);
        free(f.img[1]);
        f.img[1] = TAKE_PTR(copy);
        r = rewrap(1, NULL, clone, false, &res, &err);
        ck_assert_msg(r == 0, "rebind: %s", kc_err_msg(&err, r));
        ck_assert(res.changed);
        key = unwrap(f.img[1], &t, NULL);
        ck_assert(kc_context_equal(t.context, clone));
        ck_assert(kc_memeq_const(key, f.key[0], 64));
        /* The clone's blob no longer opens under the original's context. */
        ck_assert_int_lt(kc_kms_decrypt(f.kms, &rq, NULL, t.wrapped_key, t.wrapped_key_len, f.ctx[0],
                                        &old, NULL, NULL, &err), 0);
        ck_assert_uint_eq(audit_count_result("RebindVolume", "pending"), 1);
        ck_assert_uint_eq(audit_count_result("RebindVolume", "ok"), 1);
        /* The original is untouched. */
        check_volume(0, f.a.key_id, 1, 0);
}
END_TEST

START_TEST(test_known_volumes_and_usage) {
        _cleanup_known_volumes_ struct kc_known_volumes *k = NULL;
        _cleanup_free_ char *conf = NULL, *text = NULL, *junk = kc_test_image(f.dir, "junk.img", 1 << 20);
        struct kc_kms_request rq = req();
        struct kc_rewrap_result res;
        struct kc_err err = {};
        char *devices[] = { f.img[1], junk, NULL };
        unsigned uses_a = 0, uses_b = 0;
        uint32_t v;

        ck_assert_int_ge(asprintf(&text, "vol0 %s db-id=db-1,volume-id=vol-0\n"
                                  "gone /nonexistent/x.img db-id=db-1,volume-id=gone\n", f.img[0]), 0);
        conf = kc_test_write_file(f.dir, "volumes", text);
        ck_assert_int_eq(kc_kms_rotate_key(f.kms, &rq, "alias/a", &v, &err), 0);
        ck_assert_int_eq(rewrap(0, NULL, NULL, false, &res, &err), 0);

        ck_assert_int_eq(kc_known_volumes_scan(conf, devices, &k, &err), 0);
        ck_assert_uint_eq(k->n, 4);
        ck_assert_str_eq(k->v[0].name, "vol0");
        ck_assert_uint_eq(k->v[0].key_version, 2);
        ck_assert_str_eq(k->v[1].name, "gone");
        ck_assert_int_lt(k->v[1].error, 0);
        ck_assert_ptr_null(k->v[2].name);
        ck_assert_uint_eq(k->v[2].key_version, 1);
        ck_assert_int_eq(k->v[3].error, -EINVAL);       /* not LUKS */
        for (size_t i = 0; i < k->n; i++) {
                uses_a += kc_known_volume_uses(&k->v[i], &f.a);
                uses_b += kc_known_volume_uses(&k->v[i], &f.b);
        }
        ck_assert_uint_eq(uses_a, 2);
        ck_assert_uint_eq(uses_b, 0);

        /* The same device twice (given and configured) is one volume. */
        kc_known_volumes_free(TAKE_PTR(k));
        devices[0] = f.img[0];
        devices[1] = NULL;
        ck_assert_int_eq(kc_known_volumes_scan(conf, devices, &k, &err), 0);
        ck_assert_uint_eq(k->n, 2);
        /* A broken volumes file is an error, not an empty list. */
        kc_known_volumes_free(TAKE_PTR(k));
        free(conf);
        conf = kc_test_write_file(f.dir, "volumes.bad", "only-a-name\n");
        ck_assert_int_lt(kc_known_volumes_scan(conf, NULL, &k, &err), 0);
        ck_assert_ptr_null(k);
}
END_TEST

START_TEST(test_key_health) {
        struct kc_kms_request rq = req();
        struct kc_volume_key_health h;
        struct kc_volume_ref ref0 = { .device = f.img[0] }, ref1 = { .device = f.img[1] };
        struct kc_err err = {};
        char line[512];
        time_t date;

        ck_assert_int_eq(kc_volume_key_health(f.kms, NULL, &rq, &ref0, &h, &err), 0);
        ck_assert(h.known);
        ck_assert_int_eq(h.state, KC_KEY_ENABLED);
        ck_assert_uint_eq(h.recovery_keyslots, 0);
        kc_volume_key_health_format(&h, line, sizeof(line));
        ck_assert_str_eq(line, "Enabled");
        kc_volume_key_health_reason(&h, line, sizeof(line));
        ck_assert_str_eq(line, "");

        /* Volume 1 gets a recovery keyslot. */
        {
                _cleanup_luks_ struct kc_luks *l = NULL;
                ck_assert_int_eq(kc_luks_open(f.img[1], NULL, &l, &err), 0);
                ck_assert_int_eq(kc_luks_set_pbkdf(l, &kc_test_fast_pbkdf, &err), 0);
                ck_assert_int_ge(kc_luks_add_passphrase(l, f.key[1], 64, "recover", 7, &err), 0);
        }
        ck_assert_int_eq(kc_kms_schedule_deletion(f.kms, &rq, "alias/a", 7, &date, &err), 0);
        ck_assert_int_eq(kc_volume_key_health(f.kms, NULL, &rq, &ref0, &h, &err), 0);
        ck_assert_int_eq(h.state, KC_KEY_PENDING_DELETION);
        kc_volume_key_health_format(&h, line, sizeof(line));
        ck_assert_msg(strstr(line, "no recovery keyslot"), "%s", line);
        ck_assert_int_eq(kc_volume_key_health(f.kms, NULL, &rq, &ref1, &h, &err), 0);
        ck_assert_uint_eq(h.recovery_keyslots, 1);
        kc_volume_key_health_format(&h, line, sizeof(line));
        ck_assert_str_eq(line, "PendingDeletion: only a recovery keyslot opens this volume (1 keyslot)");
        /* The explanation alone, without the state (status --json's KeyStateReason). */
        kc_volume_key_health_reason(&h, line, sizeof(line));
        ck_assert_str_eq(line, "only a recovery keyslot opens this volume (1 keyslot)");
        h = (struct kc_volume_key_health) { .reason = "cannot connect" };
        kc_volume_key_health_format(&h, line, sizeof(line));
        ck_assert_str_eq(line, "unknown (cannot connect)");
        kc_volume_key_health_reason(&h, line, sizeof(line));
        ck_assert_str_eq(line, "cannot connect");
}
END_TEST

START_TEST(test_copy) {
        _cleanup_free_ char *dst = NULL;
        struct kc_err err = {};

        ck_assert_int_ge(asprintf(&dst, "%s/copy.img", f.dir), 0);
        ck_assert_int_eq(kc_copy_encrypted(f.img[0], dst, false, NULL, NULL, &err), 0);
        ck_assert_uint_eq(kc_test_file_hash(dst), kc_test_file_hash(f.img[0]));
        /* An existing destination is refused unless overwrite. */
        ck_assert_int_eq(kc_copy_encrypted(f.img[1], dst, false, NULL, NULL, &err), -EEXIST);
        ck_assert_uint_eq(kc_test_file_hash(dst), kc_test_file_hash(f.img[0]));
        ck_assert_int_eq(kc_copy_encrypted(f.img[1], dst, true, NULL, NULL, &err), 0);
        ck_assert_uint_eq(kc_test_file_hash(dst), kc_test_file_hash(f.img[1]));
        ck_assert_int_lt(kc_copy_encrypted("/nonexistent", dst, true, NULL, NULL, &err), 0);
}
END_TEST

/* Entries of f.dir whose name contains "copy.img" (the destination and any temporary file beside it). */
static unsigned copy_entries(void) {
        DIR *d = opendir(f.dir);
        struct dirent *e;
        unsigned n = 0;

        ck_assert_ptr_nonnull(d);
        while ((e = readdir(d)))
                n += strstr(e->d_name, "copy.img") != NULL;
        closedir(d);
        return n;
}

/*
 * A copy that fails half-way (here: the file size limit, as a full disk
 * would) leaves the destination as it was: an earlier backup is not
 * truncated by --force, and no half-written file is left under the name.
 */
START_TEST(test_copy_failure_keeps_destination) {
        _cleanup_free_ char *dst = NULL;
        struct rlimit small, old;
        struct kc_err err = {};
        uint64_t before;

        ck_assert_int_ge(asprintf(&dst, "%s/copy.img", f.dir), 0);
        ck_assert_int_eq(kc_copy_encrypted(f.img[0], dst, false, NULL, NULL, &err), 0);
        before = kc_test_file_hash(dst);

        signal(SIGXFSZ, SIG_IGN);
        ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
        small = (struct rlimit) { .rlim_cur = 64 * 1024, .rlim_max = old.rlim_max };
        ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
        ck_assert_int_lt(kc_copy_encrypted(f.img[1], dst, true, NULL, NULL, &err), 0);
        ck_assert_uint_eq(kc_test_file_hash(dst), before);
        ck_assert_uint_eq(copy_entries(), 1);

        ck_assert_int_eq(unlink(dst), 0);
        ck_assert_int_lt(kc_copy_encrypted(f.img[1], dst, false, NULL, NULL, &err), 0);
        ck_assert_int_eq(access(dst, F_OK), -1);
        ck_assert_uint_eq(copy_entries(), 0);
        ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
}
END_TEST

/* A destination that is neither a block device nor a regular file is refused, not replaced by a file. */
START_TEST(test_copy_refuses_special_destination) {
        _cleanup_free_ char *fifo = NULL;
        struct kc_err err = {};
        struct stat st;

        ck_assert_int_ge(asprintf(&fifo, "%s/copy.img.fifo", f.dir), 0);
        ck_assert_int_eq(mkfifo(fifo, 0600), 0);
        ck_assert_int_eq(kc_copy_encrypted(f.img[0], fifo, true, NULL, NULL, &err), -EINVAL);
        ck_assert_int_eq(lstat(fifo, &st), 0);
        ck_assert(S_ISFIFO(st.st_mode));
        ck_assert_uint_eq(copy_entries(), 1);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("rotate");
        TCase *tc = tcase_create("rotate");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_rewrap_new_version);
        tcase_add_test(tc, test_rewrap_adds_key_check);
        tcase_add_test(tc, test_rewrap_without_intent_record_writes_nothing);
        tcase_add_test(tc, test_rewrap_token_id_preserved);
        tcase_add_test(tc, test_rewrap_other_key);
        tcase_add_test(tc, test_rewrap_dry_run);
        tcase_add_test(tc, test_rewrap_refusals);
        tcase_add_test(tc, test_rewrap_tampered);
        tcase_add_test(tc, test_rebind);
        tcase_add_test(tc, test_known_volumes_and_usage);
        tcase_add_test(tc, test_key_health);
        tcase_add_test(tc, test_copy);
        tcase_add_test(tc, test_copy_failure_keeps_destination);
        tcase_add_test(tc, test_copy_refuses_special_destination);
        suite_add_tcase(s, tc);
        return s;
}
