/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <linux/capability.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/daemon/caps.h"
#include "lib/log.h"
#include "lib/macro.h"

/* No libcap: the two system calls and the bounding-set prctl are all it takes. */

/*
 * CAP_SYS_PTRACE is kept for one reason: the kmscrypt CLI makes itself
 * non-dumpable, and the kernel then hides a non-dumpable peer's
 * /proc/PID/exe from anyone without it, so every audit record of a request
 * would name no executable.  systemd-journald keeps it for the same reason
 * (its _EXE field).  The agent never attaches to a process.
 */
uint64_t kc_caps_keep(void) {
        static const int keep[] = { CAP_SYS_ADMIN, CAP_MKNOD, CAP_CHOWN, CAP_IPC_LOCK, CAP_SYS_PTRACE };
        uint64_t mask = 0;

        for (size_t i = 0; i < ARRAY_SIZE(keep); i++)
                mask |= UINT64_C(1) << keep[i];
        return mask;
}

/* Highest capability this kernel knows. */
static int cap_last(void) {
        _cleanup_fclose_ FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
        int last = CAP_LAST_CAP;

        if (f && fscanf(f, "%d", &last) != 1)
                last = CAP_LAST_CAP;
        return last < 63 ? last : 63;
}

static int caps_get(struct __user_cap_data_struct data[2]) {
        struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };

        return syscall(SYS_capget, &h, data) < 0 ? negative_errno() : 0;
}

static int caps_set(const struct __user_cap_data_struct data[2]) {
        struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };

        return syscall(SYS_capset, &h, data) < 0 ? negative_errno() : 0;
}

uint64_t kc_caps_keep_mapper(void) {
        return (UINT64_C(1) << CAP_SYS_ADMIN) | (UINT64_C(1) << CAP_MKNOD) | (UINT64_C(1) << CAP_CHOWN);
}

int kc_caps_reduce(void) {
        return kc_caps_reduce_to(kc_caps_keep());
}

int kc_caps_reduce_to(uint64_t keep) {
        struct __user_cap_data_struct d[2] = {};
        uint64_t permitted;
        int r, last = cap_last();

        r = caps_get(d);
        if (r < 0)
                return log_error_errno(r, "capget: %m");
        permitted = (uint64_t) d[0].permitted | (uint64_t) d[1].permitted << 32;

        /* The bounding set first: dropping from it needs CAP_SETPCAP, which goes below. */
        if (permitted & (UINT64_C(1) << CAP_SETPCAP))
                for (int c = 0; c <= last; c++)
                        if (!(keep & (UINT64_C(1) << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
                                return log_error_errno(errno, "cannot drop capability %d from the bounding set: %m", c);
        (void) prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);

        keep &= permitted;
        d[0].effective = d[0].permitted = (uint32_t) keep;
        d[1].effective = d[1].permitted = (uint32_t) (keep >> 32);
        d[0].inheritable = d[1].inheritable = 0;
        r = caps_set(d);
        if (r < 0)
                return log_error_errno(r, "capset: %m");
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return log_error_errno(errno, "prctl(PR_SET_NO_NEW_PRIVS): %m");
        log_debug("capabilities reduced to %#llx", (unsigned long long) keep);
        return 0;
}
