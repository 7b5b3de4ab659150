/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Revocation policy of an attached volume (kmscrypt-volumes(5) revoke=):
 * describe the CMK its token names; when the key is disabled, pending
 * deletion or destroyed,
 *   keep    - leave the volume running (what managed clouds do);
 *   suspend - dm suspend, then "key wipe" through the dm message interface:
 *             I/O blocks and the key leaves kernel memory.
 * When the key is enabled again, a volume this policy suspended is resumed
 * with a fresh unwrap: key into this thread's keyring, "key set" with a
 * keyring reference, key dropped, dm resume.  Suspend and resume each write
 * an audit record (SuspendVolume, ResumeVolume); the describe is audited by
 * the KMS layer.  ResumeVolume is written before the key reaches dm-crypt,
 * and a volume whose record cannot be written stays suspended.
 */

#include <stdbool.h>

#include "agent/caller.h"
#include "agent/daemon/volumes.h"
#include "agent/kms.h"

enum kc_revoke_action {
        KC_REVOKE_NONE,         /* key enabled, nothing to do (nothing suspended by the agent, or no more) */
        KC_REVOKE_KEPT,         /* key revoked, volume kept running (keep) */
        KC_REVOKE_SUSPENDED,    /* key revoked, volume suspended and its key wiped */
        KC_REVOKE_STILL,        /* key still revoked, volume still suspended */
        KC_REVOKE_RESUMED,      /* key enabled again, volume resumed with a fresh unwrap */
        KC_REVOKE_REFUSED,      /* key enabled again, but the volume no longer fits its entry: still suspended */
        KC_REVOKE_FOREIGN,      /* suspended, key wiped, not by the agent: nothing to wipe, nothing to resume */
};

/* The reason of KC_REVOKE_FOREIGN, and of an attach that finds such a mapping. */
#define KC_REVOKE_FOREIGN_REASON \
        "suspended, key wiped, not by this agent (cryptsetup luksSuspend?), which leaves it so"

struct kc_revoke_outcome {
        enum kc_revoke_action action;
        char reason[KC_ERR_MSG_MAX];
        /*
         * KC_REVOKE_KEPT: its KeepVolume record is written (now or before);
         * KC_REVOKE_REFUSED: the failed ResumeVolume record of this reason is.
         */
        bool audited;
        /*
         * The suspension is the agent's by its mark (kc_revoke_recall()),
         * though prior did not say so, as an agent started now would find.
         */
        bool recalled;
        /*
         * KC_REVOKE_SUSPENDED, _STILL, _REFUSED: 0 when the agent's mark of
         * its suspension is written (kc_revoke_remember()), else why it
         * could not be, which the reason says too.  The suspension is made
         * all the same, and the mark tried again at every check.
         */
        int mark_error;
};

/*
 * Check one attached volume (conf) against its CMK and act per conf->revoke.
 * prior says what earlier checks did: KC_REVOKE_PRIOR_SUSPENDED, the agent
 * suspended it (only those are resumed); KC_REVOKE_PRIOR_KEPT, it is already
 * kept running with its key revoked and that is on record (audited once;
 * a record that could not be written is tried again at the next check).
 * refused (NULL: none) is the reason of a KC_REVOKE_REFUSED of this
 * suspension that is on record: a refusal for the same reason is not
 * audited again, one for another reason is.
 */
enum {
        KC_REVOKE_PRIOR_SUSPENDED = 1 << 0,
        KC_REVOKE_PRIOR_KEPT      = 1 << 1,
};

/*
 * The CMK states a pass over the volumes looked up (kms.h): its checks share
 * them, so that each CMK is described once a pass, recorded without a
 * volume and with the detail KC_REVOKE_LOOKUP_DETAIL.
 */
#define KC_REVOKE_LOOKUP_DETAIL "revocation check"

/* keys: the pass's lookups, NULL to describe the key for this check alone (recorded with the volume). */
int kc_revoke_check(struct kc_kms *kms, const struct kc_kms_config *cfg, const char *state_dir,
                    const struct kc_caller *self, const struct kc_volume_conf *conf, unsigned prior,
                    const char *refused, struct kc_key_lookups *keys, struct kc_revoke_outcome *ret,
                    struct kc_err *err);

/*
 * The suspensions this policy made outlive the agent: before it suspends a
 * volume, the agent marks it, naming the mapping's dm UUID, twice: in the
 * file <state_dir>/suspended/<name>, durably, and in the kernel keyring
 * (a mark in root's user keyring, kernel-keyring/keyring.h), which lives as
 * long as the mapping can and needs no room on a file system.  A resume or
 * a detach removes both.  Marks that cannot be written (the file system
 * full or read-only, and the keyring quota spent) do not stop the suspend:
 * the check that finds the suspension still the agent's writes them then
 * (mark_error says why not yet: 0 once either is there).  A restarted
 * agent asks kc_revoke_recall() about each volume it finds attached: true
 * when either mark is there and the kernel agrees (that mapping, suspended,
 * key wiped), so the agent resumes it when the CMK is enabled again; so
 * does a check that finds a suspension prior does not call the agent's
 * (recalled).  Marks the kernel contradicts (resumed or removed by hand)
 * are dropped.  A suspension made by anyone else (cryptsetup luksSuspend)
 * is never resumed.  Nor is one another tool made with the key left in
 * (dmsetup suspend, a snapshot): revoke=suspend wipes its key all the
 * same, its marks say " found-suspended" after the dm UUID, and once the
 * CMK is enabled again the key goes back but the resume is that tool's.
 */
int kc_revoke_remember(const char *state_dir, const char *name, const char *dm_uuid);
void kc_revoke_forget(const char *state_dir, const char *name);
bool kc_revoke_recall(const char *state_dir, const char *name);
