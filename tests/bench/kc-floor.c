/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kc-floor: the in-process side of tests/bench/attach-bench.sh (run in the
 * vm tier's guest by tests/vm/guest/volume-bench.sh).  Every figure is in
 * microseconds of CLOCK_MONOTONIC, one per line, "WHAT <us>".
 *
 *   kc-floor time [-i FILE] CMD ARG... [-- CMD ARG...]...
 *       run the commands one after another (stdin from FILE) and print
 *       "time <us>" for all of them: a process's whole cost, start-up
 *       included, without a shell's.
 *   kc-floor attach PREFIX DEVICE...
 *       kc_attach of each DEVICE as PREFIX<i> with one KMS opened once from
 *       the KMSCRYPT_* environment, as the agent runs it ("attach <us>"),
 *       then kc_detach ("detach <us>"); tests/vm/guest/aws-bench.sh.
 *   kc-floor pair PREFIX OFFSET SECTOR_SIZE DEVICE...
 *       the agent's path against the in-process floor, volume by volume,
 *       in the order kc_attach, floor, floor, kc_attach, ... so that a
 *       drift of the emulator hits both alike:
 *       - kc_attach of DEVICE as PREFIX<i> with one KMS opened once from
 *         the KMSCRYPT_* environment, as the agent runs it ("attach <us>"),
 *         then kc_detach ("detach <us>");
 *       - the floor: a random 64-byte logon key (kernel-keyring/) and the
 *         dm-crypt mapping PREFIX<i>f on DEVICE that refers to it
 *         (dmsetup-helpers/), key dropped ("create <us>"), then the mapping
 *         removed ("remove <us>").
 *   kc-floor profile PREFIX DEVICE...
 *       the steps of kc_attach timed apiece, per device: "peek" (the direct
 *       read of the primary header, segment and token), "header"
 *       (libcryptsetup's load, which kc_attach runs beside the rest),
 *       "token", "unwrap", "verify", "keymap" (key, mapping, key dropped),
 *       then the mapping is removed.
 *
 * Exit status 0, or 1 with one line on stderr.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/attach.h"
#include "agent/caller.h"
#include "agent/config.h"
#include "agent/luks.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "kernel-keyring/keyring.h"
#include "lib/log.h"
#include "lib/macro.h"
#include "lib/secret.h"

#define KEY_BYTES 64

static uint64_t now_us(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static int fail(const char *what, int r) {
        fprintf(stderr, "kc-floor: %s: %s\n", what, strerror(r < 0 ? -r : r));
        return 1;
}

/* ---- time ---- */

static int run_one(char **argv, int in_fd) {
        int status;
        pid_t pid = fork();

        if (pid < 0)
                return negative_errno();
        if (pid == 0) {
                if (in_fd >= 0 && (lseek(in_fd, 0, SEEK_SET) < 0 || dup2(in_fd, STDIN_FILENO) < 0))
                        _exit(127);
                execvp(argv[0], argv);
                _exit(127);
        }
        if (waitpid(pid, &status, 0) < 0)
                return negative_errno();
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -ECHILD;
}

static int cmd_time(int argc, char **argv) {
        _cleanup_close_ int in_fd = -1;
        uint64_t t0;
        int i = 0, r;

        if (argc >= 2 && streq(argv[0], "-i")) {
                in_fd = open(argv[1], O_RDONLY | O_CLOEXEC);
                if (in_fd < 0)
                        return fail(argv[1], errno);
                i = 2;
        }
        if (i >= argc)
                return fail("time: no command", EINVAL);
        t0 = now_us();
        while (i < argc) {
                int j = i;

                while (j < argc && !streq(argv[j], "--"))
                        j++;
                if (j < argc)
                        argv[j] = NULL;
                r = run_one(argv + i, in_fd);
                if (r < 0)
                        return fail(argv[i], r);
                i = j + 1;
        }
        printf("time %" PRIu64 "\n", now_us() - t0);
        return 0;
}

/* ---- floor ---- */

static int device_sectors(const char *path, uint64_t *ret) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        uint64_t bytes;

        if (fd < 0 || ioctl(fd, BLKGETSIZE64, &bytes) < 0)
                return negative_errno();
        *ret = bytes / 512;
        return 0;
}

static int floor_create(const char *name, const char *device, uint64_t offset, uint32_t sector_size) {
        _cleanup_free_ char *desc = NULL, *params = NULL, *dm_uuid = NULL;
        _cleanup_secret_ void *key = kc_secret_alloc(KEY_BYTES);
        kc_key_serial_t serial;
        uint64_t sectors, t0;
        char uuid[40];
        int r;

        if (!key)
                return -ENOMEM;
        if (getrandom(key, KEY_BYTES, 0) != KEY_BYTES)
                return -EIO;
        r = device_sectors(device, &sectors);
        if (r < 0)
                return r;
        if (sectors <= offset)
                return -ENOSPC;
        snprintf(uuid, sizeof(uuid), "00000000-0000-4000-8000-%012x", (unsigned) (now_us() & 0xffffffffffu));
        r = kc_keyring_volume_description(uuid, &desc);
        if (r < 0)
                return r;
        struct kc_crypt_params cp = {
                .cipher = "aes-xts-plain64",
                .key_size = KEY_BYTES,
                .key_description = desc,
                .device = device,
                .offset = offset,
                .size = (sectors - offset) / (sector_size / 512) * (sector_size / 512),
                .sector_size = sector_size,
                .flags = KC_CRYPT_DEFAULT_FLAGS,
        };
        r = kc_crypt_table_build(&cp, &params);
        if (r >= 0)
                r = kc_dm_uuid_luks2(uuid, name, &dm_uuid);
        if (r < 0)
                return r;

        t0 = now_us();
        r = kc_keyring_add_logon(desc, key, KEY_BYTES, &serial);
        if (r < 0)
                return r;
        r = kc_dm_create(name, dm_uuid, "crypt", cp.size, params, false);
        (void) kc_keyring_drop(serial);
        if (r < 0)
                return r;
        printf("create %" PRIu64 "\n", now_us() - t0);
        return 0;
}

static int floor_remove(const char *name) {
        uint64_t t0 = now_us();
        int r = kc_dm_remove(name, false);

        if (r < 0)
                return r;
        printf("remove %" PRIu64 "\n", now_us() - t0);
        return 0;
}

/* ---- attach and profile: one KMS, as the agent holds it ---- */

struct bench_kms {
        struct kc_config config;
        struct kc_kms *kms;
        struct kc_caller caller;
        struct kc_kms_request req;
};

static int bench_kms_open(struct bench_kms *b) {
        struct kc_config_overrides none = {};
        struct kc_kms_config kcfg;
        struct kc_err err = {};
        int r;

        r = kc_config_load(&none, &b->config, &err);
        if (r < 0) {
                fprintf(stderr, "kc-floor: %s\n", kc_err_msg(&err, r));
                return r;
        }
        kc_config_kms(&b->config, &kcfg);
        r = kc_kms_open(&kcfg, &b->kms, &err);
        if (r < 0) {
                fprintf(stderr, "kc-floor: cannot open the KMS: %s\n", kc_err_msg(&err, r));
                kc_config_done(&b->config);
                return r;
        }
        (void) kc_caller_self(&b->caller);
        b->req = (struct kc_kms_request) { .caller = &b->caller };
        return 0;
}

static void bench_kms_close(struct bench_kms *b) {
        kc_kms_close(b->kms);
        kc_config_done(&b->config);
}

static int attach_detach(struct bench_kms *b, const char *name, const char *device) {
        struct kc_attach_params p = { .device = device, .name = name, .flags = KC_CRYPT_DEFAULT_FLAGS };
        struct kc_attach_result res;
        struct kc_err err = {};
        uint64_t t0;
        int r;

        t0 = now_us();
        r = kc_attach(b->kms, &b->req, &p, &res, &err);
        if (r < 0) {
                fprintf(stderr, "kc-floor: attach %s: %s\n", device, kc_err_msg(&err, r));
                return r;
        }
        printf("attach %" PRIu64 "\n", now_us() - t0);
        t0 = now_us();
        r = kc_detach(name, false, &err);
        if (r < 0) {
                fprintf(stderr, "kc-floor: detach %s: %s\n", name, kc_err_msg(&err, r));
                return r;
        }
        printf("detach %" PRIu64 "\n", now_us() - t0);
        return 0;
}

static int floor_create_remove(const char *name, const char *device, uint64_t offset, uint32_t sector_size) {
        int r = floor_create(name, device, offset, sector_size);

        if (r >= 0)
                r = floor_remove(name);
        if (r < 0)
                fail(name, r);
        return r;
}

static int cmd_pair(int argc, char **argv) {
        struct bench_kms b;
        uint64_t offset;
        uint32_t sector_size;
        char name[128], fname[130];
        int r = 0;

        if (argc < 4)
                return fail("pair: PREFIX OFFSET SECTOR_SIZE DEVICE...", EINVAL);
        offset = strtoull(argv[1], NULL, 10);
        sector_size = (uint32_t) strtoul(argv[2], NULL, 10);
        if (bench_kms_open(&b) < 0)
                return 1;
        for (int i = 3; i < argc && r >= 0; i++) {
                snprintf(name, sizeof(name), "%s%d", argv[0], i - 3);
                snprintf(fname, sizeof(fname), "%sf", name);
                if ((i - 3) % 2 == 0) {
                        r = attach_detach(&b, name, argv[i]);
                        if (r >= 0)
                                r = floor_create_remove(fname, argv[i], offset, sector_size);
                } else {
                        r = floor_create_remove(fname, argv[i], offset, sector_size);
                        if (r >= 0)
                                r = attach_detach(&b, name, argv[i]);
                }
        }
        bench_kms_close(&b);
        return r < 0 ? 1 : 0;
}

/* The steps of kc_attach, each timed; mirrors agent/attach.c for the profile only. */
static int profile_one(struct bench_kms *b, const char *name, const char *device) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        _cleanup_secret_ void *key = NULL;
        _cleanup_free_ char *ref = NULL, *desc = NULL, *params = NULL, *dm_uuid = NULL;
        struct kc_token tok = {};
        struct kc_luks_segment seg;
        struct kc_err err = {};
        kc_key_serial_t serial;
        char key_id[65];
        uint32_t version;
        _cleanup_(kc_luks_peek_freep) struct kc_luks_peek *pk = NULL;
        uint64_t tp, t0, t1, t2, t3, t4, t4b, t5, sectors;
        int r;

        tp = now_us();
        r = kc_luks_peek(device, NULL, &pk);
        if (r >= 0)
                r = kc_luks_peek_segment(pk, &seg);
        if (r >= 0)
                r = kc_luks_peek_token(pk, &tok);
        kc_token_clear(&tok);
        if (r < 0)
                return fail("peek", r), r;
        t0 = now_us();
        r = kc_luks_open_read(device, NULL, &l, &err);
        if (r >= 0)
                r = kc_luks_segment(l, &seg);
        t1 = now_us();
        if (r >= 0)
                r = kc_luks_token_read(l, &tok, NULL, &err);
        if (r >= 0)
                r = kc_token_key_ref(&tok, &ref);
        t2 = now_us();
        if (r >= 0) {
                b->req.volume = seg.uuid;
                r = kc_kms_decrypt(b->kms, &b->req, ref, tok.wrapped_key, tok.wrapped_key_len, tok.context,
                                   &key, key_id, &version, &err);
        }
        t3 = now_us();
        if (r >= 0)
                r = kc_luks_verify_key(l, key, kc_secret_size(key), &tok);
        t4 = now_us();
        kc_token_clear(&tok);
        if (r < 0) {
                fprintf(stderr, "kc-floor: profile %s: %s\n", device, kc_err_msg(&err, r));
                return r;
        }

        r = device_sectors(seg.data_device, &sectors);
        if (r < 0)
                return fail(seg.data_device, r), r;
        struct kc_crypt_params cp = {
                .cipher = seg.cipher,
                .key_size = kc_secret_size(key),
                .device = seg.data_device,
                .iv_offset = seg.iv_offset,
                .offset = seg.offset,
                .size = (sectors - seg.offset) / (seg.sector_size / 512) * (seg.sector_size / 512),
                .sector_size = seg.sector_size,
                .flags = KC_CRYPT_DEFAULT_FLAGS,
        };
        r = kc_keyring_volume_description(seg.uuid, &desc);
        if (r >= 0) {
                cp.key_description = desc;
                r = kc_crypt_table_build(&cp, &params);
        }
        if (r >= 0)
                r = kc_dm_uuid_luks2(seg.uuid, name, &dm_uuid);
        if (r < 0)
                return fail(name, r), r;
        t4b = now_us(); /* building the table is no step of its own */
        r = kc_keyring_add_logon(desc, key, cp.key_size, &serial);
        if (r < 0)
                return fail("add_logon", r), r;
        r = kc_dm_create(name, dm_uuid, "crypt", cp.size, params, false);
        (void) kc_keyring_drop(serial);
        t5 = now_us();
        if (r < 0)
                return fail(name, r), r;
        printf("peek %" PRIu64 "\nheader %" PRIu64 "\ntoken %" PRIu64 "\nunwrap %" PRIu64 "\nverify %" PRIu64
               "\nkeymap %" PRIu64 "\n", t0 - tp, t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4b);
        return kc_dm_remove(name, false);
}

/* one() for each DEVICE of PREFIX DEVICE..., as PREFIX<i>, with one KMS. */
static int each_device(int argc, char **argv, const char *usage,
                       int (*one)(struct bench_kms *b, const char *name, const char *device)) {
        struct bench_kms b;
        char name[128];
        int r = 0;

        if (argc < 2)
                return fail(usage, EINVAL);
        if (bench_kms_open(&b) < 0)
                return 1;
        for (int i = 1; i < argc && r >= 0; i++) {
                snprintf(name, sizeof(name), "%s%d", argv[0], i - 1);
                r = one(&b, name, argv[i]);
        }
        bench_kms_close(&b);
        return r < 0 ? 1 : 0;
}

static int cmd_attach(int argc, char **argv) {
        return each_device(argc, argv, "attach: PREFIX DEVICE...", attach_detach);
}

static int cmd_profile(int argc, char **argv) {
        return each_device(argc, argv, "profile: PREFIX DEVICE...", profile_one);
}

static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
} commands[] = {
        { "time",    cmd_time },
        { "attach",  cmd_attach },
        { "pair",    cmd_pair },
        { "profile", cmd_profile },
};

int main(int argc, char **argv) {
        if (getenv("KCVM_DEBUG"))
                kc_log_set_max_priority(LOG_DEBUG);
        for (size_t i = 0; argc >= 2 && i < ARRAY_SIZE(commands); i++)
                if (streq(argv[1], commands[i].name))
                        return commands[i].run(argc - 2, argv + 2);
        fprintf(stderr, "usage: kc-floor time|attach|pair|profile ...\n");
        return 2;
}
