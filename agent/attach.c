/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "agent/attach.h"
#include "agent/blockdev.h"
#include "agent/luks.h"
#include "agent/token.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "kernel-keyring/keyring.h"
#include "lib/clock.h"
#include "lib/fault.h"
#include "lib/fileio.h"
#include "lib/log.h"
#include "lib/secret.h"
#include "lib/strv.h"
#include "lib/thread.h"

#define DM_UUID_PREFIX "CRYPT-LUKS2-"
#define KC_ATTACH_LOCK_DIR KC_RUNSTATEDIR "/attach"
#define KEY_PREFIX "kmscrypt:"
#define LOCK_WAIT_MS 20000
#define LOCK_POLL_MS 20

int kc_attach_default_name(const struct kc_context *ctx, const char *luks_uuid, char **ret_name) {
        const char *vol = ctx ? kc_context_get(ctx, "volume-id") : NULL;
        char *name;

        if (vol && kc_dm_name_is_valid(vol))
                name = strdup(vol);
        else if (asprintf(&name, "luks-%s", luks_uuid) < 0)
                name = NULL;
        if (!name)
                return -ENOMEM;
        *ret_name = name;
        return 0;
}

/* dm UUID prefix that every mapping of this LUKS volume carries, whatever its name. */
static int volume_uuid_prefix(const char *luks_uuid, char **ret) {
        _cleanup_free_ char *full = NULL;
        char *p;
        int r;

        r = kc_dm_uuid_luks2(luks_uuid, "x", &full);
        if (r < 0)
                return r;
        p = strrchr(full, '-'); /* drop the name, keep the trailing dash */
        p[1] = '\0';
        *ret = TAKE_PTR(full);
        return 0;
}

struct holder_query {
        const char *prefix;
        char *name;
};

/* kc_block_holders()'s fn for holder_with_uuid(). */
static int holder_has_prefix(const char *holder, void *userdata) {
        struct holder_query *q = userdata;
        char sysdir[PATH_MAX], path[PATH_MAX + 8];

        snprintf(sysdir, sizeof(sysdir), "/sys/class/block/%s", holder);
        if (!kc_block_dm_uuid_has_prefix(sysdir, q->prefix))
                return 0;
        snprintf(path, sizeof(path), "%s/dm/name", sysdir);
        return kc_sysfs_line(path, q->name, 128);
}

/*
 * The mapping (of any tool) that holds block device dev and whose dm UUID
 * starts with prefix: 1 and its name, or 0.  The kernel lists the holders of
 * a device in sysfs, so this costs no device-mapper ioctl however many
 * mappings the host has.
 */
static int holder_with_uuid(dev_t dev, const char *prefix, char ret_name[128]) {
        return kc_block_holders(dev, holder_has_prefix, &(struct holder_query) { prefix, ret_name });
}

/*
 * Is this volume attached already (under any name)?  1 and the name if a
 * mapping of this LUKS UUID reads from this very device, 0 if none does;
 * -EEXIST if the wanted name is taken by another device.  A block-for-block
 * copy (snapshot, clone) shares the LUKS UUID but not the device: it is a
 * volume of its own and may be attached beside its original.
 */
static int find_existing(const char *luks_uuid, const char *device, dev_t devno, const char *name,
                         const struct kc_dm_info *info, char ret_name[128], struct kc_err *err) {
        _cleanup_free_ char *prefix = NULL;
        int r;

        r = volume_uuid_prefix(luks_uuid, &prefix);
        if (r < 0)
                return r;
        r = holder_with_uuid(devno, prefix, ret_name);
        if (r < 0)
                return kc_err_set(err, r, "cannot look for mappings of %s: %s", device, strerror(-r));
        if (r > 0)
                return 1;
        if (info->exists)
                return kc_err_set(err, -EEXIST, "mapping name %s is in use by another device", name);
        return 0;
}

/*
 * A mapping found in place stays in place: a deferred removal armed on it
 * (a stop of its unit, `kmscrypt detach --deferred`) would remove it at its
 * next close, under a file system mounted again meanwhile, so an attach
 * that finds it cancels that.  1 when one was cancelled, 0 when none was
 * pending; -EBUSY when the removal has begun.
 */
static int keep_existing(const char *name, struct kc_err *err) {
        struct kc_dm_info info;
        int r;

        r = kc_dm_info(name, &info);
        if (r < 0)
                return kc_err_set(err, r, "cannot query mapping %s: %s", name, strerror(-r));
        if (!info.exists || !info.deferred_remove)
                return 0;
        r = kc_dm_cancel_deferred_remove(name);
        if (r < 0)
                return kc_err_set(err, r, "%s is attached but marked for removal at its last close, and that "
                                  "cannot be cancelled: %s", name, strerror(-r));
        log_debug("%s: cancelled its pending deferred removal", name);
        return 1;
}

/* The mapping's length: the segment's, or what the device holds past the data offset. */
static int mapping_size(const struct kc_luks_segment *seg, uint64_t *ret, struct kc_err *err) {
        uint64_t dev, size;
        int r;

        if (seg->size > 0) {
                *ret = seg->size;
                return 0;
        }
        r = kc_path_size(seg->data_device, &dev);
        if (r < 0)
                return kc_err_set(err, r, "cannot size %s: %s", seg->data_device, strerror(-r));
        dev /= 512;     /* the segment counts in 512-byte sectors */
        if (dev <= seg->offset)
                return kc_err_set(err, -ENOSPC, "%s is smaller than its LUKS2 data offset", seg->data_device);
        size = dev - seg->offset;
        size -= size % (seg->sector_size / 512);
        if (size == 0)
                return kc_err_set(err, -ENOSPC, "%s has no room for data", seg->data_device);
        *ret = size;
        return 0;
}

/*
 * An attach killed between creating the device and resuming its table (a
 * kill -9 of the agent, or of kmscrypt or cryptsetup) leaves a device
 * with a LUKS2 dm UUID ending in its name and no live table: it serves no
 * I/O (an inactive table, if loaded, goes with it) but holds the name (and,
 * with an inactive table, the device), so find_existing would refuse the
 * name or call the volume attached.  Anything else of that name is left alone.
 * info is what the kernel says of name; once the device is removed, it says
 * so.  1 removed, 0 nothing such there, negative errno.
 */
static int remove_half_made(const char *name, struct kc_dm_info *info) {
        static const char prefix[] = "CRYPT-LUKS2-";
        size_t n, k = strlen(name);
        int r;

        if (!info->exists || info->target_type[0] || info->open_count > 0)
                return 0;
        n = strlen(info->uuid);
        if (strncmp(info->uuid, prefix, strlen(prefix)) != 0 || n < strlen(prefix) + k + 1 ||
            info->uuid[n - k - 1] != '-' || !streq(info->uuid + n - k, name))
                return 0;
        r = kc_dm_remove(name, false);
        if (r < 0)
                return r;
        *info = (struct kc_dm_info) {};
        return 1;
}

/*
 * Attaches of one volume, by any process (agent threads, kmscrypt attach,
 * duplicate udev events), take turns: an exclusive BSD lock on its data
 * device, held from the look for an existing mapping to the resume, so the
 * second finds the first's mapping instead of racing it for the name or
 * taking its half-made device for a dead one.  The same lock udev honours
 * (it leaves a device alone while someone holds it exclusively).  Without
 * it (device gone, lock refused) the attach goes on and fails or succeeds
 * on its own; a lock someone else holds for LOCK_WAIT_MS fails it (-EBUSY).
 */
static int lock_exclusive(const char *path, int flags) {
        int fd = open(path, flags | O_CLOEXEC | O_NONBLOCK, 0600);
        uint64_t deadline = 0;

        if (fd < 0)
                return log_debug_errno(negative_errno(), "cannot open %s to lock it: %m", path);
        /*
         * Not a blocking flock(): anyone who may read the device can hold a
         * lock on it, and an attach (with its agent slot, and the agent's
         * stop) must not wait on that for ever.  Another attach holds it for
         * a KMS call and a table load; LOCK_WAIT_MS is well past that.
         */
        while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                int e = errno;

                if (e == EINTR)
                        continue;
                if (e != EWOULDBLOCK) {
                        log_debug_errno(-e, "cannot lock %s: %m", path);
                        close(fd);
                        return -e;
                }
                if (!deadline) {
                        deadline = kc_now_ms() + LOCK_WAIT_MS;
                        log_debug("%s is locked: waiting up to %d s for its holder", path, LOCK_WAIT_MS / 1000);
                }
                if (kc_now_ms() >= deadline) {
                        close(fd);
                        return -EBUSY;
                }
                (void) usleep(LOCK_POLL_MS * 1000);
        }
        return fd;
}

static int lock_volume(const char *path) {
        return lock_exclusive(path, O_RDONLY);
}

/*
 * Attaches of one mapping name but of different devices take turns too,
 * taken after the volume's lock: a volume and its block copy share their
 * default name.  Otherwise one could take the other's device, between its
 * create and its resume, for what a killed attach left (remove_half_made)
 * and remove it, or resume a table whose key the other has not checked
 * yet.  A lock file a name under KC_ATTACH_LOCK_DIR (on tmpfs, left in
 * place); without it the attach goes on, as without the volume's lock.
 */
static int lock_name(const char *name) {
        char path[sizeof(KC_ATTACH_LOCK_DIR) + 128];
        int fd;

        snprintf(path, sizeof(path), "%s/%s", KC_ATTACH_LOCK_DIR, name);
        fd = lock_exclusive(path, O_RDWR | O_CREAT | O_NOFOLLOW);
        if (fd >= 0 || access(KC_ATTACH_LOCK_DIR, F_OK) == 0)
                return fd;
        /* The first attach since boot: the folders as far as they are missing (runstatedir too, when not /run). */
        for (char *slash = strchr(path + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
                *slash = '\0';
                (void) mkdir(path, streq(path, KC_ATTACH_LOCK_DIR) ? 0700 : 0755);
                *slash = '/';
        }
        return lock_exclusive(path, O_RDWR | O_CREAT | O_NOFOLLOW);
}

int kc_mapping_load_gated(const struct kc_mapping *m, const void *key, size_t key_size,
                          int (*gate)(void *userdata), void *gate_userdata, struct kc_err *err) {
        kc_key_serial_t serial = 0;
        int r;

        r = kc_keyring_add_logon(m->key_description, key, key_size, &serial);
        if (r < 0)
                return kc_err_set(err, r, "cannot add the data key to the kernel keyring: %s", strerror(-r));
        kc_fault_point("attach:after-key-add");
        r = kc_dm_create_gated(m->name, m->dm_uuid, "crypt", m->size, m->params, m->read_only, gate, gate_userdata);
        /* dm-crypt copied the key at table load: drop ours whatever happened. */
        (void) kc_keyring_drop(serial);
        if (r < 0)
                return kc_err_set(err, r, "cannot create mapping %s: %s", m->name, strerror(-r));
        return 0;
}

/* m->check on a thread of its own, so that it runs while this one waits for the kernel's table load. */
struct check_thread {
        const struct kc_mapping *m;
        pthread_t thread;
        bool running;
        int r;
};

static void *check_thread_run(void *userdata) {
        struct check_thread *c = userdata;

        c->r = c->m->check(c->m->check_userdata);
        return NULL;
}

/* The gate: the check's verdict.  Called again (every path ends here), it only returns it. */
static int check_thread_join(void *userdata) {
        struct check_thread *c = userdata;

        if (c->running) {
                (void) pthread_join(c->thread, NULL);
                c->running = false;
        }
        return c->r;
}

int kc_mapping_load(const struct kc_mapping *m, const void *key, size_t key_size, struct kc_err *err) {
        struct check_thread c = { .m = m };
        int r;

        if (!m->check || m->check_elsewhere)
                return kc_mapping_load_gated(m, key, key_size, m->check, m->check_userdata, err);
        c.running = kc_thread_start(&c.thread, false, check_thread_run, &c) == 0;
        if (!c.running) {
                /* No thread to spare: check first, load after. */
                c.r = m->check(m->check_userdata);
                if (c.r < 0)
                        return c.r;
        }
        r = kc_mapping_load_gated(m, key, key_size, check_thread_join, &c, err);
        (void) check_thread_join(&c);
        return r;
}

/* Steps 5 and 6: key into a keyring only the loading thread possesses, mapping that references it, key out again. */
static int load_mapping(const char *name, const struct kc_luks_segment *seg, const void *key,
                        const struct kc_attach_params *p, int (*check)(void *userdata), void *check_userdata,
                        bool elsewhere, struct kc_err *err) {
        _cleanup_free_ char *desc = NULL, *params = NULL, *dm_uuid = NULL;
        struct kc_crypt_params cp = {
                .cipher = seg->cipher,
                .key_size = seg->key_size,
                .device = seg->data_device,
                .iv_offset = seg->iv_offset,
                .offset = seg->offset,
                .sector_size = seg->sector_size,
                /* LUKS2 counts IVs in 512-byte sectors whatever the sector size: never iv_large_sectors. */
                .flags = p->flags & ~(unsigned) KC_CRYPT_IV_LARGE_SECTORS,
        };
        struct kc_mapping m;
        int r;

        r = mapping_size(seg, &cp.size, err);
        if (r < 0)
                return r;
        r = kc_keyring_volume_description(seg->uuid, &desc);
        if (r < 0)
                return kc_err_set(err, r, "bad LUKS2 UUID in header");
        cp.key_description = desc;
        r = kc_crypt_table_build(&cp, &params);
        if (r < 0)
                return kc_err_set(err, r, "header of %s gives an unusable dm-crypt table", p->device);
        r = kc_dm_uuid_luks2(seg->uuid, name, &dm_uuid);
        if (r < 0)
                return kc_err_set(err, r, "cannot name mapping %s", name);

        m = (struct kc_mapping) { .name = name, .dm_uuid = dm_uuid, .key_description = desc, .params = params,
                                  .size = cp.size, .read_only = p->read_only,
                                  .check = check, .check_userdata = check_userdata, .check_elsewhere = elsewhere };
        if (p->loader)
                return p->loader(p->loader_userdata, &m, key, seg->key_size, err);
        return kc_mapping_load(&m, key, seg->key_size, err);
}

/* Step 3: the token's key, unwrapped under its own context; its length checked where the header knows it. */
static int unwrap_key(struct kc_kms *kms, const struct kc_kms_request *req, const struct kc_token *tok,
                      struct kc_luks_segment *seg, void **ret_key, struct kc_err *err) {
        _cleanup_free_ char *ref = NULL;
        _cleanup_secret_ void *key = NULL;
        char key_id[65];
        uint32_t version;
        int r;

        r = kc_token_key_ref(tok, &ref);
        if (r < 0)
                return r;
        r = kc_kms_decrypt(kms, req, ref, tok->wrapped_key, tok->wrapped_key_len, tok->context,
                           &key, key_id, &version, err);
        if (r < 0)
                return r;
        /*
         * libcryptsetup records a volume key size only in keyslots, and a
         * kmscrypt volume may have none: then the digest check is what
         * proves the unwrapped key, length included.
         */
        if (seg->key_size != 0 && kc_secret_size(key) != seg->key_size)
                return kc_err_set(err, -EBADMSG, "unwrapped key has %zu bytes, the header wants %zu",
                                  kc_secret_size(key), seg->key_size);
        seg->key_size = kc_secret_size(key);
        *ret_key = TAKE_PTR(key);
        return 0;
}

/*
 * The header an attach works from.  Loaded: l.  Peeked: pk, which the check
 * holds against load (libcryptsetup's load, running meanwhile) before the
 * digest check; then l is the loaded header.  restart: the peek did not do,
 * start again from the load.
 */
struct volume_view {
        struct kc_luks *l;
        const struct kc_luks_peek *pk;
        struct header_load *load;
        struct kc_luks_segment *seg;      /* the segment the mapping is built from */
        bool restart;
};

/*
 * Step 4, as kc_mapping's check: the token's key check, or the LUKS2
 * digest.  posted: handed to the header load's thread, which runs it
 * (header_load_post()).  ran tells whether a loader asked for the verdict;
 * r is the verdict once it has.
 */
struct key_check {
        struct volume_view *view;
        const struct kc_token *tok;
        const void *key;
        size_t key_size;
        bool posted;
        bool ran;
        int r;
};

/*
 * libcryptsetup's load of the header (and its segment), on a thread of its
 * own while an attach goes on from a peek at the header.  Once the key is
 * known, the same thread checks it: one thread beside the table load, not
 * two, and one hand-off on the way to the resume, not a chain of them.
 * Under emulation a third runnable thread, or a wake-up passed from thread
 * to thread, costs the table load (the attach's longest step) more than
 * the check itself does.
 */
struct header_load {
        const char *device, *header;
        pthread_t thread;
        bool running;
        struct kc_luks *l;
        struct kc_luks_segment seg;
        int r, r_segment;                 /* of kc_luks_open_read(), of kc_luks_segment() */
        struct kc_err err;

        pthread_mutex_t lock;             /* guards the three below */
        pthread_cond_t cond;
        struct key_check *check;          /* posted: for the thread to run once loaded */
        bool closed;                      /* no check comes any more */
        bool checked;                     /* the posted check has its verdict */
};

#define HEADER_LOAD_INIT(dev, hdr) \
        ((struct header_load) { .device = (dev), .header = (hdr), .lock = PTHREAD_MUTEX_INITIALIZER, \
                                .cond = PTHREAD_COND_INITIALIZER })

static int key_check_verify(struct key_check *c);

static void *header_load_run(void *userdata) {
        struct header_load *h = userdata;
        struct key_check *c;

        h->r = kc_luks_open_read(h->device, h->header, &h->l, &h->err);
        if (h->r >= 0)
                h->r_segment = kc_luks_segment(h->l, &h->seg);

        pthread_mutex_lock(&h->lock);
        while (!h->check && !h->closed)
                pthread_cond_wait(&h->cond, &h->lock);
        c = h->check;
        pthread_mutex_unlock(&h->lock);
        if (!c)
                return NULL;
        (void) key_check_verify(c);
        pthread_mutex_lock(&h->lock);
        h->checked = true;
        pthread_cond_broadcast(&h->cond);
        pthread_mutex_unlock(&h->lock);
        return NULL;
}

/* Hand c to the load's thread; false if it takes no check (not running, or closed). */
static bool header_load_post(struct header_load *h, struct key_check *c) {
        pthread_mutex_lock(&h->lock);
        if (h->running && !h->closed) {
                h->check = c;
                c->posted = true;
                pthread_cond_signal(&h->cond);
        }
        pthread_mutex_unlock(&h->lock);
        return c->posted;
}

/* Wait for the verdict of the check posted to h. */
static void header_load_wait_check(struct header_load *h) {
        pthread_mutex_lock(&h->lock);
        while (!h->checked)
                pthread_cond_wait(&h->cond, &h->lock);
        pthread_mutex_unlock(&h->lock);
}

static void header_load_join(struct header_load *h) {
        if (h->running) {
                pthread_mutex_lock(&h->lock);
                h->closed = true;
                pthread_cond_signal(&h->cond);
                pthread_mutex_unlock(&h->lock);
                (void) pthread_join(h->thread, NULL);
                h->running = false;
        }
}

static void header_load_done(struct header_load *h) {
        header_load_join(h);
        kc_luks_close(h->l);
        h->l = NULL;
}

/* Whether the peek is the header libcryptsetup loaded; only once the load is done. */
static bool view_matches(struct volume_view *v) {
        const struct header_load *h = v->load;
        const struct kc_luks_segment *ls = &h->seg;

        if (h->r < 0 || h->r_segment < 0 || !kc_luks_peek_matches(v->pk, v->seg, h->l, ls) ||
            (ls->key_size != 0 && v->seg->key_size != 0 && ls->key_size != v->seg->key_size))
                return false;
        v->l = h->l;
        return true;
}

/* Whether a peeked view is the header libcryptsetup loaded (a loaded view is). */
static bool view_confirm(struct volume_view *v) {
        if (v->l)
                return true;
        header_load_join(v->load);
        return view_matches(v);
}

/*
 * The check itself: a peek's digest counts only once the load has shown
 * the peek right; the confirmed peek's JSON is the loaded header's,
 * already parsed.  Run by the load's thread when posted to it.
 */
static int key_check_verify(struct key_check *c) {
        struct volume_view *v = c->view;
        int r = -EOPNOTSUPP;

        if (!(c->posted ? view_matches(v) : view_confirm(v)))
                return c->r = -ESTALE;
        if (v->pk)
                r = kc_luks_peek_verify_key(v->pk, c->key, c->key_size, c->tok);
        if (r == -EOPNOTSUPP)
                r = kc_luks_verify_key(v->l, c->key, c->key_size, c->tok);
        return c->r = r < 0 ? -EBADMSG : 0;
}

/* The mapping's check: the verdict, reached here or on the load's thread. */
static int key_check_run(void *userdata) {
        struct key_check *c = userdata;

        c->ran = true;
        if (!c->posted)
                return key_check_verify(c);
        header_load_wait_check(c->view->load);
        return c->r;
}

static int key_check_refused(const struct kc_luks_segment *seg, struct kc_err *err) {
        return kc_err_set(err, -EBADMSG, "unwrapped key does not match the LUKS2 header of %s (token from another volume?)",
                          seg->data_device);
}

int kc_attach_unwrap_key(struct kc_kms *kms, const struct kc_kms_request *req, struct kc_luks *l,
                         const struct kc_token *tok, struct kc_luks_segment *seg, void **ret_key,
                         struct kc_err *err) {
        _cleanup_secret_ void *key = NULL;
        int r;

        r = unwrap_key(kms, req, tok, seg, &key, err);
        if (r < 0)
                return r;
        if (kc_luks_verify_key(l, key, kc_secret_size(key), tok) < 0)
                return key_check_refused(seg, err);
        *ret_key = TAKE_PTR(key);
        return 0;
}

/*
 * Steps 3 to 6: the digest check runs beside the table load, and the
 * mapping is resumed only once it has passed, so an unproven key never
 * serves I/O.  A loader that ignored the check gets it run here, and its
 * mapping removed if the key is wrong.
 */
static int unwrap_and_load(struct kc_kms *kms, const struct kc_kms_request *req, struct volume_view *v,
                           const struct kc_token *tok, struct kc_luks_segment *seg, const char *name,
                           const struct kc_attach_params *p, struct kc_err *err) {
        _cleanup_secret_ void *key = NULL;
        struct kc_err lerr = {};
        struct key_check c;
        int r;

        r = unwrap_key(kms, req, tok, seg, &key, err);
        if (r < 0)
                return r;
        kc_fault_point("attach:after-unwrap");
        c = (struct key_check) { .view = v, .tok = tok, .key = key, .key_size = kc_secret_size(key) };
        if (v->pk)
                (void) header_load_post(v->load, &c);
        r = load_mapping(name, seg, key, p, key_check_run, &c, c.posted, &lerr);
        if (r >= 0 && !c.ran && key_check_run(&c) < 0) {
                log_error("the mapping loader of %s skipped the key check: mapping removed", name);
                (void) kc_dm_remove(name, false);
        }
        /* The load's thread may still be using the key (and the view): not before its verdict. */
        if (c.posted && !c.ran)
                (void) key_check_run(&c);
        if (c.r == -ESTALE) {
                v->restart = true;
                return c.r;
        }
        /* A wrong key is the reason, whatever the mapping's removal said. */
        if (c.r < 0)
                return key_check_refused(seg, err);
        if (r < 0)
                return kc_err_set(err, r, "%s", kc_err_msg(&lerr, r));
        return 0;
}

bool kc_attach_provider_allowed(char *const *providers, const char *provider) {
        if (!providers)
                return true;
        for (size_t i = 0; providers[i]; i++)
                if (streq(providers[i], provider))
                        return true;
        return false;
}

int kc_attach_policy_breach(const struct kc_token *tok, const struct kc_attach_params *p, const char *device,
                            struct kc_err *err) {
        _cleanup_free_ char *have = NULL, *want = NULL;
        char list[128] = "";

        if (p->expect && !kc_context_equal(tok->context, p->expect)) {
                (void) kc_context_to_string(tok->context, &have);
                (void) kc_context_to_string(p->expect, &want);
                return kc_err_set(err, -EPERM, "%s is bound to context %s, expected %s", device, strna(have),
                                  strna(want));
        }
        if (!kc_attach_provider_allowed(p->providers, tok->provider)) {
                for (size_t i = 0; p->providers[i]; i++)
                        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? "+" : "",
                                 p->providers[i]);
                return kc_err_set(err, -EPERM, "%s is wrapped by KMS provider %s, which this volume does not allow "
                                  "(kms=%s)", device, tok->provider, list);
        }
        return 0;
}

void kc_attach_audit_key(const struct kc_token *tok, struct kc_audit_record *rec) {
        rec->key_id = tok->key_id[0] ? tok->key_id : NULL;
        rec->key_version = tok->key_version;
}

int kc_attach_audit_refusal(struct kc_kms *kms, const struct kc_kms_request *req, const struct kc_token *tok,
                            const char *operation, const char *device, const struct kc_err *why) {
        _cleanup_free_ char *detail = NULL;
        struct kc_audit_record rec = { .operation = operation, .context = tok->context, .result = -EPERM };

        kc_attach_audit_key(tok, &rec);
        if (asprintf(&detail, "device %s", device) >= 0)
                rec.detail = detail;
        rec.error = kc_err_msg(why, -EPERM);
        return kc_kms_audit_refusal(kms, req, &rec);
}

int kc_attach_check_policy(struct kc_kms *kms, const struct kc_kms_request *req, const struct kc_token *tok,
                           const struct kc_attach_params *p, const char *operation, const char *device,
                           struct kc_err *err) {
        int r = kc_attach_policy_breach(tok, p, device, err);

        if (r == 0)
                return 0;
        r = kc_attach_audit_refusal(kms, req, tok, operation, device, err);
        if (r < 0)
                log_debug("audit record of the refused %s of %s not written: %s", operation, device, strerror(-r));
        return -EPERM;
}

/* The segment and token of the view.  A peek that cannot give them restarts from the load, which says why. */
static int view_read(struct volume_view *v, const char *device, struct kc_token *tok, struct kc_err *err) {
        int r, rt;

        if (v->pk) {
                if (kc_luks_peek_segment(v->pk, v->seg) < 0 || kc_luks_peek_token(v->pk, tok) < 0) {
                        v->restart = true;
                        return -ESTALE;
                }
                r = rt = 0;
        } else {
                r = v->load->r_segment;
                *v->seg = v->load->seg;
                if (r < 0 && r != -EOPNOTSUPP)
                        return kc_err_set(err, r, "cannot read the LUKS2 segment of %s", device);
                rt = kc_luks_token_read(v->l, tok, NULL, r < 0 ? NULL : err);
        }
        /*
         * The token's reencrypt member marks every crash state of a kmscrypt
         * data key replacement (agent/reencrypt.h), read here from the header
         * already open rather than by a second read before every attach: the
         * caller finishes it (kc_reencrypt) and attaches again.
         */
        if (rt >= 0 && tok->reencrypt) {
                kc_token_clear(tok);
                if (v->pk) {
                        v->restart = true;
                        return -ESTALE;
                }
                return kc_err_set(err, -EINPROGRESS, "the data key replacement of %s was interrupted "
                                  "(kmscrypt reencrypt --resume finishes it)", device);
        }
        if (r < 0) {
                kc_token_clear(tok);
                return kc_err_set(err, r, "cannot read the LUKS2 segment of %s: a reencryption kmscrypt did "
                                  "not start is in progress, or the segment is not one dm-crypt table", device);
        }
        /* Not -ENOENT, which callers that wait take for "device not there yet": no wait grows a token. */
        if (rt == -ENOENT)
                return kc_err_set(err, -ENOKEY, "%s has no kmscrypt token", device);
        return rt;
}

/* The KMS of an attach: the one given, else opened now through p->open_kms (kc_attach_params). */
static int attach_kms(struct kc_kms **kms, const struct kc_attach_params *p) {
        if (*kms)
                return 0;
        if (!p->open_kms)
                return -EINVAL;
        return p->open_kms(p->open_kms_userdata, kms);
}

/* Steps 2 to 7 on a view of the header of device; *kms opened where first needed. */
static int attach_view(struct kc_kms **kms, const struct kc_kms_request *req, const struct kc_attach_params *p,
                       const char *device, struct volume_view *v, struct kc_attach_result *ret,
                       struct kc_err *err) {
        _cleanup_free_ char *name = NULL;
        _cleanup_close_ int lock_fd = -1, name_lock_fd = -1;
        struct kc_attach_result res = {};
        struct kc_kms_request volreq = *req;
        struct kc_luks_segment *seg = v->seg;
        struct kc_token tok = {};
        struct kc_dm_info info;
        struct stat st;
        int r;

        r = view_read(v, device, &tok, err);
        if (r < 0)
                return r;

        volreq.volume = seg->uuid;
        if (kc_attach_policy_breach(&tok, p, device, &(struct kc_err) {}) < 0) {
                /* Refused and audited from the loaded header, not from a peek. */
                if (v->pk) {
                        v->restart = true;
                        r = -ESTALE;
                        goto out;
                }
                r = attach_kms(kms, p);
                if (r >= 0)
                        r = kc_attach_check_policy(*kms, &volreq, &tok, p, "Attach", device, err);
                goto out;
        }
        if (p->name)
                name = strdup(p->name);
        else
                r = kc_attach_default_name(tok.context, seg->uuid, &name);
        if (r < 0 || !name) {
                r = r < 0 ? r : -ENOMEM;
                goto out;
        }
        if (!kc_dm_name_is_valid(name)) {
                r = kc_err_set(err, -EINVAL, "invalid mapping name \"%s\"", name);
                goto out;
        }

        /*
         * dm-crypt maps block devices only.  An image file would deadlock
         * below, too: libcryptsetup's load, maybe still running, locks a
         * file itself (shared), which lock_volume's lock holds off while
         * this attach waits for the load's verdict on the key.
         */
        if (stat(seg->data_device, &st) < 0) {
                r = negative_errno();
                r = kc_err_set(err, r, "cannot open %s: %s", seg->data_device, strerror(-r));
                goto out;
        }
        if (!S_ISBLK(st.st_mode)) {
                r = kc_err_set(err, -ENOTBLK, "%s is not a block device; attach a loop device of it "
                               "(losetup --find --show %s)", seg->data_device, seg->data_device);
                goto out;
        }

        kc_strscpy(res.luks_uuid, sizeof(res.luks_uuid), seg->uuid);
        kc_strscpy(res.device, sizeof(res.device), device);
        lock_fd = lock_volume(seg->data_device);
        if (lock_fd != -EBUSY)
                name_lock_fd = lock_name(name);
        if (lock_fd == -EBUSY || name_lock_fd == -EBUSY) {
                r = kc_err_set(err, -EBUSY, "%s is locked by another process (flock) and stayed so for %d s",
                               lock_fd == -EBUSY ? seg->data_device : name, LOCK_WAIT_MS / 1000);
                goto out;
        }
        r = kc_dm_info(name, &info);
        if (r < 0) {
                r = kc_err_set(err, r, "cannot query mapping %s: %s", name, strerror(-r));
                goto out;
        }
        r = remove_half_made(name, &info);
        if (r < 0)
                log_debug("%s: cannot remove a half-made mapping: %s", name, strerror(-r));
        res.removed_half_made = r > 0;
        r = find_existing(seg->uuid, seg->data_device, st.st_rdev, name, &info, res.name, err);
        if (r < 0)
                goto out;
        if (r > 0) {
                r = keep_existing(res.name, err);
                if (r < 0)
                        goto out;
                res.already = true;
                res.cancelled_deferred_remove = r > 0;
                res.key_wiped = kc_dm_info(res.name, &info) >= 0 && info.suspended &&
                                kc_dm_crypt_key_wiped(res.name) == 1;
                r = 0;
                *ret = res;
                goto out;
        }
        kc_strscpy(res.name, sizeof(res.name), name);

        r = attach_kms(kms, p);
        if (r < 0)
                goto out;
        r = unwrap_and_load(*kms, &volreq, v, &tok, seg, name, p, err);
        if (r < 0)
                goto out;
        kc_fault_point("attach:after-resume");
        *ret = res;
out:
        kc_token_clear(&tok);
        return r;
}

/*
 * Step 1, then the rest.  libcryptsetup's load of the header runs on a
 * thread of its own, started before the peek so that it overlaps it too,
 * while the attach goes on from a peek at the header: the KMS call and
 * the kernel's table load need not wait for the load's checksums and
 * validation, only the resume does (the key check, which that thread runs
 * once it has loaded and the key is known).  Whatever the peeked attach
 * ends in, it stands only once the load has shown the peek right;
 * otherwise, or when the peek could not do, the attach starts again from
 * the loaded header.  Side effects of a peeked attach that is started
 * again: a KMS Decrypt (audited), and a table loaded but never resumed,
 * removed with its key.  kc_attach_params.no_peek skips the peek: the
 * load then runs in this thread, before anything else.
 */
int kc_attach(struct kc_kms *kms, const struct kc_kms_request *req, const struct kc_attach_params *p,
              struct kc_attach_result *ret, struct kc_err *err) {
        _cleanup_free_ char *device = NULL;
        _cleanup_(kc_luks_peek_freep) struct kc_luks_peek *pk = NULL;
        struct header_load load;
        struct kc_luks_segment seg;
        struct volume_view v;
        int r;

        r = kc_resolve_device(p->device, &device, err);
        if (r < 0)
                return r;
        load = HEADER_LOAD_INIT(device, p->header);
        load.running = !p->no_peek && kc_thread_start(&load.thread, false, header_load_run, &load) == 0;
        if (load.running && kc_luks_peek(device, p->header, &pk) >= 0) {
                struct kc_err perr = {};

                v = (struct volume_view) { .pk = pk, .load = &load, .seg = &seg };
                r = attach_view(&kms, req, p, device, &v, ret, &perr);
                if (!v.restart && view_confirm(&v)) {
                        if (r < 0 && err)
                                *err = perr;
                        header_load_done(&load);
                        return r;
                }
                log_debug("%s: attaching again, from the header libcryptsetup loaded", device);
        } else if (!load.running) {
                load.closed = true;     /* no check to wait for */
                (void) header_load_run(&load);
        }
        header_load_join(&load);
        if (load.r < 0) {
                if (err)
                        *err = load.err;
                return load.r;
        }
        v = (struct volume_view) { .l = load.l, .load = &load, .seg = &seg };
        r = attach_view(&kms, req, p, device, &v, ret, err);
        header_load_done(&load);
        return r;
}

/* "CRYPT-LUKS2-<32 hex>-<name>" -> the LUKS UUID with its dashes; false if it is not of that form. */
static bool luks_uuid_of_dm_uuid(const char *dm_uuid, char ret[40]) {
        const char *hex = dm_uuid + strlen(DM_UUID_PREFIX);
        size_t j = 0;

        if (strncmp(dm_uuid, DM_UUID_PREFIX, strlen(DM_UUID_PREFIX)) != 0 || strspn(hex, "0123456789abcdef") != 32 ||
            hex[32] != '-')
                return false;
        for (size_t i = 0; i < 32; i++) {
                if (i == 8 || i == 12 || i == 16 || i == 20)
                        ret[j++] = '-';
                ret[j++] = hex[i];
        }
        ret[j] = '\0';
        return true;
}

/*
 * A suspended mapping whose key the revocation policy wiped ("key wipe"):
 * the kernel dropped the keyring reference, so the table shows zeros where
 * it was.  It is ours when its dm UUID names a LUKS UUID and the header of
 * the device it reads from (or header) is that volume with a kmscrypt
 * token; then the table is parsed with the reference it had put back.
 */
static int parse_wiped(const char *name, const struct kc_dm_info *info, const char *params, const char *header,
                       struct kc_crypt_table *table) {
        _cleanup_free_ char *fixed = NULL, *dev = NULL;
        _cleanup_luks_ struct kc_luks *l = NULL;
        struct kc_luks_segment seg;
        struct kc_token tok = {};
        struct kc_crypt_table t;
        char uuid[40];
        const char *key = strchr(params, ' ');
        size_t n;
        int r;

        if (!info->suspended || !key || !luks_uuid_of_dm_uuid(info->uuid, uuid) || kc_dm_crypt_key_wiped(name) != 1)
                return -EOPNOTSUPP;
        key++;
        n = strcspn(key, " ");
        if (asprintf(&fixed, "%.*s:%zu:logon:" KEY_PREFIX "%s%s", (int) (key - params), params, n / 2, uuid,
                     key + n) < 0)
                return -ENOMEM;
        r = kc_crypt_table_parse(fixed, info->size, &t);
        if (r < 0)
                return r;
        /* The table names the device as major:minor. */
        if (kc_block_devnode(t.p.device, &dev) < 0 || kc_luks_open_read(dev, header, &l, NULL) < 0 ||
            kc_luks_segment(l, &seg) < 0 || !streq(seg.uuid, uuid) || kc_luks_token_read(l, &tok, NULL, NULL) < 0) {
                kc_crypt_table_clear(&t);
                return -EOPNOTSUPP;
        }
        kc_token_clear(&tok);
        *table = t;
        return 0;
}

/*
 * Read our mapping back: table parsed, and whether it is one of ours
 * (ret_wiped: suspended with its key wiped; NULL refuses those).
 */
static int read_mapping(const char *name, const char *header, struct kc_dm_info *info, struct kc_crypt_table *table,
                        bool *ret_wiped, struct kc_err *err) {
        _cleanup_free_ char *target = NULL, *params = NULL;
        bool wiped = false;
        int r;

        r = kc_dm_info(name, info);
        if (r < 0)
                return kc_err_set(err, r, "cannot query mapping %s: %s", name, strerror(-r));
        if (!info->exists)
                return kc_err_set(err, -ENXIO, "no mapping named %s", name);
        if (strncmp(info->uuid, DM_UUID_PREFIX, strlen(DM_UUID_PREFIX)) != 0)
                return kc_err_set(err, -EPERM, "%s is not a LUKS2 mapping", name);
        r = kc_dm_table(name, &target, &params);
        if (r < 0)
                return kc_err_set(err, r, "cannot read the table of %s: %s", name, strerror(-r));
        if (!streq(target, "crypt"))
                return kc_err_set(err, -EPERM, "%s is not a dm-crypt mapping", name);
        r = kc_crypt_table_parse(params, info->size, table);
        if (r == -EOPNOTSUPP && ret_wiped) {
                r = parse_wiped(name, info, params, header, table);
                wiped = r >= 0;
        }
        if (r < 0 || strncmp(table->p.key_description, KEY_PREFIX, strlen(KEY_PREFIX)) != 0) {
                if (r >= 0)
                        kc_crypt_table_clear(table);
                return kc_err_set(err, -EPERM, "%s is not a kmscrypt mapping", name);
        }
        if (ret_wiped)
                *ret_wiped = wiped;
        return 0;
}

int kc_detach(const char *name, bool deferred, struct kc_err *err) {
        struct kc_crypt_table table;
        struct kc_dm_info info;
        int r;

        bool wiped;

        r = read_mapping(name, NULL, &info, &table, &wiped, err);
        if (r < 0)
                return r;
        kc_crypt_table_clear(&table);
        kc_fault_point("detach:before-remove");
        r = kc_dm_remove(name, deferred);
        kc_fault_point("detach:after-remove");
        if (r == -EBUSY)
                return kc_err_set(err, r, "%s is in use (open count %u); unmount it first or use --deferred",
                                  name, info.open_count);
        if (r < 0)
                return kc_err_set(err, r, "cannot remove mapping %s: %s", name, strerror(-r));
        return 0;
}

void kc_volume_status_clear(struct kc_volume_status *s) {
        if (!s)
                return;
        kc_context_free(s->context);
        s->context = NULL;
}

/* Token facts for status; a header we cannot read leaves has_token false. */
static void status_token(struct kc_volume_status *s, const char *header) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        struct kc_token tok = {};

        if (kc_luks_open_read(s->device, header, &l, NULL) < 0 || kc_luks_token_read(l, &tok, NULL, NULL) < 0)
                return;
        s->has_token = true;
        kc_strscpy(s->provider, sizeof(s->provider), tok.provider);
        kc_strscpy(s->key_id, sizeof(s->key_id), tok.key_id);
        s->key_version = tok.key_version;
        s->context = TAKE_PTR(tok.context);
        kc_token_clear(&tok);
}

int kc_volume_status(const char *name, const char *header, struct kc_volume_status *ret, struct kc_err *err) {
        _cleanup_free_ char *node = NULL;
        struct kc_volume_status s = {};
        struct kc_crypt_table t;
        struct kc_dm_info info;
        const char *u;
        int r;

        r = read_mapping(name, header, &info, &t, &s.key_wiped, err);
        if (r < 0)
                return r;
        kc_strscpy(s.name, sizeof(s.name), name);
        kc_strscpy(s.cipher, sizeof(s.cipher), t.p.cipher);
        kc_strscpy(s.key_description, sizeof(s.key_description), t.p.key_description);
        /* The table's MAJOR:MINOR itself when the device has no node (gone underneath). */
        kc_strscpy(s.device, sizeof(s.device), kc_block_devnode(t.p.device, &node) >= 0 ? node : t.p.device);
        s.key_size = (uint32_t) t.p.key_size;
        s.sector_size = t.p.sector_size;
        s.offset = t.p.offset;
        s.flags = t.p.flags;
        s.size = info.size;
        s.read_only = info.read_only;
        s.suspended = info.suspended;
        s.open_count = info.open_count;
        kc_crypt_table_clear(&t);

        /* The LUKS UUID is the key description's suffix: it is what we loaded. */
        u = s.key_description + strlen(KEY_PREFIX);
        kc_strscpy(s.luks_uuid, sizeof(s.luks_uuid), u);
        status_token(&s, header);
        *ret = s;
        return 0;
}

int kc_volume_list(char ***ret_names) {
        _cleanup_strv_ char **all = NULL, **ours = NULL;
        int r;

        r = kc_dm_list(DM_UUID_PREFIX, &all);
        if (r < 0)
                return r;
        for (size_t i = 0; all && all[i]; i++) {
                struct kc_crypt_table t;
                struct kc_dm_info info;

                bool wiped;

                if (read_mapping(all[i], NULL, &info, &t, &wiped, NULL) < 0)
                        continue; /* another tool's LUKS2 mapping */
                kc_crypt_table_clear(&t);
                r = kc_strv_push(&ours, all[i]);
                if (r < 0)
                        return r;
        }
        if (!ours && !(ours = calloc(1, sizeof(char *))))
                return -ENOMEM;
        *ret_names = TAKE_PTR(ours);
        return 0;
}
