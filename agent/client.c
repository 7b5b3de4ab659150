/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "agent/client.h"
#include "lib/log.h"
#include "lib/strv.h"

struct kc_client {
        int fd;
        bool lost;      /* the last call got no reply: the agent went away under it */
};

bool kc_client_lost(const struct kc_client *c) {
        return c->lost;
}

const char *kc_client_socket_path(void) {
        const char *e = getenv("KMSCRYPT_AGENT_SOCKET");
        return e && *e ? e : KC_AGENT_SOCKET;
}

/*
 * The agent runs as root: a socket served by anyone else (another user who
 * could replace it in a socket directory open to them) is not the agent,
 * and would be told the volumes to attach and answer what it likes.  An
 * agent of this very user is one a test or a developer started.
 */
static int check_agent(int fd, const char *path) {
        struct ucred uc;
        socklen_t l = sizeof(uc);

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &l) < 0)
                return negative_errno();
        if (uc.uid != 0 && uc.uid != geteuid())
                return log_error_errno(-EPERM, "%s is served by uid %u, not root: not the agent, refusing it",
                                       path, (unsigned) uc.uid);
        return 0;
}

int kc_client_open(const char *path, struct kc_client **ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        struct kc_client *c;
        int r;

        if (getenv("KMSCRYPT_NO_AGENT")) {
                *ret = NULL;
                return 0;
        }
        path = path ?: kc_client_socket_path();
        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path));
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (connect(fd, (struct sockaddr *) &sa, (socklen_t) (offsetof(struct sockaddr_un, sun_path) +
                                                                strlen(path) + 1)) < 0) {
                /* No agent, a stale socket, or a user outside the status group: work directly. */
                if (errno == ENOENT || errno == ECONNREFUSED || errno == EACCES || errno == ENOTDIR ||
                    errno == EPERM) {
                        *ret = NULL;
                        return 0;
                }
                return negative_errno();
        }
        r = check_agent(fd, path);
        if (r < 0)
                return r;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fd = TAKE_FD(fd);
        *ret = c;
        return 1;
}

void kc_client_close(struct kc_client *c) {
        if (!c)
                return;
        close(c->fd);
        free(c);
}

/* One whole message, sized first so that a large status reply is never cut. */
static int recv_message(int fd, char **ret, size_t *ret_len) {
        _cleanup_free_ char *buf = NULL;
        char probe;
        ssize_t n;

        for (int reset = 0;;) {
                n = recv(fd, &probe, 1, MSG_PEEK | MSG_TRUNC);
                if (n >= 0 || (errno != EINTR && (errno != ECONNRESET || reset++)))
                        break;
                /* An agent that closed with our request unread (it turned us away) makes the first
                 * read fail with ECONNRESET, once, ahead of the reply it sent before: read again. */
        }
        if (n < 0)
                return negative_errno();
        if (n == 0)
                return -ECONNRESET;
        if (n > KC_PROTOCOL_REPLY_MAX)
                return -EMSGSIZE;
        buf = malloc((size_t) n + 1);
        if (!buf)
                return -ENOMEM;
        n = recv(fd, buf, (size_t) n + 1, 0);
        if (n < 0)
                return negative_errno();
        buf[n] = '\0';
        *ret_len = (size_t) n;
        *ret = TAKE_PTR(buf);
        return 0;
}

int kc_client_call(struct kc_client *c, struct json_object *request, struct json_object **ret_reply,
                   struct json_object **ret_result, struct kc_err *err) {
        _cleanup_free_ char *buf = NULL;
        struct json_object *reply, *result = NULL;
        const char *text;
        size_t len;
        int r, k;

        c->lost = false;
        if (!request)
                return -ENOMEM;
        text = json_object_to_json_string_ext(request, JSON_C_TO_STRING_PLAIN);
        r = send(c->fd, text, strlen(text), MSG_NOSIGNAL) < 0 ? negative_errno() : 0;
        json_object_put(request);
        /* An agent that turns a connection away (too many) says why before it closes: read that. */
        if (r < 0 && (r != -EPIPE && r != -ECONNRESET))
                return kc_err_set(err, r, "cannot send to the agent: %s", strerror(-r));
        k = recv_message(c->fd, &buf, &len);
        c->lost = k < 0;
        if (k < 0)
                return r < 0 ? kc_err_set(err, r, "cannot send to the agent: %s", strerror(-r))
                             : kc_err_set(err, k, "no reply from the agent: %s", strerror(-k));
        r = kc_reply_parse_text(buf, len, &reply, &result, err);
        if (r < 0)
                return r;
        *ret_reply = reply;
        if (ret_result)
                *ret_result = result;
        return 0;
}

/* Call and hand the result object to fn (may be NULL). */
static int call_with(struct kc_client *c, struct json_object *request, struct kc_err *err,
                     int (*fn)(struct json_object *result, void *userdata), void *userdata) {
        struct json_object *reply = NULL, *result = NULL;
        int r = kc_client_call(c, request, &reply, &result, err);

        if (r < 0)
                return r;
        r = fn ? fn(result, userdata) : 0;
        json_object_put(reply);
        if (r < 0)
                return kc_err_set(err, r, "unexpected reply from the agent");
        return 0;
}

static struct json_object *member(struct json_object *o, const char *name, enum json_type type) {
        struct json_object *v;

        if (!o || !json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, type))
                return NULL;
        return v;
}

static int take_pid(struct json_object *result, void *userdata) {
        struct json_object *pid = member(result, "Pid", json_type_int);

        if (!pid)
                return -EPROTO;
        *(pid_t *) userdata = (pid_t) json_object_get_int(pid);
        return 0;
}

int kc_client_ping(struct kc_client *c, pid_t *ret_pid, struct kc_err *err) {
        pid_t pid = 0;
        int r = call_with(c, kc_request_new(KC_OP_PING), err, take_pid, &pid);

        if (r >= 0 && ret_pid)
                *ret_pid = pid;
        return r;
}

static int take_attach_result(struct json_object *result, void *userdata) {
        return kc_attach_result_from_json(result, userdata);
}

int kc_client_attach(struct kc_client *c, const struct kc_attach_params *p, struct kc_attach_result *ret,
                     struct kc_err *err) {
        struct json_object *req = NULL;
        int r = kc_request_attach_device(p, &req);

        if (r < 0)
                return r;
        return call_with(c, req, err, take_attach_result, ret);
}

int kc_client_attach_volume(struct kc_client *c, const char *name, bool wait, struct kc_attach_result *ret,
                            struct kc_err *err) {
        struct json_object *req = kc_request_new(KC_OP_ATTACH);

        if (!req)
                return -ENOMEM;
        json_object_object_add(req, "volume", json_object_new_string(name));
        if (wait)
                json_object_object_add(req, "wait", json_object_new_boolean(true));
        return call_with(c, req, err, take_attach_result, ret);
}

struct hotplug_out {
        struct kc_attach_result *res;
        char *note;
        bool attached;
};

static int take_hotplug(struct json_object *result, void *userdata) {
        struct hotplug_out *out = userdata;
        struct json_object *action = member(result, "Action", json_type_string);
        struct json_object *reason = member(result, "Reason", json_type_string);

        if (!action)
                return -EPROTO;
        out->attached = streq(json_object_get_string(action), "attached");
        if (out->attached)
                return kc_attach_result_from_json(result, out->res);
        snprintf(out->note, KC_ERR_MSG_MAX, "%s", reason ? json_object_get_string(reason) : "left alone");
        return 0;
}

int kc_client_hotplug(struct kc_client *c, const char *majmin, struct kc_attach_result *ret, char ret_note[KC_ERR_MSG_MAX],
                      struct kc_err *err) {
        struct json_object *req = kc_request_new(KC_OP_HOTPLUG);
        struct kc_attach_result res = {};
        char note[KC_ERR_MSG_MAX] = "";
        struct hotplug_out out = { .res = &res, .note = note };
        int r;

        if (!req)
                return -ENOMEM;
        json_object_object_add(req, "device", json_object_new_string(majmin));
        r = call_with(c, req, err, take_hotplug, &out);
        if (r < 0)
                return r;
        if (out.attached)
                *ret = res;
        else
                memcpy(ret_note, note, sizeof(note));
        return out.attached;
}

struct agent_volumes {
        struct kc_agent_volume *v;
        size_t n;
};

static int parse_agent_volumes(struct json_object *arr, struct agent_volumes *out) {
        size_t n = arr ? json_object_array_length(arr) : 0;

        out->v = calloc(n ? n : 1, sizeof(*out->v));
        if (!out->v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (kc_agent_volume_from_json(json_object_array_get_idx(arr, i), &out->v[i]) < 0) {
                        free(out->v);
                        out->v = NULL;
                        return -EPROTO;
                }
        out->n = n;
        return 0;
}

static int take_configured(struct json_object *result, void *userdata) {
        return parse_agent_volumes(member(result, "Configured", json_type_array), userdata);
}

int kc_client_attach_all(struct kc_client *c, struct kc_agent_volume **ret, size_t *ret_n, struct kc_err *err) {
        struct agent_volumes out = {};
        int r = call_with(c, kc_request_new(KC_OP_ATTACH_ALL), err, take_configured, &out);

        if (r < 0)
                return r;
        *ret = out.v;
        *ret_n = out.n;
        return 0;
}

int kc_client_detach(struct kc_client *c, const char *name, bool deferred, struct kc_err *err) {
        struct json_object *req = kc_request_new(KC_OP_DETACH);

        if (!req)
                return -ENOMEM;
        json_object_object_add(req, "name", json_object_new_string(name));
        if (deferred)
                json_object_object_add(req, "deferred", json_object_new_boolean(true));
        return call_with(c, req, err, NULL, NULL);
}

static int take_names(struct json_object *result, void *userdata) {
        struct json_object *arr = member(result, "Names", json_type_array);
        _cleanup_strv_ char **names = calloc(1, sizeof(char *));
        int r;

        if (!arr || !names)
                return arr ? -ENOMEM : -EPROTO;
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
                struct json_object *s = json_object_array_get_idx(arr, i);
                if (!json_object_is_type(s, json_type_string))
                        return -EPROTO;
                r = kc_strv_push(&names, json_object_get_string(s));
                if (r < 0)
                        return r;
        }
        *(char ***) userdata = TAKE_PTR(names);
        return 0;
}

int kc_client_list(struct kc_client *c, char ***ret_names, struct kc_err *err) {
        return call_with(c, kc_request_new(KC_OP_LIST), err, take_names, ret_names);
}

static int take_count(struct json_object *result, void *userdata) {
        struct json_object *n = member(result, "Volumes", json_type_int);

        if (!n)
                return -EPROTO;
        *(size_t *) userdata = (size_t) json_object_get_int64(n);
        return 0;
}

int kc_client_reload(struct kc_client *c, size_t *ret_volumes, struct kc_err *err) {
        size_t n = 0;
        int r = call_with(c, kc_request_new(KC_OP_RELOAD), err, take_count, &n);

        if (r >= 0 && ret_volumes)
                *ret_volumes = n;
        return r;
}

void kc_client_status_clear(struct kc_client_status *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n_volumes; i++)
                kc_volume_status_clear(&s->volumes[i]);
        free(s->volumes);
        free(s->errors);
        free(s->configured);
        *s = (struct kc_client_status) {};
}

static int take_status_errors(struct json_object *arr, struct kc_client_status *s) {
        size_t n = arr ? json_object_array_length(arr) : 0;

        s->errors = calloc(n ? n : 1, sizeof(*s->errors));
        if (!s->errors)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                struct json_object *o = json_object_array_get_idx(arr, i);
                struct json_object *name = member(o, "Name", json_type_string);
                struct json_object *no = member(o, "Errno", json_type_int);
                struct json_object *msg = member(o, "Error", json_type_string);

                if (!name || !no || !msg)
                        return -EPROTO;
                kc_strscpy(s->errors[i].name, sizeof(s->errors[i].name), json_object_get_string(name));
                kc_strscpy(s->errors[i].message, sizeof(s->errors[i].message), json_object_get_string(msg));
                s->errors[i].error = -json_object_get_int(no);
                s->n_errors++;
        }
        return 0;
}

static int take_status(struct json_object *result, void *userdata) {
        struct kc_client_status *s = userdata;
        struct json_object *vols = member(result, "Volumes", json_type_array);
        struct json_object *dm = member(result, "DeviceMapper", json_type_boolean);
        struct agent_volumes conf = {};
        size_t n = vols ? json_object_array_length(vols) : 0;
        int r;

        if (!vols || !dm)
                return -EPROTO;
        s->device_mapper = json_object_get_boolean(dm);
        s->volumes = calloc(n ? n : 1, sizeof(*s->volumes));
        if (!s->volumes)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                r = kc_volume_status_from_json(json_object_array_get_idx(vols, i), &s->volumes[i]);
                if (r < 0)
                        return r;
                s->n_volumes++;
        }
        r = take_status_errors(member(result, "Errors", json_type_array), s);
        if (r < 0)
                return r;
        r = parse_agent_volumes(member(result, "Configured", json_type_array), &conf);
        if (r < 0)
                return r;
        s->configured = conf.v;
        s->n_configured = conf.n;
        return 0;
}

int kc_client_status(struct kc_client *c, char **names, struct kc_client_status *ret, struct kc_err *err) {
        struct json_object *req = kc_request_new(KC_OP_STATUS), *arr;
        struct kc_client_status s = {};
        int r;

        if (!req)
                return -ENOMEM;
        if (names) {
                arr = json_object_new_array();
                for (size_t i = 0; names[i]; i++)
                        json_object_array_add(arr, json_object_new_string(names[i]));
                json_object_object_add(req, "names", arr);
        }
        r = call_with(c, req, err, take_status, &s);
        if (r < 0) {
                kc_client_status_clear(&s);
                return r;
        }
        *ret = s;
        return 0;
}
