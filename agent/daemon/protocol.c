/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "agent/daemon/protocol.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "lib/fileio.h"
#include "lib/json-util.h"
#include "lib/strv.h"

/* ---- request parsing: a table of ops, each with a table of members ---- */

struct member {
        const char *name;
        enum json_type type;
        bool required;
        int (*set)(struct kc_request *r, struct json_object *v, struct kc_err *err);
};

struct op_desc {
        const char *name;
        bool privileged;
        const struct member *members;   /* besides "v" and "op"; NULL-name terminated */
        int (*check)(struct kc_request *r, struct kc_err *err);
};

static int dup_string(char **dst, struct json_object *v, const char *what, struct kc_err *err) {
        const char *s = json_object_get_string(v);

        if (json_object_get_string_len(v) != (int) strlen(s))
                return kc_err_set(err, -EINVAL, "\"%s\" contains a NUL byte", what);
        if (!*s)
                return kc_err_set(err, -EINVAL, "\"%s\" is empty", what);
        *dst = strdup(s);
        return *dst ? 0 : -ENOMEM;
}

/* The attach strings live in the request; the params only point at them. */
static int set_owned(const char **dst, struct json_object *v, const char *what, struct kc_err *err) {
        char *s = NULL;
        int r = dup_string(&s, v, what, err);

        if (r < 0)
                return r;
        *dst = s;
        return 0;
}

/* A path, refused here when longer than the kernel takes one, rather than cut in the error of its use. */
static int set_owned_path(const char **dst, struct json_object *v, const char *what, struct kc_err *err) {
        int r = set_owned(dst, v, what, err);

        return r < 0 ? r : kc_path_check_length(what, *dst, err);
}

static int set_volume(struct kc_request *r, struct json_object *v, struct kc_err *err) {
        return dup_string(&r->volume, v, "volume", err);
}
static int set_device(struct kc_request *r, struct json_object *v, struct kc_err *err) {
        return set_owned_path(&r->attach.device, v, "device", err);
}
static int set_opt_name(struct kc_request *r, struct json_object *v, struct kc_err *err) {
        return set_owned(&r->attach.name, v, "name", err);
}
static int set_opt_header(struct kc_request *r, struct json_object *v, struct kc_err *err) {
        return set_owned_path(&r->attach.header, v, "header", err);
}
static int set_opt_read_only(struct kc_request *r, struct json_object *v, struct kc_err *err) {
        r->attach.read_only = json_object_get_boolean(v);
        return 0;
}
static int set_opt_perf(struct kc_request *r, struct json_object *v, struct kc_err *err) {
        _cleanup_free_ char *text = NULL;
        unsigned flags;
        int k = dup_string(&text, v, "perf", err);

        if (k < 0)
                return k;
        if (kc_crypt_flags_parse(text, &flags) < 0)
                return kc_err_set(err, -EINVAL, "invalid \"perf\" flags");
        /* allow-discards is its own option: keep it if it came first. */
        r->attach.flags = flags | (r->attach.flags & KC_CRYPT_ALLOW_DISCARDS);
        return 0;
}
static int set_opt_discards(struct kc_request *r, struct json_object *v, struct kc_err *err) {
        if (json_object_get_boolean(v))
                r->attach.flags |= KC_CRYPT_ALLOW_DISCARDS;
        else
                r->attach.flags &= ~(unsigned) KC_CRYPT_ALLOW_DISCARDS;
        return 0;
}
static int set_opt_context(struct kc_request *r, struct json_object *v, struct kc_err *err) {
        return kc_context_from_json(v, &r->expect, err);
}

static const struct member attach_option_members[] = {
        { "name",           json_type_string,  false, set_opt_name },
        { "header",         json_type_string,  false, set_opt_header },
        { "context",        json_type_object,  false, set_opt_context },
        { "read-only",      json_type_boolean, false, set_opt_read_only },
        { "perf",           json_type_string,  false, set_opt_perf },
        { "allow-discards", json_type_boolean, false, set_opt_discards },
        {}
};

static int parse_members(struct kc_request *r, struct json_object *obj, const struct member *members,
                         const char *where, struct kc_err *err);

static int set_options(struct kc_request *r, struct json_object *v, struct kc_err *err) {
        r->has_options = true;
        return parse_members(r, v, attach_option_members, "options", err);
}

static int set_name(struct kc_request *r, struct json_object *v, struct kc_err *err) {
        return dup_string(&r->name, v, "name", err);
}
static int set_deferred(struct kc_request *r, struct json_object *v, struct kc_err *err) {
        r->deferred = json_object_get_boolean(v);
        return 0;
}
static int set_wait(struct kc_request *r, struct json_object *v, struct kc_err *err) {
        r->wait = json_object_get_boolean(v);
        return 0;
}
static int set_attach_wait(struct kc_request *r, struct json_object *v, struct kc_err *err) {
        r->has_wait = true;
        return set_wait(r, v, err);
}

static int set_names(struct kc_request *r, struct json_object *v, struct kc_err *err) {
        size_t n = json_object_array_length(v);
        _cleanup_strv_ char **names = calloc(1, sizeof(char *));

        if (!names)
                return -ENOMEM;
        if (n > 4096)
                return kc_err_set(err, -E2BIG, "\"names\" has more than 4096 entries");
        for (size_t i = 0; i < n; i++) {
                struct json_object *e = json_object_array_get_idx(v, i);
                _cleanup_free_ char *s = NULL;
                int k;

                if (!json_object_is_type(e, json_type_string))
                        return kc_err_set(err, -EINVAL, "\"names\"[%zu] is not a string", i);
                k = dup_string(&s, e, "names", err);
                if (k < 0)
                        return k;
                k = kc_strv_push(&names, s);
                if (k < 0)
                        return k;
        }
        r->names = TAKE_PTR(names);
        return 0;
}

/*
 * A decimal number of at most max at s, digits only; *ret_end after it.
 * Not sscanf("%u"): it wraps 4294967304 to 8 without a word.
 */
static int devno_part(const char *s, unsigned long max, const char **ret_end, unsigned *ret) {
        unsigned long n;
        char *end;

        if (*s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        n = strtoul(s, &end, 10);
        if (errno != 0 || n > max)
                return -ERANGE;
        *ret_end = end;
        *ret = (unsigned) n;
        return 0;
}

/* "MAJOR:MINOR" in decimal, nothing else: what udev's %i gives the hotplug unit. */
static int set_devno(struct kc_request *r, struct json_object *v, struct kc_err *err) {
        const char *s = json_object_get_string(v), *p;
        unsigned ma, mi;

        /* A "\u0000" would end the C string early and hide what follows it. */
        if (json_object_get_string_len(v) != (int) strlen(s) ||
            devno_part(s, 0xfff, &p, &ma) < 0 || *p != ':' ||
            devno_part(p + 1, 0xfffff, &p, &mi) < 0 || *p != '\0')
                return kc_err_set(err, -EINVAL, "\"device\" must be MAJOR:MINOR in decimal");
        r->devno = makedev(ma, mi);
        return 0;
}

static const struct member hotplug_members[] = {
        { "device", json_type_string, true, set_devno },
        {}
};

static const struct member attach_members[] = {
        { "volume",  json_type_string, false, set_volume },
        { "device",  json_type_string, false, set_device },
        { "options", json_type_object, false, set_options },
        { "wait",    json_type_boolean, false, set_attach_wait },
        {}
};
static const struct member detach_members[] = {
        { "name",     json_type_string,  true,  set_name },
        { "deferred", json_type_boolean, false, set_deferred },
        {}
};
static const struct member status_members[] = {
        { "names", json_type_array, false, set_names },
        {}
};
static const struct member attach_all_members[] = {
        { "wait", json_type_boolean, false, set_wait },
        {}
};
static const struct member no_members[] = { {} };

static int check_attach(struct kc_request *r, struct kc_err *err) {
        if (!!r->volume == !!r->attach.device)
                return kc_err_set(err, -EINVAL, "attach needs exactly one of \"volume\" and \"device\"");
        /* A configured volume's options come from the volumes file, never the peer: not even
         * values equal to the defaults, which the file may not use. */
        if (r->volume && r->has_options)
                return kc_err_set(err, -EINVAL, "\"options\" apply to \"device\" only; "
                                  "a configured volume takes them from the volumes file");
        /* Only a configured volume has a timeout= to retry within. */
        if (r->attach.device && r->has_wait)
                return kc_err_set(err, -EINVAL, "\"wait\" applies to \"volume\" only");
        if (!r->has_wait)
                r->wait = false;
        r->attach.expect = r->expect;
        return 0;
}

static const struct op_desc ops[_KC_OP_MAX] = {
        [KC_OP_PING]       = { .name = "ping",       .members = no_members },
        [KC_OP_STATUS]     = { .name = "status",     .members = status_members },
        [KC_OP_LIST]       = { .name = "list",       .members = no_members },
        [KC_OP_ATTACH]     = { .name = "attach",     .members = attach_members, .privileged = true,
                               .check = check_attach },
        [KC_OP_ATTACH_ALL] = { .name = "attach-all", .members = attach_all_members, .privileged = true },
        [KC_OP_DETACH]     = { .name = "detach",     .members = detach_members, .privileged = true },
        [KC_OP_RELOAD]     = { .name = "reload",     .members = no_members, .privileged = true },
        [KC_OP_HOTPLUG]    = { .name = "hotplug",    .members = hotplug_members, .privileged = true },
};

const char *kc_op_to_string(enum kc_op op) {
        return op < _KC_OP_MAX ? ops[op].name : NULL;
}

bool kc_op_privileged(enum kc_op op) {
        return op >= _KC_OP_MAX || ops[op].privileged;
}

static const struct member *find_member(const struct member *members, const char *name) {
        for (const struct member *m = members; m->name; m++)
                if (streq(m->name, name))
                        return m;
        return NULL;
}

static int parse_members(struct kc_request *r, struct json_object *obj, const struct member *members,
                         const char *where, struct kc_err *err) {
        int k;

        json_object_object_foreach(obj, key, val) {
                const struct member *m;

                if (!where && (streq(key, "v") || streq(key, "op")))  /* the envelope, checked already */
                        continue;
                m = find_member(members, key);
                if (!m)
                        return kc_err_set(err, -EINVAL, "unknown member \"%s\"%s%s", key,
                                          where ? " in " : "", where ? where : "");
                if (!json_object_is_type(val, m->type))
                        return kc_err_set(err, -EINVAL, "\"%s\" must be a %s", key, json_type_to_name(m->type));
                k = m->set(r, val, err);
                if (k < 0)
                        return k;
        }
        for (const struct member *m = members; m->name; m++)
                if (m->required && !json_object_object_get_ex(obj, m->name, NULL))
                        return kc_err_set(err, -EINVAL, "missing member \"%s\"", m->name);
        return 0;
}

void kc_request_clear(struct kc_request *r) {
        if (!r)
                return;
        free(r->volume);
        free((char *) r->attach.device);
        free((char *) r->attach.name);
        free((char *) r->attach.header);
        kc_context_free(r->expect);
        free(r->name);
        kc_strv_free(r->names);
        *r = (struct kc_request) {};
}

static int parse_envelope(struct json_object *obj, enum kc_op *ret, struct kc_err *err) {
        struct json_object *v, *op;
        const char *name;

        if (!json_object_object_get_ex(obj, "v", &v))
                return kc_err_set(err, -EPROTO, "missing member \"v\" (protocol version)");
        if (!json_object_is_type(v, json_type_int))
                return kc_err_set(err, -EPROTO, "\"v\" must be an integer");
        if (json_object_get_int64(v) != KC_PROTOCOL_VERSION)
                return kc_err_set(err, -EPROTO, "unsupported protocol version %" PRId64 " (this agent speaks %d)",
                                  json_object_get_int64(v), KC_PROTOCOL_VERSION);
        if (!json_object_object_get_ex(obj, "op", &op))
                return kc_err_set(err, -EINVAL, "missing member \"op\"");
        if (!json_object_is_type(op, json_type_string))
                return kc_err_set(err, -EINVAL, "\"op\" must be a string");
        name = json_object_get_string(op);
        for (size_t i = 0; i < _KC_OP_MAX; i++)
                if (streq(ops[i].name, name)) {
                        *ret = (enum kc_op) i;
                        return 0;
                }
        return kc_err_set(err, -EINVAL, "unknown op \"%.64s\"", name);
}

/* A request's text -> one object, by the shared strict parse, nested at most 16 deep. */
static int parse_object(const char *msg, size_t len, struct json_object **ret, struct kc_err *err) {
        static const struct kc_json_parse request = { .depth = 16 };
        struct kc_err why = {};
        int r;

        if (len > KC_PROTOCOL_REQUEST_MAX)
                return kc_err_set(err, -EMSGSIZE, "request of %zu bytes exceeds %d", len, KC_PROTOCOL_REQUEST_MAX);
        r = kc_json_parse_object(msg, len, &request, ret, &why);
        if (r == -EBADMSG)
                return kc_err_set(err, -EINVAL, "request is %s", why.msg);
        return r;
}

int kc_request_parse(const char *msg, size_t len, struct kc_request *ret, struct kc_err *err) {
        struct kc_request req = { .attach.flags = KC_CRYPT_DEFAULT_FLAGS, .wait = true };
        struct json_object *obj = NULL;
        int r;

        r = parse_object(msg, len, &obj, err);
        if (r < 0)
                return r;
        r = parse_envelope(obj, &req.op, err);
        if (r >= 0)
                r = parse_members(&req, obj, ops[req.op].members, NULL, err);
        if (r >= 0 && ops[req.op].check)
                r = ops[req.op].check(&req, err);
        json_object_put(obj);
        if (r < 0) {
                kc_request_clear(&req);
                return r;
        }
        *ret = req;
        return 0;
}

struct json_object *kc_request_new(enum kc_op op) {
        struct json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        json_object_object_add(o, "v", json_object_new_int(KC_PROTOCOL_VERSION));
        json_object_object_add(o, "op", json_object_new_string(kc_op_to_string(op)));
        return o;
}

int kc_request_attach_device(const struct kc_attach_params *p, struct json_object **ret) {
        struct json_object *o = kc_request_new(KC_OP_ATTACH), *opt, *ctx;
        _cleanup_free_ char *perf = NULL;
        int r;

        if (!o)
                return -ENOMEM;
        opt = json_object_new_object();
        json_object_object_add(o, "device", json_object_new_string(p->device));
        json_object_object_add(o, "options", opt);
        if (p->name)
                json_object_object_add(opt, "name", json_object_new_string(p->name));
        if (p->header)
                json_object_object_add(opt, "header", json_object_new_string(p->header));
        if (p->expect) {
                r = kc_context_to_json(p->expect, &ctx);
                if (r < 0) {
                        json_object_put(o);
                        return r;
                }
                json_object_object_add(opt, "context", ctx);
        }
        if (p->read_only)
                json_object_object_add(opt, "read-only", json_object_new_boolean(true));
        r = kc_crypt_flags_format(p->flags & ~(unsigned) KC_CRYPT_ALLOW_DISCARDS, &perf);
        if (r < 0) {
                json_object_put(o);
                return r;
        }
        json_object_object_add(opt, "perf", json_object_new_string(*perf ? perf : "none"));
        json_object_object_add(opt, "allow-discards",
                               json_object_new_boolean(p->flags & KC_CRYPT_ALLOW_DISCARDS));
        *ret = o;
        return 0;
}

/* ---- authorization ---- */

static bool in_group(const struct kc_peer *peer, gid_t gid) {
        if (gid == (gid_t) -1)
                return false;
        if (peer->gid == gid)
                return true;
        for (size_t i = 0; i < peer->n_groups; i++)
                if (peer->groups[i] == gid)
                        return true;
        return false;
}

int kc_protocol_authorize(enum kc_op op, const struct kc_peer *peer, gid_t status_gid, struct kc_err *err) {
        if (peer->uid == 0)
                return 0;
        if (kc_op_privileged(op))
                return kc_err_set(err, -EPERM, "%s needs root (peer uid %u)", strna(kc_op_to_string(op)),
                                  (unsigned) peer->uid);
        if (in_group(peer, status_gid))
                return 0;
        return kc_err_set(err, -EPERM, "%s needs root or the status group (peer uid %u)",
                          strna(kc_op_to_string(op)), (unsigned) peer->uid);
}

/* ---- replies ---- */

struct json_object *kc_reply_ok(struct json_object *result) {
        struct json_object *o = json_object_new_object();

        if (!o) {
                json_object_put(result);
                return NULL;
        }
        json_object_object_add(o, "v", json_object_new_int(KC_PROTOCOL_VERSION));
        json_object_object_add(o, "ok", json_object_new_boolean(true));
        if (result)
                json_object_object_add(o, "result", result);
        return o;
}

struct json_object *kc_reply_error(int error, const char *message) {
        struct json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        json_object_object_add(o, "v", json_object_new_int(KC_PROTOCOL_VERSION));
        json_object_object_add(o, "ok", json_object_new_boolean(false));
        json_object_object_add(o, "errno", json_object_new_int(error < 0 ? -error : error));
        json_object_object_add(o, "error", json_object_new_string(message ? message : strerror(abs(error))));
        return o;
}

int kc_reply_parse(struct json_object *reply, struct json_object **ret_result, struct kc_err *err) {
        struct json_object *v, *ok, *e, *msg, *res = NULL;
        int64_t no;

        if (!json_object_is_type(reply, json_type_object) ||
            !json_object_object_get_ex(reply, "v", &v) || json_object_get_int64(v) != KC_PROTOCOL_VERSION ||
            !json_object_object_get_ex(reply, "ok", &ok) || !json_object_is_type(ok, json_type_boolean))
                return kc_err_set(err, -EPROTO, "malformed reply from the agent");
        if (json_object_get_boolean(ok)) {
                (void) json_object_object_get_ex(reply, "result", &res);
                if (ret_result)
                        *ret_result = res;
                return 0;
        }
        if (!json_object_object_get_ex(reply, "errno", &e) || !json_object_is_type(e, json_type_int) ||
            !json_object_object_get_ex(reply, "error", &msg) || !json_object_is_type(msg, json_type_string) ||
            json_object_get_string_len(msg) == 0)
                /* An error the agent cannot name is not one it sends: the caller would print an empty line. */
                return kc_err_set(err, -EPROTO, "malformed error reply from the agent");
        no = json_object_get_int64(e);
        if (no <= 0 || no > 4095)
                return kc_err_set(err, -EPROTO, "agent replied with errno %" PRId64, no);
        return kc_err_set(err, (int) -no, "%s", json_object_get_string(msg));
}

int kc_reply_parse_text(const char *text, size_t len, struct json_object **ret_reply, struct json_object **ret_result,
                        struct kc_err *err) {
        _cleanup_json_ struct json_object *reply = NULL;
        struct kc_err why = {};
        int r;

        r = kc_json_parse_object(text, len, NULL, &reply, &why);
        if (r == -EBADMSG)
                return kc_err_set(err, -EPROTO, "the agent sent a reply that is %s", why.msg);
        if (r < 0)
                return r;
        r = kc_reply_parse(reply, ret_result, err);
        if (r < 0)
                return r;
        *ret_reply = TAKE_PTR(reply);
        return 0;
}

/* ---- payloads ---- */

static void add_str(struct json_object *o, const char *k, const char *v) {
        json_object_object_add(o, k, json_object_new_string(v));
}
static void add_int(struct json_object *o, const char *k, int64_t v) {
        json_object_object_add(o, k, json_object_new_int64(v));
}
static void add_bool(struct json_object *o, const char *k, bool v) {
        json_object_object_add(o, k, json_object_new_boolean(v));
}

/* Missing members read as "" / 0 / false: replies come from our own agent, the envelope was checked. */
static void get_str(struct json_object *o, const char *k, char *buf, size_t size) {
        struct json_object *v;

        buf[0] = '\0';
        if (json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string))
                kc_strscpy(buf, size, json_object_get_string(v));
}
static int64_t get_int(struct json_object *o, const char *k) {
        struct json_object *v;
        return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_int) ?
                json_object_get_int64(v) : 0;
}
static bool get_bool(struct json_object *o, const char *k) {
        struct json_object *v;
        return json_object_object_get_ex(o, k, &v) && json_object_get_boolean(v);
}

struct json_object *kc_attach_result_to_json(const struct kc_attach_result *r) {
        struct json_object *o = json_object_new_object();

        add_str(o, "Name", r->name);
        add_str(o, "Device", r->device);
        add_str(o, "LuksUuid", r->luks_uuid);
        add_bool(o, "AlreadyAttached", r->already);
        return o;
}

int kc_attach_result_from_json(struct json_object *o, struct kc_attach_result *ret) {
        struct kc_attach_result r = {};

        if (!json_object_is_type(o, json_type_object))
                return -EPROTO;
        get_str(o, "Name", r.name, sizeof(r.name));
        get_str(o, "Device", r.device, sizeof(r.device));
        get_str(o, "LuksUuid", r.luks_uuid, sizeof(r.luks_uuid));
        r.already = get_bool(o, "AlreadyAttached");
        if (!r.name[0])
                return -EPROTO;
        *ret = r;
        return 0;
}

struct json_object *kc_volume_status_to_json(const struct kc_volume_status *s) {
        struct json_object *o = json_object_new_object(), *ctx = NULL;
        _cleanup_free_ char *flags = NULL;

        (void) kc_crypt_flags_format(s->flags, &flags);
        add_str(o, "Name", s->name);
        add_str(o, "Device", s->device);
        add_str(o, "LuksUuid", s->luks_uuid);
        if (s->has_token) {
                add_str(o, "Provider", s->provider);
                add_str(o, "KeyId", s->key_id);
                add_int(o, "KeyVersion", s->key_version);
                if (s->context && kc_context_to_json(s->context, &ctx) >= 0)
                        json_object_object_add(o, "EncryptionContext", ctx);
        }
        add_str(o, "Cipher", s->cipher);
        add_int(o, "KeySize", (int64_t) s->key_size * 8);
        add_str(o, "KeyDescription", s->key_description);
        add_int(o, "SectorSize", s->sector_size);
        add_int(o, "Offset", (int64_t) s->offset);
        add_int(o, "Size", (int64_t) s->size);
        add_str(o, "Flags", strna(flags));
        add_bool(o, "ReadOnly", s->read_only);
        add_bool(o, "Suspended", s->suspended);
        add_bool(o, "KeyWiped", s->key_wiped);
        add_int(o, "OpenCount", s->open_count);
        return o;
}

int kc_volume_status_from_json(struct json_object *o, struct kc_volume_status *ret) {
        struct kc_volume_status s = {};
        struct json_object *ctx;
        char flags[256];

        if (!json_object_is_type(o, json_type_object))
                return -EPROTO;
        get_str(o, "Name", s.name, sizeof(s.name));
        get_str(o, "Device", s.device, sizeof(s.device));
        get_str(o, "LuksUuid", s.luks_uuid, sizeof(s.luks_uuid));
        s.has_token = json_object_object_get_ex(o, "Provider", NULL);
        get_str(o, "Provider", s.provider, sizeof(s.provider));
        get_str(o, "KeyId", s.key_id, sizeof(s.key_id));
        s.key_version = (uint32_t) get_int(o, "KeyVersion");
        get_str(o, "Cipher", s.cipher, sizeof(s.cipher));
        s.key_size = (uint32_t) (get_int(o, "KeySize") / 8);
        get_str(o, "KeyDescription", s.key_description, sizeof(s.key_description));
        s.sector_size = (uint32_t) get_int(o, "SectorSize");
        s.offset = (uint64_t) get_int(o, "Offset");
        s.size = (uint64_t) get_int(o, "Size");
        get_str(o, "Flags", flags, sizeof(flags));
        if (kc_crypt_flags_parse(streq(flags, "n/a") ? "" : flags, &s.flags) < 0)
                return -EPROTO;
        s.read_only = get_bool(o, "ReadOnly");
        s.suspended = get_bool(o, "Suspended");
        s.key_wiped = get_bool(o, "KeyWiped");
        s.open_count = (uint32_t) get_int(o, "OpenCount");
        if (!s.name[0])
                return -EPROTO;
        if (json_object_object_get_ex(o, "EncryptionContext", &ctx) &&
            kc_context_from_json(ctx, &s.context, NULL) < 0)
                return -EPROTO;
        *ret = s;
        return 0;
}

static const char *const state_names[_KC_VOLUME_STATE_MAX] = {
        [KC_VOLUME_PENDING]   = "pending",
        [KC_VOLUME_ATTACHING] = "attaching",
        [KC_VOLUME_WAITING]   = "waiting",
        [KC_VOLUME_ATTACHED]  = "attached",
        [KC_VOLUME_FAILED]    = "failed",
        [KC_VOLUME_SUSPENDED] = "suspended",
        [KC_VOLUME_DETACHED]  = "detached",
};

const char *kc_volume_state_to_string(enum kc_volume_state s) {
        return s < _KC_VOLUME_STATE_MAX ? state_names[s] : "unknown";
}

int kc_volume_state_from_string(const char *s, enum kc_volume_state *ret) {
        for (size_t i = 0; i < _KC_VOLUME_STATE_MAX; i++)
                if (streq(state_names[i], s)) {
                        *ret = (enum kc_volume_state) i;
                        return 0;
                }
        return -EINVAL;
}

struct json_object *kc_agent_volume_to_json(const struct kc_agent_volume *v) {
        struct json_object *o = json_object_new_object();

        add_str(o, "Name", v->name);
        add_str(o, "Device", v->device);
        add_str(o, "State", kc_volume_state_to_string(v->state));
        add_int(o, "Since", (int64_t) v->since);
        add_int(o, "Attempts", v->attempts);
        if (v->state == KC_VOLUME_WAITING)
                add_int(o, "NextTry", (int64_t) v->next_try);
        if (v->error < 0) {
                add_int(o, "Errno", -v->error);
                add_str(o, "Reason", v->reason);
        }
        add_bool(o, "NoFail", v->nofail);
        return o;
}

int kc_agent_volume_from_json(struct json_object *o, struct kc_agent_volume *ret) {
        struct kc_agent_volume v = {};
        char state[32];

        if (!json_object_is_type(o, json_type_object))
                return -EPROTO;
        get_str(o, "Name", v.name, sizeof(v.name));
        get_str(o, "Device", v.device, sizeof(v.device));
        get_str(o, "State", state, sizeof(state));
        if (!v.name[0] || kc_volume_state_from_string(state, &v.state) < 0)
                return -EPROTO;
        v.since = (time_t) get_int(o, "Since");
        v.attempts = (unsigned) get_int(o, "Attempts");
        v.next_try = (time_t) get_int(o, "NextTry");
        v.error = -(int) get_int(o, "Errno");
        get_str(o, "Reason", v.reason, sizeof(v.reason));
        v.nofail = get_bool(o, "NoFail");
        *ret = v;
        return 0;
}
