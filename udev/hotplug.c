/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kmscrypt-hotplug: what the units run (kmscrypt-hotplug(8)).
 *
 *   attach MAJ:MIN       kmscrypt-attach@MAJ:MIN.service, started by udev for
 *                        a LUKS2 device: handed to the agent ("hotplug"
 *                        request), which leaves a device with no kmscrypt token
 *                        alone (exit 0), attaches the one a volumes-file entry
 *                        with hotplug=yes names under that entry's expected
 *                        context, and refuses and audits any other kmscrypt
 *                        device (exit 4), never attaching it.
 *   detach MAJ:MIN       its ExecStop: every kmscrypt mapping on the device is
 *                        removed; deferred (an open mapping goes when its last
 *                        user closes it) only when the device went away.  One
 *                        in use on a device still there stays (do_detach).
 *   volume NAME          kmscrypt-NAME.service (from the generator): attach a
 *                        configured volume through the agent, and wait until it
 *                        settles: attached, or failed once its timeout= ran out
 *                        while the agent retried (a failure at the first try
 *                        would fail the unit, its mount and local-fs.target
 *                        while the agent attaches the volume seconds later).
 *   detach-volume NAME   its ExecStop: removal, deferred only when the
 *                        volume's device went away, like detach.  At shutdown
 *                        the unit stops after the mounts of the volume
 *                        (blockdev@dev-mapper-NAME.target); udev's probe after
 *                        the last close is waited out by the retries of the
 *                        removal (dmsetup-helpers).
 *
 * Everything that needs a key goes through the agent (kmscryptd), which
 * retries, serializes attaches of one volume and audits every KMS call.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <syslog.h>
#include <unistd.h>

#include "agent/attach.h"
#include "agent/client.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "lib/backoff.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/macro.h"
#include "lib/strv.h"

/* The statuses of kmscrypt(8), as kmscrypt-hotplug(8) documents them. */
enum { EXIT_USAGE = 2, EXIT_REFUSED = 4, EXIT_UNAVAILABLE = 5 };

/* Refused as kmscrypt counts it (no entry allows the volume, another context, the KMS said no): 4; else 1. */
static int failure_status(int r) {
        return kc_err_is_refusal(r) ? EXIT_REFUSED : EXIT_FAILURE;
}

/* One line naming what is wrong, with the hint every kmscrypt program gives. */
_printf_(1, 2) static int usage_error(const char *fmt, ...) {
        va_list ap;

        fputs("kmscrypt-hotplug: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs(" (see 'kmscrypt-hotplug --help')\n", stderr);
        return EXIT_USAGE;
}

static int parse_devno(const char *s, dev_t *ret) {
        unsigned ma, mi;
        char end;

        if (sscanf(s, "%u:%u%c", &ma, &mi, &end) != 2)
                return -EINVAL;
        *ret = makedev(ma, mi);
        return 0;
}

static int agent_open(struct kc_client **ret) {
        int r = kc_client_open(NULL, ret);

        if (r <= 0) {
                log_error_errno(r ?: -ECONNREFUSED, "cannot reach the kmscrypt agent at %s", kc_client_socket_path());
                return -ECONNREFUSED;
        }
        return 0;
}

/* Whether the agent has volume name in its volumes file (a missing device is ENOENT too). */
static bool agent_knows(struct kc_client *c, const char *name) {
        _cleanup_(kc_client_status_clear) struct kc_client_status st = {};
        char *names[] = { (char *) name, NULL };
        bool known = false;

        if (kc_client_status(c, names, &st, NULL) < 0)
                return true;    /* cannot tell: do not reload on a guess */
        for (size_t i = 0; i < st.n_configured; i++)
                known = known || streq(st.configured[i].name, name);
        return known;
}

/*
 * Open the agent and make one call; again, after a pause, while the agent
 * turns the connection away (EUSERS: more units talk to it at once than it
 * serves, as at a boot with many volumes, each unit waiting for its own;
 * or it is stopping), stops while we wait (ESHUTDOWN), or goes away without
 * a reply (it crashed or was killed; systemd restarts it): a restarted agent
 * will serve, and asking again is safe, as an attached volume is reported
 * attached.  Not more than LOST_MAX times without a reply, though: a request
 * that itself kills the agent would otherwise kill every agent systemd
 * starts, until the start limit takes the agent away from all volumes.
 * The unit's start timeout, or its stop, bounds the rest; an agent that
 * does not come back ends it as "no agent".  *no_agent says there was no
 * agent to ask (logged), apart from any errno a reply may carry.
 */
#define LOST_MAX 3
static int agent_call(int (*call)(struct kc_client *c, void *userdata, struct kc_err *err), void *userdata,
                      bool *no_agent, struct kc_err *err) {
        unsigned lost = 0;

        *no_agent = false;
        for (unsigned attempt = 0;; attempt++) {
                _cleanup_client_ struct kc_client *c = NULL;
                unsigned ms;
                int r;

                if (agent_open(&c) < 0) {
                        *no_agent = true;
                        return -ECONNREFUSED;
                }
                *err = (struct kc_err) {};
                r = call(c, userdata, err);
                /* EUSERS: turned away, too many connections.  ESHUTDOWN: the agent stopped while we
                 * waited (a restart; socket activation starts the next one).  Lost: no reply at all. */
                if (r != -EUSERS && r != -ESHUTDOWN && (!kc_client_lost(c) || ++lost > LOST_MAX))
                        return r;
                ms = kc_backoff_ceiling(attempt, 100, 5000);
                ms = kc_backoff_draw(ms, ms);
                log_debug("%s; trying again in %u ms", kc_err_msg(err, r), ms);
                (void) usleep(ms * 1000);
        }
}

struct volume_call {
        const char *name;
        struct kc_attach_result res;
};

static int call_attach_volume(struct kc_client *c, void *userdata, struct kc_err *err) {
        struct volume_call *v = userdata;
        int r = kc_client_attach_volume(c, v->name, true, &v->res, err);

        if (r == -ENOENT && !agent_knows(c, v->name)) {
                /*
                 * This unit exists because the generator saw the volume in
                 * the file, so an agent that does not know it read an older
                 * file (edited, then daemon-reload without reloading the
                 * agent): have it re-read the file, and try once more.
                 */
                struct kc_err rerr = {};
                size_t n;

                log_notice("the agent does not know volume %s yet: asking it to re-read the volumes file", v->name);
                *err = (struct kc_err) {};
                r = kc_client_reload(c, &n, &rerr);
                r = r < 0 ? kc_err_set(err, r, "reloading the agent: %s", kc_err_msg(&rerr, r))
                          : kc_client_attach_volume(c, v->name, true, &v->res, err);
        }
        return r;
}

static int agent_attach_volume(const char *name) {
        struct volume_call v = { .name = name };
        struct kc_err err = {};
        bool no_agent;
        int r = agent_call(call_attach_volume, &v, &no_agent, &err);

        if (no_agent)
                return EXIT_UNAVAILABLE;
        if (r < 0) {
                log_error_errno(r, "attaching volume %s failed: %s", name, kc_err_msg(&err, r));
                return failure_status(r);
        }
        log_info("%s %s as /dev/mapper/%s", v.res.device, v.res.already ? "was already attached" : "attached",
                 v.res.name);
        return EXIT_SUCCESS;
}

/*
 * The agent decides what to do with the device, so that a refusal (a
 * kmscrypt volume no entry of the volumes file allows here) is audited by
 * the one audit writer, and so that repeated events for one device are
 * serialized where the volume's state lives.
 */
struct hotplug_call {
        const char *devno;
        struct kc_attach_result res;
        char note[KC_ERR_MSG_MAX];
};

static int call_hotplug(struct kc_client *c, void *userdata, struct kc_err *err) {
        struct hotplug_call *h = userdata;

        return kc_client_hotplug(c, h->devno, &h->res, h->note, err);
}

static int do_attach(const char *arg) {
        struct hotplug_call h = { .devno = arg };
        struct kc_err err = {};
        bool no_agent;
        dev_t devno;
        int r;

        if (parse_devno(arg, &devno) < 0)
                return usage_error("not MAJOR:MINOR: \"%s\"", arg);
        r = agent_call(call_hotplug, &h, &no_agent, &err);
        if (no_agent)
                return EXIT_UNAVAILABLE;
        if (r < 0) {
                log_error_errno(r, "%s", kc_err_msg(&err, r));
                return failure_status(r);
        }
        if (r == 0)
                log_info("%s", h.note);
        else
                log_info("%s %s as /dev/mapper/%s", h.res.device, h.res.already ? "was already attached" : "attached",
                         h.res.name);
        return EXIT_SUCCESS;
}

/* The device under kmscrypt mapping name, as MAJOR:MINOR; false when it is none. */
static bool mapping_device(const char *name, char ret[32]) {
        _cleanup_free_ char *target = NULL, *params = NULL;
        struct kc_dm_info info;
        struct kc_crypt_table t;
        bool ok;

        if (kc_dm_info(name, &info) < 0 || kc_dm_table(name, &target, &params) < 0 || !streq(target, "crypt") ||
            kc_crypt_table_parse(params, info.size, &t) < 0)
                return false;
        ok = t.p.device && snprintf(ret, 32, "%s", t.p.device) < 32;
        kc_crypt_table_clear(&t);
        return ok;
}

/* Whether mapping name is a kmscrypt mapping on devno. */
static bool mapping_on(const char *name, dev_t devno) {
        char dev[32], want[32];

        snprintf(want, sizeof(want), "%u:%u", major(devno), minor(devno));
        return mapping_device(name, dev) && streq(dev, want);
}

/*
 * Whether block device MAJOR:MINOR is gone: hot-unplugged.  Only then is a
 * removal deferred to the mapping's last close.  A stop with the device in
 * place (shutdown, after the file systems on the volume are unmounted; a
 * restart by hand) removes the mapping now or fails: a deferred removal
 * there would stay armed and remove the volume at some later unmount.
 */
static bool device_gone(const char *majmin) {
        _cleanup_free_ char *path = NULL;

        return kc_block_devnode(majmin, &path) == -ENODEV;
}

/* busy_ok: a mapping in use stays, and that is no failure (do_detach says why). */
static int detach_name(const char *name, bool deferred, bool busy_ok) {
        _cleanup_client_ struct kc_client *c = NULL;
        struct kc_err err = {};
        int r;

        /* Through the agent when it runs, so it marks the volume detached. */
        r = kc_client_open(NULL, &c);
        r = r > 0 ? kc_client_detach(c, name, deferred, &err) : kc_detach(name, deferred, &err);
        if (r == -ENXIO)
                return EXIT_SUCCESS;
        if (r == -EBUSY && busy_ok) {
                log_notice("%s is in use and stays attached; its volume's unit detaches it after its mounts", name);
                return EXIT_SUCCESS;
        }
        if (r < 0)
                return log_error_errno(r, "detaching %s failed: %s", name, kc_err_msg(&err, r)), EXIT_FAILURE;
        log_info("%s %s", name, deferred ? "detached (deferred until closed)" : "detached");
        return EXIT_SUCCESS;
}

/*
 * kmscrypt-attach@'s ExecStop.  With the device in place, a mapping still
 * in use stays, and the stop succeeds: at shutdown this unit stops beside
 * the unmounts, as it cannot be ordered after the mounts of a mapping it
 * learns only at run time, and a volume still mounted then would fail it
 * at every shutdown.  Every volume it attaches has an entry in the
 * volumes file, and so a kmscrypt-NAME.service from the generator, which
 * is ordered after the volume's mounts (blockdev@dev-mapper-NAME.target)
 * and detaches it then.
 */
static int do_detach(const char *arg) {
        _cleanup_strv_ char **names = NULL;
        dev_t devno;
        bool gone;
        int rc = EXIT_SUCCESS;

        if (parse_devno(arg, &devno) < 0)
                return usage_error("not MAJOR:MINOR: \"%s\"", arg);
        if (kc_volume_list(&names) < 0)
                return EXIT_FAILURE;
        gone = device_gone(arg);
        for (char **n = names; n && *n; n++)
                if (mapping_on(*n, devno) && detach_name(*n, gone, !gone) != EXIT_SUCCESS)
                        rc = EXIT_FAILURE;
        return rc;
}

/* kmscrypt-NAME.service's ExecStop: deferred only when the volume's device went away. */
static int do_detach_volume(const char *name) {
        char dev[32];

        return detach_name(name, mapping_device(name, dev) && device_gone(dev), false);
}

static const struct {
        const char *verb;
        const char *arg;        /* what its one argument is, for messages */
        int (*run)(const char *arg);
} verbs[] = {
        { "attach",        "MAJOR:MINOR", do_attach },
        { "detach",        "MAJOR:MINOR", do_detach },
        { "volume",        "NAME",        agent_attach_volume },
        { "detach-volume", "NAME",        do_detach_volume },
};

static const char help_text[] =
        "Usage: kmscrypt-hotplug attach|detach MAJOR:MINOR\n"
        "       kmscrypt-hotplug volume|detach-volume NAME\n"
        "\n"
        "What the kmscrypt units run.  attach hands a LUKS2 block device that appeared\n"
        "to the agent kmscryptd, which attaches it when an entry of the volumes file\n"
        "allows and refuses (and audits) any other kmscrypt volume; detach removes\n"
        "every kmscrypt mapping on a device, deferred when the device went away.\n"
        "volume and detach-volume attach (waiting until the volume settles) and\n"
        "remove a configured volume by name.\n"
        "\n"
        "Options:\n"
        "  -h, --help                     show this help\n"
        "\n"
        "See kmscrypt-hotplug(8) for exit statuses.\n";

int main(int argc, char **argv) {
        size_t i;

        kc_log_set_program("kmscrypt-hotplug");
        /* Under its unit the journal has it with the unit's name; run by hand, the terminal. */
        kc_log_set_sink(getenv("JOURNAL_STREAM") ? kc_log_sink_syslog : kc_log_sink_stderr, NULL);
        for (int a = 1; a < argc; a++) {
                if (streq(argv[a], "--help") || streq(argv[a], "-h")) {
                        fputs(help_text, stdout);
                        return EXIT_SUCCESS;
                }
                if (argv[a][0] == '-' && argv[a][1] != '\0')
                        return usage_error("unknown option %s", argv[a]);
        }
        if (argc < 2)
                return usage_error("missing command: attach, detach, volume or detach-volume");
        for (i = 0; i < ARRAY_SIZE(verbs) && !streq(argv[1], verbs[i].verb); i++)
                ;
        if (i == ARRAY_SIZE(verbs))
                return usage_error("unknown command \"%s\"", argv[1]);
        if (argc < 3)
                return usage_error("%s needs %s", verbs[i].verb, verbs[i].arg);
        if (argc > 3)
                return usage_error("unexpected argument \"%s\"", argv[3]);
        return verbs[i].run(argv[2]);
}
