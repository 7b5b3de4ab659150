/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Data key replacement (agent/reencrypt.h, docs/rotation.md).  The order is
 * the point: whatever a crash interrupts, the header says which step comes
 * next (reencrypt_step()), and every step can be run again.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <libcryptsetup.h>

#include "agent/attach.h"
#include "agent/reencrypt.h"
#include "agent/rotate.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "kernel-keyring/keyring.h"
#include "lib/fault.h"
#include "lib/json-util.h"
#include "lib/log.h"
#include "lib/macro.h"
#include "lib/secret.h"
#include "lib/strv.h"

#define PASSPHRASE_SIZE 32
#define KEY_SIZE 64                       /* aes-xts-plain64, 512 bits */
#define PURPOSE_KEY "purpose"
#define PURPOSE_VALUE "reencrypt"

static const char *strempty(const char *s) {
        return s ?: "";
}

struct re_state {
        struct kc_kms *kms;
        struct kc_kms_request req;
        const struct kc_reencrypt_params *p;
        const char *what;                 /* header path for messages */
        struct kc_luks *luks;
        struct crypt_device *cd;
        struct kc_token tok;
        int token_id;
        char *key_ref;
        struct kc_context *pass_ctx;      /* the token's context plus purpose=reencrypt */
        char *mapping;                    /* attached mapping, or NULL */
        void *pass;                       /* kc_secret */
        /* progress and rate limit: done0 bytes were done at t0 */
        struct timespec t0;
        uint64_t done0;
        bool origin_set;
        bool stopped;
};

static void re_state_done(struct re_state *s) {
        kc_luks_close(s->luks);
        kc_token_clear(&s->tok);
        free(s->key_ref);
        kc_context_free(s->pass_ctx);
        free(s->mapping);
        kc_secret_free(s->pass);
}

/* ---- keys from the KMS ---- */

static int unwrap(struct re_state *s, const uint8_t *blob, size_t len, const struct kc_context *ctx,
                  void **ret, struct kc_err *err) {
        return kc_kms_decrypt(s->kms, &s->req, s->key_ref, blob, len, ctx, ret, NULL, NULL, err);
}

/* The old key, proven against the digest of the (single) data segment. */
static int old_key(struct re_state *s, void **ret, struct kc_err *err) {
        _cleanup_secret_ void *key = NULL;
        int r;

        r = unwrap(s, s->tok.wrapped_key, s->tok.wrapped_key_len, s->tok.context, &key, err);
        if (r < 0)
                return r;
        if (kc_luks_verify_key(s->luks, key, kc_secret_size(key), &s->tok) < 0)
                return kc_err_set(err, -EBADMSG, "the token's key does not match the LUKS2 digest of %s", s->what);
        *ret = TAKE_PTR(key);
        return 0;
}

static int new_key(struct re_state *s, void **ret, struct kc_err *err) {
        const struct kc_token_reencrypt *re = s->tok.reencrypt;
        _cleanup_secret_ void *key = NULL;
        int r;

        r = unwrap(s, re->wrapped_key, re->wrapped_key_len, s->tok.context, &key, err);
        if (r < 0)
                return r;
        if (kc_secret_size(key) != KEY_SIZE)
                return kc_err_set(err, -EBADMSG, "the new data key of %s has %zu bytes, not %d", s->what,
                                  kc_secret_size(key), KEY_SIZE);
        *ret = TAKE_PTR(key);
        return 0;
}

static int passphrase(struct re_state *s, struct kc_err *err) {
        const struct kc_token_reencrypt *re = s->tok.reencrypt;
        int r;

        if (s->pass)
                return 0;
        r = unwrap(s, re->wrapped_passphrase, re->wrapped_passphrase_len, s->pass_ctx, &s->pass, err);
        if (r < 0)
                return r;
        if (kc_secret_size(s->pass) != PASSPHRASE_SIZE)
                return kc_err_set(err, -EBADMSG, "the reencryption passphrase of %s has the wrong size", s->what);
        return 0;
}

/* ---- header facts ---- */

static bool keyslot_active(struct crypt_device *cd, int slot) {
        crypt_keyslot_info st = crypt_keyslot_status(cd, slot);

        return st != CRYPT_SLOT_INACTIVE && st != CRYPT_SLOT_INVALID;
}

/* Active keyslots other than the temporary ones: recovery passphrases. */
static unsigned recovery_keyslots(struct re_state *s) {
        const struct kc_token_reencrypt *re = s->tok.reencrypt;
        unsigned n = 0;

        for (int i = 0; i < crypt_keyslot_max(CRYPT_LUKS2); i++)
                if (keyslot_active(s->cd, i) && (!re || (i != re->keyslot_old && i != re->keyslot_new)))
                        n++;
        return n;
}

static int free_keyslots(struct re_state *s, int ret[2], struct kc_err *err) {
        int n = 0;

        for (int i = 0; i < crypt_keyslot_max(CRYPT_LUKS2) && n < 2; i++)
                if (!keyslot_active(s->cd, i))
                        ret[n++] = i;
        if (n < 2)
                return kc_err_set(err, -ENOSPC, "%s has no two free keyslots for the reencryption", s->what);
        return 0;
}

/* The LUKS2 digest of data segment 0 (libcryptsetup names its keyring keys after it). */
static int segment_digest(struct re_state *s, unsigned *ret) {
        _cleanup_json_ struct json_object *hdr = NULL;
        struct json_object *digests;

        if (kc_luks_metadata_json(s->cd, &hdr) < 0)
                return -EINVAL;
        if (!json_object_object_get_ex(hdr, "digests", &digests))
                return -EINVAL;
        json_object_object_foreach(digests, id, d) {
                struct json_object *segs = json_object_object_get(d, "segments");

                for (size_t i = 0; segs && i < json_object_array_length(segs); i++)
                        if (streq_ptr(json_object_get_string(json_object_array_get_idx(segs, i)), "0")) {
                                *ret = (unsigned) atoi(id);
                                return 0;
                        }
        }
        return -ENOENT;
}

/* ---- the mapping ---- */

static bool is_helper_device(const char *name) {
        static const char *const suffixes[] = { "-hotzone-forward", "-hotzone-backward", "-overlay" };
        size_t n = strlen(name);

        for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++)
                if (n > strlen(suffixes[i]) && streq(name + n - strlen(suffixes[i]), suffixes[i]))
                        return true;
        return false;
}

/*
 * The attached mapping of this volume: by its backing device, else (in the
 * middle of a reencryption, when libcryptsetup's helper devices sit between
 * the two) the one mapping named after this LUKS UUID.
 */
static int find_mapping(struct re_state *s, const char *uuid, struct kc_err *err) {
        _cleanup_free_ char *prefix = NULL;
        _cleanup_strv_ char **names = NULL;
        char *dash;
        int r, found = 0;

        if (s->p->mapping)
                return (s->mapping = strdup(s->p->mapping)) ? 0 : -ENOMEM;
        if (s->p->offline || !kc_dm_available())
                return 0;
        if (kc_mapping_of_device(s->p->ref.device, &s->mapping) >= 0)
                return 0;
        r = kc_dm_uuid_luks2(uuid, "x", &prefix);
        if (r < 0)
                return r;
        dash = strrchr(prefix, '-');
        dash[1] = '\0';
        r = kc_dm_list(prefix, &names);
        if (r < 0)
                return kc_err_set(err, r, "cannot list the mappings of %s: %s", s->what, strerror(-r));
        for (size_t i = 0; names && names[i]; i++) {
                if (is_helper_device(names[i]))
                        continue;
                if (found++ > 0)
                        return kc_err_set(err, -ENOTUNIQ, "several mappings carry the LUKS UUID of %s (%s, %s); "
                                          "name the one to reencrypt", s->what, s->mapping, names[i]);
                s->mapping = strdup(names[i]);
                if (!s->mapping)
                        return -ENOMEM;
        }
        return 0;
}

/* The live table's performance flags and mode, to be kept across the key swaps. */
static void mapping_flags(const char *name, unsigned *ret_flags, bool *ret_ro) {
        _cleanup_free_ char *target = NULL, *params = NULL;
        struct kc_crypt_table t;
        struct kc_dm_info info;

        *ret_flags = KC_CRYPT_DEFAULT_FLAGS;
        *ret_ro = false;
        if (kc_dm_info(name, &info) >= 0)
                *ret_ro = info.read_only;
        if (kc_dm_table(name, &target, &params) < 0 || !streq(target, "crypt") ||
            kc_crypt_table_parse(params, info.size, &t) < 0)
                return;
        *ret_flags = t.p.flags & ~(unsigned) KC_CRYPT_IV_LARGE_SECTORS;
        kc_crypt_table_clear(&t);
}

/*
 * Load key into the live mapping under key description desc: a logon key in
 * this thread's keyring, a table that references it, the key dropped again
 * (dm-crypt copied it).  The data key is the one the data is under, so the
 * swap changes nothing the filesystem sees.
 */
static int mapping_swap_key(struct re_state *s, const char *desc, const void *key, struct kc_err *err) {
        _cleanup_free_ char *params = NULL;
        struct kc_luks_segment seg;
        kc_key_serial_t serial = 0;
        struct kc_dm_info info;
        struct kc_crypt_params cp = {
                .cipher = "aes-xts-plain64",
                .key_size = kc_secret_size(key),
                .key_description = desc,
        };
        bool ro;
        int r;

        r = kc_luks_segment(s->luks, &seg);
        if (r < 0)
                return kc_err_set(err, r, "cannot read the data segment of %s: %s", s->what, strerror(-r));
        r = kc_dm_info(s->mapping, &info);
        if (r < 0 || !info.exists)
                return kc_err_set(err, r < 0 ? r : -ENXIO, "mapping %s is gone", s->mapping);
        mapping_flags(s->mapping, &cp.flags, &ro);
        cp.device = seg.data_device;
        cp.iv_offset = seg.iv_offset;
        cp.offset = seg.offset;
        cp.sector_size = seg.sector_size;
        cp.size = info.size;
        r = kc_crypt_table_build(&cp, &params);
        if (r < 0)
                return kc_err_set(err, r, "cannot build the table of %s: %s", s->mapping, strerror(-r));
        r = kc_keyring_add_logon(desc, key, kc_secret_size(key), &serial);
        if (r < 0)
                return kc_err_set(err, r, "cannot add the data key to the kernel keyring: %s", strerror(-r));
        r = kc_dm_replace(s->mapping, "crypt", cp.size, params, ro);
        (void) kc_keyring_drop(serial);
        if (r < 0)
                return kc_err_set(err, r, "cannot reload mapping %s: %s", s->mapping, strerror(-r));
        return 0;
}

/*
 * libcryptsetup checks that the live mapping is the volume it reencrypts,
 * key description included: before it starts, the mapping references the
 * old key under the description libcryptsetup gives it
 * ("cryptsetup:<uuid>-d<digest>"); after it ends, under ours again.
 */
static int mapping_to_cryptsetup(struct re_state *s, const char *uuid, struct kc_err *err) {
        _cleanup_secret_ void *key = NULL;
        char desc[96];
        unsigned digest;
        int r;

        r = segment_digest(s, &digest);
        if (r < 0)
                return kc_err_set(err, r, "cannot find the LUKS2 digest of %s", s->what);
        r = old_key(s, &key, err);
        if (r < 0)
                return r;
        snprintf(desc, sizeof(desc), "cryptsetup:%s-d%u", uuid, digest);
        return mapping_swap_key(s, desc, key, err);
}

static int mapping_to_kmscrypt(struct re_state *s, const char *uuid, const void *key, struct kc_err *err) {
        _cleanup_free_ char *desc = NULL;
        int r;

        r = kc_keyring_volume_description(uuid, &desc);
        if (r < 0)
                return r;
        return mapping_swap_key(s, desc, key, err);
}

/* ---- an online run killed mid-way ---- */

/* Whether the JSON array arr holds the string value. */
static bool json_array_has(struct json_object *arr, const char *value) {
        for (size_t i = 0; arr && i < json_object_array_length(arr); i++)
                if (streq_ptr(json_object_get_string(json_object_array_get_idx(arr, i)), value))
                        return true;
        return false;
}

/* A backup segment (backup-previous, backup-final, backup-moved-segment): not mapped. */
static bool backup_segment(struct json_object *seg) {
        struct json_object *flags = json_object_object_get(seg, "flags");

        for (size_t i = 0; flags && i < json_object_array_length(flags); i++)
                if (strncmp(strempty(json_object_get_string(json_object_array_get_idx(flags, i))), "backup-", 7) == 0)
                        return true;
        return false;
}

/* The first digest whose member (keyslots, segments) lists id, or -1. */
static int digest_listing(struct json_object *digests, const char *member, const char *id) {
        json_object_object_foreach(digests, d, o)
                if (json_array_has(json_object_object_get(o, member), id))
                        return atoi(d);
        return -1;
}

static uint64_t json_u64(struct json_object *o, const char *key) {
        return strtoull(strempty(json_object_get_string(json_object_object_get(o, key))), NULL, 10);
}

/*
 * A key of the reencryption from its temporary keyslot: libcryptsetup
 * checks it against the keyslot's digest (in the middle of a reencryption
 * the old key has no digest crypt_volume_key_verify() would check).
 */
static int keyslot_key(struct re_state *s, int slot, void **ret, struct kc_err *err) {
        _cleanup_secret_ void *key = NULL;
        size_t size = KEY_SIZE;
        int r;

        r = passphrase(s, err);
        if (r < 0)
                return r;
        key = kc_secret_alloc(KEY_SIZE);
        if (!key)
                return -ENOMEM;
        r = crypt_volume_key_get(s->cd, slot, key, &size, s->pass, PASSPHRASE_SIZE);
        if (r < 0 || size != KEY_SIZE)
                return kc_err_set(err, r < 0 ? r : -EBADMSG, "cannot open keyslot %d of %s: %s", slot, s->what,
                                  strerror(r < 0 ? -r : EBADMSG));
        *ret = TAKE_PTR(key);
        return 0;
}

/*
 * The header's JSON (free it) and its "digests" object, and the digests of
 * the reencryption's two keyslots: what the mapping onto the segments and
 * the recovery check read.
 */
static int read_digests(struct re_state *s, struct json_object **ret_hdr, struct json_object **ret_digests,
                        int *ret_old, int *ret_new, struct kc_err *err) {
        const struct kc_token_reencrypt *re = s->tok.reencrypt;
        _cleanup_json_ struct json_object *hdr = NULL;
        char ks[16];

        if (kc_luks_metadata_json(s->cd, &hdr) < 0 ||
            !json_object_object_get_ex(hdr, "digests", ret_digests))
                return kc_err_set(err, -EINVAL, "cannot read the LUKS2 metadata of %s", s->what);
        snprintf(ks, sizeof(ks), "%d", re->keyslot_old);
        *ret_old = digest_listing(*ret_digests, "keyslots", ks);
        snprintf(ks, sizeof(ks), "%d", re->keyslot_new);
        *ret_new = digest_listing(*ret_digests, "keyslots", ks);
        if (*ret_old < 0 || *ret_new < 0)
                return kc_err_set(err, -EINVAL, "%s: no LUKS2 digest for the keyslots of the reencryption", s->what);
        *ret_hdr = TAKE_PTR(hdr);
        return 0;
}

/*
 * The mapping onto the header's data segments, one crypt target each, its
 * keys under libcryptsetup's descriptions: how libcryptsetup leaves a
 * volume it stopped reencrypting online, and what an online resume checks
 * the mapping against.  Needed after a kill, which leaves the mapping on
 * the helper devices instead (take_over_stack).
 */
static int mapping_to_segments(struct re_state *s, const char *uuid, const char *flags_from, struct kc_err *err) {
        const struct kc_token_reencrypt *re = s->tok.reencrypt;
        _cleanup_json_ struct json_object *hdr = NULL;
        _cleanup_secret_ void *okey = NULL, *nkey = NULL;
        struct json_object *segments, *digests;
        struct kc_dm_target targets[8];
        char *params[8] = {}, descs[8][96], key_descs[2][96], id[16];
        kc_key_serial_t serials[2] = {};
        const char *data_device;
        struct kc_dm_info info;
        unsigned flags;
        uint64_t start = 0;
        size_t n = 0;
        int dold, dnew, r;
        bool ro;

        r = kc_dm_info(s->mapping, &info);
        if (r < 0 || !info.exists)
                return kc_err_set(err, r < 0 ? r : -ENXIO, "mapping %s is gone", s->mapping);
        mapping_flags(flags_from, &flags, &ro);
        data_device = crypt_get_device_name(s->cd);
        if (!data_device)
                return kc_err_set(err, -EINVAL, "%s has no data device", s->what);
        r = read_digests(s, &hdr, &digests, &dold, &dnew, err);
        if (r < 0)
                return r;
        if (!json_object_object_get_ex(hdr, "segments", &segments))
                return kc_err_set(err, -EINVAL, "cannot read the LUKS2 segments of %s", s->what);
        r = keyslot_key(s, re->keyslot_old, &okey, err);
        if (r >= 0)
                r = keyslot_key(s, re->keyslot_new, &nkey, err);
        if (r < 0)
                return r;

        for (;; n++) {
                struct json_object *o;
                int d;

                snprintf(id, sizeof(id), "%zu", n);
                if (!json_object_object_get_ex(segments, id, &o) || backup_segment(o))   /* they come last */
                        break;
                if (n == ARRAY_SIZE(targets) || !streq_ptr(json_object_get_string(json_object_object_get(o, "type")), "crypt")) {
                        r = kc_err_set(err, -EOPNOTSUPP, "%s: data segment %zu is not one kmscrypt reencrypts", s->what, n);
                        goto out;
                }
                d = digest_listing(digests, "segments", id);
                if (d != dold && d != dnew) {
                        r = kc_err_set(err, -EINVAL, "%s: data segment %zu has no key of the reencryption", s->what, n);
                        goto out;
                }
                snprintf(descs[n], sizeof(descs[n]), "cryptsetup:%s-d%d", uuid, d);
                targets[n] = (struct kc_dm_target) {
                        .start = start, .type = "crypt",
                        .length = streq_ptr(json_object_get_string(json_object_object_get(o, "size")), "dynamic")
                                ? info.size - start : json_u64(o, "size") / 512,
                };
                r = kc_crypt_table_build(&(struct kc_crypt_params) {
                                .cipher = json_object_get_string(json_object_object_get(o, "encryption")),
                                .key_size = KEY_SIZE,
                                .key_description = descs[n],
                                .device = data_device,
                                .iv_offset = json_u64(o, "iv_tweak"),
                                .offset = json_u64(o, "offset") / 512,
                                .size = targets[n].length,
                                .sector_size = (uint32_t) json_object_get_int(json_object_object_get(o, "sector_size")),
                                .flags = flags,
                        }, &params[n]);
                if (r < 0) {
                        r = kc_err_set(err, r, "cannot build the table of %s for segment %zu: %s", s->mapping, n,
                                       strerror(-r));
                        goto out;
                }
                targets[n].params = params[n];
                start += targets[n].length;
        }
        if (n == 0 || start != info.size) {
                r = kc_err_set(err, -EINVAL, "the data segments of %s do not cover mapping %s", s->what, s->mapping);
                goto out;
        }
        snprintf(key_descs[0], sizeof(key_descs[0]), "cryptsetup:%s-d%d", uuid, dold);
        snprintf(key_descs[1], sizeof(key_descs[1]), "cryptsetup:%s-d%d", uuid, dnew);
        r = kc_keyring_add_logon(key_descs[0], okey, kc_secret_size(okey), &serials[0]);
        if (r >= 0)
                r = kc_keyring_add_logon(key_descs[1], nkey, kc_secret_size(nkey), &serials[1]);
        if (r >= 0)
                r = kc_dm_replace_targets(s->mapping, targets, n, ro);
        for (size_t i = 0; i < ARRAY_SIZE(serials); i++)
                if (serials[i])
                        (void) kc_keyring_drop(serials[i]);
        if (r < 0)
                r = kc_err_set(err, r, "cannot reload mapping %s onto the data segments of %s: %s", s->mapping,
                               s->what, strerror(-r));
out:
        for (size_t i = 0; i < ARRAY_SIZE(params); i++)
                free(params[i]);
        return r;
}

/*
 * The sectors of the mapping its overlay reads and writes through the
 * hotzone device: the chunk the killed run was at.  -ENOENT if none.
 */
static int hot_range(const char *overlay, const struct kc_dm_info *hotzone, uint64_t *ret_start, uint64_t *ret_end) {
        struct kc_dm_target *t = NULL;
        char majmin[32], dev[32];
        size_t n = 0;
        int r = -ENOENT;

        snprintf(majmin, sizeof(majmin), "%u:%u", hotzone->major, hotzone->minor);
        if (kc_dm_targets(overlay, &t, &n) < 0)
                return -EIO;
        for (size_t i = 0; i < n; i++)
                if (streq(t[i].type, "crypt") && sscanf(t[i].params, "%*s %*s %*s %31s", dev) == 1 &&
                    streq(dev, majmin)) {
                        *ret_start = t[i].start;
                        *ret_end = t[i].start + t[i].length;
                        r = 0;
                        break;
                }
        kc_dm_targets_free(t, n);
        return r;
}

/* Sectors under the new key by the header: data segment 0 when it is the new key's (forward direction). */
static int new_key_sectors(struct re_state *s, uint64_t *ret) {
        _cleanup_json_ struct json_object *hdr = NULL;
        struct json_object *segments, *digests, *seg0;
        char ks[16];

        if (kc_luks_metadata_json(s->cd, &hdr) < 0 ||
            !json_object_object_get_ex(hdr, "segments", &segments) ||
            !json_object_object_get_ex(hdr, "digests", &digests) ||
            !json_object_object_get_ex(segments, "0", &seg0))
                return -EINVAL;
        snprintf(ks, sizeof(ks), "%d", s->tok.reencrypt->keyslot_new);
        *ret = digest_listing(digests, "segments", "0") == digest_listing(digests, "keyslots", ks)
                ? json_u64(seg0, "size") / 512 : 0;
        return 0;
}

/*
 * An online run killed mid-way (kill -9, OOM) leaves the mapping on
 * libcryptsetup's device stack: NAME (linear) -> NAME-overlay (a crypt
 * target per segment, the chunk in work read and written through
 * NAME-hotzone-forward) -> the data device.  The data is safe and stays in
 * use; libcryptsetup cannot resume on such a stack (it compares NAME's
 * table with the header's segments), so it is taken down under the
 * mounted file system as libcryptsetup takes it down when a run stops:
 * NAME onto the header's segments, then the helpers removed.
 *
 * Killed inside a chunk, the hotzone device is suspended and holds the
 * chunk's I/O, made for the new key.  If the header already counts the
 * chunk as done, the held I/O goes on.  If the header says the chunk is
 * being rewritten (crash state), its recovery needs the data device for
 * itself (libcryptsetup opens it exclusively): refused, the volume must be
 * detached.  If the header has not got to the chunk yet, the chunk is still
 * under the old key: the held I/O is failed, as libcryptsetup fails it on a
 * fatal error, and *ret_failed_io says so.
 *
 * Each chunk, libcryptsetup also suspends the overlay (then the hotzone)
 * to swap the overlay's table.  Killed between that suspend and the swap,
 * the overlay holds the file system's I/O on the table it still has live,
 * which matches the data (the hotzone, below it, is dealt with first): it
 * is resumed on that table.  Left suspended, the reload of NAME would wait
 * forever to freeze a file system whose writeback waits on the overlay.
 */
static int take_over_stack(struct re_state *s, const char *uuid, crypt_reencrypt_info ri, bool *ret_taken,
                           bool *ret_failed_io, struct kc_err *err) {
        char overlay[160], hotzone[160];
        uint64_t hot_start, hot_end, done;
        struct kc_dm_info oi, hi;
        int r;

        snprintf(overlay, sizeof(overlay), "%s-overlay", s->mapping);
        snprintf(hotzone, sizeof(hotzone), "%s-hotzone-forward", s->mapping);
        if (kc_dm_info(overlay, &oi) < 0 || !oi.exists)
                return 0;
        r = kc_dm_info(hotzone, &hi);
        if (r < 0)
                return kc_err_set(err, r, "cannot query mapping %s: %s", hotzone, strerror(-r));
        if (ri == CRYPT_REENCRYPT_CRASH)
                return kc_err_set(err, -EBUSY, "%s was killed while rewriting a chunk, whose crash recovery needs "
                                  "the volume detached: unmount it (if that hangs: dmsetup wipe_table %s), dmsetup "
                                  "remove %s %s %s, then attach: attach finishes the reencryption", s->mapping,
                                  hotzone, s->mapping, overlay, hotzone);
        if (hi.exists && hi.suspended) {
                r = new_key_sectors(s, &done);
                if (r >= 0)
                        r = hot_range(overlay, &hi, &hot_start, &hot_end);
                /* -ENOENT: the overlay's live table sends nothing there, so it holds nothing. */
                if (r == -ENOENT || (r >= 0 && hot_end <= done))
                        r = kc_dm_resume(hotzone);
                else {
                        r = kc_dm_replace(hotzone, "error", hi.size, "", false);
                        *ret_failed_io = r >= 0;
                }
                if (r < 0)
                        return kc_err_set(err, r, "cannot release the held I/O of %s: %s", hotzone, strerror(-r));
        }
        if (oi.suspended) {
                r = kc_dm_resume_live(overlay);
                if (r < 0)
                        return kc_err_set(err, r, "cannot release the held I/O of %s: %s", overlay, strerror(-r));
        }
        r = mapping_to_segments(s, uuid, overlay, err);
        if (r < 0)
                return r;
        r = kc_dm_remove(overlay, false);
        if (r >= 0 && hi.exists)
                r = kc_dm_remove(hotzone, false);
        if (r < 0 && r != -ENXIO)
                return kc_err_set(err, r, "cannot remove the helper devices of %s: %s", s->mapping, strerror(-r));
        *ret_taken = true;
        return 0;
}

/* ---- audit ---- */

/*
 * Starting and finishing change the header, so both are written ahead
 * (docs/audit.md): re_audit(s, ..., true, 0, err) before the change, which
 * is not made when it fails; re_audit(s, ..., false, result, err) after it
 * (1: made, its outcome record missing, err says so).
 */
static int re_audit(struct re_state *s, const char *detail, uint32_t version, bool intent, int result,
                    struct kc_err *err) {
        struct kc_audit_record rec = {
                .operation = "ReencryptVolume",
                .key_id = s->tok.key_id,
                .key_version = version,
                .context = s->tok.context,
                .detail = detail,
        };

        if (intent)
                return kc_kms_audit_intent(s->kms, &s->req, &rec, err);
        return kc_kms_audit_outcome(s->kms, &s->req, &rec, result, err);
}

/*
 * Started, but the outcome record is missing: stop here rather than
 * reencrypt a whole volume the audit log cannot follow.  The header says
 * "in progress", so --resume carries on once the log can be written.
 */
static int re_start_unrecorded(struct re_state *s, struct kc_err *err) {
        char why[sizeof(err->msg)];

        if (!err)
                return -EIO;
        snprintf(why, sizeof(why), "%s", err->msg);
        *err = (struct kc_err) {};
        return kc_err_set(err, -EIO, "%s: reencryption stopped: %s; resume with kmscrypt reencrypt --resume",
                          s->what, why);
}

/* ---- steps ---- */

/* Write the token (same id) and read it back with a fresh handle. */
static int token_commit(struct re_state *s, const struct kc_token *t, struct kc_err *err) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        _cleanup_(kc_token_clear) struct kc_token back = {};
        _cleanup_free_ char *a = NULL, *b = NULL;
        int id, r;

        r = kc_luks_token_write(s->luks, s->token_id, t, err);
        if (r < 0)
                return r;
        r = kc_luks_open(s->p->ref.device, s->p->ref.header, &l, err);
        if (r >= 0)
                r = kc_luks_token_read(l, &back, &id, err);
        if (r < 0)
                return r;
        if ((r = kc_token_format(&back, &a)) < 0 || (r = kc_token_format(t, &b)) < 0)
                return r;
        if (id != s->token_id || !streq(a, b))
                return kc_err_set(err, -EIO, "the kmscrypt token read back from %s differs from the one written", s->what);
        return 0;
}

static int check_recovery(struct re_state *s, struct kc_err *err) {
        _cleanup_secret_ void *key = NULL;
        unsigned n = recovery_keyslots(s);

        if (n == 0)
                return 0;
        if (!s->p->recovery_passphrase)
                return kc_err_set(err, -EPERM, "%s has %u recovery keyslot%s for the old key; give its passphrase "
                                  "(--recovery-passphrase-file) to keep one for the new key", s->what, n,
                                  n == 1 ? "" : "s");
        return kc_luks_volume_key_by_passphrase(s->luks, s->p->recovery_passphrase, s->p->recovery_passphrase_len,
                                                &key, err);
}

/*
 * Start: new key, passphrase, both wrapped into the token member with the
 * numbers of two free keyslots.  Everything that can refuse does so before
 * this one metadata write; the keyslots follow (add_keyslots).
 */
static int step_start(struct re_state *s, struct kc_err *err) {
        _cleanup_(kc_data_key_clear) struct kc_data_key dk = {}, wp = {};
        _cleanup_secret_ void *key = NULL;
        struct kc_token_reencrypt *re;
        struct kc_token t;
        int slots[2], r;

        r = old_key(s, &key, err);
        if (r < 0)
                return r;
        r = check_recovery(s, err);
        if (r < 0)
                return r;
        r = free_keyslots(s, slots, err);
        if (r < 0)
                return r;
        s->pass = kc_secret_alloc(PASSPHRASE_SIZE);
        if (!s->pass)
                return -ENOMEM;
        if (getrandom(s->pass, PASSPHRASE_SIZE, 0) != PASSPHRASE_SIZE)
                return kc_err_set(err, -EIO, "cannot get random bytes for the reencryption passphrase");

        r = kc_kms_generate_data_key(s->kms, &s->req, s->key_ref, s->tok.context, KEY_SIZE, &dk, err);
        if (r < 0)
                return r;
        r = kc_kms_encrypt(s->kms, &s->req, s->key_ref, s->pass_ctx, s->pass, PASSPHRASE_SIZE, &wp, err);
        if (r < 0)
                return r;
        if (dk.blob_len == 0 || dk.blob_len > KC_TOKEN_WRAPPED_MAX || wp.blob_len == 0 ||
            wp.blob_len > KC_TOKEN_WRAPPED_MAX)
                return kc_err_set(err, -EIO, "the KMS returned an unusable wrapped key");

        re = calloc(1, sizeof(*re));
        if (!re)
                return -ENOMEM;
        *re = (struct kc_token_reencrypt) {
                .wrapped_passphrase = TAKE_PTR(wp.blob), .wrapped_passphrase_len = wp.blob_len,
                .wrapped_key = TAKE_PTR(dk.blob), .wrapped_key_len = dk.blob_len,
                .key_version = dk.key_version, .keyslot_old = slots[0], .keyslot_new = slots[1],
        };
        t = s->tok;
        t.reencrypt = re;
        r = re_audit(s, "start", dk.key_version, true, 0, err);
        if (r >= 0)
                r = re_audit(s, "started", dk.key_version, false, token_commit(s, &t, err), err);
        if (r < 0) {
                kc_token_reencrypt_free(re);
                return r;
        }
        s->tok.reencrypt = re;
        return r > 0 ? re_start_unrecorded(s, err) : 0;
}

static const struct kc_luks_pbkdf temp_pbkdf = {
        /* The passphrase is 256 random bits: a slow PBKDF would protect nothing and cost time twice. */
        .type = "pbkdf2",
        .iterations = 1000,
};

/*
 * Whether the new key still lacks the recovery keyslot the old key has: 1
 * when a keyslot other than the two temporary ones is bound to the old
 * key's digest and none to the new key's (keyslot_new's).  Both temporary
 * keyslots are there.
 */
static int recovery_missing(struct re_state *s, struct kc_err *err) {
        const struct kc_token_reencrypt *re = s->tok.reencrypt;
        _cleanup_json_ struct json_object *hdr = NULL;
        struct json_object *digests;
        unsigned on_old = 0, on_new = 0;
        char id[16];
        int dold, dnew, r;

        r = read_digests(s, &hdr, &digests, &dold, &dnew, err);
        if (r < 0)
                return r;
        for (int i = 0; i < crypt_keyslot_max(CRYPT_LUKS2); i++) {
                int d;

                if (i == re->keyslot_old || i == re->keyslot_new || !keyslot_active(s->cd, i))
                        continue;
                snprintf(id, sizeof(id), "%d", i);
                d = digest_listing(digests, "keyslots", id);
                on_old += d >= 0 && d == dold;
                on_new += d >= 0 && d == dnew;
        }
        return on_old > 0 && on_new == 0;
}

/*
 * The two temporary keyslots (again, after a crash), and the new recovery
 * keyslot: at the start when a passphrase is given, and on a resume when
 * the header shows it missing (a failure or a kill before it was added):
 * then its passphrase is required, for libcryptsetup wipes the old key's
 * keyslots at the end and the volume would be left to the KMS alone.
 */
static int add_keyslots(struct re_state *s, bool starting, int *ret_recovery, struct kc_err *err) {
        const struct kc_token_reencrypt *re = s->tok.reencrypt;
        _cleanup_secret_ void *okey = NULL, *nkey = NULL;
        int r;

        r = passphrase(s, err);
        if (r < 0)
                return r;
        r = kc_luks_set_pbkdf(s->luks, &temp_pbkdf, err);
        if (r < 0)
                return r;
        if (!keyslot_active(s->cd, re->keyslot_old)) {
                r = old_key(s, &okey, err);
                if (r < 0)
                        return r;
                r = crypt_keyslot_add_by_volume_key(s->cd, re->keyslot_old, okey, kc_secret_size(okey),
                                                    s->pass, PASSPHRASE_SIZE);
                if (r < 0)
                        return kc_err_set(err, r, "cannot add keyslot %d to %s: %s", re->keyslot_old, s->what,
                                          strerror(-r));
        }
        if (!keyslot_active(s->cd, re->keyslot_new)) {
                r = new_key(s, &nkey, err);
                if (r < 0)
                        return r;
                r = crypt_keyslot_add_by_key(s->cd, re->keyslot_new, nkey, KEY_SIZE, s->pass, PASSPHRASE_SIZE,
                                             CRYPT_VOLUME_KEY_NO_SEGMENT);
                if (r < 0)
                        return kc_err_set(err, r, "cannot add keyslot %d to %s: %s", re->keyslot_new, s->what,
                                          strerror(-r));
        }
        if (!starting) {
                r = recovery_missing(s, err);
                if (r <= 0)
                        return r;
                /* Refused without the passphrase: the reencryption waits, with the old key's keyslots. */
                r = check_recovery(s, err);
                if (r < 0)
                        return r;
        } else if (!s->p->recovery_passphrase)
                return 0;
        if (!nkey) {
                r = new_key(s, &nkey, err);
                if (r < 0)
                        return r;
        }
        /* The old recovery keyslot goes with the old key (libcryptsetup wipes it at the end). */
        r = crypt_set_pbkdf_type(s->cd, NULL);
        if (r >= 0)
                r = kc_luks_set_pbkdf(s->luks, s->p->pbkdf, err);
        if (r < 0)
                return kc_err_set(err, r, "cannot set the recovery keyslot PBKDF: %s", strerror(-r));
        /* The digest of keyslot_new, which the data segment takes over at the end: bound then, not orphaned. */
        r = crypt_keyslot_add_by_key(s->cd, CRYPT_ANY_SLOT, nkey, KEY_SIZE, s->p->recovery_passphrase,
                                     s->p->recovery_passphrase_len,
                                     CRYPT_VOLUME_KEY_NO_SEGMENT | CRYPT_VOLUME_KEY_DIGEST_REUSE);
        if (r < 0)
                return kc_err_set(err, r, "cannot add the new recovery keyslot to %s: %s", s->what, strerror(-r));
        *ret_recovery = r;
        return 0;
}

static int reencrypt_init(struct re_state *s, bool resume, struct kc_err *err) {
        const struct kc_token_reencrypt *re = s->tok.reencrypt;
        const char *resilience = s->p->resilience ?: "checksum";
        struct crypt_params_luks2 luks2 = { .sector_size = (uint32_t) crypt_get_sector_size(s->cd) };
        struct crypt_params_reencrypt rp = {
                .mode = CRYPT_REENCRYPT_REENCRYPT,
                .direction = CRYPT_REENCRYPT_FORWARD,
                .resilience = resilience,
                .hash = streq(resilience, "checksum") ? "sha256" : NULL,
                .luks2 = &luks2,
                .flags = resume ? CRYPT_REENCRYPT_RESUME_ONLY : 0,
        };
        int r;

        /* A rate limit is kept by sleeping between hotzones: keep them small enough to be smooth. */
        if (s->p->rate_limit)
                rp.max_hotzone_size = (s->p->rate_limit / 4 > (1u << 20) ? s->p->rate_limit / 4 : 1u << 20) / 512;
        r = passphrase(s, err);
        if (r < 0)
                return r;
        kc_dm_lock();
        r = crypt_reencrypt_init_by_passphrase(s->cd, s->mapping, s->pass, PASSPHRASE_SIZE, re->keyslot_old,
                                               re->keyslot_new, resume ? NULL : "aes",
                                               resume ? NULL : "xts-plain64", &rp);
        kc_dm_unlock();
        if (r < 0)
                return kc_err_set(err, r, "libcryptsetup refused to %s the reencryption of %s%s%s: %s",
                                  resume ? "resume" : "start", s->what, s->mapping ? " as " : "",
                                  strempty(s->mapping), strerror(-r));
        return 0;
}

/*
 * A crash inside a chunk (power cut, kill -9) leaves the hotzone half
 * rewritten: libcryptsetup restores it from its checksums or journal before
 * anything may go on, and only with the volume not in use.
 */
static int recover(struct re_state *s, struct kc_err *err) {
        const struct kc_token_reencrypt *re = s->tok.reencrypt;
        struct crypt_params_reencrypt rp = { .flags = CRYPT_REENCRYPT_RECOVERY };
        int r;

        if (s->mapping)
                return kc_err_set(err, -EBUSY, "%s needs the crash recovery of its reencryption, which needs it "
                                  "detached; detach %s, then attach: attach finishes it", s->what, s->mapping);
        r = passphrase(s, err);
        if (r < 0)
                return r;
        kc_dm_lock();
        r = crypt_reencrypt_init_by_passphrase(s->cd, NULL, s->pass, PASSPHRASE_SIZE, re->keyslot_old,
                                               re->keyslot_new, NULL, NULL, &rp);
        kc_dm_unlock();
        if (r < 0)
                return kc_err_set(err, r, "crash recovery of the reencryption of %s failed: %s", s->what, strerror(-r));
        return 0;
}

static uint64_t elapsed_ns(const struct timespec *t0) {
        struct timespec t;

        clock_gettime(CLOCK_MONOTONIC, &t);
        return (uint64_t) (t.tv_sec - t0->tv_sec) * 1000000000ull + (uint64_t) t.tv_nsec - (uint64_t) t0->tv_nsec;
}

static void rate_origin_at(struct re_state *s, uint64_t done) {
        s->origin_set = true;
        s->done0 = done;
        clock_gettime(CLOCK_MONOTONIC, &s->t0);
}

/*
 * The rate limit counts from the run's start, where the header says how
 * far it got.  libcryptsetup reports progress only after each chunk, so an
 * origin taken at the first report let the first two chunks run unlimited.
 * Without the header's figure, the first report is the origin.
 */
static void rate_origin(struct re_state *s) {
        uint64_t sectors;

        s->origin_set = false;
        if (new_key_sectors(s, &sectors) >= 0)
                rate_origin_at(s, sectors * 512);
}

static int progress_cb(uint64_t size, uint64_t offset, void *userdata) {
        struct re_state *s = userdata;

        if (!s->origin_set) {
                rate_origin_at(s, offset);
        } else if (s->p->rate_limit && offset > s->done0) {
                uint64_t want = (offset - s->done0) * 1000000000ull / s->p->rate_limit, have = elapsed_ns(&s->t0);

                if (want > have)
                        (void) nanosleep(&(struct timespec) { .tv_sec = (time_t) ((want - have) / 1000000000ull),
                                                              .tv_nsec = (long) ((want - have) % 1000000000ull) }, NULL);
        }
        if (s->p->progress && s->p->progress(offset, size, s->p->userdata) != 0) {
                s->stopped = true;
                return 1;
        }
        return 0;
}

/*
 * Finish: the new blob must open the volume (Decrypt + digest of the now
 * single segment); the mapping goes back on our logon key; the temporary
 * keyslots go; the token loses its member in one metadata write.
 */
static int step_finish(struct re_state *s, const char *uuid, struct kc_err *err) {
        const struct kc_token_reencrypt *re = s->tok.reencrypt;
        _cleanup_secret_ void *key = NULL;
        struct kc_token t;
        char detail[96];
        int r;

        r = new_key(s, &key, err);
        if (r < 0)
                return r;
        t = s->tok;
        r = kc_luks_bind_key(s->luks, key, KEY_SIZE, &t);
        if (r < 0)
                return kc_err_set(err, -EBADMSG, "the new data key does not match the LUKS2 digest of %s; "
                                  "token left as it is", s->what);
        snprintf(detail, sizeof(detail), "finish, from version %u, token %d", s->tok.key_version, s->token_id);
        r = re_audit(s, detail, re->key_version, true, 0, err);
        if (r < 0)
                return r;
        /* From here every end, failed too, gets its outcome record: an intent alone means a kill. */
        r = s->mapping ? mapping_to_kmscrypt(s, uuid, key, err) : 0;
        for (int slot = 0; r >= 0 && slot < crypt_keyslot_max(CRYPT_LUKS2); slot++) {
                if ((slot != re->keyslot_old && slot != re->keyslot_new) || !keyslot_active(s->cd, slot))
                        continue;
                r = crypt_keyslot_destroy(s->cd, slot);
                if (r < 0)
                        r = kc_err_set(err, r, "cannot remove keyslot %d of %s: %s", slot, s->what, strerror(-r));
        }
        if (r >= 0) {
                t.wrapped_key = re->wrapped_key;
                t.wrapped_key_len = re->wrapped_key_len;
                t.key_version = re->key_version;
                t.reencrypt = NULL;
                r = token_commit(s, &t, err);
        }
        snprintf(detail, sizeof(detail), "finished, from version %u, token %d", s->tok.key_version, s->token_id);
        return re_audit(s, detail, re->key_version, false, r, err);
}

/* A fresh handle on the header, after libcryptsetup rewrote it. */
static int reload(struct re_state *s, struct kc_err *err) {
        int r;

        kc_luks_close(s->luks);
        s->luks = NULL;
        s->cd = NULL;
        kc_token_clear(&s->tok);
        r = kc_luks_open(s->p->ref.device, s->p->ref.header, &s->luks, err);
        if (r < 0)
                return r;
        s->cd = kc_luks_crypt_device(s->luks);
        return kc_luks_token_read(s->luks, &s->tok, &s->token_id, err);
}

static int load(struct re_state *s, struct kc_reencrypt_result *res, struct kc_err *err) {
        const char *uuid;
        int r;

        r = reload(s, err);
        if (r < 0)
                return r;
        if (s->p->expect && !kc_context_equal(s->tok.context, s->p->expect))
                return kc_err_set(err, -EPERM, "%s is bound to another context than expected", s->what);
        uuid = crypt_get_uuid(s->cd);
        kc_strscpy(res->uuid, sizeof(res->uuid), strempty(uuid));
        s->req.volume = res->uuid;
        kc_strscpy(res->provider, sizeof(res->provider), s->tok.provider);
        kc_strscpy(res->key_id, sizeof(res->key_id), s->tok.key_id);
        res->old_key_version = s->tok.key_version;
        r = kc_token_key_ref(&s->tok, &s->key_ref);
        if (r < 0)
                return r;
        r = kc_context_copy(s->tok.context, &s->pass_ctx);
        if (r < 0)
                return r;
        return kc_context_set(s->pass_ctx, PURPOSE_KEY, PURPOSE_VALUE, err);
}

/* Has the reencryption run to its end (the segment is under the new key)? */
static int finished(struct re_state *s, bool *ret, struct kc_err *err) {
        _cleanup_secret_ void *key = NULL;
        int r;

        r = new_key(s, &key, err);
        if (r < 0)
                return r;
        *ret = kc_luks_verify_key(s->luks, key, KEY_SIZE, NULL) == 0;
        return 0;
}

static int run(struct re_state *s, struct kc_reencrypt_result *res, struct kc_err *err) {
        crypt_reencrypt_info ri;
        bool done = false;
        int r;

        r = load(s, res, err);
        if (r < 0)
                return r;
        ri = crypt_reencrypt_status(s->cd, NULL);
        if (ri == CRYPT_REENCRYPT_INVALID)
                return kc_err_set(err, -EINVAL, "%s has an invalid reencryption state", s->what);
        if (!s->tok.reencrypt && ri != CRYPT_REENCRYPT_NONE)
                return kc_err_set(err, -EBUSY, "%s is being reencrypted, but not by kmscrypt (no reencryption "
                                  "in its token); finish it with cryptsetup", s->what);
        if (!s->tok.reencrypt && s->p->resume)
                return kc_err_set(err, -ENOENT, "%s has no reencryption in progress", s->what);
        res->resumed = s->tok.reencrypt != NULL;
        r = find_mapping(s, res->uuid, err);
        if (r < 0)
                return r;
        kc_strscpy(res->mapping, sizeof(res->mapping), strempty(s->mapping));

        if (!s->tok.reencrypt) {
                r = step_start(s, err);
                if (r < 0)
                        return r;
                kc_fault_point("reencrypt:after-start");
                r = add_keyslots(s, true, &res->recovery_keyslot, err);
        } else if (ri == CRYPT_REENCRYPT_NONE) {
                r = finished(s, &done, err);
                if (r >= 0 && !done)
                        r = add_keyslots(s, false, &res->recovery_keyslot, err);
        }
        if (r < 0)
                return r;
        res->new_key_version = s->tok.reencrypt->key_version;

        if (!done && ri != CRYPT_REENCRYPT_NONE && s->mapping) {
                r = take_over_stack(s, res->uuid, ri, &res->stack_taken_over, &res->held_io_failed, err);
                if (r < 0)
                        return r;
        }
        if (!done) {
                if (ri == CRYPT_REENCRYPT_NONE && s->mapping) {
                        r = mapping_to_cryptsetup(s, res->uuid, err);
                        if (r < 0)
                                return r;
                }
                if (ri == CRYPT_REENCRYPT_CRASH) {
                        r = recover(s, err);
                        if (r < 0)
                                return r;
                }
                r = reencrypt_init(s, ri != CRYPT_REENCRYPT_NONE, err);
                if (r < 0)
                        return r;
                /*
                 * libcryptsetup drives libdevmapper from inside the run (hotzone
                 * reloads), so no other thread may use libdm meanwhile: in
                 * kmscryptd, other attaches wait for a reencryption it finishes.
                 */
                rate_origin(s);
                kc_dm_lock();
                r = crypt_reencrypt_run(s->cd, progress_cb, s);
                kc_dm_unlock();
                if (s->stopped) {
                        res->stopped = true;
                        return 0;
                }
                if (r < 0)
                        return kc_err_set(err, r, "reencryption of %s failed: %s (resume with kmscrypt reencrypt "
                                          "--resume)", s->what, strerror(-r));
                r = reload(s, err);
                if (r < 0)
                        return r;
                if (crypt_reencrypt_status(s->cd, NULL) != CRYPT_REENCRYPT_NONE || !s->tok.reencrypt)
                        return kc_err_set(err, -EIO, "reencryption of %s did not reach its end", s->what);
        }
        return step_finish(s, res->uuid, err);
}

int kc_reencrypt(struct kc_kms *kms, const struct kc_caller *caller, const struct kc_reencrypt_params *p,
                 struct kc_reencrypt_result *ret, struct kc_err *err) {
        struct re_state s = { .kms = kms, .p = p, .req = { .caller = caller }, .token_id = -1 };
        struct kc_reencrypt_result res = { .recovery_keyslot = -1 };
        int r;

        if (!kms || !p || !ret)
                return -EINVAL;
        if (!p->ref.device || !*p->ref.device)
                return kc_err_set(err, -EINVAL, "no device given");
        if (p->resilience && !streq(p->resilience, "checksum") && !streq(p->resilience, "journal"))
                return kc_err_set(err, -EINVAL, "resilience must be checksum or journal, not \"%s\"", p->resilience);
        if (p->recovery_passphrase) {
                /* The new recovery keyslot comes after the temporary ones: refuse its cost before any is added. */
                r = kc_luks_pbkdf_check(p->pbkdf, err);
                if (r < 0)
                        return r;
        }
        s.what = p->ref.header ?: p->ref.device;
        r = run(&s, &res, err);
        re_state_done(&s);
        if (r < 0)
                return r;
        *ret = res;
        return r;
}

int kc_reencrypt_pending(const struct kc_volume_ref *ref, struct kc_err *err) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        _cleanup_(kc_token_clear) struct kc_token t = {};
        int r;

        r = kc_luks_open(ref->device, ref->header, &l, err);
        if (r < 0)
                return r;
        /*
         * Ours only: the token's reencrypt member is written before the
         * reencryption starts and removed after it ends, so it covers every
         * crash state.  A LUKS2 reencryption without it (cryptsetup's, or a
         * forged header) has keyslots we hold no passphrase for; attach
         * refuses it in one line instead of trying to carry it on.
         */
        r = kc_luks_token_read(l, &t, NULL, NULL);
        return r >= 0 && t.reencrypt;
}
