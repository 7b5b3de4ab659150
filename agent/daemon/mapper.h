/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * kmscryptd's mapper processes: where its attach threads load their
 * mappings (activation steps 5 and 6, kc_mapping_load).
 *
 * libdevmapper keeps process-wide state (its control fd, its queue of
 * /dev node operations, its log function), so one process runs one of its
 * calls at a time (dmsetup-helpers' lock), and with many volumes at start
 * every attach queued there.  The kernel's part of a mapping (the device,
 * the dm-crypt constructor, the resume) runs in parallel across processes,
 * though: in the vm guest 100 mappings made from four processes took
 * 1.5 s, from one 2.0 to 2.5 s.  So kmscryptd forks a few single-threaded
 * mapper processes at start, before any thread, KMS or secret exists,
 * each with its own libdevmapper.
 *
 * The key never passes through the kernel on its way: each mapper owns a
 * slot in one shared page that is locked and left out of core dumps; the
 * attach thread writes the key there and wipes it when the mapper answers.
 * The request over the socketpair carries only the mapping, whose table
 * names the key by its keyring description.  The mapper adds the key to
 * its own thread keyring, so that it alone possesses it (DESIGN.md), and
 * dies with the agent (PR_SET_PDEATHSIG): a key it held goes with it.
 *
 * A mapper that dies (killed, out of memory) is replaced when the agent
 * asks for that (kc_mapper_supervise): by then the agent has threads, so
 * the replacement is not forked but executed afresh from the agent's own
 * binary, and maps the slots from the memfd they live in.  Meanwhile the
 * other mappers, or the attach threads themselves, make the mappings.
 */

#include <stddef.h>

#include "agent/attach.h"

struct kc_mapper;

/*
 * Fork n mapper processes.  Call before any thread starts.  On failure
 * nothing is left running; the caller may load mappings in its threads
 * instead.
 */
int kc_mapper_new(unsigned n, struct kc_mapper **ret);

/*
 * Replace every mapper that dies, from now on, by one executed from exe
 * (the agent's own binary: "/proc/self/exe") as "kmscryptd
 * --mapper-process INDEX AGENT-PID", at most once a second a slot.  A
 * thread of its own watches the mappers; it stops in kc_mapper_free.
 */
int kc_mapper_supervise(struct kc_mapper *mp, const char *exe);

/*
 * The main of such a replacement (kmscryptd --mapper-process INDEX AGENT):
 * returns only on a bad start (1), when it was not started by an agent.
 */
int kc_mapper_process_main(const char *index, const char *agent);

/*
 * Stop the supervision, close the mappers' sockets (they exit on it), reap
 * them (killing those not gone within 2 s; one that cannot be reaped 2 s
 * later is left to init), wipe the slots.
 */
void kc_mapper_free(struct kc_mapper *mp);
DEFINE_CLEANUP_FUNC(struct kc_mapper *, kc_mapper_free)

/*
 * A kc_mapping_loader_t: kc_mapping_load in an idle mapper, waiting for one
 * when all are busy, or in this thread when none is left alive.  userdata
 * is the struct kc_mapper.
 */
int kc_mapper_load(void *userdata, const struct kc_mapping *m, const void *key, size_t key_size,
                   struct kc_err *err);

/*
 * A mapper that has not answered a load within ms (default 60 s) is killed
 * and the load fails with -ECONNRESET, as when it dies.  Tests shorten it.
 */
void kc_mapper_set_reply_timeout(struct kc_mapper *mp, int ms);
