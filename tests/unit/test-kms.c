/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "agent/blob.h"
#include "agent/keystore.h"
#include "agent/kms.h"
#include "lib/secret.h"
#include "tests/unit/check-main.h"

static time_t fake_now = 1800000000;
static time_t fake_clock(void) {
        return fake_now;
}

struct env {
        char *tmp;
        char *keystore;
        char *audit_log;
        struct kc_kms_config cfg;
        struct kc_kms *kms;
        struct kc_caller caller;
        struct kc_kms_request req;
};

static void env_open(struct env *e) {
        struct kc_err err = {};
        int r = kc_kms_open(&e->cfg, &e->kms, &err);
        ck_assert_msg(r == 0, "kc_kms_open: %s", kc_err_msg(&err, r));
}

static void env_init(struct env *e) {
        *e = (struct env) {};
        e->tmp = kc_test_tmpdir();
        ck_assert_int_ge(asprintf(&e->keystore, "%s/keystore", e->tmp), 0);
        ck_assert_int_ge(asprintf(&e->audit_log, "%s/audit.log", e->tmp), 0);
        e->cfg = (struct kc_kms_config) { .keystore_dir = e->keystore, .audit_log = e->audit_log };
        ck_assert_int_eq(kc_caller_self(&e->caller), 0);
        e->req = (struct kc_kms_request) { .caller = &e->caller, .volume = "vol-test" };
        env_open(e);
}

static void env_done(struct env *e) {
        kc_kms_close(e->kms);
        free(e->tmp);
        free(e->keystore);
        free(e->audit_log);
}

static struct kc_context *ctx_new(const char *db, const char *vol) {
        struct kc_context *c = NULL;
        ck_assert_int_eq(kc_context_new(&c), 0);
        ck_assert_int_eq(kc_context_add(c, "db-id", db, NULL), 0);
        ck_assert_int_eq(kc_context_add(c, "volume-id", vol, NULL), 0);
        return c;
}

static void create(struct env *e, const char *alias, struct kc_key_info *ret) {
        struct kc_err err = {};
        int r = kc_kms_create_key(e->kms, &e->req, NULL, alias, "test", ret, &err);
        ck_assert_msg(r == 0, "create: %s", kc_err_msg(&err, r));
}

static void generate(struct env *e, const char *ref, const struct kc_context *ctx, struct kc_data_key *ret) {
        struct kc_err err = {};
        int r = kc_kms_generate_data_key(e->kms, &e->req, ref, ctx, 64, ret, &err);
        ck_assert_msg(r == 0, "generate %s: %s", ref, kc_err_msg(&err, r));
        ck_assert_uint_eq(kc_secret_size(ret->plaintext), 64);
}

static int decrypt(struct env *e, const char *ref, const struct kc_data_key *dk, const struct kc_context *ctx,
                   struct kc_err *err) {
        _cleanup_secret_ void *pt = NULL;
        char id[65] = "";
        uint32_t version = 0;
        int r;

        *err = (struct kc_err) {};
        r = kc_kms_decrypt(e->kms, &e->req, ref, dk->blob, dk->blob_len, ctx, &pt, id, &version, err);
        if (r < 0) {
                ck_assert_ptr_null(pt);
                return r;
        }
        ck_assert_uint_eq(kc_secret_size(pt), kc_secret_size(dk->plaintext));
        ck_assert_mem_eq(pt, dk->plaintext, kc_secret_size(pt));
        ck_assert_str_eq(id, dk->key_id);
        ck_assert_uint_eq(version, dk->key_version);
        return 0;
}

/* The chain the KMS layer wrote verifies, with its head in the keystore (the default). */
static void assert_audit_intact(const struct env *e) {
        _cleanup_free_ char *head = NULL;
        struct kc_audit_evidence evidence;
        struct kc_audit_verify v = {};
        int r;

        ck_assert_int_eq(kc_kms_audit_head(&e->cfg, &head), 0);
        kc_kms_audit_evidence(&e->cfg, &evidence);
        r = kc_audit_verify(e->audit_log, head, &evidence, &v);
        ck_assert_msg(r == 0, "audit chain broken at line %llu: %s", (unsigned long long) v.bad_line, v.reason);
}

static void setup(void) {
        fake_now = 1800000000;
        kc_keystore_set_clock(fake_clock);
        unsetenv("CREDENTIALS_DIRECTORY");
        setenv("KMSCRYPT_INITRD", "0", 1);
}

START_TEST(test_resolve) {
        const struct kc_kms_provider *p = NULL;
        const char *key = NULL;
        struct kc_err err = {};

        ck_assert_int_eq(kc_kms_resolve("alias/pg", &p, &key, NULL), 0);
        ck_assert_ptr_eq(p, &kc_kms_provider_local);
        ck_assert_str_eq(key, "alias/pg");
        ck_assert_int_eq(kc_kms_resolve("local:alias/pg", &p, &key, NULL), 0);
        ck_assert_str_eq(key, "alias/pg");
        ck_assert_int_eq(kc_kms_resolve("local:5f0c0000-0000-4000-8000-000000000000", &p, &key, NULL), 0);
        ck_assert_str_eq(key, "5f0c0000-0000-4000-8000-000000000000");
        ck_assert_int_eq(kc_kms_resolve("5f0c0000-0000-4000-8000-000000000000", &p, &key, NULL), 0);
        ck_assert_ptr_eq(p, &kc_kms_provider_local);
        ck_assert_int_eq(kc_kms_resolve("kmip:arn:aws:kms:eu-west-1:1:key/x", &p, &key, &err), -EPROTONOSUPPORT);
        ck_assert_ptr_nonnull(strstr(err.msg, "\"kmip\""));
        ck_assert_int_eq(kc_kms_resolve("", &p, &key, NULL), -EINVAL);
        ck_assert_int_eq(kc_kms_resolve(NULL, &p, &key, NULL), -EINVAL);
        ck_assert_int_eq(kc_kms_resolve("local:", &p, &key, NULL), -EINVAL);
        ck_assert_str_eq(kc_key_state_to_string(KC_KEY_PENDING_DELETION), "PendingDeletion");
}
END_TEST

/* What says the audit chain held records: the keystore's keys, each created after its record; not in an initramfs. */
START_TEST(test_audit_evidence) {
        struct env e;
        struct kc_audit_evidence evidence;
        _cleanup_free_ char *head = NULL, *want = NULL;
        char buf[KC_AUDIT_REASON_MAX] = "";

        env_init(&e);
        ck_assert_int_eq(kc_kms_audit_head(&e.cfg, &head), 0);
        ck_assert_str_eq(head + strlen(e.keystore), "/audit.head");
        kc_kms_audit_evidence(&e.cfg, &evidence);
        ck_assert_int_eq(evidence.check(evidence.userdata, buf, sizeof(buf)), 0);
        create(&e, "alias/a", NULL);
        create(&e, NULL, NULL);
        ck_assert_int_eq(evidence.check(evidence.userdata, buf, sizeof(buf)), 1);
        ck_assert_int_ge(asprintf(&want, "keystore %s holds 2 keys, whose creation was audited", e.keystore), 0);
        ck_assert_str_eq(buf, want);
        setenv("KMSCRYPT_INITRD", "1", 1);
        ck_assert_int_eq(evidence.check(evidence.userdata, buf, sizeof(buf)), 0);
        setenv("KMSCRYPT_INITRD", "0", 1);
        env_done(&e);
}
END_TEST

/* Log and head deleted while keys exist: the KMS layer does not start a new chain over them. */
START_TEST(test_open_refuses_lost_chain) {
        struct env e;
        _cleanup_free_ char *head = NULL;
        struct kc_kms *k = NULL;
        struct kc_err err = {};

        env_init(&e);
        create(&e, "alias/a", NULL);
        kc_kms_close(TAKE_PTR(e.kms));
        ck_assert_int_eq(kc_kms_audit_head(&e.cfg, &head), 0);
        ck_assert_int_eq(unlink(e.audit_log), 0);
        ck_assert_int_eq(unlink(head), 0);
        ck_assert_int_eq(kc_kms_open(&e.cfg, &k, &err), -EBADMSG);
        ck_assert_ptr_null(k);
        ck_assert_msg(strstr(err.msg, "both missing") && strstr(err.msg, "holds 1 key,"), "%s", err.msg);
        ck_assert_int_eq(access(e.audit_log, F_OK), -1);
        ck_assert_int_eq(access(head, F_OK), -1);

        /* In an initramfs the chain is new at every boot: opened as a fresh one. */
        setenv("KMSCRYPT_INITRD", "1", 1);
        env_open(&e);
        setenv("KMSCRYPT_INITRD", "0", 1);
        assert_audit_intact(&e);
        env_done(&e);
}
END_TEST

/* The ids the audit records name keys by, found without opening the KMS (audit list --key). */
START_TEST(test_peek_key_id) {
        struct env e;
        struct kc_key_info a;
        struct kc_err err = {};
        struct stat before, after;
        char id[65];

        env_init(&e);
        ck_assert_int_eq(kc_kms_create_key(e.kms, &e.req, NULL, "alias/pg", NULL, &a, NULL), 0);
        ck_assert_int_eq(stat(e.audit_log, &before), 0);
        for (const char *const *ref = (const char *const[]) { "alias/pg", "local:alias/pg", a.key_id, NULL }; *ref; ref++) {
                ck_assert_int_eq(kc_kms_peek_key_id(&e.cfg, *ref, id, NULL), 0);
                ck_assert_str_eq(id, a.key_id);
        }
        ck_assert_int_eq(kc_kms_peek_key_id(&e.cfg, "alias/none", id, &err), -ENOKEY);
        ck_assert_int_eq(kc_kms_peek_key_id(&e.cfg, "kmip:x", id, NULL), -EPROTONOSUPPORT);
#if HAVE_AWS
        /* AWS records name a key by the id part of its ARN; an alias would need a call. */
        ck_assert_int_eq(kc_kms_peek_key_id(&e.cfg, "aws:arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab", id,
                                            NULL), 0);
        ck_assert_str_eq(id, "1234abcd-12ab");
        ck_assert_int_eq(kc_kms_peek_key_id(&e.cfg, "aws:1234abcd-12ab", id, NULL), 0);
        ck_assert_str_eq(id, "1234abcd-12ab");
        ck_assert_int_eq(kc_kms_peek_key_id(&e.cfg, "aws:alias/pg", id, NULL), -EOPNOTSUPP);
        ck_assert_int_eq(kc_kms_peek_key_id(&e.cfg, "aws:arn:aws:kms:eu-west-1:111122223333:alias/pg", id, NULL),
                         -EOPNOTSUPP);
#endif
        /* Nothing audited: the peek is no KMS call. */
        ck_assert_int_eq(stat(e.audit_log, &after), 0);
        ck_assert_int_eq(after.st_size, before.st_size);
        env_done(&e);
}
END_TEST

START_TEST(test_generate_decrypt_roundtrip) {
        _cleanup_context_ struct kc_context *ctx = ctx_new("db-1", "vol-1");
        struct kc_data_key dk = {}, dk2 = {};
        struct kc_key_info a, d;
        struct kc_err err = {};
        _cleanup_free_ char *by_id = NULL;
        struct env e;

        env_init(&e);
        create(&e, "alias/pgdata", &a);
        generate(&e, "alias/pgdata", ctx, &dk);
        ck_assert_str_eq(dk.key_id, a.key_id);
        ck_assert_uint_eq(dk.key_version, 1);
        ck_assert_int_eq(decrypt(&e, "alias/pgdata", &dk, ctx, &err), 0);
        ck_assert_int_eq(decrypt(&e, "local:alias/pgdata", &dk, ctx, &err), 0);
        ck_assert_int_ge(asprintf(&by_id, "local:%s", a.key_id), 0);
        ck_assert_int_eq(decrypt(&e, by_id, &dk, ctx, &err), 0);
        ck_assert_int_eq(decrypt(&e, a.key_id, &dk, ctx, &err), 0);
        ck_assert_int_eq(decrypt(&e, NULL, &dk, ctx, &err), 0);

        /* Two data keys differ. */
        generate(&e, by_id, ctx, &dk2);
        ck_assert(memcmp(dk.plaintext, dk2.plaintext, 64) != 0);

        ck_assert_int_eq(kc_kms_describe_key(e.kms, &e.req, "local:alias/pgdata", &d, &err), 0);
        ck_assert_str_eq(d.key_id, a.key_id);

        /* Size limits. */
        ck_assert_int_eq(kc_kms_generate_data_key(e.kms, &e.req, "alias/pgdata", ctx, 0, &dk2, NULL), -EINVAL);
        ck_assert_int_eq(kc_kms_generate_data_key(e.kms, &e.req, "alias/pgdata", ctx, 1025, &dk2, NULL), -EINVAL);
        kc_data_key_clear(&dk);
        kc_data_key_clear(&dk);   /* twice is safe */
        kc_data_key_clear(&dk2);
        env_done(&e);
}
END_TEST

START_TEST(test_rotate_old_blob_still_decrypts) {
        _cleanup_context_ struct kc_context *ctx = ctx_new("db-1", "vol-1");
        struct kc_data_key old = {}, fresh = {}, rewrapped = {};
        struct kc_err err = {};
        uint32_t version = 0;
        struct env e;

        env_init(&e);
        create(&e, "alias/r", NULL);
        generate(&e, "alias/r", ctx, &old);
        ck_assert_int_eq(kc_kms_rotate_key(e.kms, &e.req, "alias/r", &version, &err), 0);
        ck_assert_uint_eq(version, 2);
        generate(&e, "alias/r", ctx, &fresh);
        ck_assert_uint_eq(fresh.key_version, 2);
        ck_assert_int_eq(decrypt(&e, "alias/r", &old, ctx, &err), 0);
        ck_assert_int_eq(decrypt(&e, "alias/r", &fresh, ctx, &err), 0);

        /* ReEncrypt moves the old blob to the newest version; the data key itself stays. */
        ck_assert_int_eq(kc_kms_re_encrypt(e.kms, &e.req, "alias/r", old.blob, old.blob_len, ctx, NULL, NULL,
                                           &rewrapped, &err), 0);
        ck_assert_uint_eq(rewrapped.key_version, 2);
        ck_assert_ptr_null(rewrapped.plaintext); /* ReEncrypt never hands the plaintext out */
        /* ...and the new blob unwraps to the same data key as the old one. */
        rewrapped.plaintext = kc_secret_memdup(old.plaintext, 64);
        ck_assert_int_eq(decrypt(&e, "alias/r", &rewrapped, ctx, &err), 0);
        kc_data_key_clear(&old);
        kc_data_key_clear(&fresh);
        kc_data_key_clear(&rewrapped);
        env_done(&e);
}
END_TEST

START_TEST(test_re_encrypt_other_key_and_context) {
        _cleanup_context_ struct kc_context *src = ctx_new("db-1", "vol-1"), *dst = ctx_new("db-1", "vol-clone");
        struct kc_data_key dk = {}, moved = {};
        struct kc_key_info a, b;
        struct kc_err err = {};
        struct env e;

        env_init(&e);
        create(&e, "alias/a", &a);
        create(&e, "alias/b", &b);
        generate(&e, "alias/a", src, &dk);
        ck_assert_int_eq(kc_kms_re_encrypt(e.kms, &e.req, "alias/a", dk.blob, dk.blob_len, src, "local:alias/b", dst,
                                           &moved, &err), 0);
        ck_assert_str_eq(moved.key_id, b.key_id);
        ck_assert_ptr_null(moved.plaintext);
        moved.plaintext = kc_secret_memdup(dk.plaintext, 64); /* what decrypt() must give back */
        ck_assert_int_eq(decrypt(&e, "alias/b", &moved, dst, &err), 0);
        ck_assert_int_eq(decrypt(&e, "alias/b", &moved, src, &err), -EBADMSG);

        /* The source key named must be the blob's key; other providers are refused. */
        struct kc_data_key none = {};
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_kms_re_encrypt(e.kms, &e.req, "alias/b", dk.blob, dk.blob_len, src, NULL, NULL,
                                           &none, &err), -EBADMSG);
        ck_assert_ptr_null(none.plaintext);
        ck_assert_int_eq(kc_kms_re_encrypt(e.kms, &e.req, "alias/a", dk.blob, dk.blob_len, src, "kmip:key/x", NULL,
                                           &none, NULL), -EPROTONOSUPPORT);
#if HAVE_AWS
        /* A known provider, but another one: refused before any provider is asked. */
        ck_assert_int_eq(kc_kms_re_encrypt(e.kms, &e.req, "alias/a", dk.blob, dk.blob_len, src,
                                           "aws:arn:aws:kms:eu-west-1:111122223333:key/x", NULL, &none, NULL), -EXDEV);
#endif
        kc_data_key_clear(&dk);
        kc_data_key_clear(&moved);
        env_done(&e);
}
END_TEST

START_TEST(test_disable_enable) {
        _cleanup_context_ struct kc_context *ctx = ctx_new("db-1", "vol-1");
        struct kc_data_key dk = {}, none = {};
        struct kc_err err = {};
        struct env e;

        env_init(&e);
        create(&e, "alias/d", NULL);
        generate(&e, "alias/d", ctx, &dk);
        ck_assert_int_eq(kc_kms_set_enabled(e.kms, &e.req, "alias/d", false, &err), 0);
        ck_assert_int_eq(kc_kms_generate_data_key(e.kms, &e.req, "alias/d", ctx, 64, &none, &err), -EKEYREVOKED);
        ck_assert_ptr_null(none.plaintext);
        ck_assert_int_eq(decrypt(&e, "alias/d", &dk, ctx, &err), -EKEYREVOKED);
        ck_assert_ptr_nonnull(strstr(err.msg, "disabled"));
        ck_assert_int_eq(kc_kms_set_enabled(e.kms, &e.req, "alias/d", true, &err), 0);
        ck_assert_int_eq(decrypt(&e, "alias/d", &dk, ctx, &err), 0);
        kc_data_key_clear(&dk);
        env_done(&e);
}
END_TEST

START_TEST(test_deletion_lifecycle) {
        _cleanup_context_ struct kc_context *ctx = ctx_new("db-1", "vol-1");
        struct kc_data_key dk = {}, none = {};
        struct kc_key_info a;
        struct kc_err err = {};
        time_t date = 0;
        struct env e;

        env_init(&e);
        create(&e, "alias/x", &a);
        generate(&e, "alias/x", ctx, &dk);
        ck_assert_int_eq(kc_kms_schedule_deletion(e.kms, &e.req, "alias/x", 6, &date, &err), -EINVAL);
        ck_assert_int_eq(kc_kms_schedule_deletion(e.kms, &e.req, "alias/x", 31, &date, NULL), -EINVAL);
        ck_assert_int_eq(kc_kms_schedule_deletion(e.kms, &e.req, "alias/x", 7, &date, NULL), 0);
        ck_assert_int_eq(date, fake_now + 7 * 86400);
        ck_assert_int_eq(kc_kms_generate_data_key(e.kms, &e.req, "alias/x", ctx, 64, &none, NULL), -EKEYEXPIRED);
        ck_assert_int_eq(decrypt(&e, a.key_id, &dk, ctx, &err), -EKEYEXPIRED);
        ck_assert_int_eq(kc_kms_cancel_deletion(e.kms, &e.req, "alias/x", NULL), 0);
        ck_assert_int_eq(decrypt(&e, a.key_id, &dk, ctx, &err), -EKEYREVOKED);   /* cancelled: Disabled */
        ck_assert_int_eq(kc_kms_set_enabled(e.kms, &e.req, "alias/x", true, NULL), 0);
        ck_assert_int_eq(decrypt(&e, a.key_id, &dk, ctx, &err), 0);

        ck_assert_int_eq(kc_kms_schedule_deletion(e.kms, &e.req, a.key_id, 7, &date, NULL), 0);
        fake_now = date + 1;
        ck_assert_int_eq(decrypt(&e, a.key_id, &dk, ctx, &err), -EKEYREJECTED);
        ck_assert_ptr_nonnull(strstr(err.msg, "destroyed"));
        ck_assert_int_eq(decrypt(&e, NULL, &dk, ctx, &err), -EKEYREJECTED);
        kc_data_key_clear(&dk);
        env_done(&e);
}
END_TEST

START_TEST(test_refusals) {
        _cleanup_context_ struct kc_context *ctx = ctx_new("db-1", "vol-1"), *wrong = ctx_new("db-1", "vol-2");
        struct kc_data_key dk = {}, foreign = {};
        struct kc_key_info a, b;
        struct kc_err err = {};
        struct env e, other;

        env_init(&e);
        env_init(&other);
        create(&e, "alias/a", &a);
        create(&e, "alias/b", &b);
        create(&other, "alias/a", NULL);
        generate(&e, "alias/a", ctx, &dk);
        generate(&other, "alias/a", ctx, &foreign);

        ck_assert_int_eq(decrypt(&e, "alias/a", &dk, wrong, &err), -EBADMSG);
        ck_assert_str_eq(err.msg, "wrapped key does not match this key or encryption context");
        ck_assert_int_eq(decrypt(&e, "alias/b", &dk, ctx, &err), -EBADMSG);
        ck_assert_ptr_nonnull(strstr(err.msg, a.key_id));
        ck_assert_int_eq(decrypt(&e, b.key_id, &dk, ctx, &err), -EBADMSG);
        ck_assert_int_eq(decrypt(&e, "alias/nope", &dk, ctx, &err), -ENOKEY);

        /* A blob of another keystore names a key this one does not have, even under the same alias. */
        ck_assert_int_eq(decrypt(&e, "alias/a", &foreign, ctx, &err), -EBADMSG);
        ck_assert_int_eq(decrypt(&e, NULL, &foreign, ctx, &err), -ENOKEY);
        ck_assert_ptr_nonnull(strstr(err.msg, foreign.key_id));

        /* Tampering anywhere in the blob is refused. */
        for (size_t i = 0; i < dk.blob_len; i += 7) {
                dk.blob[i] ^= 0x01;
                ck_assert_int_lt(decrypt(&e, NULL, &dk, ctx, &err), 0);
                dk.blob[i] ^= 0x01;
        }
        ck_assert_int_eq(decrypt(&e, NULL, &dk, ctx, &err), 0);
        kc_data_key_clear(&dk);
        kc_data_key_clear(&foreign);
        env_done(&other);
        env_done(&e);
}
END_TEST

struct audit_seen {
        char ops[64][32];
        char results[64][8];            /* "ok", "error", "pending" */
        char key_ids[64][72];
        int64_t key_versions[64];       /* -1: null */
        char details[64][96];
        size_t n;
};

static int collect(struct json_object *rec, void *userdata) {
        struct audit_seen *s = userdata;
        struct json_object *op, *result, *key, *detail = json_object_object_get(rec, "detail"),
                           *version = json_object_object_get(rec, "key_version");

        ck_assert(json_object_object_get_ex(rec, "operation", &op));
        ck_assert(json_object_object_get_ex(rec, "result", &result));
        ck_assert(json_object_object_get_ex(rec, "key_id", &key));
        if (s->n < ARRAY_SIZE(s->ops)) {
                snprintf(s->ops[s->n], sizeof(s->ops[0]), "%s", json_object_get_string(op));
                snprintf(s->results[s->n], sizeof(s->results[0]), "%s", json_object_get_string(result));
                snprintf(s->key_ids[s->n], sizeof(s->key_ids[0]), "%s", key ? json_object_get_string(key) : "");
                snprintf(s->details[s->n], sizeof(s->details[0]), "%s", detail ? json_object_get_string(detail) : "");
                s->key_versions[s->n] = version ? json_object_get_int64(version) : -1;
        }
        s->n++;
        return 0;
}

/*
 * A decrypt refused without a key: its record names the key the blob names,
 * by id and version, as the record of the same decrypt allowed would, so
 * audit list --key finds it.  A blob that names no key that can be read
 * leaves the record's key null.
 */
START_TEST(test_refusal_without_key_names_blob_key) {
        _cleanup_context_ struct kc_context *ctx = ctx_new("db-1", "vol-1"), *wrong = ctx_new("db-1", "vol-2");
        struct kc_data_key dk = {}, dk2 = {};
        struct audit_seen seen = {};
        struct kc_key_info a;
        struct kc_err err = {};
        size_t refused[4], nrefused = 0;
        struct env e;

        env_init(&e);
        create(&e, "alias/a", &a);
        generate(&e, "alias/a", ctx, &dk);
        ck_assert_int_eq(kc_kms_rotate_key(e.kms, &e.req, "alias/a", NULL, NULL), 0);
        generate(&e, "alias/a", ctx, &dk2);
        ck_assert_int_eq(decrypt(&e, NULL, &dk, wrong, &err), -EBADMSG);          /* 1: version 1 */
        ck_assert_int_eq(kc_kms_set_enabled(e.kms, &e.req, "alias/a", false, NULL), 0);
        ck_assert_int_eq(decrypt(&e, NULL, &dk2, ctx, &err), -EKEYREVOKED);       /* 2: version 2 */
        dk.blob[6] = '!';       /* the first byte of the key id: no longer one */
        ck_assert_int_eq(decrypt(&e, NULL, &dk, ctx, &err), -ENOKEY);             /* 3 */
        dk.blob_len = 5;
        ck_assert_int_lt(decrypt(&e, NULL, &dk, ctx, &err), 0);                   /* 4: no header */

        ck_assert_int_eq(kc_audit_foreach(e.audit_log, NULL, collect, &seen), 0);
        for (size_t i = 0; i < seen.n; i++)
                if (streq(seen.ops[i], "Decrypt") && streq(seen.results[i], "error")) {
                        ck_assert_uint_lt(nrefused, ARRAY_SIZE(refused));
                        refused[nrefused++] = i;
                }
        ck_assert_uint_eq(nrefused, 4);
        ck_assert_str_eq(seen.key_ids[refused[0]], a.key_id);
        ck_assert_int_eq(seen.key_versions[refused[0]], 1);
        ck_assert_str_eq(seen.key_ids[refused[1]], a.key_id);
        ck_assert_int_eq(seen.key_versions[refused[1]], 2);
        for (size_t i = 2; i < 4; i++) {
                ck_assert_str_eq(seen.key_ids[refused[i]], "");
                ck_assert_int_eq(seen.key_versions[refused[i]], -1);
        }
        kc_data_key_clear(&dk);
        kc_data_key_clear(&dk2);
        env_done(&e);
}
END_TEST

START_TEST(test_every_call_audited) {
        _cleanup_context_ struct kc_context *ctx = ctx_new("db-1", "vol-1"), *wrong = ctx_new("db-1", "vol-2");
        _cleanup_free_ struct kc_key_info *list = NULL;
        struct kc_data_key dk = {}, re = {}, none = {};
        struct audit_seen seen = {};
        struct kc_key_info info;
        struct kc_err err = {};
        size_t n;
        struct env e;
        /* Changes are written ahead: a "pending" intent, then the outcome. */
        static const struct { const char *op, *result; } want[] = {
                { "CreateKey", "pending" }, { "CreateKey", "ok" },
                { "GenerateDataKey", "ok" }, { "Decrypt", "ok" }, { "Decrypt", "error" },
                { "ReEncrypt", "ok" }, { "DescribeKey", "ok" }, { "ListKeys", "ok" },
                { "RotateKey", "pending" }, { "RotateKey", "ok" },
                { "DisableKey", "pending" }, { "DisableKey", "ok" }, { "GenerateDataKey", "error" },
                { "EnableKey", "pending" }, { "EnableKey", "ok" },
                { "ScheduleKeyDeletion", "pending" }, { "ScheduleKeyDeletion", "error" },
                { "ScheduleKeyDeletion", "pending" }, { "ScheduleKeyDeletion", "ok" },
                { "CancelKeyDeletion", "pending" }, { "CancelKeyDeletion", "ok" },
                { "DescribeKey", "error" }, { "GenerateDataKey", "error" },
        };

        env_init(&e);
        create(&e, "alias/a", NULL);
        generate(&e, "alias/a", ctx, &dk);
        ck_assert_int_eq(decrypt(&e, "alias/a", &dk, ctx, &err), 0);
        ck_assert_int_eq(decrypt(&e, "alias/a", &dk, wrong, &err), -EBADMSG);
        ck_assert_int_eq(kc_kms_re_encrypt(e.kms, &e.req, NULL, dk.blob, dk.blob_len, ctx, NULL, wrong, &re, NULL), 0);
        ck_assert_int_eq(kc_kms_describe_key(e.kms, &e.req, "alias/a", &info, NULL), 0);
        ck_assert_int_eq(kc_kms_list_keys(e.kms, &e.req, "local", &list, &n, NULL), 0);
        ck_assert_uint_eq(n, 1);
        ck_assert_int_eq(kc_kms_rotate_key(e.kms, &e.req, "alias/a", NULL, NULL), 0);
        ck_assert_int_eq(kc_kms_set_enabled(e.kms, &e.req, "alias/a", false, NULL), 0);
        ck_assert_int_eq(kc_kms_generate_data_key(e.kms, &e.req, "alias/a", ctx, 64, &none, NULL), -EKEYREVOKED);
        ck_assert_int_eq(kc_kms_set_enabled(e.kms, &e.req, "alias/a", true, NULL), 0);
        ck_assert_int_eq(kc_kms_schedule_deletion(e.kms, &e.req, "alias/a", 3, NULL, NULL), -EINVAL);
        ck_assert_int_eq(kc_kms_schedule_deletion(e.kms, &e.req, "alias/a", 9, NULL, NULL), 0);
        ck_assert_int_eq(kc_kms_cancel_deletion(e.kms, &e.req, "alias/a", NULL), 0);
        ck_assert_int_eq(kc_kms_describe_key(e.kms, &e.req, "kmip:key/1", &info, NULL), -EPROTONOSUPPORT);
        ck_assert_int_eq(kc_kms_generate_data_key(e.kms, &e.req, "alias/none", ctx, 64, &none, NULL), -ENOKEY);

        ck_assert_int_eq(kc_audit_foreach(e.audit_log, NULL, collect, &seen), 0);
        ck_assert_uint_eq(seen.n, ARRAY_SIZE(want));
        for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
                ck_assert_msg(streq(seen.ops[i], want[i].op), "record %zu is %s, want %s", i + 1, seen.ops[i], want[i].op);
                ck_assert_msg(streq(seen.results[i], want[i].result), "record %zu (%s) result %s, want %s",
                              i + 1, seen.ops[i], seen.results[i], want[i].result);
        }
        /* ReEncrypt was given no source key (the blob names it): the record names it, and its version. */
        {
                char source[96];

                snprintf(source, sizeof(source), "source %s version 1", dk.key_id);
                ck_assert_str_eq(seen.details[5], source);
        }
        assert_audit_intact(&e);
        kc_data_key_clear(&dk);
        kc_data_key_clear(&re);
        env_done(&e);
}
END_TEST

/*
 * Make appends to the audit log fail (EFBIG) while fn runs, past room more
 * bytes (one record fits, the next not): kc_test_with_file_limit(), which
 * works for root too; fn must not assert.
 */
static void with_frozen_audit_log(const char *path, off_t room, void (*fn)(void *userdata), void *userdata) {
        struct stat st;

        ck_assert_int_eq(stat(path, &st), 0);
        kc_test_with_file_limit(st.st_size + room, fn, userdata);
}

struct frozen {
        struct env *e;
        const struct kc_context *ctx;
        const struct kc_data_key *dk;
        int r_generate, r_decrypt, r_re_encrypt;
        struct kc_err err;
        struct kc_data_key generated, re;
        void *pt;
        char id[65];
};

static void frozen_calls(void *userdata) {
        struct frozen *f = userdata;
        struct env *e = f->e;

        f->r_generate = kc_kms_generate_data_key(e->kms, &e->req, "alias/a", f->ctx, 64, &f->generated, &f->err);
        f->r_decrypt = kc_kms_decrypt(e->kms, &e->req, "alias/a", f->dk->blob, f->dk->blob_len, f->ctx, &f->pt,
                                      f->id, NULL, NULL);
        f->r_re_encrypt = kc_kms_re_encrypt(e->kms, &e->req, NULL, f->dk->blob, f->dk->blob_len, f->ctx, NULL, NULL,
                                            &f->re, NULL);
}

START_TEST(test_audit_failure_fails_closed) {
        _cleanup_context_ struct kc_context *ctx = ctx_new("db-1", "vol-1");
        struct kc_data_key dk = {};
        struct audit_seen seen = {};
        struct env e;
        struct frozen f = { .id = "untouched" };
        size_t before;

        env_init(&e);
        create(&e, "alias/a", NULL);
        generate(&e, "alias/a", ctx, &dk);
        ck_assert_int_eq(decrypt(&e, "alias/a", &dk, ctx, &f.err), 0);
        ck_assert_int_eq(kc_audit_foreach(e.audit_log, NULL, collect, &seen), 0);
        before = seen.n;

        f.e = &e;
        f.ctx = ctx;
        f.dk = &dk;
        with_frozen_audit_log(e.audit_log, 0, frozen_calls, &f);

        ck_assert_int_lt(f.r_generate, 0);
        ck_assert_msg(strstr(f.err.msg, "audit"), "message: %s", f.err.msg);
        ck_assert_ptr_null(f.generated.plaintext);
        ck_assert_ptr_null(f.generated.blob);
        ck_assert_int_lt(f.r_decrypt, 0);
        ck_assert_ptr_null(f.pt);
        ck_assert_str_eq(f.id, "untouched");
        ck_assert_int_lt(f.r_re_encrypt, 0);
        ck_assert_ptr_null(f.re.plaintext);

        /* Nothing reached the log either, and it still verifies. */
        seen.n = 0;
        ck_assert_int_eq(kc_audit_foreach(e.audit_log, NULL, collect, &seen), 0);
        ck_assert_uint_eq(seen.n, before);
        assert_audit_intact(&e);
        /* Once the log is writable again, so is the KMS. */
        ck_assert_int_eq(decrypt(&e, "alias/a", &dk, ctx, &f.err), 0);
        kc_data_key_clear(&dk);
        env_done(&e);
}
END_TEST

/* ---- write-ahead changes ---- */

/* Every file under dir, name and bytes, in name order, into out: to compare before and after. */
static void snapshot_dir(const char *dir, FILE *out, off_t *largest) {
        struct dirent **names = NULL;
        int n = scandir(dir, &names, NULL, alphasort);

        ck_assert_int_ge(n, 0);
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *path = NULL, *data = NULL;
                struct stat st;
                FILE *f;

                ck_assert_int_ge(asprintf(&path, "%s/%s", dir, names[i]->d_name), 0);
                ck_assert_int_eq(lstat(path, &st), 0);
                fprintf(out, "%s %o %lld\n", path, (unsigned) st.st_mode, (long long) st.st_size);
                if (S_ISDIR(st.st_mode) && !streq(names[i]->d_name, ".") && !streq(names[i]->d_name, ".."))
                        snapshot_dir(path, out, largest);
                free(names[i]);
                if (!S_ISREG(st.st_mode))
                        continue;
                data = malloc(st.st_size + 1);
                f = fopen(path, "re");
                ck_assert_ptr_nonnull(data);
                ck_assert_ptr_nonnull(f);
                ck_assert_uint_eq(fread(data, 1, st.st_size, f), (size_t) st.st_size);
                fclose(f);
                fwrite(data, 1, st.st_size, out);
                if (st.st_size > *largest)
                        *largest = st.st_size;
        }
        free(names);
}

static char *keystore_snapshot(const char *dir, size_t *ret_len, off_t *ret_largest) {
        char *buf = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&buf, &len);

        ck_assert_ptr_nonnull(out);
        *ret_largest = 0;
        snapshot_dir(dir, out, ret_largest);
        ck_assert_int_eq(fclose(out), 0);
        *ret_len = len;
        return buf;
}

static off_t file_size(const char *path) {
        struct stat st;

        ck_assert_int_eq(stat(path, &st), 0);
        return st.st_size;
}

static size_t count_records(const struct env *e) {
        struct audit_seen seen = {};

        ck_assert_int_eq(kc_audit_foreach(e->audit_log, NULL, collect, &seen), 0);
        return seen.n;
}

/*
 * One round of lookups (kc_kms_describe_key_in): each key described once,
 * its answer given to every lookup of it, a refusal included; the record
 * carries the first lookup's request; without lookups, every call asks.
 */
START_TEST(test_describe_once_a_round) {
        _cleanup_(kc_key_lookups_freep) struct kc_key_lookups *round = kc_key_lookups_new();
        struct kc_kms_request why = { .detail = "status" };
        struct kc_key_info a = {}, b = {}, again = {};
        struct kc_err err = {}, err2 = {};
        size_t records;
        struct env e;

        env_init(&e);
        why.caller = &e.caller;
        create(&e, "alias/a", NULL);
        create(&e, "alias/b", NULL);
        ck_assert_ptr_nonnull(round);
        records = count_records(&e);
        ck_assert_int_eq(kc_kms_describe_key_in(e.kms, round, &why, "alias/a", &a, &err), 0);
        ck_assert_int_eq(kc_kms_describe_key_in(e.kms, round, &why, "alias/b", &b, &err), 0);
        ck_assert_int_eq(kc_kms_describe_key_in(e.kms, round, &e.req, "alias/a", &again, &err), 0);
        ck_assert_str_eq(again.key_id, a.key_id);
        ck_assert_str_ne(a.key_id, b.key_id);
        ck_assert_int_eq(kc_kms_describe_key_in(e.kms, round, &why, "alias/none", &again, &err), -ENOKEY);
        ck_assert_int_eq(kc_kms_describe_key_in(e.kms, round, &why, "alias/none", &again, &err2), -ENOKEY);
        ck_assert_str_eq(err2.msg, err.msg);
        ck_assert_uint_eq(count_records(&e), records + 3);

        ck_assert_int_eq(kc_kms_describe_key_in(e.kms, NULL, &why, "alias/a", &again, &err), 0);
        ck_assert_int_eq(kc_kms_describe_key_in(e.kms, NULL, &why, "alias/a", &again, &err), 0);
        ck_assert_uint_eq(count_records(&e), records + 5);
        env_done(&e);
}
END_TEST

/* The changes of state, each with what must hold before it can be made. */
struct change {
        const char *operation;
        int (*prepare)(struct env *e);
        int (*apply)(struct env *e, struct kc_err *err);
};

static int do_create(struct env *e, struct kc_err *err) {
        struct kc_key_info info;
        return kc_kms_create_key(e->kms, &e->req, NULL, "alias/new", "new", &info, err);
}
static int do_disable(struct env *e, struct kc_err *err) {
        return kc_kms_set_enabled(e->kms, &e->req, "alias/a", false, err);
}
static int do_enable(struct env *e, struct kc_err *err) {
        return kc_kms_set_enabled(e->kms, &e->req, "alias/a", true, err);
}
static int do_rotate(struct env *e, struct kc_err *err) {
        uint32_t v;
        return kc_kms_rotate_key(e->kms, &e->req, "alias/a", &v, err);
}
static int do_schedule(struct env *e, struct kc_err *err) {
        time_t date;
        return kc_kms_schedule_deletion(e->kms, &e->req, "alias/a", 7, &date, err);
}
static int do_cancel(struct env *e, struct kc_err *err) {
        return kc_kms_cancel_deletion(e->kms, &e->req, "alias/a", err);
}
static int prepare_disabled(struct env *e) {
        return do_disable(e, NULL);
}
static int prepare_scheduled(struct env *e) {
        return do_schedule(e, NULL);
}

static const struct change changes[] = {
        { "CreateKey", NULL, do_create },
        { "DisableKey", NULL, do_disable },
        { "EnableKey", prepare_disabled, do_enable },
        { "RotateKey", NULL, do_rotate },
        { "ScheduleKeyDeletion", NULL, do_schedule },
        { "CancelKeyDeletion", prepare_scheduled, do_cancel },
};

struct frozen_change {
        struct env *e;
        const struct change *c;
        int r;
        struct kc_err err;
};

static void frozen_change(void *userdata) {
        struct frozen_change *f = userdata;

        f->r = f->c->apply(f->e, &f->err);
}

/* With the audit log unwritable, every change fails naming the audit log, and the keystore is untouched. */
START_TEST(test_change_without_audit_changes_nothing) {
        const struct change *c = &changes[_i];
        struct frozen_change f = { .c = c };
        _cleanup_free_ char *before = NULL, *after = NULL;
        size_t before_len, after_len, records;
        off_t largest, ignored;
        struct env e;

        env_init(&e);
        create(&e, "alias/a", NULL);
        if (c->prepare)
                ck_assert_int_eq(c->prepare(&e), 0);
        before = keystore_snapshot(e.keystore, &before_len, &largest);
        /* Grow the log past every keystore file: the frozen limit must stop the audit record, not the change. */
        while (file_size(e.audit_log) <= largest) {
                struct kc_key_info info;
                ck_assert_int_eq(kc_kms_describe_key(e.kms, &e.req, "alias/a", &info, NULL), 0);
        }
        free(before);
        before = keystore_snapshot(e.keystore, &before_len, &largest);
        records = count_records(&e);

        f.e = &e;
        with_frozen_audit_log(e.audit_log, 0, frozen_change, &f);

        ck_assert_msg(f.r < 0, "%s returned %d with the audit log frozen", c->operation, f.r);
        ck_assert_msg(strstr(f.err.msg, c->operation) && strstr(f.err.msg, "audit record could not be written"),
                      "message: %s", f.err.msg);
        ck_assert_ptr_null(strchr(f.err.msg, '\n'));
        after = keystore_snapshot(e.keystore, &after_len, &ignored);
        ck_assert_msg(after_len == before_len && memcmp(before, after, before_len) == 0,
                      "%s changed the keystore without an audit record", c->operation);
        ck_assert_uint_eq(count_records(&e), records);
        assert_audit_intact(&e);

        /* Once the log is writable again the same change goes through, written ahead. */
        ck_assert_int_eq(c->apply(&e, &f.err), 0);
        env_done(&e);
}
END_TEST

/* With a working log, a change leaves its intent and its outcome, both naming the key's id. */
START_TEST(test_change_written_ahead) {
        const struct change *c = &changes[_i];
        struct audit_seen seen = {};
        struct kc_key_info a;
        struct kc_err err = {};
        struct env e;
        size_t n;
        int r;

        env_init(&e);
        create(&e, "alias/a", &a);
        if (c->prepare)
                ck_assert_int_eq(c->prepare(&e), 0);
        r = c->apply(&e, &err);
        ck_assert_msg(r == 0, "%s: %s", c->operation, kc_err_msg(&err, r));
        ck_assert_int_eq(kc_audit_foreach(e.audit_log, NULL, collect, &seen), 0);
        n = seen.n;
        ck_assert_uint_ge(n, 2);
        ck_assert_str_eq(seen.ops[n - 2], c->operation);
        ck_assert_str_eq(seen.results[n - 2], "pending");
        ck_assert_str_eq(seen.ops[n - 1], c->operation);
        ck_assert_str_eq(seen.results[n - 1], "ok");
        if (c->apply != do_create) {
                /* Named by alias, recorded by id: the same key in both. */
                ck_assert_str_eq(seen.key_ids[n - 2], a.key_id);
                ck_assert_str_eq(seen.key_ids[n - 1], a.key_id);
        } else
                ck_assert_str_eq(seen.key_ids[n - 2], "");      /* no id before the key exists */
        assert_audit_intact(&e);
        env_done(&e);
}
END_TEST

/* Length of the newest line of the log, newline included. */
static off_t last_line_len(const char *path) {
        _cleanup_free_ char *line = NULL;
        size_t size = 0;
        off_t last = 0;
        ssize_t n;
        FILE *f = fopen(path, "re");

        ck_assert_ptr_nonnull(f);
        while ((n = getline(&line, &size, f)) > 0)
                last = n;
        fclose(f);
        return last;
}

struct frozen_disable {
        struct env *e;
        int r;
        struct kc_err err;
};

static void frozen_disable_b(void *userdata) {
        struct frozen_disable *f = userdata;

        f->r = kc_kms_set_enabled(f->e->kms, &f->e->req, "alias/b", false, &f->err);
}

/*
 * Room for the intent record but not the outcome: the change is made and
 * stands, reported as done (1) with a warning that its outcome record is
 * missing; the log ends with the intent and still verifies.
 */
START_TEST(test_change_outcome_record_missing) {
        struct frozen_disable f = {};
        struct audit_seen seen = {};
        struct kc_key_info a, b, now;
        _cleanup_free_ char *ks = NULL;
        size_t ks_len;
        off_t intent_len, largest;
        struct env e;

        env_init(&e);
        create(&e, "alias/a", &a);
        create(&e, "alias/b", &b);
        ck_assert_uint_eq(strlen(a.key_id), strlen(b.key_id));
        /* The same change on a twin key measures the intent record: same lengths, seq still one digit. */
        ck_assert_int_eq(kc_kms_set_enabled(e.kms, &e.req, "alias/a", false, NULL), 0);
        ck_assert_int_eq(kc_audit_foreach(e.audit_log, NULL, collect, &seen), 0);
        ck_assert_uint_eq(seen.n, 6);
        ck_assert_str_eq(seen.results[4], "pending");
        intent_len = last_line_len(e.audit_log);      /* the outcome: the intent is as long, "ok" vs "pending" aside */
        intent_len += strlen("pending") - strlen("ok");
        ks = keystore_snapshot(e.keystore, &ks_len, &largest);
        ck_assert_int_gt(file_size(e.audit_log), largest);

        f.e = &e;
        with_frozen_audit_log(e.audit_log, intent_len, frozen_disable_b, &f);

        ck_assert_msg(f.r == 1, "disable with no room for its outcome returned %d: %s", f.r, f.err.msg);
        ck_assert_msg(strstr(f.err.msg, "DisableKey done") && strstr(f.err.msg, "outcome record"), "message: %s", f.err.msg);
        ck_assert_int_eq(kc_kms_describe_key(e.kms, &e.req, "alias/b", &now, NULL), 0);
        ck_assert_int_eq(now.state, KC_KEY_DISABLED);
        memset(&seen, 0, sizeof(seen));
        ck_assert_int_eq(kc_audit_foreach(e.audit_log, NULL, collect, &seen), 0);
        ck_assert_uint_eq(seen.n, 8);                  /* ..., intent for b, the describe just now */
        ck_assert_str_eq(seen.ops[6], "DisableKey");
        ck_assert_str_eq(seen.results[6], "pending");
        ck_assert_str_eq(seen.key_ids[6], b.key_id);
        ck_assert_str_eq(seen.ops[7], "DescribeKey");
        assert_audit_intact(&e);
        env_done(&e);
}
END_TEST

struct frozen_describe {
        struct env *e;
        int r;
        struct kc_err err;
};

static void frozen_describe_a(void *userdata) {
        struct frozen_describe *f = userdata;
        struct kc_key_info info;

        f->r = kc_kms_describe_key(f->e->kms, &f->e->req, "alias/a", &info, &f->err);
}

/*
 * A key whose deletion window has passed is destroyed at its next use, a
 * change nobody asked for at that moment: it is written ahead all the same
 * (DeleteKey, as AWS records it), and deferred while its intent record
 * cannot be written.
 */
START_TEST(test_destruction_written_ahead) {
        struct frozen_describe f = {};
        struct audit_seen seen = {};
        struct kc_key_info a, now;
        _cleanup_free_ char *before = NULL, *after = NULL;
        size_t before_len, after_len, records, n;
        off_t largest;
        time_t date = 0;
        char detail[64];
        struct env e;

        env_init(&e);
        create(&e, "alias/a", &a);
        ck_assert_int_eq(kc_kms_schedule_deletion(e.kms, &e.req, "alias/a", 7, &date, NULL), 0);
        fake_now = date;
        before = keystore_snapshot(e.keystore, &before_len, &largest);
        records = count_records(&e);

        f.e = &e;
        with_frozen_audit_log(e.audit_log, 0, frozen_describe_a, &f);
        ck_assert_int_lt(f.r, 0);
        after = keystore_snapshot(e.keystore, &after_len, &largest);
        ck_assert_msg(after_len == before_len && memcmp(before, after, before_len) == 0,
                      "the key was destroyed without an audit record");
        ck_assert_uint_eq(count_records(&e), records);

        ck_assert_int_eq(kc_kms_describe_key(e.kms, &e.req, a.key_id, &now, NULL), 0);
        ck_assert_int_eq(now.state, KC_KEY_DESTROYED);
        ck_assert_int_eq(kc_audit_foreach(e.audit_log, NULL, collect, &seen), 0);
        n = seen.n;
        ck_assert_uint_eq(n, records + 3);
        snprintf(detail, sizeof(detail), "deletion date %lld passed", (long long) date);
        for (size_t i = n - 3; i < n - 1; i++) {
                ck_assert_str_eq(seen.ops[i], "DeleteKey");
                ck_assert_str_eq(seen.key_ids[i], a.key_id);
                ck_assert_str_eq(seen.details[i], detail);
        }
        ck_assert_str_eq(seen.results[n - 3], "pending");
        ck_assert_str_eq(seen.results[n - 2], "ok");
        ck_assert_str_eq(seen.ops[n - 1], "DescribeKey");
        assert_audit_intact(&e);
        env_done(&e);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("kms");
        TCase *tc = tcase_create("core");
        tcase_add_checked_fixture(tc, setup, NULL);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_resolve);
        tcase_add_test(tc, test_peek_key_id);
        tcase_add_test(tc, test_audit_evidence);
        tcase_add_test(tc, test_open_refuses_lost_chain);
        tcase_add_test(tc, test_generate_decrypt_roundtrip);
        tcase_add_test(tc, test_rotate_old_blob_still_decrypts);
        tcase_add_test(tc, test_re_encrypt_other_key_and_context);
        tcase_add_test(tc, test_disable_enable);
        tcase_add_test(tc, test_describe_once_a_round);
        tcase_add_test(tc, test_deletion_lifecycle);
        tcase_add_test(tc, test_refusals);
        tcase_add_test(tc, test_refusal_without_key_names_blob_key);
        tcase_add_test(tc, test_every_call_audited);
        tcase_add_test(tc, test_audit_failure_fails_closed);
        tcase_add_loop_test(tc, test_change_without_audit_changes_nothing, 0, ARRAY_SIZE(changes));
        tcase_add_loop_test(tc, test_change_written_ahead, 0, ARRAY_SIZE(changes));
        tcase_add_test(tc, test_change_outcome_record_missing);
        tcase_add_test(tc, test_destruction_written_ahead);
        suite_add_tcase(s, tc);
        return s;
}
