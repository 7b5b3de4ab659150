/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kc-dm-smoke: drives a dm-crypt mapping through project code only
 * (kernel-keyring/ and dmsetup-helpers/) for the vm tier's guest tests.
 *
 *   kc-dm-smoke create NAME DEVICE [SECTOR_SIZE]
 *       random 64-byte key in secret memory -> logon key "kmscrypt:<uuid>"
 *       in this thread's keyring -> aes-xts-plain64 table over all of
 *       DEVICE -> kc_dm_create -> unlink the key.  Prints key=value lines:
 *       description, dm_uuid, size, params.
 *   kc-dm-smoke remove NAME [deferred]
 *   kc-dm-smoke info NAME        key=value lines from kc_dm_info
 *   kc-dm-smoke table NAME       "TARGET PARAMS" from kc_dm_table
 *   kc-dm-smoke reload NAME      kc_dm_replace_targets with the live table
 *   kc-dm-smoke threads NAME HEADER COUNT
 *       what kmscryptd's attach threads do at once: one thread opens and
 *       closes the LUKS2 header HEADER COUNT times (libcryptsetup, which
 *       drives libdevmapper itself), another asks kc_dm_info about mapping
 *       NAME COUNT times.  Prints "dm_errors=N luks_errors=N"; fails when
 *       either is not 0.
 *
 * Exit status 0 on success, 1 with one line on stderr otherwise.
 * KCVM_DEBUG=1 turns on the libraries' debug log.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <unistd.h>

#include "agent/luks.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "kernel-keyring/keyring.h"
#include "lib/log.h"
#include "lib/macro.h"
#include "lib/secret.h"

#define KEY_BYTES 64 /* aes-xts-plain64 with AES-256 */

static int random_bytes(void *buf, size_t n) {
        for (size_t done = 0; done < n;) {
                ssize_t k = getrandom((uint8_t *) buf + done, n - done, 0);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                done += (size_t) k;
        }
        return 0;
}

/* A random version-4 UUID in 8-4-4-4-12 form: the stand-in for a LUKS UUID. */
static int random_uuid(char ret[static 37]) {
        uint8_t b[16];
        int r;

        r = random_bytes(b, sizeof(b));
        if (r < 0)
                return r;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        snprintf(ret, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                 b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
        return 0;
}

/* Size of a block device in 512-byte sectors. */
static int device_sectors(const char *path, uint64_t *ret) {
        _cleanup_close_ int fd = -1;
        uint64_t bytes;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        if (ioctl(fd, BLKGETSIZE64, &bytes) < 0)
                return negative_errno();
        *ret = bytes / 512;
        return 0;
}

/* Parse a decimal sector size; the table builder decides which are valid. */
static int parse_sector_size(const char *s, uint32_t *ret) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || v > UINT32_MAX)
                return -EINVAL;
        *ret = (uint32_t) v;
        return 0;
}

/*
 * The key lives in secret memory only, goes to the kernel as a logon key,
 * and its keyring link is dropped as soon as the table is loaded (or the
 * load failed): dm-crypt keeps its own copy.
 */
static int load_mapping(const char *name, const char *dm_uuid, const char *description,
                        const struct kc_crypt_params *p) {
        _cleanup_secret_ uint8_t *key = NULL;
        _cleanup_free_ char *params = NULL;
        kc_key_serial_t serial;
        int r, q;

        r = kc_crypt_table_build(p, &params);
        if (r < 0)
                return log_error_errno(r, "Failed to build the dm-crypt table: %m");

        key = kc_secret_alloc(KEY_BYTES);
        if (!key)
                return log_error_errno(negative_errno(), "Failed to allocate secret memory: %m");
        r = random_bytes(key, KEY_BYTES);
        if (r < 0)
                return log_error_errno(r, "Failed to generate a key: %m");

        r = kc_keyring_add_logon(description, key, KEY_BYTES, &serial);
        if (r < 0)
                return log_error_errno(r, "Failed to add logon key %s: %m", description);

        r = kc_dm_create(name, dm_uuid, "crypt", p->size, params, false);
        q = kc_keyring_unlink_thread(serial);
        if (r < 0)
                return log_error_errno(r, "Failed to create mapping %s: %m", name);
        if (q < 0)
                return log_error_errno(q, "Failed to unlink key %s after the table load: %m", description);
        /* The thread keyring would drop the key at exit anyway: check the unlink now. */
        q = kc_keyring_find_logon(description, &serial);
        if (q != -ENOKEY)
                return log_error_errno(q < 0 ? q : -EEXIST, "Key %s still reachable after the unlink: %m", description);

        printf("params=%s\n", params);
        return 0;
}

static int cmd_create(int argc, char **argv) {
        _cleanup_free_ char *description = NULL, *dm_uuid = NULL;
        const char *name = argv[1], *device = argv[2];
        struct kc_crypt_params p = {
                .cipher = "aes-xts-plain64",
                .key_size = KEY_BYTES,
                .device = device,
                .sector_size = 512,
                .flags = KC_CRYPT_DEFAULT_FLAGS,
        };
        char luks_uuid[37];
        int r;

        if (argc > 3 && parse_sector_size(argv[3], &p.sector_size) < 0)
                return log_error_errno(-EINVAL, "Invalid sector size '%s'.", argv[3]);
        if (p.sector_size > 512)
                p.flags |= KC_CRYPT_IV_LARGE_SECTORS;

        r = device_sectors(device, &p.size);
        if (r < 0)
                return log_error_errno(r, "Failed to get the size of %s: %m", device);
        r = random_uuid(luks_uuid);
        if (r < 0)
                return log_error_errno(r, "Failed to generate a UUID: %m");
        r = kc_keyring_volume_description(luks_uuid, &description);
        if (r < 0)
                return log_error_errno(r, "Failed to make a key description: %m");
        r = kc_dm_uuid_luks2(luks_uuid, name, &dm_uuid);
        if (r < 0)
                return log_error_errno(r, "Failed to make a dm UUID: %m");
        p.key_description = description;

        r = load_mapping(name, dm_uuid, description, &p);
        if (r < 0)
                return r;
        printf("description=%s\ndm_uuid=%s\nsize=%" PRIu64 "\n", description, dm_uuid, p.size);
        return 0;
}

static int cmd_remove(int argc, char **argv) {
        bool deferred = argc > 2 && streq(argv[2], "deferred");
        int r;

        if (argc > 2 && !deferred)
                return log_error_errno(-EINVAL, "Unknown remove option '%s'.", argv[2]);
        r = kc_dm_remove(argv[1], deferred);
        if (r < 0)
                return log_error_errno(r, "Failed to remove %s: %m", argv[1]);
        return 0;
}

static int cmd_info(int argc, char **argv) {
        struct kc_dm_info info;
        int r;

        r = kc_dm_info(argv[1], &info);
        if (r < 0)
                return log_error_errno(r, "Failed to get info of %s: %m", argv[1]);
        printf("exists=%d\n", info.exists);
        if (!info.exists)
                return 0;
        printf("suspended=%d\nread_only=%d\nopen_count=%" PRIu32 "\n"
               "major=%" PRIu32 "\nminor=%" PRIu32 "\nsize=%" PRIu64 "\nuuid=%s\ntarget=%s\n",
               info.suspended, info.read_only, info.open_count, info.major, info.minor,
               info.size, info.uuid, info.target_type);
        return 0;
}

static int cmd_table(int argc, char **argv) {
        _cleanup_free_ char *target = NULL, *params = NULL;
        int r;

        r = kc_dm_table(argv[1], &target, &params);
        if (r < 0)
                return log_error_errno(r, "Failed to get the table of %s: %m", argv[1]);
        printf("%s %s\n", target, params);
        return 0;
}

/* Swap NAME's live table for a copy of itself: the path of a reencryption's table swaps. */
static int cmd_reload(int argc, char **argv) {
        struct kc_dm_target *targets = NULL;
        struct kc_dm_info info;
        size_t n = 0;
        int r;

        r = kc_dm_info(argv[1], &info);
        if (r >= 0 && !info.exists)
                r = -ENXIO;
        if (r >= 0)
                r = kc_dm_targets(argv[1], &targets, &n);
        if (r >= 0)
                r = kc_dm_replace_targets(argv[1], targets, n, info.read_only);
        kc_dm_targets_free(targets, n);
        if (r < 0)
                return log_error_errno(r, "Failed to reload %s: %m", argv[1]);
        return 0;
}

struct luks_loop {
        const char *header;
        long count, errors;
};

static void *luks_open_close(void *arg) {
        struct luks_loop *l = arg;

        for (long i = 0; i < l->count; i++) {
                struct kc_luks *luks = NULL;

                if (kc_luks_open(l->header, NULL, &luks, NULL) < 0)
                        l->errors++;
                kc_luks_close(luks);
        }
        return NULL;
}

static int cmd_threads(int argc, char **argv) {
        struct luks_loop l = { .header = argv[2], .count = strtol(argv[3], NULL, 10) };
        struct kc_dm_info info;
        long dm_errors = 0;
        pthread_t t;
        int r;

        r = -pthread_create(&t, NULL, luks_open_close, &l);
        if (r < 0)
                return log_error_errno(r, "Failed to start a thread: %m");
        for (long i = 0; i < l.count; i++)
                if (kc_dm_info(argv[1], &info) < 0 || !info.exists)
                        dm_errors++;
        pthread_join(t, NULL);
        printf("dm_errors=%ld luks_errors=%ld\n", dm_errors, l.errors);
        return dm_errors || l.errors ? -EIO : 0;
}

/* Hold DEVICE open exclusively (O_EXCL: as a mounted file system does) until killed. */
static int cmd_hold(int argc, char **argv) {
        int fd = open(argv[1], O_RDONLY | O_EXCL | O_CLOEXEC);

        if (fd < 0)
                return log_error_errno(errno, "Failed to open %s exclusively: %m", argv[1]);
        printf("held\n");
        fflush(stdout);
        pause();
        return 0;
}

static const struct command {
        const char *name;
        int min_args, max_args; /* after the command word */
        int (*run)(int argc, char **argv);
} commands[] = {
        { .name = "create", .min_args = 2, .max_args = 3, .run = cmd_create },
        { .name = "remove", .min_args = 1, .max_args = 2, .run = cmd_remove },
        { .name = "info",   .min_args = 1, .max_args = 1, .run = cmd_info },
        { .name = "table",  .min_args = 1, .max_args = 1, .run = cmd_table },
        { .name = "reload", .min_args = 1, .max_args = 1, .run = cmd_reload },
        { .name = "threads", .min_args = 3, .max_args = 3, .run = cmd_threads },
        { .name = "hold",   .min_args = 1, .max_args = 1, .run = cmd_hold },
};

int main(int argc, char **argv) {
        kc_log_set_program("kc-dm-smoke");
        kc_log_set_sink(kc_log_sink_stderr, NULL);
        kc_log_set_max_priority(getenv("KCVM_DEBUG") ? LOG_DEBUG : LOG_INFO);

        for (size_t i = 0; argc > 1 && i < ARRAY_SIZE(commands); i++) {
                const struct command *c = &commands[i];
                if (!streq(argv[1], c->name))
                        continue;
                if (argc - 2 < c->min_args || argc - 2 > c->max_args)
                        break;
                return c->run(argc - 1, argv + 1) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        }
        fprintf(stderr, "usage: kc-dm-smoke create NAME DEVICE [SECTOR_SIZE] | remove NAME [deferred] | info NAME | table NAME\n"
              "       | reload NAME | threads NAME HEADER COUNT | hold DEVICE\n");
        return EXIT_FAILURE;
}
