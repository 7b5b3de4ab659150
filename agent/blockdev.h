/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "lib/error.h"

/*
 * Block devices by name: a path, "MAJOR:MINOR", or a tag of what the device
 * holds (UUID=, LABEL=, PARTUUID=, PARTLABEL=), as crypttab and fstab name
 * them.  Through udev's /dev/disk links and sysfs; the only device this
 * module ever opens is one a scan for a tag probes, and never one that
 * could be suspended (kc_blockdev_probe_safe).
 */

/*
 * Resolve "UUID=...", "LABEL=...", "PARTUUID=...", "PARTLABEL=..." or a
 * path to a device path (caller frees).  A tag is looked up as udev links
 * it (/dev/disk/by-uuid/...); without such a link (no udev, as in an
 * initramfs, or the device not there) every block device the kernel lists
 * is probed, as libblkid's blkid_evaluate_tag() would, but for those
 * kc_blockdev_probe_safe() refuses and the parts of another device (held
 * by anything but a dm-crypt mapping: a multipath path, LVM's LV-real),
 * which udev's rules keep from a link too.  -ENODEV (err says so) when no device
 * carries the tag; -ENOTUNIQ when more than one does (udev's list of a
 * link's claimants, or the scan, says so): a volume and its block copy,
 * of which a first match would pick whichever came up first.
 */
int kc_resolve_device(const char *spec, char **ret_path, struct kc_err *err);

/*
 * Whether a scan may read the block device whose sysfs folder is sysdir
 * (/sys/class/block/NAME): not when it is empty (size 0: no medium, an
 * unbound loop device), and never when it is a device-mapper device that is
 * suspended or a dm-crypt mapping (dm UUID CRYPT-...).  A read of a
 * suspended device waits in the kernel, uninterruptibly, until it is
 * resumed, and a dm-crypt mapping may be suspended at any moment: by the
 * agent's revocation policy (revoke=suspend, which resumes it only once its
 * CMK is enabled again) or by cryptsetup luksSuspend.  A process caught so
 * ignores even SIGKILL.  No kmscrypt volume's header lies inside a dm-crypt
 * mapping's plaintext; one that did would be named by path.
 */
bool kc_blockdev_probe_safe(const char *sysdir);

/*
 * /dev path of the block device "MAJOR:MINOR", through sysfs (works without
 * udev's /dev/block links), in *ret_path (caller frees).  -ENODEV when there
 * is no such device.
 */
int kc_block_devnode(const char *majmin, char **ret_path);

/*
 * fn(holder, userdata) for each device that holds the block device dev (its
 * sysfs holders/: a device-mapper or md device built on it), holder being
 * the holder's kernel name (dm-3); stops at fn's first non-zero result and
 * returns it.  0 when fn returned 0 for all, or there are none; a negative
 * errno when the list cannot be read.
 */
int kc_block_holders(dev_t dev, int (*fn)(const char *holder, void *userdata), void *userdata);

/*
 * Whether the block device whose sysfs folder is sysdir is a device-mapper
 * device whose dm UUID starts with prefix ("CRYPT-": a dm-crypt mapping).
 */
bool kc_block_dm_uuid_has_prefix(const char *sysdir, const char *prefix);

/* Read a one-line sysfs attribute into buf, newline dropped; false if unreadable. */
bool kc_sysfs_line(const char *path, char *buf, size_t size);
