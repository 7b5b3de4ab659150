/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The agent's request protocol (docs/protocol.md): one JSON object per
 * SOCK_SEQPACKET message on a Unix socket, version "v": 1.
 *
 *     {"v":1,"op":"attach","device":"UUID=...","options":{"read-only":true}}
 *     {"v":1,"ok":true,"result":{"Name":"pgdata",...}}
 *     {"v":1,"ok":false,"errno":1,"error":"attach needs root"}
 *
 * The request parser is strict: unknown op, unknown or missing members,
 * wrong JSON types, a wrong version, trailing bytes and messages over
 * KC_PROTOCOL_REQUEST_MAX are refused with -EINVAL/-EPROTO/-EMSGSIZE and a
 * one-line reason.  Nothing here touches the system: the daemon and the
 * CLI's client share it, and the unit tests drive it directly.
 */

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include <json-c/json.h>

#include "agent/attach.h"
#include "agent/context.h"
#include "lib/error.h"

#define KC_PROTOCOL_VERSION 1
/* Requests are small; anything bigger is refused before parsing. */
#define KC_PROTOCOL_REQUEST_MAX (64 * 1024)
/* Replies carry the status of every volume: 100 volumes take about 80 KiB. */
#define KC_PROTOCOL_REPLY_MAX (4 * 1024 * 1024)
#define KC_AGENT_SOCKET KC_RUNSTATEDIR "/agent.sock"

enum kc_op {
        KC_OP_PING,
        KC_OP_STATUS,
        KC_OP_LIST,
        KC_OP_ATTACH,
        KC_OP_ATTACH_ALL,
        KC_OP_DETACH,
        KC_OP_RELOAD,
        KC_OP_HOTPLUG,
        _KC_OP_MAX,
};

const char *kc_op_to_string(enum kc_op op);
/* Whether op changes state (needs root) or only reads (root or the status group). */
bool kc_op_privileged(enum kc_op op);

struct kc_request {
        enum kc_op op;
        /* attach: exactly one of volume (a name in the volumes file) and device */
        char *volume;
        struct kc_attach_params attach;   /* strings below are owned by the request */
        struct kc_context *expect;        /* attach "options":{"context":{...}} */
        bool has_options;                 /* attach: "options" was given, even empty */
        /* detach */
        char *name;
        bool deferred;
        /* status: names to show, NULL for all */
        char **names;
        /* attach-all (default true): wait for every volume that is not nofail to settle;
         * attach with volume (default false): wait for that volume to settle */
        bool wait;
        bool has_wait;                    /* attach: "wait" was given */
        /* hotplug: the block device that appeared ("device":"MAJOR:MINOR") */
        dev_t devno;
};

void kc_request_clear(struct kc_request *r);

/*
 * Parse one message of len bytes (not NUL-terminated).  On success fills
 * ret (kc_request_clear() it); on failure ret is untouched and err says why.
 */
int kc_request_parse(const char *msg, size_t len, struct kc_request *ret, struct kc_err *err);

/* Build the request object for the CLI side; NULL on ENOMEM. */
struct json_object *kc_request_new(enum kc_op op);
/* {"v":1,"op":"attach","device":...,"options":{...}} from attach parameters. */
int kc_request_attach_device(const struct kc_attach_params *p, struct json_object **ret);

/* Who is asking, from SO_PEERCRED / SO_PEERGROUPS. */
struct kc_peer {
        uid_t uid;
        gid_t gid;
        pid_t pid;
        const gid_t *groups;   /* supplementary groups */
        size_t n_groups;
};

/*
 * Root may do anything; members of status_gid (primary or supplementary
 * group; (gid_t) -1 for none) may use the read-only ops.  -EPERM with a
 * reason otherwise.
 */
int kc_protocol_authorize(enum kc_op op, const struct kc_peer *peer, gid_t status_gid, struct kc_err *err);

/* Replies: the result object is taken over (may be NULL). */
struct json_object *kc_reply_ok(struct json_object *result);
struct json_object *kc_reply_error(int error, const char *message);

/*
 * Check a reply's envelope; on "ok" hand out its result (borrowed from
 * reply, may be NULL), on an error reply return its negative errno with the
 * message in err.  -EPROTO for a malformed reply.
 */
int kc_reply_parse(struct json_object *reply, struct json_object **ret_result, struct kc_err *err);
/*
 * A reply as the client receives it, text[0..len): the shared strict parse
 * (-EPROTO when it is not one JSON object), then kc_reply_parse().  On
 * success *ret_reply is the reply and *ret_result borrowed from it.
 */
int kc_reply_parse_text(const char *text, size_t len, struct json_object **ret_reply, struct json_object **ret_result,
                        struct kc_err *err);

/* ---- payloads shared by daemon and client ---- */

struct json_object *kc_attach_result_to_json(const struct kc_attach_result *r);
int kc_attach_result_from_json(struct json_object *o, struct kc_attach_result *ret);

/* The object `kmscrypt status --json` prints for one volume. */
struct json_object *kc_volume_status_to_json(const struct kc_volume_status *s);
int kc_volume_status_from_json(struct json_object *o, struct kc_volume_status *ret);

/* The agent's view of a configured volume. */
enum kc_volume_state {
        KC_VOLUME_PENDING,     /* not tried yet */
        KC_VOLUME_ATTACHING,   /* an attach is running */
        KC_VOLUME_WAITING,     /* last try failed for a reason that may pass (KMS, device); retrying */
        KC_VOLUME_ATTACHED,
        KC_VOLUME_FAILED,      /* refused, or its timeout ran out */
        KC_VOLUME_SUSPENDED,   /* revocation policy suspended it */
        KC_VOLUME_DETACHED,    /* detached through the agent: not attached again until asked */
        _KC_VOLUME_STATE_MAX,
};
const char *kc_volume_state_to_string(enum kc_volume_state s);
int kc_volume_state_from_string(const char *s, enum kc_volume_state *ret);

struct kc_agent_volume {
        char name[128];
        char device[PATH_MAX];        /* as configured */
        enum kc_volume_state state;
        time_t since;                 /* when it entered this state */
        unsigned attempts;
        time_t next_try;              /* WAITING: when the next try is due */
        int error;                    /* last negative errno, 0 if none */
        char reason[KC_ERR_MSG_MAX];  /* why it waits, failed or is suspended */
        bool nofail;
};

struct json_object *kc_agent_volume_to_json(const struct kc_agent_volume *v);
int kc_agent_volume_from_json(struct json_object *o, struct kc_agent_volume *ret);
