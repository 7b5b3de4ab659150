/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The volume manager's rounds (agent/daemon/manager.c) and what a request
 * that waits for a volume is told after one, with the attach itself faked:
 * kc_attach, kc_dm_available, kc_kms_open and kc_kms_close are wrapped at
 * link time (-Wl,--wrap, see agent/daemon/Makemodule.am), and so is
 * kc_dm_info (every mapping is there, unless a test removed it), so neither a
 * KMS nor device-mapper is needed.  The device check before them is the
 * manager's own and real: a volume's device is a file that is there or not.
 * So is kc_revoke_check: its outcome is the test's, and the manager's
 * bookkeeping of what the revocation policy did is checked by what the
 * next check is told (its prior).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/daemon/manager.h"
#include "agent/daemon/revoke.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "tests/unit/check-main.h"

/* What the faked KMS says: 0 it unwraps (the attach succeeds), else this error. */
static atomic_int kms_error;
static atomic_uint attaches;

static void pause_ms(unsigned ms) {
        struct timespec t = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000 };

        nanosleep(&t, NULL);
}

/* While set, an attach waits (it is under way, its volume busy). */
static atomic_bool attach_held;
/* While set, an attach finds the mapping there, suspended with its key wiped. */
static atomic_bool attach_wiped;

/*
 * What the faked revocation check says (its reason: revoke_reason, or one
 * that names the action), or the error it fails with (revoke_error, its
 * message revoke_reason); how many checks began and ended; the prior and
 * the refusal on record each was told, by its number (the first is 1).
 */
static atomic_int revoke_action = KC_REVOKE_NONE;
static atomic_int revoke_error;
static _Atomic(const char *) revoke_reason;
static atomic_uint revoke_started, revoke_checks;
static atomic_uint revoke_priors[256];
static char revoke_refused[256][KC_ERR_MSG_MAX];
static atomic_bool revoke_held, revoke_waiting;     /* a held check waits, saying so */
static atomic_bool revoke_recalled;                 /* the outcome's recalled */
static atomic_int revoke_mark_error;                /* the outcome's mark_error */
static atomic_bool revoke_keys_missing;             /* a check was given no pass's key lookups */

int __wrap_kc_attach(struct kc_kms *kms, const struct kc_kms_request *req, const struct kc_attach_params *p,
                     struct kc_attach_result *ret, struct kc_err *err);
int __wrap_kc_revoke_check(struct kc_kms *kms, const struct kc_kms_config *cfg, const char *state_dir,
                           const struct kc_caller *self, const struct kc_volume_conf *conf, unsigned prior,
                           const char *refused, struct kc_key_lookups *keys, struct kc_revoke_outcome *ret,
                           struct kc_err *err);
bool __wrap_kc_dm_available(void);
int __wrap_kc_kms_open(const struct kc_kms_config *cfg, struct kc_kms **ret, struct kc_err *err);
void __wrap_kc_kms_close(struct kc_kms *k);

int __wrap_kc_attach(struct kc_kms *kms, const struct kc_kms_request *req, const struct kc_attach_params *p,
                     struct kc_attach_result *ret, struct kc_err *err) {
        int e = atomic_load(&kms_error);

        (void) kms, (void) req;
        atomic_fetch_add(&attaches, 1);
        while (atomic_load(&attach_held))
                pause_ms(5);
        /* -ENOENT as the local keystore says it: the same errno as a device not there, yet no device is missing. */
        if (e)
                return kc_err_set(err, e, "keystore /test/ks does not exist (no key created yet, or its file system "
                                  "is not mounted)");
        *ret = (struct kc_attach_result) { .already = atomic_load(&attach_wiped),
                                           .key_wiped = atomic_load(&attach_wiped) };
        snprintf(ret->name, sizeof(ret->name), "%s", p->name);
        return 0;
}

int __wrap_kc_revoke_check(struct kc_kms *kms, const struct kc_kms_config *cfg, const char *state_dir,
                           const struct kc_caller *self, const struct kc_volume_conf *conf, unsigned prior,
                           const char *refused, struct kc_key_lookups *keys, struct kc_revoke_outcome *ret,
                           struct kc_err *err) {
        unsigned k = atomic_fetch_add(&revoke_started, 1) + 1;
        const char *reason;

        (void) kms, (void) cfg, (void) state_dir, (void) self;
        if (!keys)
                atomic_store(&revoke_keys_missing, true);
        atomic_store(&revoke_priors[k % 256], prior);
        snprintf(revoke_refused[k % 256], sizeof(revoke_refused[0]), "%s", refused ?: "");
        atomic_store(&revoke_waiting, true);
        while (atomic_load(&revoke_held))
                pause_ms(5);
        atomic_store(&revoke_waiting, false);
        reason = atomic_load(&revoke_reason);
        if (atomic_load(&revoke_error)) {
                atomic_fetch_add(&revoke_checks, 1);
                return kc_err_set(err, atomic_load(&revoke_error), "%s", reason ?: "test error");
        }
        *ret = (struct kc_revoke_outcome) { .action = atomic_load(&revoke_action), .audited = true,
                                            .recalled = atomic_load(&revoke_recalled),
                                            .mark_error = atomic_load(&revoke_mark_error) };
        if (reason)
                snprintf(ret->reason, sizeof(ret->reason), "%s", reason);
        else
                snprintf(ret->reason, sizeof(ret->reason), "%s: test outcome %d", conf->name, ret->action);
        atomic_fetch_add(&revoke_checks, 1);
        return 0;
}

bool __wrap_kc_dm_available(void) {
        return true;
}

/* While set, the volumes' mappings are gone, removed without the agent. */
static atomic_bool mappings_gone;

int __wrap_kc_dm_info(const char *name, struct kc_dm_info *ret);
int __wrap_kc_dm_info(const char *name, struct kc_dm_info *ret) {
        (void) name;
        *ret = (struct kc_dm_info) { .exists = !atomic_load(&mappings_gone) };
        return 0;
}

int __wrap_kc_kms_open(const struct kc_kms_config *cfg, struct kc_kms **ret, struct kc_err *err) {
        static int handle;

        (void) cfg, (void) err;
        *ret = (struct kc_kms *) &handle;
        return 0;
}

void __wrap_kc_kms_close(struct kc_kms *k) {
        (void) k;
}

static struct kc_manager *m;
static char *dir;

/*
 * A manager whose start round ran with the KMS down: "vol" on device dev
 * (NULL: a file that is there), "gone" on a file that is not.
 */
static void start_manager(const char *device) {
        _cleanup_free_ char *text = NULL, *dev = NULL, *state = NULL;
        struct kc_manager_config cfg = { .max_parallel = 2 };
        struct kc_volumes *v = NULL;
        struct kc_err err = {};
        FILE *f;

        dir = kc_test_tmpdir();
        ck_assert(asprintf(&dev, "%s/dev", dir) > 0 && asprintf(&state, "%s/state", dir) > 0);
        ck_assert_ptr_nonnull(f = fopen(dev, "w"));
        fclose(f);
        if (device) {
                free(dev);
                ck_assert_ptr_nonnull(dev = strdup(device));
        }
        ck_assert(asprintf(&text, "vol %s db-id=1,volume-id=vol timeout=1\n"
                                  "gone %s/no-such-dev db-id=1,volume-id=gone timeout=1\n", dev, dir) > 0);
        ck_assert_int_eq(kc_volumes_parse(text, strlen(text), "volumes", &v, &err), 0);
        cfg.state_dir = state;
        ck_assert_int_eq(kc_manager_new(&cfg, &m), 0);
        atomic_store(&kms_error, -ENOENT);
        kc_manager_set_volumes(m, v, true);
        ck_assert_int_eq(kc_manager_start(m), 0);
        /* Both wait for the KMS (timeout=1): not settled within 0.1 s, settled within 10 s. */
        ck_assert_int_eq(kc_manager_wait_settled_for(m, true, 100), -ETIMEDOUT);
        ck_assert_int_eq(kc_manager_wait_settled_for(m, true, 10000), 0);
}

static void setup(void) {
        start_manager(NULL);
}

static void teardown(void) {
        kc_manager_free(m);
        m = NULL;
        free(dir);
        dir = NULL;     /* the hotplug case has no setup: a skipped test frees nothing twice (CK_FORK=no) */
}

static const struct kc_agent_volume *state_of(const char *name, struct kc_agent_volume **all) {
        size_t n;

        free(*all);
        ck_assert_int_eq(kc_manager_snapshot(m, all, &n), 0);
        for (size_t i = 0; i < n; i++)
                if (streq((*all)[i].name, name))
                        return &(*all)[i];
        ck_abort_msg("no volume %s", name);
}

/*
 * A request that waits for name: its result, err, and how long it took in
 * ms.  How long is asserted only from below (a round of its own lasts its
 * timeout): "at once" is asserted as one try, which a round of its own
 * exceeds (its first and the one at its deadline), as a time bound would
 * not be under a sanitizer on a loaded machine.
 */
static int wait_for(const char *name, struct kc_err *err, uint64_t *ret_ms) {
        struct kc_attach_result res = {};
        struct kc_caller caller = {};
        uint64_t t0 = kc_now_ms();
        int r;

        *err = (struct kc_err) {};
        r = kc_manager_attach_volume(m, name, &caller, true, -1, &res, err);
        *ret_ms = kc_now_ms() - t0;
        return r;
}

START_TEST(test_verdict_of_the_start_round) {
        _cleanup_free_ struct kc_agent_volume *all = NULL;
        struct kc_err err = {};
        unsigned before, n;
        uint64_t ms;
        int r;

        ck_assert_int_eq(state_of("vol", &all)->state, KC_VOLUME_FAILED);
        ck_assert_int_eq(state_of("gone", &all)->state, KC_VOLUME_FAILED);

        /* The unit at boot: one more try, then the start round's verdict at once, not a round of its own. */
        before = atomic_load(&attaches);
        r = wait_for("vol", &err, &ms);
        ck_assert_int_eq(r, -ENOENT);
        ck_assert_msg(strstr(err.msg, "gave up after") && strstr(err.msg, "keystore /test/ks does not exist"), "%s", err.msg);
        ck_assert_uint_eq(atomic_load(&attaches), before + 1);

        /* Told once: the next request (a unit restarted by hand) gets a round of its own, which
         * counts its own attempts (they set its backoff, from the first step again). */
        before = atomic_load(&attaches);
        r = wait_for("vol", &err, &ms);
        ck_assert_int_eq(r, -ENOENT);
        ck_assert_msg(ms >= 900, "a new round took only %llu ms", (unsigned long long) ms);
        ck_assert_msg(strstr(err.msg, "gave up after") && strstr(err.msg, "keystore /test/ks does not exist"), "%s", err.msg);
        ck_assert_msg(sscanf(err.msg, "gave up after %u attempts", &n) == 1 && n == atomic_load(&attaches) - before,
                      "%s, in %u tries", err.msg, atomic_load(&attaches) - before);

        /* A device not there: it may still come, so the first request gets a round of its own too. */
        r = wait_for("gone", &err, &ms);
        ck_assert_int_eq(r, -ENOENT);
        ck_assert_msg(ms >= 900, "a missing device's round took only %llu ms", (unsigned long long) ms);
        ck_assert_msg(strstr(err.msg, "gave up after") && strstr(err.msg, "is not there"), "%s", err.msg);
}
END_TEST

START_TEST(test_verdict_try_attaches) {
        _cleanup_free_ struct kc_agent_volume *all = NULL;
        struct kc_err err = {};
        unsigned before = atomic_load(&attaches);
        uint64_t ms;

        /* The KMS back before the unit asks: its one try attaches, at once. */
        atomic_store(&kms_error, 0);
        ck_assert_int_eq(wait_for("vol", &err, &ms), 0);
        ck_assert_uint_eq(atomic_load(&attaches), before + 1);
        ck_assert_int_eq(state_of("vol", &all)->state, KC_VOLUME_ATTACHED);
}
END_TEST

START_TEST(test_attach_all_is_a_new_round) {
        _cleanup_free_ struct kc_agent_volume *all = NULL;
        struct kc_err err = {};
        unsigned before;
        uint64_t ms;

        /* Told, then a new unattended round (attach-all): its verdict is untold again. */
        ck_assert_int_eq(wait_for("vol", &err, &ms), -ENOENT);
        kc_manager_attach_all(m);
        ck_assert_int_eq(kc_manager_wait_settled(m, true), 0);
        ck_assert_int_eq(state_of("vol", &all)->state, KC_VOLUME_FAILED);
        before = atomic_load(&attaches);
        ck_assert_int_eq(wait_for("vol", &err, &ms), -ENOENT);
        ck_assert_msg(atomic_load(&attaches) == before + 1, "the attach-all round's verdict took %u tries",
                      atomic_load(&attaches) - before);
}
END_TEST

/*
 * attach --all through the agent tries every volume once, as the command
 * does without one: its wait holds for a nofail volume's attempt under
 * way, not for one that waits between tries.  The boot's wait (required
 * volumes only) does neither, and the full wait does both.
 */
START_TEST(test_attach_all_waits_for_nofail_tries) {
        _cleanup_free_ char *text = NULL, *dev = NULL, *state = NULL;
        _cleanup_free_ struct kc_agent_volume *all = NULL;
        struct kc_manager_config cfg = { .max_parallel = 2 };
        struct kc_manager *saved = m;
        struct kc_volumes *v = NULL;
        struct kc_err err = {};
        FILE *f;

        ck_assert(asprintf(&dev, "%s/dev2", dir) > 0 && asprintf(&state, "%s/state2", dir) > 0);
        ck_assert_ptr_nonnull(f = fopen(dev, "w"));
        fclose(f);
        ck_assert(asprintf(&text, "opt %s db-id=1,volume-id=opt nofail\n"
                                  "absent %s/no-such-dev db-id=1,volume-id=absent timeout=60,nofail\n", dev, dir) > 0);
        ck_assert_int_eq(kc_volumes_parse(text, strlen(text), "volumes", &v, &err), 0);
        cfg.state_dir = state;
        ck_assert_int_eq(kc_manager_new(&cfg, &m), 0);
        atomic_store(&kms_error, 0);
        atomic_store(&attach_held, true);
        kc_manager_set_volumes(m, v, false);
        ck_assert_int_eq(kc_manager_start(m), 0);

        kc_manager_attach_all(m);
        ck_assert_int_eq(kc_manager_wait_settled_for(m, false, 100), 0);
        ck_assert_int_eq(kc_manager_wait_tried_for(m, 300), -ETIMEDOUT);
        ck_assert_int_eq(state_of("opt", &all)->state, KC_VOLUME_ATTACHING);
        atomic_store(&attach_held, false);
        ck_assert_int_eq(kc_manager_wait_tried_for(m, 10000), 0);
        ck_assert_int_eq(state_of("opt", &all)->state, KC_VOLUME_ATTACHED);
        ck_assert_int_eq(state_of("absent", &all)->state, KC_VOLUME_WAITING);
        ck_assert_int_eq(kc_manager_wait_settled_for(m, true, 100), -ETIMEDOUT);

        kc_manager_free(m);
        m = saved;
}
END_TEST

/* kc_manager_wait_change(): at once for what changed before, a timeout for nothing, a change, the stop. */
START_TEST(test_wait_change) {
        uint64_t gen = 0, seen;

        ck_assert_int_eq(kc_manager_wait_change(m, &gen, 0), 0);
        ck_assert_uint_gt(gen, 0);
        seen = gen;
        ck_assert_int_eq(kc_manager_wait_change(m, &gen, 50), -ETIMEDOUT);
        ck_assert_uint_eq(gen, seen);
        kc_manager_attach_all(m);
        ck_assert_int_eq(kc_manager_wait_change(m, &gen, 10000), 0);
        ck_assert_uint_gt(gen, seen);
        ck_assert_int_eq(kc_manager_wait_settled(m, true), 0);
        kc_manager_stop(m);
        ck_assert_int_eq(kc_manager_wait_change(m, &gen, 0), -ESHUTDOWN);
}
END_TEST

START_TEST(test_device_that_came_gets_a_round) {
        _cleanup_free_ char *path = NULL;
        struct kc_err err = {};
        uint64_t ms;
        FILE *f;

        /*
         * "gone" had no device in the start round, and nobody was told; it
         * came since (a disk plugged in hours later): whatever the KMS says,
         * the request gets a round of its own, with its retries, not the
         * one try of a start round's verdict.
         */
        ck_assert(asprintf(&path, "%s/no-such-dev", dir) > 0);
        ck_assert_ptr_nonnull(f = fopen(path, "w"));
        fclose(f);
        ck_assert_int_eq(wait_for("gone", &err, &ms), -ENOENT);
        ck_assert_msg(ms >= 900, "the device's first round took only %llu ms", (unsigned long long) ms);
        ck_assert_msg(strstr(err.msg, "gave up after") && strstr(err.msg, "keystore /test/ks does not exist"), "%s", err.msg);
}
END_TEST

/* A block device that find_by_devno() can match, or NULL. */
static const char *block_device(dev_t *ret) {
        struct stat st;

        if (stat("/dev/loop0", &st) < 0 || !S_ISBLK(st.st_mode))
                return NULL;
        *ret = st.st_rdev;
        return "/dev/loop0";
}

START_TEST(test_hotplug_does_not_tell) {
        _cleanup_free_ struct kc_agent_volume *all = NULL;
        struct kc_attach_result res = {};
        struct kc_caller caller = {};
        struct kc_err err = {};
        char note[KC_ERR_MSG_MAX];
        const char *dev;
        dev_t devno;
        unsigned before;
        uint64_t ms;

        dev = block_device(&devno);
        if (!dev) {
                printf("no /dev/loop0: the hotplug request at boot is not tested here\n");
                return;
        }
        /*
         * At boot the device's kmscrypt-attach@ unit asks beside the volume's
         * unit, in either order: both get the start round's verdict at once.
         */
        start_manager(dev);
        before = atomic_load(&attaches);
        ck_assert_int_eq(kc_manager_hotplug(m, devno, &caller, NULL, -1, &res, note, &err), -ENOENT);
        ck_assert_msg(atomic_load(&attaches) == before + 1, "the hotplug request took %u tries",
                      atomic_load(&attaches) - before);
        ck_assert_int_eq(wait_for("vol", &err, &ms), -ENOENT);
        ck_assert_msg(atomic_load(&attaches) == before + 2, "the unit after the hotplug request took %u tries",
                      atomic_load(&attaches) - before - 1);
        ck_assert_int_eq(state_of("vol", &all)->state, KC_VOLUME_FAILED);
}
END_TEST

/* ---- the revocation pass's bookkeeping ---- */

/* Messages logged at warning level or above that name watched_words (the manager's threads log them). */
static _Atomic(const char *) watched_words;
static atomic_uint warned;

static void count_warnings(int priority, const char *message, void *userdata) {
        const char *words = atomic_load(&watched_words);

        (void) userdata;
        if (priority <= LOG_WARNING && words && strstr(message, words))
                atomic_fetch_add(&warned, 1);
}

static unsigned warnings(void) {
        return atomic_load(&warned);
}

/* Count the warnings that contain words from now on (the sink is set before the manager starts). */
static void watch_warnings(const char *words) {
        atomic_store(&warned, 0);
        atomic_store(&watched_words, words);
}

static void reset_fakes(void) {
        atomic_store(&revoke_action, KC_REVOKE_NONE);
        atomic_store(&revoke_error, 0);
        atomic_store(&revoke_reason, NULL);
        atomic_store(&revoke_held, false);
        atomic_store(&revoke_recalled, false);
        atomic_store(&revoke_mark_error, 0);
        atomic_store(&attach_held, false);
        atomic_store(&attach_wiped, false);
        atomic_store(&mappings_gone, false);
}

/* A manager with "vol" (revoke=suspend) and a revocation pass every second, its start's attach done. */
static void start_revoke_manager(void) {
        _cleanup_free_ char *text = NULL, *dev = NULL, *state = NULL;
        struct kc_manager_config cfg = { .max_parallel = 2, .revoke_interval = 1 };
        struct kc_volumes *v = NULL;
        struct kc_err err = {};
        FILE *f;

        dir = kc_test_tmpdir();
        ck_assert(asprintf(&dev, "%s/dev", dir) > 0 && asprintf(&state, "%s/state", dir) > 0);
        ck_assert_ptr_nonnull(f = fopen(dev, "w"));
        fclose(f);
        ck_assert(asprintf(&text, "vol %s db-id=1,volume-id=vol revoke=suspend\n", dev) > 0);
        ck_assert_int_eq(kc_volumes_parse(text, strlen(text), "volumes", &v, &err), 0);
        cfg.state_dir = state;
        /* The log's sink is set while no other thread runs: its threads read it unlocked. */
        atomic_store(&watched_words, NULL);
        kc_log_set_sink(count_warnings, NULL);
        kc_log_set_max_priority(LOG_DEBUG);
        ck_assert_int_eq(kc_manager_new(&cfg, &m), 0);
        atomic_store(&kms_error, 0);
        kc_manager_set_volumes(m, v, true);
        ck_assert_int_eq(kc_manager_start(m), 0);
        ck_assert_int_eq(kc_manager_wait_settled(m, true), 0);
}

/* That manager with "vol" attached. */
static void setup_revoke(void) {
        _cleanup_free_ struct kc_agent_volume *all = NULL;

        reset_fakes();
        start_revoke_manager();
        ck_assert_int_eq(state_of("vol", &all)->state, KC_VOLUME_ATTACHED);
}

static void teardown_revoke(void) {
        atomic_store(&revoke_error, 0);
        atomic_store(&watched_words, NULL);
        atomic_store(&revoke_held, false);
        atomic_store(&attach_held, false);
        atomic_store(&attach_wiped, false);
        atomic_store(&mappings_gone, false);
        teardown();     /* the manager's threads end: then the log's sink can go */
        kc_log_set_sink(NULL, NULL);
        kc_log_set_max_priority(LOG_INFO);
}

/*
 * Wait (at most 10 s) for check k to have run and its outcome to be
 * applied.  The manager applies it under its lock after the check returns,
 * before the next pass, so it is applied once check k + 1 has begun.
 */
static void wait_check(unsigned k) {
        for (unsigned i = 0; i < 2000 && atomic_load(&revoke_started) <= k; i++)
                pause_ms(5);
        ck_assert_uint_gt(atomic_load(&revoke_started), k);
}

/*
 * Wait for a check that reads what the test set before, and return its
 * number: not the one under way, which may have read the outcome already.
 */
static unsigned wait_next_check(void) {
        unsigned k = atomic_load(&revoke_started) + 1;

        wait_check(k);
        return k;
}

static unsigned prior_of(unsigned k) {
        return atomic_load(&revoke_priors[k % 256]);
}

/* The refusal on record that check k was told ("" for none); read once check k + 1 has begun. */
static const char *refused_of(unsigned k) {
        return revoke_refused[k % 256];
}

/* A suspension that ended elsewhere (revoke.c says NONE to it): no longer the agent's, the volume runs. */
START_TEST(test_revoke_suspension_ended) {
        _cleanup_free_ struct kc_agent_volume *all = NULL;
        unsigned k;

        atomic_store(&revoke_action, KC_REVOKE_SUSPENDED);
        wait_next_check();
        ck_assert_int_eq(state_of("vol", &all)->state, KC_VOLUME_SUSPENDED);

        atomic_store(&revoke_action, KC_REVOKE_NONE);
        k = wait_next_check();
        ck_assert_msg(prior_of(k) & KC_REVOKE_PRIOR_SUSPENDED, "prior %u", prior_of(k));
        ck_assert_int_eq(state_of("vol", &all)->state, KC_VOLUME_ATTACHED);
        ck_assert_int_eq(state_of("vol", &all)->error, 0);
        ck_assert_uint_eq(prior_of(k + 1), 0);
        /* Every check had its pass's key lookups to share (revoke.h). */
        ck_assert(!atomic_load(&revoke_keys_missing));
}
END_TEST

/* `kmscrypt attach vol` (wait: --wait); its message in err (NULL: not looked at). */
static int attach_vol(bool wait, struct kc_err *err) {
        struct kc_attach_result res = {};
        struct kc_caller caller = {};
        struct kc_err e = {};

        return kc_manager_attach_volume(m, "vol", &caller, wait, -1, &res, err ?: &e);
}

static void *attach_thread(void *arg) {
        (void) arg;
        return (void *) (intptr_t) attach_vol(false, NULL);
}

#define REFUSED_A "not resumed, vol stays suspended: /dev/vol is bound to context {\"db-id\":\"2\"}, expected ..."
#define REFUSED_B "not resumed, vol stays suspended: /dev/vol is wrapped by KMS provider local, which ... (kms=aws)"

/* The resume refused for reason from now on: on record and the state's reason, warned about said times in all. */
static void refused_for(const char *reason, unsigned said) {
        _cleanup_free_ struct kc_agent_volume *all = NULL;
        unsigned k;

        atomic_store(&revoke_reason, reason);
        k = wait_next_check();
        wait_check(k + 1);
        ck_assert_str_eq(refused_of(k + 1), reason);
        ck_assert_uint_eq(warnings(), said);
        ck_assert_str_eq(state_of("vol", &all)->reason, reason);
}

/*
 * The key is enabled again but the resume refused by policy (the token
 * no longer fits the entry), at every pass: the volume stays suspended and
 * its state says why, but the refusal is warned about once a suspension
 * and reason, and the check is told the one on record (which revoke.c
 * does not audit again); another reason, or a suspension anew, is news.
 */
START_TEST(test_revoke_refusal_said_once) {
        _cleanup_free_ struct kc_agent_volume *all = NULL;
        const struct kc_agent_volume *v;
        unsigned k;

        atomic_store(&revoke_action, KC_REVOKE_SUSPENDED);
        wait_next_check();
        watch_warnings("stays suspended");
        atomic_store(&revoke_reason, REFUSED_A);
        atomic_store(&revoke_action, KC_REVOKE_REFUSED);
        k = wait_next_check();
        wait_check(k + 2);
        ck_assert_str_eq(refused_of(k), "");
        ck_assert_str_eq(refused_of(k + 1), REFUSED_A);
        ck_assert_str_eq(refused_of(k + 2), REFUSED_A);
        ck_assert_msg(prior_of(k + 2) & KC_REVOKE_PRIOR_SUSPENDED, "prior %u", prior_of(k + 2));
        ck_assert_uint_eq(warnings(), 1);
        v = state_of("vol", &all);
        ck_assert_int_eq(v->state, KC_VOLUME_SUSPENDED);
        ck_assert_int_eq(v->error, -EPERM);
        ck_assert_str_eq(v->reason, REFUSED_A);

        refused_for(REFUSED_B, 2);
        /* Back to the first reason (the entry changed back): news too, the refusal that holds now. */
        refused_for(REFUSED_A, 3);

        /* Revoked and suspended anew (a check that suspends it), then refused for the same reason: said again. */
        atomic_store(&revoke_reason, NULL);
        atomic_store(&revoke_action, KC_REVOKE_SUSPENDED);
        wait_next_check();
        atomic_store(&revoke_reason, REFUSED_B);
        atomic_store(&revoke_action, KC_REVOKE_REFUSED);
        k = wait_next_check();
        wait_check(k + 1);
        ck_assert_str_eq(refused_of(k), "");
        ck_assert_uint_eq(warnings(), 4);
}
END_TEST

/* Hold the next check until revoke_waiting says it runs, with action and reason set for its outcome. */
static void hold_check(enum kc_revoke_action action, const char *reason) {
        atomic_store(&revoke_held, true);
        atomic_store(&revoke_reason, reason);
        atomic_store(&revoke_action, action);
        for (unsigned i = 0; i < 2000 && !atomic_load(&revoke_waiting); i++)
                pause_ms(5);
        ck_assert(atomic_load(&revoke_waiting));
}

/* Let the held check end, and wait until it has. */
static void release_check(void) {
        unsigned n = atomic_load(&revoke_checks);

        atomic_store(&revoke_held, false);
        for (unsigned i = 0; i < 2000 && atomic_load(&revoke_checks) <= n; i++)
                pause_ms(5);
        ck_assert_uint_gt(atomic_load(&revoke_checks), n);
}

/*
 * A refusal whose check ran while the suspension ended (the mapping
 * removed without the agent, a detach): it is on record for a suspension
 * that is no more, and is not kept as this volume's.  Kept, a suspension
 * the agent makes its own without a check that suspends it (an attach
 * that recalls its mark) would have its first refusal for that reason
 * neither audited (revoke.c is told it is on record) nor warned about.
 */
START_TEST(test_revoke_refusal_of_an_ended_suspension) {
        _cleanup_free_ struct kc_agent_volume *all = NULL;
        unsigned k;

        atomic_store(&revoke_action, KC_REVOKE_SUSPENDED);
        wait_next_check();
        hold_check(KC_REVOKE_REFUSED, REFUSED_A);
        atomic_store(&mappings_gone, true);
        kc_manager_notice_removed(m);
        ck_assert_int_eq(state_of("vol", &all)->state, KC_VOLUME_DETACHED);
        release_check();

        atomic_store(&mappings_gone, false);
        atomic_store(&revoke_action, KC_REVOKE_NONE);
        ck_assert_int_eq(attach_vol(true, NULL), 0);
        k = wait_next_check();
        ck_assert_uint_eq(prior_of(k), 0);
        ck_assert_str_eq(refused_of(k), "");
}
END_TEST

/*
 * One whose check ran while an attach of the volume was under way: the
 * attach leaves the suspension the agent's (finish_attempt()), so the
 * refusal stays on record for it, and is neither audited nor warned about
 * again at the next pass.
 */
START_TEST(test_revoke_refusal_while_attaching) {
        _cleanup_free_ struct kc_agent_volume *all = NULL;
        pthread_t t;
        unsigned k;
        void *r;

        atomic_store(&revoke_action, KC_REVOKE_SUSPENDED);
        wait_next_check();
        watch_warnings("stays suspended");
        hold_check(KC_REVOKE_REFUSED, REFUSED_A);
        atomic_store(&attach_wiped, true);
        atomic_store(&attach_held, true);
        ck_assert_int_eq(pthread_create(&t, NULL, attach_thread, NULL), 0);
        for (unsigned i = 0; i < 2000 && state_of("vol", &all)->state != KC_VOLUME_ATTACHING; i++)
                pause_ms(5);
        ck_assert_int_eq(state_of("vol", &all)->state, KC_VOLUME_ATTACHING);
        release_check();
        atomic_store(&attach_held, false);
        ck_assert_int_eq(pthread_join(t, &r), 0);
        ck_assert_int_eq((int) (intptr_t) r, -EKEYREVOKED);

        k = wait_next_check();
        ck_assert_msg(prior_of(k) & KC_REVOKE_PRIOR_SUSPENDED, "prior %u", prior_of(k));
        ck_assert_str_eq(refused_of(k), REFUSED_A);
        wait_check(k);
        ck_assert_uint_eq(warnings(), 1);
}
END_TEST

#define FOREIGN_A "mapping vol is not the mapping of /dev/vol (dm UUID CRYPT-LUKS2-0a-vol)"
#define FOREIGN_B "mapping vol is not the mapping of /dev/vol (dm UUID CRYPT-LUKS2-0b-vol)"

/* Wait for n checks more, from the next one on, and give the last one's number. */
static unsigned wait_checks(unsigned n) {
        unsigned k = wait_next_check();

        wait_check(k + n - 1);
        return k + n - 1;
}

/*
 * A check that fails for a reason that stays until someone acts (the
 * mapping by the volume's name carries another volume's dm UUID): warned
 * about once, until the reason changes or a check passes, and the state's
 * reason left as it was.  One that may pass (a KMS away) is said at every
 * pass.
 */
START_TEST(test_revoke_failure_said_once) {
        _cleanup_free_ struct kc_agent_volume *all = NULL;
        const struct kc_agent_volume *v;

        watch_warnings("is not the mapping of");
        atomic_store(&revoke_reason, FOREIGN_A);
        atomic_store(&revoke_error, -EPERM);
        wait_checks(3);
        ck_assert_uint_eq(warnings(), 1);
        v = state_of("vol", &all);
        ck_assert_int_eq(v->state, KC_VOLUME_ATTACHED);
        ck_assert_int_eq(v->error, 0);
        ck_assert_str_eq(v->reason, "");

        atomic_store(&revoke_reason, FOREIGN_B);
        wait_checks(2);
        ck_assert_uint_eq(warnings(), 2);

        /* Fixed, then back: news again. */
        atomic_store(&revoke_error, 0);
        wait_checks(1);
        atomic_store(&revoke_error, -EPERM);
        wait_checks(2);
        ck_assert_uint_eq(warnings(), 3);

        watch_warnings("cannot be reached");
        atomic_store(&revoke_reason, "the KMS cannot be reached");
        atomic_store(&revoke_error, -EAGAIN);
        wait_checks(2);
        ck_assert_uint_ge(warnings(), 2);
}
END_TEST

/*
 * A `kmscrypt attach vol` under way (the volume busy) while the pass
 * suspends it: the attach's outcome says how it is attached, but the
 * suspension is the agent's all the same, so that it resumes it once the
 * key is enabled, and the next check is told so.
 */
START_TEST(test_revoke_suspended_while_attaching) {
        _cleanup_free_ struct kc_agent_volume *all = NULL;
        unsigned n, prior;
        pthread_t t;
        void *r;

        atomic_store(&revoke_held, true);
        atomic_store(&revoke_action, KC_REVOKE_SUSPENDED);
        for (unsigned i = 0; i < 2000 && !atomic_load(&revoke_waiting); i++)
                pause_ms(5);
        ck_assert(atomic_load(&revoke_waiting));

        atomic_store(&attach_held, true);
        ck_assert_int_eq(pthread_create(&t, NULL, attach_thread, NULL), 0);
        for (unsigned i = 0; i < 2000 && state_of("vol", &all)->state != KC_VOLUME_ATTACHING; i++)
                pause_ms(5);
        ck_assert_int_eq(state_of("vol", &all)->state, KC_VOLUME_ATTACHING);

        /*
         * Suspended while the attach runs.  No pass begins while the volume
         * is busy, so the check's end is waited for, and the outcome is
         * most likely applied before the attach ends; the other order must
         * keep the suspension too.
         */
        n = atomic_load(&revoke_checks);
        atomic_store(&revoke_held, false);
        for (unsigned i = 0; i < 2000 && atomic_load(&revoke_checks) <= n; i++)
                pause_ms(5);
        ck_assert_uint_gt(atomic_load(&revoke_checks), n);
        pause_ms(50);
        atomic_store(&attach_held, false);
        ck_assert_int_eq(pthread_join(t, &r), 0);
        ck_assert_int_eq((int) (intptr_t) r, 0);

        atomic_store(&revoke_action, KC_REVOKE_STILL);
        prior = prior_of(wait_next_check());
        ck_assert_msg(prior & KC_REVOKE_PRIOR_SUSPENDED, "the next check was told prior %u", prior);
        ck_assert_int_eq(state_of("vol", &all)->state, KC_VOLUME_SUSPENDED);
}
END_TEST

/* `kmscrypt attach vol` (no wait): refused as suspended, key wiped, saying words. */
static void assert_attach_refused(const char *words) {
        struct kc_err err = {};

        ck_assert_int_eq(attach_vol(false, &err), -EKEYREVOKED);
        ck_assert_msg(strstr(err.msg, words), "%s", err.msg);
}

/*
 * `kmscrypt attach vol` of a volume the agent holds suspended: not "already
 * attached" (exit 0, as if it served I/O), but refused as what it is,
 * suspended with its key wiped and why, as kmscrypt status shows it; the
 * volume stays the agent's suspension, resumed when its key comes back.
 * One suspended by another tool is refused too, saying the agent leaves it.
 */
START_TEST(test_attach_of_a_suspended_volume) {
        _cleanup_free_ struct kc_agent_volume *all = NULL;
        struct kc_attach_result res = {};
        struct kc_caller caller = {};
        struct kc_err err = {};
        unsigned prior;
        int r;

        atomic_store(&revoke_action, KC_REVOKE_SUSPENDED);
        wait_next_check();
        ck_assert_int_eq(state_of("vol", &all)->state, KC_VOLUME_SUSPENDED);
        atomic_store(&revoke_action, KC_REVOKE_STILL);

        atomic_store(&attach_wiped, true);
        r = kc_manager_attach_volume(m, "vol", &caller, false, -1, &res, &err);
        ck_assert_int_eq(r, -EKEYREVOKED);
        ck_assert_msg(strstr(err.msg, "attached but suspended, its key wiped by the revocation policy") &&
                      strstr(err.msg, "test outcome") && strstr(err.msg, "enabled again"), "%s", err.msg);
        r = kc_manager_attach_volume(m, "vol", &caller, true, -1, &res, &err);
        ck_assert_int_eq(r, -EKEYREVOKED);
        ck_assert_int_eq(state_of("vol", &all)->state, KC_VOLUME_SUSPENDED);
        ck_assert_int_eq(state_of("vol", &all)->error, -EKEYREVOKED);
        prior = prior_of(wait_next_check());
        ck_assert_msg(prior & KC_REVOKE_PRIOR_SUSPENDED, "the next check was told prior %u", prior);

        /* Resumed, then suspended by someone else (cryptsetup luksSuspend): not the agent's to resume. */
        atomic_store(&revoke_action, KC_REVOKE_RESUMED);
        wait_next_check();
        ck_assert_int_eq(state_of("vol", &all)->state, KC_VOLUME_ATTACHED);
        atomic_store(&revoke_action, KC_REVOKE_NONE);
        assert_attach_refused("not by this agent");
}
END_TEST

/*
 * The agent starts and finds the mapping suspended with its key wiped, by
 * cryptsetup luksSuspend (no mark of its own): not "attached", which it
 * is not for I/O, but suspended, and not by the agent, which neither
 * resumes it (the checks are not told it is the agent's) nor says
 * otherwise to an attach of it.  What the start's attach made of it is
 * looked at while the first pass is held; that pass (revoke.c:
 * KC_REVOKE_FOREIGN) keeps it so.
 */
START_TEST(test_suspended_before_the_agent) {
        _cleanup_free_ struct kc_agent_volume *all = NULL;
        const struct kc_agent_volume *v;
        unsigned k;

        reset_fakes();
        atomic_store(&attach_wiped, true);
        atomic_store(&revoke_held, true);
        atomic_store(&revoke_action, KC_REVOKE_FOREIGN);
        atomic_store(&revoke_reason, KC_REVOKE_FOREIGN_REASON);
        start_revoke_manager();
        v = state_of("vol", &all);
        ck_assert_int_eq(v->state, KC_VOLUME_SUSPENDED);
        ck_assert_int_eq(v->error, -EKEYREVOKED);
        ck_assert_msg(strstr(v->reason, "not by this agent"), "%s", v->reason);

        assert_attach_refused("not by this agent");
        ck_assert_int_eq(state_of("vol", &all)->state, KC_VOLUME_SUSPENDED);

        atomic_store(&revoke_held, false);
        k = wait_next_check();
        ck_assert_uint_eq(prior_of(k - 1), 0);
        ck_assert_uint_eq(prior_of(k), 0);
        v = state_of("vol", &all);
        ck_assert_int_eq(v->state, KC_VOLUME_SUSPENDED);
        ck_assert_msg(strstr(v->reason, "not by this agent"), "%s", v->reason);
}
END_TEST

/*
 * A suspend of the agent's own that failed as far as the manager was told
 * (as revoke.c told a "key wipe" that failed yet took, before it said that
 * one at once as a suspension): the next check
 * finds the mapping suspended, key wiped, and the agent's mark of it
 * (revoke.c: recalled).  The volume is the agent's suspension, said so to
 * kmscrypt status and to an attach of it, not "not by this agent", and
 * the checks after it are told so (they resume it once its key is back).
 */
START_TEST(test_revoke_recalled_suspension) {
        _cleanup_free_ struct kc_agent_volume *all = NULL;
        const struct kc_agent_volume *v;
        unsigned k;

        atomic_store(&revoke_reason, "vol is suspended but its key could not be wiped: Invalid argument");
        atomic_store(&revoke_error, -EINVAL);
        wait_checks(1);
        ck_assert_int_eq(state_of("vol", &all)->state, KC_VOLUME_ATTACHED);

        atomic_store(&revoke_reason, NULL);
        atomic_store(&revoke_error, 0);
        atomic_store(&revoke_recalled, true);
        atomic_store(&revoke_action, KC_REVOKE_STILL);
        k = wait_next_check();
        ck_assert_uint_eq(prior_of(k), 0);
        atomic_store(&revoke_recalled, false);
        wait_check(k + 1);
        ck_assert_msg(prior_of(k + 1) & KC_REVOKE_PRIOR_SUSPENDED, "prior %u", prior_of(k + 1));
        v = state_of("vol", &all);
        ck_assert_int_eq(v->state, KC_VOLUME_SUSPENDED);
        ck_assert_int_eq(v->error, -EKEYREVOKED);
        ck_assert_msg(!strstr(v->reason, "not by this agent"), "%s", v->reason);

        atomic_store(&attach_wiped, true);
        assert_attach_refused("by the revocation policy");
}
END_TEST

#define UNMARKED "CMK local:k is Disabled; suspended, key wiped; its mark could be written neither under " \
        "/state/suspended (No space left on device) nor in the kernel keyring: ..."

/*
 * A suspension the agent holds, whose mark a check could not write
 * (revoke.h): the reason kmscrypt status shows says so at every pass, the
 * journal once, and again when it is lost anew after it was written.
 */
START_TEST(test_revoke_mark_not_written) {
        _cleanup_free_ struct kc_agent_volume *all = NULL;
        const struct kc_agent_volume *v;

        atomic_store(&revoke_action, KC_REVOKE_SUSPENDED);
        wait_next_check();
        watch_warnings("mark of its suspension can be written neither under");
        atomic_store(&revoke_reason, UNMARKED);
        atomic_store(&revoke_mark_error, -ENOSPC);
        atomic_store(&revoke_action, KC_REVOKE_STILL);
        wait_checks(3);
        ck_assert_uint_eq(warnings(), 1);
        v = state_of("vol", &all);
        ck_assert_int_eq(v->state, KC_VOLUME_SUSPENDED);
        ck_assert_str_eq(v->reason, UNMARKED);

        /* Written, then lost anew: news again. */
        atomic_store(&revoke_reason, NULL);
        atomic_store(&revoke_mark_error, 0);
        wait_checks(1);
        atomic_store(&revoke_mark_error, -EROFS);
        wait_checks(2);
        ck_assert_uint_eq(warnings(), 2);
}
END_TEST

/*
 * The mapping removed behind the agent's back (cryptsetup close, dmsetup
 * remove): the next pass finds it gone and the volume "detached", with the
 * reason; it is not checked again (which warned "no mapping" at every pass),
 * nor attached again on its own.
 */
START_TEST(test_mapping_removed_without_the_agent) {
        _cleanup_free_ struct kc_agent_volume *all = NULL;
        const struct kc_agent_volume *v;
        unsigned checks, before;

        wait_next_check();
        before = atomic_load(&attaches);
        atomic_store(&mappings_gone, true);
        for (unsigned i = 0; i < 2000 && state_of("vol", &all)->state != KC_VOLUME_DETACHED; i++)
                pause_ms(5);
        v = state_of("vol", &all);
        ck_assert_int_eq(v->state, KC_VOLUME_DETACHED);
        ck_assert_int_eq(v->error, -ENXIO);
        ck_assert_msg(strstr(v->reason, "mapping vol was removed without the agent"), "%s", v->reason);
        checks = atomic_load(&revoke_checks);
        pause_ms(2500);         /* two passes more */
        ck_assert_uint_eq(atomic_load(&revoke_checks), checks);
        ck_assert_uint_eq(atomic_load(&attaches), before);
        ck_assert_int_eq(state_of("vol", &all)->state, KC_VOLUME_DETACHED);
}
END_TEST

/* A status request finds it so too, also for a volume the agent suspended: its mark goes. */
START_TEST(test_suspended_mapping_removed_seen_by_status) {
        _cleanup_free_ struct kc_agent_volume *all = NULL;
        _cleanup_free_ char *mark = NULL;

        atomic_store(&revoke_action, KC_REVOKE_SUSPENDED);
        wait_next_check();
        ck_assert_int_eq(state_of("vol", &all)->state, KC_VOLUME_SUSPENDED);
        ck_assert(asprintf(&mark, "%s/state", dir) > 0);
        ck_assert_int_eq(kc_revoke_remember(mark, "vol", "CRYPT-LUKS2-test-vol"), 0);
        free(mark);
        ck_assert(asprintf(&mark, "%s/state/suspended/vol", dir) > 0);
        ck_assert_int_eq(access(mark, F_OK), 0);

        atomic_store(&mappings_gone, true);
        kc_manager_notice_removed(m);
        ck_assert_int_eq(state_of("vol", &all)->state, KC_VOLUME_DETACHED);
        ck_assert_int_ne(access(mark, F_OK), 0);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("manager");
        TCase *tc = tcase_create("rounds");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_verdict_of_the_start_round);
        tcase_add_test(tc, test_verdict_try_attaches);
        tcase_add_test(tc, test_attach_all_is_a_new_round);
        tcase_add_test(tc, test_attach_all_waits_for_nofail_tries);
        tcase_add_test(tc, test_wait_change);
        tcase_add_test(tc, test_device_that_came_gets_a_round);
        suite_add_tcase(s, tc);

        tc = tcase_create("revoke");
        tcase_add_checked_fixture(tc, setup_revoke, teardown_revoke);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_revoke_suspension_ended);
        tcase_add_test(tc, test_revoke_refusal_said_once);
        tcase_add_test(tc, test_revoke_refusal_of_an_ended_suspension);
        tcase_add_test(tc, test_revoke_refusal_while_attaching);
        tcase_add_test(tc, test_revoke_failure_said_once);
        tcase_add_test(tc, test_revoke_suspended_while_attaching);
        tcase_add_test(tc, test_attach_of_a_suspended_volume);
        tcase_add_test(tc, test_revoke_recalled_suspension);
        tcase_add_test(tc, test_revoke_mark_not_written);
        tcase_add_test(tc, test_mapping_removed_without_the_agent);
        tcase_add_test(tc, test_suspended_mapping_removed_seen_by_status);
        suite_add_tcase(s, tc);

        tc = tcase_create("foreign");
        tcase_add_checked_fixture(tc, NULL, teardown_revoke);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_suspended_before_the_agent);
        suite_add_tcase(s, tc);

        tc = tcase_create("hotplug");
        tcase_add_checked_fixture(tc, NULL, teardown);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_hotplug_does_not_tell);
        suite_add_tcase(s, tc);
        return s;
}
