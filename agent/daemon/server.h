/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * kmscryptd's socket side: the listening socket (socket activation or our
 * own bind), one thread per connection that parses requests, checks the
 * peer's SO_PEERCRED against the op, and answers; plus readiness
 * notification to the service manager.
 */

#include <stdbool.h>
#include <sys/types.h>

#include "agent/daemon/manager.h"

#define KC_SERVER_MAX_CONNECTIONS 64

struct kc_server;

struct kc_server_config {
        const char *socket_path;
        gid_t status_gid;          /* may use status/list/ping; (gid_t) -1: root only */
        /* Re-read the configuration; 0 or a negative errno with err filled. */
        int (*reload)(void *userdata, size_t *ret_volumes, struct kc_err *err);
        void *userdata;
};

/*
 * Take the socket passed by the service manager (LISTEN_FDS, exactly one
 * AF_UNIX SOCK_SEQPACKET listening socket), or create and bind
 * socket_path (0600, or 0660 owned by status_gid; a stale socket is
 * replaced, a live one is -EADDRINUSE).
 */
int kc_server_new(const struct kc_server_config *cfg, struct kc_manager *m, struct kc_server **ret,
                  struct kc_err *err);

/* The listening fd, for the caller's poll loop. */
int kc_server_fd(const struct kc_server *s);

/* Accept one pending connection and serve it on a thread of its own. */
void kc_server_accept(struct kc_server *s);

/*
 * Close the listening socket (and remove it if we made it), end every
 * connection, wait for their threads: the replies under way go out, but
 * one whose peer does not read it holds the stop up a second at most.
 */
void kc_server_free(struct kc_server *s);
DEFINE_CLEANUP_FUNC(struct kc_server *, kc_server_free)

/* sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET.  0 when there is none. */
int kc_notify(const char *state);

/*
 * sd_listen_fds(3) semantics for exactly one socket: 1 and the fd when the
 * service manager passed one to this process, 0 when none.  Unsets the
 * LISTEN_* variables either way.
 */
int kc_listen_fd(int *ret_fd, struct kc_err *err);
