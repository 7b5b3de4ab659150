/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * KMS providers: one small interface, one implementation per backend,
 * chosen by the scheme of a key reference:
 *
 *     local:alias/pgdata   local:5f0c...   alias/pgdata   (local is the default)
 *     aws:arn:aws:kms:eu-west-1:111122223333:key/...
 *
 * kc_kms_* (agent/kms.c) dispatch through the provider table and write the
 * audit record for every call, successful or refused; a result is released
 * to the caller only after its audit record is durable.  Plaintext keys are
 * always kc_secret buffers.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "agent/audit.h"
#include "agent/caller.h"
#include "agent/context.h"
#include "lib/error.h"

enum kc_key_state {
        KC_KEY_ENABLED,
        KC_KEY_DISABLED,
        KC_KEY_PENDING_DELETION,
        KC_KEY_DESTROYED,               /* the last state the local keystore has */
        /* Only AWS KMS says these (docs/aws.md, "Key states"). */
        KC_KEY_PENDING_REPLICA_DELETION,
        KC_KEY_PENDING_IMPORT,          /* imported key material not there: deleted, expired, never imported */
        KC_KEY_UNAVAILABLE,             /* its custom key store is disconnected */
        KC_KEY_CREATING,                /* a multi-Region replica being made */
        KC_KEY_UPDATING,                /* a multi-Region key whose primary Region is being changed */
};
/* "Enabled", "Disabled", "PendingDeletion", "Destroyed", ... (AWS KeyState names). */
const char *kc_key_state_to_string(enum kc_key_state s);

/*
 * Whether the key's owner withdrew the key (disabled it, scheduled its
 * deletion) or its material is gone (destroyed, imported material deleted
 * or expired): what the revocation policy acts on.  Neither this nor
 * Enabled: a state that passes by itself (Creating, Updating) or an outage
 * of the key's store (Unavailable), which the policy does not act on.
 */
bool kc_key_state_revoked(enum kc_key_state s);
/* That other kind, neither Enabled nor revoked: what it means in words ("its custom key store is disconnected"); else NULL. */
const char *kc_key_state_outage(enum kc_key_state s);

struct kc_key_info {
        char provider[16];        /* "local" */
        char key_id[65];          /* provider's id, e.g. a random UUID (36 characters) for local */
        char arn[256];            /* full reference, e.g. "local:5f0c..." */
        char alias[257];          /* "alias/pgdata" or "": "alias/" + up to 250 characters, like AWS */
        char description[256];
        enum kc_key_state state;
        time_t created;
        time_t deletion_date;     /* when PENDING_DELETION */
        uint32_t current_version;
        uint32_t versions;        /* number of versions (1..current) */
};

struct kc_data_key {
        void *plaintext;          /* kc_secret buffer */
        uint8_t *blob;            /* wrapped form, malloc()ed */
        size_t blob_len;
        char key_id[65];
        uint32_t key_version;
        /* ReEncrypt only: the key (and version) the blob was wrapped under; empty when the provider cannot tell. */
        char source_key_id[65];
        uint32_t source_key_version;
};
void kc_data_key_clear(struct kc_data_key *k);   /* wipes and frees both, safe to call twice */

/* Configuration every provider may read. */
struct kc_kms_config {
        const char *keystore_dir;  /* local provider */
        const char *root_key_file; /* local provider; NULL: <keystore_dir>/root.key */
        const char *audit_log;     /* path of the audit log */
        const char *audit_head;    /* chain head; NULL: <keystore_dir>/audit.head */
        /* aws provider (kmscrypt.conf aws-*); NULL: unset.  Its environment variables win. */
        const char *aws_endpoint;  /* endpoint URL */
        const char *aws_region;    /* region of bare key ids */
        const char *aws_ca_file;   /* CA bundle for the endpoint's certificate */
};

/* Who and what an operation is for; recorded in the audit trail. */
struct kc_kms_request {
        const struct kc_caller *caller;
        const char *volume;        /* LUKS UUID or name, NULL if none */
        const char *detail;        /* why, for a record whose operation gives no detail of its own; NULL if none */
};

struct kc_kms;

/*
 * A change a provider makes by itself rather than on request: the local
 * keystore destroys a key whose deletion window has passed at its next use.
 * The provider calls this hook twice around it, like kc_kms writes a change
 * requested of it: first with intent true (result 0), and makes the change
 * only if that returns 0; then with the change's result and err.
 */
typedef int (*kc_kms_destroy_fn)(void *userdata, const char *key_id, time_t deletion_date, bool intent,
                                 int result, const struct kc_err *err);

struct kc_kms_provider {
        const char *name;          /* scheme, e.g. "local" */
        int (*open)(const struct kc_kms_config *cfg, void **ret_state, struct kc_err *err);
        void (*close)(void *state);

        /* Cryptographic operations. key is the reference with the scheme removed. */
        int (*generate_data_key)(void *state, const char *key, const struct kc_context *ctx,
                                 size_t nbytes, struct kc_data_key *ret, struct kc_err *err);
        /* key NULL: whatever key the blob names; otherwise it must be the blob's key. */
        int (*decrypt)(void *state, const char *key, const uint8_t *blob, size_t blob_len,
                       const struct kc_context *ctx, void **ret_plaintext,
                       char ret_key_id[65], uint32_t *ret_key_version, struct kc_err *err);
        /* src_key NULL: whatever key the blob names; dst_key NULL: the blob's key, newest version.
         * A refusal of the source (its key, version or context, or the blob) sets *source_refused,
         * so that the audit record names the key that refused; left false where the provider
         * cannot tell (then the destination key is named). */
        int (*re_encrypt)(void *state, const char *src_key, const uint8_t *blob, size_t blob_len,
                          const struct kc_context *src_ctx, const char *dst_key,
                          const struct kc_context *dst_ctx, struct kc_data_key *ret, bool *source_refused,
                          struct kc_err *err);
        int (*describe_key)(void *state, const char *key, struct kc_key_info *ret, struct kc_err *err);
        /* Wrap a key that already exists (adopting a LUKS2 volume): ret->plaintext stays NULL. NULL: -EOPNOTSUPP. */
        int (*encrypt)(void *state, const char *key, const struct kc_context *ctx, const void *plaintext,
                       size_t len, struct kc_data_key *ret, struct kc_err *err);

        /* Key management; NULL where a provider does not offer it (-EOPNOTSUPP). */
        int (*create_key)(void *state, const char *alias, const char *description,
                          struct kc_key_info *ret, struct kc_err *err);
        int (*list_keys)(void *state, struct kc_key_info **ret, size_t *ret_n, struct kc_err *err);
        int (*set_enabled)(void *state, const char *key, bool enabled, struct kc_err *err);
        int (*rotate_key)(void *state, const char *key, uint32_t *ret_new_version, struct kc_err *err);
        int (*schedule_deletion)(void *state, const char *key, unsigned days, time_t *ret_date, struct kc_err *err);
        int (*cancel_deletion)(void *state, const char *key, struct kc_err *err);

        /* Optional: the remote KMS's id of the last request (e.g. x-amzn-RequestId), NULL if none.
         * kc_kms_* put it in the audit record's detail, so both audit logs can be joined. */
        const char *(*last_request_id)(void *state);

        /* Optional: install the hook kc_kms records the provider's own destructions with. */
        void (*set_destroy_hook)(void *state, kc_kms_destroy_fn fn, void *userdata);

        /* Optional: the id the audit records of key name it by, found without a provider state
         * and without changing or asking anything (kc_kms_peek_key_id).  NULL: key as it is,
         * unless it is an alias. */
        int (*peek_key_id)(const struct kc_kms_config *cfg, const char *key, char ret_key_id[65],
                           struct kc_err *err);

        /* Optional: the key (its id, as records name it, and version) a blob names in its own
         * bytes, read without a provider state or any call: what the record of a refused
         * decrypt without a key names.  < 0 (or NULL): the blob names none that can be read. */
        int (*peek_blob_key)(const uint8_t *blob, size_t blob_len, char ret_key_id[65],
                             uint32_t *ret_key_version);
};

/*
 * Open the KMS layer: providers are opened lazily on first use. The audit log is opened here
 * (created when missing), and the keystore directory created for the head when that is in it
 * (cfg->audit_head NULL); a failed open takes back the directory it created.
 */
int kc_kms_open(const struct kc_kms_config *cfg, struct kc_kms **ret, struct kc_err *err);
void kc_kms_close(struct kc_kms *k);
DEFINE_CLEANUP_FUNC(struct kc_kms *, kc_kms_close)
#define _cleanup_kms_ _cleanup_(kc_kms_closep)

/* The chain head of cfg's audit log: audit_head, else <keystore_dir>/audit.head.  -ENOMEM. */
int kc_kms_audit_head(const struct kc_kms_config *cfg, char **ret);

/*
 * The evidence that cfg's audit chain held records, for a log and head
 * found missing (kc_audit_evidence, docs/audit.md): the local keystore
 * holds keys, and kc_kms_create_key() creates none before its intent
 * record is durable.  None in an initramfs (kc_in_initrd()), whose chain
 * starts afresh at every boot beside a copy of the keystore.  ret borrows
 * cfg->keystore_dir.
 */
void kc_kms_audit_evidence(const struct kc_kms_config *cfg, struct kc_audit_evidence *ret);

/* Whether this build has a KMS provider of that name ("local", "aws"). */
bool kc_kms_provider_known(const char *name);

/* Split "scheme:rest" into provider and key; bare "alias/x" or an id means local. */
int kc_kms_resolve(const char *key_ref, const struct kc_kms_provider **ret_provider,
                   const char **ret_key, struct kc_err *err);

/*
 * The key id the audit records of key_ref name it by ("alias/pg", "local:ID"
 * -> ID), for readers of the audit trail (audit list --key): no KMS is
 * opened, no audit record written, no keystore changed, nothing asked of a
 * remote KMS.  An alias the provider cannot look up that way is
 * -EOPNOTSUPP, an unknown one -ENOKEY, each with a line in err.
 */
int kc_kms_peek_key_id(const struct kc_kms_config *cfg, const char *key_ref, char ret_key_id[65],
                       struct kc_err *err);

int kc_kms_generate_data_key(struct kc_kms *k, const struct kc_kms_request *req, const char *key_ref,
                             const struct kc_context *ctx, size_t nbytes, struct kc_data_key *ret,
                             struct kc_err *err);
int kc_kms_decrypt(struct kc_kms *k, const struct kc_kms_request *req, const char *key_ref,
                   const uint8_t *blob, size_t blob_len, const struct kc_context *ctx,
                   void **ret_plaintext, char ret_key_id[65], uint32_t *ret_key_version,
                   struct kc_err *err);
int kc_kms_re_encrypt(struct kc_kms *k, const struct kc_kms_request *req, const char *src_key_ref,
                      const uint8_t *blob, size_t blob_len, const struct kc_context *src_ctx,
                      const char *dst_key_ref, const struct kc_context *dst_ctx,
                      struct kc_data_key *ret, struct kc_err *err);
/*
 * Encrypt (AWS KMS Encrypt): wrap caller-supplied key material under key_ref
 * bound to ctx, e.g. the volume key of a LUKS2 volume being adopted.
 * ret->plaintext is NULL: the caller already holds the plaintext.
 */
int kc_kms_encrypt(struct kc_kms *k, const struct kc_kms_request *req, const char *key_ref,
                   const struct kc_context *ctx, const void *plaintext, size_t len,
                   struct kc_data_key *ret, struct kc_err *err);
int kc_kms_describe_key(struct kc_kms *k, const struct kc_kms_request *req, const char *key_ref,
                        struct kc_key_info *ret, struct kc_err *err);

/*
 * The DescribeKey answers of one round over many volumes: a revocation
 * pass, one `kmscrypt status`.  A host's volumes mostly share one CMK:
 * described once a round, not once a volume, a remote KMS's request quota
 * and the audit log see one DescribeKey per key and round however many
 * volumes the key protects.  A failed lookup counts for the round too: a
 * KMS that does not answer is waited for once.  The next round asks again.
 * kc_kms_describe_key_in() with lookups NULL is kc_kms_describe_key(); the
 * record of a shared lookup carries the request of the first one.
 */
struct kc_key_lookups;
struct kc_key_lookups *kc_key_lookups_new(void);
void kc_key_lookups_free(struct kc_key_lookups *l);
DEFINE_CLEANUP_FUNC(struct kc_key_lookups *, kc_key_lookups_free)
int kc_kms_describe_key_in(struct kc_kms *k, struct kc_key_lookups *lookups, const struct kc_kms_request *req,
                           const char *key_ref, struct kc_key_info *ret, struct kc_err *err);
/*
 * Changes of state: create, enable/disable, rotate, schedule and cancel
 * deletion.  Each writes an intent record ("result":"pending") before the
 * provider is called and its outcome record after (docs/audit.md):
 *   < 0  nothing was changed (intent record not written, or refused);
 *     0  changed, both records written;
 *     1  changed, but the outcome record could not be written: err holds a
 *        one-line warning saying so; ret_* are filled.  The change stands.
 */
int kc_kms_create_key(struct kc_kms *k, const struct kc_kms_request *req, const char *provider,
                      const char *alias, const char *description, struct kc_key_info *ret,
                      struct kc_err *err);
int kc_kms_list_keys(struct kc_kms *k, const struct kc_kms_request *req, const char *provider,
                     struct kc_key_info **ret, size_t *ret_n, struct kc_err *err);
int kc_kms_set_enabled(struct kc_kms *k, const struct kc_kms_request *req, const char *key_ref,
                       bool enabled, struct kc_err *err);
int kc_kms_rotate_key(struct kc_kms *k, const struct kc_kms_request *req, const char *key_ref,
                      uint32_t *ret_new_version, struct kc_err *err);
int kc_kms_schedule_deletion(struct kc_kms *k, const struct kc_kms_request *req, const char *key_ref,
                             unsigned days, time_t *ret_date, struct kc_err *err);
int kc_kms_cancel_deletion(struct kc_kms *k, const struct kc_kms_request *req, const char *key_ref,
                           struct kc_err *err);

/*
 * Write-ahead for a change built on the calls above (a volume header
 * rewritten after ReEncrypt): kc_kms_audit_intent() before the change, 0 or
 * a negative errno (with err naming the audit problem) on which the change
 * must not be made; kc_kms_audit_outcome() after it, returning as the
 * changes of state above do (result < 0: recorded and returned; 1: done,
 * outcome record missing, err says so).
 */
int kc_kms_audit_intent(struct kc_kms *k, const struct kc_kms_request *req, const struct kc_audit_record *rec,
                        struct kc_err *err);
int kc_kms_audit_outcome(struct kc_kms *k, const struct kc_kms_request *req, struct kc_audit_record *rec,
                         int result, struct kc_err *err);

/*
 * Audit a refusal decided before any KMS call, such as an attach refused
 * because the volume's context is not the one this host expects: the same
 * chain, the same caller and volume (from req) as the calls above.
 * rec->result must be negative.  0, or the negative errno of the write.
 */
int kc_kms_audit_refusal(struct kc_kms *k, const struct kc_kms_request *req, struct kc_audit_record *rec);

/* The built-in providers. */
extern const struct kc_kms_provider kc_kms_provider_local;
#if HAVE_AWS
extern const struct kc_kms_provider kc_kms_provider_aws;    /* agent/aws/kms-aws.c */
#endif
