/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "agent/daemon/server.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "lib/strv.h"
#include "lib/thread.h"

#define SD_LISTEN_FDS_START 3
/* A client that says nothing for this long loses its thread. */
#define IDLE_TIMEOUT_SEC 60
/* A client that reads no reply for this long loses its thread. */
#define SEND_TIMEOUT_SEC 10
/*
 * At stop, a reply that waited this long to go out is given up (its
 * connection shut for writing).  Only a peer with earlier replies unread
 * makes a send wait at all: a reply fits the send buffer on its own
 * (send_reply) and a client reads each before its next request.  So a
 * stop waits this long at most for a peer that does not read, not
 * SEND_TIMEOUT_SEC, and a peer that reads gets its reply.
 */
#define STOP_SEND_GRACE_MS 1000
/*
 * Of KC_SERVER_MAX_CONNECTIONS, a user other than root holds at most
 * MAX_PER_USER, and all of them together leave ROOT_RESERVED free: members
 * of the status group may ask, but never shut root, the hotplug helper or
 * the boot units out of the agent.
 */
#define MAX_PER_USER 4
#define ROOT_RESERVED 16
/* Refused requests in a row after which a connection is closed. */
#define MAX_REFUSED_IN_A_ROW 16
/* Refusals logged a minute; the rest are counted, so a peer cannot flood the journal. */
#define REFUSALS_LOGGED_PER_MIN 20

struct conn {
        struct kc_server *s;
        int fd;
        struct kc_peer peer;
        gid_t groups[64];
        gid_t *many_groups;         /* when the peer has more than 64 */
        struct kc_caller caller;
        unsigned refused_in_a_row;
        uint64_t sending_since_ms;  /* under s->lock: kc_now_ms() when its reply's send began, 0 when not sending */
        struct conn *next;
};

struct kc_server {
        struct kc_server_config cfg;
        char *path;                 /* set when we bound it: removed at the end */
        int fd;
        int lock_fd;                /* path.lock, held while we own path; -1 when socket-activated */
        struct kc_manager *m;
        pthread_mutex_t lock;
        pthread_cond_t idle;
        struct conn *conns;         /* live connections */
        unsigned n_conns;
        bool stopping;
        uint64_t refusal_minute_ms; /* start of the minute refusals are counted in */
        unsigned refusals_logged, refusals_unlogged;
};

/*
 * A refusal (a connection turned away, a malformed or unauthorized
 * request) is logged at notice, but at most REFUSALS_LOGGED_PER_MIN a
 * minute: the next minute's first line says how many were not.
 */
static void _printf_(2, 3) log_refusal(struct kc_server *s, const char *fmt, ...) {
        unsigned unlogged = 0;
        uint64_t now = kc_now_ms();
        char text[320];
        bool log;
        va_list ap;

        pthread_mutex_lock(&s->lock);
        if (now - s->refusal_minute_ms >= 60000) {
                unlogged = s->refusals_unlogged;
                s->refusal_minute_ms = now;
                s->refusals_logged = s->refusals_unlogged = 0;
        }
        log = s->refusals_logged < REFUSALS_LOGGED_PER_MIN;
        if (log)
                s->refusals_logged++;
        else
                s->refusals_unlogged++;
        pthread_mutex_unlock(&s->lock);
        if (unlogged)
                log_notice("%u more refusals in the last minute were not logged", unlogged);
        if (!log)
                return;
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        log_notice("%s", text);
}

/* ---- service manager integration ---- */

int kc_notify(const char *state) {
        const char *e = getenv("NOTIFY_SOCKET");
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        size_t len;

        if (!e || !*e)
                return 0;
        len = strlen(e);
        if ((e[0] != '/' && e[0] != '@') || len >= sizeof(sa.sun_path))
                return -EINVAL;
        memcpy(sa.sun_path, e, len);
        if (sa.sun_path[0] == '@')
                sa.sun_path[0] = '\0';      /* abstract namespace */
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *) &sa,
                   (socklen_t) (offsetof(struct sockaddr_un, sun_path) + len)) < 0)
                return negative_errno();
        return 0;
}

static int check_listen_socket(int fd, struct kc_err *err) {
        int type = 0, domain = 0, listening = 0;
        socklen_t l = sizeof(int);

        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) < 0)
                return kc_err_set(err, negative_errno(), "LISTEN_FDS: fd %d is not a socket", fd);
        l = sizeof(int);
        (void) getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l);
        l = sizeof(int);
        (void) getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l);
        if (domain != AF_UNIX || type != SOCK_SEQPACKET || !listening)
                return kc_err_set(err, -EINVAL, "LISTEN_FDS: fd %d is not a listening AF_UNIX SOCK_SEQPACKET "
                                  "socket (ListenSequentialPacket= in the socket unit)", fd);
        return 0;
}

int kc_listen_fd(int *ret_fd, struct kc_err *err) {
        const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
        unsigned long p, n;
        char *end;
        int r;

        r = 0;
        if (!pid || !fds)
                goto out;
        errno = 0;
        p = strtoul(pid, &end, 10);
        if (errno || *end || p != (unsigned long) getpid())
                goto out;           /* meant for another process */
        n = strtoul(fds, &end, 10);
        if (*end || n != 1) {
                r = kc_err_set(err, -EINVAL, "LISTEN_FDS=%s: expected exactly one socket", fds);
                goto out;
        }
        r = check_listen_socket(SD_LISTEN_FDS_START, err);
        if (r < 0)
                goto out;
        (void) fcntl(SD_LISTEN_FDS_START, F_SETFD, FD_CLOEXEC);
        *ret_fd = SD_LISTEN_FDS_START;
        r = 1;
out:
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
        return r;
}

/* ---- our own socket ---- */

/*
 * The socket's folder: made 0755 when missing.  One that is there must be
 * ours and not writable by others (unless sticky, as /tmp): whoever may
 * write it may replace the socket with one of their own, which clients
 * would take for the agent.
 */
static int make_parent(const char *path, gid_t status_gid, struct kc_err *err) {
        _cleanup_free_ char *dir = strdup(path);
        _cleanup_close_ int fd = -1;
        struct stat st;
        char *slash;

        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (!slash || slash == dir)
                return 0;
        *slash = '\0';
        if (mkdir(dir, 0755) == 0) {
                /* Our umask is 0077; the status group must be able to reach the socket inside. */
                if (chmod(dir, 0755) < 0)
                        return kc_err_set(err, negative_errno(), "cannot make %s: %m", dir);
        } else if (errno != EEXIST)
                return kc_err_set(err, negative_errno(), "cannot make %s: %m", dir);
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return kc_err_set(err, negative_errno(), "%s: %m", dir);
        if (st.st_uid != geteuid() || ((st.st_mode & 022) && !(st.st_mode & S_ISVTX)))
                return kc_err_set(err, -EPERM, "%s is owned by uid %u, mode %04o: only its owner, root, may write "
                                  "the folder of the agent's socket", dir, (unsigned) st.st_uid,
                                  (unsigned) (st.st_mode & 07777));
        if (status_gid != (gid_t) -1 && !(st.st_mode & 001) && !(st.st_gid == status_gid && (st.st_mode & 010)))
                log_warning("%s is mode %04o: members of the status group cannot reach the socket in it", dir,
                            (unsigned) (st.st_mode & 07777));
        return 0;
}

/* A socket file left by an agent that died: replace it.  One that answers: refuse. */
static int clear_stale(const struct sockaddr_un *sa, socklen_t salen, const char *path, struct kc_err *err) {
        _cleanup_close_ int probe = -1;
        struct stat st;

        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : kc_err_set(err, negative_errno(), "%s: %m", path);
        if (!S_ISSOCK(st.st_mode))
                return kc_err_set(err, -EEXIST, "%s exists and is not a socket", path);
        probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (probe < 0)
                return negative_errno();
        if (connect(probe, (const struct sockaddr *) sa, salen) == 0)
                return kc_err_set(err, -EADDRINUSE, "another kmscryptd is listening on %s", path);
        if (unlink(path) < 0 && errno != ENOENT)
                return kc_err_set(err, negative_errno(), "cannot remove stale socket %s: %m", path);
        return 0;
}

/*
 * One agent a socket path: an exclusive lock on PATH.lock, held for the
 * agent's life.  Without it two agents started at once could both find no
 * one listening (the one that bound first but had not listened yet looks
 * stale) and the second would unlink the first's socket and bind its own:
 * two agents attaching and revoking, one of them unreachable.  The lock
 * file stays in place (removing it would let a third lock a new file).
 */
static int lock_socket_path(const char *path, struct kc_err *err) {
        _cleanup_free_ char *lock = NULL;
        int fd;

        if (asprintf(&lock, "%s.lock", path) < 0)
                return -ENOMEM;
        fd = open(lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return kc_err_set(err, negative_errno(), "cannot open %s: %m", lock);
        while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                int r = negative_errno();

                if (r == -EINTR)
                        continue;
                close(fd);
                if (r == -EWOULDBLOCK)
                        return kc_err_set(err, -EADDRINUSE, "another kmscryptd is running on %s (it holds %s)",
                                          path, lock);
                return kc_err_set(err, r, "cannot lock %s: %s", lock, strerror(-r));
        }
        return fd;
}

static int bind_socket(const char *path, gid_t gid, int *ret_fd, int *ret_lock_fd, struct kc_err *err) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        socklen_t salen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
        _cleanup_close_ int fd = -1, lock_fd = -1;
        mode_t old;
        int r;

        if (path[0] != '/' || strlen(path) >= sizeof(sa.sun_path))
                return kc_err_set(err, -EINVAL, "socket path \"%s\" is not absolute or too long", path);
        memcpy(sa.sun_path, path, strlen(path));
        r = make_parent(path, gid, err);
        if (r < 0)
                return r;
        lock_fd = lock_socket_path(path, err);
        if (lock_fd < 0)
                return lock_fd;
        r = clear_stale(&sa, salen, path, err);
        if (r < 0)
                return r;
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return kc_err_set(err, negative_errno(), "socket: %m");
        old = umask(0177);      /* never a moment where others could connect */
        r = bind(fd, (struct sockaddr *) &sa, salen) < 0 ? negative_errno() : 0;
        umask(old);
        if (r < 0)
                return kc_err_set(err, r, "cannot bind %s: %s", path, strerror(-r));
        if (gid != (gid_t) -1 && (chown(path, (uid_t) -1, gid) < 0 || chmod(path, 0660) < 0)) {
                r = negative_errno();
                (void) unlink(path);
                return kc_err_set(err, r, "cannot give %s to group %u: %s", path, (unsigned) gid, strerror(-r));
        }
        if (listen(fd, 128) < 0) {
                r = negative_errno();
                (void) unlink(path);
                return kc_err_set(err, r, "cannot listen on %s: %s", path, strerror(-r));
        }
        *ret_fd = TAKE_FD(fd);
        *ret_lock_fd = TAKE_FD(lock_fd);
        return 0;
}

/*
 * The service manager made the socket file root's (a socket unit has no
 * group that is sure to exist), so the status group could not connect:
 * give it the file as bind_socket() does, when the group exists.  An
 * abstract or unnamed socket has no file to give.
 */
static int give_activated_socket(int fd, gid_t gid, struct kc_err *err) {
        struct sockaddr_un sa = {};
        socklen_t salen = sizeof(sa);
        _cleanup_close_ int path_fd = -1;
        char proc[64];
        struct stat st;

        if (gid == (gid_t) -1 || getsockname(fd, (struct sockaddr *) &sa, &salen) < 0 ||
            salen <= offsetof(struct sockaddr_un, sun_path) || sa.sun_path[0] != '/')
                return 0;
        sa.sun_path[sizeof(sa.sun_path) - 1] = '\0';
        /*
         * Only the socket itself: a link or other file planted in its place is left alone.  Looked
         * at and changed through one O_PATH descriptor, so that nothing swapped in between the
         * look and the change is changed.
         */
        path_fd = open(sa.sun_path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (path_fd < 0 || fstat(path_fd, &st) < 0 || !S_ISSOCK(st.st_mode))
                return 0;
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", path_fd);
        if (fchownat(path_fd, "", (uid_t) -1, gid, AT_EMPTY_PATH) < 0 || chmod(proc, 0660) < 0)
                return kc_err_set(err, negative_errno(), "cannot give %s to group %u: %m",
                                  sa.sun_path, (unsigned) gid);
        return 0;
}

int kc_server_new(const struct kc_server_config *cfg, struct kc_manager *m, struct kc_server **ret,
                  struct kc_err *err) {
        struct kc_server *s = calloc(1, sizeof(*s));
        int fd = -1, r;

        if (!s)
                return -ENOMEM;
        s->lock_fd = -1;
        r = kc_listen_fd(&fd, err);
        if (r > 0)
                r = give_activated_socket(fd, cfg->status_gid, err);
        else if (r == 0) {
                r = bind_socket(cfg->socket_path, cfg->status_gid, &fd, &s->lock_fd, err);
                if (r >= 0 && !(s->path = strdup(cfg->socket_path)))
                        r = -ENOMEM;
        }
        if (r < 0) {
                if (fd >= 0)
                        close(fd);
                if (s->lock_fd >= 0)
                        close(s->lock_fd);
                free(s);
                return r;
        }
        s->cfg = *cfg;
        s->fd = fd;
        s->m = m;
        pthread_mutex_init(&s->lock, NULL);
        kc_cond_init_monotonic(&s->idle);     /* kc_server_free() waits on it with deadlines */
        *ret = s;
        return 0;
}

int kc_server_fd(const struct kc_server *s) {
        return s->fd;
}

/* ---- requests ---- */

typedef int (*handler_t)(struct conn *c, const struct kc_request *req, struct json_object **ret, struct kc_err *err);

static int handle_ping(struct conn *c, const struct kc_request *req, struct json_object **ret, struct kc_err *err) {
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "Version", json_object_new_string(PACKAGE_VERSION));
        json_object_object_add(o, "Protocol", json_object_new_int(KC_PROTOCOL_VERSION));
        json_object_object_add(o, "Pid", json_object_new_int(getpid()));
        *ret = o;
        return 0;
}

static int handle_list(struct conn *c, const struct kc_request *req, struct json_object **ret, struct kc_err *err) {
        _cleanup_strv_ char **names = NULL;
        struct json_object *arr;
        int r;

        /* The same error as `kmscrypt list` without the agent, dm or no dm. */
        r = kc_volume_list(&names);
        if (r < 0)
                return kc_err_set(err, r, "cannot list device-mapper devices: %s", strerror(-r));
        arr = json_object_new_array();
        for (size_t i = 0; names[i]; i++)
                json_object_array_add(arr, json_object_new_string(names[i]));
        *ret = json_object_new_object();
        json_object_object_add(*ret, "Names", arr);
        return 0;
}

/* Mapping status of names (all kmscrypt mappings when NULL) into vols, failures into errs. */
static void status_mappings(char **names, struct json_object *vols, struct json_object *errs) {
        _cleanup_strv_ char **all = NULL;

        if (!names) {
                if (kc_volume_list(&all) < 0)
                        return;
                names = all;
        }
        for (size_t i = 0; names[i]; i++) {
                struct kc_volume_status st;
                struct kc_err e = {};
                int r = kc_volume_status(names[i], NULL, &st, &e);

                if (r < 0) {
                        struct json_object *o = json_object_new_object();
                        json_object_object_add(o, "Name", json_object_new_string(names[i]));
                        json_object_object_add(o, "Errno", json_object_new_int(-r));
                        json_object_object_add(o, "Error", json_object_new_string(kc_err_msg(&e, r)));
                        json_object_array_add(errs, o);
                        continue;
                }
                json_object_array_add(vols, kc_volume_status_to_json(&st));
                kc_volume_status_clear(&st);
        }
}

static bool wanted(char **names, const char *name) {
        if (!names)
                return true;
        for (size_t i = 0; names[i]; i++)
                if (streq(names[i], name))
                        return true;
        return false;
}

static int handle_status(struct conn *c, const struct kc_request *req, struct json_object **ret, struct kc_err *err) {
        _cleanup_free_ struct kc_agent_volume *av = NULL;
        struct json_object *o, *vols, *errs, *conf;
        bool dm = kc_dm_available();
        size_t n;
        int r;

        if (dm)
                kc_manager_notice_removed(c->s->m);     /* shown as they are, not as the agent left them */
        r = kc_manager_snapshot(c->s->m, &av, &n);
        if (r < 0)
                return r;
        o = json_object_new_object();
        vols = json_object_new_array();
        errs = json_object_new_array();
        conf = json_object_new_array();
        if (dm)
                status_mappings(req->names, vols, errs);
        for (size_t i = 0; i < n; i++)
                if (wanted(req->names, av[i].name))
                        json_object_array_add(conf, kc_agent_volume_to_json(&av[i]));
        json_object_object_add(o, "DeviceMapper", json_object_new_boolean(dm));
        json_object_object_add(o, "Volumes", vols);
        json_object_object_add(o, "Errors", errs);
        json_object_object_add(o, "Configured", conf);
        *ret = o;
        return 0;
}

static int handle_attach(struct conn *c, const struct kc_request *req, struct json_object **ret, struct kc_err *err) {
        struct kc_attach_result res;
        int r;

        if (req->volume)
                r = kc_manager_attach_volume(c->s->m, req->volume, &c->caller, req->wait, c->fd, &res, err);
        else
                r = kc_manager_attach_device(c->s->m, &req->attach, &c->caller, &res, err);
        if (r < 0)
                return r;
        *ret = kc_attach_result_to_json(&res);
        return 0;
}

static int handle_attach_all(struct conn *c, const struct kc_request *req, struct json_object **ret,
                             struct kc_err *err) {
        _cleanup_free_ struct kc_agent_volume *av = NULL;
        struct json_object *arr;
        size_t n;
        int r;

        kc_manager_attach_all(c->s->m);
        if (req->wait) {
                r = kc_manager_wait_tried_for(c->s->m, 0);
                if (r < 0)
                        return kc_err_set(err, r, "the agent is stopping");
        }
        r = kc_manager_snapshot(c->s->m, &av, &n);
        if (r < 0)
                return r;
        arr = json_object_new_array();
        for (size_t i = 0; i < n; i++)
                json_object_array_add(arr, kc_agent_volume_to_json(&av[i]));
        *ret = json_object_new_object();
        json_object_object_add(*ret, "Configured", arr);
        return 0;
}

static int handle_detach(struct conn *c, const struct kc_request *req, struct json_object **ret, struct kc_err *err) {
        int r = kc_manager_detach(c->s->m, req->name, req->deferred, err);

        if (r < 0)
                return r;
        log_info("%s %s at the request of uid %u (pid %d)", req->name, req->deferred ? "marked for deferred removal" :
                 "detached", (unsigned) c->peer.uid, (int) c->peer.pid);
        *ret = json_object_new_object();
        json_object_object_add(*ret, "Name", json_object_new_string(req->name));
        json_object_object_add(*ret, "Deferred", json_object_new_boolean(req->deferred));
        return 0;
}

static int handle_reload(struct conn *c, const struct kc_request *req, struct json_object **ret, struct kc_err *err) {
        size_t n = 0;
        int r = c->s->cfg.reload(c->s->cfg.userdata, &n, err);

        if (r < 0)
                return r;
        *ret = json_object_new_object();
        json_object_object_add(*ret, "Volumes", json_object_new_int64((int64_t) n));
        return 0;
}

static int handle_hotplug(struct conn *c, const struct kc_request *req, struct json_object **ret,
                          struct kc_err *err) {
        const struct kc_manager_reload reload = { .fn = c->s->cfg.reload, .userdata = c->s->cfg.userdata };
        struct kc_attach_result res = {};
        char note[KC_ERR_MSG_MAX] = "";
        int r = kc_manager_hotplug(c->s->m, req->devno, &c->caller, &reload, c->fd, &res, note, err);

        if (r < 0)
                return r;
        if (r > 0) {
                *ret = kc_attach_result_to_json(&res);
                json_object_object_add(*ret, "Action", json_object_new_string("attached"));
                return 0;
        }
        *ret = json_object_new_object();
        json_object_object_add(*ret, "Action", json_object_new_string("ignored"));
        json_object_object_add(*ret, "Reason", json_object_new_string(note));
        return 0;
}

static const handler_t handlers[_KC_OP_MAX] = {
        [KC_OP_PING]       = handle_ping,
        [KC_OP_STATUS]     = handle_status,
        [KC_OP_LIST]       = handle_list,
        [KC_OP_ATTACH]     = handle_attach,
        [KC_OP_ATTACH_ALL] = handle_attach_all,
        [KC_OP_DETACH]     = handle_detach,
        [KC_OP_RELOAD]     = handle_reload,
        [KC_OP_HOTPLUG]    = handle_hotplug,
};

static struct json_object *serve_one(struct conn *c, const char *msg, size_t len) {
        struct json_object *result = NULL;
        struct kc_request req;
        struct kc_err err = {};
        int r;

        r = kc_request_parse(msg, len, &req, &err);
        if (r < 0) {
                c->refused_in_a_row++;
                log_refusal(c->s, "refused a request from uid %u (pid %d): %s", (unsigned) c->peer.uid,
                            (int) c->peer.pid, kc_err_msg(&err, r));
                return kc_reply_error(r, kc_err_msg(&err, r));
        }
        r = kc_protocol_authorize(req.op, &c->peer, c->s->cfg.status_gid, &err);
        if (r < 0) {
                c->refused_in_a_row++;
                log_refusal(c->s, "refused: %s", kc_err_msg(&err, r));
        } else {
                c->refused_in_a_row = 0;
                r = handlers[req.op](c, &req, &result, &err);
        }
        kc_request_clear(&req);
        if (r < 0)
                return kc_reply_error(r, kc_err_msg(&err, r));
        return kc_reply_ok(result);
}

static int send_text(int fd, const char *text) {
        return send(fd, text, strlen(text), MSG_NOSIGNAL) < 0 ? negative_errno() : 0;
}

/*
 * A reply is one message, which must fit the connection's send buffer:
 * KC_PROTOCOL_REPLY_MAX where the agent may force that (CAP_NET_ADMIN),
 * else twice net.core.wmem_max (about 416 KiB by default: the status of
 * some 500 volumes).  A reply too big for it is answered with an error
 * that says so, rather than by a closed connection.
 */
static int send_reply(int fd, struct json_object *reply) {
        const char *text;
        int r;

        if (!reply)
                return -ENOMEM;
        text = json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN);
        r = send_text(fd, text);
        if (r == -EMSGSIZE) {
                char msg[192];
                int size = 0;
                socklen_t l = sizeof(size);

                (void) getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, &l);
                snprintf(msg, sizeof(msg), "the reply of %zu bytes is larger than this connection carries (%d; "
                         "raise net.core.wmem_max), or ask for one volume by name", strlen(text), size);
                log_warning("%s", msg);
                json_object_put(reply);
                reply = kc_reply_error(-EMSGSIZE, msg);
                r = reply ? send_text(fd, json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN)) : -ENOMEM;
        }
        json_object_put(reply);
        return r;
}

/* ---- connections ---- */

static void conn_unlink(struct conn *c) {
        struct kc_server *s = c->s;

        pthread_mutex_lock(&s->lock);
        for (struct conn **p = &s->conns; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        break;
                }
        s->n_conns--;
        pthread_cond_broadcast(&s->idle);
        pthread_mutex_unlock(&s->lock);
        close(c->fd);
        free(c->many_groups);
        free(c);
}

static void mark_sending(struct conn *c, uint64_t since_ms) {
        pthread_mutex_lock(&c->s->lock);
        c->sending_since_ms = since_ms;
        pthread_mutex_unlock(&c->s->lock);
}

/* send_reply() on c, marked as under way for kc_server_free(), which gives up one that waits too long at stop. */
static int conn_send(struct conn *c, struct json_object *reply) {
        int r;

        mark_sending(c, kc_now_ms());
        r = send_reply(c->fd, reply);
        mark_sending(c, 0);
        return r;
}

static void *conn_thread(void *arg) {
        struct conn *c = arg;
        _cleanup_free_ char *buf = malloc(KC_PROTOCOL_REQUEST_MAX + 1);

        while (buf) {
                /* MSG_TRUNC: the real length of a message too big for the buffer, so it is refused, not cut. */
                ssize_t n = recv(c->fd, buf, KC_PROTOCOL_REQUEST_MAX + 1, MSG_TRUNC);
                struct json_object *reply;

                if (n <= 0)
                        break;      /* peer closed, idle timeout, or shutdown at stop */
                if ((size_t) n > KC_PROTOCOL_REQUEST_MAX) {
                        char msg[96];
                        snprintf(msg, sizeof(msg), "request of %zd bytes exceeds %d", n, KC_PROTOCOL_REQUEST_MAX);
                        c->refused_in_a_row++;
                        log_refusal(c->s, "refused a request from uid %u: %s", (unsigned) c->peer.uid, msg);
                        reply = kc_reply_error(-EMSGSIZE, msg);
                } else
                        reply = serve_one(c, buf, (size_t) n);
                if (conn_send(c, reply) < 0)
                        break;
                if (c->refused_in_a_row >= MAX_REFUSED_IN_A_ROW) {
                        log_refusal(c->s, "closed the connection of uid %u (pid %d) after %u refused requests",
                                    (unsigned) c->peer.uid, (int) c->peer.pid, c->refused_in_a_row);
                        break;
                }
        }
        conn_unlink(c);
        return NULL;
}

static int peer_credentials(struct conn *c) {
        struct ucred uc;
        socklen_t l = sizeof(uc);

        if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &uc, &l) < 0)
                return negative_errno();
        c->peer = (struct kc_peer) { .uid = uc.uid, .gid = uc.gid, .pid = uc.pid, .groups = c->groups };
        l = sizeof(c->groups);
        /* Supplementary groups; for a peer in more than 64 the kernel says how much room they need. */
        if (getsockopt(c->fd, SOL_SOCKET, SO_PEERGROUPS, c->groups, &l) == 0)
                c->peer.n_groups = l / sizeof(gid_t);
        else if (errno == ERANGE && (c->many_groups = malloc(l)) &&
                 getsockopt(c->fd, SOL_SOCKET, SO_PEERGROUPS, c->many_groups, &l) == 0) {
                c->peer.groups = c->many_groups;
                c->peer.n_groups = l / sizeof(gid_t);
        }
        if (kc_caller_from_socket(c->fd, &c->caller) < 0)
                c->caller = (struct kc_caller) { .uid = uc.uid, .pid = uc.pid };
        return 0;
}

static void setup_conn_socket(int fd) {
        struct timeval tv = { .tv_sec = IDLE_TIMEOUT_SEC };
        int size = KC_PROTOCOL_REPLY_MAX + 4096;

        (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        tv.tv_sec = SEND_TIMEOUT_SEC;
        (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        /* A reply is one message and must fit the send buffer (send_reply); with CAP_NET_ADMIN past wmem_max. */
        if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0)
                (void) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
}

/* Lock held: why a new connection of peer uid may not be served, NULL when it may. */
static const char *admission(const struct kc_server *s, uid_t uid) {
        unsigned same = 0, others = 0;

        if (s->stopping)
                return "the agent is stopping";
        if (s->n_conns >= KC_SERVER_MAX_CONNECTIONS)
                return "too many connections to the agent; try again";
        if (uid == 0)
                return NULL;
        for (const struct conn *c = s->conns; c; c = c->next) {
                others += c->peer.uid != 0;
                same += c->peer.uid == uid;
        }
        if (same >= MAX_PER_USER)
                return "too many connections of this user to the agent; try again";
        if (others >= KC_SERVER_MAX_CONNECTIONS - ROOT_RESERVED)
                return "too many connections to the agent; try again";
        return NULL;
}

static void refuse_busy(int fd, const char *why) {
        /* EUSERS, not EBUSY: the hotplug helper waits and tries again on exactly this. */
        (void) send_reply(fd, kc_reply_error(-EUSERS, why));
        close(fd);
}

void kc_server_accept(struct kc_server *s) {
        const char *why;
        struct conn *c;
        int fd, r;

        fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
                if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                        log_warning_errno(errno, "accept: %m");
                return;
        }
        setup_conn_socket(fd);
        c = calloc(1, sizeof(*c));
        if (!c) {
                close(fd);
                return;
        }
        *c = (struct conn) { .s = s, .fd = fd };
        if (peer_credentials(c) < 0) {
                close(fd);
                free(c->many_groups);
                free(c);
                return;
        }
        pthread_mutex_lock(&s->lock);
        why = admission(s, c->peer.uid);
        if (!why) {
                c->next = s->conns;
                s->conns = c;
                s->n_conns++;
        }
        pthread_mutex_unlock(&s->lock);
        if (why) {
                log_refusal(s, "turned away a connection of uid %u (pid %d): %s", (unsigned) c->peer.uid,
                            (int) c->peer.pid, why);
                refuse_busy(fd, why);
                free(c->many_groups);
                free(c);
                return;
        }

        r = kc_thread_start(NULL, true, conn_thread, c);
        if (r < 0) {
                log_warning_errno(r, "cannot start a connection thread: %m");
                conn_unlink(c);
        }
}

/*
 * Lock held, stopping: shut for writing too each connection whose reply
 * has waited STOP_SEND_GRACE_MS to go out, which ends that send (EPIPE)
 * and so its thread.  The SO_SNDTIMEO of a send under way cannot be
 * shortened, and shutting every connection for writing at once would cut
 * the replies of peers that read.  Returns when the next one may be due.
 */
static uint64_t give_up_unread(struct kc_server *s, uint64_t now) {
        uint64_t next = now + STOP_SEND_GRACE_MS;

        for (struct conn *c = s->conns; c; c = c->next) {
                uint64_t due = c->sending_since_ms + STOP_SEND_GRACE_MS;

                if (c->sending_since_ms == 0)
                        continue;
                if (due > now) {
                        if (due < next)
                                next = due;
                        continue;
                }
                log_notice("stopping: gave up on the reply to uid %u (pid %d), which does not read it",
                           (unsigned) c->peer.uid, (int) c->peer.pid);
                (void) shutdown(c->fd, SHUT_WR);
                c->sending_since_ms = 0;    /* once: its send fails now */
        }
        return next;
}

void kc_server_free(struct kc_server *s) {
        if (!s)
                return;
        /* No new connections; a restarted agent (or systemd's socket) takes over the path. */
        close(s->fd);
        if (s->path)
                (void) unlink(s->path);
        if (s->lock_fd >= 0)
                close(s->lock_fd);
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        /*
         * Reading only: that wakes the connections waiting for a request, and
         * lets a reply on its way out go, above all the ESHUTDOWN a waiting
         * attach gets from the stopped manager (the hotplug helper tries again
         * on exactly that; with its connection cut first it read no reply and
         * failed its unit).  A peer that does not read holds us up
         * STOP_SEND_GRACE_MS at most (give_up_unread).
         */
        for (struct conn *c = s->conns; c; c = c->next)
                (void) shutdown(c->fd, SHUT_RD);
        while (s->n_conns > 0)
                kc_cond_wait_until(&s->idle, &s->lock, give_up_unread(s, kc_now_ms()));
        pthread_mutex_unlock(&s->lock);
        pthread_cond_destroy(&s->idle);
        pthread_mutex_destroy(&s->lock);
        free(s->path);
        free(s);
}
