/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent-mkvols: make many kmscrypt volumes quickly, for the agent's vm
 * tests and benchmark.
 *
 *   agent-mkvols [-d] [-k] KEY DB-ID NAME=DEVICE...
 *   agent-mkvols -l MIB [-d] [-k] KEY DB-ID NAME...
 *
 * `kmscrypt format` lets libcryptsetup wipe a 16 MiB header area with
 * zeros and random bytes, and proves the new token with a second KMS call:
 * seconds a volume under emulation, too slow for 20 or 100 volumes.  Here,
 * in one process: the KMS generates a 512-bit data key bound to
 * db-id=DB-ID,volume-id=NAME under KEY (GenerateDataKey, audited), DEVICE
 * becomes LUKS2 aes-xts-plain64 with that key, 4096-byte sectors, small
 * metadata and keyslot areas and a 1 MiB data offset, and the kmscrypt
 * token, with its key check, is written through agent/luks.h.  The attach path sees what a
 * formatted volume offers: a LUKS2 header, a kmscrypt token, no keyslot.
 *
 *   -k  add a passphrase keyslot ($AGENT_MKVOLS_PASSPHRASE, default
 *       "kcvm"), so that stock `cryptsetup open` can open the volume too
 *   -d  that keyslot at libcryptsetup's default cost (argon2id,
 *       benchmarked) instead of PBKDF2 with 1000 iterations
 *   -l  make each DEVICE here: a sparse file NAME.img of MIB MiB in the
 *       current folder on a free loop device (what a test would otherwise
 *       do with two programs a volume, which under emulation costs more
 *       than the volume itself)
 *
 * The keystore and audit log come from the usual configuration
 * (KMSCRYPT_KEYSTORE, KMSCRYPT_AUDIT_LOG, KMSCRYPT_CONFIG).  Prints one
 * "NAME UUID DEVICE" line a volume.  Exit status 0, or 1 with one line on stderr.
 */
#include <fcntl.h>
#include <libcryptsetup.h>
#include <limits.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/luks.h"
#include "agent/token.h"
#include "lib/log.h"
#include "lib/secret.h"

#define METADATA_SIZE (16 * 1024)
#define KEYSLOTS_SIZE (512 * 1024)      /* one keyslot of a 512-bit key with 4000 AF stripes */
#define DATA_OFFSET_SECTORS 2048        /* 1 MiB */

static const struct crypt_pbkdf_type cheap_pbkdf = {
        .type = CRYPT_KDF_PBKDF2,
        .hash = "sha256",
        .iterations = 1000,
        .flags = CRYPT_PBKDF_NO_BENCHMARK,
};

struct opts {
        bool keep, default_cost;
        unsigned loop_mib;          /* -l: make NAME.img and a loop device */
        const char *passphrase;
};

/* A sparse file NAME.img of mib MiB on a free loop device; its path in ret (PATH_MAX). */
static int make_loop(const char *name, unsigned mib, char *ret, struct kc_err *err) {
        _cleanup_close_ int ctl = -1, file = -1, loop = -1;
        char img[PATH_MAX];
        int n;

        snprintf(img, sizeof(img), "%s.img", name);
        file = open(img, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (file < 0 || ftruncate(file, (off_t) mib << 20) < 0)
                return kc_err_set(err, negative_errno(), "cannot create %s: %m", img);
        ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
        for (unsigned tries = 0; ctl >= 0 && tries < 16; tries++) {
                n = ioctl(ctl, LOOP_CTL_GET_FREE);
                if (n < 0)
                        break;
                snprintf(ret, PATH_MAX, "/dev/loop%d", n);
                loop = open(ret, O_RDWR | O_CLOEXEC);
                if (loop >= 0 && ioctl(loop, LOOP_SET_FD, file) == 0)
                        return 0;
                if (loop >= 0 && errno != EBUSY)
                        break;
                loop = loop >= 0 ? (close(loop), -1) : -1;    /* taken meanwhile: ask again */
        }
        return kc_err_set(err, negative_errno(), "cannot put %s on a loop device: %m", img);
}

static void quiet(int level, const char *msg, void *usrptr) {
        if (level == CRYPT_LOG_ERROR)
                fputs(msg, stderr);
}

static int luks_format_small(const char *device, const void *key, size_t key_size, const struct opts *o,
                             char ret_uuid[static 40], struct kc_err *err) {
        struct crypt_device *cd = NULL;
        struct crypt_params_luks2 params = { .sector_size = 4096, .data_alignment = DATA_OFFSET_SECTORS };
        int r;

        r = crypt_init(&cd, device);
        if (r >= 0)
                r = crypt_set_metadata_size(cd, METADATA_SIZE, KEYSLOTS_SIZE);
        if (r >= 0 && !o->default_cost)
                r = crypt_set_pbkdf_type(cd, &cheap_pbkdf);
        if (r >= 0)
                r = crypt_format(cd, CRYPT_LUKS2, "aes", "xts-plain64", NULL, key, key_size, &params);
        if (r >= 0 && o->keep)
                r = crypt_keyslot_add_by_volume_key(cd, CRYPT_ANY_SLOT, key, key_size, o->passphrase,
                                                    strlen(o->passphrase));
        if (r >= 0)
                kc_strscpy(ret_uuid, 40, crypt_get_uuid(cd));
        crypt_free(cd);
        return r < 0 ? kc_err_set(err, r, "cannot format %s: %s", device, strerror(-r)) : 0;
}

static int write_token(const char *device, const struct kc_data_key *dk, const struct kc_context *ctx,
                       struct kc_err *err) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        _cleanup_(kc_token_clear) struct kc_token t = {
                .version = KC_TOKEN_VERSION, .provider = "local", .key_version = dk->key_version,
                .wrapped_key = (uint8_t *) dk->blob, .wrapped_key_len = dk->blob_len,
        };
        int r;

        kc_strscpy(t.key_id, sizeof(t.key_id), dk->key_id);
        r = kc_context_copy(ctx, &t.context);
        if (r >= 0)
                r = kc_luks_open(device, NULL, &l, err);
        /* With the key check, as kmscrypt format writes it. */
        if (r >= 0 && (r = kc_luks_bind_key(l, dk->plaintext, kc_secret_size(dk->plaintext), &t)) < 0)
                r = kc_err_set(err, r, "the new header of %s does not accept its key", device);
        if (r >= 0)
                r = kc_luks_token_write(l, -1, &t, err);
        t.wrapped_key = NULL;   /* dk's */
        return r;
}

static int make_volume(struct kc_kms *kms, const struct kc_caller *self, const char *key_ref, const char *db,
                       const char *spec, const struct opts *o, struct kc_err *err) {
        _cleanup_free_ char *name = strdup(spec), *kv = NULL;
        _cleanup_(kc_data_key_clear) struct kc_data_key dk = {};
        struct kc_kms_request req = { .caller = self };
        struct kc_context *ctx = NULL;
        char *device, uuid[40], loop[PATH_MAX];
        int r;

        if (!name)
                return -ENOMEM;
        if (o->loop_mib) {
                r = make_loop(name, o->loop_mib, loop, err);
                if (r < 0)
                        return r;
                device = loop;
        } else {
                device = strchr(name, '=');
                if (!device || device == name || !device[1])
                        return kc_err_set(err, -EINVAL, "expected NAME=DEVICE, got \"%s\"", spec);
                *device++ = '\0';
        }
        if (asprintf(&kv, "db-id=%s,volume-id=%s", db, name) < 0)
                return -ENOMEM;
        r = kc_context_parse_kv(kv, &ctx, err);
        if (r < 0)
                return r;
        req.volume = name;
        r = kc_kms_generate_data_key(kms, &req, key_ref, ctx, 64, &dk, err);
        if (r >= 0)
                r = luks_format_small(device, dk.plaintext, kc_secret_size(dk.plaintext), o, uuid, err);
        if (r >= 0)
                r = write_token(device, &dk, ctx, err);
        kc_context_free(ctx);
        if (r < 0)
                return r;
        printf("%s %s %s\n", name, uuid, device);
        return 0;
}

int main(int argc, char **argv) {
        struct opts o = { .passphrase = getenv("AGENT_MKVOLS_PASSPHRASE") ?: "kcvm" };
        struct kc_config cfg = {};
        struct kc_kms_config kc;
        _cleanup_kms_ struct kc_kms *kms = NULL;
        struct kc_caller self;
        struct kc_err err = {};
        int c, r;

        while ((c = getopt(argc, argv, "dkl:")) >= 0)
                switch (c) {
                case 'd': o.default_cost = true; break;
                case 'k': o.keep = true; break;
                case 'l': o.loop_mib = (unsigned) strtoul(optarg, NULL, 10); break;
                default: return 2;
                }
        if (argc - optind < 3) {
                fputs("usage: agent-mkvols [-l MIB] [-d] [-k] KEY DB-ID NAME=DEVICE|NAME...\n", stderr);
                return 2;
        }
        crypt_set_log_callback(NULL, quiet, NULL);
        r = kc_config_load(NULL, &cfg, &err);
        if (r >= 0) {
                kc_config_kms(&cfg, &kc);
                r = kc_kms_open(&kc, &kms, &err);
        }
        if (r >= 0)
                r = kc_caller_self(&self);
        for (int i = optind + 2; r >= 0 && i < argc; i++)
                r = make_volume(kms, &self, argv[optind], argv[optind + 1], argv[i], &o, &err);
        if (r < 0)
                fprintf(stderr, "agent-mkvols: %s\n", kc_err_msg(&err, r));
        kms = (kc_kms_close(kms), NULL);
        kc_config_done(&cfg);
        return r < 0 ? 1 : 0;
}
