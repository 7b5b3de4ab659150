/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kmscryptd: the key agent (man/kmscryptd.8). */
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>

#include "agent/config.h"
#include "agent/luks.h"
#include "agent/daemon/caps.h"
#include "agent/daemon/mapper.h"
#include "agent/daemon/manager.h"
#include "agent/daemon/server.h"
#include "agent/daemon/volumes.h"
#include "lib/clock.h"
#include "lib/crypto-init.h"
#include "lib/fault.h"
#include "lib/log.h"
#include "lib/secret.h"
#include "lib/thread.h"

#define DEFAULT_REVOKE_INTERVAL 60
#define DEFAULT_GROUP "kmscrypt"

struct daemon {
        const char *socket_path;
        const char *volumes_path;
        const char *group;          /* status group name, "" for none */
        gid_t status_gid;
        unsigned max_parallel;
        int mappers;                /* -1: as many as CPUs, 2 to 8 */
        unsigned revoke_interval;
        bool attach_at_start;
        bool log_stderr;
        int log_level;              /* --log-level, -1: log-level of kmscrypt.conf */
        struct kc_config_overrides overrides;
        struct kc_config config;    /* kmscrypt.conf: keystore, root key, audit log, log-level, syslog */
        struct kc_manager *m;
        pthread_mutex_t reload_lock;
        bool ready_sent;            /* READY=1 told (under reload_lock) */
};

static const char help[] =
        "Usage: kmscryptd [OPTIONS]\n"
        "\n"
        "The kmscrypt key agent: attaches every volume of the volumes file at start,\n"
        "retries while a KMS is away, applies the revocation policy, and answers\n"
        "kmscrypt(8) on a Unix socket.  Runs in the foreground (Type=notify).\n"
        "\n"
        "  -s, --socket PATH          listening socket (default " KC_AGENT_SOCKET ")\n"
        "      --volumes FILE         volumes file (default " KC_VOLUMES_FILE ")\n"
        "  -g, --group NAME           group that may ask status and list (default " DEFAULT_GROUP
        " if it exists; '' for none)\n"
        "  -j, --max-parallel N       attaches at once (default four a CPU, 4 to 16)\n"
        "      --mappers N            processes that create mappings (default: one a CPU,\n"
        "                             2 to 8, at most -j; 0: the attach threads do)\n"
        "      --revoke-interval SEC  how often to check the CMKs in use (default 60; 0: never)\n"
        "      --no-attach            do not attach the configured volumes at start\n"
        "  -c, --config FILE          kmscrypt.conf (default " KC_SYSCONFDIR "/kmscrypt.conf)\n"
        "      --keystore DIR         keystore of the local KMS (overrides the file)\n"
        "      --root-key-file FILE   root key of the keystore\n"
        "      --audit-log FILE       audit log\n"
        "      --log-level LEVEL      err (or error), warning, notice, info or debug\n"
        "                             (default: log-level of kmscrypt.conf, info)\n"
        "      --stderr               also log to stderr (default when not under the journal)\n"
        "  -h, --help                 this text\n"
        "      --version              print the version\n";

/* ---- logging: syslog (the journal), and stderr when someone reads it ---- */

static void log_both(int priority, const char *message, void *userdata) {
        kc_log_sink_syslog(priority, message, NULL);
        kc_log_sink_stderr(priority, message, NULL);
}

static void setup_logging(bool stderr_too) {
        kc_log_set_program("kmscryptd");
        openlog("kmscryptd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
        kc_log_set_sink(stderr_too ? log_both : kc_log_sink_syslog, NULL);
}

/*
 * Once kmscrypt.conf is read: its log-level unless --log-level was given,
 * and with "syslog = no" standard error alone (under systemd that is the
 * journal's stream; the messages must go somewhere).
 */
static void apply_logging_config(const struct daemon *d) {
        kc_log_set_max_priority(d->log_level >= 0 ? d->log_level : d->config.log_level);
        if (!d->config.syslog)
                kc_log_set_sink(kc_log_sink_stderr, NULL);
}

/* ---- hardening ---- */

static int harden(void) {
        struct rlimit nocore = { 0, 0 };
        int r;

        /* Key material passes through this process: it must never land in a core file. */
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
                return log_error_errno(errno, "prctl(PR_SET_DUMPABLE): %m");
        if (setrlimit(RLIMIT_CORE, &nocore) < 0)
                return log_error_errno(errno, "setrlimit(RLIMIT_CORE): %m");
        umask(0077);
        /* Before any thread starts: capabilities are per thread, and new threads inherit the reduced set. */
        r = kc_caps_reduce();
        if (r < 0)
                return r;
        /* Kept: CAP_IPC_LOCK.  Then no copy of a key that a library makes can reach swap either. */
        r = kc_secret_lock_all();
        if (r < 0)
                log_warning_errno(r, "cannot lock the agent's memory, copies of keys that libraries make may be "
                                  "swapped: %m");
        return 0;
}

/*
 * kmscrypt(8) beside this executable (both are installed in sbin, and sit
 * side by side in a build tree): the agent runs it to finish interrupted
 * reencryptions.  NULL when that cannot be read: then PATH finds it.
 */
static char *cli_path(void) {
        char self[PATH_MAX], *cli;
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        char *slash;

        if (n <= 0)
                return NULL;
        self[n] = '\0';
        slash = strrchr(self, '/');
        if (!slash || asprintf(&cli, "%.*s/kmscrypt", (int) (slash - self), self) < 0)
                return NULL;
        return cli;
}

/* ---- mapper processes (mapper.h) ---- */

static unsigned clamp_cpus(long per_cpu, long min, long max) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN), n = (cpus > 0 ? cpus : 1) * per_cpu;

        return (unsigned) (n < min ? min : n > max ? max : n);
}

/*
 * Attaches at once, when -j does not say: an attach is CPU work (header
 * read, digest check, a local KMS) but for its wait on a remote KMS, and
 * more of them than a few a CPU only contend (100 volumes on 2 vCPUs in
 * the vm guest: -j16 5.0 s, -j8 4.2 s, -j4 4.35 s).  Measured since, -j 4
 * against 8 stays within the emulator's drift, locally and through aws
 * (docs/attach.md, "What did not make kmscryptd or the command faster").
 */
static unsigned default_max_parallel(void) {
        return clamp_cpus(4, 4, 16);
}

static struct kc_mapper *start_mappers(const struct daemon *d) {
        struct kc_mapper *mp = NULL;
        unsigned n = d->mappers >= 0 ? (unsigned) d->mappers : clamp_cpus(1, 2, 8);
        int r;

        if (n > d->max_parallel)
                n = d->max_parallel;
        if (n == 0)
                return NULL;
        r = kc_mapper_new(n, &mp);
        if (r < 0) {
                log_warning_errno(r, "cannot start mapper processes, the attach threads create mappings: %m");
                return NULL;
        }
        r = kc_mapper_supervise(mp, "/proc/self/exe");
        if (r < 0)
                log_warning_errno(r, "cannot watch the mapper processes, a dead one is not replaced: %m");
        log_debug("%u mapper processes", n);
        return mp;
}

/* ---- configuration ---- */

/* A bad option or argument: one line ending with the hint kmscryptd(8) promises for each; -EINVAL. */
static int usage_error(const char *fmt, ...) _printf_(1, 2);
static int usage_error(const char *fmt, ...) {
        char msg[KC_ERR_MSG_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        log_error("%s (see 'kmscryptd --help')", msg);
        return -EINVAL;
}

static int parse_uint_opt(const char *name, const char *text, unsigned min, unsigned max, unsigned *ret) {
        unsigned long v;
        char *end;

        errno = 0;
        v = strtoul(text, &end, 10);
        if (!*text || *end || errno || text[0] == '-' || v < min || v > max)
                return usage_error("--%s: expected a number from %u to %u, got \"%s\"", name, min, max, text);
        *ret = (unsigned) v;
        return 0;
}

static int resolve_group(struct daemon *d) {
        struct group *g;

        d->status_gid = (gid_t) -1;
        if (!*d->group)
                return 0;
        errno = 0;
        g = getgrnam(d->group);
        if (g) {
                d->status_gid = g->gr_gid;
                return 0;
        }
        if (streq(d->group, DEFAULT_GROUP))
                return 0;           /* the default group need not exist: root only */
        return log_error_errno(errno ? errno : ENOENT, "--group %s: no such group", d->group);
}

static int parse_args(struct daemon *d, int argc, char **argv) {
        enum { ARG_VOLUMES = 0x100, ARG_REVOKE, ARG_MAPPERS, ARG_NO_ATTACH, ARG_KEYSTORE, ARG_ROOT_KEY, ARG_AUDIT_LOG,
               ARG_LOG_LEVEL, ARG_STDERR, ARG_VERSION };
        static const struct option options[] = {
                { "socket",          required_argument, NULL, 's' },
                { "volumes",         required_argument, NULL, ARG_VOLUMES },
                { "group",           required_argument, NULL, 'g' },
                { "max-parallel",    required_argument, NULL, 'j' },
                { "revoke-interval", required_argument, NULL, ARG_REVOKE },
                { "mappers",         required_argument, NULL, ARG_MAPPERS },
                { "no-attach",       no_argument,       NULL, ARG_NO_ATTACH },
                { "keystore",        required_argument, NULL, ARG_KEYSTORE },
                { "root-key-file",   required_argument, NULL, ARG_ROOT_KEY },
                { "audit-log",       required_argument, NULL, ARG_AUDIT_LOG },
                { "config",          required_argument, NULL, 'c' },
                { "log-level",       required_argument, NULL, ARG_LOG_LEVEL },
                { "stderr",          no_argument,       NULL, ARG_STDERR },
                { "help",            no_argument,       NULL, 'h' },
                { "version",         no_argument,       NULL, ARG_VERSION },
                {}
        };
        unsigned n;
        int c;

        /* Our own one-line messages, with a hint, instead of getopt's. */
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":s:g:j:c:h", options, NULL)) >= 0)
                switch (c) {
                case 's': d->socket_path = optarg; break;
                case ARG_VOLUMES: d->volumes_path = optarg; break;
                case 'g': d->group = optarg; break;
                case 'j':
                        if (parse_uint_opt("max-parallel", optarg, 1, 1024, &d->max_parallel) < 0)
                                return -EINVAL;
                        break;
                case ARG_MAPPERS:
                        if (parse_uint_opt("mappers", optarg, 0, 64, &n) < 0)
                                return -EINVAL;
                        d->mappers = (int) n;
                        break;
                case ARG_REVOKE:
                        if (parse_uint_opt("revoke-interval", optarg, 0, 86400, &d->revoke_interval) < 0)
                                return -EINVAL;
                        break;
                case ARG_NO_ATTACH: d->attach_at_start = false; break;
                case 'c': d->overrides.config_file = optarg; break;
                case ARG_KEYSTORE: d->overrides.keystore_dir = optarg; break;
                case ARG_ROOT_KEY: d->overrides.root_key_file = optarg; break;
                case ARG_AUDIT_LOG: d->overrides.audit_log = optarg; break;
                case ARG_LOG_LEVEL:
                        d->log_level = kc_config_log_level(optarg);
                        if (d->log_level < 0)
                                return usage_error("--log-level: unknown level \"%s\", expected " KC_CONFIG_LOG_LEVELS,
                                                   optarg);
                        /* At once: what comes before kmscrypt.conf is read is logged at this level too. */
                        kc_log_set_max_priority(d->log_level);
                        break;
                case ARG_STDERR: d->log_stderr = true; break;
                case 'h': fputs(help, stdout); return 0;
                case ARG_VERSION: puts("kmscryptd " PACKAGE_VERSION); return 0;
                case ':':
                        return usage_error("option %s needs a value", argv[optind - 1]);
                default:
                        /* A long option known but given a value sets optopt; an unknown one leaves it 0. */
                        if (strncmp(argv[optind - 1], "--", 2) != 0)
                                return usage_error("unknown option -%c", optopt);
                        if (optopt != 0)
                                return usage_error("option %.*s takes no value",
                                                   (int) strcspn(argv[optind - 1], "="), argv[optind - 1]);
                        return usage_error("unknown option %s", argv[optind - 1]);
                }
        if (optind < argc)
                return usage_error("unexpected argument \"%s\"", argv[optind]);
        return 1;
}

/* Read the volumes file; a missing one means no volumes. */
static int load_volumes(struct daemon *d, struct kc_volumes **ret, struct kc_err *err) {
        int r = kc_volumes_load(d->volumes_path, ret, err);

        if (r == -ENOENT) {
                *err = (struct kc_err) {};
                return kc_volumes_parse("", 0, d->volumes_path, ret, err);
        }
        return r;
}

static int reload(void *userdata, size_t *ret_n, struct kc_err *err) {
        struct daemon *d = userdata;
        struct kc_volumes *v = NULL;
        int r;

        pthread_mutex_lock(&d->reload_lock);
        /* Before the first READY=1, a READY=1 here would end the start-up early: say nothing. */
        if (d->ready_sent)
                (void) kc_notify("RELOADING=1");
        r = load_volumes(d, &v, err);
        if (r < 0)
                log_error("reload: %s; keeping the previous configuration", kc_err_msg(err, r));
        else {
                *ret_n = v->n;
                log_info("reloaded %s: %zu volumes", d->volumes_path, v->n);
                kc_manager_set_volumes(d->m, v, true);
        }
        if (d->ready_sent)
                (void) kc_notify("READY=1");
        pthread_mutex_unlock(&d->reload_lock);
        return r;
}

/* ---- readiness: once every volume that is not nofail has settled ---- */

/*
 * Seconds since this process was started (exec included), from the start
 * time the kernel keeps in /proc/self/stat; -1 if unknown.  What an
 * administrator (and the benchmark) wants to know: start to all attached.
 */
static double seconds_since_start(void) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/stat", "re");
        unsigned long long start_ticks = 0;
        char buf[1024], *p;
        struct timespec now;
        long hz = sysconf(_SC_CLK_TCK);

        if (!f || !fgets(buf, sizeof(buf), f) || hz <= 0 || clock_gettime(CLOCK_BOOTTIME, &now) < 0)
                return -1;
        p = strrchr(buf, ')');      /* the command name may hold blanks */
        /* After ")": state is field 3, starttime field 22. */
        if (!p || sscanf(p + 2, "%*c %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu",
                         &start_ticks) != 1)
                return -1;
        return (double) now.tv_sec + now.tv_nsec / 1e9 - (double) start_ticks / (double) hz;
}

/* How often the service manager hears how the start goes while volumes have yet to settle. */
#define PROGRESS_MS 1000

/*
 * prefix, then "STATUS=A of N volumes attached", how many failed if any,
 * and while some wait (for their device or their KMS), how many and why
 * the first does: what `systemctl status kmscryptd` shows.  A and N go to
 * *ret_attached and *ret_n unless NULL.
 */
static void status_line(struct daemon *d, const char *prefix, char *buf, size_t size, size_t *ret_attached,
                        size_t *ret_n) {
        _cleanup_free_ struct kc_agent_volume *av = NULL;
        const struct kc_agent_volume *first = NULL;
        size_t n = 0, attached = 0, failed = 0, waiting = 0;
        int k;

        if (kc_manager_snapshot(d->m, &av, &n) < 0)
                n = 0;
        for (size_t i = 0; i < n; i++) {
                attached += av[i].state == KC_VOLUME_ATTACHED;
                failed += av[i].state == KC_VOLUME_FAILED;
                if (av[i].state == KC_VOLUME_WAITING && waiting++ == 0)
                        first = &av[i];
        }
        k = snprintf(buf, size, "%sSTATUS=%zu of %zu volumes attached", prefix, attached, n);
        if (failed && k > 0 && (size_t) k < size)
                k += snprintf(buf + k, size - k, ", %zu failed", failed);
        if (first && k > 0 && (size_t) k < size)
                snprintf(buf + k, size - k, ", %zu waiting (%s: %.300s)", waiting, first->name, first->reason);
        if (ret_attached)
                *ret_attached = attached;
        if (ret_n)
                *ret_n = n;
}

/*
 * After READY=1: the status follows the volumes (a detach, a hotplug
 * attach, a volume waiting again), so that what systemctl status shows is
 * never a start long past.  What changes within PROGRESS_MS of a change
 * goes out as one message, and only when the line differs from the last.
 */
static void follow_status(struct daemon *d, const char *last_sent) {
        char last[768], now[768];
        uint64_t gen = 0;       /* the first wait returns at once: a change just before READY=1 is not missed */

        kc_strscpy(last, sizeof(last), last_sent);
        while (kc_manager_wait_change(d->m, &gen, 0) >= 0) {
                uint64_t until = kc_now_ms() + PROGRESS_MS;

                for (uint64_t t = kc_now_ms(); t < until; t = kc_now_ms())
                        if (kc_manager_wait_change(d->m, &gen, until - t) == -ESHUTDOWN)
                                return;
                status_line(d, "", now, sizeof(now), NULL, NULL);
                if (!streq(now, last)) {
                        (void) kc_notify(now);
                        kc_strscpy(last, sizeof(last), now);
                }
        }
}

static void *readiness(void *arg) {
        struct daemon *d = arg;
        char status[768];
        size_t attached, n;
        int r;

        /* READY=1 is the end of the start; until then, how far it is, every PROGRESS_MS. */
        while ((r = kc_manager_wait_settled_for(d->m, false, PROGRESS_MS)) == -ETIMEDOUT) {
                status_line(d, "", status, sizeof(status), NULL, NULL);
                (void) kc_notify(status);
        }
        if (r < 0)
                return NULL;
        status_line(d, "READY=1\n", status, sizeof(status), &attached, &n);
        pthread_mutex_lock(&d->reload_lock);
        (void) kc_notify(status);
        d->ready_sent = true;
        pthread_mutex_unlock(&d->reload_lock);
        log_info("ready: %zu of %zu volumes attached, %.2f s after start", attached, n, seconds_since_start());
        kc_secret_warn_unlocked();
        follow_status(d, status + strlen("READY=1\n"));
        return NULL;
}

/* ---- main loop ---- */

static void stop_signals(sigset_t *ret) {
        sigemptyset(ret);
        sigaddset(ret, SIGTERM);
        sigaddset(ret, SIGINT);
        sigaddset(ret, SIGHUP);
}

/*
 * The stop signals are blocked first thing, before any thread starts: a
 * SIGTERM while the agent reads its configuration or starts its mappers
 * (systemd stopping a unit that is still starting) then waits for the
 * signalfd and ends in a clean stop, not in death by signal (status 143,
 * which the unit reports as a failure).
 */
static void block_stop_signals(void) {
        sigset_t set;

        stop_signals(&set);
        (void) pthread_sigmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);
}

static int signal_fd(void) {
        sigset_t set;

        stop_signals(&set);
        return signalfd(-1, &set, SFD_CLOEXEC);
}

static int run(struct daemon *d, struct kc_server *s, int sfd) {
        struct pollfd p[2] = {
                { .fd = sfd, .events = POLLIN },
                { .fd = kc_server_fd(s), .events = POLLIN },
        };

        for (;;) {
                struct signalfd_siginfo si;
                struct kc_err err = {};
                size_t n;

                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return log_error_errno(errno, "poll: %m");
                }
                if (p[1].revents & POLLIN)
                        kc_server_accept(s);
                if (!(p[0].revents & POLLIN) || read(sfd, &si, sizeof(si)) != sizeof(si))
                        continue;
                if (si.ssi_signo == SIGHUP) {
                        (void) reload(d, &n, &err);
                        continue;
                }
                log_info("%s: stopping; attached volumes stay attached", strsignal((int) si.ssi_signo));
                (void) kc_notify("STOPPING=1");
                return 0;
        }
}

/*
 * OpenSSL's and libcryptsetup's first-use set-up, which every attach needs
 * and the first ones would each wait for in turn, on a thread of its own
 * while the main thread reads the volumes and opens the KMS.  Joined before
 * main returns: exit runs libcryptsetup's destructor, which frees the
 * OpenSSL context the thread may still be setting up (a stop at once).
 */
struct warm_up {
        pthread_t thread;
        bool running;
};

static void *warm_up_run(void *arg) {
        kc_crypto_fetch();
        kc_luks_warm_up();
        return arg;
}

static void warm_up_start(struct warm_up *w) {
        w->running = kc_thread_start(&w->thread, false, warm_up_run, NULL) == 0;
}

static void warm_up_join(struct warm_up *w) {
        if (w->running)
                pthread_join(w->thread, NULL);
        w->running = false;
}

/* Last to run at exit (declared first in main): the manager borrows strings of d.config. */
static void daemon_done(struct daemon *d) {
        kc_config_done(&d->config);
}

int main(int argc, char **argv) {
        _cleanup_(daemon_done) struct daemon d = {
                .socket_path = getenv("KMSCRYPT_AGENT_SOCKET") ?: KC_AGENT_SOCKET,
                .volumes_path = KC_VOLUMES_FILE,
                .group = DEFAULT_GROUP,
                .mappers = -1,
                .revoke_interval = DEFAULT_REVOKE_INTERVAL,
                .attach_at_start = true,
                .log_stderr = !getenv("JOURNAL_STREAM"),
                .log_level = -1,
                .reload_lock = PTHREAD_MUTEX_INITIALIZER,
        };
        /* Joined after everything declared below is gone, before d is. */
        _cleanup_(warm_up_join) struct warm_up warm = {};
        struct kc_manager_config mc;
        _cleanup_free_ char *cli = NULL;
        struct kc_server_config sc;
        _cleanup_(kc_mapper_freep) struct kc_mapper *mapper = NULL;
        _cleanup_(kc_manager_freep) struct kc_manager *m = NULL;
        _cleanup_(kc_server_freep) struct kc_server *s = NULL;
        _cleanup_close_ int sfd = -1;
        struct kc_volumes *v = NULL;
        struct kc_err err = {};
        pthread_t ready;
        int r;

        kc_crypto_init();
        kc_log_set_program("kmscryptd");
        kc_log_set_sink(kc_log_sink_stderr, NULL);
        /* A mapper process started in place of a dead one (mapper.h): not an option for users. */
        if (argc == 4 && strcmp(argv[1], "--mapper-process") == 0)
                return kc_mapper_process_main(argv[2], argv[3]);
        block_stop_signals();
        r = parse_args(&d, argc, argv);
        if (r <= 0)
                return r < 0 ? 2 : 0;
        if (d.max_parallel == 0)
                d.max_parallel = default_max_parallel();
        setup_logging(d.log_stderr);
        /* First, so that its log-level and syslog settings hold for all that follows. */
        r = kc_config_load(&d.overrides, &d.config, &err);
        if (r < 0) {
                log_error("%s", kc_err_msg(&err, r));
                return 1;
        }
        apply_logging_config(&d);
        if (harden() < 0 || resolve_group(&d) < 0)
                return 1;
        /* Now, while this process has one thread, no KMS handle and no key. */
        mapper = start_mappers(&d);
        warm_up_start(&warm);
        r = load_volumes(&d, &v, &err);
        if (r < 0) {
                log_error("%s", kc_err_msg(&err, r));
                return 1;
        }
        kc_fault_point("agent:starting");
        sfd = signal_fd();
        if (sfd < 0)
                return log_error_errno(errno, "signalfd: %m"), 1;

        cli = cli_path();
        mc = (struct kc_manager_config) { .max_parallel = d.max_parallel, .revoke_interval = d.revoke_interval,
                .state_dir = getenv("KMSCRYPT_STATE_DIR") ?: KC_STATEDIR, .mapper = mapper,
                .cli = cli, .config_file = d.overrides.config_file,
        };
        kc_config_kms(&d.config, &mc.kms);
        r = kc_manager_new(&mc, &m);
        if (r < 0) {
                kc_volumes_free(v);
                return log_error_errno(r, "cannot start: %m"), 1;
        }
        d.m = m;
        sc = (struct kc_server_config) {
                .socket_path = d.socket_path, .status_gid = d.status_gid, .reload = reload, .userdata = &d,
        };
        r = kc_server_new(&sc, m, &s, &err);
        if (r < 0) {
                kc_volumes_free(v);
                log_error("%s", kc_err_msg(&err, r));
                return 1;
        }
        log_info("listening on %s; %zu configured volumes, %u attaches at once", d.socket_path, v->n, d.max_parallel);
        kc_manager_set_volumes(m, v, d.attach_at_start);
        r = kc_manager_start(m);
        if (r < 0)
                return log_error_errno(r, "cannot start the scheduler: %m"), 1;
        r = kc_thread_start(&ready, false, readiness, &d);
        if (r < 0)
                return log_error_errno(r, "cannot start: %m"), 1;

        r = run(&d, s, sfd);
        kc_manager_stop(m);
        /* Stopping wakes it (kc_manager_wait_settled fails); it must be done with m and d before they go. */
        pthread_join(ready, NULL);
        return r < 0 ? 1 : 0;
}
