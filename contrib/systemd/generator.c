/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kmscrypt-generator: turn /etc/kmscrypt/volumes into systemd units
 * (kmscrypt-generator(8)).  For each volume NAME it writes
 *
 *   kmscrypt-NAME.service       attaches the volume through the agent at boot,
 *                               bound to its device, detached at shutdown
 *   cryptsetup.target.requires/ (local volume) or remote-cryptsetup.target.requires/
 *                               (_netdev: its KMS is behind the network), .wants/
 *                               for nofail volumes, which nothing waits for
 *   dev-mapper-NAME.device.requires/kmscrypt-NAME.service
 *                               so a mount of /dev/mapper/NAME pulls the attach in
 *   DEVICE.device.d/50-kmscrypt-timeout.conf
 *                               JobRunningTimeoutSec= from timeout= (0: none;
 *                               for a nofail volume: systemd's default)
 *   dev-mapper-NAME.device.d/50-kmscrypt-timeout.conf
 *                               JobTimeoutSec=infinity, not for nofail volumes:
 *                               the unit's TimeoutStartSec= bounds the wait
 *
 * Every volume unit is wanted by and ordered before
 * blockdev@dev-mapper-NAME.target, which systemd-fstab-generator orders
 * the mount of /dev/mapper/NAME after, as systemd-cryptsetup-generator
 * does.  Not before local-fs-pre.target: the agent needs its state
 * directory in /var (StateDirectory= means RequiresMountsFor=), and a
 * separate /var is mounted after local-fs-pre.target, an ordering cycle
 * that systemd breaks by deleting a job.  Local volumes are before
 * cryptsetup.target; _netdev volumes after network-online.target and
 * remote-fs-pre.target and before remote-cryptsetup.target, as
 * systemd-cryptsetup-generator orders them (not also before
 * remote-fs-pre.target: a cycle), so their mounts need _netdev too.
 *
 * An x-initrd.attach volume (the root file system, /usr) is attached in
 * the initramfs; its unit, there and on the real root, has no
 * Conflicts=umount.target, as systemd-cryptsetup-generator writes it for
 * x-initrd.attach: the mapping stays through switch-root and until the
 * file system on it is gone at the very end of shutdown.  In the
 * initramfs (/etc/initrd-release) the volumes file gives only those
 * volumes (kc_volumes_load()).
 *
 * A generator must not fail the boot over one bad line: a volumes file that
 * does not parse is reported and produces no units at all (the agent refuses
 * to start on it too); a missing file produces nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/context.h"
#include "agent/daemon/volumes.h"
#include "lib/log.h"
#include "lib/macro.h"
#include "udev/unit-name.h"

#ifndef KC_LIBEXECDIR
#error "KC_LIBEXECDIR must be defined by the build"
#endif

static const char *arg_dest = "/tmp";

/* Write a whole file below arg_dest, creating its folder. */
static int write_file(const char *dir, const char *name, const char *text) {
        _cleanup_free_ char *d = NULL, *p = NULL;
        _cleanup_fclose_ FILE *f = NULL;

        if ((dir ? asprintf(&d, "%s/%s", arg_dest, dir) : asprintf(&d, "%s", arg_dest)) < 0 ||
            asprintf(&p, "%s/%s", d, name) < 0)
                return -ENOMEM;
        if (dir && mkdir(d, 0755) < 0 && errno != EEXIST)
                return log_error_errno(-errno, "cannot create %s: %m", d);
        f = fopen(p, "we");
        if (!f)
                return log_error_errno(-errno, "cannot create %s: %m", p);
        if (fputs(text, f) < 0 || fflush(f) != 0)
                return log_error_errno(-EIO, "cannot write %s", p);
        return 0;
}

/* arg_dest/FROM.D/UNIT -> ../UNIT, e.g. cryptsetup.target.requires/kmscrypt-x.service */
static int add_symlink(const char *from, const char *dep, const char *unit) {
        _cleanup_free_ char *d = NULL, *l = NULL, *t = NULL;

        if (asprintf(&d, "%s/%s.%s", arg_dest, from, dep) < 0 || asprintf(&l, "%s/%s", d, unit) < 0 ||
            asprintf(&t, "../%s", unit) < 0)
                return -ENOMEM;
        if (mkdir(d, 0755) < 0 && errno != EEXIST)
                return log_error_errno(-errno, "cannot create %s: %m", d);
        if (symlink(t, l) < 0 && errno != EEXIST)
                return log_error_errno(-errno, "cannot link %s: %m", l);
        return 0;
}

/* UUID=x -> /dev/disk/by-uuid/x and the like; absolute paths as they are. */
static int device_path(const char *spec, char **ret) {
        static const struct { const char *tag, *dir; } tags[] = {
                { "UUID=",      "/dev/disk/by-uuid/" },
                { "PARTUUID=",  "/dev/disk/by-partuuid/" },
                { "LABEL=",     "/dev/disk/by-label/" },
                { "PARTLABEL=", "/dev/disk/by-partlabel/" },
        };

        for (size_t i = 0; i < ARRAY_SIZE(tags); i++) {
                size_t n = strlen(tags[i].tag);

                if (strncmp(spec, tags[i].tag, n) == 0) {
                        _cleanup_free_ char *v = NULL;
                        int r = kc_udev_escape_tag(spec + n, &v);

                        if (r < 0)
                                return r;
                        return asprintf(ret, "%s%s", tags[i].dir, v) < 0 ? -ENOMEM : 0;
                }
        }
        if (spec[0] != '/')
                return -EINVAL;
        *ret = strdup(spec);
        return *ret ? 0 : -ENOMEM;
}

/* DEVICE.d/50-kmscrypt-timeout.conf: "[Unit]\nSETTING=SECONDS" (0: infinity). */
static int write_timeout(const char *device_unit, const char *setting, unsigned timeout) {
        _cleanup_free_ char *dir = NULL, *text = NULL;
        char value[32] = "infinity";

        if (timeout)
                snprintf(value, sizeof(value), "%us", timeout);
        if (asprintf(&dir, "%s.d", device_unit) < 0 ||
            asprintf(&text, "# Automatically generated by kmscrypt-generator\n"
                            "[Unit]\n%s=%s\n", setting, value) < 0)
                return -ENOMEM;
        return write_file(dir, "50-kmscrypt-timeout.conf", text);
}

/*
 * The unit's start timeout: the agent retries for timeout= seconds from
 * the request and makes one last try at the deadline, which may take a
 * KMS round trip; the margin lets its verdict, not a SIGTERM, end the unit.
 */
#define START_TIMEOUT_MARGIN_SEC 30

static int generate_volume(const struct kc_volume_conf *v, const char *source) {
        _cleanup_free_ char *name_esc = NULL, *unit = NULL, *dev = NULL, *dev_unit = NULL, *map = NULL,
                            *map_unit = NULL, *blockdev = NULL, *text = NULL, *timeout = NULL;
        const char *target;
        bool remote;
        int r;

        r = kc_unit_name_escape(v->name, &name_esc);
        if (r < 0)
                return r;
        if (asprintf(&unit, "kmscrypt-%s.service", name_esc) < 0 || asprintf(&map, "/dev/mapper/%s", v->name) < 0)
                return -ENOMEM;
        r = device_path(v->device, &dev);
        if (r < 0)
                return log_error_errno(r, "%s:%u: cannot name a device unit for %s", source, v->line, v->device);
        r = kc_unit_name_from_path(dev, ".device", &dev_unit);
        if (r < 0)
                return r;
        r = kc_unit_name_from_path(map, ".device", &map_unit);
        if (r < 0)
                return r;
        r = kc_unit_name_from_path(map, ".target", &blockdev);
        if (r < 0)
                return r;
        /*
         * The unit waits until its volume settles: timeout= and a margin for the last try.  With
         * timeout=0 the agent retries for ever; a volume the boot needs waits for ever too, but a
         * nofail one keeps systemd's default, or its start job would keep the boot from ever
         * finishing (the agent goes on retrying it all the same).
         */
        if (v->timeout ? asprintf(&timeout, "TimeoutStartSec=%us\n", v->timeout + START_TIMEOUT_MARGIN_SEC) < 0
                       : !(timeout = strdup(v->nofail ? "" : "TimeoutStartSec=infinity\n")))
                return -ENOMEM;

        remote = kc_volume_needs_network(v);
        target = remote ? "remote-cryptsetup.target" : "cryptsetup.target";
        if (asprintf(&text,
                     "# Automatically generated by kmscrypt-generator from %s:%u\n"
                     "[Unit]\n"
                     "Description=kmscrypt volume %s\n"
                     "Documentation=man:kmscrypt-volumes(5) man:kmscrypt-generator(8)\n"
                     "SourcePath=%s\n"
                     "DefaultDependencies=no\n"
                     "IgnoreOnIsolate=yes\n"
                     "%s"
                     "Wants=kmscryptd.socket kmscryptd.service\n"
                     "After=kmscryptd.socket kmscryptd.service cryptsetup-pre.target systemd-udevd-kernel.socket\n"
                     "BindsTo=%s\n"
                     "After=%s\n"
                     "Wants=blockdev@%s\n"
                     "Before=blockdev@%s\n"
                     "%s"
                     "%s%s%s"
                     "\n[Service]\n"
                     "Type=oneshot\n"
                     "RemainAfterExit=yes\n"
                     "%s"
                     "ExecStart=" KC_LIBEXECDIR "/kmscrypt/kmscrypt-hotplug volume %s\n"
                     "ExecStop=" KC_LIBEXECDIR "/kmscrypt/kmscrypt-hotplug detach-volume %s\n",
                     source, v->line, v->name, source,
                     v->initrd ? "" : "Conflicts=umount.target\nBefore=umount.target\n",
                     dev_unit, dev_unit, blockdev, blockdev,
                     remote ? "Wants=network-online.target\n"
                                 "After=network-online.target remote-fs-pre.target\n" : "",
                     v->nofail ? "" : "Before=", v->nofail ? "" : target, v->nofail ? "" : "\n",
                     timeout, v->name, v->name) < 0)
                return -ENOMEM;

        r = write_file(NULL, unit, text);
        if (r < 0)
                return r;
        r = add_symlink(target, v->nofail ? "wants" : "requires", unit);
        if (r < 0)
                return r;
        r = add_symlink(map_unit, "requires", unit);
        if (r < 0)
                return r;
        /*
         * timeout=0 waits for the device for ever, but not for a nofail
         * volume: a start job that never ends for a disk that is allowed to
         * be missing holds up `systemctl is-system-running --wait` and
         * whatever waits for the boot to finish.  It keeps systemd's
         * default device timeout; the agent still attaches it when it comes.
         */
        r = v->timeout || !v->nofail ? write_timeout(dev_unit, "JobRunningTimeoutSec", v->timeout) : 0;
        if (r < 0 || v->nofail)
                return r;
        /*
         * The mapping's device waits for as long as the unit does, whose
         * start timeout (timeout= and a margin) bounds it: the unit ends
         * with the agent's verdict, and a device job that gave up first
         * would fail the mount while the agent still retries (as
         * systemd-cryptsetup-generator makes it JobTimeoutSec=infinity).
         * Not for a nofail volume: a mount of it keeps systemd's device
         * timeout (or its fstab line's x-systemd.device-timeout=) and gives
         * up, so whatever needs the mount does not hold up the boot, while
         * the agent keeps retrying in the background.
         */
        return write_timeout(map_unit, "JobTimeoutSec", 0);
}

enum { EXIT_USAGE = 2 };

static const char help_text[] =
        "Usage: kmscrypt-generator normal-dir [early-dir late-dir]\n"
        "\n"
        "The systemd generator of kmscrypt: writes into normal-dir a unit\n"
        "kmscrypt-NAME.service for each volume of the volumes file\n"
        "(KMSCRYPT_VOLUMES, default " KC_VOLUMES_FILE "), which attaches it\n"
        "through the agent at boot and detaches it at shutdown.\n"
        "\n"
        "Options:\n"
        "  -h, --help                     show this help\n"
        "\n"
        "See kmscrypt-generator(8) for exit statuses.\n";

/* Arguments as systemd passes them; --help.  false: done, *ret_status says how. */
static bool parse_args(int argc, char **argv, int *ret_status) {
        for (int a = 1; a < argc; a++) {
                if (streq(argv[a], "--help") || streq(argv[a], "-h")) {
                        fputs(help_text, stdout);
                        *ret_status = EXIT_SUCCESS;
                        return false;
                }
                if (argv[a][0] == '-') {
                        log_error("unknown option %s (see 'kmscrypt-generator --help')", argv[a]);
                        *ret_status = EXIT_USAGE;
                        return false;
                }
        }
        if (argc != 2 && argc != 4) {
                log_error("expected normal-dir [early-dir late-dir], got %d argument%s (see 'kmscrypt-generator --help')",
                          argc - 1, argc == 2 ? "" : "s");
                *ret_status = EXIT_USAGE;
                return false;
        }
        return true;
}

int main(int argc, char **argv) {
        _cleanup_volumes_ struct kc_volumes *vols = NULL;
        struct kc_err err = {};
        const char *source = getenv("KMSCRYPT_VOLUMES") ?: KC_VOLUMES_FILE;
        int r, rc = EXIT_SUCCESS;

        kc_log_set_program("kmscrypt-generator");
        kc_log_set_sink(kc_log_sink_stderr, NULL);
        if (!parse_args(argc, argv, &rc))
                return rc;
        arg_dest = argv[1];
        umask(0022);

        r = kc_volumes_load(source, &vols, &err);
        if (r == -ENOENT)
                return EXIT_SUCCESS;
        if (r < 0) {
                log_error_errno(r, "%s", kc_err_msg(&err, r));
                return EXIT_FAILURE;
        }
        for (size_t i = 0; i < vols->n; i++)
                if (generate_volume(&vols->volumes[i], source) < 0)
                        rc = EXIT_FAILURE;
        return rc;
}
