/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>

#include "agent/cli/cli.h"         /* KC_EXIT_*: the exit statuses of kmscrypt(8), which the agent runs */
#include "agent/daemon/manager.h"
#include "agent/daemon/mapper.h"
#include "agent/daemon/revoke.h"
#include "agent/daemon/spawn.h"
#include "agent/luks.h"
#include "agent/token.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "lib/backoff.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "lib/thread.h"

#define BACKOFF_FIRST_MS 1000
#define BACKOFF_MAX_MS   30000
/* An idle KMS handle older than this is closed, not reused: see kms_reap_idle(). */
#define KMS_IDLE_MAX_MS  5000

/* A loaded volumes file, shared by the volumes that point into it and the attaches using it. */
struct confset {
        unsigned ref;               /* under the manager lock */
        struct kc_volumes *v;
};

struct mvol {
        struct confset *set;        /* holds a reference */
        const struct kc_volume_conf *conf;
        struct kc_agent_volume st;
        bool busy;                  /* an attach is running */
        bool present;               /* still in the volumes file */
        uint64_t window_start_ms;   /* first try of this round: the timeout counts from here */
        bool told;                  /* FAILED: a volume request was given this round's verdict */
        bool absent;                /* the last try found no device (it may come: worth a new round) */
        uint64_t next_try_ms;       /* WAITING: monotonic time of the next try */
        bool suspended_by_us;       /* the revocation policy suspended it */
        char refused[KC_ERR_MSG_MAX];   /* suspended_by_us: why its resume was refused, on record and said */
        int mark_error;             /* suspended_by_us: why its mark could not be written (revoke.h), said */
        char check_failed[KC_ERR_MSG_MAX];      /* why its revocation checks fail, said once (apply_revoke) */
        bool keep_audited;          /* kept running under a revoked key, and that is on record */
        unsigned gen;               /* attempts begun: tells a look at it from one attached since */
        struct kc_attach_result last;   /* ATTACHED: what its attach said */
};

/* A KMS handle nobody uses right now, and since when. */
struct idle_kms {
        struct kc_kms *kms;
        uint64_t since_ms;
};

struct kc_manager {
        pthread_mutex_t lock;
        pthread_cond_t changed;     /* a volume changed state or a slot came free */
        uint64_t changes;           /* times changed was broadcast: kc_manager_wait_change() */
        pthread_cond_t wake;        /* the scheduler has something to look at */
        struct kc_kms_config kms;
        char *kms_strings[7];
        struct idle_kms *idle;      /* max_parallel entries; under the lock */
        size_t n_idle;
        unsigned max_parallel, running;
        unsigned cpus;              /* online when the manager started */
        unsigned revoke_interval;
        char *state_dir;
        char *cli, *config_file;
        struct kc_mapper *mapper;   /* not owned */
        struct mvol **vols;         /* never shrinks: a removed volume keeps its slot, !present */
        size_t n_vols;
        struct confset *set;
        bool started, stopping;
        bool revoke_running, revoked_once;
        uint64_t next_revoke_ms;
        pthread_t scheduler;
        struct kc_caller self;
};

struct job {
        struct kc_manager *m;
        struct mvol *v;
        struct confset *set;                /* keeps conf alive across a reload */
        const struct kc_volume_conf *conf;
};

static void confset_unref(struct confset *s) {
        if (s && --s->ref == 0) {
                kc_volumes_free(s->v);
                free(s);
        }
}

bool kc_attach_error_retryable(int error) {
        /* Not ENOKEY: a device without a kmscrypt token (kc_attach()) fails once, it is not retried. */
        static const int transient[] = {
                ENOENT, ENODEV, ENXIO, ENOMEDIUM,             /* device not there (yet) */
                EAGAIN, EBUSY, EINTR, EIO,                     /* busy, or the KMS layer unusable for now */
                ETIMEDOUT, ECONNREFUSED, ECONNRESET, ECONNABORTED, ENOTCONN, ESHUTDOWN,
                EHOSTUNREACH, EHOSTDOWN, ENETUNREACH, ENETDOWN,  /* a remote KMS away */
        };
        int e = error < 0 ? -error : error;

        for (size_t i = 0; i < ARRAY_SIZE(transient); i++)
                if (transient[i] == e)
                        return true;
        return false;
}

int kc_manager_new(const struct kc_manager_config *cfg, struct kc_manager **ret) {
        const char *src[7] = { cfg->kms.keystore_dir, cfg->kms.root_key_file, cfg->kms.audit_log, cfg->kms.audit_head,
                               cfg->kms.aws_endpoint, cfg->kms.aws_region, cfg->kms.aws_ca_file };
        struct kc_manager *m = calloc(1, sizeof(*m));
        long cpus;

        if (!m)
                return -ENOMEM;
        for (size_t i = 0; i < ARRAY_SIZE(src); i++)
                if (src[i] && !(m->kms_strings[i] = strdup(src[i]))) {
                        kc_manager_free(m);
                        return -ENOMEM;
                }
        m->kms = (struct kc_kms_config) {
                .keystore_dir = m->kms_strings[0], .root_key_file = m->kms_strings[1],
                .audit_log = m->kms_strings[2], .audit_head = m->kms_strings[3],
                .aws_endpoint = m->kms_strings[4], .aws_region = m->kms_strings[5],
                .aws_ca_file = m->kms_strings[6],
        };
        m->max_parallel = cfg->max_parallel ? cfg->max_parallel : 1;
        cpus = sysconf(_SC_NPROCESSORS_ONLN);
        m->cpus = cpus > 0 ? (unsigned) cpus : 1;
        m->idle = calloc(m->max_parallel, sizeof(*m->idle));
        if (!m->idle) {
                kc_manager_free(m);
                return -ENOMEM;
        }
        m->revoke_interval = cfg->revoke_interval;
        m->mapper = cfg->mapper;
        m->state_dir = strdup(cfg->state_dir ?: KC_STATEDIR);
        m->cli = strdup(cfg->cli ?: "kmscrypt");
        m->config_file = cfg->config_file ? strdup(cfg->config_file) : NULL;
        if (!m->state_dir || !m->cli || (cfg->config_file && !m->config_file)) {
                kc_manager_free(m);
                return -ENOMEM;
        }
        (void) kc_caller_self(&m->self);
        pthread_mutex_init(&m->lock, NULL);
        kc_cond_init_monotonic(&m->wake);
        kc_cond_init_monotonic(&m->changed);
        *ret = m;
        return 0;
}

/* ---- state changes (lock held) ---- */

static void broadcast_changed(struct kc_manager *m) {
        m->changes++;
        pthread_cond_broadcast(&m->changed);
}

static void set_state(struct kc_manager *m, struct mvol *v, enum kc_volume_state s) {
        if (v->st.state != s)
                v->st.since = time(NULL);
        v->st.state = s;
        broadcast_changed(m);
}

/* Lock held: no suspension of v is the agent's to resume any more, nor its refusals to say again. */
static void end_suspension(struct mvol *v) {
        v->suspended_by_us = false;
        v->refused[0] = '\0';
        v->mark_error = 0;
}

static void schedule_now(struct kc_manager *m, struct mvol *v) {
        v->st.attempts = 0;
        v->st.error = 0;
        v->st.reason[0] = '\0';
        v->window_start_ms = 0;
        v->told = false;
        v->next_try_ms = 0;
        set_state(m, v, KC_VOLUME_PENDING);
        pthread_cond_signal(&m->wake);
}

/* The delay before the next try: the upper half of the ceiling, so that retries of many
 * volumes after one KMS outage spread out, yet none comes back at once. */
static unsigned next_backoff(const struct mvol *v) {
        unsigned ceiling = kc_backoff_ceiling(v->st.attempts ? v->st.attempts - 1 : 0, BACKOFF_FIRST_MS, BACKOFF_MAX_MS);

        return kc_backoff_draw(ceiling, ceiling / 2);
}

static void record_result(struct kc_manager *m, struct mvol *v, int r, const struct kc_err *err) {
        uint64_t now = kc_now_ms(), deadline;
        unsigned delay;

        if (r >= 0) {
                v->st.error = 0;
                v->st.reason[0] = '\0';
                v->keep_audited = false;        /* a fresh attach: a later revocation is a new decision */
                v->check_failed[0] = '\0';
                set_state(m, v, KC_VOLUME_ATTACHED);
                return;
        }
        v->st.error = r;
        snprintf(v->st.reason, sizeof(v->st.reason), "%s", kc_err_msg(err, r));
        deadline = v->window_start_ms + (uint64_t) v->conf->timeout * 1000;
        if (!kc_attach_error_retryable(r) || m->stopping) {
                set_state(m, v, KC_VOLUME_FAILED);
                return;
        }
        if (v->conf->timeout && now >= deadline) {
                snprintf(v->st.reason, sizeof(v->st.reason), "gave up after %u attempts in %u s: %s",
                         v->st.attempts, v->conf->timeout, kc_err_msg(err, r));
                set_state(m, v, KC_VOLUME_FAILED);
                return;
        }
        delay = next_backoff(v);
        v->next_try_ms = now + delay;
        if (v->conf->timeout && v->next_try_ms > deadline)
                v->next_try_ms = deadline;      /* one last try at the deadline */
        v->st.next_try = time(NULL) + (time_t) ((v->next_try_ms - now + 999) / 1000);
        set_state(m, v, KC_VOLUME_WAITING);
        pthread_cond_signal(&m->wake);
}

/* ---- KMS handles ---- */

/*
 * The KMS layer is not thread-safe, so a handle is used by one thread at a
 * time; but opening one (audit log and chain head, keystore directory,
 * lock, root key, every CMK file) costs about as much as the decrypt
 * itself, and an attach burst at start would pay it once a volume.  A
 * handle that served an attach well goes back to a small idle set, at
 * most one a slot, and the next attach takes it.  One idle for more than
 * KMS_IDLE_MAX_MS is closed instead: outside a burst every attach opens a
 * fresh handle, which sees a keystore that was replaced or a provider
 * that came back, as before.  (A reused handle sees key state changes
 * anyway: the keystore re-reads what changed under its lock.)
 */
/*
 * Lock held: close the idle handles older than KMS_IDLE_MAX_MS, and say
 * when the next one will be.  The scheduler calls this too, not only the
 * next attach: a handle's keystore cache holds every CMK unwrapped, and
 * none of that may outlive the burst it served while no attach comes.
 */
static uint64_t kms_reap_idle(struct kc_manager *m, uint64_t now) {
        size_t n = 0;

        /* Handles go back in time order: the oldest first. */
        while (n < m->n_idle && now - m->idle[n].since_ms > KMS_IDLE_MAX_MS)
                kc_kms_close(m->idle[n++].kms);                   /* closes files and frees: quick */
        memmove(m->idle, m->idle + n, (m->n_idle - n) * sizeof(*m->idle));
        m->n_idle -= n;
        return m->n_idle > 0 ? m->idle[0].since_ms + KMS_IDLE_MAX_MS + 1 : UINT64_MAX;
}

static int kms_take(struct kc_manager *m, struct kc_kms **ret, struct kc_err *err) {
        struct kc_kms *k = NULL;

        pthread_mutex_lock(&m->lock);
        (void) kms_reap_idle(m, kc_now_ms());
        if (m->n_idle > 0)
                k = m->idle[--m->n_idle].kms;
        pthread_mutex_unlock(&m->lock);
        if (k) {
                *ret = k;
                return 0;
        }
        return kc_kms_open(&m->kms, ret, err);
}

/* Hand a handle back after use; one that saw a failure is closed. */
static void kms_give(struct kc_manager *m, struct kc_kms *k, bool healthy) {
        if (!k)
                return;
        pthread_mutex_lock(&m->lock);
        if (healthy && !m->stopping && m->n_idle < m->max_parallel) {
                m->idle[m->n_idle++] = (struct idle_kms) { k, kc_now_ms() };
                k = NULL;
                pthread_cond_signal(&m->wake);          /* the scheduler closes it when it expires */
        }
        pthread_mutex_unlock(&m->lock);
        kc_kms_close(k);
}

/* ---- the attach itself (no lock held) ---- */

/* Asked while a helper runs (spawn.h): once the agent stops, the helper is stopped too. */
static bool manager_stopping(void *userdata) {
        struct kc_manager *m = userdata;
        bool stopping;

        pthread_mutex_lock(&m->lock);
        stopping = m->stopping;
        pthread_mutex_unlock(&m->lock);
        return stopping;
}

/* The errno class of a kmscrypt(8) exit status, for the retry policy (kc_attach_error_retryable). */
static int cli_exit_errno(int status) {
        switch (status) {
        case KC_EXIT_USAGE: return -EINVAL;
        case KC_EXIT_NOT_FOUND: return -ENOENT;         /* maybe not there yet */
        case KC_EXIT_REFUSED: return -EPERM;
        case KC_EXIT_UNAVAILABLE: return -EIO;          /* KMS, keystore or device unusable for now */
        default: return -ENOTRECOVERABLE;
        }
}

/*
 * A volume whose kmscrypt data key replacement was interrupted (a crash or
 * power cut mid-reencryption) is carried to its end before it is attached,
 * as `kmscrypt attach` does (docs/rotation.md), so that a volume attached
 * at boot or on hotplug does not stay refused (kc_attach() says
 * -EINPROGRESS).  Nothing has it attached, so this runs offline; the attach
 * waits for the rest of the data, the other volumes do not: it runs in
 * `kmscrypt reencrypt --resume` (spawn.h says why), which stops between
 * two chunks when the agent stops.
 */
static int finish_reencryption(struct kc_manager *m, const struct kc_attach_params *p, const char *path,
                               struct kc_err *err) {
        _cleanup_free_ char *expect = NULL;
        const char *argv[12], *what = p->name ?: path;
        char line[512];
        size_t n = 0;
        int r;

        if (p->expect && kc_context_to_string(p->expect, &expect) < 0)
                return -ENOMEM;
        argv[n++] = m->cli;
        argv[n++] = "reencrypt";
        argv[n++] = path;
        argv[n++] = "--resume";
        argv[n++] = "--quiet";
        if (p->header) {
                argv[n++] = "--header";
                argv[n++] = p->header;
        }
        if (expect) {
                argv[n++] = "--expect-context-json";
                argv[n++] = expect;
        }
        if (m->config_file) {
                argv[n++] = "--config";
                argv[n++] = m->config_file;
        }
        argv[n] = NULL;

        log_notice("%s: its data key replacement was interrupted; finishing it before the attach", what);
        r = kc_spawn_wait((char *const *) argv, manager_stopping, m, line, sizeof(line));
        /* Not r: an ENOENT of the program would read as a device not there yet, and be retried. */
        if (r < 0)
                return kc_err_set(err, -ENOTRECOVERABLE, "cannot run %s to finish the reencryption of %s: %s",
                                  m->cli, what, strerror(-r));
        if (r != 0 && manager_stopping(m))
                return kc_err_set(err, -ESHUTDOWN, "the agent is stopping; the reencryption of %s resumes "
                                  "at the next attach", what);
        if (r != 0)
                return kc_err_set(err, cli_exit_errno(r), "the reencryption of %s was not finished: %s", what,
                                  line[0] ? line : "kmscrypt reencrypt --resume failed without a message");
        /* Finished; a line on stderr is a warning (its outcome record missing, say). */
        if (line[0])
                log_warning("%s: %s", what, line);
        log_notice("%s: reencryption finished", what);
        return 0;
}

/* The path of device spec, or why it is not there. */
static int find_device(const char *spec, char **ret_path, struct kc_err *err) {
        _cleanup_free_ char *path = NULL;
        int r;

        r = kc_resolve_device(spec, &path, err);
        if (r < 0)
                return r;
        if (access(path, F_OK) < 0) {
                r = negative_errno();
                return kc_err_set(err, r, "device %s is not there: %s", path, strerror(-r));
        }
        *ret_path = TAKE_PTR(path);
        return 0;
}

/*
 * Attach params->device.  A device that is not there yet is the commonest
 * reason to wait, so that is looked at first, and *ret_absent (unless NULL)
 * says whether this try failed so: the errno alone cannot tell, a local
 * keystore that is not there (yet) says -ENOENT too (kc_manager_attach_volume()).
 */
static int attach_with(struct kc_manager *m, const struct kc_attach_params *params, const struct kc_caller *caller,
                       struct kc_attach_result *ret, struct kc_err *err, bool *ret_absent) {
        struct kc_attach_params mapped = *params, *p = &mapped;
        struct kc_kms_request req = { .caller = caller };
        _cleanup_free_ char *path = NULL;
        struct kc_kms *kms = NULL;
        int r;

        r = find_device(p->device, &path, err);
        if (ret_absent)
                *ret_absent = r < 0 && kc_attach_error_retryable(r);
        if (r < 0)
                return r;
        if (!kc_dm_available())
                return kc_err_set(err, -EOPNOTSUPP, "device-mapper is not available on this host "
                                  "(no /dev/mapper/control or no dm driver)");
        if (m->mapper) {
                mapped.loader = kc_mapper_load;
                mapped.loader_userdata = m->mapper;
        }
        /* More attaches than CPUs: they keep every CPU busy, and a peek at the header would only cost CPU. */
        pthread_mutex_lock(&m->lock);
        mapped.no_peek = m->running > m->cpus;
        pthread_mutex_unlock(&m->lock);
        r = kms_take(m, &kms, err);
        if (r < 0)
                return kc_err_set(err, r, "cannot open the KMS layer: %s", strerror(-r));
        r = kc_attach(kms, &req, p, ret, err);
        if (r == -EINPROGRESS) {
                *err = (struct kc_err) {};
                r = finish_reencryption(m, p, path, err);
                if (r >= 0)
                        r = kc_attach(kms, &req, p, ret, err);
        }
        kms_give(m, kms, r >= 0);
        if (r >= 0 && ret->removed_half_made)
                log_notice("%s: removed the half-made mapping (no live table) an interrupted attach left", ret->name);
        if (r >= 0 && ret->cancelled_deferred_remove)
                log_notice("%s: attached, so its pending deferred removal is cancelled", ret->name);
        return r;
}

static int attach_conf(struct kc_manager *m, const struct kc_volume_conf *c, const struct kc_caller *caller,
                       struct kc_attach_result *ret, struct kc_err *err, bool *ret_absent) {
        struct kc_attach_params p = {
                .device = c->device, .header = c->header, .name = c->name, .expect = c->context,
                .providers = c->kms,
                .read_only = c->read_only, .flags = c->flags,
        };
        return attach_with(m, &p, caller, ret, err, ret_absent);
}

/* Wait for a free slot (lock held).  -ESHUTDOWN when stopping. */
static int take_slot(struct kc_manager *m) {
        while (!m->stopping && m->running >= m->max_parallel)
                pthread_cond_wait(&m->changed, &m->lock);
        if (m->stopping)
                return -ESHUTDOWN;
        m->running++;
        return 0;
}

static void release_slot(struct kc_manager *m) {
        m->running--;
        broadcast_changed(m);
        pthread_cond_signal(&m->wake);
}

/* Lock held: the volume is marked busy, one more attempt counted. */
static void begin_attempt(struct kc_manager *m, struct mvol *v) {
        v->busy = true;
        v->gen++;
        v->st.attempts++;
        if (!v->window_start_ms)
                v->window_start_ms = kc_now_ms();
        if (v->st.state != KC_VOLUME_WAITING)
                set_state(m, v, KC_VOLUME_ATTACHING);
}

/*
 * Lock held: v's mapping is suspended with its key wiped, not by this agent
 * (reason: why, revoke.h): it serves no I/O, and the agent leaves it so.
 */
static void set_foreign_suspension(struct kc_manager *m, struct mvol *v, const char *reason) {
        if (!streq(v->st.reason, reason))
                log_warning("%s: %s", v->conf->name, reason);
        v->keep_audited = false;
        v->check_failed[0] = '\0';
        v->st.error = -EKEYREVOKED;
        snprintf(v->st.reason, sizeof(v->st.reason), "%s", reason);
        set_state(m, v, KC_VOLUME_SUSPENDED);
}

static void finish_attempt(struct kc_manager *m, struct mvol *v, int r, const struct kc_err *err,
                           const struct kc_attach_result *res, bool recalled) {
        v->busy = false;
        /* Its suspension, whether or not the mark of it could be written (revoke.c). */
        recalled = recalled || (r >= 0 && res->key_wiped && v->suspended_by_us);
        if (r >= 0 && recalled) {
                /* Found as an earlier agent left it (revoke.h): the revocation pass resumes it.  Found
                 * as this one left it (an attach asked for meanwhile): so it stays, and says why. */
                if (!v->suspended_by_us) {
                        log_notice("%s: suspended with its key wiped by the revocation policy before this "
                                   "agent started", v->conf->name);
                        v->suspended_by_us = true;
                        v->st.error = -EKEYREVOKED;
                        snprintf(v->st.reason, sizeof(v->st.reason), "suspended, key wiped (revocation policy)");
                }
                set_state(m, v, KC_VOLUME_SUSPENDED);
                return;
        }
        if (r >= 0 && res->key_wiped) {
                /* Found so, and not by this agent (cryptsetup luksSuspend before it started, say). */
                v->last = *res;
                set_foreign_suspension(m, v, KC_REVOKE_FOREIGN_REASON);
                return;
        }
        if (r >= 0) {
                v->last = *res;
                log_info("%s: %s /dev/mapper/%s", v->conf->name,
                         res->already ? "already attached as" : "attached as", res->name);
        }
        else if (kc_attach_error_retryable(r) && v->st.state != KC_VOLUME_WAITING)
                log_warning("%s: cannot attach yet, retrying: %s", v->conf->name, kc_err_msg(err, r));
        else if (!kc_attach_error_retryable(r))
                log_error("%s: cannot attach: %s", v->conf->name, kc_err_msg(err, r));
        record_result(m, v, r, err);
        if (v->st.state == KC_VOLUME_FAILED && r < 0 && kc_attach_error_retryable(r))
                log_error("%s: %s", v->conf->name, v->st.reason);
}

static void *attach_job(void *arg) {
        _cleanup_free_ struct job *j = arg;
        struct kc_manager *m = j->m;
        struct kc_attach_result res = {};
        struct kc_err err = {};
        bool recalled, absent;
        int r;

        r = attach_conf(m, j->conf, &m->self, &res, &err, &absent);
        recalled = r >= 0 && res.already && kc_revoke_recall(m->state_dir, res.name);
        pthread_mutex_lock(&m->lock);
        j->v->absent = absent;
        finish_attempt(m, j->v, r, &err, &res, recalled);
        confset_unref(j->set);
        release_slot(m);
        pthread_mutex_unlock(&m->lock);
        return NULL;
}

/* Lock held, a slot taken: start the volume's attach on a thread of its own. */
static int spawn_attach(struct kc_manager *m, struct mvol *v) {
        struct job *j = malloc(sizeof(*j));
        int r;

        if (!j)
                return -ENOMEM;
        *j = (struct job) { .m = m, .v = v, .set = v->set, .conf = v->conf };
        v->set->ref++;
        begin_attempt(m, v);
        r = kc_thread_start(NULL, true, attach_job, j);
        if (r < 0) {
                struct kc_err err = {};
                kc_err_set(&err, r, "cannot start an attach thread");
                finish_attempt(m, v, r, &err, NULL, false);
                v->set->ref--;
                free(j);
        }
        return r;
}

/* ---- mappings removed without the agent ---- */

struct held {
        struct mvol *v;
        unsigned gen;
        char name[128];             /* configured */
        char mapping[128];          /* what its attach made or found */
};

void kc_manager_notice_removed(struct kc_manager *m) {
        _cleanup_free_ struct held *h = NULL;
        size_t n = 0;

        if (!kc_dm_available())
                return;
        pthread_mutex_lock(&m->lock);
        h = calloc(m->n_vols ? m->n_vols : 1, sizeof(*h));
        for (size_t i = 0; h && i < m->n_vols; i++) {
                struct mvol *v = m->vols[i];
                if (!v->present || v->busy || (v->st.state != KC_VOLUME_ATTACHED && v->st.state != KC_VOLUME_SUSPENDED))
                        continue;
                h[n] = (struct held) { .v = v, .gen = v->gen };
                kc_strscpy(h[n].name, sizeof(h[n].name), v->st.name);
                kc_strscpy(h[n++].mapping, sizeof(h->mapping), v->last.name[0] ? v->last.name : v->st.name);
        }
        pthread_mutex_unlock(&m->lock);

        /* The dm queries take the process-wide dm lock: not under m->lock. */
        for (size_t i = 0; i < n; i++) {
                struct mvol *v = h[i].v;
                struct kc_dm_info info;
                bool gone = false;

                if (kc_dm_info(h[i].mapping, &info) < 0 || info.exists)
                        continue;
                pthread_mutex_lock(&m->lock);
                if (v->present && !v->busy && v->gen == h[i].gen &&
                    (v->st.state == KC_VOLUME_ATTACHED || v->st.state == KC_VOLUME_SUSPENDED)) {
                        log_warning("%s: mapping %s was removed without the agent (cryptsetup close, dmsetup "
                                    "remove?): detached; kmscrypt attach %s attaches it again", h[i].name,
                                    h[i].mapping, h[i].name);
                        end_suspension(v);
                        v->keep_audited = false;
                        v->st.error = -ENXIO;
                        snprintf(v->st.reason, sizeof(v->st.reason), "mapping %s was removed without the agent",
                                 h[i].mapping);
                        set_state(m, v, KC_VOLUME_DETACHED);
                        gone = true;
                }
                pthread_mutex_unlock(&m->lock);
                if (gone)
                        kc_revoke_forget(m->state_dir, h[i].name);
        }
}

/* ---- revocation policy: one pass over the attached volumes ---- */

struct revoke_item {
        struct mvol *v;
        const struct kc_volume_conf *conf;
        unsigned prior;             /* KC_REVOKE_PRIOR_* */
        char refused[KC_ERR_MSG_MAX];   /* v->refused when the pass began */
};

/* Lock held: what earlier checks did to v, for kc_revoke_check(). */
static unsigned revoke_prior(const struct mvol *v) {
        return (v->suspended_by_us ? KC_REVOKE_PRIOR_SUSPENDED : 0) | (v->keep_audited ? KC_REVOKE_PRIOR_KEPT : 0);
}

/*
 * Lock held: a check that failed, and left the volume as it was (its
 * state's reason too).  A failure that may pass on its own (the KMS away)
 * is said at every pass, as kmscryptd(8) says; one that stays until
 * someone acts (a mapping by this name that is another volume's, a
 * mapping that reads from another device) once, until it changes.
 */
static void warn_check_failed(struct mvol *v, int r, const struct kc_err *err) {
        const char *msg = kc_err_msg(err, r);
        bool standing = !kc_attach_error_retryable(r);

        if (standing && streq(v->check_failed, msg))
                log_debug("%s: revocation check: %s", v->conf->name, msg);
        else
                log_warning("%s: revocation check: %s", v->conf->name, msg);
        kc_strscpy(v->check_failed, sizeof(v->check_failed), standing ? msg : "");
}

/*
 * Lock held: the agent's mark of a suspension it holds, which a check could
 * not write (revoke.h), said once an error, and once it is written: a
 * suspension's first check says it in its reason, which is logged; a check
 * that finds it still so says it in the reason kmscrypt status shows.
 */
static void say_mark(struct kc_manager *m, struct mvol *v, const struct kc_revoke_outcome *o) {
        if (o->action != KC_REVOKE_SUSPENDED && o->action != KC_REVOKE_STILL && o->action != KC_REVOKE_REFUSED)
                return;
        if (o->action != KC_REVOKE_SUSPENDED && o->mark_error != v->mark_error) {
                if (o->mark_error < 0)
                        log_warning("%s: the agent's mark of its suspension can be written neither under %s (%s) "
                                    "nor in the kernel keyring: a restarted agent would not resume it; tried again "
                                    "at every pass",
                                    v->conf->name, m->state_dir, strerror(-o->mark_error));
                else
                        log_notice("%s: the agent's mark of its suspension is written now: a restarted agent "
                                   "resumes it too", v->conf->name);
        }
        v->mark_error = o->mark_error;
}

/* Lock held: apply the outcome of one check. */
static void apply_revoke(struct kc_manager *m, struct mvol *v, int r, const struct kc_err *err,
                         const struct kc_revoke_outcome *o) {
        /*
         * What the check did to the mapping is kept whatever happened to the
         * volume meanwhile: a suspension forgotten because an attach of it was
         * under way would never be resumed (revoke.c undoes one that is gone).
         */
        if (r >= 0 && o->recalled && !v->suspended_by_us) {
                /* A suspend of its own told as failed, whose mark the check found (revoke.h): the agent's. */
                log_notice("%s: suspended with its key wiped by the revocation policy, as the agent's mark of "
                           "its suspension says", v->conf->name);
                v->suspended_by_us = true;
        }
        if (r >= 0 && o->action == KC_REVOKE_SUSPENDED) {
                log_warning("%s: %s", v->conf->name, o->reason);
                end_suspension(v);      /* a suspension anew: whatever refused the last resume is news again */
                v->suspended_by_us = true;
        } else if (r >= 0 && o->action == KC_REVOKE_RESUMED) {
                log_notice("%s: %s", v->conf->name, o->reason);
                end_suspension(v);
        } else if (r >= 0 && o->action == KC_REVOKE_REFUSED) {
                /*
                 * Checked at every pass, said (and audited, revoke.c) once a
                 * suspension and reason; only the last reason is kept, as
                 * revoke.c says why, so that the latest warning is the
                 * refusal that holds.  On record for the suspension the
                 * check was told of: kept while that one is still the
                 * agent's (an attach under way leaves it so), not once it
                 * ended meanwhile, where it would silence the first refusal
                 * of a suspension to come.
                 */
                if (streq(v->refused, o->reason))
                        log_debug("%s: %s", v->conf->name, o->reason);
                else
                        log_warning("%s: %s", v->conf->name, o->reason);
                if (o->audited && v->suspended_by_us)
                        kc_strscpy(v->refused, sizeof(v->refused), o->reason);
        }
        if (r >= 0 && v->suspended_by_us)
                say_mark(m, v, o);
        if (v->busy || (v->st.state != KC_VOLUME_ATTACHED && v->st.state != KC_VOLUME_SUSPENDED))
                return;             /* someone else changed it meanwhile */
        if (r < 0) {
                warn_check_failed(v, r, err);
                return;
        }
        v->check_failed[0] = '\0';
        switch (o->action) {
        case KC_REVOKE_NONE:
                v->keep_audited = false;
                end_suspension(v);      /* a suspension of its own ended elsewhere (revoke.c) */
                if (v->st.error == -EKEYREVOKED || v->st.state == KC_VOLUME_SUSPENDED) {
                        /* a kept volume's key is enabled again, or a suspended one runs again */
                        v->st.error = 0;
                        v->st.reason[0] = '\0';
                        set_state(m, v, KC_VOLUME_ATTACHED);
                }
                return;
        case KC_REVOKE_RESUMED:
                v->st.error = 0;
                v->st.reason[0] = '\0';
                set_state(m, v, KC_VOLUME_ATTACHED);
                return;
        case KC_REVOKE_FOREIGN:
                set_foreign_suspension(m, v, o->reason);
                return;
        case KC_REVOKE_REFUSED:
                /* Its key is back, but not into this volume: why, for kmscrypt status and an attach of it. */
                v->st.error = -EPERM;
                snprintf(v->st.reason, sizeof(v->st.reason), "%s", o->reason);
                set_state(m, v, KC_VOLUME_SUSPENDED);
                return;
        case KC_REVOKE_SUSPENDED:
        case KC_REVOKE_STILL:
        case KC_REVOKE_KEPT:
                v->keep_audited = o->action == KC_REVOKE_KEPT && o->audited;
                if (!streq(v->st.reason, o->reason) && o->action == KC_REVOKE_KEPT)
                        log_warning("%s: %s", v->conf->name, o->reason);
                v->st.error = -EKEYREVOKED;
                snprintf(v->st.reason, sizeof(v->st.reason), "%s", o->reason);
                set_state(m, v, o->action == KC_REVOKE_KEPT ? KC_VOLUME_ATTACHED : KC_VOLUME_SUSPENDED);
                return;
        }
}

static void *revoke_pass(void *arg) {
        struct kc_manager *m = arg;
        _cleanup_kms_ struct kc_kms *kms = NULL;
        _cleanup_free_ struct revoke_item *items = NULL;
        _cleanup_(kc_key_lookups_freep) struct kc_key_lookups *keys = NULL;
        struct confset *set;
        struct kc_err err = {};
        size_t n = 0;
        int r;

        /* Not checked, and not warned about at every pass: no longer attached. */
        kc_manager_notice_removed(m);
        pthread_mutex_lock(&m->lock);
        set = m->set;
        if (set)
                set->ref++;
        items = calloc(m->n_vols ? m->n_vols : 1, sizeof(*items));
        for (size_t i = 0; items && i < m->n_vols; i++) {
                struct mvol *v = m->vols[i];
                if (v->present && !v->busy && v->conf && v->set == set &&
                    (v->st.state == KC_VOLUME_ATTACHED || v->st.state == KC_VOLUME_SUSPENDED)) {
                        items[n] = (struct revoke_item) { .v = v, .conf = v->conf, .prior = revoke_prior(v) };
                        kc_strscpy(items[n++].refused, sizeof(items->refused), v->refused);
                }
        }
        pthread_mutex_unlock(&m->lock);

        /* Here, not in maybe_revoke: it takes the process-wide dm lock, not to be waited for under m->lock. */
        if (n > 0 && !kc_dm_available())
                n = 0;
        r = n > 0 ? kc_kms_open(&m->kms, &kms, &err) : 0;
        if (r < 0)
                log_warning("revocation check: cannot open the KMS layer: %s", kc_err_msg(&err, r));
        /* Without it (no memory), each check looks its key up itself. */
        if (n > 0)
                keys = kc_key_lookups_new();
        for (size_t i = 0; r >= 0 && i < n; i++) {
                struct kc_revoke_outcome o = {};
                struct kc_err e = {};
                int k = kc_revoke_check(kms, &m->kms, m->state_dir, &m->self, items[i].conf, items[i].prior,
                                        items[i].refused[0] ? items[i].refused : NULL, keys, &o, &e);

                pthread_mutex_lock(&m->lock);
                apply_revoke(m, items[i].v, k, &e, &o);
                pthread_mutex_unlock(&m->lock);
        }
        pthread_mutex_lock(&m->lock);
        confset_unref(set);
        m->revoke_running = false;
        release_slot(m);
        pthread_mutex_unlock(&m->lock);
        return NULL;
}

/* Lock held: whether a volume has yet to finish its first attach (configured, or added by a reload). */
static bool first_attaches_pending(const struct kc_manager *m) {
        for (size_t i = 0; i < m->n_vols; i++) {
                const struct mvol *v = m->vols[i];
                if (v->present && (v->st.state == KC_VOLUME_PENDING || v->st.state == KC_VOLUME_ATTACHING))
                        return true;
        }
        return false;
}

/*
 * Lock held: start a pass when one is due and device-mapper is there to act
 * on.  The first pass runs as soon as the start's attaches are done, not
 * in their midst: each of them proved its key usable moments before, and a
 * pass over the volumes attached so far (a key lookup each, over the
 * network for a remote KMS) would take a slot and CPU from the attaches
 * still to come.  It resumes a volume an earlier agent left suspended.
 * Should an attach take longer than one interval, the pass runs anyway.
 */
static void maybe_revoke(struct kc_manager *m, uint64_t now) {
        bool first = !m->revoked_once && !first_attaches_pending(m);

        if (!m->revoke_interval || m->revoke_running || m->running >= m->max_parallel ||
            (now < m->next_revoke_ms && !first))
                return;
        m->revoked_once = true;
        m->next_revoke_ms = now + (uint64_t) m->revoke_interval * 1000;
        if (kc_thread_start(NULL, true, revoke_pass, m) == 0) {
                m->revoke_running = true;
                m->running++;
        }
}

/* ---- scheduler ---- */

static bool due(const struct mvol *v, uint64_t now) {
        if (!v->present || v->busy)
                return false;
        return v->st.state == KC_VOLUME_PENDING || (v->st.state == KC_VOLUME_WAITING && v->next_try_ms <= now);
}

static void *scheduler(void *arg) {
        struct kc_manager *m = arg;

        pthread_mutex_lock(&m->lock);
        while (!m->stopping) {
                uint64_t now = kc_now_ms(), wake_at = UINT64_MAX;

                for (size_t i = 0; i < m->n_vols && m->running < m->max_parallel; i++)
                        if (due(m->vols[i], now) && spawn_attach(m, m->vols[i]) >= 0)
                                m->running++;
                maybe_revoke(m, now);
                wake_at = kms_reap_idle(m, now);
                if (m->revoke_interval && m->next_revoke_ms < wake_at)
                        wake_at = m->next_revoke_ms;
                for (size_t i = 0; i < m->n_vols; i++) {
                        struct mvol *v = m->vols[i];
                        if (v->present && !v->busy && v->st.state == KC_VOLUME_WAITING && v->next_try_ms < wake_at)
                                wake_at = v->next_try_ms;
                }
                if (wake_at == UINT64_MAX) {
                        pthread_cond_wait(&m->wake, &m->lock);
                        continue;
                }
                if (wake_at <= now)
                        wake_at = now + 10;  /* due but no slot: a finishing attach signals us */
                kc_cond_wait_until(&m->wake, &m->lock, wake_at);
        }
        pthread_mutex_unlock(&m->lock);
        return NULL;
}

int kc_manager_start(struct kc_manager *m) {
        int r;

        m->next_revoke_ms = kc_now_ms() + (uint64_t) m->revoke_interval * 1000;
        r = kc_thread_start(&m->scheduler, false, scheduler, m);
        if (r == 0)
                m->started = true;
        return r;
}

void kc_manager_stop(struct kc_manager *m) {
        pthread_mutex_lock(&m->lock);
        m->stopping = true;
        pthread_cond_broadcast(&m->wake);
        broadcast_changed(m);
        /* Running attaches finish: a half-made attach is worse than a late stop. */
        while (m->running > 0)
                pthread_cond_wait(&m->changed, &m->lock);
        pthread_mutex_unlock(&m->lock);
        if (m->started) {
                pthread_join(m->scheduler, NULL);
                m->started = false;
        }
}

void kc_manager_free(struct kc_manager *m) {
        if (!m)
                return;
        kc_manager_stop(m);
        for (size_t i = 0; i < m->n_vols; i++) {
                confset_unref(m->vols[i]->set);
                free(m->vols[i]);
        }
        free(m->vols);
        for (size_t i = 0; i < m->n_idle; i++)
                kc_kms_close(m->idle[i].kms);
        free(m->idle);
        confset_unref(m->set);
        for (size_t i = 0; i < ARRAY_SIZE(m->kms_strings); i++)
                free(m->kms_strings[i]);
        free(m->state_dir);
        free(m->cli);
        free(m->config_file);
        pthread_cond_destroy(&m->wake);
        pthread_cond_destroy(&m->changed);
        pthread_mutex_destroy(&m->lock);
        free(m);
}

/* ---- configuration ---- */

static struct mvol *find_vol(struct kc_manager *m, const char *name) {
        for (size_t i = 0; i < m->n_vols; i++)
                if (streq(m->vols[i]->st.name, name))
                        return m->vols[i];
        return NULL;
}

static void point_at(struct mvol *v, struct confset *set, const struct kc_volume_conf *c) {
        set->ref++;
        confset_unref(v->set);
        v->set = set;
        v->conf = c;
        kc_strscpy(v->st.device, sizeof(v->st.device), c->device);
        v->st.nofail = c->nofail;
        v->present = true;
}

/* Lock held. */
static struct mvol *add_vol(struct kc_manager *m, const struct kc_volume_conf *c) {
        struct mvol *v = calloc(1, sizeof(*v)), **n;

        if (!v)
                return NULL;
        n = reallocarray(m->vols, m->n_vols + 1, sizeof(*n));
        if (!n) {
                free(v);
                return NULL;
        }
        m->vols = n;
        kc_strscpy(v->st.name, sizeof(v->st.name), c->name);
        v->st.state = KC_VOLUME_PENDING;
        v->st.since = time(NULL);
        m->vols[m->n_vols++] = v;
        return v;
}

void kc_manager_set_volumes(struct kc_manager *m, struct kc_volumes *vs, bool attach_new) {
        struct confset *set = calloc(1, sizeof(*set));

        if (!set) {
                kc_volumes_free(vs);
                log_error("cannot install the new volume list: out of memory");
                return;
        }
        set->v = vs;
        set->ref = 1;
        pthread_mutex_lock(&m->lock);
        for (size_t i = 0; i < m->n_vols; i++)
                m->vols[i]->present = false;
        for (size_t i = 0; i < vs->n; i++) {
                const struct kc_volume_conf *c = &vs->volumes[i];
                struct mvol *v = find_vol(m, c->name);
                bool fresh = !v;

                if (!v && !(v = add_vol(m, c))) {
                        log_error("%s: not scheduled: out of memory", c->name);
                        continue;
                }
                if (!fresh && !v->present && v->st.state == KC_VOLUME_FAILED)
                        fresh = true;   /* came back after a reload that dropped it */
                point_at(v, set, c);
                if (fresh && attach_new)
                        schedule_now(m, v);
                else if (fresh)
                        set_state(m, v, KC_VOLUME_DETACHED);
        }
        confset_unref(m->set);
        m->set = set;
        broadcast_changed(m);
        pthread_cond_signal(&m->wake);
        pthread_mutex_unlock(&m->lock);
}

void kc_manager_attach_all(struct kc_manager *m) {
        pthread_mutex_lock(&m->lock);
        for (size_t i = 0; i < m->n_vols; i++) {
                struct mvol *v = m->vols[i];
                if (v->present && !v->busy && v->st.state != KC_VOLUME_ATTACHED &&
                    v->st.state != KC_VOLUME_SUSPENDED)
                        schedule_now(m, v);
        }
        pthread_mutex_unlock(&m->lock);
}

/* Which volumes a wait for the volumes to settle waits for. */
enum settle {
        SETTLE_REQUIRED,        /* those without nofail */
        SETTLE_TRIED,           /* those, and the attempt under way or due of a nofail one */
        SETTLE_ALL,             /* all, nofail ones through their retries too */
};

static bool unsettled(const struct mvol *v, enum settle how) {
        if (!v->present || (v->conf->nofail && how == SETTLE_REQUIRED))
                return false;
        if (v->busy || v->st.state == KC_VOLUME_PENDING || v->st.state == KC_VOLUME_ATTACHING)
                return true;
        return v->st.state == KC_VOLUME_WAITING && (!v->conf->nofail || how == SETTLE_ALL);
}

/* When a wait of timeout_ms (0: no limit) begun now ends, in kc_now_ms() time; UINT64_MAX: never. */
static uint64_t deadline(unsigned timeout_ms) {
        return timeout_ms ? kc_now_ms() + timeout_ms : UINT64_MAX;
}

/* Lock held: wait once for changed, until the deadline at most; false once the deadline has passed. */
static bool wait_changed_until(struct kc_manager *m, uint64_t until) {
        if (until == UINT64_MAX) {
                pthread_cond_wait(&m->changed, &m->lock);
                return true;
        }
        if (kc_now_ms() >= until)
                return false;
        kc_cond_wait_until(&m->changed, &m->lock, until);
        return true;
}

static int wait_settled(struct kc_manager *m, enum settle how, unsigned timeout_ms) {
        uint64_t until = deadline(timeout_ms);
        int r = 0;

        pthread_mutex_lock(&m->lock);
        for (;;) {
                bool busy = false;

                if (m->stopping) {
                        r = -ESHUTDOWN;
                        break;
                }
                for (size_t i = 0; i < m->n_vols && !busy; i++)
                        busy = unsettled(m->vols[i], how);
                if (!busy)
                        break;
                if (!wait_changed_until(m, until)) {
                        r = -ETIMEDOUT;
                        break;
                }
        }
        pthread_mutex_unlock(&m->lock);
        return r;
}

int kc_manager_wait_settled_for(struct kc_manager *m, bool include_nofail, unsigned timeout_ms) {
        return wait_settled(m, include_nofail ? SETTLE_ALL : SETTLE_REQUIRED, timeout_ms);
}

int kc_manager_wait_settled(struct kc_manager *m, bool include_nofail) {
        return kc_manager_wait_settled_for(m, include_nofail, 0);
}

int kc_manager_wait_tried_for(struct kc_manager *m, unsigned timeout_ms) {
        return wait_settled(m, SETTLE_TRIED, timeout_ms);
}

int kc_manager_wait_change(struct kc_manager *m, uint64_t *gen, unsigned timeout_ms) {
        uint64_t until = deadline(timeout_ms);
        int r = 0;

        pthread_mutex_lock(&m->lock);
        while (!m->stopping && m->changes == *gen && wait_changed_until(m, until))
                ;
        if (m->stopping)
                r = -ESHUTDOWN;
        else if (m->changes == *gen)
                r = -ETIMEDOUT;
        *gen = m->changes;
        pthread_mutex_unlock(&m->lock);
        return r;
}

int kc_manager_snapshot(struct kc_manager *m, struct kc_agent_volume **ret, size_t *ret_n) {
        struct kc_agent_volume *a;
        size_t n = 0;

        pthread_mutex_lock(&m->lock);
        a = calloc(m->n_vols ? m->n_vols : 1, sizeof(*a));
        if (!a) {
                pthread_mutex_unlock(&m->lock);
                return -ENOMEM;
        }
        /* File order: walk the current file, not the slots (which keep insertion order). */
        for (size_t i = 0; m->set && i < m->set->v->n; i++) {
                struct mvol *v = find_vol(m, m->set->v->volumes[i].name);
                if (v && v->present)
                        a[n++] = v->st;
        }
        pthread_mutex_unlock(&m->lock);
        *ret = a;
        *ret_n = n;
        return 0;
}

/* Whether the peer of connection fd has closed it. */
static bool peer_gone(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLRDHUP };

        return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/*
 * Lock held, v's attempt over and its slot given back: wait while the
 * scheduler retries it, until it is attached, failed (refused, or its
 * timeout ran out), suspended or detached.  The outcome as an attach's.
 */
static int wait_outcome(struct kc_manager *m, struct mvol *v, int watch_fd, struct kc_attach_result *ret,
                        struct kc_err *err) {
        bool gone = false;
        int r;

        while (!m->stopping && v->present && !gone &&
               (v->busy || v->st.state == KC_VOLUME_PENDING || v->st.state == KC_VOLUME_ATTACHING ||
                v->st.state == KC_VOLUME_WAITING)) {
                if (watch_fd < 0) {
                        pthread_cond_wait(&m->changed, &m->lock);
                        continue;
                }
                /* A requester that went away (killed, its unit stopped) waits no more: its
                 * connection would stay counted for as long as the volume does not settle. */
                kc_cond_wait_until(&m->changed, &m->lock, kc_now_ms() + 1000);
                gone = peer_gone(watch_fd);
        }
        *err = (struct kc_err) {};
        /* First: a stopping agent shuts its connections for reading, which reads as the peer gone. */
        if (m->stopping)
                return kc_err_set(err, -ESHUTDOWN, "the agent is stopping");
        if (gone)
                return kc_err_set(err, -ECANCELED, "the requester went away");
        if (!v->present)
                return kc_err_set(err, -ENOENT, "volume %s left the volumes file", v->st.name);
        if (v->st.state == KC_VOLUME_ATTACHED) {
                *ret = v->last;
                return 0;
        }
        r = v->st.error < 0 ? v->st.error : -EIO;
        return kc_err_set(err, r, "%s", v->st.reason[0] ? v->st.reason : kc_volume_state_to_string(v->st.state));
}

/*
 * Lock held: an attach asked for found the mapping there but suspended with
 * its key wiped (res->key_wiped): attached, but serving no I/O, which is
 * what the requester is told, as kmscrypt status shows it (v: the
 * configured volume of that mapping, or NULL).  -EKEYREVOKED.
 */
static int refuse_wiped(const struct mvol *v, const struct kc_attach_result *res, struct kc_err *err) {
        *err = (struct kc_err) {};
        if (v && v->suspended_by_us)
                return kc_err_set(err, -EKEYREVOKED, "%s is attached but suspended, its key wiped by the revocation "
                                  "policy (%s); the agent resumes it when %s", res->name,
                                  v->st.reason[0] ? v->st.reason : "CMK revoked",
                                  v->st.error == -EPERM ? "it fits its entry of the volumes file again" :
                                  "its CMK is enabled again");
        return kc_err_set(err, -EKEYREVOKED, "%s is attached but " KC_REVOKE_FOREIGN_REASON, res->name);
}

/*
 * kc_manager_attach_volume(); tell: a wait ends the volume's untold round
 * (below), false for a hotplug event's request.
 */
static int attach_volume(struct kc_manager *m, const char *name, const struct kc_caller *caller, bool wait,
                         bool tell, int watch_fd, struct kc_attach_result *ret, struct kc_err *err) {
        const struct kc_volume_conf *conf;
        struct kc_attach_result res = {};
        struct confset *set;
        struct mvol *v;
        bool recalled, verdict, absent;
        uint64_t start;
        int r;

        pthread_mutex_lock(&m->lock);
        v = find_vol(m, name);
        if (!v || !v->present) {
                pthread_mutex_unlock(&m->lock);
                return kc_err_set(err, -ENOENT, "no volume %s in the volumes file", name);
        }
        /*
         * An attach of it running: wait for its outcome.  In one loop with
         * the wait for a slot, so that no other attach of it (the
         * scheduler's) can start while this one waits for the slot: two at
         * once would let a detach in between and one of them attach again.
         */
        while (!m->stopping && (v->busy || m->running >= m->max_parallel))
                pthread_cond_wait(&m->changed, &m->lock);
        r = take_slot(m);
        if (r < 0) {
                pthread_mutex_unlock(&m->lock);
                return kc_err_set(err, r, "the agent is stopping");
        }
        /*
         * A round that failed while nobody waited for it (the start's: the
         * units of volumes start once the agent is ready, so after it) has
         * a verdict nobody was told.  A wait for it gets that verdict after
         * one more try in the same round (the KMS may be back), not a round
         * of its own: with the KMS down at boot a volume would hold the boot
         * for twice its timeout.  Not so when the round ended, or that try
         * finds, no device: it may come (a disk plugged in hours later), so
         * a fresh round waits for it as before.  Once a volume request was
         * told, a new request (a unit restarted by hand) starts a new round;
         * a hotplug event's does not tell, as the device's kmscrypt-attach@
         * unit starts beside the volume's at boot.
         */
        verdict = wait && v->st.state == KC_VOLUME_FAILED && !v->told && !v->absent;
        if (v->st.state != KC_VOLUME_WAITING && !verdict) {
                v->window_start_ms = 0;     /* a fresh round: the timeout starts now */
                v->st.attempts = 0;         /* and its backoff from the first step */
                if (tell)
                        v->told = false;
        }
        start = kc_now_ms();
        begin_attempt(m, v);
        set = v->set;
        set->ref++;
        conf = v->conf;
        pthread_mutex_unlock(&m->lock);

        r = attach_conf(m, conf, caller, &res, err, &absent);
        recalled = r >= 0 && res.already && kc_revoke_recall(m->state_dir, res.name);

        pthread_mutex_lock(&m->lock);
        v->absent = absent;
        if (verdict && absent) {
                verdict = false;
                v->window_start_ms = start;     /* no device: a fresh round, from this try */
                v->st.attempts = 1;
        }
        finish_attempt(m, v, r, err, &res, recalled);
        confset_unref(set);
        release_slot(m);
        if (r >= 0 && res.key_wiped)
                r = refuse_wiped(v, &res, err);
        else if (r < 0 && wait && (v->st.state == KC_VOLUME_WAITING || verdict))
                r = wait_outcome(m, v, watch_fd, &res, err);
        else if (r < 0 && v->st.state == KC_VOLUME_WAITING) {
                struct kc_err e = *err;
                *err = (struct kc_err) {};
                kc_err_set(err, r, "%s (the agent keeps retrying)", kc_err_msg(&e, r));
        }
        if (r < 0 && wait && tell && v->st.state == KC_VOLUME_FAILED)
                v->told = true;
        pthread_mutex_unlock(&m->lock);
        if (r >= 0)
                *ret = res;
        return r;
}

int kc_manager_attach_volume(struct kc_manager *m, const char *name, const struct kc_caller *caller, bool wait,
                             int watch_fd, struct kc_attach_result *ret, struct kc_err *err) {
        return attach_volume(m, name, caller, wait, true, watch_fd, ret, err);
}

int kc_manager_attach_device(struct kc_manager *m, const struct kc_attach_params *p,
                             const struct kc_caller *caller, struct kc_attach_result *ret,
                             struct kc_err *err) {
        struct kc_attach_result res = {};
        struct mvol *v;
        int r;

        pthread_mutex_lock(&m->lock);
        r = take_slot(m);
        pthread_mutex_unlock(&m->lock);
        if (r < 0)
                return kc_err_set(err, r, "the agent is stopping");
        r = attach_with(m, p, caller, &res, err, NULL);
        pthread_mutex_lock(&m->lock);
        release_slot(m);
        v = r >= 0 ? find_vol(m, res.name) : NULL;
        if (r >= 0 && res.key_wiped)
                r = refuse_wiped(v && v->present ? v : NULL, &res, err);
        /* A configured volume attached by device counts as attached. */
        else if (r >= 0 && v && v->present && !v->busy) {
                v->st.error = 0;
                v->st.reason[0] = '\0';
                v->last = res;          /* what a unit waiting for it is told */
                set_state(m, v, KC_VOLUME_ATTACHED);
        }
        pthread_mutex_unlock(&m->lock);
        if (r >= 0)
                *ret = res;
        return r;
}

struct candidate {
        char name[128];
        char device[PATH_MAX];
        bool hotplug;
};

/* The present volume whose device spec resolves to devno: 1 and a copy of it, or 0. */
static int find_by_devno(struct kc_manager *m, dev_t devno, struct candidate *ret) {
        _cleanup_free_ struct candidate *c = NULL;
        size_t n = 0;

        pthread_mutex_lock(&m->lock);
        c = calloc(m->n_vols ? m->n_vols : 1, sizeof(*c));
        for (size_t i = 0; c && i < m->n_vols; i++) {
                const struct mvol *v = m->vols[i];
                if (!v->present)
                        continue;
                kc_strscpy(c[n].name, sizeof(c[n].name), v->st.name);
                kc_strscpy(c[n].device, sizeof(c[n].device), v->st.device);
                c[n++].hotplug = v->conf->hotplug;
        }
        pthread_mutex_unlock(&m->lock);
        if (!c)
                return -ENOMEM;
        /* Resolving probes devices (blkid): never under the lock. */
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *path = NULL;
                struct stat st;

                if (kc_resolve_device(c[i].device, &path, NULL) < 0 || stat(path, &st) < 0 ||
                    !S_ISBLK(st.st_mode) || st.st_rdev != devno)
                        continue;
                *ret = c[i];
                return 1;
        }
        return 0;
}

/* A device no entry names: not ours (0, note) when it has no kmscrypt token; refused and audited when it has. */
static int refuse_unconfigured(struct kc_manager *m, const char *path, const struct kc_caller *caller,
                               char note[KC_ERR_MSG_MAX], struct kc_err *err) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        _cleanup_kms_ struct kc_kms *kms = NULL;
        _cleanup_free_ char *ctx = NULL;
        struct kc_luks_segment seg = {};
        struct kc_token tok = {};
        struct kc_kms_request req = { .caller = caller };
        struct kc_audit_record rec = { .operation = "Attach", .result = -EPERM, .detail = "hotplug" };
        struct kc_err e = {};
        int r;

        r = kc_luks_open_read(path, NULL, &l, &e);
        if (r >= 0)
                r = kc_luks_token_read(l, &tok, NULL, &e);
        if (r < 0 && (r == -ENOENT || !l)) {
                snprintf(note, KC_ERR_MSG_MAX, "%s is not a kmscrypt volume: %s", path, kc_err_msg(&e, r));
                return 0;
        }
        (void) kc_luks_segment(l, &seg);
        if (r >= 0) {
                (void) kc_context_to_string(tok.context, &ctx);
                kc_attach_audit_key(&tok, &rec);
                kc_err_set(err, -EPERM, "%s holds a kmscrypt volume bound to context %s, and no entry of "
                           KC_VOLUMES_FILE " names this device: not attached", path, strna(ctx));
        } else
                kc_err_set(err, -EPERM, "%s has a kmscrypt token that cannot be read (%s): not attached",
                           path, kc_err_msg(&e, r));

        req.volume = seg.uuid[0] ? seg.uuid : NULL;
        rec.context = tok.context;
        rec.error = kc_err_msg(err, -EPERM);
        e = (struct kc_err) {};
        r = kc_kms_open(&m->kms, &kms, &e);
        if (r >= 0)
                r = kc_kms_audit_refusal(kms, &req, &rec);
        if (r < 0)
                log_error("refusal of %s could not be audited: %s", path, kc_err_msg(&e, r));
        log_warning("%s", kc_err_msg(err, -EPERM));
        kc_token_clear(&tok);
        return -EPERM;
}

/* Whether path holds a kmscrypt token (one that cannot be read counts): 1; 0 and note when not. */
static int has_kmscrypt_token(const char *path, char note[KC_ERR_MSG_MAX]) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        struct kc_token tok = {};
        struct kc_err e = {};
        int r;

        r = kc_luks_open_read(path, NULL, &l, &e);
        if (r >= 0)
                r = kc_luks_token_read(l, &tok, NULL, &e);
        kc_token_clear(&tok);
        if (r < 0 && (r == -ENOENT || !l)) {
                snprintf(note, KC_ERR_MSG_MAX, "%s is not a kmscrypt volume: %s", path, kc_err_msg(&e, r));
                return 0;
        }
        return 1;
}

/*
 * No entry names the kmscrypt volume on path: the entry may have been
 * added without a reload of the agent (its udev event comes first), so
 * re-read the volumes file once before the device is refused and audited.
 */
static int find_after_reload(struct kc_manager *m, dev_t devno, const char *path,
                             const struct kc_manager_reload *reload, struct candidate *ret, char note[KC_ERR_MSG_MAX]) {
        struct kc_err e = {};
        size_t n;
        int r;

        if (!reload || !reload->fn)
                return 0;
        r = has_kmscrypt_token(path, note);
        if (r <= 0)
                return r;
        log_notice("%s holds a kmscrypt volume no entry of the volumes file names: re-reading the file", path);
        r = reload->fn(reload->userdata, &n, &e);
        if (r < 0)
                return 0;       /* the reload said why; the old list stands */
        return find_by_devno(m, devno, ret);
}

int kc_manager_hotplug(struct kc_manager *m, dev_t devno, const struct kc_caller *caller,
                       const struct kc_manager_reload *reload, int watch_fd, struct kc_attach_result *ret,
                       char ret_note[KC_ERR_MSG_MAX], struct kc_err *err) {
        _cleanup_free_ char *path = NULL;
        struct candidate c;
        char majmin[32];
        int r;

        ret_note[0] = '\0';
        snprintf(majmin, sizeof(majmin), "%u:%u", major(devno), minor(devno));
        r = kc_block_devnode(majmin, &path);
        if (r < 0)
                return kc_err_set(err, r, "no block device %s: %s", majmin, strerror(-r));
        r = find_by_devno(m, devno, &c);
        if (r == 0)
                r = find_after_reload(m, devno, path, reload, &c, ret_note);
        if (r < 0)
                return r;
        if (r == 0 && ret_note[0])
                return 0;       /* not a kmscrypt volume: left alone */
        if (r == 0)
                return refuse_unconfigured(m, path, caller, ret_note, err);
        if (!c.hotplug) {
                snprintf(ret_note, KC_ERR_MSG_MAX, "%s is volume %s, which has hotplug=no: left alone", path, c.name);
                return 0;
        }
        r = attach_volume(m, c.name, caller, true, false, watch_fd, ret, err);
        return r < 0 ? r : 1;
}

int kc_manager_detach(struct kc_manager *m, const char *name, bool deferred, struct kc_err *err) {
        struct mvol *v;
        int r;

        pthread_mutex_lock(&m->lock);
        v = find_vol(m, name);
        if (v && v->busy) {
                pthread_mutex_unlock(&m->lock);
                return kc_err_set(err, -EBUSY, "%s is being attached; try again when it settles", name);
        }
        pthread_mutex_unlock(&m->lock);

        if (!kc_dm_available())
                return kc_err_set(err, -EOPNOTSUPP, "device-mapper is not available on this host");
        r = kc_detach(name, deferred, err);
        if (r < 0)
                return r;
        kc_revoke_forget(m->state_dir, name);
        pthread_mutex_lock(&m->lock);
        if ((v = find_vol(m, name)) && !v->busy) {
                end_suspension(v);
                v->st.error = 0;
                v->st.reason[0] = '\0';
                set_state(m, v, KC_VOLUME_DETACHED);
        }
        pthread_mutex_unlock(&m->lock);
        return 0;
}
