/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The agent's volume manager: the state of every configured volume, the
 * attach workers, retry with backoff, and the revocation policy.
 *
 * Every attach runs on a thread of its own (kc_attach loads the key into
 * the calling thread's keyring and creates the table from that same
 * thread), at most max_parallel at a time.  The KMS layer is not
 * thread-safe: each attach has a KMS handle to itself, opened for it or
 * taken from the few that finished an attach well within the last 5 s (an
 * attach burst at start opens about one a slot, not one a volume); outside
 * a burst it is a fresh handle, which sees a keystore or provider that
 * came back.
 *
 * Errors that may pass (KMS or device unavailable) put a volume in
 * "waiting": it is tried again after an exponential backoff with jitter
 * (1 s doubling to 30 s) until its timeout, then it is "failed".  Refusals
 * (wrong context, disabled key, tampered blob) fail at once.
 *
 * Nothing here ever detaches a volume on its own: stopping the manager
 * waits for running attaches and leaves every mapping in place.
 */

#include <stdbool.h>

#include "agent/attach.h"
#include "agent/caller.h"
#include "agent/daemon/protocol.h"
#include "agent/daemon/volumes.h"
#include "agent/kms.h"

struct kc_manager_config {
        struct kc_kms_config kms;     /* strings copied */
        unsigned max_parallel;        /* attaches at once, >= 1 */
        unsigned revoke_interval;     /* seconds between CMK checks; 0: never */
        const char *state_dir;        /* the agent's own state (revoke.h); copied; NULL: KC_STATEDIR */
        struct kc_mapper *mapper;     /* loads the mappings of attaches (mapper.h); NULL: their threads do */
        const char *cli;              /* kmscrypt(8), run to finish interrupted reencryptions; copied */
        const char *config_file;      /* the agent's -c FILE, passed on to cli; copied; NULL: none given */
};

struct kc_manager;

int kc_manager_new(const struct kc_manager_config *cfg, struct kc_manager **ret);
/* Stop (see kc_manager_stop) and free. */
void kc_manager_free(struct kc_manager *m);
DEFINE_CLEANUP_FUNC(struct kc_manager *, kc_manager_free)

/*
 * Install a new set of configured volumes (takes ownership of v).  New
 * volumes are scheduled for attach at once when attach_new, else they
 * stay "detached" until asked for; volumes gone from the file are
 * forgotten (never detached); changed options apply to the next attach.
 */
void kc_manager_set_volumes(struct kc_manager *m, struct kc_volumes *v, bool attach_new);

/* Start the scheduler thread. */
int kc_manager_start(struct kc_manager *m);

/*
 * Stop scheduling, wake every waiter, and wait for running attaches to
 * finish.  Mappings stay as they are.
 */
void kc_manager_stop(struct kc_manager *m);

/*
 * Schedule every configured volume that is not attached (failed and
 * detached ones too) for an attach now, with a fresh timeout.
 */
void kc_manager_attach_all(struct kc_manager *m);

/*
 * Block until no volume is pending, attaching or waiting (nofail volumes
 * only when include_nofail).  -ESHUTDOWN if the manager stops first.
 */
int kc_manager_wait_settled(struct kc_manager *m, bool include_nofail);
/* The same for timeout_ms at most (0: no limit): -ETIMEDOUT when some volume has yet to settle then. */
int kc_manager_wait_settled_for(struct kc_manager *m, bool include_nofail, unsigned timeout_ms);

/*
 * The wait of `kmscrypt attach --all`, which tries every volume once as the
 * command does without an agent: kc_manager_wait_settled_for(m, false, ...),
 * and besides until no nofail volume has an attempt under way or due.  A
 * nofail volume between its tries (its device not there yet, a KMS outage)
 * holds it up no longer.
 */
int kc_manager_wait_tried_for(struct kc_manager *m, unsigned timeout_ms);

/*
 * Block until a volume's state changes after *gen (0, or what an earlier
 * call left there), timeout_ms at most (0: no limit); *gen is brought up to
 * date.  0 on a change, -ETIMEDOUT without one, -ESHUTDOWN once the manager
 * stops.
 */
int kc_manager_wait_change(struct kc_manager *m, uint64_t *gen, unsigned timeout_ms);

/* The state of every configured volume, in file order. Caller frees. */
int kc_manager_snapshot(struct kc_manager *m, struct kc_agent_volume **ret, size_t *ret_n);

/*
 * Attach one configured volume now on the calling thread.  On an error
 * that may pass the volume keeps waiting and retrying in the background;
 * without wait that first error is returned at once, with wait the call
 * blocks until the volume settles (attached by a retry: 0 and its result;
 * failed when its timeout ran out, or suspended or detached meanwhile: its
 * error and reason; -ESHUTDOWN when the manager stops; -ENOENT when a
 * reload drops it; -ECANCELED when the requester's connection watch_fd,
 * -1 for none, hangs up meanwhile).  A wait starts a new round of its
 * timeout, but for a volume whose last round failed with nobody told (the
 * start's, ending before the units ordered after the agent ask): one more
 * try in that round, its outcome at once, unless that try finds no device.
 * -ENOENT if no such volume is configured.
 */
int kc_manager_attach_volume(struct kc_manager *m, const char *name, const struct kc_caller *caller, bool wait,
                             int watch_fd, struct kc_attach_result *ret, struct kc_err *err);

/* Attach a device that is not (necessarily) configured, within the parallelism bound. */
int kc_manager_attach_device(struct kc_manager *m, const struct kc_attach_params *p,
                             const struct kc_caller *caller, struct kc_attach_result *ret,
                             struct kc_err *err);

/*
 * A block device appeared (udev -> kmscrypt-attach@MAJ:MIN.service ->
 * kmscrypt-hotplug).  The agent, not the helper, decides, so every refusal
 * is audited by the one audit writer:
 *   - a device without a kmscrypt token is not ours: 0, note says why;
 *   - the configured volume on it with hotplug=no: 0, note says so;
 *   - the configured volume on it with hotplug=yes: attached as by
 *     kc_manager_attach_volume() with wait (its expected context checked,
 *     a refusal audited there; an error that may pass retried until its
 *     timeout; a failed round's outcome is not counted as told): 1 and
 *     ret filled;
 *   - a kmscrypt volume no entry names: the volumes file is re-read once
 *     through reload (NULL: not), as its entry may be newer than the
 *     agent's list; still none: refused with -EPERM and audited.
 * Events for one device are serialized per volume, so a repeated event
 * finds the mapping there ("already attached") and makes no second one.
 */
struct kc_manager_reload {
        int (*fn)(void *userdata, size_t *ret_volumes, struct kc_err *err);   /* the agent's reload */
        void *userdata;
};
int kc_manager_hotplug(struct kc_manager *m, dev_t devno, const struct kc_caller *caller,
                       const struct kc_manager_reload *reload, int watch_fd, struct kc_attach_result *ret,
                       char ret_note[KC_ERR_MSG_MAX], struct kc_err *err);

/*
 * The volumes held attached or suspended whose mapping is gone, removed
 * without the agent (cryptsetup close, dmsetup remove, a kmscrypt detach
 * that did not go through it), become "detached" as after
 * kc_manager_detach(): with the reason, one warning, their suspension
 * forgotten, and never attached again on their own.  The revocation pass
 * calls it first, and so does a status request; nothing without
 * device-mapper.
 */
void kc_manager_notice_removed(struct kc_manager *m);

/* Detach a mapping; a configured volume becomes "detached" and stays so until attached again. */
int kc_manager_detach(struct kc_manager *m, const char *name, bool deferred, struct kc_err *err);

/* Whether an errno from an attach may pass with time (KMS or device away) and is worth a retry. */
bool kc_attach_error_retryable(int error);
