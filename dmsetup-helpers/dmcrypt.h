/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * dmsetup-helpers: the only module that calls libdevmapper.
 *
 * Two halves:
 *  - a pure table builder: segment parameters + keyring reference +
 *    options -> the dm-crypt table line, every field validated;
 *  - thin wrappers over libdevmapper for create/remove/status/suspend/
 *    resume/message.  Every task that may carry key material is marked
 *    with dm_task_secure_data(); create and remove wait for udev through
 *    libdevmapper's cookie, so /dev/mapper/NAME exists (or is gone) when
 *    the call returns.
 *
 * Tables never carry a key: the key field is always ":<bytes>:logon:<desc>".
 * Every function returns 0 on success and a negative errno on failure;
 * ret_* outputs are written only on success.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/strv.h"

/* Optional dm-crypt features, as per-volume options (names as in the kernel table). */
enum {
        KC_CRYPT_ALLOW_DISCARDS        = 1u << 0, /* allow_discards */
        KC_CRYPT_SAME_CPU_CRYPT        = 1u << 1, /* same_cpu_crypt */
        KC_CRYPT_SUBMIT_FROM_CRYPT_CPUS = 1u << 2, /* submit_from_crypt_cpus */
        KC_CRYPT_NO_READ_WORKQUEUE     = 1u << 3, /* no_read_workqueue */
        KC_CRYPT_NO_WRITE_WORKQUEUE    = 1u << 4, /* no_write_workqueue */
        KC_CRYPT_IV_LARGE_SECTORS      = 1u << 5, /* iv_large_sectors (LUKS2 default for sector_size > 512) */
};

/* Default performance flags for a kmscrypt volume (documented in the man page). */
#define KC_CRYPT_DEFAULT_FLAGS (KC_CRYPT_NO_READ_WORKQUEUE | KC_CRYPT_NO_WRITE_WORKQUEUE)

struct kc_crypt_params {
        const char *cipher;          /* kernel cipher spec, e.g. "aes-xts-plain64" or "capi:xts(aes)-plain64" */
        size_t key_size;             /* key length in bytes; must fit the cipher (xts: 32 or 64 for aes) */
        const char *key_description; /* logon key description, "prefix:rest" */
        const char *device;          /* backing device: absolute path or "major:minor" */
        uint64_t iv_offset;          /* in 512-byte sectors */
        uint64_t offset;             /* data start on the device, in 512-byte sectors */
        uint64_t size;               /* mapping length in 512-byte sectors; > 0, multiple of sector_size/512 */
        uint32_t sector_size;        /* 512, 1024, 2048 or 4096 */
        unsigned flags;              /* KC_CRYPT_* */
};

/* A dm-crypt encryption sector size, as LUKS2 allows them too: a power of two from 512 to 4096. */
bool kc_crypt_sector_size_valid(uint64_t bytes);

/* Build the table parameters (everything after "0 <size> crypt "). Caller frees with free(). */
int kc_crypt_table_build(const struct kc_crypt_params *p, char **ret_params);

/* A table read back from the kernel: params point into buf. */
struct kc_crypt_table {
        struct kc_crypt_params p;
        char *buf;
};

/*
 * Parse table parameters as the kernel reports them (device as major:minor).
 * -EOPNOTSUPP when the table is valid dm-crypt but not of the kind kmscrypt
 * makes (key not a logon reference, options we never set), -EINVAL when
 * malformed.
 */
int kc_crypt_table_parse(const char *params, uint64_t size, struct kc_crypt_table *ret);
void kc_crypt_table_clear(struct kc_crypt_table *t);

/*
 * The device a dm-crypt table reads from (its fourth word, major:minor), of
 * any dm-crypt table: one whose key was wiped (zeros where the reference
 * was) or that kmscrypt did not make too.  -EINVAL when there is none.
 */
int kc_crypt_table_device(const char *params, dev_t *ret);

/* Parse "no_read_workqueue,allow_discards,..." (also accepts "none" and ""). -EINVAL names nothing secret. */
int kc_crypt_flags_parse(const char *list, unsigned *ret_flags);

/* Comma-separated names of flags, "" for none. Caller frees. */
int kc_crypt_flags_format(unsigned flags, char **ret_list);

/* dm UUID cryptsetup and systemd recognise: "CRYPT-LUKS2-<uuid without dashes>-<name>". Caller frees.
 * Like cryptsetup, a result longer than 128 characters is cut there (the name's tail goes). */
int kc_dm_uuid_luks2(const char *luks_uuid, const char *name, char **ret_uuid);

/* Whether name is usable as a dm name: 1..127 characters, no '/', not "." or "..",
 * no whitespace or control characters (which libdevmapper would mangle). */
bool kc_dm_name_is_valid(const char *name);

/* ---- device-mapper operations (need /dev/mapper/control and CAP_SYS_ADMIN) ---- */

struct kc_dm_info {
        bool exists;
        bool suspended;
        bool read_only;
        uint32_t open_count;
        bool deferred_remove;     /* marked for removal at its last close */
        uint32_t major, minor;
        uint64_t size;            /* 512-byte sectors */
        char uuid[130];           /* DM_UUID_LEN */
        char target_type[16];     /* first target, e.g. "crypt" */
};

/* Whether device-mapper is usable here (control node present, driver answers). */
bool kc_dm_available(void);

/*
 * The process-wide lock every function below holds (recursive).  Take it
 * across calls into another library that drives libdevmapper itself:
 * libcryptsetup's crypt_init*() and crypt_free() (see dm.c).
 */
void kc_dm_lock(void);
void kc_dm_unlock(void);

/*
 * Create and activate a single-target mapping: "0 <size> <target> <params>".
 * Marked secure (the kernel wipes its ioctl buffers), waits for udev.  On
 * failure nothing is left behind (a half-created device is removed).
 * -EEXIST if the name is in use.
 */
int kc_dm_create(const char *name, const char *uuid, const char *target, uint64_t size,
                 const char *params, bool read_only);

/*
 * kc_dm_create, with gate(userdata) run between the table load and the
 * resume, outside the dm lock: until it returns 0 the mapping has its
 * table but serves no I/O.  When it fails, the mapping is removed and its
 * error returned.  What the caller still has to prove (that a key is the
 * right one) can thus run beside the kernel's table load.
 */
int kc_dm_create_gated(const char *name, const char *uuid, const char *target, uint64_t size,
                       const char *params, bool read_only, int (*gate)(void *userdata), void *userdata);

/* Remove; deferred marks it for removal on last close. -ENXIO if absent, -EBUSY if open. */
int kc_dm_remove(const char *name, bool deferred);

/* Fill info; a missing device gives 0 with info->exists = false. */
int kc_dm_info(const char *name, struct kc_dm_info *ret_info);

/* Table of the first target without keys (dm_task_no_flush/no "showkeys"). Caller frees. */
int kc_dm_table(const char *name, char **ret_target, char **ret_params);

/*
 * 1 if name is a dm-crypt mapping whose key was wiped ("key wipe" message:
 * the table shows a hex key of zeros instead of a keyring reference), 0 if
 * not, negative errno on failure.  No key byte leaves libdm's buffer.
 */
int kc_dm_crypt_key_wiped(const char *name);

/*
 * Swap the table of an existing mapping: load "0 <size> <target> <params>"
 * as its inactive table (marked secure), then resume, which suspends (with
 * a flush, without freezing the file system above), swaps and resumes in
 * the kernel.  A refused table leaves the live one in place.
 */
int kc_dm_replace(const char *name, const char *target, uint64_t size, const char *params, bool read_only);

/* One target of a table: "<start> <length> <type> <params>", in 512-byte sectors. */
struct kc_dm_target {
        uint64_t start;
        uint64_t length;
        const char *type;
        const char *params;
};

/*
 * Every target of the live table, keys masked as kc_dm_table() does; free
 * with kc_dm_targets_free().  -ENODATA without a live table.
 */
int kc_dm_targets(const char *name, struct kc_dm_target **ret, size_t *ret_n);
void kc_dm_targets_free(struct kc_dm_target *targets, size_t n);

/* kc_dm_replace with a table of n targets (e.g. a LUKS2 volume half reencrypted: one crypt target per segment). */
int kc_dm_replace_targets(const char *name, const struct kc_dm_target *targets, size_t n, bool read_only);

/* Suspend name; a file system above is frozen first, so its dirty data reaches the device before I/O stops. */
int kc_dm_suspend(const char *name);
int kc_dm_resume(const char *name);

/*
 * Resume name on the table it has live, first dropping any inactive table:
 * what a reload killed between its suspend and its resume leaves.  The I/O
 * the suspension held goes on where it was headed.
 */
int kc_dm_resume_live(const char *name);

/* Send a target message, e.g. "key wipe". */
int kc_dm_message(const char *name, const char *message);

/*
 * Cancel a pending deferred removal of name (the kernel's
 * "@cancel_deferred_remove" message, what `dmsetup remove --cancel-deferred`
 * sends): 0 also when none was pending; -EBUSY when the removal has begun.
 */
int kc_dm_cancel_deferred_remove(const char *name);

/* Names of all mappings whose dm UUID starts with prefix (e.g. "CRYPT-LUKS2-"). NULL-terminated; free with kc_strv_free(). */
int kc_dm_list(const char *uuid_prefix, char ***ret_names);
