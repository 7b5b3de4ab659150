/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kmscrypt-hotplug: what the units run (kmscrypt-hotplug(8)).
 *
 *   attach MAJ:MIN       kmscrypt-attach@MAJ:MIN.service, started by udev for
 *                        a LUKS2 device: a device with no kmscrypt token is
 *                        not ours (exit 0); one that a volumes-file entry with
 *                        hotplug=yes names is attached by the agent under that
 *                        entry's expected context; any other kmscrypt device is
 *                        refused (logged with its context, exit 4), never attached.
 *   detach MAJ:MIN       its ExecStop: the device went away, so every kmscrypt
 *                        mapping on it is removed, deferred (an open mapping goes
 *                        when its last user closes it).
 *   volume NAME          kmscrypt-NAME.service (from the generator): attach a
 *                        configured volume through the agent.
 *   detach-volume NAME   its ExecStop at shutdown.
 *
 * Everything that needs a key goes through the agent (kmscryptd), which
 * retries, serializes attaches of one volume and audits every KMS call.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <syslog.h>

#include "agent/attach.h"
#include "agent/client.h"
#include "agent/daemon/volumes.h"
#include "agent/luks.h"
#include "agent/token.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "lib/log.h"
#include "lib/macro.h"
#include "lib/strv.h"

enum { EXIT_REFUSED = 4, EXIT_UNAVAILABLE = 5 };

static int parse_devno(const char *s, dev_t *ret) {
        unsigned ma, mi;
        char end;

        if (sscanf(s, "%u:%u%c", &ma, &mi, &end) != 2)
                return -EINVAL;
        *ret = makedev(ma, mi);
        return 0;
}

/* The configured volume whose device spec resolves to devno, or NULL. */
static const struct kc_volume_conf *find_volume(const struct kc_volumes *v, dev_t devno) {
        for (size_t i = 0; i < v->n; i++) {
                _cleanup_free_ char *path = NULL;
                struct kc_err err = {};
                struct stat st;

                if (kc_resolve_device(v->volumes[i].device, &path, &err) < 0)
                        continue;
                if (stat(path, &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == devno)
                        return &v->volumes[i];
        }
        return NULL;
}

static int agent_attach_volume(const char *name) {
        _cleanup_client_ struct kc_client *c = NULL;
        struct kc_attach_result res = {};
        struct kc_err err = {};
        int r;

        r = kc_client_open(NULL, &c);
        if (r <= 0) {
                log_error_errno(r ?: -ECONNREFUSED, "cannot reach the kmscrypt agent at %s", kc_client_socket_path());
                return EXIT_UNAVAILABLE;
        }
        r = kc_client_attach_volume(c, name, &res, &err);
        if (r < 0) {
                log_error_errno(r, "attaching volume %s failed: %s", name, kc_err_msg(&err, r));
                return r == -EPERM || r == -EACCES ? EXIT_REFUSED : EXIT_FAILURE;
        }
        log_info("%s %s as /dev/mapper/%s", res.device, res.already ? "was already attached" : "attached", res.name);
        return EXIT_SUCCESS;
}

static int do_attach(const char *arg) {
        _cleanup_volumes_ struct kc_volumes *vols = NULL;
        _cleanup_luks_ struct kc_luks *l = NULL;
        _cleanup_free_ char *ctx = NULL;
        const struct kc_volume_conf *v;
        struct kc_token tok = {};
        struct kc_err err = {};
        char path[64];
        dev_t devno;
        int r;

        if (parse_devno(arg, &devno) < 0)
                return log_error_errno(-EINVAL, "not MAJOR:MINOR: %s", arg), EXIT_FAILURE;
        snprintf(path, sizeof(path), "/dev/block/%u:%u", major(devno), minor(devno));

        r = kc_luks_open(path, NULL, &l, &err);
        if (r >= 0)
                r = kc_luks_token_read(l, &tok, NULL, &err);
        if (r < 0) {
                /* Plain LUKS2 (crypttab, cryptsetup) is not ours to touch. */
                log_debug("%s: no kmscrypt volume: %s", path, kc_err_msg(&err, r));
                return EXIT_SUCCESS;
        }
        (void) kc_context_to_string(tok.context, &ctx);
        kc_token_clear(&tok);

        r = kc_volumes_load(KC_VOLUMES_FILE, &vols, &err);
        if (r < 0 && r != -ENOENT)
                return log_error_errno(r, "%s", kc_err_msg(&err, r)), EXIT_FAILURE;
        v = r < 0 ? NULL : find_volume(vols, devno);
        if (!v) {
                log_warning("refusing kmscrypt volume on %s (context %s): no entry in %s names this device",
                            path, ctx ? ctx : "?", KC_VOLUMES_FILE);
                return EXIT_REFUSED;
        }
        if (!v->hotplug) {
                log_notice("%s is volume %s, which has hotplug=no; not attaching", path, v->name);
                return EXIT_SUCCESS;
        }
        return agent_attach_volume(v->name);
}

/* Whether mapping name is a kmscrypt mapping on devno. */
static bool mapping_on(const char *name, dev_t devno) {
        _cleanup_free_ char *target = NULL, *params = NULL;
        struct kc_dm_info info;
        struct kc_crypt_table t;
        char want[32];
        bool on;

        if (kc_dm_info(name, &info) < 0 || kc_dm_table(name, &target, &params) < 0 || !streq(target, "crypt") ||
            kc_crypt_table_parse(params, info.size, &t) < 0)
                return false;
        snprintf(want, sizeof(want), "%u:%u", major(devno), minor(devno));
        on = t.p.device && streq(t.p.device, want);
        kc_crypt_table_clear(&t);
        return on;
}

static int detach_name(const char *name, bool deferred) {
        _cleanup_client_ struct kc_client *c = NULL;
        struct kc_err err = {};
        int r;

        /* Through the agent when it runs, so it marks the volume detached. */
        r = kc_client_open(NULL, &c);
        r = r > 0 ? kc_client_detach(c, name, deferred, &err) : kc_detach(name, deferred, &err);
        if (r == -ENXIO)
                return EXIT_SUCCESS;
        if (r < 0)
                return log_error_errno(r, "detaching %s failed: %s", name, kc_err_msg(&err, r)), EXIT_FAILURE;
        log_info("%s %s", name, deferred ? "detached (deferred until closed)" : "detached");
        return EXIT_SUCCESS;
}

static int do_detach(const char *arg) {
        _cleanup_strv_ char **names = NULL;
        dev_t devno;
        int rc = EXIT_SUCCESS;

        if (parse_devno(arg, &devno) < 0)
                return log_error_errno(-EINVAL, "not MAJOR:MINOR: %s", arg), EXIT_FAILURE;
        if (kc_volume_list(&names) < 0)
                return EXIT_FAILURE;
        for (char **n = names; n && *n; n++)
                if (mapping_on(*n, devno) && detach_name(*n, true) != EXIT_SUCCESS)
                        rc = EXIT_FAILURE;
        return rc;
}

static const struct {
        const char *verb;
        int (*run)(const char *arg);
} verbs[] = {
        { "attach",        do_attach },
        { "detach",        do_detach },
        { "volume",        agent_attach_volume },
        { "detach-volume", NULL },
};

int main(int argc, char **argv) {
        kc_log_set_program("kmscrypt-hotplug");
        kc_log_set_sink(kc_log_sink_syslog, NULL);
        if (argc == 3)
                for (size_t i = 0; i < ARRAY_SIZE(verbs); i++) {
                        if (!streq(argv[1], verbs[i].verb))
                                continue;
                        return verbs[i].run ? verbs[i].run(argv[2]) : detach_name(argv[2], false);
                }
        fprintf(stderr, "usage: kmscrypt-hotplug attach|detach MAJOR:MINOR | volume|detach-volume NAME\n");
        return 2;
}
