/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "agent/daemon/caps.h"
#include "agent/daemon/mapper.h"
#include "lib/clock.h"
#include "lib/fault.h"
#include "lib/log.h"
#include "lib/thread.h"

/* Room for a dm-crypt key of any cipher LUKS2 can name (aes-xts with 512 bits is 64 bytes). */
#define SLOT_BYTES 256

/* Where a replacement mapper, executed afresh, finds its socket and the slots (kc_mapper_process_main). */
#define EXEC_SOCKET_FD 3
#define EXEC_SLOTS_FD 4

/* A replacement is started at most once a second a slot, and 5 s after one that could not be. */
#define RESPAWN_MIN_MS 1000
#define RESPAWN_FAILED_MS 5000
/*
 * A mapper that does not answer within this long (stopped, stuck) is taken
 * for dead and killed: a table load takes milliseconds, seconds under the
 * worst load; an attach, and the agent's stop, must not wait for ever.
 */
#define REPLY_TIMEOUT_MS 60000
/* How long a mapper whose socket closed may take to exit before it is killed. */
#define EXIT_GRACE_MS 2000
/* How soon the supervisor looks again at a killed mapper that has not exited yet. */
#define REAP_RETRY_MS 100

/* What an attach thread asks of a mapper: kc_mapping's strings, inline. */
struct request {
        uint64_t size;
        uint32_t key_size;
        uint32_t read_only;
        uint32_t gated;                   /* the agent checks the key meanwhile: wait for its verdict */
        char name[128];
        char dm_uuid[160];
        char key_description[96];
        char params[PATH_MAX + 512];
};

/*
 * The mapper's answer.  To a gated request it answers twice: loaded = 1
 * when the table is loaded (the agent then sends its verdict), and at the
 * end.
 */
struct reply {
        int32_t error;                    /* 0 or negative errno */
        uint32_t loaded;
        char msg[sizeof(((struct kc_err *) NULL)->msg)];
};

/* The key check's result, from the agent to a mapper holding a loaded table: 0 resumes it. */
struct verdict {
        int32_t error;
};

struct mapper {
        pid_t pid;
        int fd;
        bool busy, dead;
        uint64_t next_spawn_ms;           /* a dead one's replacement, not before */
};

struct kc_mapper {
        pthread_mutex_t lock;
        pthread_cond_t changed;
        struct mapper *m;
        unsigned n;
        uint8_t *slots;                   /* n * SLOT_BYTES, shared with the mappers */
        size_t slots_len;
        int slots_fd;                     /* the memfd behind slots, for a replacement to map */
        /* Replacement of dead mappers (kc_mapper_supervise) */
        char *exe;
        pthread_t supervisor;
        bool supervising, stopping;
        int wake[2];                      /* written to wake the supervisor */
        struct pollfd *pf;                /* the supervisor's: n + 1 */
        unsigned *idx;                    /* the supervisor's: which mapper each pf entry is */
        int reply_timeout_ms;             /* REPLY_TIMEOUT_MS; tests shorten it */
};

/* ---- the mapper process ---- */

/* Close every descriptor above stderr but keep. */
static void close_others(int keep) {
        if ((keep <= 3 || close_range(3, (unsigned) keep - 1, 0) == 0) && close_range((unsigned) keep + 1, ~0U, 0) == 0)
                return;
        /* Kernels before 5.9 have no close_range. */
        for (long i = 3, max = sysconf(_SC_OPEN_MAX); i < (max > 0 && max < 65536 ? max : 65536); i++)
                if (i != keep)
                        (void) close((int) i);
}

static void mapper_detach_from_agent(int fd, pid_t agent, const sigset_t *mask) {
        static const int stop_signals[] = { SIGTERM, SIGINT, SIGHUP, SIGPIPE };

        /* With the agent gone, so is whoever would wipe the slot: go too. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != agent)
                _exit(0);
        /*
         * A service manager stopping kmscryptd signals every process of it;
         * the mapper finishes the mapping in hand and leaves when the agent
         * closes its socket.
         */
        for (size_t i = 0; i < ARRAY_SIZE(stop_signals); i++)
                (void) signal(stop_signals[i], SIG_IGN);
        /* Blocked since the fork (mapper_spawn): one sent meanwhile is dropped now, not acted on. */
        (void) sigprocmask(SIG_SETMASK, mask, NULL);
        if (kc_caps_reduce_to(kc_caps_keep_mapper()) < 0)
                _exit(1);
        kc_fault_set_partner(agent);
        /* Nothing of the agent's but stdio and its own socket; syslog connects again when it must. */
        closelog();
        close_others(fd);
        openlog("kmscryptd", LOG_PID, LOG_DAEMON);
}

/* Strings arrive as fixed arrays: one without a NUL is a broken request. */
static bool request_terminated(const struct request *q) {
        return memchr(q->name, 0, sizeof(q->name)) && memchr(q->dm_uuid, 0, sizeof(q->dm_uuid)) &&
               memchr(q->key_description, 0, sizeof(q->key_description)) && memchr(q->params, 0, sizeof(q->params));
}

/* A gated request's gate, in the mapper: tell the agent the table is loaded, wait for its verdict. */
static int mapper_gate(void *userdata) {
        const struct reply loaded = { .loaded = 1 };
        int fd = *(int *) userdata;
        struct verdict v;
        ssize_t n;

        if (send(fd, &loaded, sizeof(loaded), MSG_NOSIGNAL) != sizeof(loaded))
                return -ECONNRESET;
        do
                n = recv(fd, &v, sizeof(v), 0);
        while (n < 0 && errno == EINTR);
        if (n != sizeof(v))
                return -ECONNRESET;     /* agent gone: the mapping goes too */
        return v.error < 0 ? v.error : 0;
}

static void mapper_serve(int fd, const struct request *q, const uint8_t *slot, struct reply *a) {
        struct kc_err err = {};
        struct kc_mapping m = {
                .name = q->name, .dm_uuid = q->dm_uuid, .key_description = q->key_description,
                .params = q->params, .size = q->size, .read_only = q->read_only,
        };

        if (!request_terminated(q) || q->key_size == 0 || q->key_size > SLOT_BYTES) {
                a->error = kc_err_set(&err, -EINVAL, "malformed request to the mapper process");
        } else
                a->error = kc_mapping_load_gated(&m, slot, q->key_size, q->gated ? mapper_gate : NULL, &fd, &err);
        if (a->error < 0)
                kc_strscpy(a->msg, sizeof(a->msg), kc_err_msg(&err, a->error));
}

static _Noreturn void mapper_main(int fd, const uint8_t *slot, pid_t agent, const sigset_t *mask) {
        struct request q;
        struct reply a;
        ssize_t n;

        mapper_detach_from_agent(fd, agent, mask);
        for (;;) {
                n = recv(fd, &q, sizeof(q), 0);
                if (n == 0)
                        _exit(0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        _exit(1);
                }
                a = (struct reply) {};
                if (n != sizeof(q))
                        a.error = -EINVAL;
                else
                        mapper_serve(fd, &q, slot, &a);
                if (send(fd, &a, sizeof(a), MSG_NOSIGNAL) != sizeof(a))
                        _exit(1);
        }
}

/*
 * A replacement mapper, started by kc_mapper_supervise as "kmscryptd
 * --mapper-process INDEX AGENT" with its socket and the slots' memfd on
 * EXEC_SOCKET_FD and EXEC_SLOTS_FD.  Executed afresh rather than forked:
 * the agent has threads by then, and a fork would copy whatever lock one
 * of them holds (libdevmapper's, syslog's) into a child that could never
 * take it.
 */
int kc_mapper_process_main(const char *index, const char *agent) {
        struct stat st;
        unsigned long i, pid;
        sigset_t none;
        uint8_t *slots;
        char *end;

        /* Not inherited across exec: before the slot holds anything. */
        if (prctl(PR_SET_DUMPABLE, 0) < 0 || setrlimit(RLIMIT_CORE, &(struct rlimit) {}) < 0)
                return 1;
        errno = 0;
        i = strtoul(index, &end, 10);
        if (errno || *end || !*index)
                return 1;
        pid = strtoul(agent, &end, 10);
        if (errno || *end || !*agent || pid == 0 || pid > INT_MAX)
                return 1;
        if (fstat(EXEC_SLOTS_FD, &st) < 0 || st.st_size < 0 || i >= (size_t) st.st_size / SLOT_BYTES)
                return 1;
        slots = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_SHARED, EXEC_SLOTS_FD, 0);
        if (slots == MAP_FAILED)
                return 1;
        (void) madvise(slots, (size_t) st.st_size, MADV_DONTDUMP);
        sigemptyset(&none);
        mapper_main(EXEC_SOCKET_FD, slots + i * SLOT_BYTES, (pid_t) pid, &none);
}

/* ---- the agent's side ---- */

/* In a memfd, so that a mapper executed afresh can map it too (kc_mapper_process_main). */
static int slots_map(struct kc_mapper *mp) {
        long page = sysconf(_SC_PAGESIZE);

        mp->slots_len = ((size_t) mp->n * SLOT_BYTES + page - 1) / page * page;
        mp->slots_fd = memfd_create("kmscryptd-key-slots", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (mp->slots_fd < 0)
                return negative_errno();
        /* Sealed at its size: nobody can truncate it under a mapper reading its slot. */
        if (ftruncate(mp->slots_fd, (off_t) mp->slots_len) < 0 ||
            fcntl(mp->slots_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
                return negative_errno();
        mp->slots = mmap(NULL, mp->slots_len, PROT_READ | PROT_WRITE, MAP_SHARED, mp->slots_fd, 0);
        if (mp->slots == MAP_FAILED) {
                mp->slots = NULL;
                return negative_errno();
        }
        /* Keys pass through here: never swapped (the agent's lock holds the pages), never in a core file. */
        if (mlock(mp->slots, mp->slots_len) < 0)
                return log_warning_errno(negative_errno(), "cannot lock the mappers' key slots: %m");
        (void) madvise(mp->slots, mp->slots_len, MADV_DONTDUMP);
        return 0;
}

static int mapper_spawn(struct kc_mapper *mp, unsigned i) {
        sigset_t all, mask;
        int sv[2], r = 0;
        pid_t agent = getpid(), pid;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return negative_errno();
        /*
         * The child starts with every signal blocked, so that the stop signal
         * or a handler it inherited cannot act before it has set its own.
         */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &mask);
        pid = fork();
        if (pid == 0) {
                close(sv[0]);
                mapper_main(sv[1], mp->slots + (size_t) i * SLOT_BYTES, agent, &mask);
        }
        if (pid < 0)
                r = negative_errno();
        pthread_sigmask(SIG_SETMASK, &mask, NULL);
        close(sv[1]);
        if (r < 0) {
                close(sv[0]);
                return r;
        }
        mp->m[i] = (struct mapper) { .pid = pid, .fd = sv[0] };
        return 0;
}

/* posix_spawn's setup of a replacement: its two descriptors in place, every signal blocked. */
static int exec_setup(posix_spawn_file_actions_t *fa, posix_spawnattr_t *attr, int sock, int slots) {
        sigset_t all;
        int r;

        sigfillset(&all);
        r = posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK);
        if (r == 0)
                r = posix_spawnattr_setsigmask(attr, &all);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(fa, sock, EXEC_SOCKET_FD);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(fa, slots, EXEC_SLOTS_FD);
        return -r;
}

/* Lock held, slot i dead: a replacement executed from mp->exe (kc_mapper_process_main). */
static int mapper_exec(struct kc_mapper *mp, unsigned i) {
        char index[16], agent[16];
        char *argv[] = { (char *) "kmscryptd", (char *) "--mapper-process", index, agent, NULL };
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        int sv[2], sock = -1, slots = -1, r;
        pid_t pid;

        snprintf(index, sizeof(index), "%u", i);
        snprintf(agent, sizeof(agent), "%d", (int) getpid());
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return negative_errno();
        /* Above the two targets, so that neither dup2 overwrites the other's source. */
        sock = fcntl(sv[1], F_DUPFD_CLOEXEC, EXEC_SLOTS_FD + 1);
        slots = fcntl(mp->slots_fd, F_DUPFD_CLOEXEC, EXEC_SLOTS_FD + 1);
        close(sv[1]);
        if (sock < 0 || slots < 0) {
                r = negative_errno();
                goto out;
        }
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        r = exec_setup(&fa, &attr, sock, slots);
        if (r == 0)
                r = -posix_spawn(&pid, mp->exe, &fa, &attr, argv, environ);
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
        if (r == 0) {
                mp->m[i] = (struct mapper) { .pid = pid, .fd = sv[0] };
                sv[0] = -1;
        }
out:
        if (sv[0] >= 0)
                close(sv[0]);
        if (sock >= 0)
                close(sock);
        if (slots >= 0)
                close(slots);
        return r;
}

int kc_mapper_new(unsigned n, struct kc_mapper **ret) {
        _cleanup_(kc_mapper_freep) struct kc_mapper *mp = NULL;
        int r;

        if (n == 0)
                return -EINVAL;
        mp = calloc(1, sizeof(*mp));
        if (!mp)
                return -ENOMEM;
        mp->slots_fd = mp->wake[0] = mp->wake[1] = -1;
        mp->reply_timeout_ms = REPLY_TIMEOUT_MS;
        pthread_mutex_init(&mp->lock, NULL);
        pthread_cond_init(&mp->changed, NULL);
        mp->m = calloc(n, sizeof(*mp->m));
        if (!mp->m)
                return -ENOMEM;
        for (unsigned i = 0; i < n; i++)
                mp->m[i] = (struct mapper) { .fd = -1, .dead = true };
        mp->n = n;
        r = slots_map(mp);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < n; i++) {
                r = mapper_spawn(mp, i);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(mp);
        return 0;
}

/*
 * Close a mapper's socket and reap it if it has exited; never wait for it
 * (the callers hold mp->lock, which every attach takes): false while it
 * has not exited, its pid kept for a later try.  It is dead either way.
 */
static bool mapper_reap_now(struct mapper *w) {
        w->dead = true;
        if (w->fd >= 0)
                close(w->fd);
        w->fd = -1;
        /* 0: still running.  Otherwise reaped, or not ours to reap (ECHILD): gone either way. */
        if (w->pid > 0 && waitpid(w->pid, NULL, WNOHANG) == 0)
                return false;
        w->pid = 0;
        return true;
}

/* Lock held: the supervisor looks again (a mapper died, or it is to stop). */
static void supervisor_wake(struct kc_mapper *mp) {
        /* A full pipe (EAGAIN) holds a wake-up already: the supervisor drains it all at once. */
        if (mp->wake[1] >= 0 && write(mp->wake[1], "", 1) < 0 && errno != EAGAIN)
                log_debug_errno(errno, "cannot wake the mapper supervisor: %m");
}

/* Lock held: replace the dead mappers whose time has come; when the next one's comes. */
static uint64_t replace_dead(struct kc_mapper *mp, uint64_t now) {
        uint64_t next = UINT64_MAX;

        for (unsigned i = 0; i < mp->n; i++) {
                struct mapper *w = &mp->m[i];
                int r;

                if (!w->dead)
                        continue;
                /*
                 * Reaped here, by the thread that polls its socket: a close elsewhere would race that
                 * poll.  One that has not exited yet (killed, but stuck in the kernel or held by a
                 * tracer) keeps its slot empty and is looked at again; nothing waits for it.
                 */
                if ((w->fd >= 0 || w->pid > 0) && !mapper_reap_now(w)) {
                        (void) kill(w->pid, SIGKILL);
                        next = now + REAP_RETRY_MS < next ? now + REAP_RETRY_MS : next;
                        continue;
                }
                if (now >= w->next_spawn_ms) {
                        r = mapper_exec(mp, i);
                        if (r >= 0) {
                                w->next_spawn_ms = now + RESPAWN_MIN_MS;
                                log_info("mapper process %d started in place of a dead one", (int) w->pid);
                                pthread_cond_broadcast(&mp->changed);
                                continue;
                        }
                        log_warning_errno(r, "cannot start a mapper process in place of a dead one: %m");
                        w->next_spawn_ms = now + RESPAWN_FAILED_MS;
                }
                next = w->next_spawn_ms < next ? w->next_spawn_ms : next;
        }
        return next;
}

/*
 * Lock held: reap the idle mappers whose socket hung up (the process is
 * gone).  A busy one its attach thread marks dead when its exchange fails
 * (mapper_give), for replace_dead to reap; true if there is such a one,
 * so that the caller waits for that.
 */
static bool reap_hung_up(struct kc_mapper *mp, const struct pollfd *pf, const unsigned *idx, size_t n) {
        bool busy = false;

        for (size_t k = 0; k < n; k++) {
                struct mapper *w = &mp->m[idx[k]];

                if (!(pf[k].revents & (POLLHUP | POLLERR)) || w->dead || w->fd != pf[k].fd)
                        continue;
                if (w->busy) {
                        busy = true;
                        continue;
                }
                log_warning("mapper process %d has died", (int) w->pid);
                (void) mapper_reap_now(w);      /* not yet exited: replace_dead() tries again */
                pthread_cond_broadcast(&mp->changed);
        }
        return busy;
}

/* Lock held: wait until a mapper changes, or ms have passed. */
static void wait_changed(struct kc_mapper *mp, long ms) {
        struct timespec until;

        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += ms / 1000;
        until.tv_nsec += ms % 1000 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
        }
        (void) pthread_cond_timedwait(&mp->changed, &mp->lock, &until);
}

/*
 * The supervisor thread: watches every mapper's socket for the hang-up of
 * its death, and starts a replacement for a dead one.  It lives as long
 * as the mappers do: their parent-death signal follows the thread that
 * started them.
 */
static void *supervise(void *arg) {
        struct kc_mapper *mp = arg;

        pthread_mutex_lock(&mp->lock);
        while (!mp->stopping) {
                struct pollfd *pf = mp->pf;
                unsigned *idx = mp->idx;
                uint64_t now = kc_now_ms(), next = replace_dead(mp, now);
                size_t n = 0;
                char buf[64];

                for (unsigned i = 0; i < mp->n; i++)
                        if (!mp->m[i].dead) {
                                pf[n] = (struct pollfd) { .fd = mp->m[i].fd };
                                idx[n++] = i;
                        }
                pf[n] = (struct pollfd) { .fd = mp->wake[0], .events = POLLIN };
                pthread_mutex_unlock(&mp->lock);
                (void) poll(pf, n + 1, next == UINT64_MAX ? -1 : (int) (next > now ? next - now : 0));
                while (read(mp->wake[0], buf, sizeof(buf)) > 0)
                        ;
                pthread_mutex_lock(&mp->lock);
                /* A busy one's attach thread gives it back marked dead, and says so on changed. */
                if (!mp->stopping && reap_hung_up(mp, pf, idx, n))
                        wait_changed(mp, 100);
        }
        pthread_mutex_unlock(&mp->lock);
        return NULL;
}

int kc_mapper_supervise(struct kc_mapper *mp, const char *exe) {
        sigset_t all, mask;
        int r;

        if (!mp || mp->supervising)
                return -EINVAL;
        mp->exe = strdup(exe);
        mp->pf = calloc(mp->n + 1, sizeof(*mp->pf));
        mp->idx = calloc(mp->n, sizeof(*mp->idx));
        if (!mp->exe || !mp->pf || !mp->idx)
                return -ENOMEM;
        if (pipe2(mp->wake, O_CLOEXEC | O_NONBLOCK) < 0)
                return negative_errno();
        /* None of the agent's signals is for this thread (its stop signals go to the signalfd). */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &mask);
        mp->supervising = true;
        r = kc_thread_start(&mp->supervisor, false, supervise, mp);
        pthread_sigmask(SIG_SETMASK, &mask, NULL);
        if (r < 0)
                mp->supervising = false;
        return r;
}

/*
 * At the end: close every socket, so that the mappers exit together, and
 * reap them against one deadline, EXIT_GRACE_MS; those still there then
 * (stopped, hung) are killed and given as long again.  One that outlives
 * that too is left to init: the agent's stop waits for no process.
 */
static void reap_all(struct kc_mapper *mp) {
        for (int round = 0; round < 2; round++) {
                uint64_t deadline = kc_now_ms() + EXIT_GRACE_MS;
                bool left;

                for (;;) {
                        left = false;
                        for (unsigned i = 0; i < mp->n && mp->m; i++)
                                left |= !mapper_reap_now(&mp->m[i]);
                        if (!left || kc_now_ms() >= deadline)
                                break;
                        (void) usleep(10 * 1000);
                }
                if (!left)
                        return;
                for (unsigned i = 0; i < mp->n && mp->m; i++)
                        if (mp->m[i].pid > 0) {
                                log_warning("mapper process %d %s", (int) mp->m[i].pid,
                                            round == 0 ? "did not exit; killing it" : "cannot be reaped; left to init");
                                if (round == 0)
                                        (void) kill(mp->m[i].pid, SIGKILL);
                        }
        }
}

void kc_mapper_free(struct kc_mapper *mp) {
        if (!mp)
                return;
        /*
         * The supervisor first: its poll() holds a reference to every
         * mapper's socket, so a close here would not reach a mapper until
         * it returned.  The mappers it started get their parent-death
         * signal as it exits: idle, as every mapper is by now.
         */
        if (mp->supervising) {
                pthread_mutex_lock(&mp->lock);
                mp->stopping = true;
                supervisor_wake(mp);
                pthread_mutex_unlock(&mp->lock);
                pthread_join(mp->supervisor, NULL);
        }
        reap_all(mp);
        for (int k = 0; k < 2; k++)
                if (mp->wake[k] >= 0)
                        close(mp->wake[k]);
        if (mp->slots) {
                explicit_bzero(mp->slots, mp->slots_len);
                munmap(mp->slots, mp->slots_len);
        }
        if (mp->slots_fd >= 0)
                close(mp->slots_fd);
        pthread_cond_destroy(&mp->changed);
        pthread_mutex_destroy(&mp->lock);
        free(mp->exe);
        free(mp->pf);
        free(mp->idx);
        free(mp->m);
        free(mp);
}

/* An idle mapper, marked busy; -1 when none is alive. */
static int mapper_take(struct kc_mapper *mp) {
        int found = -1;

        pthread_mutex_lock(&mp->lock);
        for (;;) {
                bool alive = false;

                for (unsigned i = 0; i < mp->n && found < 0; i++) {
                        alive = alive || !mp->m[i].dead;
                        if (!mp->m[i].dead && !mp->m[i].busy)
                                found = (int) i;
                }
                if (found >= 0 || !alive)
                        break;
                pthread_cond_wait(&mp->changed, &mp->lock);
        }
        if (found >= 0)
                mp->m[found].busy = true;
        pthread_mutex_unlock(&mp->lock);
        return found;
}

static void mapper_give(struct kc_mapper *mp, unsigned i, bool died) {
        pthread_mutex_lock(&mp->lock);
        mp->m[i].busy = false;
        if (died) {
                /* Whatever broke the exchange, never wait for a mapper that still runs (pid 0: our own group). */
                if (mp->m[i].pid > 0)
                        (void) kill(mp->m[i].pid, SIGKILL);
                /* Under supervision the supervisor reaps it (replace_dead), and replaces it. */
                if (mp->supervising) {
                        mp->m[i].dead = true;
                        supervisor_wake(mp);
                } else
                        (void) mapper_reap_now(&mp->m[i]);   /* if not yet, kc_mapper_free() reaps it */
        }
        pthread_cond_broadcast(&mp->changed);
        pthread_mutex_unlock(&mp->lock);
}

/* A reply within timeout_ms; -ETIMEDOUT when none comes (the caller kills the mapper). */
static int reply_recv(int fd, int timeout_ms, struct reply *a) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        uint64_t deadline = kc_now_ms() + (uint64_t) timeout_ms, now;
        ssize_t n;
        int k;

        for (;;) {
                now = kc_now_ms();
                k = now >= deadline ? 0 : poll(&p, 1, (int) (deadline - now));
                if (k == 0)
                        return -ETIMEDOUT;
                if (k > 0 || errno != EINTR)
                        break;
        }
        do
                n = recv(fd, a, sizeof(*a), 0);
        while (n < 0 && errno == EINTR);
        return n == sizeof(*a) ? 0 : -ECONNRESET;
}

/* The key check of one load, run once whichever mapper (or this thread) loads it. */
struct load_check {
        const struct kc_mapping *m;
        bool done;
        int r;
};

static int load_check_run(struct load_check *c) {
        if (!c->done) {
                c->r = c->m->check(c->m->check_userdata);
                c->done = true;
        }
        return c->r;
}

static int load_check_gate(void *userdata) {
        return load_check_run(userdata);
}

/*
 * One request, its reply.  A gated one is checked here while the mapper
 * loads the table; the mapper says when it has, and gets the verdict.
 * -ECONNREFUSED when the mapper was gone before it got the request (it
 * died idle: nothing happened, another may do it), -ECONNRESET when it
 * went before answering (the mapping may be half made: the attach is
 * retried, and its retry removes that).
 */
static int exchange(int fd, int timeout_ms, const struct request *q, struct load_check *c, struct reply *a) {
        struct verdict v;
        int r;

        if (send(fd, q, sizeof(*q), MSG_NOSIGNAL) != sizeof(*q))
                return -ECONNREFUSED;
        if (q->gated)
                (void) load_check_run(c);
        r = reply_recv(fd, timeout_ms, a);
        if (r < 0 || !a->loaded)
                return r;
        v = (struct verdict) { .error = c->r };
        if (send(fd, &v, sizeof(v), MSG_NOSIGNAL) != sizeof(v))
                return -ECONNRESET;
        r = reply_recv(fd, timeout_ms, a);
        return r < 0 ? r : a->loaded ? -ECONNRESET : 0;
}

/* In this thread, when no mapper can: the check is not run twice. */
static int load_here(const struct kc_mapping *m, const void *key, size_t key_size, struct load_check *c,
                     struct kc_err *err) {
        if (m->check && c->done)
                return kc_mapping_load_gated(m, key, key_size, load_check_gate, c, err);
        return kc_mapping_load(m, key, key_size, err);
}

static int request_fill(struct request *q, const struct kc_mapping *m, size_t key_size) {
        *q = (struct request) { .size = m->size, .key_size = (uint32_t) key_size, .read_only = m->read_only,
                                .gated = m->check != NULL };
        if (key_size == 0 || key_size > SLOT_BYTES || !kc_strscpy(q->name, sizeof(q->name), m->name) ||
            !kc_strscpy(q->dm_uuid, sizeof(q->dm_uuid), m->dm_uuid) ||
            !kc_strscpy(q->key_description, sizeof(q->key_description), m->key_description) ||
            !kc_strscpy(q->params, sizeof(q->params), m->params))
                return -ENAMETOOLONG;
        return 0;
}

void kc_mapper_set_reply_timeout(struct kc_mapper *mp, int ms) {
        mp->reply_timeout_ms = ms;
}

int kc_mapper_load(void *userdata, const struct kc_mapping *m, const void *key, size_t key_size,
                   struct kc_err *err) {
        struct kc_mapper *mp = userdata;
        struct load_check c = { .m = m };
        struct request q;
        struct reply a;
        uint8_t *slot;
        pid_t pid;
        int i, r;

        /* Longer than a mapper takes (a dm-crypt table naming a very long device path): load it here. */
        if (request_fill(&q, m, key_size) < 0)
                return kc_mapping_load(m, key, key_size, err);
        do {
                i = mapper_take(mp);
                if (i < 0)
                        return load_here(m, key, key_size, &c, err);
                slot = mp->slots + (size_t) i * SLOT_BYTES;
                pid = mp->m[i].pid;
                memcpy(slot, key, key_size);
                r = exchange(mp->m[i].fd, mp->reply_timeout_ms, &q, &c, &a);
                explicit_bzero(slot, key_size);
                mapper_give(mp, (unsigned) i, r < 0);
                if (r == -ETIMEDOUT)
                        log_warning("mapper process %d did not answer within %d ms; killed", (int) pid,
                                    mp->reply_timeout_ms);
                else if (r < 0)
                        log_warning("mapper process %d has died%s", (int) pid,
                                    r == -ECONNRESET ? " while loading a mapping" : "");
        } while (r == -ECONNREFUSED);
        if (r == -ETIMEDOUT)
                return kc_err_set(err, -ECONNRESET, "the mapper process loading %s did not answer within %d ms",
                                  m->name, mp->reply_timeout_ms);
        if (r < 0)
                return kc_err_set(err, r, "the mapper process loading %s died", m->name);
        if (a.error < 0) {
                a.msg[sizeof(a.msg) - 1] = '\0';
                return kc_err_set(err, a.error, "%s", a.msg);
        }
        return 0;
}
