/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <blkid/blkid.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/blockdev.h"
#include "lib/macro.h"

#define SYS_CLASS_BLOCK "/sys/class/block"

DEFINE_CLEANUP_FUNC(blkid_probe, blkid_free_probe)

/* A tag, where udev links devices by it, and the blkid value that carries it. */
struct tag_kind {
        const char *tag;                /* "UUID=" */
        const char *udev_dir;
        const char *probe_value;
        bool partition;                 /* a partition table entry's, not a superblock's */
};

static const struct tag_kind tag_kinds[] = {
        { "UUID=", "/dev/disk/by-uuid", "UUID", false },
        { "LABEL=", "/dev/disk/by-label", "LABEL", false },
        { "PARTUUID=", "/dev/disk/by-partuuid", "PART_ENTRY_UUID", true },
        { "PARTLABEL=", "/dev/disk/by-partlabel", "PART_ENTRY_NAME", true },
};

bool kc_sysfs_line(const char *path, char *buf, size_t size) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");

        if (!f || !fgets(buf, (int) size, f))
                return false;
        buf[strcspn(buf, "\n")] = '\0';
        return true;
}

/* The /dev path of the device whose sysfs folder is sysdir, from its uevent's DEVNAME. */
static int devnode_of(const char *sysdir, char **ret_path) {
        _cleanup_fclose_ FILE *f = NULL;
        char path[PATH_MAX], line[256];

        snprintf(path, sizeof(path), "%s/uevent", sysdir);
        f = fopen(path, "re");
        if (!f)
                return errno == ENOENT ? -ENODEV : negative_errno();
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, "DEVNAME=", 8) == 0) {
                        line[strcspn(line, "\n")] = '\0';
                        return asprintf(ret_path, "/dev/%s", line + 8) < 0 ? -ENOMEM : 0;
                }
        return -ENODEV;
}

int kc_block_devnode(const char *majmin, char **ret_path) {
        char sysdir[64];

        if (strchr(majmin, '/'))
                return -EINVAL;
        snprintf(sysdir, sizeof(sysdir), "/sys/dev/block/%s", majmin);
        return devnode_of(sysdir, ret_path);
}

bool kc_blockdev_probe_safe(const char *sysdir) {
        char path[PATH_MAX], line[160];

        snprintf(path, sizeof(path), "%s/size", sysdir);
        if (!kc_sysfs_line(path, line, sizeof(line)) || streq(line, "0"))
                return false;
        snprintf(path, sizeof(path), "%s/dm/uuid", sysdir);
        if (kc_sysfs_line(path, line, sizeof(line)) && strncmp(line, "CRYPT-", 6) == 0)
                return false;
        /* Not a dm-crypt mapping, but suspended (LVM's, say, in the middle of a change). */
        snprintf(path, sizeof(path), "%s/dm/suspended", sysdir);
        return !kc_sysfs_line(path, line, sizeof(line)) || !streq(line, "1");
}

/* udev's link for the tag (its value encoded as udev encodes it): 1 and the device's path, or 0. */
static int by_udev(const struct tag_kind *k, const char *value, char **ret_path) {
        char enc[NAME_MAX + 1], link[PATH_MAX];
        struct stat st;
        char *path;

        if (blkid_encode_string(value, enc, sizeof(enc)) != 0 || !*enc)
                return 0;
        snprintf(link, sizeof(link), "%s/%s", k->udev_dir, enc);
        path = realpath(link, NULL);
        if (!path)
                return errno == ENOMEM ? -ENOMEM : 0;
        if (stat(path, &st) < 0 || !S_ISBLK(st.st_mode)) {
                free(path);
                return 0;
        }
        *ret_path = path;
        return 1;
}

/* Whether the device at path carries the tag's value (a device that cannot be read does not). */
static bool probe_matches(const char *path, const struct tag_kind *k, const char *value) {
        _cleanup_(blkid_free_probep) blkid_probe pr = blkid_new_probe_from_filename(path);
        const char *found;

        if (!pr)
                return false;
        blkid_probe_enable_superblocks(pr, !k->partition);
        blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_UUID | BLKID_SUBLKS_LABEL);
        blkid_probe_enable_partitions(pr, k->partition);
        blkid_probe_set_partitions_flags(pr, BLKID_PARTS_ENTRY_DETAILS);
        return blkid_do_safeprobe(pr) == 0 && blkid_probe_lookup_value(pr, k->probe_value, &found, NULL) == 0 &&
               streq(found, value);
}

/* Every block device the kernel lists that is safe to read, probed in turn: 1 and the first match, or 0. */
static int by_scan(const struct tag_kind *k, const char *value, char **ret_path) {
        _cleanup_(closedirp) DIR *d = opendir(SYS_CLASS_BLOCK);
        struct dirent *de;
        int r;

        if (!d)
                return negative_errno();
        while ((de = readdir(d))) {
                char sysdir[PATH_MAX];
                _cleanup_free_ char *path = NULL;

                if (de->d_name[0] == '.')
                        continue;
                snprintf(sysdir, sizeof(sysdir), SYS_CLASS_BLOCK "/%s", de->d_name);
                if (!kc_blockdev_probe_safe(sysdir))
                        continue;
                r = devnode_of(sysdir, &path);
                if (r == -ENOMEM)
                        return r;
                if (r < 0 || !probe_matches(path, k, value))
                        continue;
                *ret_path = TAKE_PTR(path);
                return 1;
        }
        return 0;
}

int kc_resolve_device(const char *spec, char **ret_path, struct kc_err *err) {
        char *path;
        int r;

        if (!spec || !*spec)
                return kc_err_set(err, -EINVAL, "no device given");
        for (size_t i = 0; i < ARRAY_SIZE(tag_kinds); i++) {
                const struct tag_kind *k = &tag_kinds[i];
                const char *value = spec + strlen(k->tag);

                if (strncmp(spec, k->tag, strlen(k->tag)) != 0)
                        continue;
                if (!*value)
                        return kc_err_set(err, -EINVAL, "%s names no value", spec);
                r = by_udev(k, value, ret_path);
                if (r == 0)
                        r = by_scan(k, value, ret_path);
                if (r < 0)
                        return kc_err_set(err, r, "cannot look for a device with %s: %s", spec, strerror(-r));
                return r > 0 ? 0 : kc_err_set(err, -ENODEV, "no device with %s", spec);
        }
        path = strdup(spec);
        if (!path)
                return -ENOMEM;
        *ret_path = path;
        return 0;
}
