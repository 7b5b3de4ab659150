/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Who asked for an operation: recorded in every audit record. */

#include <limits.h>
#include <sys/types.h>

struct kc_caller {
        uid_t uid;
        pid_t pid;
        char exe[PATH_MAX]; /* /proc/PID/exe target, "" if unknown */
};

/* The calling process itself (CLI working without the agent). */
int kc_caller_self(struct kc_caller *ret);
/* The peer of a connected Unix socket, from SO_PEERCRED (the agent). */
int kc_caller_from_socket(int fd, struct kc_caller *ret);
