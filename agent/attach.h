/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The activation path of DESIGN.md, and its inverse:
 *
 *   header + token (luks) -> context check -> unwrap (kms) -> digest check
 *   (luks) -> logon key in this thread's keyring (kernel-keyring) ->
 *   dm-crypt mapping referencing the key (dmsetup-helpers) -> key dropped,
 *   every userspace copy wiped.
 *
 * On any failure nothing is left behind: no mapping, no key in a keyring,
 * the header untouched.  Functions return 0 or a negative errno and fill
 * err with one line naming what went wrong.
 */

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/blockdev.h"
#include "agent/context.h"
#include "agent/kms.h"
#include "lib/error.h"

/*
 * Steps 5 and 6 of one attach, as kc_attach hands them on: the mapping,
 * whose table names the key by its keyring description (never the key).
 */
struct kc_mapping {
        const char *name;
        const char *dm_uuid;
        const char *key_description;      /* "kmscrypt:<luks-uuid>" */
        const char *params;               /* dm-crypt table parameters */
        uint64_t size;                    /* sectors */
        bool read_only;
        /*
         * The proof that the key is the volume's (the LUKS2 digest check),
         * or NULL.  The mapping serves no I/O before check(check_userdata)
         * has returned 0: its table is loaded but not resumed, and it is
         * removed when the check fails.  A loader runs it beside the
         * kernel's table load, and exactly once.
         */
        int (*check)(void *userdata);
        void *check_userdata;
        /*
         * The check already runs on another thread and check() only waits
         * for its verdict: a loader calls it where it would join the check,
         * without a thread of its own for it.
         */
        bool check_elsewhere;
};

/*
 * Add key (key_size bytes) as a logon key to the calling thread's keyring,
 * create the mapping that references it, drop the key: on failure nothing
 * is left, neither key nor mapping.
 */
int kc_mapping_load(const struct kc_mapping *m, const void *key, size_t key_size, struct kc_err *err);

/*
 * kc_mapping_load with gate(gate_userdata) between the table load and the
 * resume (see kc_dm_create_gated) instead of m->check: for a loader that
 * runs the check elsewhere (kmscryptd's mapper processes ask the agent).
 */
int kc_mapping_load_gated(const struct kc_mapping *m, const void *key, size_t key_size,
                          int (*gate)(void *userdata), void *gate_userdata, struct kc_err *err);

/* Whatever runs kc_mapping_load for kc_attach: kmscryptd hands it to its mapper processes. */
typedef int (*kc_mapping_loader_t)(void *userdata, const struct kc_mapping *m, const void *key, size_t key_size,
                                   struct kc_err *err);

struct kc_attach_params {
        const char *device;               /* path, or UUID=..., LABEL=... */
        const char *header;               /* detached header, or NULL */
        const char *name;                 /* mapping name; NULL: derived from the volume */
        const struct kc_context *expect;  /* refuse unless the token's context equals it; NULL: no check */
        char *const *providers;           /* refuse unless the token's KMS provider is one of them (kms=
                                           * of the volumes file); NULL: any */
        bool read_only;
        unsigned flags;                   /* KC_CRYPT_* performance flags */
        kc_mapping_loader_t loader;       /* NULL: kc_mapping_load in this thread */
        void *loader_userdata;
        /*
         * Load the header first, rather than go on from a peek at it while
         * libcryptsetup loads it: the peek buys one attach's latency with
         * CPU (a second read and parse of the header), which a caller
         * whose other attaches keep every CPU busy already is better off
         * without (kmscryptd attaching many volumes at once).
         */
        bool no_peek;
        /*
         * With kc_attach(NULL, ...): the KMS, opened through this only once
         * the header shows a volume whose key is to be asked for (or whose
         * refusal is to be audited).  Opening the local KMS creates its
         * keystore and audit log, which a device refused from its header
         * alone (not LUKS2, no kmscrypt token, not a block device) must not
         * leave behind; and no second read of the header is needed to know
         * it first.  Called again after a failure, it must fail again.
         */
        int (*open_kms)(void *userdata, struct kc_kms **ret);
        void *open_kms_userdata;
};

struct kc_attach_result {
        char name[128];
        char luks_uuid[40];
        char device[PATH_MAX];            /* resolved device path */
        bool already;                     /* it was attached before this call */
        bool removed_half_made;           /* a killed attach's leftover of that name was removed first */
        bool cancelled_deferred_remove;   /* already: a pending deferred removal of it was cancelled */
        /*
         * already: the mapping is suspended with its key wiped (kmscryptd's
         * revocation policy, or cryptsetup luksSuspend), serving no I/O until
         * resumed; the callers that attach for a user refuse it as such.
         */
        bool key_wiped;
};

/* Whether provider is one of providers (a NULL list allows any). */
bool kc_attach_provider_allowed(char *const *providers, const char *provider);

/*
 * Mapping name for a volume when none is given: the context's "volume-id"
 * when it is a valid dm name, else "luks-<uuid>" (systemd-cryptsetup's habit).
 */
int kc_attach_default_name(const struct kc_context *ctx, const char *luks_uuid, char **ret_name);

struct kc_luks;
struct kc_luks_segment;
struct kc_token;

/*
 * Activation steps 3 and 4: unwrap the token's key under its own context and
 * prove it is this volume's (LUKS2 digest, length included); fills in
 * seg->key_size.  The key is kc_secret memory, the caller frees it.  Shared
 * with the agent's resume of a suspended volume, which must prove the key the
 * same way before giving it back to dm-crypt.
 */
int kc_attach_unwrap_key(struct kc_kms *kms, const struct kc_kms_request *req, struct kc_luks *l,
                         const struct kc_token *tok, struct kc_luks_segment *seg, void **ret_key,
                         struct kc_err *err);

/*
 * Activation step 2, the host's policy for the volume on device: its token
 * tok must carry the context p->expect (NULL: any) and name one of the KMS
 * providers p->providers (NULL: any).  A volume bound to another context,
 * or wrapped by a provider its entry does not allow, is refused (-EPERM,
 * err says why) before its key is asked for, and the refusal audited like
 * a KMS call (operation: "Attach", or "ResumeVolume" for the agent's resume
 * of a volume it suspended), so a disk that turns up where it does not
 * belong leaves a trace in the chain.  0 when the token complies.
 */
int kc_attach_check_policy(struct kc_kms *kms, const struct kc_kms_request *req, const struct kc_token *tok,
                           const struct kc_attach_params *p, const char *operation, const char *device,
                           struct kc_err *err);

/*
 * The two halves of kc_attach_check_policy(), for a caller that asks again
 * and again about one volume (the agent's resume, at every revocation
 * pass) and audits a refusal once for each reason: why tok breaks p
 * (-EPERM, err says why; 0 when it complies), nothing audited; and the
 * audit record of that refusal (why: the breach's err), the audit write's
 * result.
 */
int kc_attach_policy_breach(const struct kc_token *tok, const struct kc_attach_params *p, const char *device,
                            struct kc_err *err);
int kc_attach_audit_refusal(struct kc_kms *kms, const struct kc_kms_request *req, const struct kc_token *tok,
                            const char *operation, const char *device, const struct kc_err *why);

/*
 * The key of a refusal's audit record made before any KMS call: the
 * token's, as its provider names it (a local key's bare UUID) and its
 * version, as the records of the KMS's own operations name it, so that
 * kmscrypt audit list --key finds the refusals too.  rec borrows tok's.
 */
void kc_attach_audit_key(const struct kc_token *tok, struct kc_audit_record *rec);

/*
 * The whole activation path.  -EINPROGRESS when the volume's kmscrypt data
 * key replacement was interrupted: nothing is attached; the caller finishes
 * it (kc_reencrypt() with resume) and calls again.  -ENOKEY when the device
 * is LUKS2 but has no kmscrypt token (final: waiting will not grow one,
 * unlike an -ENOENT or -ENODEV device that is not there yet).  kms NULL:
 * p->open_kms opens it when it is first needed.
 */
int kc_attach(struct kc_kms *kms, const struct kc_kms_request *req, const struct kc_attach_params *p,
              struct kc_attach_result *ret, struct kc_err *err);

/* Remove a kmscrypt mapping by name; -ENXIO if absent, -EPERM if not a kmscrypt volume. */
int kc_detach(const char *name, bool deferred, struct kc_err *err);

/* What `kmscrypt status` reports about one mapping. */
struct kc_volume_status {
        char name[128];
        char luks_uuid[40];
        char device[PATH_MAX];      /* backing data device */
        char cipher[64];
        uint32_t key_size;          /* bytes */
        char key_description[160];  /* logon key the table references */
        uint32_t sector_size;
        uint64_t size;              /* 512-byte sectors */
        uint64_t offset;            /* data offset on the device, 512-byte sectors */
        unsigned flags;             /* KC_CRYPT_* */
        bool read_only, suspended;
        bool key_wiped;             /* suspended and its key wiped (revoke=suspend): key_description is what it was */
        uint32_t open_count;
        /* from the token, when the header can be read (has_token) */
        bool has_token;
        char provider[16];
        char key_id[256];
        uint32_t key_version;
        struct kc_context *context; /* owned; freed by kc_volume_status_clear */
};
void kc_volume_status_clear(struct kc_volume_status *s);

/* Status of one mapping; -ENXIO if absent, -EPERM if it is not a kmscrypt volume. */
int kc_volume_status(const char *name, const char *header, struct kc_volume_status *ret, struct kc_err *err);

/* Names of every attached kmscrypt mapping, suspended ones with a wiped key included. NULL-terminated, kc_strv_free(). */
int kc_volume_list(char ***ret_names);
