/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Header-side volume workflows: format, adopt, dump.  The order of each
 * workflow is the point: refuse everything that can be refused before the
 * KMS is asked for anything and before the device is written, and after
 * writing, prove from the bytes on disk that the token unwraps to the
 * volume key before reporting success (or, for adopt, before removing the
 * keyslots that are otherwise the only way in).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/volume.h"
#include "lib/json-util.h"
#include "lib/log.h"
#include "lib/macro.h"
#include "lib/secret.h"

#define VOLUME_KEY_SIZE 64   /* aes-xts-plain64 with two 256-bit keys */


int kc_volume_check_context(const struct kc_context *ctx, struct kc_err *err) {
        static const char *const required[] = { KC_VOLUME_CONTEXT_DB, KC_VOLUME_CONTEXT_VOLUME };

        if (!ctx)
                return kc_err_set(err, -EINVAL, "no encryption context given");
        for (size_t i = 0; i < ARRAY_SIZE(required); i++) {
                const char *v = kc_context_get(ctx, required[i]);

                if (!v || !*v)
                        return kc_err_set(err, -EINVAL, "the encryption context must name %s", required[i]);
        }
        return 0;
}

/* Open for writing now, so a read-only device is refused before the KMS is involved. */
static int check_writable(const char *what, const char *path, struct kc_err *err) {
        _cleanup_close_ int fd = -1;
        struct stat st;
        int ro = 0;

        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0 && (errno == EROFS || errno == EACCES || errno == EPERM))
                return kc_err_set(err, -EROFS, "%s %s is read-only (%s)", what, path, strerror(errno));
        if (fd < 0)
                return kc_err_set(err, negative_errno(), "%s %s: %s", what, path, strerror(errno));
        if (fstat(fd, &st) < 0)
                return kc_err_set(err, negative_errno(), "%s %s: %s", what, path, strerror(errno));
        if (S_ISBLK(st.st_mode) && ioctl(fd, BLKROGET, &ro) == 0 && ro)
                return kc_err_set(err, -EROFS, "%s %s is a read-only block device", what, path);
        return 0;
}

/* Random (version 4) UUID, so the KMS audit record of GenerateDataKey can name the volume it is for. */
static int uuid_random(char ret[static 37]) {
        uint8_t b[16];

        if (getrandom(b, sizeof(b), 0) != (ssize_t) sizeof(b))
                return -EIO;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        snprintf(ret, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                 b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
        return 0;
}

int kc_volume_token_build(const char *provider, const struct kc_data_key *dk, const struct kc_context *ctx,
                          struct kc_token *ret) {
        struct kc_token t = { .version = KC_TOKEN_VERSION, .key_version = dk->key_version };
        int r;

        if (strlen(provider) >= sizeof(t.provider) || strlen(dk->key_id) >= sizeof(t.key_id))
                return -ENAMETOOLONG;
        strcpy(t.provider, provider);
        strcpy(t.key_id, dk->key_id);
        r = kc_context_copy(ctx, &t.context);
        if (r < 0)
                return r;
        t.wrapped_key = malloc(dk->blob_len);
        if (!t.wrapped_key) {
                kc_token_clear(&t);
                return -ENOMEM;
        }
        memcpy(t.wrapped_key, dk->blob, dk->blob_len);
        t.wrapped_key_len = dk->blob_len;
        *ret = t;
        return 0;
}

static bool token_same(const struct kc_token *a, const struct kc_token *b) {
        return a->version == b->version && streq(a->provider, b->provider) && streq(a->key_id, b->key_id) &&
                a->key_version == b->key_version && kc_context_equal(a->context, b->context) &&
                a->wrapped_key_len == b->wrapped_key_len &&
                memcmp(a->wrapped_key, b->wrapped_key, a->wrapped_key_len) == 0;
}

/* The KMS unwraps token's blob (under the token's context) to exactly key. */
static int token_unwraps_to(struct kc_kms *kms, const struct kc_kms_request *req, const struct kc_token *t,
                            const void *key, size_t key_size, const char *what, struct kc_err *err) {
        _cleanup_secret_ void *unwrapped = NULL;
        _cleanup_free_ char *key_ref = NULL;
        int r;

        r = kc_token_key_ref(t, &key_ref);
        if (r < 0)
                return r;
        r = kc_kms_decrypt(kms, req, key_ref, t->wrapped_key, t->wrapped_key_len, t->context, &unwrapped, NULL, NULL,
                           err);
        if (r < 0)
                return r;
        if (kc_secret_size(unwrapped) != key_size || !kc_memeq_const(unwrapped, key, key_size))
                return kc_err_set(err, -EIO, "the kmscrypt token of %s unwraps to a different key", what);
        return 0;
}

/*
 * Read the header back from disk with a fresh handle and prove the whole
 * chain: the token parses and is the one written, the LUKS2 digest accepts
 * the key, and the KMS unwraps the stored blob (under the stored context)
 * to that same key.  A caller that had the KMS unwrap the written token
 * already says so (unwrap_proven): the token read back equals it member for
 * member, so a second KMS call (and audit record) would prove nothing new.
 * Returns the verified handle for a follow-up change.
 */
static int verify_on_disk(struct kc_kms *kms, const struct kc_kms_request *req, const struct kc_volume_ref *ref,
                          const struct kc_token *written, bool unwrap_proven, const void *key, size_t key_size,
                          struct kc_luks **ret_luks, int *ret_token_id, struct kc_err *err) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        _cleanup_(kc_token_clear) struct kc_token t = {};
        int id, r;

        r = kc_luks_open(ref->device, ref->header, &l, err);
        if (r < 0)
                return r;
        r = kc_luks_token_read(l, &t, &id, err);
        if (r < 0)
                return r;
        if (!token_same(&t, written))
                return kc_err_set(err, -EIO, "the kmscrypt token read back from %s differs from the one written",
                                  ref->header ?: ref->device);
        r = kc_luks_verify_key(l, key, key_size, NULL);
        if (r < 0)
                return kc_err_set(err, r, "the LUKS2 digest of %s does not accept the volume key",
                                  ref->header ?: ref->device);
        /* A key check must prove the key on its own, or every attach would pay for the digest in vain. */
        if (t.has_key_check && kc_luks_key_check_verify(l, key, key_size, &t) < 0)
                return kc_err_set(err, -EIO, "the key check written to %s does not prove the volume key",
                                  ref->header ?: ref->device);
        if (!unwrap_proven) {
                r = token_unwraps_to(kms, req, &t, key, key_size, ref->header ?: ref->device, err);
                if (r < 0)
                        return r;
        }
        if (ret_luks)
                *ret_luks = TAKE_PTR(l);
        *ret_token_id = id;
        return 0;
}

static int ref_check(const struct kc_volume_ref *ref, struct kc_err *err) {
        if (!ref->device || !*ref->device)
                return kc_err_set(err, -EINVAL, "no device given");
        if (ref->header && !*ref->header)
                return kc_err_set(err, -EINVAL, "empty header path");
        return 0;
}

/* ---- format ---- */

/*
 * A detached header file may be new (created by header_prepare(), 0600, and
 * removed again if format fails) or an existing file, which must be writable
 * and, unless forced or empty, carry no signature.  1: there is none yet.
 */
static int header_check(const struct kc_volume_format_params *p, struct kc_err *err) {
        struct stat st;
        int r;

        if (!p->ref.header)
                return 0;
        if (stat(p->ref.header, &st) < 0)
                return errno == ENOENT ? 1 : kc_err_set(err, negative_errno(), "header %s: %s", p->ref.header,
                                                        strerror(errno));
        r = check_writable("header", p->ref.header, err);
        if (r < 0 || p->force || (S_ISREG(st.st_mode) && st.st_size == 0))
                return r;
        return kc_luks_check_blank(p->ref.header, err);
}

static int header_prepare(const struct kc_volume_format_params *p, bool *ret_created, struct kc_err *err) {
        _cleanup_close_ int fd = -1;
        int r;

        *ret_created = false;
        r = header_check(p, err);
        if (r <= 0)
                return r;
        fd = open(p->ref.header, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return kc_err_set(err, negative_errno(), "cannot create header %s: %s", p->ref.header, strerror(errno));
        *ret_created = true;
        return 0;
}

/* Everything format refuses from its parameters and the device, before the KMS or the header file. */
static int format_check(const struct kc_volume_format_params *p, const struct kc_kms_provider **ret_provider,
                        struct kc_err *err) {
        const char *key;
        int r;

        r = ref_check(&p->ref, err);
        if (r < 0)
                return r;
        if (!p->key_ref || !*p->key_ref)
                return kc_err_set(err, -EINVAL, "no key given");
        r = kc_kms_resolve(p->key_ref, ret_provider, &key, err);
        if (r < 0)
                return r;
        r = kc_volume_check_context(p->context, err);
        if (r < 0)
                return r;
        if (p->recovery_passphrase && p->recovery_passphrase_len == 0)
                return kc_err_set(err, -EINVAL, "the recovery passphrase is empty");
        /* kc_luks_format() checks it too, but only after the KMS made (and audited) a data key. */
        if (p->recovery_passphrase) {
                r = kc_luks_pbkdf_check(p->pbkdf, err);
                if (r < 0)
                        return r;
        }
        r = check_writable("device", p->ref.device, err);
        if (r < 0)
                return r;
        if (!p->force) {
                r = kc_luks_check_blank(p->ref.device, err);
                if (r < 0)
                        return r;
        }
        /* kc_luks_format() checks it too, but only after the KMS made (and audited) a data key. */
        return kc_luks_check_geometry(p->ref.device, p->ref.header, p->sector_size, err);
}

int kc_volume_format_check(const struct kc_volume_format_params *p, struct kc_err *err) {
        const struct kc_kms_provider *provider;
        int r;

        if (!p)
                return -EINVAL;
        r = format_check(p, &provider, err);
        if (r >= 0)
                r = header_check(p, err);
        return r < 0 ? r : 0;
}

static int format_write(struct kc_kms *kms, const struct kc_kms_request *req, const char *provider,
                        const struct kc_volume_format_params *p, struct kc_volume_result *res, struct kc_err *err) {
        _cleanup_(kc_data_key_clear) struct kc_data_key dk = {};
        _cleanup_(kc_token_clear) struct kc_token token = {};
        struct kc_luks_format_params lp;
        int r;

        r = kc_kms_generate_data_key(kms, req, p->key_ref, p->context, VOLUME_KEY_SIZE, &dk, err);
        if (r < 0)
                return r;
        if (kc_secret_size(dk.plaintext) != VOLUME_KEY_SIZE)
                return kc_err_set(err, -EIO, "the KMS returned a data key of the wrong size");
        r = kc_volume_token_build(provider, &dk, p->context, &token);
        if (r < 0)
                return kc_err_set(err, r, "cannot build the kmscrypt token: %s", strerror(-r));

        lp = (struct kc_luks_format_params) {
                .device = p->ref.device,
                .header = p->ref.header,
                .sector_size = p->sector_size,
                .label = p->label,
                .volume_key = dk.plaintext,
                .volume_key_size = VOLUME_KEY_SIZE,
                .recovery_passphrase = p->recovery_passphrase,
                .recovery_passphrase_len = p->recovery_passphrase_len,
                .pbkdf = p->pbkdf,
                .uuid = req->volume,
                /* Signatures were checked before the KMS call; the header file may be ours, just created. */
                .force = true,
        };
        r = kc_luks_format(&lp, &token, err);
        if (r < 0)
                return r;
        r = verify_on_disk(kms, req, &p->ref, &token, false, dk.plaintext, VOLUME_KEY_SIZE, NULL, &res->token_id, err);
        if (r < 0)
                return r;

        strcpy(res->provider, token.provider);
        strcpy(res->key_id, dk.key_id);
        res->key_version = dk.key_version;
        return 0;
}

/* The recovery keyslot, if any: the only active one on a freshly formatted header. */
static int recovery_keyslot(const struct kc_volume_ref *ref) {
        _cleanup_json_ struct json_object *o = NULL;
        _cleanup_luks_ struct kc_luks *l = NULL;
        struct json_object *slots;

        if (kc_luks_open(ref->device, ref->header, &l, NULL) < 0 || kc_luks_dump_json(l, &o) < 0)
                return -1;
        slots = json_object_object_get(o, "Keyslots");
        if (json_object_array_length(slots) == 0)
                return -1;
        return json_object_get_int(json_object_object_get(json_object_array_get_idx(slots, 0), "Id"));
}

/*
 * Undo a format that failed after libcryptsetup wrote its header (a keyslot,
 * the token or the read-back refused): that header opens nothing, and it
 * would make the next format of the device refuse it as not blank.  Only a
 * header carrying this call's fresh UUID is touched: both of its copies
 * (primary and secondary, each metadata_size bytes) are zeroed.
 */
static void format_undo(const struct kc_volume_ref *ref, const char *uuid) {
        static const uint8_t zeros[4096];
        _cleanup_luks_ struct kc_luks *l = NULL;
        _cleanup_json_ struct json_object *o = NULL;
        _cleanup_close_ int fd = -1;
        const char *path = ref->header ?: ref->device;
        int64_t size;
        int r;

        if (kc_luks_open(ref->device, ref->header, &l, NULL) < 0 || kc_luks_dump_json(l, &o) < 0 ||
            !streq_ptr(json_object_get_string(json_object_object_get(o, "LuksUuid")), uuid))
                return;
        kc_luks_close(TAKE_PTR(l));
        size = 2 * json_object_get_int64(json_object_object_get(o, "MetadataSize"));
        if (size <= 0 || size % (int64_t) sizeof(zeros) != 0 || size > 8 * 1024 * 1024)
                return;
        fd = open(path, O_WRONLY | O_CLOEXEC);
        r = fd < 0 ? negative_errno() : 0;
        for (int64_t off = 0; r == 0 && off < size; off += (int64_t) sizeof(zeros))
                if (pwrite(fd, zeros, sizeof(zeros), (off_t) off) != (ssize_t) sizeof(zeros))
                        r = -EIO;
        if (r == 0 && fsync(fd) < 0)
                r = negative_errno();
        if (r < 0)
                log_debug_errno(r, "cannot remove the half-made header of %s: %m", path);
}

int kc_volume_format(struct kc_kms *kms, const struct kc_caller *caller,
                     const struct kc_volume_format_params *p, struct kc_volume_result *ret, struct kc_err *err) {
        const struct kc_kms_provider *provider;
        struct kc_volume_result res = { .recovery_keyslot = -1 };
        struct kc_kms_request req = { .caller = caller };
        bool created = false;
        int r;

        if (!kms || !p || !ret)
                return -EINVAL;
        r = format_check(p, &provider, err);
        if (r < 0)
                return r;
        r = header_prepare(p, &created, err);
        if (r < 0)
                return r;
        r = uuid_random(res.uuid);
        if (r < 0) {
                kc_err_set(err, r, "cannot generate a UUID");
                goto fail;
        }
        req.volume = res.uuid;

        r = format_write(kms, &req, provider->name, p, &res, err);
        if (r < 0) {
                if (!created)
                        format_undo(&p->ref, res.uuid);
                goto fail;
        }
        if (p->recovery_passphrase)
                res.recovery_keyslot = recovery_keyslot(&p->ref);
        *ret = res;
        return 0;
fail:
        /* A header file this call created holds nothing anyone needs. */
        if (created)
                (void) unlink(p->ref.header);
        return r;
}

/* ---- adopt ---- */

static int adopt_check(const struct kc_volume_adopt_params *p, struct kc_luks *l, struct kc_luks_segment *ret_seg,
                       struct kc_err *err) {
        _cleanup_(kc_token_clear) struct kc_token t = {};
        struct kc_err terr = {};
        int r;

        r = kc_luks_token_read(l, &t, NULL, &terr);
        if (r >= 0)
                return kc_err_set(err, -EEXIST, "%s already has a kmscrypt token", p->ref.header ?: p->ref.device);
        if (r != -ENOENT)
                return kc_err_set(err, r, "%s", kc_err_msg(&terr, r));
        r = kc_luks_segment(l, ret_seg);
        if (r == -EOPNOTSUPP)
                return kc_err_set(err, r, "%s is being reencrypted or uses authenticated encryption; "
                                  "kmscrypt cannot adopt it", p->ref.header ?: p->ref.device);
        if (r < 0)
                return kc_err_set(err, r, "cannot read the data segment of %s: %s",
                                  p->ref.header ?: p->ref.device, strerror(-r));
        return check_writable(p->ref.header ? "header" : "device", p->ref.header ?: p->ref.device, err);
}

/* Everything adopt refuses before it unlocks the volume key: the header opened, in *ret_luks. */
static int adopt_open(const struct kc_volume_adopt_params *p, const struct kc_kms_provider **ret_provider,
                      struct kc_luks **ret_luks, struct kc_luks_segment *ret_seg, struct kc_err *err) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        const char *rest;
        int r;

        r = ref_check(&p->ref, err);
        if (r < 0)
                return r;
        if (!p->key_ref || !*p->key_ref)
                return kc_err_set(err, -EINVAL, "no key given");
        if (!p->passphrase)
                return kc_err_set(err, -EINVAL, "no passphrase or key file given to unlock the volume");
        r = kc_kms_resolve(p->key_ref, ret_provider, &rest, err);
        if (r < 0)
                return r;
        r = kc_volume_check_context(p->context, err);
        if (r < 0)
                return r;
        r = kc_luks_open(p->ref.device, p->ref.header, &l, err);
        if (r < 0)
                return r;
        r = adopt_check(p, l, ret_seg, err);
        if (r < 0)
                return r;
        *ret_luks = TAKE_PTR(l);
        return 0;
}

int kc_volume_adopt_check(const struct kc_volume_adopt_params *p, struct kc_err *err) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        const struct kc_kms_provider *provider;
        struct kc_luks_segment seg;

        if (!p)
                return -EINVAL;
        return adopt_open(p, &provider, &l, &seg, err);
}

int kc_volume_adopt(struct kc_kms *kms, const struct kc_caller *caller,
                    const struct kc_volume_adopt_params *p, struct kc_volume_result *ret, struct kc_err *err) {
        _cleanup_(kc_data_key_clear) struct kc_data_key dk = {};
        _cleanup_(kc_token_clear) struct kc_token token = {};
        _cleanup_luks_ struct kc_luks *l = NULL, *verified = NULL;
        _cleanup_secret_ void *key = NULL;
        const struct kc_kms_provider *provider;
        struct kc_volume_result res = { .recovery_keyslot = -1 };
        struct kc_luks_segment seg;
        struct kc_kms_request req = { .caller = caller };
        int r;

        if (!kms || !p || !ret)
                return -EINVAL;
        r = adopt_open(p, &provider, &l, &seg, err);
        if (r < 0)
                return r;

        r = kc_luks_volume_key_by_passphrase(l, p->passphrase, p->passphrase_len, &key, err);
        if (r < 0)
                return r;
        strcpy(res.uuid, seg.uuid);
        req.volume = res.uuid;
        r = kc_kms_encrypt(kms, &req, p->key_ref, p->context, key, kc_secret_size(key), &dk, err);
        if (r < 0)
                return r;
        r = kc_volume_token_build(provider->name, &dk, p->context, &token);
        if (r < 0)
                return kc_err_set(err, r, "cannot build the kmscrypt token: %s", strerror(-r));
        /* Proven before it is written: a token the KMS will not unwrap must not be left in the header. */
        r = token_unwraps_to(kms, &req, &token, key, kc_secret_size(key), p->ref.header ?: p->ref.device, err);
        if (r < 0)
                return r;
        r = kc_luks_bind_key(l, key, kc_secret_size(key), &token);
        if (r < 0)
                return kc_err_set(err, r, "the LUKS2 digest of %s does not accept its own volume key: %s",
                                  p->ref.header ?: p->ref.device, strerror(-r));
        r = kc_luks_token_write(l, -1, &token, err);
        if (r < 0)
                return r;
        kc_luks_close(TAKE_PTR(l));

        r = verify_on_disk(kms, &req, &p->ref, &token, true, key, kc_secret_size(key), &verified, &res.token_id, err);
        if (r < 0)
                return r;
        /* Only now is the token known to open the volume: the keyslots may go. */
        if (p->remove_passphrase) {
                r = kc_luks_remove_keyslots(verified, err);
                if (r < 0)
                        return r;
                res.removed_keyslots = r;
        }
        strcpy(res.provider, token.provider);
        strcpy(res.key_id, dk.key_id);
        res.key_version = dk.key_version;
        *ret = res;
        return 0;
}

/* ---- dump ---- */

int kc_volume_dump(const struct kc_volume_ref *ref, struct json_object **ret,
                   struct kc_err *token_err, struct kc_err *err) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        _cleanup_(kc_token_clear) struct kc_token t = {};
        struct json_object *o = NULL;
        int r;

        if (!ref || !ret)
                return -EINVAL;
        r = ref_check(ref, err);
        if (r < 0)
                return r;
        r = kc_luks_open(ref->device, ref->header, &l, err);
        if (r < 0)
                return r;
        r = kc_luks_dump_json(l, &o);
        if (r < 0)
                return kc_err_set(err, r, "cannot describe the header of %s: %s", ref->header ?: ref->device,
                                  strerror(-r));
        (void) kc_luks_token_read(l, &t, NULL, token_err);
        *ret = o;
        return 0;
}
