/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The revocation check (agent/daemon/revoke.c) of a kept or suspended
 * volume, against a real local KMS in a temporary keystore and a
 * file-backed LUKS2 volume.  The check asks device-mapper about the
 * volume's mapping and acts on it; the libdm calls of dmsetup-helpers/dm.c
 * are wrapped at link time (-Wl,--wrap, see agent/daemon/Makemodule.am) by
 * a device-mapper that knows one mapping, the volume's: it suspends and
 * resumes it, and takes dm-crypt's "key wipe" and "key set" messages, so
 * no kernel device-mapper is needed.  The resume's key goes through the
 * real kernel keyring.
 */
#include <errno.h>
#include <libdevmapper.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <json-c/json.h>

#include "agent/audit.h"
#include "agent/daemon/revoke.h"
#include "agent/kms.h"
#include "agent/volume.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "tests/unit/check-main.h"
#include "tests/unit/luks-util.h"

/* ---- the device-mapper dm.c sees: one mapping, which can be suspended and lose its key ---- */

static struct {
        char *dir;                  /* dm_dir(): its "control" is /dev/null, a character device */
        const char *name;
        char *uuid;
        bool suspended, wiped;
        bool wipe_fails;            /* "key wipe" wipes the key, yet fails (dm-crypt's crypt_wipe_key() can) */
        bool wipe_refused;          /* "key wipe" fails and leaves the key in place */
        char device[32];            /* major:minor it reads from: the image's, 0:0 for a regular file */
        char table[256];            /* its dm-crypt parameters, as the table query shows them */
        char last_message[256];     /* the last message it took */
        unsigned suspends, resumes;
} dm;

struct dm_task {
        int type;
        char name[128];
        char message[256];
};

/* What -Wl,--wrap=SYMBOL sends dm.c's calls of SYMBOL to. */
const char *__wrap_dm_dir(void);
int __wrap_dm_driver_version(char *version, size_t size);
int __wrap_dm_udev_get_sync_support(void);
struct dm_task *__wrap_dm_task_create(int type);
void __wrap_dm_task_destroy(struct dm_task *t);
int __wrap_dm_task_set_name(struct dm_task *t, const char *name);
int __wrap_dm_task_secure_data(struct dm_task *t);
int __wrap_dm_task_no_flush(struct dm_task *t);
int __wrap_dm_task_skip_lockfs(struct dm_task *t);
int __wrap_dm_task_set_sector(struct dm_task *t, uint64_t sector);
int __wrap_dm_task_set_message(struct dm_task *t, const char *message);
void __wrap_dm_task_update_nodes(void);
int __wrap_dm_task_run(struct dm_task *t);
int __wrap_dm_task_get_errno(struct dm_task *t);
int __wrap_dm_task_get_info(struct dm_task *t, struct dm_info *info);
const char *__wrap_dm_task_get_uuid(const struct dm_task *t);
void *__wrap_dm_get_next_target(struct dm_task *t, void *next, uint64_t *start, uint64_t *length,
                                char **target_type, char **params);

const char *__wrap_dm_dir(void) {
        return dm.dir;
}

int __wrap_dm_driver_version(char *version, size_t size) {
        snprintf(version, size, "4.48.0-test");
        return 1;
}

int __wrap_dm_udev_get_sync_support(void) {
        return 0;
}

struct dm_task *__wrap_dm_task_create(int type) {
        struct dm_task *t = calloc(1, sizeof(*t));

        if (t)
                t->type = type;
        return t;
}

void __wrap_dm_task_destroy(struct dm_task *t) {
        free(t);
}

int __wrap_dm_task_set_name(struct dm_task *t, const char *name) {
        snprintf(t->name, sizeof(t->name), "%s", name);
        return 1;
}

int __wrap_dm_task_secure_data(struct dm_task *t) {
        return 1;
}

int __wrap_dm_task_no_flush(struct dm_task *t) {
        return 1;
}

int __wrap_dm_task_skip_lockfs(struct dm_task *t) {
        return 1;
}

int __wrap_dm_task_set_sector(struct dm_task *t, uint64_t sector) {
        return sector == 0;
}

int __wrap_dm_task_set_message(struct dm_task *t, const char *message) {
        snprintf(t->message, sizeof(t->message), "%s", message);
        return 1;
}

void __wrap_dm_task_update_nodes(void) {
}

/* The table dm-crypt shows: the keyring reference, or zeros once the key is wiped. */
static void dm_set_table(void) {
        char zeros[129];

        memset(zeros, '0', 128);
        zeros[128] = '\0';
        snprintf(dm.table, sizeof(dm.table), "aes-xts-plain64 %s 0 %s 32768",
                 dm.wiped ? zeros : ":64:logon:kmscrypt:test", dm.device);
}

/*
 * Status and table queries, suspend, resume and dm-crypt's key messages, on the one
 * mapping, as the kernel takes them: a key is set or wiped only while the
 * mapping is suspended, and a mapping without its key does not resume.
 * Anything else fails, as a test must not reach it.
 */
int __wrap_dm_task_run(struct dm_task *t) {
        bool ours = dm.name && strcmp(t->name, dm.name) == 0;

        switch (t->type) {
        case DM_DEVICE_STATUS:
        case DM_DEVICE_TABLE:
                return 1;
        case DM_DEVICE_SUSPEND:
                dm.suspended = dm.suspended || ours;
                dm.suspends += ours;
                return ours;
        case DM_DEVICE_RESUME:
                if (!ours || dm.wiped)
                        return 0;
                dm.suspended = false;
                dm.resumes++;
                return 1;
        case DM_DEVICE_TARGET_MSG:
                if (!ours || !dm.suspended)
                        return 0;
                snprintf(dm.last_message, sizeof(dm.last_message), "%s", t->message);
                if (strcmp(t->message, "key wipe") == 0 && dm.wipe_refused)
                        return 0;
                if (strcmp(t->message, "key wipe") == 0 && dm.wipe_fails) {
                        dm.wiped = true;
                        dm_set_table();
                        return 0;
                } else if (strcmp(t->message, "key wipe") == 0)
                        dm.wiped = true;
                else if (strncmp(t->message, "key set ", 8) == 0)
                        dm.wiped = false;
                else
                        return 0;
                dm_set_table();
                return 1;
        default:
                return 0;
        }
}

int __wrap_dm_task_get_errno(struct dm_task *t) {
        return EINVAL;
}

int __wrap_dm_task_get_info(struct dm_task *t, struct dm_info *info) {
        *info = (struct dm_info) { .exists = dm.name && strcmp(t->name, dm.name) == 0, .target_count = 1 };
        info->suspended = info->exists && dm.suspended;
        return 1;
}

const char *__wrap_dm_task_get_uuid(const struct dm_task *t) {
        return dm.uuid;
}

void *__wrap_dm_get_next_target(struct dm_task *t, void *next, uint64_t *start, uint64_t *length,
                                char **target_type, char **params) {
        *start = 0;
        *length = 8192;
        *target_type = (char *) "crypt";
        *params = dm.table;
        return NULL;
}

/* ---- one keystore, one CMK, one volume attached as "kept" under revoke=keep ---- */

static struct {
        char *dir, *keystore, *audit_log, *moved;
        struct kc_kms_config cfg;
        struct kc_kms *kms;
        struct kc_caller caller;
        struct kc_context *ctx;
        struct kc_volume_conf conf;
} f;

static struct kc_kms_request req(void) {
        return (struct kc_kms_request) { .caller = &f.caller };
}

static void setup(void) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        struct kc_luks_segment seg;
        struct kc_volume_format_params p;
        struct kc_volume_result res;
        struct kc_kms_request rq = req();
        struct kc_key_info key;
        struct kc_err err = {};
        char *img, *control;
        struct stat st;
        int r;

        memset(&f, 0, sizeof(f));
        f.dir = kc_test_tmpdir();
        ck_assert_int_ge(asprintf(&f.audit_log, "%s/audit.log", f.dir), 0);
        ck_assert_int_ge(asprintf(&f.moved, "%s/audit.log.moved", f.dir), 0);
        ck_assert_int_ge(asprintf(&f.keystore, "%s/keystore", f.dir), 0);
        f.cfg = (struct kc_kms_config) { .keystore_dir = f.keystore, .audit_log = f.audit_log };
        ck_assert_int_eq(kc_caller_self(&f.caller), 0);
        ck_assert_int_eq(kc_kms_open(&f.cfg, &f.kms, &err), 0);
        ck_assert_int_eq(kc_kms_create_key(f.kms, &rq, NULL, "alias/k", "", &key, &err), 0);

        img = kc_test_image(f.dir, "kept.img", KC_TEST_IMAGE_SIZE);
        ck_assert_int_eq(kc_context_parse_kv("db-id=db-1,volume-id=kept", &f.ctx, &err), 0);
        p = (struct kc_volume_format_params) { .ref = { .device = img }, .key_ref = "alias/k", .context = f.ctx };
        r = kc_volume_format(f.kms, &f.caller, &p, &res, &err);
        ck_assert_msg(r == 0, "format: %s", kc_err_msg(&err, r));
        f.conf = (struct kc_volume_conf) { .name = (char *) "kept", .device = img, .context = f.ctx,
                                           .revoke = KC_REVOKE_KEEP };

        ck_assert_int_ge(asprintf(&dm.dir, "%s/mapper", f.dir), 0);
        ck_assert_int_eq(mkdir(dm.dir, 0700), 0);
        ck_assert_int_ge(asprintf(&control, "%s/control", dm.dir), 0);
        ck_assert_int_eq(symlink("/dev/null", control), 0);
        free(control);
        ck_assert_int_eq(kc_luks_open(img, NULL, &l, &err), 0);
        ck_assert_int_eq(kc_luks_segment(l, &seg), 0);
        dm.name = f.conf.name;
        ck_assert_int_eq(kc_dm_uuid_luks2(seg.uuid, dm.name, &dm.uuid), 0);
        ck_assert_int_eq(stat(img, &st), 0);
        snprintf(dm.device, sizeof(dm.device), "%u:%u", major(st.st_rdev), minor(st.st_rdev));
        dm_set_table();
}

static void teardown(void) {
        kc_revoke_forget(f.dir, f.conf.name);   /* the kernel's copy of a mark outlives the folder */
        kc_kms_close(f.kms);
        kc_context_free(f.ctx);
        free(f.conf.device);
        free(f.keystore);
        free(f.audit_log);
        free(f.moved);
        free(f.dir);
        free(dm.dir);
        free(dm.uuid);
        memset(&dm, 0, sizeof(dm));
}

static void set_enabled(bool enabled) {
        struct kc_kms_request rq = req();
        struct kc_err err = {};

        ck_assert_int_eq(kc_kms_set_enabled(f.kms, &rq, "alias/k", enabled, &err), 0);
}

static int count_op(struct json_object *record, void *userdata) {
        const char **want = userdata;
        struct json_object *op;

        if (json_object_object_get_ex(record, "operation", &op) && strcmp(json_object_get_string(op), want[0]) == 0)
                (*(unsigned *) want[1])++;
        return 0;
}

/* Records of operation op in the audit log at path. */
static unsigned records(const char *path, const char *op) {
        unsigned n = 0;
        const char *want[] = { op, (const char *) &n };

        ck_assert_int_eq(kc_audit_foreach(path, NULL, count_op, want), 0);
        return n;
}

static int keep_last(struct json_object *record, void *userdata) {
        void **want = userdata;
        struct json_object *op;

        if (json_object_object_get_ex(record, "operation", &op) && strcmp(json_object_get_string(op), want[0]) == 0) {
                json_object_put(want[1]);
                want[1] = json_object_get(record);
        }
        return 0;
}

/* The string field of the last record of operation op in the audit log ("" for null); caller frees. */
static char *last_field(const char *op, const char *field) {
        void *want[] = { (void *) op, NULL };
        struct json_object *v;
        char *s;

        ck_assert_int_eq(kc_audit_foreach(f.audit_log, NULL, keep_last, want), 0);
        ck_assert_msg(want[1], "no %s record", op);
        ck_assert(json_object_object_get_ex(want[1], field, &v));
        ck_assert_ptr_nonnull(s = strdup(json_object_get_string(v) ?: ""));
        json_object_put(want[1]);
        return s;
}

static int check_kept(unsigned prior, struct kc_revoke_outcome *out) {
        struct kc_err err = {};
        int r = kc_revoke_check(f.kms, &f.cfg, f.dir, &f.caller, &f.conf, prior, NULL, NULL, out, &err);

        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(out->action, KC_REVOKE_KEPT);
        ck_assert_ptr_nonnull(strstr(out->reason, "kept running (revoke=keep)"));
        return r;
}

START_TEST(keep_record_tried_again) {
        struct kc_revoke_outcome out;
        struct kc_audit_verify v;
        _cleanup_free_ char *head = NULL;
        unsigned described;

        set_enabled(false);
        /*
         * The KMS layer holds the log open since kc_kms_open(): the check's
         * DescribeKey is written there, while the KeepVolume record, which
         * revoke.c writes through the path, finds a folder in its place.
         */
        ck_assert_int_eq(rename(f.audit_log, f.moved), 0);
        ck_assert_int_eq(mkdir(f.audit_log, 0700), 0);
        described = records(f.moved, "DescribeKey");
        check_kept(0, &out);
        ck_assert_msg(!out.audited, "a KeepVolume record that could not be written counts as written");
        ck_assert_uint_eq(records(f.moved, "DescribeKey"), described + 1);
        ck_assert_uint_eq(records(f.moved, "KeepVolume"), 0);
        ck_assert_int_eq(rmdir(f.audit_log), 0);
        ck_assert_int_eq(rename(f.moved, f.audit_log), 0);

        /* The agent's next check: not on record yet, so prior has no KC_REVOKE_PRIOR_KEPT. */
        check_kept(0, &out);
        ck_assert(out.audited);
        ck_assert_uint_eq(records(f.audit_log, "KeepVolume"), 1);

        /* On record: later checks write no more. */
        check_kept(KC_REVOKE_PRIOR_KEPT, &out);
        ck_assert(out.audited);
        ck_assert_uint_eq(records(f.audit_log, "KeepVolume"), 1);
        /* The refused write left nothing half-written: the chain verifies. */
        ck_assert_int_ge(asprintf(&head, "%s/audit.head", f.keystore), 0);
        ck_assert_int_eq(kc_audit_verify(f.audit_log, head, NULL, &v), 0);
}
END_TEST

START_TEST(enabled_key_nothing_kept) {
        struct kc_revoke_outcome out;
        struct kc_err err = {};

        ck_assert_int_eq(kc_revoke_check(f.kms, &f.cfg, f.dir, &f.caller, &f.conf, 0, NULL, NULL, &out, &err), 0);
        ck_assert_int_eq(out.action, KC_REVOKE_NONE);
        ck_assert_uint_eq(records(f.audit_log, "KeepVolume"), 0);
        ck_assert_uint_ge(records(f.audit_log, "DescribeKey"), 1);
}
END_TEST

/* A check of the volume as one of a pass's (keys: the pass's lookups). */
static int check_in_pass(struct kc_key_lookups *keys, struct kc_revoke_outcome *out, struct kc_err *err) {
        *out = (struct kc_revoke_outcome) {};
        *err = (struct kc_err) {};
        return kc_revoke_check(f.kms, &f.cfg, f.dir, &f.caller, &f.conf, 0, NULL, keys, out, err);
}

/*
 * Checks that share a pass's lookups ask the KMS about the CMK once: the
 * volumes of a host mostly share one.  The record is the pass's: no
 * volume, the detail says why.  Each check still acts on its own volume,
 * and the next pass asks again.
 */
START_TEST(pass_describes_each_key_once) {
        _cleanup_(kc_key_lookups_freep) struct kc_key_lookups *pass = kc_key_lookups_new();
        _cleanup_(kc_key_lookups_freep) struct kc_key_lookups *next = kc_key_lookups_new();
        _cleanup_free_ char *volume = NULL, *detail = NULL;
        struct kc_revoke_outcome out;
        struct kc_err err = {};
        unsigned described;

        ck_assert_ptr_nonnull(pass);
        ck_assert_ptr_nonnull(next);
        set_enabled(false);
        described = records(f.audit_log, "DescribeKey");
        for (int i = 0; i < 3; i++) {
                ck_assert_int_eq(check_in_pass(pass, &out, &err), 0);
                ck_assert_int_eq(out.action, KC_REVOKE_KEPT);
        }
        ck_assert_uint_eq(records(f.audit_log, "DescribeKey"), described + 1);
        volume = last_field("DescribeKey", "volume");
        detail = last_field("DescribeKey", "detail");
        ck_assert_str_eq(volume, "");
        ck_assert_str_eq(detail, KC_REVOKE_LOOKUP_DETAIL);

        /* The next pass sees the key enabled again. */
        set_enabled(true);
        ck_assert_int_eq(check_in_pass(next, &out, &err), 0);
        ck_assert_int_eq(out.action, KC_REVOKE_NONE);
        ck_assert_uint_eq(records(f.audit_log, "DescribeKey"), described + 2);
}
END_TEST

/*
 * A lookup that failed fails the pass's other checks of that CMK with the
 * same error, unasked: here a KMS layer whose keystore is not there (not
 * mounted yet), writing to the same audit chain.
 */
START_TEST(pass_shares_a_failed_lookup) {
        _cleanup_(kc_key_lookups_freep) struct kc_key_lookups *pass = kc_key_lookups_new();
        _cleanup_free_ char *none = NULL, *head = NULL;
        struct kc_kms_config cfg = f.cfg;
        struct kc_revoke_outcome out;
        struct kc_err first = {}, err = {};
        struct kc_kms *kms;
        unsigned described;

        ck_assert_ptr_nonnull(pass);
        ck_assert_int_ge(asprintf(&none, "%s/not-mounted", f.dir), 0);
        ck_assert_int_ge(asprintf(&head, "%s/audit.head", f.keystore), 0);
        cfg.keystore_dir = none;
        cfg.audit_head = head;
        ck_assert_int_eq(kc_kms_open(&cfg, &kms, &err), 0);
        described = records(f.audit_log, "DescribeKey");
        ck_assert_int_eq(kc_revoke_check(kms, &cfg, f.dir, &f.caller, &f.conf, 0, NULL, pass, &out, &first), -ENOENT);
        ck_assert_ptr_nonnull(strstr(first.msg, "does not exist"));
        ck_assert_int_eq(kc_revoke_check(kms, &cfg, f.dir, &f.caller, &f.conf, 0, NULL, pass, &out, &err), -ENOENT);
        ck_assert_str_eq(err.msg, first.msg);
        ck_assert_uint_eq(records(f.audit_log, "DescribeKey"), described + 1);
        kc_kms_close(kms);
}
END_TEST

/* ---- revoke=suspend ---- */

static void setup_suspend(void) {
        setup();
        f.conf.revoke = KC_REVOKE_SUSPEND;
}

/* A check told that a refused resume is on record for this reason (NULL: none). */
static int check_refused(unsigned prior, const char *refused, struct kc_revoke_outcome *out, struct kc_err *err) {
        *out = (struct kc_revoke_outcome) {};
        *err = (struct kc_err) {};
        return kc_revoke_check(f.kms, &f.cfg, f.dir, &f.caller, &f.conf, prior, refused, NULL, out, err);
}

static int check(unsigned prior, struct kc_revoke_outcome *out, struct kc_err *err) {
        return check_refused(prior, NULL, out, err);
}

/* Whether the agent's mark of its suspension of the volume is there. */
static bool marked(void) {
        _cleanup_free_ char *path = NULL;

        ck_assert_int_ge(asprintf(&path, "%s/suspended/%s", f.dir, f.conf.name), 0);
        return access(path, F_OK) == 0;
}

/* Suspended by a check under the disabled key, then the key enabled again. */
static void suspend_and_enable(void) {
        struct kc_revoke_outcome out;
        struct kc_err err = {};

        set_enabled(false);
        ck_assert_int_eq(check(0, &out, &err), 0);
        ck_assert_int_eq(out.action, KC_REVOKE_SUSPENDED);
        set_enabled(true);
}

/* The cycle as the agent runs it: suspended and wiped when disabled, resumed by a fresh unwrap when enabled. */
START_TEST(suspend_then_resume) {
        struct kc_revoke_outcome out;
        struct kc_err err = {};
        int r;

        set_enabled(false);
        r = check(0, &out, &err);
        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(out.action, KC_REVOKE_SUSPENDED);
        ck_assert(dm.suspended && dm.wiped);
        ck_assert(marked() && kc_revoke_recall(f.dir, f.conf.name));
        ck_assert_uint_eq(records(f.audit_log, "SuspendVolume"), 1);

        /* Still disabled: nothing more done, nothing more written. */
        r = check(KC_REVOKE_PRIOR_SUSPENDED, &out, &err);
        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(out.action, KC_REVOKE_STILL);
        ck_assert_uint_eq(dm.suspends, 1);
        ck_assert_uint_eq(records(f.audit_log, "SuspendVolume"), 1);

        set_enabled(true);
        r = check(KC_REVOKE_PRIOR_SUSPENDED, &out, &err);
        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(out.action, KC_REVOKE_RESUMED);
        ck_assert(!dm.suspended && !dm.wiped);
        ck_assert_msg(strncmp(dm.last_message, "key set :64:logon:kmscrypt:", 27) == 0, "%s", dm.last_message);
        ck_assert(!marked());
        ck_assert_uint_eq(records(f.audit_log, "ResumeVolume"), 1);
}
END_TEST

/*
 * The volumes file changed its policy to keep (a reload) while the agent
 * had it suspended under a key still disabled: it stays suspended, and
 * is said to be so, not "kept running", nor audited as KeepVolume.
 */
START_TEST(keep_while_suspended) {
        struct kc_revoke_outcome out;
        struct kc_err err = {};
        int r;

        set_enabled(false);
        ck_assert_int_eq(check(0, &out, &err), 0);
        ck_assert_int_eq(out.action, KC_REVOKE_SUSPENDED);

        f.conf.revoke = KC_REVOKE_KEEP;
        r = check(KC_REVOKE_PRIOR_SUSPENDED, &out, &err);
        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(out.action, KC_REVOKE_STILL);
        ck_assert_msg(strstr(out.reason, "suspended, key wiped"), "%s", out.reason);
        ck_assert_uint_eq(records(f.audit_log, "KeepVolume"), 0);
        ck_assert(dm.suspended && dm.wiped);

        /* Enabled again: resumed as the suspend policy would have, then kept from then on. */
        set_enabled(true);
        ck_assert_int_eq(check(KC_REVOKE_PRIOR_SUSPENDED, &out, &err), 0);
        ck_assert_int_eq(out.action, KC_REVOKE_RESUMED);
        set_enabled(false);
        ck_assert_int_eq(check(0, &out, &err), 0);
        ck_assert_int_eq(out.action, KC_REVOKE_KEPT);
        ck_assert(!dm.suspended);
}
END_TEST

/*
 * The agent's suspension ended without it: resumed by another tool with
 * the key (cryptsetup luksResume and the recovery passphrase), or the
 * mapping detached and made anew.  Once the key is enabled, there is
 * nothing to resume: no unwrap, no "key set" into a running mapping (which
 * dm-crypt refuses, at every check), no ResumeVolume record; the mark goes.
 */
START_TEST(suspension_ended_elsewhere) {
        struct kc_revoke_outcome out;
        struct kc_err err = {};
        unsigned decrypts;
        int r;

        suspend_and_enable();
        dm.suspended = dm.wiped = false;
        dm_set_table();
        decrypts = records(f.audit_log, "Decrypt");
        r = check(KC_REVOKE_PRIOR_SUSPENDED, &out, &err);
        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(out.action, KC_REVOKE_NONE);
        ck_assert_str_eq(dm.last_message, "key wipe");
        ck_assert_uint_eq(records(f.audit_log, "ResumeVolume"), 0);
        ck_assert_uint_eq(records(f.audit_log, "Decrypt"), decrypts);
        ck_assert(!marked());
}
END_TEST

/*
 * The mapping reads from another device than the one its entry names now:
 * a copy of the volume (the same LUKS UUID, so the same dm UUID), which
 * UUID= may resolve to, has a header and, once its data key was replaced,
 * a key of its own.  That key never goes into this mapping: it stays
 * suspended, no unwrap, no resume.
 */
START_TEST(resume_only_from_its_own_device) {
        struct kc_revoke_outcome out;
        struct kc_err err = {};
        unsigned decrypts;
        int r;

        suspend_and_enable();
        snprintf(dm.device, sizeof(dm.device), "7:0");
        dm_set_table();
        decrypts = records(f.audit_log, "Decrypt");
        r = check(KC_REVOKE_PRIOR_SUSPENDED, &out, &err);
        ck_assert_int_eq(r, -EPERM);
        ck_assert_msg(strstr(err.msg, "reads from 7:0"), "%s", err.msg);
        ck_assert(dm.suspended && dm.wiped);
        ck_assert_str_eq(dm.last_message, "key wipe");
        ck_assert_uint_eq(records(f.audit_log, "Decrypt"), decrypts);
        ck_assert_uint_eq(records(f.audit_log, "ResumeVolume"), 0);
}
END_TEST

/* A check of the suspended volume that the policy refuses to resume, told refused; its outcome's reason. */
static void check_refusal(const char *refused, struct kc_revoke_outcome *out) {
        struct kc_err err = {};
        int r = check_refused(KC_REVOKE_PRIOR_SUSPENDED, refused, out, &err);

        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(out->action, KC_REVOKE_REFUSED);
        ck_assert(out->audited);
        ck_assert_msg(strstr(out->reason, "not resumed, kept stays suspended: "), "%s", out->reason);
        ck_assert(dm.suspended && dm.wiped);
        ck_assert_uint_eq(dm.resumes, 0);
        ck_assert(marked());
}

/*
 * The key is enabled again, but the volume no longer is what this host
 * expects: its entry names another context (a reload), or allows only
 * another KMS provider, or its header was rebound meanwhile.  An attach
 * would refuse it; so does the resume, before any unwrap, and the volume
 * stays suspended until the entry fits again.  The refusal is audited once
 * for each reason, not at every pass: a check told that this one is on
 * record writes nothing more.
 */
START_TEST(resume_refused_by_policy) {
        _cleanup_context_ struct kc_context *other = NULL;
        char *aws_only[] = { (char *) "aws", NULL };
        struct kc_context *expected = f.ctx;
        struct kc_revoke_outcome out;
        struct kc_err err = {};
        char refused[sizeof(out.reason)];
        unsigned decrypts;
        int r;

        suspend_and_enable();
        decrypts = records(f.audit_log, "Decrypt");
        ck_assert_int_eq(kc_context_parse_kv("db-id=db-2,volume-id=kept", &other, &err), 0);
        f.conf.context = other;
        check_refusal(NULL, &out);
        ck_assert_msg(strstr(out.reason, "expected {\"db-id\":\"db-2\""), "%s", out.reason);
        ck_assert_uint_eq(records(f.audit_log, "Decrypt"), decrypts);
        ck_assert_uint_eq(records(f.audit_log, "ResumeVolume"), 1);   /* the refusal */

        /* The next passes: the same refusal, on record already. */
        snprintf(refused, sizeof(refused), "%s", out.reason);
        check_refusal(refused, &out);
        check_refusal(refused, &out);
        ck_assert_str_eq(out.reason, refused);
        ck_assert_uint_eq(records(f.audit_log, "ResumeVolume"), 1);

        /* Another reason is news: on record too. */
        f.conf.context = expected;
        f.conf.kms = aws_only;
        check_refusal(refused, &out);
        ck_assert_msg(strstr(out.reason, "kms=aws"), "%s", out.reason);
        ck_assert_uint_eq(records(f.audit_log, "Decrypt"), decrypts);
        ck_assert_uint_eq(records(f.audit_log, "ResumeVolume"), 2);

        /* The first reason back (the entry changed back): on record again, as the refusal that holds now. */
        f.conf.context = other;
        f.conf.kms = NULL;
        snprintf(refused, sizeof(refused), "%s", out.reason);
        check_refusal(refused, &out);
        ck_assert_msg(strstr(out.reason, "expected {\"db-id\":\"db-2\""), "%s", out.reason);
        ck_assert_uint_eq(records(f.audit_log, "ResumeVolume"), 3);

        /* The entry fits again: resumed at the next check. */
        f.conf.context = expected;
        r = check_refused(KC_REVOKE_PRIOR_SUSPENDED, out.reason, &out, &err);
        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(out.action, KC_REVOKE_RESUMED);
        ck_assert(!dm.suspended && !dm.wiped);
}
END_TEST

/*
 * Suspended with its key wiped by another tool (cryptsetup luksSuspend),
 * not by the agent: whatever its CMK's state, there is no key to wipe and
 * none of the agent's to give back.  No suspend, no mark (which would make
 * the suspension the agent's, resumed once the key is enabled), no unwrap,
 * no resume, no record; once that tool resumed it, the policy applies again.
 */
START_TEST(suspended_by_another_tool) {
        struct kc_revoke_outcome out;
        struct kc_err err = {};
        unsigned decrypts;
        int r;

        dm.suspended = dm.wiped = true;
        dm_set_table();
        decrypts = records(f.audit_log, "Decrypt");
        for (unsigned i = 0; i < 3; i++) {
                set_enabled(i == 1);
                r = check(0, &out, &err);
                ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
                ck_assert_int_eq(out.action, KC_REVOKE_FOREIGN);
                ck_assert(!out.recalled);
                ck_assert_msg(strstr(out.reason, "not by this agent"), "%s", out.reason);
        }
        ck_assert(dm.suspended && dm.wiped);
        ck_assert_uint_eq(dm.suspends + dm.resumes, 0);
        ck_assert(!marked());
        ck_assert_uint_eq(records(f.audit_log, "Decrypt"), decrypts);
        ck_assert_uint_eq(records(f.audit_log, "SuspendVolume") + records(f.audit_log, "ResumeVolume"), 0);

        dm.suspended = dm.wiped = false;
        dm_set_table();
        ck_assert_int_eq(check(0, &out, &err), 0);
        ck_assert_int_eq(out.action, KC_REVOKE_SUSPENDED);
        ck_assert(marked());
}
END_TEST

/*
 * Suspended by another tool with its key in (dmsetup suspend, a snapshot
 * tool) when the CMK is disabled: revoke=suspend wipes the key all the
 * same, and its mark says the mapping was found suspended.  When the CMK is
 * enabled again the key goes back but the mapping stays suspended, for that
 * tool to resume: also for an agent that restarted in between (prior 0).
 */
START_TEST(suspended_with_its_key_by_another_tool) {
        _cleanup_free_ char *detail = NULL, *resumed = NULL;
        struct kc_revoke_outcome out;
        struct kc_err err = {};
        int r;

        dm.suspended = true;
        set_enabled(false);
        r = check(0, &out, &err);
        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(out.action, KC_REVOKE_SUSPENDED);
        ck_assert_msg(strstr(out.reason, "suspended already, by another tool"), "%s", out.reason);
        ck_assert_str_eq(dm.last_message, "key wipe");
        ck_assert(dm.suspended && dm.wiped && marked());
        detail = last_field("SuspendVolume", "detail");
        ck_assert_msg(strstr(detail, "suspended already, by another tool"), "%s", detail);

        r = check(0, &out, &err);
        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(out.action, KC_REVOKE_STILL);
        ck_assert(out.recalled);
        ck_assert_msg(strstr(out.reason, "suspended already, by another tool"), "%s", out.reason);

        set_enabled(true);
        r = check(0, &out, &err);
        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(out.action, KC_REVOKE_RESUMED);
        ck_assert_msg(strstr(out.reason, "key given back, left suspended"), "%s", out.reason);
        ck_assert_msg(strncmp(dm.last_message, "key set :64:logon:kmscrypt:", 27) == 0, "%s", dm.last_message);
        ck_assert(dm.suspended && !dm.wiped && !marked());
        ck_assert_uint_eq(dm.resumes, 0);
        resumed = last_field("ResumeVolume", "detail");
        ck_assert_msg(strstr(resumed, "not resumed"), "%s", resumed);

        /* The key in, the suspension that tool's: nothing more to do. */
        r = check(0, &out, &err);
        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(out.action, KC_REVOKE_NONE);
        ck_assert_uint_eq(dm.resumes, 0);
}
END_TEST

/*
 * The agent's own suspend reports failure, yet leaves the mapping
 * suspended with its key wiped (dm-crypt's "key wipe" can fail after it
 * cleared the key): the suspension took, and the check says so at once
 * (KC_REVOKE_SUSPENDED, the error in its reason and in the record), not
 * a failure, which would have the manager (and kmscrypt status) show the
 * volume running until the next pass.  A check whose prior does not call
 * it the agent's (a manager that missed it) does not call it another
 * tool's ("not by this agent"): it is the agent's by its mark, as an agent
 * started later would find too (recalled), and it is resumed once the key
 * is enabled.
 */
START_TEST(own_suspension_whose_wipe_failed) {
        _cleanup_free_ char *result = NULL, *detail = NULL;
        struct kc_revoke_outcome out;
        struct kc_err err = {};
        int r;

        set_enabled(false);
        dm.wipe_fails = true;
        r = check(0, &out, &err);
        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(out.action, KC_REVOKE_SUSPENDED);
        ck_assert_msg(strstr(out.reason, "suspended, key wiped; its key wipe reported failure (Invalid argument), "
                             "yet the key reads wiped"), "%s", out.reason);
        ck_assert_int_eq(out.mark_error, 0);
        ck_assert(dm.suspended && dm.wiped && marked());
        ck_assert_uint_eq(records(f.audit_log, "SuspendVolume"), 1);
        result = last_field("SuspendVolume", "result");
        detail = last_field("SuspendVolume", "detail");
        ck_assert_str_eq(result, "ok");
        ck_assert_msg(strstr(detail, "reported failure (Invalid argument), yet the key reads wiped"), "%s", detail);

        r = check(0, &out, &err);
        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(out.action, KC_REVOKE_STILL);
        ck_assert(out.recalled);
        ck_assert_msg(!strstr(out.reason, "not by this agent") && strstr(out.reason, "suspended, key wiped"), "%s",
                      out.reason);
        ck_assert_uint_eq(dm.suspends, 1);
        ck_assert_uint_eq(records(f.audit_log, "SuspendVolume"), 1);
        ck_assert(marked());

        set_enabled(true);
        r = check(0, &out, &err);
        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(out.action, KC_REVOKE_RESUMED);
        ck_assert(!dm.suspended && !dm.wiped && !marked());
}
END_TEST

/*
 * A wipe that failed and left the key in place: the check fails (the key
 * is still in kernel memory), the mark stays with the suspended mapping,
 * and the next check suspends and wipes again.
 */
START_TEST(wipe_that_left_the_key) {
        _cleanup_free_ char *result = NULL;
        struct kc_revoke_outcome out;
        struct kc_err err = {};
        int r;

        set_enabled(false);
        dm.wipe_refused = true;
        r = check(0, &out, &err);
        ck_assert_int_eq(r, -EINVAL);
        ck_assert_msg(strstr(err.msg, "could not be wiped"), "%s", err.msg);
        ck_assert(dm.suspended && !dm.wiped && marked());
        result = last_field("SuspendVolume", "result");
        ck_assert_str_eq(result, "error");

        dm.wipe_refused = false;
        r = check(0, &out, &err);
        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(out.action, KC_REVOKE_SUSPENDED);
        ck_assert_str_eq(dm.last_message, "key wipe");
        ck_assert(dm.suspended && dm.wiped && marked());
        ck_assert_uint_eq(records(f.audit_log, "SuspendVolume"), 2);
}
END_TEST

/* A file where the marks' folder goes: writing a mark there fails as on a full or read-only file system. */
static char *block_mark_folder(void) {
        char *blocker = NULL;
        FILE *file;

        ck_assert_int_ge(asprintf(&blocker, "%s/suspended", f.dir), 0);
        ck_assert_ptr_nonnull(file = fopen(blocker, "w"));
        fclose(file);
        return blocker;
}

/*
 * Neither of the agent's marks can be written: not the file (its file
 * system full or read-only), not the kernel's copy (the keyring quota
 * spent: add_key fails with EDQUOT).  The revoked key's volume is
 * suspended all the same, and the reason and the record say what a
 * restarted agent would not know.  The checks that find it still
 * suspended write a mark once they can, and say so no more.
 */
START_TEST(suspension_whose_mark_cannot_be_written) {
        _cleanup_free_ char *blocker = NULL, *detail = NULL;
        struct kc_revoke_outcome out;
        struct kc_err err = {};
        int r;

        blocker = block_mark_folder();
        ck_assert_int_eq(kc_test_refuse_syscall(__NR_add_key, -1, EDQUOT), 0);
        set_enabled(false);
        r = check(0, &out, &err);
        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(out.action, KC_REVOKE_SUSPENDED);
        ck_assert(dm.suspended && dm.wiped);
        ck_assert_int_eq(out.mark_error, -ENOTDIR);
        ck_assert_msg(strstr(out.reason, "suspended, key wiped; its mark could be written neither under ") &&
                      strstr(out.reason, "(Not a directory) nor in the kernel keyring: a restarted agent would "
                             "take the suspension for another tool's"), "%s", out.reason);
        detail = last_field("SuspendVolume", "detail");
        ck_assert_msg(strstr(detail, "the agent's mark of it could be written neither in its state folder nor in "
                             "the kernel keyring: Not a directory"), "%s", detail);
        ck_assert(!kc_revoke_recall(f.dir, f.conf.name));

        /* Still so at the next check, which says it again (kmscrypt status shows its reason). */
        r = check(KC_REVOKE_PRIOR_SUSPENDED, &out, &err);
        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(out.action, KC_REVOKE_STILL);
        ck_assert_int_eq(out.mark_error, -ENOTDIR);
        ck_assert_msg(strstr(out.reason, "could be written neither"), "%s", out.reason);

        /* Room again: the next check writes it, and a restarted agent would resume the volume. */
        ck_assert_int_eq(unlink(blocker), 0);
        r = check(KC_REVOKE_PRIOR_SUSPENDED, &out, &err);
        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(out.action, KC_REVOKE_STILL);
        ck_assert_int_eq(out.mark_error, 0);
        ck_assert_msg(!strstr(out.reason, "mark"), "%s", out.reason);
        ck_assert(marked() && kc_revoke_recall(f.dir, f.conf.name));
        ck_assert_uint_eq(dm.suspends, 1);
        ck_assert_uint_eq(records(f.audit_log, "SuspendVolume"), 1);
}
END_TEST

/*
 * The file cannot be written, the kernel's copy can: the suspension is
 * remembered all the same (a restarted agent recalls it, and resumes the
 * volume when the key is enabled again), and nothing says otherwise.
 * With room again the file is written too; a forgotten suspension leaves
 * neither.
 */
START_TEST(suspension_marked_in_the_kernel_alone) {
        _cleanup_free_ char *blocker = NULL;
        struct kc_revoke_outcome out;
        struct kc_err err = {};
        int r;

        blocker = block_mark_folder();
        set_enabled(false);
        r = check(0, &out, &err);
        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(out.action, KC_REVOKE_SUSPENDED);
        ck_assert_int_eq(out.mark_error, 0);
        ck_assert_msg(!strstr(out.reason, "mark"), "%s", out.reason);
        ck_assert(!marked() && kc_revoke_recall(f.dir, f.conf.name));

        /* A restarted agent, told nothing by a prior check, finds it its own. */
        r = check(0, &out, &err);
        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert_int_eq(out.action, KC_REVOKE_STILL);
        ck_assert(out.recalled);

        ck_assert_int_eq(unlink(blocker), 0);
        r = check(KC_REVOKE_PRIOR_SUSPENDED, &out, &err);
        ck_assert_msg(r == 0, "check: %s", kc_err_msg(&err, r));
        ck_assert(marked() && kc_revoke_recall(f.dir, f.conf.name));

        kc_revoke_forget(f.dir, f.conf.name);
        ck_assert(!marked() && !kc_revoke_recall(f.dir, f.conf.name));
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("revoke");
        TCase *tc = tcase_create("keep");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, keep_record_tried_again);
        tcase_add_test(tc, enabled_key_nothing_kept);
        tcase_add_test(tc, pass_describes_each_key_once);
        tcase_add_test(tc, pass_shares_a_failed_lookup);
        suite_add_tcase(s, tc);

        tc = tcase_create("suspend");
        tcase_add_checked_fixture(tc, setup_suspend, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, suspend_then_resume);
        tcase_add_test(tc, keep_while_suspended);
        tcase_add_test(tc, suspension_ended_elsewhere);
        tcase_add_test(tc, resume_only_from_its_own_device);
        tcase_add_test(tc, resume_refused_by_policy);
        tcase_add_test(tc, suspended_by_another_tool);
        tcase_add_test(tc, suspended_with_its_key_by_another_tool);
        tcase_add_test(tc, own_suspension_whose_wipe_failed);
        tcase_add_test(tc, wipe_that_left_the_key);
        tcase_add_test(tc, suspension_whose_mark_cannot_be_written);
        tcase_add_test(tc, suspension_marked_in_the_kernel_alone);
        suite_add_tcase(s, tc);
        return s;
}
