/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/keystore.h"
#include "agent/kms.h"
#include "lib/initrd.h"
#include "lib/log.h"
#include "lib/secret.h"

/*
 * Provider dispatch and the audit rule: every kc_kms_* call ends in
 * audit_finish(), which writes one record whatever the outcome and turns a
 * success into a failure when that record cannot be made durable.  Results
 * are built in locals and copied to the caller only after that.
 *
 * A change of state (a key created, enabled, rotated, ...) cannot be taken
 * back once made, so it is written ahead: audit_intent() makes a "pending"
 * record durable before the provider is called, and audit_outcome() records
 * how it ended.  No intent record, no change.
 */

static const struct kc_kms_provider *const providers[] = {
        &kc_kms_provider_local,
#if HAVE_AWS
        &kc_kms_provider_aws,
#endif
};

struct kc_kms {
        struct kc_kms_config cfg;
        char *owned[7];                       /* the strings cfg points to */
        struct kc_audit *audit;
        void *state[ARRAY_SIZE(providers)];   /* opened on first use */
};

static const char *const key_state_names[] = {
        [KC_KEY_ENABLED] = "Enabled",
        [KC_KEY_DISABLED] = "Disabled",
        [KC_KEY_PENDING_DELETION] = "PendingDeletion",
        [KC_KEY_DESTROYED] = "Destroyed",
        [KC_KEY_PENDING_REPLICA_DELETION] = "PendingReplicaDeletion",
        [KC_KEY_PENDING_IMPORT] = "PendingImport",
        [KC_KEY_UNAVAILABLE] = "Unavailable",
        [KC_KEY_CREATING] = "Creating",
        [KC_KEY_UPDATING] = "Updating",
};

const char *kc_key_state_to_string(enum kc_key_state s) {
        return (size_t) s < ARRAY_SIZE(key_state_names) ? key_state_names[s] : NULL;
}

bool kc_key_state_revoked(enum kc_key_state s) {
        switch (s) {
        case KC_KEY_DISABLED:
        case KC_KEY_PENDING_DELETION:
        case KC_KEY_PENDING_REPLICA_DELETION:
        case KC_KEY_DESTROYED:
        case KC_KEY_PENDING_IMPORT:
                return true;
        case KC_KEY_ENABLED:
        case KC_KEY_UNAVAILABLE:
        case KC_KEY_CREATING:
        case KC_KEY_UPDATING:
                return false;
        }
        return false;
}

/* What each state that is neither Enabled nor a revocation means, in words. */
static const char *const outage_meanings[] = {
        [KC_KEY_UNAVAILABLE] = "its custom key store is disconnected",
        [KC_KEY_CREATING] = "it is a multi-Region replica still being created",
        [KC_KEY_UPDATING] = "the primary Region of its multi-Region key is being changed",
};

const char *kc_key_state_outage(enum kc_key_state s) {
        if (s == KC_KEY_ENABLED || kc_key_state_revoked(s))
                return NULL;
        return (size_t) s < ARRAY_SIZE(outage_meanings) && outage_meanings[s] ? outage_meanings[s] :
                                                                                "a state that passes";
}

void kc_data_key_clear(struct kc_data_key *k) {
        if (!k)
                return;
        kc_secret_free(k->plaintext);
        if (k->blob)
                kc_wipe(k->blob, k->blob_len);
        free(k->blob);
        *k = (struct kc_data_key) {};
}

/* ---- opening -------------------------------------------------------------------------------- */

static int own(struct kc_kms *k, size_t slot, const char *s, const char **ret) {
        if (!s)
                return 0;
        k->owned[slot] = strdup(s);
        if (!k->owned[slot])
                return -ENOMEM;
        *ret = k->owned[slot];
        return 0;
}

/*
 * The default head lives in the keystore, which may not exist yet: create it
 * private.  1 when this call made it, 0 when there was nothing to make.
 */
static int keystore_dir_make(const char *dir, const char *audit_head, struct kc_err *err) {
        if (audit_head)
                return 0;
        if (mkdir(dir, 0700) == 0)
                return 1;
        if (errno == EEXIST)
                return 0;
        return kc_err_set(err, negative_errno(), "cannot create %s: %m", dir);
}

/* The audit log of k, its head at audit_head (NULL: in the keystore). */
static int kms_audit_open(struct kc_kms *k, const char *audit_head, struct kc_err *err) {
        struct kc_audit_evidence evidence;
        int r;

        k->cfg.audit_head = audit_head;   /* borrowed until its copy below replaces it */
        r = kc_kms_audit_head(&k->cfg, &k->owned[3]);
        k->cfg.audit_head = k->owned[3];
        if (r < 0)
                return r;
        /* A chain gone with its head while keys say it held records is not started anew here (docs/audit.md). */
        kc_kms_audit_evidence(&k->cfg, &evidence);
        return kc_audit_open(k->cfg.audit_log, k->cfg.audit_head, &evidence, &k->audit, err);
}

int kc_kms_open(const struct kc_kms_config *cfg, struct kc_kms **ret, struct kc_err *err) {
        _cleanup_kms_ struct kc_kms *k = NULL;
        int made, r;

        if (!cfg || !cfg->audit_log)
                return kc_err_set(err, -EINVAL, "no audit log configured");
        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        if (own(k, 0, cfg->keystore_dir ?: KC_KEYSTORE_DEFAULT_DIR, &k->cfg.keystore_dir) < 0 ||
            own(k, 1, cfg->root_key_file, &k->cfg.root_key_file) < 0 ||
            own(k, 2, cfg->audit_log, &k->cfg.audit_log) < 0 ||
            own(k, 4, cfg->aws_endpoint, &k->cfg.aws_endpoint) < 0 ||
            own(k, 5, cfg->aws_region, &k->cfg.aws_region) < 0 ||
            own(k, 6, cfg->aws_ca_file, &k->cfg.aws_ca_file) < 0)
                return -ENOMEM;
        made = keystore_dir_make(k->cfg.keystore_dir, cfg->audit_head, err);
        if (made < 0)
                return made;
        r = kms_audit_open(k, cfg->audit_head, err);
        if (r < 0) {
                /* A failed open leaves nothing behind: a directory made for a mistyped --audit-log
                 * would be taken for the keystore next time.  rmdir() keeps one that is not empty. */
                if (made)
                        (void) rmdir(k->cfg.keystore_dir);
                return r;
        }
        *ret = TAKE_PTR(k);
        return 0;
}

int kc_kms_audit_head(const struct kc_kms_config *cfg, char **ret) {
        char *head;

        if (cfg->audit_head)
                head = strdup(cfg->audit_head);
        else if (asprintf(&head, "%s/audit.head", cfg->keystore_dir ?: KC_KEYSTORE_DEFAULT_DIR) < 0)
                head = NULL;
        if (!head)
                return -ENOMEM;
        *ret = head;
        return 0;
}

static int keystore_evidence(const void *userdata, char *buf, size_t size) {
        const char *dir = userdata;
        size_t n;
        int r;

        if (kc_in_initrd())
                return 0;
        r = kc_keystore_count_keys(dir, &n, NULL);
        if (r < 0 || n == 0)
                return r;
        snprintf(buf, size, "keystore %s holds %zu key%s, whose creation was audited", dir, n, n == 1 ? "" : "s");
        return 1;
}

void kc_kms_audit_evidence(const struct kc_kms_config *cfg, struct kc_audit_evidence *ret) {
        *ret = (struct kc_audit_evidence) {
                .check = keystore_evidence,
                .userdata = cfg->keystore_dir ?: KC_KEYSTORE_DEFAULT_DIR,
        };
}

void kc_kms_close(struct kc_kms *k) {
        if (!k)
                return;
        for (size_t i = 0; i < ARRAY_SIZE(providers); i++)
                if (k->state[i])
                        providers[i]->close(k->state[i]);
        kc_audit_close(k->audit);
        for (size_t i = 0; i < ARRAY_SIZE(k->owned); i++)
                free(k->owned[i]);
        free(k);
}

/* ---- dispatch ------------------------------------------------------------------------------- */

static const struct kc_kms_provider *provider_by_name(const char *name, size_t len) {
        for (size_t i = 0; i < ARRAY_SIZE(providers); i++)
                if (strlen(providers[i]->name) == len && strncmp(providers[i]->name, name, len) == 0)
                        return providers[i];
        return NULL;
}

bool kc_kms_provider_known(const char *name) {
        return name && provider_by_name(name, strlen(name));
}

int kc_kms_resolve(const char *key_ref, const struct kc_kms_provider **ret_provider,
                   const char **ret_key, struct kc_err *err) {
        const struct kc_kms_provider *p = &kc_kms_provider_local;
        const char *colon, *key = key_ref;

        if (!key_ref || !key_ref[0])
                return kc_err_set(err, -EINVAL, "no key reference given");
        colon = strchr(key_ref, ':');
        /* Aliases and local ids never contain ':', so anything before one is a scheme. */
        if (colon && strncmp(key_ref, "alias/", 6) != 0) {
                p = provider_by_name(key_ref, (size_t) (colon - key_ref));
                if (!p)
                        return kc_err_set(err, -EPROTONOSUPPORT, "unknown KMS provider \"%.*s\" in \"%.128s\"",
                                          (int) (colon - key_ref), key_ref, key_ref);
                key = colon + 1;
                if (!key[0])
                        return kc_err_set(err, -EINVAL, "no key after \"%s:\"", p->name);
        }
        *ret_provider = p;
        *ret_key = key;
        return 0;
}

int kc_kms_peek_key_id(const struct kc_kms_config *cfg, const char *key_ref, char ret_key_id[65],
                       struct kc_err *err) {
        const struct kc_kms_provider *p;
        const char *key;
        int r = kc_kms_resolve(key_ref, &p, &key, err);

        if (r < 0)
                return r;
        if (p->peek_key_id)
                return p->peek_key_id(cfg, key, ret_key_id, err);
        if (strncmp(key, "alias/", 6) == 0)
                return kc_err_set(err, -EOPNOTSUPP, "%s: aliases of KMS provider %s are not looked up here; "
                                  "give the key id", key_ref, p->name);
        if (strlen(key) > 64)
                return kc_err_set(err, -EINVAL, "%.128s: not a key id", key_ref);
        kc_strscpy(ret_key_id, 65, key);
        return 0;
}

static int record_destruction(void *userdata, const char *key_id, time_t deletion_date, bool intent,
                              int result, const struct kc_err *err);

static int provider_state(struct kc_kms *k, const struct kc_kms_provider *p, void **ret, struct kc_err *err) {
        for (size_t i = 0; i < ARRAY_SIZE(providers); i++) {
                if (providers[i] != p)
                        continue;
                if (!k->state[i]) {
                        int r = p->open(&k->cfg, &k->state[i], err);
                        if (r < 0)
                                return kc_err_set(err, r, "cannot open KMS provider %s: %s", p->name, strerror(-r));
                        if (p->set_destroy_hook)
                                p->set_destroy_hook(k->state[i], record_destruction, k);
                }
                *ret = k->state[i];
                return 0;
        }
        return -EINVAL;
}

/* Resolve a reference (NULL: the local provider and no key) and open its provider. */
static int dispatch(struct kc_kms *k, const char *key_ref, const struct kc_kms_provider **ret_p,
                    void **ret_state, const char **ret_key, struct kc_err *err) {
        const struct kc_kms_provider *p = &kc_kms_provider_local;
        const char *key = NULL;
        int r = key_ref ? kc_kms_resolve(key_ref, &p, &key, err) : 0;

        if (r >= 0)
                r = provider_state(k, p, ret_state, err);
        if (r < 0)
                return r;
        *ret_p = p;
        *ret_key = key;
        return 0;
}

static int dispatch_by_name(struct kc_kms *k, const char *name, const struct kc_kms_provider **ret_p,
                            void **ret_state, struct kc_err *err) {
        const struct kc_kms_provider *p = provider_by_name(name ?: "local", strlen(name ?: "local"));

        if (!p)
                return kc_err_set(err, -EPROTONOSUPPORT, "unknown KMS provider \"%.64s\"", name);
        *ret_p = p;
        return provider_state(k, p, ret_state, err);
}

static int unsupported(const struct kc_kms_provider *p, const char *operation, struct kc_err *err) {
        return kc_err_set(err, -EOPNOTSUPP, "KMS provider %s does not support %s", p->name, operation);
}

/* Every record of this trail names the caller and volume of its request, and its reason if it has one. */
static int audit_write(struct kc_kms *k, const struct kc_kms_request *req, struct kc_audit_record *rec) {
        struct kc_audit_record r = *rec;

        r.caller = req ? req->caller : NULL;
        r.volume = req ? req->volume : NULL;
        if (!r.detail && req)
                r.detail = req->detail;
        return kc_audit_write(k->audit, &r);
}

/*
 * The key a refusal's record names.  An operation's record carries the key
 * as it was given until the provider answers with its id, which a refusal
 * does not; but audit list --key matches the id, as every other record
 * names the key (docs/audit.md), and so missed a key's refusals ("key ...
 * is disabled") that named it "alias/pg" or "local:ID".  So a key that the
 * provider can name without a call (kc_kms_peek_key_id: a local alias
 * looked up, read only; "local:" dropped; an AWS key ARN's id) is named by
 * that id; one it cannot, or that does not exist, stays as given.
 */
static const char *refused_key_name(struct kc_kms *k, const char *key_ref, char buf[static 65]) {
        struct kc_err e = {};

        if (!key_ref || kc_kms_peek_key_id(&k->cfg, key_ref, buf, &e) < 0)
                return key_ref;
        return buf;
}

/* The record of an operation that ended with result; 0 or the negative errno of the write. */
static int audit_result(struct kc_kms *k, const struct kc_kms_request *req, struct kc_audit_record *rec,
                        int result, struct kc_err *err) {
        const char *given = rec->key_id;
        char id[65];
        int r;

        rec->intent = false;
        rec->result = result;
        rec->error = result < 0 ? kc_err_msg(err, result) : NULL;
        if (result < 0)
                rec->key_id = refused_key_name(k, given, id);
        r = audit_write(k, req, rec);
        rec->key_id = given;
        if (r < 0 && result < 0)
                log_debug("audit record of refused %s not written: %s", rec->operation, strerror(-r));
        return r;
}

/*
 * Write the audit record of an operation that ended with result.  A refusal
 * stays a refusal; a success whose record is not durable becomes a failure,
 * and the caller then wipes what it would have returned.
 */
static int audit_finish(struct kc_kms *k, const struct kc_kms_request *req, struct kc_audit_record *rec,
                        int result, struct kc_err *err) {
        int r = audit_result(k, req, rec, result, err);

        if (result < 0)
                return result;
        if (r < 0)
                return kc_err_set(err, r, "%s withheld: its audit record could not be written: %s",
                                  rec->operation, strerror(-r));
        return 0;
}

int kc_kms_audit_refusal(struct kc_kms *k, const struct kc_kms_request *req, struct kc_audit_record *rec) {
        if (!k || !rec || rec->result >= 0)
                return -EINVAL;
        return audit_write(k, req, rec);
}

/*
 * Write-ahead: the intent record of a change, durable before the change is
 * made.  It carries what rec says (operation, key, context, detail) with the
 * result "pending".  When it cannot be written nothing may be changed.
 */
static int audit_intent(struct kc_kms *k, const struct kc_kms_request *req, const struct kc_audit_record *rec,
                        struct kc_err *err) {
        struct kc_audit_record intent = *rec;
        int r;

        intent.intent = true;
        r = audit_write(k, req, &intent);
        if (r < 0)
                return kc_err_set(err, r, "%s not done: its audit record could not be written: %s",
                                  rec->operation, strerror(-r));
        return 0;
}

/*
 * The outcome of a change whose intent is on record.  A refusal is recorded
 * and returned.  A change that was made stays made when its outcome record
 * cannot be written: undoing it would be another unrecorded change, and a
 * caller told "failed" would retry a change that happened.  So it is
 * reported as done (1) with err saying the outcome record is missing; the
 * intent record already proves the change was asked for.
 */
static int audit_outcome(struct kc_kms *k, const struct kc_kms_request *req, struct kc_audit_record *rec,
                         int result, struct kc_err *err) {
        int r = audit_result(k, req, rec, result, err);

        if (result < 0)
                return result;
        if (r < 0) {
                kc_err_set(err, r, "%s done, but its outcome record could not be written to the audit log (%s); "
                           "the intent record before it stands", rec->operation, strerror(-r));
                return 1;
        }
        return 0;
}

/*
 * A key the provider destroys by itself once its deletion window has passed
 * (AWS KMS records that as DeleteKey).  It is written ahead like a change
 * asked for, with this process, which carried it out, as the caller.  A
 * refused intent leaves the key pending deletion: unusable all the same.
 */
static int record_destruction(void *userdata, const char *key_id, time_t deletion_date, bool intent,
                              int result, const struct kc_err *err) {
        struct kc_kms *k = userdata;
        struct kc_caller self;
        struct kc_kms_request req = { .caller = kc_caller_self(&self) >= 0 ? &self : NULL };
        char detail[64];
        struct kc_audit_record rec = { .operation = "DeleteKey", .key_id = key_id, .detail = detail };
        struct kc_err e = {};
        int r;

        snprintf(detail, sizeof(detail), "deletion date %lld passed", (long long) deletion_date);
        if (intent) {
                r = audit_intent(k, &req, &rec, &e);
                if (r < 0)
                        log_warning("key %s stays pending deletion: %s", key_id, e.msg);
                return r;
        }
        if (result < 0 && err)
                e = *err;
        if (audit_outcome(k, &req, &rec, result, &e) == 1)
                log_warning("key %s: %s", key_id, e.msg);
        return 0;
}

int kc_kms_audit_intent(struct kc_kms *k, const struct kc_kms_request *req, const struct kc_audit_record *rec,
                        struct kc_err *err) {
        if (!k || !rec || !rec->operation)
                return -EINVAL;
        return audit_intent(k, req, rec, err);
}

int kc_kms_audit_outcome(struct kc_kms *k, const struct kc_kms_request *req, struct kc_audit_record *rec,
                         int result, struct kc_err *err) {
        struct kc_err local = {};

        if (!k || !rec || !rec->operation)
                return -EINVAL;
        return audit_outcome(k, req, rec, result, err ?: &local);
}

/* The same for an operation that made a data key: release it only when audited, else wipe it. */
static int audit_finish_data_key(struct kc_kms *k, const struct kc_kms_request *req, struct kc_audit_record *rec,
                                 int result, struct kc_data_key *dk, struct kc_data_key *ret, struct kc_err *err) {
        if (result >= 0) {
                rec->key_id = dk->key_id;
                rec->key_version = dk->key_version;
        }
        result = audit_finish(k, req, rec, result, err);
        if (result < 0) {
                kc_data_key_clear(dk);
                return result;
        }
        *ret = *dk;
        return 0;
}

/*
 * A remote provider's request id goes into the record's detail (after what
 * it already says), so this audit trail and the KMS's own can be joined.
 */
static void note_request_id(const struct kc_kms_provider *p, void *state, struct kc_audit_record *rec,
                            char *buf, size_t size) {
        const char *id = p && state && p->last_request_id ? p->last_request_id(state) : NULL;

        if (!id)
                return;
        snprintf(buf, size, "%s%srequest-id %s", rec->detail ?: "", rec->detail ? "; " : "", id);
        rec->detail = buf;
}

/* ---- cryptographic operations --------------------------------------------------------------- */

int kc_kms_generate_data_key(struct kc_kms *k, const struct kc_kms_request *req, const char *key_ref,
                             const struct kc_context *ctx, size_t nbytes, struct kc_data_key *ret,
                             struct kc_err *err) {
        struct kc_err local = {};
        struct kc_audit_record rec = { .operation = "GenerateDataKey", .key_id = key_ref, .context = ctx };
        struct kc_data_key dk = {};
        const struct kc_kms_provider *p = NULL;
        const char *key;
        void *state = NULL;
        char request_id[160];
        int r;

        err = err ?: &local;
        r = dispatch(k, key_ref, &p, &state, &key, err);
        if (r >= 0)
                r = p->generate_data_key(state, key, ctx, nbytes, &dk, err);
        note_request_id(p, state, &rec, request_id, sizeof(request_id));
        return audit_finish_data_key(k, req, &rec, r, &dk, ret, err);
}

int kc_kms_decrypt(struct kc_kms *k, const struct kc_kms_request *req, const char *key_ref,
                   const uint8_t *blob, size_t blob_len, const struct kc_context *ctx,
                   void **ret_plaintext, char ret_key_id[65], uint32_t *ret_key_version,
                   struct kc_err *err) {
        struct kc_err local = {};
        struct kc_audit_record rec = { .operation = "Decrypt", .key_id = key_ref, .context = ctx };
        _cleanup_secret_ void *plaintext = NULL;
        char id[65] = "";
        uint32_t version = 0;
        const struct kc_kms_provider *p = NULL;
        const char *key;
        void *state = NULL;
        char request_id[160];
        int r;

        err = err ?: &local;
        r = dispatch(k, key_ref, &p, &state, &key, err);
        if (r >= 0)
                r = p->decrypt(state, key, blob, blob_len, ctx, &plaintext, id, &version, err);
        note_request_id(p, state, &rec, request_id, sizeof(request_id));
        /* Refused without a key: the key the blob names, as audit list --key finds its other records. */
        if (r >= 0 || (!key_ref && p && p->peek_blob_key && p->peek_blob_key(blob, blob_len, id, &version) >= 0)) {
                rec.key_id = id;
                rec.key_version = version;
        }
        r = audit_finish(k, req, &rec, r, err);
        if (r < 0)
                return r;
        *ret_plaintext = TAKE_PTR(plaintext);
        if (ret_key_id)
                memcpy(ret_key_id, id, sizeof(id));
        if (ret_key_version)
                *ret_key_version = version;
        return 0;
}

/*
 * The detail of a ReEncrypt's records, "source ID version N": the key the
 * blob was wrapped under, as the provider answered (r >= 0) or, for a
 * refusal, as the blob names it in its own bytes, the key a refused Decrypt
 * without a key names.  Neither: the source as it was given (NULL: none),
 * with ret_id empty.
 */
static const char *re_encrypt_source(const struct kc_kms_provider *p, int r, const struct kc_data_key *dk,
                                     const char *src_key_ref, const uint8_t *blob, size_t blob_len,
                                     char ret_id[static 65], uint32_t *ret_version, char detail[static 96]) {
        if (r >= 0 && dk->source_key_id[0]) {
                kc_strscpy(ret_id, 65, dk->source_key_id);
                *ret_version = dk->source_key_version;
        } else if (r >= 0 || !p || !p->peek_blob_key || p->peek_blob_key(blob, blob_len, ret_id, ret_version) < 0) {
                ret_id[0] = '\0';
                return src_key_ref;
        }
        snprintf(detail, 96, "source %s version %" PRIu32, ret_id, *ret_version);
        return detail;
}

/*
 * The key a refused ReEncrypt's record names: the one that refused.  The
 * destination key, when one was given and the source passed; else the
 * source, named as a refused Decrypt names its key: as given, or the key
 * (and, when it refused, the version) the blob names.  The context is the
 * one that key was asked under: the source's, when the record names the
 * source.
 */
static void re_encrypt_refuser(struct kc_audit_record *rec, bool source_refused, const char *src_key_ref,
                               const struct kc_context *src_ctx, const char *dst_key_ref, const char *src_id,
                               uint32_t src_version) {
        if (dst_key_ref && !source_refused)
                return;         /* rec->key_id is dst_key_ref already, rec->context its context */
        rec->context = src_ctx;
        if (src_key_ref || !src_id[0]) {
                rec->key_id = src_key_ref;
                return;
        }
        rec->key_id = src_id;
        if (source_refused)
                rec->key_version = src_version;
}

int kc_kms_re_encrypt(struct kc_kms *k, const struct kc_kms_request *req, const char *src_key_ref,
                      const uint8_t *blob, size_t blob_len, const struct kc_context *src_ctx,
                      const char *dst_key_ref, const struct kc_context *dst_ctx,
                      struct kc_data_key *ret, struct kc_err *err) {
        struct kc_err local = {};
        struct kc_audit_record rec = {
                .operation = "ReEncrypt", .key_id = dst_key_ref ?: src_key_ref, .context = dst_ctx ?: src_ctx,
        };
        struct kc_data_key dk = {};
        const struct kc_kms_provider *p = NULL, *dst_p;
        const char *src_key, *dst_key = NULL;
        void *state = NULL;
        char request_id[160], source[96], src_id[65];
        uint32_t src_version = 0;
        bool source_refused = false;
        int r;

        err = err ?: &local;
        r = dispatch(k, src_key_ref, &p, &state, &src_key, err);
        if (r >= 0 && dst_key_ref) {
                r = kc_kms_resolve(dst_key_ref, &dst_p, &dst_key, err);
                if (r >= 0 && dst_p != p)
                        r = kc_err_set(err, -EXDEV, "cannot re-encrypt from provider %s to provider %s",
                                       p->name, dst_p->name);
        }
        if (r >= 0)
                r = p->re_encrypt(state, src_key, blob, blob_len, src_ctx, dst_key, dst_ctx, &dk, &source_refused, err);
        /* The record names the destination key, or the one that refused; the source goes in the detail. */
        rec.detail = re_encrypt_source(p, r, &dk, src_key_ref, blob, blob_len, src_id, &src_version, source);
        if (r < 0)
                re_encrypt_refuser(&rec, source_refused, src_key_ref, src_ctx, dst_key_ref, src_id, src_version);
        note_request_id(p, state, &rec, request_id, sizeof(request_id));
        return audit_finish_data_key(k, req, &rec, r, &dk, ret, err);
}

int kc_kms_encrypt(struct kc_kms *k, const struct kc_kms_request *req, const char *key_ref,
                   const struct kc_context *ctx, const void *plaintext, size_t len,
                   struct kc_data_key *ret, struct kc_err *err) {
        struct kc_err local = {};
        struct kc_audit_record rec = { .operation = "Encrypt", .key_id = key_ref, .context = ctx };
        struct kc_data_key dk = {};
        const struct kc_kms_provider *p = NULL;
        const char *key;
        void *state = NULL;
        char request_id[160];
        int r;

        err = err ?: &local;
        r = dispatch(k, key_ref, &p, &state, &key, err);
        if (r >= 0)
                r = p->encrypt ? p->encrypt(state, key, ctx, plaintext, len, &dk, err) : unsupported(p, "Encrypt", err);
        note_request_id(p, state, &rec, request_id, sizeof(request_id));
        return audit_finish_data_key(k, req, &rec, r, &dk, ret, err);
}

/* ---- key management ------------------------------------------------------------------------- */

int kc_kms_describe_key(struct kc_kms *k, const struct kc_kms_request *req, const char *key_ref,
                        struct kc_key_info *ret, struct kc_err *err) {
        struct kc_err local = {};
        struct kc_audit_record rec = { .operation = "DescribeKey", .key_id = key_ref };
        struct kc_key_info info;
        const struct kc_kms_provider *p = NULL;
        const char *key;
        void *state = NULL;
        char request_id[160];
        int r;

        err = err ?: &local;
        r = dispatch(k, key_ref, &p, &state, &key, err);
        if (r >= 0)
                r = p->describe_key(state, key, &info, err);
        note_request_id(p, state, &rec, request_id, sizeof(request_id));
        if (r >= 0)
                rec.key_id = info.key_id;
        r = audit_finish(k, req, &rec, r, err);
        if (r < 0)
                return r;
        *ret = info;
        return 0;
}

struct key_lookup {
        char *ref;
        int r;
        struct kc_key_info info;        /* when r >= 0 */
        struct kc_err err;              /* when r < 0 */
};

struct kc_key_lookups {
        struct key_lookup *v;
        size_t n;
};

struct kc_key_lookups *kc_key_lookups_new(void) {
        return calloc(1, sizeof(struct kc_key_lookups));
}

void kc_key_lookups_free(struct kc_key_lookups *l) {
        if (!l)
                return;
        for (size_t i = 0; i < l->n; i++)
                free(l->v[i].ref);
        free(l->v);
        free(l);
}

static int lookup_result(const struct key_lookup *l, struct kc_key_info *ret, struct kc_err *err) {
        if (l->r < 0) {
                if (err)
                        *err = l->err;
                return l->r;
        }
        *ret = l->info;
        return 0;
}

int kc_kms_describe_key_in(struct kc_kms *k, struct kc_key_lookups *lookups, const struct kc_kms_request *req,
                           const char *key_ref, struct kc_key_info *ret, struct kc_err *err) {
        struct key_lookup l = {}, *grown;

        if (!lookups || !key_ref)
                return kc_kms_describe_key(k, req, key_ref, ret, err);
        for (size_t i = 0; i < lookups->n; i++)
                if (streq(lookups->v[i].ref, key_ref))
                        return lookup_result(&lookups->v[i], ret, err);
        l.r = kc_kms_describe_key(k, req, key_ref, &l.info, &l.err);
        /* Not kept when it cannot be: this lookup has its answer all the same, the next one asks again. */
        grown = reallocarray(lookups->v, lookups->n + 1, sizeof(*lookups->v));
        if (grown) {
                lookups->v = grown;
                l.ref = strdup(key_ref);
                if (l.ref)
                        lookups->v[lookups->n++] = l;
        }
        return lookup_result(&l, ret, err);
}

int kc_kms_create_key(struct kc_kms *k, const struct kc_kms_request *req, const char *provider,
                      const char *alias, const char *description, struct kc_key_info *ret,
                      struct kc_err *err) {
        struct kc_err local = {};
        struct kc_audit_record rec = { .operation = "CreateKey", .detail = alias };
        struct kc_key_info info;
        const struct kc_kms_provider *p;
        void *state;
        int r;

        err = err ?: &local;
        r = dispatch_by_name(k, provider, &p, &state, err);
        if (r >= 0 && !p->create_key)
                r = unsupported(p, rec.operation, err);
        if (r < 0)
                return audit_finish(k, req, &rec, r, err);
        r = audit_intent(k, req, &rec, err);
        if (r < 0)
                return r;
        r = p->create_key(state, alias, description, &info, err);
        if (r >= 0) {
                rec.key_id = info.key_id;
                rec.key_version = info.current_version;
        }
        r = audit_outcome(k, req, &rec, r, err);
        if (r >= 0 && ret)
                *ret = info;
        return r;
}

int kc_kms_list_keys(struct kc_kms *k, const struct kc_kms_request *req, const char *provider,
                     struct kc_key_info **ret, size_t *ret_n, struct kc_err *err) {
        struct kc_err local = {};
        struct kc_audit_record rec = { .operation = "ListKeys", .detail = provider };
        _cleanup_free_ struct kc_key_info *list = NULL;
        size_t n = 0;
        const struct kc_kms_provider *p;
        void *state;
        int r;

        err = err ?: &local;
        r = dispatch_by_name(k, provider, &p, &state, err);
        if (r >= 0)
                r = p->list_keys ? p->list_keys(state, &list, &n, err) : unsupported(p, rec.operation, err);
        r = audit_finish(k, req, &rec, r, err);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(list);
        *ret_n = n;
        return 0;
}

/*
 * The state changes share one shape: resolve, record the intent, call,
 * record the outcome.  Each is a row of this table, called through manage().
 */
struct manage_args {
        bool enabled;
        unsigned days;
        time_t date;
        uint32_t version;
};

struct manage_op {
        const char *operation;
        bool (*supported)(const struct kc_kms_provider *p);
        int (*call)(const struct kc_kms_provider *p, void *state, const char *key, struct manage_args *a,
                    struct kc_err *err);
};

static bool has_set_enabled(const struct kc_kms_provider *p) { return p->set_enabled; }
static bool has_rotate(const struct kc_kms_provider *p) { return p->rotate_key; }
static bool has_schedule(const struct kc_kms_provider *p) { return p->schedule_deletion; }
static bool has_cancel(const struct kc_kms_provider *p) { return p->cancel_deletion; }

static int call_set_enabled(const struct kc_kms_provider *p, void *state, const char *key, struct manage_args *a,
                            struct kc_err *err) {
        return p->set_enabled(state, key, a->enabled, err);
}

static int call_rotate(const struct kc_kms_provider *p, void *state, const char *key, struct manage_args *a,
                       struct kc_err *err) {
        return p->rotate_key(state, key, &a->version, err);
}

static int call_schedule(const struct kc_kms_provider *p, void *state, const char *key, struct manage_args *a,
                         struct kc_err *err) {
        return p->schedule_deletion(state, key, a->days, &a->date, err);
}

static int call_cancel(const struct kc_kms_provider *p, void *state, const char *key, struct manage_args *a,
                       struct kc_err *err) {
        return p->cancel_deletion(state, key, err);
}

enum { OP_ENABLE, OP_DISABLE, OP_ROTATE, OP_SCHEDULE, OP_CANCEL };

static const struct manage_op manage_ops[] = {
        [OP_ENABLE] = { "EnableKey", has_set_enabled, call_set_enabled },
        [OP_DISABLE] = { "DisableKey", has_set_enabled, call_set_enabled },
        [OP_ROTATE] = { "RotateKey", has_rotate, call_rotate },
        [OP_SCHEDULE] = { "ScheduleKeyDeletion", has_schedule, call_schedule },
        [OP_CANCEL] = { "CancelKeyDeletion", has_cancel, call_cancel },
};

static int manage(struct kc_kms *k, const struct kc_kms_request *req, const char *key_ref,
                  const struct manage_op *op, struct manage_args *a, struct kc_err *err) {
        struct kc_err local = {}, lookup = {};
        struct kc_audit_record rec = { .operation = op->operation, .key_id = key_ref };
        struct kc_key_info info;
        char detail[256] = "";
        const struct kc_kms_provider *p = NULL;
        const char *key;
        void *state = NULL;
        char request_id[160];
        int r;

        err = err ?: &local;
        r = dispatch(k, key_ref, &p, &state, &key, err);
        if (r >= 0 && !op->supported(p))
                r = unsupported(p, op->operation, err);
        if (r < 0)
                return audit_finish(k, req, &rec, r, err);
        /* A key that does not exist is refused before anything is asked; one that does is
         * recorded by its id rather than the alias it was named by, in both records. */
        r = p->describe_key(state, key, &info, &lookup);
        if (r == -ENOKEY || r == -ENOENT) {
                note_request_id(p, state, &rec, request_id, sizeof(request_id));
                return audit_finish(k, req, &rec, kc_err_set(err, r, "%s", kc_err_msg(&lookup, r)), err);
        }
        if (r >= 0)
                rec.key_id = info.key_id;
        if (a->days > 0) {
                snprintf(detail, sizeof(detail), "pending window %u days", a->days);
                rec.detail = detail;
        }
        r = audit_intent(k, req, &rec, err);
        if (r < 0)
                return r;

        r = op->call(p, state, key, a, err);
        rec.detail = NULL;
        note_request_id(p, state, &rec, request_id, sizeof(request_id));
        if (r >= 0 && a->version > 0)
                rec.key_version = a->version;
        if (r >= 0 && a->date > 0) {
                snprintf(detail, sizeof(detail), "deletion date %lld%s%s", (long long) a->date,
                         rec.detail ? "; " : "", rec.detail ?: "");
                rec.detail = detail;
        }
        return audit_outcome(k, req, &rec, r, err);
}

int kc_kms_set_enabled(struct kc_kms *k, const struct kc_kms_request *req, const char *key_ref,
                       bool enabled, struct kc_err *err) {
        struct manage_args a = { .enabled = enabled };
        return manage(k, req, key_ref, &manage_ops[enabled ? OP_ENABLE : OP_DISABLE], &a, err);
}

int kc_kms_rotate_key(struct kc_kms *k, const struct kc_kms_request *req, const char *key_ref,
                      uint32_t *ret_new_version, struct kc_err *err) {
        struct manage_args a = {};
        int r = manage(k, req, key_ref, &manage_ops[OP_ROTATE], &a, err);

        if (r >= 0 && ret_new_version)
                *ret_new_version = a.version;
        return r;
}

int kc_kms_schedule_deletion(struct kc_kms *k, const struct kc_kms_request *req, const char *key_ref,
                             unsigned days, time_t *ret_date, struct kc_err *err) {
        struct manage_args a = { .days = days };
        int r = manage(k, req, key_ref, &manage_ops[OP_SCHEDULE], &a, err);

        if (r >= 0 && ret_date)
                *ret_date = a.date;
        return r;
}

int kc_kms_cancel_deletion(struct kc_kms *k, const struct kc_kms_request *req, const char *key_ref,
                           struct kc_err *err) {
        struct manage_args a = {};
        return manage(k, req, key_ref, &manage_ops[OP_CANCEL], &a, err);
}
