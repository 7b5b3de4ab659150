/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The libdevmapper half of dmsetup-helpers: the only code in kmscrypt that
 * calls libdevmapper.  libdm's 1/0 returns become negative errno here (the
 * ioctl's errno where libdm kept it), and libdm's own log goes to our debug
 * log so that it never writes to stderr by itself.
 *
 * Every task is marked dm_task_secure_data(): the kernel then wipes its
 * ioctl buffers, which matters for any task that may carry a table or a
 * "key set" message, and costs nothing for the others.
 *
 * udev: when udev runs, ioctls that emit a uevent (resume, remove) carry a
 * cookie with DM_UDEV_DISABLE_LIBRARY_FALLBACK and we wait on it, so
 * /dev/mapper/NAME exists (or is gone) on return and udev's database knows
 * the device.  Without udev (an initramfs, a container) libdm reports no
 * sync support; we then set no cookie and let libdm make the nodes itself.
 *
 * libdevmapper is not thread-safe (its queue of /dev/mapper node
 * operations, its control fd and its log function are process globals),
 * so every public function here holds one process-wide lock for its whole
 * run: callers such as kmscryptd's attach threads may call in from any
 * thread.  libcryptsetup drives libdevmapper too, behind our back: its
 * crypt_init() and crypt_free() count their users in an unlocked global,
 * the last crypt_free() calls dm_lib_release(), which closes the control
 * fd and flushes the node queue, and each first user swaps libdm's log
 * function for its own.  Code that calls libcryptsetup from more than one
 * thread holds the same lock across those calls (kc_dm_lock()), and we set
 * our log function again whenever we take it.
 */
#include <inttypes.h>
#include <libdevmapper.h>
#include <linux/dm-ioctl.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "dmsetup-helpers/dmcrypt.h"
#include "lib/fault.h"
#include "lib/log.h"

#define REMOVE_RETRIES 5
#define REMOVE_RETRY_DELAY_NS 100000000L /* 100 ms: long enough for udev's probe to close */

DEFINE_CLEANUP_FUNC(struct dm_task *, dm_task_destroy)
#define _cleanup_dm_task_ _cleanup_(dm_task_destroyp)

_printf_(5, 6)
static void dm_log_to_debug(int level, const char *file, int line, int dm_errno_or_class, const char *f, ...) {
        char buf[512];
        va_list ap;

        if (kc_log_get_max_priority() < LOG_DEBUG)
                return;
        va_start(ap, f);
        vsnprintf(buf, sizeof(buf), f, ap);
        va_end(ap);
        /* libdm's stack traces carry nothing a reader of our log needs. */
        if (strncmp(buf, "<backtrace>", 11) == 0)
                return;
        log_debug("libdevmapper[%d]: %s", level & 0xf, buf);
}

/* Recursive: a caller holding it across libcryptsetup may reach our own functions. */
static pthread_mutex_t dm_lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;

void kc_dm_lock(void) {
        pthread_mutex_lock(&dm_lock);
        /* libcryptsetup may have put its own, or libdm's stderr default, in place since. */
        dm_log_with_errno_init(dm_log_to_debug);
}

void kc_dm_unlock(void) {
        pthread_mutex_unlock(&dm_lock);
}

static void dm_unserialisep(bool *held) {
        if (*held)
                kc_dm_unlock();
}

/* First declaration of a public function: the lock is released last, after every task is destroyed. */
#define DM_SERIALISED _cleanup_(dm_unserialisep) _unused_ bool dm_serialised_ = (kc_dm_lock(), true)

/*
 * Whether the control node exists and the driver answers.  Checked before
 * libdm opens it, because libdm, run as root, would otherwise try to create
 * /dev/mapper/control on a kernel without device-mapper.
 */
static int dm_ready(void) {
        static bool ready;
        char control[256], version[64];
        struct stat st;

        if (ready)
                return 0;

        snprintf(control, sizeof(control), "%s/control", dm_dir());
        if (stat(control, &st) < 0)
                return log_debug_errno(errno == ENOENT ? -ENODEV : -errno, "No %s: %m", control);
        if (!S_ISCHR(st.st_mode))
                return log_debug_errno(-ENODEV, "%s is not a character device.", control);
        if (access(control, R_OK | W_OK) < 0)
                return log_debug_errno(-errno, "Cannot open %s: %m", control);

        /* A stale node left on a kernel without device-mapper fails here. */
        if (!dm_driver_version(version, sizeof(version)))
                return log_debug_errno(-ENODEV, "device-mapper driver does not answer.");
        log_debug("device-mapper driver %s, udev sync %s.", version,
                  dm_udev_get_sync_support() ? "on" : "off");
        ready = true;
        return 0;
}

bool kc_dm_available(void) {
        DM_SERIALISED;
        return dm_ready() >= 0;
}

/* libdm's failure as a negative errno: the ioctl's errno, or -EIO when no ioctl ran. */
static int task_errno(struct dm_task *dmt) {
        int e = dm_task_get_errno(dmt);
        return e > 0 ? -e : -EIO;
}

static int task_new(int type, const char *name, struct dm_task **ret) {
        _cleanup_dm_task_ struct dm_task *dmt = NULL;

        dmt = dm_task_create(type);
        if (!dmt)
                return -ENOMEM;
        if (name && !dm_task_set_name(dmt, name))
                return -EINVAL;
        if (!dm_task_secure_data(dmt))
                return -EIO;
        *ret = TAKE_PTR(dmt);
        return 0;
}

static int task_run(struct dm_task *dmt, const char *what, const char *name) {
        if (dm_task_run(dmt))
                return 0;
        return log_debug_errno(task_errno(dmt), "device-mapper %s of %s failed: %m", what, name);
}

/*
 * Run a task that emits a uevent (resume, remove) and wait for udev to have
 * handled it.  libdm completes the cookie itself when the ioctl fails, so
 * the wait always returns and releases the cookie's semaphore.
 */
static int task_run_synced(struct dm_task *dmt, const char *what, const char *name) {
        bool udev = dm_udev_get_sync_support();
        uint32_t cookie = 0;
        int r;

        if (udev && !dm_task_set_cookie(dmt, &cookie, DM_UDEV_DISABLE_LIBRARY_FALLBACK))
                return -EIO;
        r = task_run(dmt, what, name);
        if (!udev)
                dm_task_update_nodes(); /* libdm makes or removes /dev/mapper/NAME itself */
        else if (!dm_udev_wait(cookie))
                log_debug("Waiting for udev on %s failed.", name);
        return r;
}

/* dm UUIDs: 1..128 printable ASCII characters without spaces (as libdm takes them unmangled). */
static int check_uuid(const char *uuid) {
        size_t n = uuid ? strlen(uuid) : 0;

        if (n == 0 || n >= DM_UUID_LEN)
                return log_debug_errno(-EINVAL, "dm UUID length %zu out of range.", n);
        for (size_t i = 0; i < n; i++)
                if (uuid[i] <= ' ' || uuid[i] >= 0x7f)
                        return log_debug_errno(-EINVAL, "dm UUID has an invalid character.");
        return 0;
}

/* The prologue of every operation: a valid name (or none), and device-mapper present. */
static int dm_prepare(const char *name) {
        if (name && !kc_dm_name_is_valid(name))
                return log_debug_errno(-EINVAL, "Invalid device-mapper name.");
        return dm_ready();
}

/* Run a read-only query; no_flush keeps it from waiting on the device's I/O. */
static int dm_query(int type, const char *name, const char *what, struct dm_task **ret) {
        _cleanup_dm_task_ struct dm_task *dmt = NULL;
        int r;

        r = task_new(type, name, &dmt);
        if (r < 0)
                return r;
        if (!dm_task_no_flush(dmt))
                return -EIO;
        r = task_run(dmt, what, name ?: "all devices");
        if (r < 0)
                return r;
        *ret = TAKE_PTR(dmt);
        return 0;
}

static int dm_remove_once(const char *name, bool deferred) {
        _cleanup_dm_task_ struct dm_task *dmt = NULL;
        int r;

        r = task_new(DM_DEVICE_REMOVE, name, &dmt);
        if (r < 0)
                return r;
        if (deferred && !dm_task_deferred_remove(dmt))
                return -EIO;
        return task_run_synced(dmt, "remove", name);
}

/*
 * udev's own probe opens a new device for a moment, so EBUSY right after a
 * create is often transient: retry a few times briefly, as cryptsetup does.
 * We retry ourselves instead of dm_task_retry_remove(), whose 25 tries of
 * 200 ms would make a genuinely open device take 5 s to report EBUSY.
 */
static int dm_remove_retrying(const char *name, bool deferred) {
        const struct timespec delay = { .tv_nsec = REMOVE_RETRY_DELAY_NS };
        int r;

        for (unsigned attempt = 1;; attempt++) {
                r = dm_remove_once(name, deferred);
                if (r != -EBUSY || attempt >= REMOVE_RETRIES)
                        return r;
                log_debug("%s busy, retrying remove (%u/%u).", name, attempt, REMOVE_RETRIES);
                nanosleep(&delay, NULL);
        }
}

int kc_dm_remove(const char *name, bool deferred) {
        DM_SERIALISED;
        int r;

        if (!name)
                return -EINVAL;
        r = dm_prepare(name);
        if (r < 0)
                return r;
        return dm_remove_retrying(name, deferred);
}

static int dm_create_empty(const char *name, const char *uuid) {
        _cleanup_dm_task_ struct dm_task *dmt = NULL;
        int r;

        r = task_new(DM_DEVICE_CREATE, name, &dmt);
        if (r < 0)
                return r;
        if (uuid && !dm_task_set_uuid(dmt, uuid))
                return -EINVAL;
        r = task_run(dmt, "create", name);
        /* The kernel answers EBUSY when the name or UUID is taken. */
        return r == -EBUSY ? -EEXIST : r;
}

static int dm_load_targets(const char *name, const struct kc_dm_target *t, size_t n, bool read_only) {
        _cleanup_dm_task_ struct dm_task *dmt = NULL;
        int r;

        r = task_new(DM_DEVICE_RELOAD, name, &dmt);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (!dm_task_add_target(dmt, t[i].start, t[i].length, t[i].type, t[i].params))
                        return -ENOMEM;
        if (read_only && !dm_task_set_ro(dmt))
                return -EIO;
        return task_run(dmt, "table load", name);
}

static int dm_load(const char *name, const char *target, uint64_t size, const char *params, bool read_only) {
        const struct kc_dm_target t = { .length = size, .type = target, .params = params };

        return dm_load_targets(name, &t, 1, read_only);
}

/*
 * Every resume here either wakes a suspended device or swaps in a table
 * that maps the same data (or fails I/O on purpose, below any file
 * system): the kernel's suspend for that swap need not freeze the file
 * system above, as cryptsetup's reload of a live volume does not either.
 * Freezing would first write back all its dirty data, stalling a busy
 * database for that long, and fails on a file system that cannot freeze.
 * The suspend still waits for the I/O in flight (no noflush).
 */
static int dm_resume_synced(const char *name) {
        _cleanup_dm_task_ struct dm_task *dmt = NULL;
        int r;

        r = task_new(DM_DEVICE_RESUME, name, &dmt);
        if (r < 0)
                return r;
        if (!dm_task_skip_lockfs(dmt))
                return -EIO;
        return task_run_synced(dmt, "resume", name);
}

/* Drop the inactive table, and with it a dm-crypt table's copy of its key. */
static int dm_clear(const char *name) {
        _cleanup_dm_task_ struct dm_task *dmt = NULL;
        int r;

        r = task_new(DM_DEVICE_CLEAR, name, &dmt);
        if (r < 0)
                return r;
        return task_run(dmt, "clear", name);
}

static void dm_undo_create(const char *name) {
        int r = dm_remove_retrying(name, false);

        if (r >= 0 || r == -ENXIO)
                return;
        log_debug_errno(r, "Failed to remove half-created %s: %m", name);
        /* Still open by someone: at least its inactive table goes, and dm-crypt's copy of the key with it. */
        r = dm_clear(name);
        if (r < 0)
                log_debug_errno(r, "Failed to clear the inactive table of %s: %m", name);
}

/*
 * Create, load and resume as three steps rather than one CREATE with a
 * table: each step keeps its own errno (ENOKEY from a missing logon key,
 * EINVAL from a table the kernel refuses), and we decide the cleanup.
 * This is the first two; on failure nothing is left.
 */
static int dm_create_loaded(const char *name, const char *uuid, const char *target, uint64_t size,
                            const char *params, bool read_only) {
        DM_SERIALISED;
        int r;

        if (!name || !target || !*target || strlen(target) >= DM_MAX_TYPE_NAME || !params || size == 0)
                return log_debug_errno(-EINVAL, "Invalid mapping arguments.");
        if (uuid) {
                r = check_uuid(uuid);
                if (r < 0)
                        return r;
        }
        r = dm_prepare(name);
        if (r < 0)
                return r;

        r = dm_create_empty(name, uuid);
        if (r < 0)
                return r;
        kc_fault_point("dm-create:after-create");
        r = dm_load(name, target, size, params, read_only);
        if (r < 0) {
                dm_undo_create(name);
                return r;
        }
        kc_fault_point("dm-create:after-table-load");
        return 0;
}

/* The third step when verdict is 0; else, and when the resume fails, the mapping goes. */
static int dm_resume_created(const char *name, int verdict) {
        DM_SERIALISED;
        int r = verdict;

        if (r >= 0)
                r = dm_resume_synced(name);
        if (r < 0)
                dm_undo_create(name);
        return r;
}

int kc_dm_create_gated(const char *name, const char *uuid, const char *target, uint64_t size,
                       const char *params, bool read_only, int (*gate)(void *userdata), void *userdata) {
        int r;

        r = dm_create_loaded(name, uuid, target, size, params, read_only);
        if (r < 0)
                return r;
        return dm_resume_created(name, gate ? gate(userdata) : 0);
}

int kc_dm_create(const char *name, const char *uuid, const char *target, uint64_t size,
                 const char *params, bool read_only) {
        return kc_dm_create_gated(name, uuid, target, size, params, read_only, NULL, NULL);
}

/*
 * Load targets as name's inactive table and make it live.  If the resume
 * fails, the inactive table would stay loaded, unused, holding its key in
 * kernel memory until the device goes: it is cleared.
 */
static int dm_reload(const char *name, const struct kc_dm_target *targets, size_t n, bool read_only) {
        int r, q;

        r = dm_prepare(name);
        if (r < 0)
                return r;
        r = dm_load_targets(name, targets, n, read_only);
        if (r < 0)
                return r;
        r = dm_resume_synced(name);
        if (r < 0 && (q = dm_clear(name)) < 0)
                log_debug_errno(q, "Failed to clear the inactive table of %s: %m", name);
        return r;
}

int kc_dm_replace(const char *name, const char *target, uint64_t size, const char *params, bool read_only) {
        DM_SERIALISED;
        const struct kc_dm_target t = { .length = size, .type = target, .params = params };

        if (!name || !target || !*target || strlen(target) >= DM_MAX_TYPE_NAME || !params || size == 0)
                return log_debug_errno(-EINVAL, "Invalid mapping arguments.");
        return dm_reload(name, &t, 1, read_only);
}

int kc_dm_replace_targets(const char *name, const struct kc_dm_target *targets, size_t n, bool read_only) {
        DM_SERIALISED;
        uint64_t next = 0;

        if (!name || !targets || n == 0)
                return log_debug_errno(-EINVAL, "Invalid mapping arguments.");
        /* Contiguous from sector 0, as the kernel wants them. */
        for (size_t i = 0; i < n; i++) {
                if (!targets[i].type || !*targets[i].type || strlen(targets[i].type) >= DM_MAX_TYPE_NAME ||
                    !targets[i].params || targets[i].length == 0 || targets[i].start != next)
                        return log_debug_errno(-EINVAL, "Invalid target %zu of the table.", i);
                next += targets[i].length;
        }
        return dm_reload(name, targets, n, read_only);
}

int kc_dm_info(const char *name, struct kc_dm_info *ret_info) {
        DM_SERIALISED;
        _cleanup_dm_task_ struct dm_task *dmt = NULL;
        struct kc_dm_info info = {};
        struct dm_info dmi;
        uint64_t start, length;
        char *type, *params;
        void *next = NULL;
        int r;

        if (!name || !ret_info)
                return -EINVAL;
        r = dm_prepare(name);
        if (r < 0)
                return r;
        /* STATUS, not INFO, to learn the target too. */
        r = dm_query(DM_DEVICE_STATUS, name, "status", &dmt);
        if (r < 0)
                return r;
        if (!dm_task_get_info(dmt, &dmi))
                return -EIO;

        if (dmi.exists) {
                info.exists = true;
                info.suspended = dmi.suspended;
                info.read_only = dmi.read_only;
                info.open_count = dmi.open_count > 0 ? (uint32_t) dmi.open_count : 0;
                info.deferred_remove = dmi.deferred_remove;
                info.major = dmi.major;
                info.minor = dmi.minor;
                snprintf(info.uuid, sizeof(info.uuid), "%s", dm_task_get_uuid(dmt) ?: "");
                do {
                        next = dm_get_next_target(dmt, next, &start, &length, &type, &params);
                        if (!type)
                                break;
                        if (info.target_type[0] == '\0')
                                snprintf(info.target_type, sizeof(info.target_type), "%s", type);
                        info.size = start + length;
                } while (next);
        }
        *ret_info = info;
        return 0;
}

/*
 * Copy of a target's parameters with any hex key replaced by zeros, as
 * dmsetup does without --showkeys.  Only dm-crypt puts a key in its table
 * (second word); a keyring reference (":<n>:logon:...") or "-" is no key.
 * The key is masked while copying, so no buffer of ours ever holds it.
 */
static char *params_without_key(const char *target, const char *params) {
        size_t n = strlen(params), key_start = n, key_end = n;
        const char *space = strchr(params, ' ');
        char *copy;

        if (streq(target, "crypt") && space && space[1] != ':' && space[1] != '-') {
                key_start = space + 1 - params;
                key_end = key_start + strcspn(space + 1, " ");
        }
        copy = malloc(n + 1);
        if (!copy)
                return NULL;
        for (size_t i = 0; i <= n; i++)
                copy[i] = i >= key_start && i < key_end ? '0' : params[i];
        return copy;
}

/* The live table of name, in a task to walk with dm_get_next_target(). */
static int table_query(const char *name, struct dm_task **ret_dmt) {
        int r;

        r = dm_prepare(name);
        if (r < 0)
                return r;
        return dm_query(DM_DEVICE_TABLE, name, "table query", ret_dmt);
}

/* The live table's first target, in libdm's buffer (dmt owns it). -ENODATA without a live table. */
static int first_target(const char *name, struct dm_task **ret_dmt, char **ret_type, char **ret_params) {
        _cleanup_dm_task_ struct dm_task *dmt = NULL;
        uint64_t start, length;
        char *type = NULL, *params = NULL;
        int r;

        r = table_query(name, &dmt);
        if (r < 0)
                return r;
        (void) dm_get_next_target(dmt, NULL, &start, &length, &type, &params);
        if (!type || !params)
                return log_debug_errno(-ENODATA, "%s has no live table.", name);
        *ret_dmt = TAKE_PTR(dmt);
        *ret_type = type;
        *ret_params = params;
        return 0;
}

int kc_dm_table(const char *name, char **ret_target, char **ret_params) {
        DM_SERIALISED;
        _cleanup_dm_task_ struct dm_task *dmt = NULL;
        _cleanup_free_ char *t = NULL, *p = NULL;
        char *type, *params;
        int r;

        if (!name || !ret_target || !ret_params)
                return -EINVAL;
        r = first_target(name, &dmt, &type, &params);
        if (r < 0)
                return r;

        /* libdm's buffer is wiped by dm_task_destroy(); ours never holds a hex key. */
        t = strdup(type);
        p = params_without_key(type, params);
        if (!t || !p)
                return -ENOMEM;
        *ret_target = TAKE_PTR(t);
        *ret_params = TAKE_PTR(p);
        return 0;
}

int kc_dm_targets(const char *name, struct kc_dm_target **ret, size_t *ret_n) {
        DM_SERIALISED;
        _cleanup_dm_task_ struct dm_task *dmt = NULL;
        struct kc_dm_target *t = NULL, *bigger;
        uint64_t start, length;
        char *type, *params;
        void *next = NULL;
        size_t n = 0;
        int r;

        if (!name || !ret || !ret_n)
                return -EINVAL;
        r = table_query(name, &dmt);
        if (r < 0)
                return r;
        do {
                next = dm_get_next_target(dmt, next, &start, &length, &type, &params);
                if (!type || !params)
                        break;
                bigger = realloc(t, (n + 1) * sizeof(*t));
                if (!bigger) {
                        kc_dm_targets_free(t, n);
                        return -ENOMEM;
                }
                t = bigger;
                t[n] = (struct kc_dm_target) { .start = start, .length = length, .type = strdup(type),
                                               .params = params_without_key(type, params) };
                n++;
                if (!t[n - 1].type || !t[n - 1].params) {
                        kc_dm_targets_free(t, n);
                        return -ENOMEM;
                }
        } while (next);
        if (n == 0)
                return log_debug_errno(-ENODATA, "%s has no live table.", name);
        *ret = t;
        *ret_n = n;
        return 0;
}

void kc_dm_targets_free(struct kc_dm_target *targets, size_t n) {
        for (size_t i = 0; targets && i < n; i++) {
                free((char *) targets[i].type);
                free((char *) targets[i].params);
        }
        free(targets);
}

/*
 * After "key wipe" dm-crypt reports its key as hex zeros (it drops the
 * keyring reference and zeroes the key).  The table is looked at in libdm's
 * buffer, which dm_task_destroy() wipes, and nothing of it is copied: all
 * that leaves is whether every digit is '0'.
 */
int kc_dm_crypt_key_wiped(const char *name) {
        DM_SERIALISED;
        _cleanup_dm_task_ struct dm_task *dmt = NULL;
        char *type, *params;
        const char *key;
        size_t n;
        int r;

        if (!name)
                return -EINVAL;
        r = first_target(name, &dmt, &type, &params);
        if (r == -ENODATA)
                return 0;
        if (r < 0)
                return r;
        if (!streq(type, "crypt") || !(key = strchr(params, ' ')))
                return 0;
        key++;
        n = strcspn(key, " ");
        return n > 0 && n % 2 == 0 && strspn(key, "0") >= n;
}

int kc_dm_suspend(const char *name) {
        DM_SERIALISED;
        _cleanup_dm_task_ struct dm_task *dmt = NULL;
        int r;

        if (!name)
                return -EINVAL;
        r = dm_prepare(name);
        if (r < 0)
                return r;
        r = task_new(DM_DEVICE_SUSPEND, name, &dmt);
        if (r < 0)
                return r;
        return task_run(dmt, "suspend", name);
}

int kc_dm_resume(const char *name) {
        DM_SERIALISED;
        int r;

        if (!name)
                return -EINVAL;
        r = dm_prepare(name);
        if (r < 0)
                return r;
        return dm_resume_synced(name);
}

int kc_dm_resume_live(const char *name) {
        DM_SERIALISED;
        int r;

        if (!name)
                return -EINVAL;
        r = dm_prepare(name);
        if (r >= 0)
                r = dm_clear(name);
        if (r >= 0)
                r = dm_resume_synced(name);
        return r;
}

int kc_dm_message(const char *name, const char *message) {
        DM_SERIALISED;
        _cleanup_dm_task_ struct dm_task *dmt = NULL;
        int r;

        if (!name || !message || !*message)
                return -EINVAL;
        r = dm_prepare(name);
        if (r < 0)
                return r;

        r = task_new(DM_DEVICE_TARGET_MSG, name, &dmt);
        if (r < 0)
                return r;
        if (!dm_task_set_sector(dmt, 0) || !dm_task_set_message(dmt, message))
                return -ENOMEM;
        /* The message is not logged: "key set" would carry key material. */
        return task_run(dmt, "message", name);
}

int kc_dm_cancel_deferred_remove(const char *name) {
        DM_SERIALISED;
        /* Handled by dm-ioctl itself before any target sees it, so any mapping takes it. */
        int r = kc_dm_message(name, "@cancel_deferred_remove");

        /* Without udev, libdm removed /dev/mapper/NAME when the removal was deferred, though the
         * mapping stayed: the mapping kept, its node comes back. */
        if (r >= 0 && !dm_udev_get_sync_support() && !dm_mknodes(name))
                log_debug("Cannot make the node of %s again.", name);
        return r;
}

/* dm UUID of name; 0 with *ret_uuid = NULL when it vanished in the meantime. */
static int dm_uuid_of(const char *name, char **ret_uuid) {
        _cleanup_dm_task_ struct dm_task *dmt = NULL;
        struct dm_info dmi;
        char *uuid = NULL;
        int r;

        r = dm_query(DM_DEVICE_INFO, name, "info", &dmt);
        if (r < 0)
                return r;
        if (!dm_task_get_info(dmt, &dmi))
                return -EIO;
        if (dmi.exists) {
                uuid = strdup(dm_task_get_uuid(dmt) ?: "");
                if (!uuid)
                        return -ENOMEM;
        }
        *ret_uuid = uuid;
        return 0;
}

int kc_dm_list(const char *uuid_prefix, char ***ret_names) {
        DM_SERIALISED;
        _cleanup_dm_task_ struct dm_task *dmt = NULL;
        _cleanup_strv_ char **names = NULL;
        struct dm_names *n;
        unsigned next = 0;
        int r;

        if (!uuid_prefix || !ret_names)
                return -EINVAL;
        r = dm_prepare(NULL);
        if (r < 0)
                return r;
        r = dm_query(DM_DEVICE_LIST, NULL, "list", &dmt);
        if (r < 0)
                return r;

        /* An empty vector, not NULL, when nothing matches. */
        names = calloc(1, sizeof(char *));
        if (!names)
                return -ENOMEM;

        n = dm_task_get_names(dmt);
        if (n && n->dev)
                do {
                        _cleanup_free_ char *uuid = NULL;

                        n = (struct dm_names *) ((char *) n + next);
                        next = n->next;
                        r = dm_uuid_of(n->name, &uuid);
                        if (r < 0)
                                return r;
                        if (uuid && strncmp(uuid, uuid_prefix, strlen(uuid_prefix)) == 0) {
                                r = kc_strv_push(&names, n->name);
                                if (r < 0)
                                        return r;
                        }
                } while (next);

        *ret_names = TAKE_PTR(names);
        return 0;
}
