/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The CLI's side of the agent socket (docs/protocol.md).  Each call sends
 * one request and returns what the same library call would have returned
 * without the agent: the same structs, the same negative errno (from the
 * reply's "errno") and the same one-line message in err, so a command
 * prints the same output either way.
 */

#include <stdbool.h>
#include <stddef.h>

#include "agent/attach.h"
#include "agent/daemon/protocol.h"
#include "lib/error.h"

struct kc_client;

/* The socket to use: $KMSCRYPT_AGENT_SOCKET, else /run/kmscrypt/agent.sock. */
const char *kc_client_socket_path(void);

/*
 * Connect to the agent at path (NULL: kc_client_socket_path()).  1 and a
 * client when it answers; 0 and NULL when no agent runs there or this user
 * may not reach it, or $KMSCRYPT_NO_AGENT is set (the caller then works
 * directly); < 0 on other errors.
 */
int kc_client_open(const char *path, struct kc_client **ret);
void kc_client_close(struct kc_client *c);
DEFINE_CLEANUP_FUNC(struct kc_client *, kc_client_close)
#define _cleanup_client_ _cleanup_(kc_client_closep)

/*
 * Send request (consumed) and wait for the reply.  On success *ret_reply
 * holds the reply (json_object_put() it) and *ret_result points into it.
 * An error reply returns its errno with its message in err.
 */
int kc_client_call(struct kc_client *c, struct json_object *request, struct json_object **ret_reply,
                   struct json_object **ret_result, struct kc_err *err);

/*
 * Whether the last call got no reply at all: the agent closed the
 * connection with the request unanswered (it crashed or was killed), as
 * opposed to an error it replied.
 */
bool kc_client_lost(const struct kc_client *c);

int kc_client_ping(struct kc_client *c, pid_t *ret_pid, struct kc_err *err);
int kc_client_attach(struct kc_client *c, const struct kc_attach_params *p, struct kc_attach_result *ret,
                     struct kc_err *err);
/*
 * Attach configured volume name.  wait: until it settles (an error that may
 * pass is retried by the agent within the volume's timeout=); else one try.
 */
int kc_client_attach_volume(struct kc_client *c, const char *name, bool wait, struct kc_attach_result *ret,
                            struct kc_err *err);
/*
 * A block device appeared ("MAJOR:MINOR"): the agent attaches the volume on
 * it, leaves it alone, or refuses and audits it (kc_manager_hotplug()).
 * 1 and ret filled when attached (or already), 0 and ret_note saying why
 * when left alone, < 0 when refused or failed.
 */
int kc_client_hotplug(struct kc_client *c, const char *majmin, struct kc_attach_result *ret, char ret_note[KC_ERR_MSG_MAX],
                      struct kc_err *err);
/* Every configured volume after the attach round; caller frees *ret. */
int kc_client_attach_all(struct kc_client *c, struct kc_agent_volume **ret, size_t *ret_n, struct kc_err *err);
int kc_client_detach(struct kc_client *c, const char *name, bool deferred, struct kc_err *err);
int kc_client_list(struct kc_client *c, char ***ret_names, struct kc_err *err);
int kc_client_reload(struct kc_client *c, size_t *ret_volumes, struct kc_err *err);

struct kc_client_status {
        bool device_mapper;                 /* the agent's host has device-mapper */
        struct kc_volume_status *volumes;   /* attached mappings */
        size_t n_volumes;
        struct kc_client_status_error {
                char name[128];
                int error;                  /* negative errno */
                char message[KC_ERR_MSG_MAX];
        } *errors;                          /* names whose status could not be read */
        size_t n_errors;
        struct kc_agent_volume *configured; /* the volumes file, as the agent sees it */
        size_t n_configured;
};
void kc_client_status_clear(struct kc_client_status *s);

/* names NULL: everything. */
int kc_client_status(struct kc_client *c, char **names, struct kc_client_status *ret, struct kc_err *err);
