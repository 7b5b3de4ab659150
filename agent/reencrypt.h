/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Data key replacement (docs/rotation.md, "Data key replacement"): a new
 * data key from the KMS and a LUKS2 reencryption of the data, online when
 * the volume is attached, crash-safe at every step.
 *
 * libcryptsetup drives reencryption through keyslots, so for the length of
 * the operation the volume has two temporary keyslots (old key, new key)
 * under one random passphrase.  That passphrase and the new key's blob are
 * wrapped by the KMS and kept in the token ("kmscrypt_reencrypt", see
 * agent/token.h), so whoever can unwrap the volume's key can also resume an
 * interrupted reencryption, and nobody else can.
 *
 *   start   Decrypt the old key (digest-checked), GenerateDataKey (same CMK,
 *           same context), Encrypt a random passphrase (context plus
 *           purpose=reencrypt); write the token member naming two free
 *           keyslots; add the keyslots (cheap PBKDF: the passphrase is
 *           random); crypt_reencrypt_init_by_passphrase.
 *   run     crypt_reencrypt_run with a progress callback (rate limit, stop).
 *   finish  prove the new blob (Decrypt + LUKS2 digest), put the mapping
 *           back on a kmscrypt logon key, remove the temporary keyslots,
 *           write the token without the member (one metadata write), read
 *           it back, audit "ReencryptVolume".
 *
 * Every state a crash can leave is recognised from the header alone and
 * carried on by resume: member but no keyslots yet, keyslots but no
 * reencryption yet, reencryption in progress (libcryptsetup recovers the
 * hotzone), reencryption finished but member still there.
 */

#include <stdbool.h>
#include <stdint.h>

#include "agent/caller.h"
#include "agent/context.h"
#include "agent/kms.h"
#include "agent/volume.h"
#include "lib/error.h"

/*
 * Called after each hotzone: bytes done and total.  Return non-zero to stop
 * (cleanly: the header records how far it got, resume carries on).
 */
typedef int (*kc_reencrypt_progress_fn)(uint64_t done, uint64_t total, void *userdata);

struct kc_reencrypt_params {
        struct kc_volume_ref ref;
        const char *mapping;                 /* attached mapping of the volume; NULL: found, or offline */
        const char *resilience;              /* "checksum" (default) or "journal" */
        uint64_t rate_limit;                 /* bytes per second, 0: unlimited */
        bool resume;                         /* only carry on one in progress (-ENOENT if none) */
        bool offline;                        /* do not look for a mapping (file images, tests) */
        const struct kc_context *expect;     /* refuse unless the token's context equals it; NULL: no check */
        const void *recovery_passphrase;     /* kc_secret: re-create the recovery keyslot for the new key */
        size_t recovery_passphrase_len;
        const struct kc_luks_pbkdf *pbkdf;   /* PBKDF of that recovery keyslot, NULL: defaults */
        kc_reencrypt_progress_fn progress;
        void *userdata;
};

struct kc_reencrypt_result {
        char uuid[40];
        char provider[16];                   /* of the key, as the token names it ("local") */
        char key_id[65];
        uint32_t old_key_version;
        uint32_t new_key_version;
        char mapping[128];                   /* the mapping reencrypted online, or "" */
        bool resumed;                        /* carried on one in progress */
        bool stopped;                        /* the progress callback asked to stop: resume later */
        int recovery_keyslot;                /* re-created recovery keyslot, -1 for none */
        bool stack_taken_over;               /* resumed online on the device stack of a killed run */
        bool held_io_failed;                 /* ... whose held chunk I/O had to be failed (killed between
                                                the overlay switch and the header update) */
};

/*
 * Starting and finishing are written ahead in the audit log (docs/audit.md):
 * without their intent record the header is not changed.  Returns 0, or 1
 * when the reencryption finished but its last outcome record could not be
 * written (err holds that warning, ret is filled); one started whose outcome
 * record is missing stops with an error, resumable.
 */
int kc_reencrypt(struct kc_kms *kms, const struct kc_caller *caller, const struct kc_reencrypt_params *p,
                 struct kc_reencrypt_result *ret, struct kc_err *err);

/*
 * Is a kmscrypt data key replacement pending on this volume (its token
 * carries the reencrypt member)?  1 yes, 0 no (also for a LUKS2 reencryption
 * kmscrypt did not start: not ours to carry on), negative errno when the
 * header cannot be read.
 */
int kc_reencrypt_pending(const struct kc_volume_ref *ref, struct kc_err *err);
