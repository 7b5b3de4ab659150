/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <blkid/blkid.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "agent/blockdev.h"
#include "lib/log.h"
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

bool kc_block_dm_uuid_has_prefix(const char *sysdir, const char *prefix) {
        char path[PATH_MAX], uuid[160];

        snprintf(path, sizeof(path), "%s/dm/uuid", sysdir);
        return kc_sysfs_line(path, uuid, sizeof(uuid)) && strncmp(uuid, prefix, strlen(prefix)) == 0;
}

/*
 * A device-mapper device's name in /dev/mapper, when that node is this very
 * device (udev's link, or dmsetup mknodes' node): what the administrator
 * called it (vg-lv, mpatha), not /dev/dm-N.  NULL when there is none.
 */
static char *mapper_node(const char *sysdir, dev_t devnum) {
        char path[PATH_MAX], name[128];
        struct stat st;

        snprintf(path, sizeof(path), "%s/dm/name", sysdir);
        if (!kc_sysfs_line(path, name, sizeof(name)) || !name[0] || strchr(name, '/'))
                return NULL;
        snprintf(path, sizeof(path), "/dev/mapper/%s", name);
        if (stat(path, &st) < 0 || !S_ISBLK(st.st_mode) || st.st_rdev != devnum)
                return NULL;
        return strdup(path);
}

/* The /dev path (its uevent's DEVNAME, or its /dev/mapper name) and number of the device whose sysfs folder is sysdir. */
static int devnode_of(const char *sysdir, char **ret_path, dev_t *ret_devnum) {
        _cleanup_fclose_ FILE *f = NULL;
        char path[PATH_MAX], line[256], devname[256] = "";
        unsigned maj = 0, min = 0;

        snprintf(path, sizeof(path), "%s/uevent", sysdir);
        f = fopen(path, "re");
        if (!f)
                return errno == ENOENT ? -ENODEV : negative_errno();
        while (fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = '\0';
                if (strncmp(line, "DEVNAME=", 8) == 0)
                        snprintf(devname, sizeof(devname), "%s", line + 8);
                (void) sscanf(line, "MAJOR=%u", &maj);
                (void) sscanf(line, "MINOR=%u", &min);
        }
        if (!devname[0])
                return -ENODEV;
        *ret_devnum = makedev(maj, min);
        *ret_path = mapper_node(sysdir, *ret_devnum);
        if (*ret_path)
                return 0;
        return asprintf(ret_path, "/dev/%s", devname) < 0 ? -ENOMEM : 0;
}

int kc_block_devnode(const char *majmin, char **ret_path) {
        char sysdir[64];
        dev_t devnum;

        if (strchr(majmin, '/'))
                return -EINVAL;
        snprintf(sysdir, sizeof(sysdir), "/sys/dev/block/%s", majmin);
        return devnode_of(sysdir, ret_path, &devnum);
}

bool kc_blockdev_probe_safe(const char *sysdir) {
        char path[PATH_MAX], line[160];

        snprintf(path, sizeof(path), "%s/size", sysdir);
        if (!kc_sysfs_line(path, line, sizeof(line)) || streq(line, "0"))
                return false;
        if (kc_block_dm_uuid_has_prefix(sysdir, "CRYPT-"))
                return false;
        /* Not a dm-crypt mapping, but suspended (LVM's, say, in the middle of a change). */
        snprintf(path, sizeof(path), "%s/dm/suspended", sysdir);
        return !kc_sysfs_line(path, line, sizeof(line)) || !streq(line, "1");
}

int kc_block_holders(dev_t dev, int (*fn)(const char *holder, void *userdata), void *userdata) {
        _cleanup_(closedirp) DIR *d = NULL;
        char path[64];
        struct dirent *de;

        snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/holders", major(dev), minor(dev));
        d = opendir(path);
        if (!d)
                return errno == ENOENT ? 0 : negative_errno();
        while ((de = readdir(d))) {
                int r;

                if (de->d_name[0] == '.')
                        continue;
                r = fn(de->d_name, userdata);
                if (r != 0)
                        return r;
        }
        return 0;
}

/* 1 unless holder is a dm-crypt mapping (dm UUID CRYPT-...): kc_block_holders()'s fn for is_component(). */
static int holder_not_crypt(const char *holder, void *userdata) {
        char sysdir[PATH_MAX];

        (void) userdata;
        snprintf(sysdir, sizeof(sysdir), SYS_CLASS_BLOCK "/%s", holder);
        return !kc_block_dm_uuid_has_prefix(sysdir, "CRYPT-");
}

/*
 * Whether the device dev is a part of another that something other than a
 * dm-crypt mapping holds: a multipath map's path, LVM's LV-real beneath an
 * origin and its snapshot, a RAID member.  That other device is the one to
 * name, and udev's rules (multipath's, LVM's, mdadm's) keep such parts from
 * claiming a tag's link; a scan leaves them out as well.  A volume that is
 * attached is held by its dm-crypt mapping, and counts.
 */
static bool is_component(dev_t dev) {
        return kc_block_holders(dev, holder_not_crypt, NULL) > 0;
}

/* udev's link for the tag (enc: its value encoded as udev encodes it): 1, the device's path and number, or 0. */
static int by_udev(const struct tag_kind *k, const char *enc, char **ret_path, dev_t *ret_devnum) {
        char link[PATH_MAX];
        struct stat st;
        char *path;

        snprintf(link, sizeof(link), "%s/%s", k->udev_dir, enc);
        path = realpath(link, NULL);
        if (!path)
                return errno == ENOMEM ? -ENOMEM : 0;
        if (stat(path, &st) < 0 || !S_ISBLK(st.st_mode)) {
                free(path);
                return 0;
        }
        *ret_path = path;
        *ret_devnum = st.st_rdev;
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

/* The devices found to carry a tag: the first one's path, and how many there are. */
struct found {
        char *path;
        char *other;            /* a second one's, for the message */
        unsigned n;
};

static void found_clear(struct found *f) {
        free(f->path);
        free(f->other);
        *f = (struct found) {};
}

/* One more device carries the tag. */
static int found_add(struct found *f, const char *path) {
        char **slot = f->n == 0 ? &f->path : f->n == 1 ? &f->other : NULL;

        f->n++;
        if (slot && !(*slot = strdup(path)))
                return -ENOMEM;
        return 0;
}

/*
 * Every block device the kernel lists that is safe to read, probed: every
 * one that carries the tag, so that a block copy of a volume (a restored
 * snapshot beside the volume) shows as two.
 */
static int by_scan(const struct tag_kind *k, const char *value, struct found *ret) {
        _cleanup_(closedirp) DIR *d = opendir(SYS_CLASS_BLOCK);
        struct dirent *de;
        int r;

        if (!d)
                return negative_errno();
        while ((de = readdir(d))) {
                char sysdir[PATH_MAX];
                _cleanup_free_ char *path = NULL;
                dev_t devnum;

                if (de->d_name[0] == '.')
                        continue;
                snprintf(sysdir, sizeof(sysdir), SYS_CLASS_BLOCK "/%s", de->d_name);
                if (!kc_blockdev_probe_safe(sysdir))
                        continue;
                r = devnode_of(sysdir, &path, &devnum);
                if (r == -ENOMEM)
                        return r;
                if (r < 0 || is_component(devnum) || !probe_matches(path, k, value))
                        continue;
                r = found_add(ret, path);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* s with each "\\xHH" as the byte it stands for, into buf. */
static void unescape_hex(const char *s, char *buf, size_t size) {
        size_t n = 0;

        while (*s && n + 1 < size) {
                if (s[0] == '\\' && s[1] == 'x' && isxdigit((unsigned char) s[2]) && isxdigit((unsigned char) s[3])) {
                        char hex[3] = { s[2], s[3], '\0' };

                        buf[n++] = (char) strtoul(hex, NULL, 16);
                        s += 4;
                } else
                        buf[n++] = *s++;
        }
        buf[n] = '\0';
}

/*
 * The folder in which udev lists the devices that claim the link
 * /dev/LINK (link without "/dev/"): /run/udev/links/ holds one a link,
 * named after the link's path with each '/' (and backslash) escaped as
 * \\xHH.  Which part of the path the name keeps has differed between udev
 * versions, so each name is unescaped and compared without its leading
 * "/dev/" or "/".  NULL when there is none.
 */
static DIR *open_claimants(const char *link) {
        _cleanup_(closedirp) DIR *links = opendir("/run/udev/links");
        struct dirent *de;

        if (!links)
                return NULL;
        while ((de = readdir(links))) {
                char name[NAME_MAX + 1];
                const char *rest = name;
                DIR *d = NULL;
                int fd;

                unescape_hex(de->d_name, name, sizeof(name));
                if (strncmp(rest, "/dev/", 5) == 0)
                        rest += 5;
                else if (rest[0] == '/')
                        rest++;
                if (!streq(rest, link))
                        continue;
                fd = openat(dirfd(links), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd >= 0 && !(d = fdopendir(fd)))
                        close(fd);
                return d;
        }
        return NULL;
}

/*
 * udev's own list of the devices that claim the link it made for the tag,
 * an entry b<major>:<minor> a device: each present device but the one
 * the link names (found) goes to ret.  Where udev keeps no such list
 * (none running, or a name it shortened with a hash), the one found is
 * all there is to know.
 */
static int udev_claimants(const struct tag_kind *k, const char *enc, dev_t found, struct found *ret) {
        _cleanup_(closedirp) DIR *d = NULL;
        _cleanup_free_ char *link = NULL;
        struct dirent *de;
        int r;

        if (asprintf(&link, "%s/%s", k->udev_dir + strlen("/dev/"), enc) < 0)
                return -ENOMEM;
        d = open_claimants(link);
        if (!d) {
                log_debug("No list of the devices that claim /dev/%s in /run/udev/links", link);
                return 0;
        }
        while ((de = readdir(d))) {
                _cleanup_free_ char *other = NULL;
                unsigned maj, min;
                char majmin[32];
                struct stat st;
                int end = 0;

                if (sscanf(de->d_name, "b%u:%u%n", &maj, &min, &end) != 2 || de->d_name[end] != '\0' ||
                    (maj == major(found) && min == minor(found)))
                        continue;
                snprintf(majmin, sizeof(majmin), "%u:%u", maj, min);
                r = kc_block_devnode(majmin, &other);
                if (r == -ENOMEM)
                        return r;
                if (r < 0 || stat(other, &st) < 0 || !S_ISBLK(st.st_mode)) {
                        log_debug("%s claims /dev/%s but is gone", de->d_name, link);
                        continue;       /* gone since; udev drops it from the list soon */
                }
                r = found_add(ret, other);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The devices that carry the tag's value: by udev's link and its list of claimants, else by a scan. */
static int find_tagged(const struct tag_kind *k, const char *value, struct found *ret) {
        char enc[NAME_MAX + 1];
        _cleanup_free_ char *path = NULL;
        dev_t devnum;
        int r;

        r = blkid_encode_string(value, enc, sizeof(enc)) == 0 && *enc ? by_udev(k, enc, &path, &devnum) : 0;
        if (r <= 0)
                return r < 0 ? r : by_scan(k, value, ret);
        r = found_add(ret, path);
        if (r < 0)
                return r;
        return udev_claimants(k, enc, devnum, ret);
}

/*
 * One device, or none: a tag that two devices carry is a volume and its
 * block copy, or a snapshot, and which one a first match picks depends on
 * the order devices came up in.  Attaching the copy by mistake brings up a
 * database with stale data, and so that is refused, never guessed.
 */
static int resolve_tag(const char *spec, const struct tag_kind *k, const char *value, char **ret_path,
                       struct kc_err *err) {
        _cleanup_(found_clear) struct found f = {};
        int r;

        r = find_tagged(k, value, &f);
        if (r < 0)
                return kc_err_set(err, r, "cannot look for a device with %s: %s", spec, strerror(-r));
        if (f.n == 0)
                return kc_err_set(err, -ENODEV, "no device with %s", spec);
        if (f.n > 1)
                return kc_err_set(err, -ENOTUNIQ, "%u devices carry %s (%s, %s%s): a block copy or a snapshot? "
                                  "name the device by its path, or give the copy a UUID of its own "
                                  "(cryptsetup luksUUID DEVICE --uuid NEW)",
                                  f.n, spec, f.path, f.other, f.n > 2 ? ", ..." : "");
        *ret_path = TAKE_PTR(f.path);
        return 0;
}

int kc_resolve_device(const char *spec, char **ret_path, struct kc_err *err) {
        char *path;

        if (!spec || !*spec)
                return kc_err_set(err, -EINVAL, "no device given");
        for (size_t i = 0; i < ARRAY_SIZE(tag_kinds); i++) {
                const struct tag_kind *k = &tag_kinds[i];
                const char *value = spec + strlen(k->tag);

                if (strncmp(spec, k->tag, strlen(k->tag)) != 0)
                        continue;
                if (!*value)
                        return kc_err_set(err, -EINVAL, "%s names no value", spec);
                return resolve_tag(spec, k, value, ret_path, err);
        }
        path = strdup(spec);
        if (!path)
                return -ENOMEM;
        *ret_path = path;
        return 0;
}
