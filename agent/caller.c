/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/caller.h"
#include "lib/log.h"
#include "lib/macro.h"

/*
 * The executable behind a /proc/PID/exe link, best effort: /proc may be
 * missing (early boot), the process may be gone, or the path may not fit.
 * A path that does not fit is left out rather than cut, since a cut path
 * could name a different binary.
 */
static void caller_exe(const char *link, struct kc_caller *c) {
        char buf[PATH_MAX];
        ssize_t n;

        c->exe[0] = '\0';
        n = readlink(link, buf, sizeof(buf));
        if (n < 0) {
                log_debug("Cannot read %s: %s", link, strerror(errno));
                return;
        }
        if ((size_t) n >= sizeof(c->exe)) {
                log_debug("Executable path behind %s is too long to record", link);
                return;
        }
        memcpy(c->exe, buf, n);
        c->exe[n] = '\0';
}

int kc_caller_self(struct kc_caller *ret) {
        struct kc_caller c = {
                .uid = getuid(),
                .pid = getpid(),
        };

        if (!ret)
                return -EINVAL;
        caller_exe("/proc/self/exe", &c);
        *ret = c;
        return 0;
}

int kc_caller_from_socket(int fd, struct kc_caller *ret) {
        struct ucred uc = {};
        socklen_t len = sizeof(uc);
        struct kc_caller c = {};
        char link[64];

        if (fd < 0 || !ret)
                return -EINVAL;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
                return negative_errno();
        if (len != sizeof(uc))
                return -EIO;
        /* A socket that was never connected reports pid 0: there is no peer to name. */
        if (uc.pid <= 0)
                return -ENOTCONN;

        c.uid = uc.uid;
        c.pid = uc.pid;
        /* The pid may already be reused by the time we look: the exe is a hint, uid and pid are the record. */
        snprintf(link, sizeof(link), "/proc/%d/exe", (int) uc.pid);
        caller_exe(link, &c);
        *ret = c;
        return 0;
}
