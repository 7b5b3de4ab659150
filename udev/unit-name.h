/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * systemd's unit-name escaping (systemd.unit(5), "String Escaping"), for
 * the generator and the hotplug helper: keep [A-Za-z0-9:_.], turn '/' into
 * '-', every other byte (and a leading '.') into \xNN.  And udev's
 * escaping of /dev/disk/by-* names (blkid's "safe" form): blanks become
 * \x20.  Results are malloc()ed; 0 or -ENOMEM/-EINVAL.
 */

/* "pg-data" -> "pg\x2ddata" */
int kc_unit_name_escape(const char *s, char **ret);
/* "/dev/mapper/pg-data", ".device" -> "dev-mapper-pg\x2ddata.device"; path must be absolute. */
int kc_unit_name_from_path(const char *path, const char *suffix, char **ret);
/* A LABEL= or UUID= value as it appears under /dev/disk/by-label/ ("my disk" -> "my\x20disk"). */
int kc_udev_escape_tag(const char *s, char **ret);
