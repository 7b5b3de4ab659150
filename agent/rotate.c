/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Rewrap, rebind, key usage and encrypted copies (agent/rotate.h).  The
 * order of kc_rewrap() is the point: everything that can refuse does so
 * before the single metadata write, and the new blob is proven to open the
 * volume (KMS Decrypt + LUKS2 digest) before it replaces the old one.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "agent/attach.h"
#include "agent/blockdev.h"
#include "agent/daemon/volumes.h"
#include "agent/rotate.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "lib/fault.h"
#include "lib/fileio.h"
#include "lib/json-util.h"
#include "lib/log.h"
#include "lib/macro.h"
#include "lib/secret.h"
#include "lib/strv.h"

/* ---- rewrap ---- */

struct rewrap_state {
        struct kc_kms *kms;
        struct kc_kms_request req;
        const struct kc_rewrap_params *p;
        const char *what;                       /* header path for messages */
        struct kc_luks *luks;
        struct kc_token old;
        int token_id;
        char *old_ref;
        const struct kc_context *dst_ctx;
        const char *dst_provider;
};

static void rewrap_state_done(struct rewrap_state *s) {
        kc_luks_close(s->luks);
        kc_token_clear(&s->old);
        free(s->old_ref);
}

/* Header and token; a header in the middle of a reencryption is left to `kmscrypt reencrypt`. */
static int rewrap_load(struct rewrap_state *s, struct kc_rewrap_result *res, struct kc_err *err) {
        struct kc_luks_segment seg;
        int r;

        r = kc_luks_open(s->p->ref.device, s->p->ref.header, &s->luks, err);
        if (r < 0)
                return r;
        r = kc_luks_token_read(s->luks, &s->old, &s->token_id, err);
        if (r < 0)
                return r;
        r = kc_luks_segment(s->luks, &seg);
        /* A token carrying a reencryption must keep it: the member is how it resumes. */
        if (r == -EOPNOTSUPP || (r >= 0 && s->old.reencrypt))
                return kc_err_set(err, -EBUSY, "%s has a reencryption in progress; finish it first "
                                  "(kmscrypt reencrypt --resume)", s->what);
        if (r < 0)
                return kc_err_set(err, r, "cannot read the data segment of %s: %s", s->what, strerror(-r));
        r = kc_token_key_ref(&s->old, &s->old_ref);
        if (r < 0)
                return r;
        kc_strscpy(res->uuid, sizeof(res->uuid), seg.uuid);
        kc_strscpy(res->provider, sizeof(res->provider), s->old.provider);
        kc_strscpy(res->old_key_id, sizeof(res->old_key_id), s->old.key_id);
        res->old_key_version = s->old.key_version;
        res->token_id = s->token_id;
        return 0;
}

/* Where the key goes: the provider of dst_key_ref, else the token's. */
static int rewrap_target(struct rewrap_state *s, struct kc_err *err) {
        const struct kc_kms_provider *prov;
        const char *key;
        int r;

        s->dst_ctx = s->p->dst_context ?: s->old.context;
        if (s->p->dst_context) {
                r = kc_volume_check_context(s->p->dst_context, err);
                if (r < 0)
                        return r;
        }
        if (!s->p->dst_key_ref) {
                s->dst_provider = s->old.provider;
                return 0;
        }
        r = kc_kms_resolve(s->p->dst_key_ref, &prov, &key, err);
        if (r < 0)
                return r;
        s->dst_provider = prov->name;
        return 0;
}

/* Nothing to do: same key, same context, and the token already names the newest version. */
static int rewrap_is_current(struct rewrap_state *s, bool *ret, struct kc_err *err) {
        struct kc_key_info info;
        int r;

        *ret = false;
        if (s->p->always || s->p->dst_key_ref || s->p->dst_context)
                return 0;
        r = kc_kms_describe_key(s->kms, &s->req, s->old_ref, &info, err);
        if (r < 0)
                return r;
        *ret = streq(info.key_id, s->old.key_id) && info.current_version == s->old.key_version;
        return 0;
}

/*
 * The new blob must open this volume: KMS Decrypt under the new context,
 * then the LUKS2 digest, which also gives t, the token to write, its key
 * check.
 */
static int rewrap_prove(struct rewrap_state *s, const char *new_ref, const struct kc_data_key *dk,
                        struct kc_token *t, struct kc_err *err) {
        _cleanup_secret_ void *key = NULL;
        int r;

        r = kc_kms_decrypt(s->kms, &s->req, new_ref, dk->blob, dk->blob_len, s->dst_ctx, &key, NULL, NULL, err);
        if (r < 0)
                return r;
        r = kc_luks_bind_key(s->luks, key, kc_secret_size(key), t);
        if (r == -EPERM)
                return kc_err_set(err, -EPERM, "the rewrapped key does not match the LUKS2 digest of %s; "
                                  "nothing written", s->what);
        if (r < 0)
                return kc_err_set(err, r, "cannot check the rewrapped key against %s: %s", s->what, strerror(-r));
        return 0;
}

/* A fresh handle on the header: the token on disk serialises exactly as the one written. */
static int rewrap_read_back(const struct rewrap_state *s, const struct kc_token *written, struct kc_err *err) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        _cleanup_(kc_token_clear) struct kc_token t = {};
        _cleanup_free_ char *a = NULL, *b = NULL;
        int id, r;

        r = kc_luks_open(s->p->ref.device, s->p->ref.header, &l, err);
        if (r < 0)
                return r;
        r = kc_luks_token_read(l, &t, &id, err);
        if (r < 0)
                return r;
        if ((r = kc_token_format(&t, &a)) < 0 || (r = kc_token_format(written, &b)) < 0)
                return r;
        if (id != s->token_id || !streq(a, b))
                return kc_err_set(err, -EIO, "the kmscrypt token read back from %s differs from the one written",
                                  s->what);
        return 0;
}

static int rewrap_write(struct rewrap_state *s, const struct kc_token *t, struct kc_err *err) {
        int r;

        r = kc_luks_token_write(s->luks, s->token_id, t, err);
        if (r < 0)
                return r;
        return rewrap_read_back(s, t, err);
}

/*
 * The header change is written ahead (docs/audit.md): rewrap_audit(s, dk,
 * true, 0, err) records the intent before the token is written, and nothing
 * is written when it fails; rewrap_audit(s, dk, false, result, err) records
 * the outcome (1: written, its outcome record missing).
 */
static int rewrap_audit(struct rewrap_state *s, const struct kc_data_key *dk, bool intent, int result,
                        struct kc_err *err) {
        char detail[400];
        struct kc_audit_record rec = {
                .operation = s->p->dst_context ? "RebindVolume" : "RewrapVolume",
                .key_id = dk->key_id,
                .key_version = dk->key_version,
                .context = s->dst_ctx,
                .detail = detail,
        };

        snprintf(detail, sizeof(detail), "from %s version %u, token %d", s->old_ref, s->old.key_version, s->token_id);
        if (intent)
                return kc_kms_audit_intent(s->kms, &s->req, &rec, err);
        return kc_kms_audit_outcome(s->kms, &s->req, &rec, result, err);
}

static int rewrap_run(struct rewrap_state *s, struct kc_rewrap_result *res, struct kc_err *err) {
        _cleanup_(kc_data_key_clear) struct kc_data_key dk = {};
        _cleanup_(kc_token_clear) struct kc_token t = {};
        _cleanup_free_ char *new_ref = NULL;
        bool current;
        int r;

        r = rewrap_load(s, res, err);
        if (r < 0)
                return r;
        s->req.volume = res->uuid;
        r = rewrap_target(s, err);
        if (r < 0)
                return r;
        r = rewrap_is_current(s, &current, err);
        if (r < 0)
                return r;
        if (current) {
                res->current = true;
                kc_strscpy(res->new_key_id, sizeof(res->new_key_id), s->old.key_id);
                res->new_key_version = s->old.key_version;
                return 0;
        }

        /* ReEncrypt: the KMS moves the key; this process never sees it in this step. */
        r = kc_kms_re_encrypt(s->kms, &s->req, s->old_ref, s->old.wrapped_key, s->old.wrapped_key_len,
                              s->old.context, s->p->dst_key_ref, s->dst_ctx, &dk, err);
        if (r < 0)
                return r;
        if (dk.plaintext || dk.blob_len == 0 || dk.blob_len > KC_TOKEN_WRAPPED_MAX)
                return kc_err_set(err, -EIO, "the KMS returned an unusable re-encrypted key");
        kc_fault_point("rewrap:after-reencrypt");
        if (asprintf(&new_ref, "%s:%s", s->dst_provider, dk.key_id) < 0)
                return -ENOMEM;
        r = kc_volume_token_build(s->dst_provider, &dk, s->dst_ctx, &t);
        if (r < 0)
                return kc_err_set(err, r, "cannot build the new kmscrypt token: %s", strerror(-r));
        r = rewrap_prove(s, new_ref, &dk, &t, err);
        if (r < 0)
                return r;
        kc_strscpy(res->new_key_id, sizeof(res->new_key_id), dk.key_id);
        res->new_key_version = dk.key_version;
        if (s->p->dry_run)
                return 0;

        kc_fault_point("rewrap:after-prove");
        r = rewrap_audit(s, &dk, true, 0, err);
        if (r < 0)
                return r;
        r = rewrap_write(s, &t, err);
        kc_fault_point("rewrap:after-write");
        /* The write is recorded whatever its outcome: a failed write may still have reached the disk. */
        r = rewrap_audit(s, &dk, false, r, err);
        if (r < 0)
                return r;
        res->changed = true;
        return r;
}

int kc_rewrap(struct kc_kms *kms, const struct kc_caller *caller, const struct kc_rewrap_params *p,
              struct kc_rewrap_result *ret, struct kc_err *err) {
        struct rewrap_state s = {
                .kms = kms, .p = p, .req = { .caller = caller }, .token_id = -1,
        };
        struct kc_rewrap_result res = {};
        int r;

        if (!kms || !p || !ret)
                return -EINVAL;
        if (!p->ref.device || !*p->ref.device)
                return kc_err_set(err, -EINVAL, "no device given");
        s.what = p->ref.header ?: p->ref.device;
        r = rewrap_run(&s, &res, err);
        rewrap_state_done(&s);
        if (r < 0)
                return r;
        *ret = res;
        return r;
}

/* ---- known volumes ---- */

static void known_volume_clear(struct kc_known_volume *v) {
        free(v->name);
        free(v->device);
        free(v->header);
        free(v->mapping);
        kc_context_free(v->context);
}

void kc_known_volumes_free(struct kc_known_volumes *k) {
        if (!k)
                return;
        for (size_t i = 0; i < k->n; i++)
                known_volume_clear(&k->v[i]);
        free(k->v);
        free(k);
}

/* Two paths name the same device: same device number, or the same file. */
static bool same_device(const char *a, const char *b) {
        struct stat sa, sb;

        if (!a || !b)
                return false;
        if (stat(a, &sa) < 0 || stat(b, &sb) < 0)
                return streq(a, b);
        if (S_ISBLK(sa.st_mode) && S_ISBLK(sb.st_mode))
                return sa.st_rdev == sb.st_rdev;
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static struct kc_known_volume *known_find(struct kc_known_volumes *k, const char *device) {
        for (size_t i = 0; i < k->n; i++)
                if (same_device(k->v[i].device, device))
                        return &k->v[i];
        return NULL;
}

static int strdup_or_null(const char *s, char **ret) {
        *ret = NULL;
        if (s && !(*ret = strdup(s)))
                return -ENOMEM;
        return 0;
}

/* Append an entry, or return the existing one for the same device. */
static int known_add(struct kc_known_volumes *k, const char *name, const char *device, const char *header,
                     struct kc_known_volume **ret) {
        struct kc_known_volume *v = device ? known_find(k, device) : NULL, *grown;

        if (v) {
                if (!v->name && name && strdup_or_null(name, &v->name) < 0)
                        return -ENOMEM;
                *ret = v;
                return 0;
        }
        grown = realloc(k->v, (k->n + 1) * sizeof(*k->v));
        if (!grown)
                return -ENOMEM;
        k->v = grown;
        v = &k->v[k->n++];
        *v = (struct kc_known_volume) {};
        if (strdup_or_null(name, &v->name) < 0 || strdup_or_null(device, &v->device) < 0 ||
            strdup_or_null(header, &v->header) < 0)
                return -ENOMEM;
        *ret = v;
        return 0;
}

/* Token facts of one volume; a failure is recorded in the entry, not returned. */
static void known_read_header(struct kc_known_volume *v) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        _cleanup_(kc_token_clear) struct kc_token t = {};
        struct kc_luks_segment seg;
        struct kc_err err = {};
        int r;

        if (!v->device)
                return;
        r = kc_luks_open(v->device, v->header, &l, &err);
        if (r >= 0)
                r = kc_luks_token_read(l, &t, NULL, &err);
        if (r < 0) {
                v->error = r;
                kc_strscpy(v->reason, sizeof(v->reason), kc_err_msg(&err, r));
                return;
        }
        kc_strscpy(v->provider, sizeof(v->provider), t.provider);
        kc_strscpy(v->key_id, sizeof(v->key_id), t.key_id);
        v->key_version = t.key_version;
        v->context = TAKE_PTR(t.context);
        if (kc_luks_segment(l, &seg) >= 0)
                kc_strscpy(v->uuid, sizeof(v->uuid), seg.uuid);
        else
                kc_strscpy(v->reason, sizeof(v->reason), "reencryption in progress");
}

static int scan_volumes_file(struct kc_known_volumes *k, const char *path, struct kc_err *err) {
        _cleanup_volumes_ struct kc_volumes *vs = NULL;
        int r;

        if (!path)
                return 0;
        r = kc_volumes_load(path, &vs, err);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        for (size_t i = 0; i < vs->n; i++) {
                const struct kc_volume_conf *c = &vs->volumes[i];
                _cleanup_free_ char *dev = NULL;
                struct kc_known_volume *v;
                struct kc_err rerr = {};
                int q = kc_resolve_device(c->device, &dev, &rerr);

                r = known_add(k, c->name, q >= 0 ? dev : NULL, c->header, &v);
                if (r < 0)
                        return r;
                if (q < 0) {
                        v->error = q;
                        kc_strscpy(v->reason, sizeof(v->reason), kc_err_msg(&rerr, q));
                }
        }
        return 0;
}

/* Attached kmscrypt mappings; none where device-mapper is not there (this is a header tool too). */
static int scan_mappings(struct kc_known_volumes *k) {
        _cleanup_strv_ char **names = NULL;
        int r;

        if (!kc_dm_available())
                return 0;
        r = kc_volume_list(&names);
        if (r < 0)
                return r;
        for (size_t i = 0; names[i]; i++) {
                struct kc_volume_status st;
                struct kc_known_volume *v;

                if (kc_volume_status(names[i], NULL, &st, NULL) < 0)
                        continue;       /* gone meanwhile */
                r = known_add(k, names[i], st.device, NULL, &v);
                kc_volume_status_clear(&st);
                if (r < 0 || (!v->mapping && strdup_or_null(names[i], &v->mapping) < 0))
                        return r < 0 ? r : -ENOMEM;
        }
        return 0;
}

static int scan_devices(struct kc_known_volumes *k, char *const *devices, struct kc_err *err) {
        for (size_t i = 0; devices && devices[i]; i++) {
                _cleanup_free_ char *dev = NULL;
                struct kc_known_volume *v;
                int r = kc_resolve_device(devices[i], &dev, err);

                if (r < 0)
                        return r;
                r = known_add(k, NULL, dev, NULL, &v);
                if (r < 0)
                        return r;
                v->given = true;
        }
        return 0;
}

int kc_known_volumes_scan(const char *volumes_file, char *const *devices, struct kc_known_volumes **ret,
                          struct kc_err *err) {
        _cleanup_known_volumes_ struct kc_known_volumes *k = calloc(1, sizeof(*k));
        int r;

        if (!k || !ret)
                return k ? -EINVAL : -ENOMEM;
        r = scan_volumes_file(k, volumes_file, err);
        if (r < 0)
                return r;
        r = scan_mappings(k);
        if (r < 0)
                return kc_err_set(err, r, "cannot list the attached volumes: %s", strerror(-r));
        r = scan_devices(k, devices, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < k->n; i++)
                if (k->v[i].error == 0)
                        known_read_header(&k->v[i]);
        *ret = TAKE_PTR(k);
        return 0;
}

bool kc_known_volume_uses(const struct kc_known_volume *v, const struct kc_key_info *key) {
        return v->error == 0 && v->key_id[0] && streq(v->provider, key->provider) && streq(v->key_id, key->key_id);
}

int kc_mapping_of_device(const char *device, char **ret_name) {
        _cleanup_strv_ char **names = NULL;
        int r;

        if (!device)
                return -EINVAL;
        if (!kc_dm_available())
                return -ENOENT;
        r = kc_volume_list(&names);
        if (r < 0)
                return r;
        for (size_t i = 0; names[i]; i++) {
                struct kc_volume_status st;
                bool same;

                if (kc_volume_status(names[i], NULL, &st, NULL) < 0)
                        continue;
                same = same_device(st.device, device);
                kc_volume_status_clear(&st);
                if (same)
                        return ret_name ? strdup_or_null(names[i], ret_name) : 0;
        }
        return -ENOENT;
}

/* ---- key health ---- */

static unsigned count_keyslots(struct kc_luks *l) {
        _cleanup_json_ struct json_object *o = NULL;
        struct json_object *slots;

        if (kc_luks_dump_json(l, &o) < 0 || !json_object_object_get_ex(o, "Keyslots", &slots))
                return 0;
        return (unsigned) json_object_array_length(slots);
}

int kc_volume_key_health(struct kc_kms *kms, struct kc_key_lookups *lookups, const struct kc_kms_request *req,
                         const struct kc_volume_ref *ref, struct kc_volume_key_health *ret, struct kc_err *err) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        _cleanup_(kc_token_clear) struct kc_token t = {};
        _cleanup_free_ char *key_ref = NULL;
        struct kc_volume_key_health h = {};
        struct kc_key_info info;
        struct kc_err kerr = {};
        int r;

        if (!kms || !ref || !ret)
                return -EINVAL;
        r = kc_luks_open_read(ref->device, ref->header, &l, err);
        if (r >= 0)
                r = kc_luks_token_read(l, &t, NULL, err);
        if (r >= 0)
                r = kc_token_key_ref(&t, &key_ref);
        if (r < 0)
                return r;
        h.recovery_keyslots = count_keyslots(l);
        r = kc_kms_describe_key_in(kms, lookups, req, key_ref, &info, &kerr);
        if (r >= 0) {
                h.known = true;
                h.state = info.state;
        } else if (r == -ENOENT || r == -ENOKEY) {
                /* A key the keystore no longer has is as gone as a destroyed one. */
                h.known = true;
                h.state = KC_KEY_DESTROYED;
        } else
                kc_strscpy(h.reason, sizeof(h.reason), kc_err_msg(&kerr, r));
        *ret = h;
        return 0;
}

void kc_volume_key_health_reason(const struct kc_volume_key_health *h, char *buf, size_t size) {
        if (!h->known)
                snprintf(buf, size, "%s", h->reason);
        else if (h->state == KC_KEY_ENABLED)
                snprintf(buf, size, "%s", "");
        else if (h->recovery_keyslots == 0)
                snprintf(buf, size, "the KMS will not unwrap this volume's key and it has no recovery keyslot%s",
                         h->state == KC_KEY_DESTROYED ? "; its data is unrecoverable" : "");
        else
                snprintf(buf, size, "only a recovery keyslot opens this volume (%u keyslot%s)", h->recovery_keyslots,
                         h->recovery_keyslots == 1 ? "" : "s");
}

void kc_volume_key_health_format(const struct kc_volume_key_health *h, char *buf, size_t size) {
        char reason[KC_ERR_MSG_MAX + 64];

        kc_volume_key_health_reason(h, reason, sizeof(reason));
        if (!h->known)
                snprintf(buf, size, "unknown (%s)", reason);
        else if (!reason[0])
                snprintf(buf, size, "%s", kc_key_state_to_string(h->state));
        else
                snprintf(buf, size, "%s: %s", kc_key_state_to_string(h->state), reason);
}

/* ---- copies ---- */

#define COPY_CHUNK (1U << 20)

/* A dm-crypt mapping holds plaintext: copies come from what is underneath it. */
static bool is_crypt_mapping(int fd) {
        struct stat st;
        char sysdir[64];

        if (fstat(fd, &st) < 0 || !S_ISBLK(st.st_mode))
                return false;
        snprintf(sysdir, sizeof(sysdir), "/sys/dev/block/%u:%u", major(st.st_rdev), minor(st.st_rdev));
        return kc_block_dm_uuid_has_prefix(sysdir, "CRYPT-");
}

/* src opened for reading; never a dm-crypt mapping, whose copy would be its plaintext (-EPERM). */
static int open_copy_src(const char *src, struct kc_err *err) {
        int fd = kc_path_check_length("source", src, err);

        if (fd < 0)
                return fd;
        fd = open(src, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return kc_err_set(err, negative_errno(), "cannot open %s: %s", src, strerror(errno));
        if (is_crypt_mapping(fd)) {
                close(fd);
                return kc_err_set(err, -EPERM, "%s is a dm-crypt mapping (plaintext); copy its backing device", src);
        }
        return fd;
}

int kc_copy_dst_check(const char *dst, bool overwrite, struct kc_err *err) {
        struct stat st;
        int r = kc_path_check_length("destination", dst, err);

        if (r < 0)
                return r;
        /* A name longer than NAME_MAX (FILE.header of a FILE near it) would fail at the rename, after the copy. */
        if (stat(dst, &st) < 0 && errno == ENAMETOOLONG)
                return kc_err_set(err, -ENAMETOOLONG, "cannot create %s: %s", dst, strerror(errno));
        if (stat(dst, &st) < 0 || S_ISBLK(st.st_mode))
                return 0;
        /* Renaming over a character device, a FIFO or a directory would replace it, not write to it. */
        if (!S_ISREG(st.st_mode))
                return kc_err_set(err, -EINVAL, "%s is neither a block device nor a regular file", dst);
        if (!overwrite && lstat(dst, &st) == 0)
                return kc_err_set(err, -EEXIST, "cannot create %s: %s (refusing to overwrite)", dst, strerror(EEXIST));
        return 0;
}

#define COPY_TMP_SUFFIX ".tmp-XXXXXX"

/*
 * The temporary file beside dst, ".NAME.tmp-XXXXXX": NAME is cut where the
 * whole would not fit NAME_MAX or PATH_MAX, which a dst that fits them may
 * leave no room for.  -ENAMETOOLONG when even an empty NAME does not fit.
 */
static int copy_tmp_name(const char *dst, char **ret, struct kc_err *err) {
        const char *slash = strrchr(dst, '/');
        size_t dirlen = slash ? (size_t) (slash - dst + 1) : 0, extra = 1 + strlen(COPY_TMP_SUFFIX);
        size_t keep = strlen(dst + dirlen);

        if (dirlen + extra >= PATH_MAX)
                return kc_err_set(err, -ENAMETOOLONG, "no room for a temporary file beside %.64s...: its "
                                  "folder's path is %zu bytes", dst, dirlen);
        if (keep > NAME_MAX - extra)
                keep = NAME_MAX - extra;
        if (dirlen + extra + keep >= PATH_MAX)
                keep = PATH_MAX - 1 - dirlen - extra;
        return asprintf(ret, "%.*s.%.*s" COPY_TMP_SUFFIX, (int) dirlen, dst, (int) keep, dst + dirlen) < 0 ? -ENOMEM : 0;
}

/*
 * A device is written in place.  A file copy goes to a 0600 temporary file
 * beside dst (*ret_tmp), renamed over dst only once complete (copy_commit):
 * a copy that fails half-way never truncates an earlier backup (--force)
 * nor leaves a half-written one under the name.
 */
static int open_copy_dst(const char *dst, bool overwrite, uint64_t need, char **ret_tmp, struct kc_err *err) {
        _cleanup_free_ char *tmp = NULL;
        struct stat st;
        uint64_t size;
        int fd, r;

        if (stat(dst, &st) < 0)
                st.st_mode = 0;
        if (S_ISBLK(st.st_mode)) {
                fd = open(dst, O_WRONLY | O_CLOEXEC | O_EXCL);
                if (fd < 0)
                        return kc_err_set(err, negative_errno(), "cannot open %s: %s", dst, strerror(errno));
                if (kc_fd_size(fd, &size) < 0 || size < need) {
                        close(fd);
                        return kc_err_set(err, -ENOSPC, "%s is smaller than the source", dst);
                }
                *ret_tmp = NULL;
                return fd;
        }
        r = kc_copy_dst_check(dst, overwrite, err);
        if (r < 0)
                return r;
        r = copy_tmp_name(dst, &tmp, err);
        if (r < 0)
                return r;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return kc_err_set(err, negative_errno(), "cannot create %s: %s", tmp, strerror(errno));
        *ret_tmp = TAKE_PTR(tmp);
        return fd;
}

/* The complete (fsync()ed) temporary file becomes dst, durably; without overwrite never over a file that appeared meanwhile. */
static int copy_commit(const char *tmp, const char *dst, bool overwrite, struct kc_err *err) {
        _cleanup_free_ char *dir = strdup(dst);
        _cleanup_close_ int fd = -1;

        if (!dir)
                return -ENOMEM;
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, overwrite ? 0 : RENAME_NOREPLACE) < 0)
                return kc_err_set(err, negative_errno(), "cannot rename %s to %s: %s%s", tmp, dst, strerror(errno),
                                  errno == EEXIST ? " (refusing to overwrite)" : "");
        fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
                return kc_err_set(err, negative_errno(), "cannot fsync the directory of %s: %s", dst, strerror(errno));
        return 0;
}

/* The signals that stop a copy (blocked by kc_snapshot, so that it resumes the volume first). */
static void stop_signals(sigset_t *ret) {
        sigemptyset(ret);
        sigaddset(ret, SIGINT);
        sigaddset(ret, SIGTERM);
        sigaddset(ret, SIGHUP);
        sigaddset(ret, SIGQUIT);
}

/*
 * One of them is pending (only ever so while blocked) and not ignored (nohup,
 * a shell's background job): the copy stops at the next chunk.
 */
static bool stop_requested(void) {
        sigset_t pending, stop;

        stop_signals(&stop);
        if (sigpending(&pending) < 0)
                return false;
        for (int sig = 1; sig < NSIG; sig++) {
                struct sigaction sa;

                if (sigismember(&stop, sig) == 1 && sigismember(&pending, sig) == 1 &&
                    sigaction(sig, NULL, &sa) == 0 && sa.sa_handler != SIG_IGN)
                        return true;
        }
        return false;
}

/*
 * Whether dev is top or stacked on it (a holder of a holder..., as sysfs
 * lists them): a device mapper, LVM or md device built on the mapping.
 */
static bool stacked_on(dev_t top, dev_t dev, unsigned depth) {
        _cleanup_(closedirp) DIR *d = NULL;
        char path[PATH_MAX];
        struct dirent *de;

        if (dev == top)
                return true;
        if (depth == 0)
                return false;
        snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/holders", major(top), minor(top));
        d = opendir(path);
        while (d && (de = readdir(d))) {
                unsigned ma, mi;
                _cleanup_fclose_ FILE *f = NULL;

                if (de->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "/sys/class/block/%s/dev", de->d_name);
                f = fopen(path, "re");
                if (f && fscanf(f, "%u:%u", &ma, &mi) == 2 && stacked_on(makedev(ma, mi), dev, depth - 1))
                        return true;
        }
        return false;
}

/* The device dst is, or that holds it (its file system; for a new file, its folder's). */
static int dst_device(const char *dst, dev_t *ret) {
        _cleanup_free_ char *dir = strdup(dst);
        struct stat st;

        if (!dir)
                return -ENOMEM;
        if (stat(dst, &st) < 0 && stat(dirname(dir), &st) < 0)
                return negative_errno();
        *ret = S_ISBLK(st.st_mode) ? st.st_rdev : st.st_dev;
        return 0;
}

int kc_device_has_holders(const char *device, char ret_holder[64]) {
        _cleanup_(closedirp) DIR *d = NULL;
        char path[PATH_MAX];
        struct dirent *de;
        struct stat st;

        if (stat(device, &st) < 0)
                return negative_errno();
        if (!S_ISBLK(st.st_mode))
                return 0;
        snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/holders", major(st.st_rdev), minor(st.st_rdev));
        d = opendir(path);
        while (d && (de = readdir(d)))
                if (de->d_name[0] != '.') {
                        snprintf(ret_holder, 64, "%.63s", de->d_name);
                        return 1;
                }
        return 0;
}

static int copy_fds(int in, int out, uint64_t total, bool sparse, kc_copy_progress_fn progress, void *userdata) {
        _cleanup_free_ uint8_t *buf = NULL;
        uint64_t done = 0;

        /* Aligned for O_DIRECT (direct_source()); a chunk is a multiple of any logical block size. */
        if (posix_memalign((void **) &buf, 4096, COPY_CHUNK) != 0)
                return -ENOMEM;
        while (done < total) {
                size_t want = total - done < COPY_CHUNK ? (size_t) (total - done) : COPY_CHUNK;
                ssize_t n;

                if (stop_requested())
                        return -ECANCELED;
                n = pread(in, buf, want, (off_t) done);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? negative_errno() : -EIO;
                /* Zero chunks stay holes in a file copy; a device gets every byte. */
                if (!(sparse && kc_all_zero(buf, (size_t) n))) {
                        for (ssize_t w = 0, k; w < n; w += k) {
                                k = pwrite(out, buf + w, (size_t) (n - w), (off_t) (done + (uint64_t) w));
                                if (k < 0 && errno == EINTR)
                                        k = 0;
                                else if (k <= 0)
                                        return k < 0 ? negative_errno() : -EIO;
                        }
                }
                done += (uint64_t) n;
                if (progress)
                        progress(done, total, userdata);
        }
        if (sparse && ftruncate(out, (off_t) total) < 0)
                return negative_errno();
        return fsync(out) < 0 ? negative_errno() : 0;
}

/*
 * A block device is read past the page cache.  Its cache can hold blocks
 * read before the snapshot's suspend (blkid's probe of the device in
 * kc_copy_source_check(), any earlier reader), which the filesystem's
 * writes through dm-crypt never updated: they go to the device as bios.  A
 * buffered copy took those stale blocks, and a backup of a mounted volume
 * lost the files written last.  It also keeps a copy of a large volume from
 * evicting the database's own cache.
 */
static int direct_source(int fd, const char *src, struct kc_err *err) {
        struct stat st;
        int flags;

        if (fstat(fd, &st) < 0 || !S_ISBLK(st.st_mode))
                return 0;
        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_DIRECT) < 0)
                return kc_err_set(err, negative_errno(), "cannot read %s with O_DIRECT: %s", src, strerror(errno));
        return 0;
}

int kc_copy_encrypted(const char *src, const char *dst, bool overwrite, kc_copy_progress_fn progress,
                      void *userdata, struct kc_err *err) {
        _cleanup_close_ int in = -1, out = -1;
        _cleanup_free_ char *tmp = NULL;
        uint64_t total;
        int r;

        if (!src || !dst)
                return -EINVAL;
        in = open_copy_src(src, err);
        if (in < 0)
                return in;
        r = kc_fd_size(in, &total);
        if (r < 0)
                return kc_err_set(err, r, "cannot read the size of %s: %s", src, strerror(-r));
        r = direct_source(in, src, err);
        if (r < 0)
                return r;
        out = open_copy_dst(dst, overwrite, total, &tmp, err);
        if (out < 0)
                return out;
        r = copy_fds(in, out, total, !!tmp, progress, userdata);
        if (r < 0)
                kc_err_set(err, r, "copying %s to %s: %s", src, dst, strerror(-r));
        else if (tmp)
                r = copy_commit(tmp, dst, overwrite, err);
        if (r < 0 && tmp)
                (void) unlink(tmp);
        return r;
}

/*
 * A detached header can be device's: the device shows no signature (a file
 * system there is plaintext, ciphertext shows none) and the header's data
 * segment (512-byte sectors) ends within it.
 */
static int header_fits(struct kc_luks *l, const char *device, const char *header, struct kc_err *err) {
        struct kc_luks_segment seg;
        struct kc_err berr = {};
        uint64_t size, end;
        int r;

        r = kc_luks_check_blank(device, &berr);
        if (r == -EEXIST)
                return kc_err_set(err, -EPERM, "%s: not the ciphertext of %s, a copy of it would not be encrypted",
                                  berr.msg, header);
        if (r < 0)
                return kc_err_set(err, r, "%s", kc_err_msg(&berr, r));
        /* A header in the middle of a reencryption has several segments; nothing simple to compare. */
        if (kc_luks_segment(l, &seg) < 0)
                return 0;
        r = kc_path_size(device, &size);
        if (r < 0)
                return kc_err_set(err, r, "cannot read the size of %s: %s", device, strerror(-r));
        end = (seg.offset + (seg.size ?: 1)) * 512;
        if (end > size)
                return kc_err_set(err, -EPERM, "%s is not the header of %s: its data segment ends at byte %" PRIu64
                                  ", beyond the device's %" PRIu64, header, device, end, size);
        return 0;
}

int kc_copy_source_check(const char *device, const char *header, struct kc_err *err) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        _cleanup_close_ int fd = -1;
        struct kc_err lerr = {};
        int r;

        if (!device)
                return -EINVAL;
        fd = open_copy_src(device, err);
        if (fd < 0)
                return fd;
        r = kc_luks_open(device, header, &l, &lerr);
        /*
         * No LUKS2 header on the device: plaintext, or the ciphertext of a
         * volume whose header is elsewhere, which no key opens without it.
         * Either way the copy would not be the encrypted volume it claims.
         * A LUKS1 volume is encrypted, but no kmscrypt volume: refused in
         * kc_luks_open()'s words, as its header given as --header is.
         */
        if (r == -EINVAL && !header && !kc_luks_is_luks1(device))
                return kc_err_set(err, -EPERM, "%s: a copy of it would not be encrypted (a volume with a detached "
                                  "header? give --header FILE)", lerr.msg);
        if (r < 0)
                return kc_err_set(err, r, "%s", kc_err_msg(&lerr, r));
        return header ? header_fits(l, device, header, err) : 0;
}

int kc_snapshot(const char *mapping, const char *dst, bool overwrite, kc_copy_progress_fn progress,
                void *userdata, struct kc_err *err) {
        struct kc_volume_status st;
        struct kc_dm_info info;
        sigset_t stop, old;
        bool was_suspended;
        dev_t dev;
        int r, q;

        r = kc_volume_status(mapping, NULL, &st, err);
        if (r < 0)
                return r;
        was_suspended = st.suspended;
        kc_volume_status_clear(&st);
        /* Written to while the volume is suspended, DEST on it (or above it) would wait for ever. */
        if (kc_dm_info(mapping, &info) >= 0 && info.exists && dst_device(dst, &dev) >= 0 &&
            stacked_on(makedev(info.major, info.minor), dev, 8))
                return kc_err_set(err, -EINVAL, "%s is on %s itself (or on a device built on it), which the "
                                  "snapshot suspends: put the copy elsewhere", dst, mapping);
        /*
         * Interrupted (Ctrl-C, a hang-up, SIGTERM), the copy stops at the next
         * chunk and the volume is resumed before the signal ends the process;
         * only a SIGKILL can leave it suspended (dmsetup resume NAME).
         */
        stop_signals(&stop);
        pthread_sigmask(SIG_BLOCK, &stop, &old);
        /* Suspend flushes the mapping and freezes its filesystem: the backing device is consistent. */
        if (!was_suspended) {
                r = kc_dm_suspend(mapping);
                if (r < 0) {
                        pthread_sigmask(SIG_SETMASK, &old, NULL);
                        return kc_err_set(err, r, "cannot suspend %s: %s", mapping, strerror(-r));
                }
        }
        r = kc_copy_encrypted(st.device, dst, overwrite, progress, userdata, err);
        if (!was_suspended) {
                q = kc_dm_resume(mapping);
                if (q < 0 && r >= 0)
                        r = kc_err_set(err, q, "cannot resume %s: %s", mapping, strerror(-q));
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return r;
}
