/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * LUKS2 through libcryptsetup.  Only the header is handled here: format,
 * tokens, keyslots, key verification.  libcryptsetup's own messages are
 * routed to our debug log; every refusal is turned into one kc_err line.
 */
/* SHA256_Init/Update/Final: see digest_pbkdf2_sha256() for why the low-level interface. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <blkid.h>
#include <libcryptsetup.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "agent/luks.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "lib/fileio.h"
#include "lib/json-util.h"
#include "lib/log.h"
#include "lib/macro.h"
#include "lib/secret.h"

#define KC_LUKS_CIPHER "aes"
#define KC_LUKS_CIPHER_MODE "xts-plain64"
#define KC_LUKS_KEY_SIZE 64

struct kc_luks {
        struct crypt_device *cd;
        char *device;
        char *header;
        struct json_object *json;         /* the header's JSON, parsed once: see header_json() */
};

/*
 * crypt_init*() and crypt_free() count libcryptsetup's users of libdevmapper
 * in an unlocked global, and the last crypt_free() releases libdm: its
 * control fd closes under any thread that is in an ioctl.  Both run under
 * dmsetup-helpers' lock (dmsetup-helpers/dm.c), which kmscryptd's attach
 * threads take for every device-mapper call.
 */
static void luks_crypt_free(struct crypt_device *cd) {
        kc_dm_lock();
        crypt_free(cd);
        kc_dm_unlock();
}

DEFINE_CLEANUP_FUNC(struct crypt_device *, luks_crypt_free)
DEFINE_CLEANUP_FUNC(blkid_probe, blkid_free_probe)

/* After every write of the header: the next header_json() reads it again. */
static void header_changed(struct kc_luks *l) {
        json_object_put(l->json);
        l->json = NULL;
}

static void cryptsetup_log(int level, const char *msg, void *usrptr) {
        size_t n = strlen(msg);

        /* libcryptsetup ends its messages with a newline; our sinks add their own. */
        log_debug("libcryptsetup: %.*s", (int) (n > 0 && msg[n - 1] == '\n' ? n - 1 : n), msg);
}

/*
 * libcryptsetup sets its crypto backend up on first use (crypt_load,
 * crypt_format) behind a plain flag: with OpenSSL 3, a library context and
 * its providers.  Two threads loading their first headers at once may both
 * build one, and one may fetch a digest from a context the other has not
 * finished, failing a load or a digest check.  Until one such call has
 * succeeded, they take turns; after that, the lock is never taken again.
 */
static pthread_mutex_t backend_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool backend_ready;

static bool backend_first_use_begin(void) {
        if (atomic_load(&backend_ready))
                return false;
        pthread_mutex_lock(&backend_lock);
        return true;
}

static void backend_first_use_end(bool taken, int r) {
        if (!taken)
                return;
        if (r >= 0)
                atomic_store(&backend_ready, true);
        pthread_mutex_unlock(&backend_lock);
}

/*
 * One-time process setup: libcryptsetup messages go to the debug log, and
 * no token plugin is ever loaded (a header names its token type, and we do
 * not want a header to choose which shared object gets dlopen()ed).
 */
static void luks_setup(void) {
        crypt_set_log_callback(NULL, cryptsetup_log, NULL);
        crypt_token_external_disable();
}

static int crypt_init_paths(const char *device, const char *header, struct crypt_device **ret) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        struct crypt_device *cd = NULL;
        int r;

        pthread_once(&once, luks_setup);
        kc_dm_lock();
        r = header ? crypt_init_data_device(&cd, header, device) : crypt_init(&cd, device);
        kc_dm_unlock();
        if (r < 0)
                return r;
        crypt_set_log_callback(cd, cryptsetup_log, NULL);
        *ret = cd;
        return 0;
}

void kc_luks_warm_up(void) {
        _cleanup_(luks_crypt_freep) struct crypt_device *cd = NULL;
        bool taken;
        int r;

        if (atomic_load(&backend_ready) || crypt_init_paths(NULL, NULL, &cd) < 0)
                return;
        taken = backend_first_use_begin();
        r = crypt_set_pbkdf_type(cd, NULL);     /* sets the crypto backend up (init_crypto), as any first use */
        backend_first_use_end(taken, r);
}

static int path_exists(const char *what, const char *path, struct kc_err *err) {
        struct stat st;
        int r = kc_path_check_length(what, path, err);

        if (r < 0)
                return r;
        if (stat(path, &st) < 0)
                return kc_err_set(err, negative_errno(), "%s %s: %s", what, path, strerror(errno));
        if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
                return kc_err_set(err, -ENOTBLK, "%s %s is neither a block device nor a file", what, path);
        return 0;
}

/* ---- signatures ---- */

int kc_luks_check_blank(const char *device, struct kc_err *err) {
        _cleanup_(blkid_free_probep) blkid_probe pr = NULL;
        const char *type = NULL, *usage = NULL;
        int r;

        r = path_exists("device", device, err);
        if (r < 0)
                return r;
        errno = 0;
        pr = blkid_new_probe_from_filename(device);
        if (!pr)
                return kc_err_set(err, negative_errno(), "cannot probe %s for signatures: %s", device,
                                  strerror(errno ?: EIO));

        blkid_probe_enable_superblocks(pr, 1);
        blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_USAGE);
        blkid_probe_enable_partitions(pr, 1);
        blkid_probe_set_partitions_flags(pr, BLKID_PARTS_MAGIC);

        r = blkid_do_safeprobe(pr);
        if (r == 1)
                return 0;
        if (r == -2)
                return kc_err_set(err, -EEXIST, "%s carries several conflicting signatures", device);
        if (r < 0)
                return kc_err_set(err, -EIO, "cannot probe %s for signatures", device);

        if (blkid_probe_lookup_value(pr, "TYPE", &type, NULL) == 0) {
                (void) blkid_probe_lookup_value(pr, "USAGE", &usage, NULL);
                return kc_err_set(err, -EEXIST, "%s carries a %s signature (%s)", device, type, strna(usage));
        }
        if (blkid_probe_lookup_value(pr, "PTTYPE", &type, NULL) == 0)
                return kc_err_set(err, -EEXIST, "%s carries a %s partition table", device, type);
        return kc_err_set(err, -EEXIST, "%s carries a signature", device);
}

/* ---- format ---- */

/* Logical block size and size in bytes; a regular file behaves like a 512-byte-sector disk. */
static int device_geometry(const char *path, uint32_t *ret_lbs, uint64_t *ret_size) {
        _cleanup_close_ int fd = -1;
        struct stat st;
        int lbs = 512, r;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return negative_errno();
        r = kc_fd_size(fd, ret_size);
        if (r < 0)
                return r;
        if (S_ISBLK(st.st_mode) && ioctl(fd, BLKSSZGET, &lbs) < 0)
                return negative_errno();
        *ret_lbs = (uint32_t) lbs;
        return 0;
}

/*
 * The device's logical block size and size, refusing a sector size it cannot
 * take: requested (0: automatic) not a power of two from 512 to 4096, or
 * below the logical block size, which dm-crypt cannot work with; a device
 * whose logical blocks are larger than any sector dm-crypt supports.
 */
static int sector_size_check(const char *device, uint32_t requested, uint32_t *ret_lbs, uint64_t *ret_size,
                             struct kc_err *err) {
        uint32_t lbs;
        uint64_t size;
        int r;

        if (requested != 0 && !kc_crypt_sector_size_valid(requested))
                return kc_err_set(err, -EINVAL, "sector size %u is not a power of two between 512 and 4096", requested);
        r = device_geometry(device, &lbs, &size);
        if (r < 0)
                return kc_err_set(err, r, "cannot read the size of %s: %s", device, strerror(-r));
        if (lbs > 4096)
                return kc_err_set(err, -EINVAL, "%s has %u-byte logical blocks; dm-crypt supports at most 4096", device, lbs);
        if (requested != 0 && requested < lbs)
                return kc_err_set(err, -EINVAL, "sector size %u is below the %u-byte logical block size of %s",
                                  requested, lbs, device);
        *ret_lbs = lbs;
        *ret_size = size;
        return 0;
}

/*
 * Where libcryptsetup puts the data of a new LUKS2 volume whose header is
 * on the device: after two 16 KiB metadata copies and the keyslots area,
 * 16 MiB in all (LUKS2_DEFAULT_HDR_SIZE), rounded up to the device's
 * alignment and moved by its alignment offset (LUKS2_hdr_get_storage_params()
 * and device_topology_alignment() in its lib/): never less.  A detached
 * header leaves the data at offset 0.
 */
#define LUKS2_DEFAULT_DATA_OFFSET (16ULL << 20)

/* -ENOSPC unless size bytes keep one sector of sector_size bytes for data after data_offset bytes. */
static int data_room_check(const char *device, uint64_t size, uint64_t data_offset, uint32_t sector_size,
                           struct kc_err *err) {
        if (size >= data_offset && size - data_offset >= sector_size)
                return 0;
        if (data_offset == 0)
                return kc_err_set(err, -ENOSPC, "device %s is %" PRIu64 " bytes; it needs at least %" PRIu32
                                  " (one sector of data; the header is detached)", device, size, sector_size);
        return kc_err_set(err, -ENOSPC, "device %s is %" PRIu64 " bytes; it needs at least %" PRIu64
                          " (%" PRIu64 " for the LUKS2 header, %" PRIu32 " for one sector of data)",
                          device, size, data_offset + sector_size, data_offset, sector_size);
}

/*
 * The encryption sector size of a new volume on device (its header there, or
 * in header): 4096 bytes wherever the device allows them (they are markedly
 * faster), else the device's logical block size; an explicit size as
 * sector_size_check() allows it.  Refuses a device with no room for one
 * sector of it after the header, before crypt_format(), which grows a file
 * that is too small for the header and keeps no data room.
 */
static int pick_sector_size(const char *device, const char *header, uint32_t requested, uint32_t *ret,
                            struct kc_err *err) {
        uint32_t lbs = 0;
        uint64_t size = 0;
        int r;

        r = sector_size_check(device, requested, &lbs, &size, err);
        if (r < 0)
                return r;
        /* Automatic: the logical block size is the smallest sector it may choose. */
        r = data_room_check(device, size, header ? 0 : LUKS2_DEFAULT_DATA_OFFSET, requested ?: lbs, err);
        if (r < 0)
                return r;
        if (requested != 0)
                *ret = requested;
        else
                *ret = size % 4096 == 0 ? 4096 : lbs;
        return 0;
}

int kc_luks_check_geometry(const char *device, const char *header, uint32_t sector_size, struct kc_err *err) {
        uint32_t picked;

        return pick_sector_size(device, header, sector_size, &picked, err);
}

/*
 * The same, exactly, of a header crypt_format() has just laid out: a
 * device whose topology moves the data past the default offset fails here,
 * before a keyslot or token makes the header look usable.
 */
static int formatted_room_check(struct crypt_device *cd, const char *device, struct kc_err *err) {
        uint64_t size;
        int r;

        r = kc_path_size(device, &size);
        if (r < 0)
                return kc_err_set(err, r, "cannot read the size of %s: %s", device, strerror(-r));
        return data_room_check(device, size, crypt_get_data_offset(cd) * 512, (uint32_t) crypt_get_sector_size(cd),
                               err);
}

/*
 * The crypt_pbkdf_type for p: libcryptsetup's LUKS2 default with what p
 * changes.  0 with *ret untouched when p asks for nothing (the default as is).
 */
static int pbkdf_build(const struct kc_luks_pbkdf *p, struct crypt_pbkdf_type *ret, struct kc_err *err) {
        const struct crypt_pbkdf_type *def;
        struct crypt_pbkdf_type pbkdf;

        if (!p || (!p->type && p->iterations == 0 && p->max_memory_kb == 0))
                return 0;
        def = crypt_get_pbkdf_default(CRYPT_LUKS2);
        if (!def)
                return kc_err_set(err, -EINVAL, "libcryptsetup has no default PBKDF for LUKS2");
        pbkdf = *def;
        if (p->type)
                pbkdf.type = p->type;
        if (streq(pbkdf.type, CRYPT_KDF_PBKDF2)) {
                pbkdf.max_memory_kb = 0;
                pbkdf.parallel_threads = 0;
        }
        if (p->max_memory_kb)
                pbkdf.max_memory_kb = p->max_memory_kb;
        if (p->iterations) {
                pbkdf.iterations = p->iterations;
                pbkdf.flags |= CRYPT_PBKDF_NO_BENCHMARK;
        }
        *ret = pbkdf;
        return 1;
}

static int pbkdf_apply(struct crypt_device *cd, const struct kc_luks_pbkdf *p, struct kc_err *err) {
        struct crypt_pbkdf_type pbkdf;
        int r;

        r = pbkdf_build(p, &pbkdf, err);
        if (r <= 0)
                return r;
        r = crypt_set_pbkdf_type(cd, &pbkdf);
        if (r < 0)
                return kc_err_set(err, r, "PBKDF %s with these costs is refused by libcryptsetup", pbkdf.type);
        return 0;
}

/* libcryptsetup's error messages of one scratch context, joined into one line. */
struct refusal {
        char msg[sizeof(((struct kc_err *) NULL)->msg)];
};

static void refusal_log(int level, const char *msg, void *usrptr) {
        struct refusal *why = usrptr;
        size_t n = strlen(why->msg), len = strcspn(msg, "\n");

        cryptsetup_log(level, msg, NULL);
        if (level != CRYPT_LOG_ERROR || len == 0)
                return;
        snprintf(why->msg + n, sizeof(why->msg) - n, "%s%.*s", n > 0 ? "; " : "", (int) len, msg);
}

int kc_luks_pbkdf_check(const struct kc_luks_pbkdf *p, struct kc_err *err) {
        _cleanup_(luks_crypt_freep) struct crypt_device *cd = NULL;
        struct crypt_pbkdf_type pbkdf;
        struct refusal why = {};
        bool taken;
        int r;

        r = pbkdf_build(p, &pbkdf, err);
        if (r <= 0)
                return r;
        /*
         * libcryptsetup checks the memory floor only of forced costs, but its
         * benchmark never raises a memory cost: one below the floor would fail
         * at the keyslot, after the header is written.  Ask about the highest
         * forced iteration count instead, which is above any iteration floor,
         * so that what is judged is the rest (type, memory, threads).
         */
        if (!(pbkdf.flags & CRYPT_PBKDF_NO_BENCHMARK)) {
                pbkdf.iterations = UINT32_MAX;
                pbkdf.flags |= CRYPT_PBKDF_NO_BENCHMARK;
        }
        /* No device: only libcryptsetup's own checks of the cost run, nothing is read or written. */
        r = crypt_init_paths(NULL, NULL, &cd);
        if (r < 0)
                return kc_err_set(err, r, "cannot initialise libcryptsetup: %s", strerror(-r));
        crypt_set_log_callback(cd, refusal_log, &why);
        taken = backend_first_use_begin();   /* it sets libcryptsetup's crypto backend up (init_crypto) */
        r = crypt_set_pbkdf_type(cd, &pbkdf);
        backend_first_use_end(taken, r);
        if (r < 0)
                return kc_err_set(err, r, "PBKDF %s refused by libcryptsetup: %s", pbkdf.type,
                                  why.msg[0] ? why.msg : strerror(-r));
        return 0;
}

static int token_add(struct crypt_device *cd, int id, const struct kc_token *t, struct kc_err *err) {
        _cleanup_free_ char *json = NULL;
        int r;

        r = kc_token_format(t, &json);
        if (r < 0)
                return kc_err_set(err, r, "cannot serialise the kmscrypt token: %s", strerror(-r));
        r = crypt_token_json_set(cd, id < 0 ? CRYPT_ANY_TOKEN : id, json);
        if (r < 0)
                return kc_err_set(err, r, "cannot write the kmscrypt token: %s", strerror(-r));
        return r;
}

static int bind_key_json(struct json_object *hdr, const void *key, size_t key_size, struct kc_token *t);

/* A new header's token, with the key check for its digest (kc_luks_bind_key()). */
static int token_add_bound(struct crypt_device *cd, const struct kc_token *token, const void *key, size_t key_size,
                           struct kc_err *err) {
        _cleanup_json_ struct json_object *hdr = NULL;
        struct kc_token t = *token;
        int r;

        r = kc_luks_metadata_json(cd, &hdr);
        if (r >= 0)
                r = bind_key_json(hdr, key, key_size, &t);
        if (r < 0 && r != -EOPNOTSUPP)
                return kc_err_set(err, r, "the new LUKS2 digest does not accept the volume key: %s", strerror(-r));
        return token_add(cd, -1, &t, err);
}

/*
 * The LUKS2 digest lets anyone check a candidate volume key.  cryptsetup
 * benchmarks its PBKDF2 to about 125 ms, which protects nothing here: the
 * key is 512 random bits, not a passphrase, so no iteration count changes
 * what a guess costs in any way that matters.  It does cost ~0.1 s on every
 * attach (crypt_volume_key_verify) and a 0.5 s benchmark at format, so the
 * digest gets libcryptsetup's minimum (1000 iterations, no benchmark).
 */
static const struct crypt_pbkdf_type digest_pbkdf = {
        .type = CRYPT_KDF_PBKDF2,
        .hash = "sha256",
        .iterations = 1000,
        .flags = CRYPT_PBKDF_NO_BENCHMARK,
};

/*
 * libcryptsetup grows a detached header file to its full size, but refuses
 * one that is shorter than a sector to begin with (as a new file is): give
 * it its first 4 KiB, as the cryptsetup tool does.
 */
static int header_file_prepare(const char *header, struct kc_err *err) {
        _cleanup_close_ int fd = -1;
        struct stat st;
        int r;

        fd = open(header, O_RDWR | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return kc_err_set(err, negative_errno(), "header %s: %s", header, strerror(errno));
        if (!S_ISREG(st.st_mode) || st.st_size >= 4096)
                return 0;
        r = posix_fallocate(fd, 0, 4096);
        if (r != 0 && ftruncate(fd, 4096) < 0)
                return kc_err_set(err, -r, "cannot extend header %s: %s", header, strerror(r));
        return 0;
}

int kc_luks_format(const struct kc_luks_format_params *p, const struct kc_token *token, struct kc_err *err) {
        _cleanup_(luks_crypt_freep) struct crypt_device *cd = NULL;
        struct crypt_params_luks2 params = {};
        uint32_t sector_size = 0;
        bool taken;
        int r;

        if (!p || !p->device || !token || !p->volume_key)
                return -EINVAL;
        if (p->volume_key_size != KC_LUKS_KEY_SIZE)
                return kc_err_set(err, -EINVAL, "volume key must be %d bytes for aes-xts-plain64", KC_LUKS_KEY_SIZE);
        if (p->recovery_passphrase) {
                /* Its PBKDF is applied only after crypt_format(): refuse a bad cost before anything is written. */
                r = kc_luks_pbkdf_check(p->pbkdf, err);
                if (r < 0)
                        return r;
        }
        r = path_exists("device", p->device, err);
        if (r < 0)
                return r;
        if (!p->force) {
                r = kc_luks_check_blank(p->device, err);
                if (r < 0)
                        return r;
        }
        r = pick_sector_size(p->device, p->header, p->sector_size, &sector_size, err);
        if (r < 0)
                return r;
        if (p->header) {
                r = header_file_prepare(p->header, err);
                if (r < 0)
                        return r;
        }

        r = crypt_init_paths(p->device, p->header, &cd);
        if (r < 0)
                return kc_err_set(err, r, "cannot open %s: %s", p->header ?: p->device, strerror(-r));
        params = (struct crypt_params_luks2) {
                .sector_size = sector_size,
                .label = p->label,
        };
        /* Setting a PBKDF is a first use of libcryptsetup's crypto too. */
        taken = backend_first_use_begin();
        r = crypt_set_pbkdf_type(cd, &digest_pbkdf);
        if (r < 0) {
                backend_first_use_end(taken, r);
                return kc_err_set(err, r, "cannot set the digest PBKDF: %s", strerror(-r));
        }
        kc_dm_lock(); /* crypt_format() asks device-mapper which dm-crypt features it has */
        r = crypt_format(cd, CRYPT_LUKS2, KC_LUKS_CIPHER, KC_LUKS_CIPHER_MODE, p->uuid,
                         p->volume_key, p->volume_key_size, &params);
        kc_dm_unlock();
        backend_first_use_end(taken, r);
        if (r < 0)
                return kc_err_set(err, r, "cannot format %s as LUKS2: %s", p->header ?: p->device, strerror(-r));
        r = formatted_room_check(cd, p->device, err);
        if (r < 0)
                return r;

        if (p->recovery_passphrase) {
                /* A passphrase is another matter: back to the defaults, or what the caller asked for. */
                r = crypt_set_pbkdf_type(cd, NULL);
                if (r >= 0)
                        r = pbkdf_apply(cd, p->pbkdf, err);
                if (r < 0)
                        return kc_err_set(err, r, "cannot set the keyslot PBKDF: %s", strerror(-r));
                r = crypt_keyslot_add_by_volume_key(cd, CRYPT_ANY_SLOT, p->volume_key, p->volume_key_size,
                                                    p->recovery_passphrase, p->recovery_passphrase_len);
                if (r < 0)
                        return kc_err_set(err, r, "cannot add the recovery keyslot: %s", strerror(-r));
        }

        r = token_add_bound(cd, token, p->volume_key, p->volume_key_size, err);
        return r < 0 ? r : 0;
}

/* ---- open ---- */

/*
 * libcryptsetup fails the header reads of a device shorter than a header
 * with -EIO, which would read as a failing disk.  Two copies of at least
 * 16 KiB each are the smallest LUKS2 header there is.
 */
#define LUKS2_MIN_HEADERS_SIZE (2 * 16384)

static bool too_small_for_luks2(const char *path) {
        uint64_t size;

        return kc_path_size(path, &size) >= 0 && size < LUKS2_MIN_HEADERS_SIZE;
}

int kc_luks_check_paths(const char *device, const char *header, struct kc_err *err) {
        int r;

        if (!device)
                return -EINVAL;
        r = path_exists("device", device, err);
        if (r >= 0 && header)
                r = path_exists("header", header, err);
        return r;
}

/*
 * A PBKDF set before the load is one the load need not set up: for LUKS2
 * that is argon2id, its threads capped by the CPUs online and its memory
 * by half the RAM, read from /sys and /proc every time (8 system calls,
 * about 5% of a load's CPU on the host; within the noise under emulation,
 * where the setting's own hash lookup costs as much).  PBKDF2 at
 * libcryptsetup's own default cost reads neither.
 */
static int luks_preset_pbkdf(struct crypt_device *cd) {
        return crypt_set_pbkdf_type(cd, crypt_get_pbkdf_default(CRYPT_LUKS1));
}

static int luks_open(const char *device, const char *header, bool read_only, struct kc_luks **ret,
                     struct kc_err *err) {
        _cleanup_(luks_crypt_freep) struct crypt_device *cd = NULL;
        _cleanup_free_ struct kc_luks *l = NULL;
        const char *meta = header ?: device;
        const char *type;
        bool taken;
        int r;

        if (!device || !ret)
                return -EINVAL;
        r = kc_luks_check_paths(device, header, err);
        if (r < 0)
                return r;

        r = crypt_init_paths(device, header, &cd);
        if (r < 0)
                return kc_err_set(err, r, "cannot open %s: %s", meta, strerror(-r));
        taken = backend_first_use_begin();
        /* A saving only: refused (it never is), the load sets its own up as before. */
        if (read_only)
                (void) luks_preset_pbkdf(cd);
        r = crypt_load(cd, CRYPT_LUKS, NULL);
        backend_first_use_end(taken, r);
        if (r == -EINVAL)
                return kc_err_set(err, -EINVAL, "%s is not a LUKS2 device (no valid LUKS header)", meta);
        if (r == -EIO && too_small_for_luks2(meta))
                return kc_err_set(err, -EINVAL, "%s is not a LUKS2 device (too small for a LUKS2 header)", meta);
        if (r < 0)
                return kc_err_set(err, r, "cannot read the LUKS header of %s: %s", meta, strerror(-r));
        type = crypt_get_type(cd);
        if (streq_ptr(type, CRYPT_LUKS1))
                return kc_err_set(err, -EINVAL, "%s is LUKS1; kmscrypt needs LUKS2 (see cryptsetup convert)", meta);
        if (!streq_ptr(type, CRYPT_LUKS2))
                return kc_err_set(err, -EINVAL, "%s is not a LUKS2 device", meta);

        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->device = strdup(device);
        l->header = header ? strdup(header) : NULL;
        if (!l->device || (header && !l->header)) {
                free(l->device);
                free(l->header);
                return -ENOMEM;
        }
        l->cd = TAKE_PTR(cd);
        *ret = TAKE_PTR(l);
        return 0;
}

int kc_luks_open(const char *device, const char *header, struct kc_luks **ret, struct kc_err *err) {
        return luks_open(device, header, false, ret, err);
}

int kc_luks_open_read(const char *device, const char *header, struct kc_luks **ret, struct kc_err *err) {
        return luks_open(device, header, true, ret, err);
}

bool kc_luks_is_luks1(const char *path) {
        _cleanup_(luks_crypt_freep) struct crypt_device *cd = NULL;
        bool taken;
        int r;

        if (!path || crypt_init(&cd, path) < 0)
                return false;
        taken = backend_first_use_begin();
        r = crypt_load(cd, CRYPT_LUKS1, NULL);
        backend_first_use_end(taken, r);
        return r >= 0;
}

/* Whoever holds the crypt_device may write the header: our parsed copy is dropped. */
struct crypt_device *kc_luks_crypt_device(struct kc_luks *l) {
        if (!l)
                return NULL;
        header_changed(l);
        return l->cd;
}

void kc_luks_close(struct kc_luks *l) {
        if (!l)
                return;
        header_changed(l);
        luks_crypt_free(l->cd);
        free(l->device);
        free(l->header);
        free(l);
}

/* ---- segment ---- */

/*
 * Our own view of the header JSON, from crypt_dump_json(): what the
 * crypt_get_* calls do not give.  An attach reads it for the segment and
 * again for the digest; serialising and parsing it is a tenth of a header
 * load, so it is parsed once and kept until something writes the header.
 * *ret is a new reference.
 */
static int header_json(struct kc_luks *l, struct json_object **ret) {
        int r;

        if (!l->json) {
                r = kc_luks_metadata_json(l->cd, &l->json);
                if (r < 0)
                        return r;
        }
        *ret = json_object_get(l->json);
        return 0;
}

int kc_luks_metadata_json(struct crypt_device *cd, struct json_object **ret) {
        const char *text = NULL;
        int r;

        r = crypt_dump_json(cd, &text, 0);
        if (r < 0)
                return r;
        /* libcryptsetup's own json-c wrote the text: a refusal here is a bug, not a header. */
        r = kc_json_parse_object(text, strlen(text), NULL, ret, NULL);
        return r == -EBADMSG ? -EINVAL : r;
}

static struct json_object *json_path(struct json_object *o, const char *a, const char *b) {
        struct json_object *v = NULL;

        if (!json_object_object_get_ex(o, a, &v) || !b)
                return v;
        return json_object_object_get_ex(v, b, &v) ? v : NULL;
}

/* Segment size: "dynamic" (to the end of the device) is 0. */
static int segment_size(struct json_object *hdr, uint64_t *ret) {
        struct json_object *seg = json_path(hdr, "segments", "0"), *size;
        const char *s;
        char *end;
        unsigned long long v;

        if (!seg || json_object_object_length(json_object_object_get(hdr, "segments")) != 1)
                return -EOPNOTSUPP;
        size = json_object_object_get(seg, "size");
        s = json_object_get_string(size);
        if (!s)
                return -EINVAL;
        if (streq(s, "dynamic")) {
                *ret = 0;
                return 0;
        }
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || *end || v % 512)
                return -EINVAL;
        *ret = v / 512;
        return 0;
}

static int copy_string(char *buf, size_t size, const char *s) {
        if (!s)
                s = "";
        if (strlen(s) >= size)
                return -ENAMETOOLONG;
        memcpy(buf, s, strlen(s) + 1);
        return 0;
}

/*
 * Refuses (-EOPNOTSUPP) what a single dm-crypt target cannot describe: an
 * interrupted reencryption (several segments) and authenticated encryption
 * (dm-integrity underneath).
 */
int kc_luks_segment(struct kc_luks *l, struct kc_luks_segment *ret) {
        _cleanup_json_ struct json_object *hdr = NULL;
        struct crypt_params_integrity ip = {};
        struct kc_luks_segment s = {};
        int r;

        if (!l || !ret)
                return -EINVAL;
        if (crypt_reencrypt_status(l->cd, NULL) != CRYPT_REENCRYPT_NONE)
                return -EOPNOTSUPP;
        if (crypt_get_integrity_info(l->cd, &ip) == 0 && ip.integrity)
                return -EOPNOTSUPP;
        r = header_json(l, &hdr);
        if (r < 0)
                return r;
        r = segment_size(hdr, &s.size);
        if (r < 0)
                return r;

        if (snprintf(s.cipher, sizeof(s.cipher), "%s-%s", strna(crypt_get_cipher(l->cd)),
                     strna(crypt_get_cipher_mode(l->cd))) >= (int) sizeof(s.cipher))
                return -ENAMETOOLONG;
        /* 0 without keyslots: libcryptsetup 2.6 records the key size only in keyslots (see luks.h). */
        r = crypt_get_volume_key_size(l->cd);
        s.key_size = r > 0 ? (size_t) r : 0;
        s.offset = crypt_get_data_offset(l->cd);
        s.iv_offset = crypt_get_iv_offset(l->cd);
        s.sector_size = (uint32_t) crypt_get_sector_size(l->cd);
        if ((r = copy_string(s.uuid, sizeof(s.uuid), crypt_get_uuid(l->cd))) < 0 ||
            (r = copy_string(s.label, sizeof(s.label), crypt_get_label(l->cd))) < 0 ||
            (r = copy_string(s.data_device, sizeof(s.data_device), crypt_get_device_name(l->cd))) < 0)
                return r;
        *ret = s;
        return 0;
}

/* ---- a look ahead: the primary header, read without libcryptsetup ---- */

/*
 * libcryptsetup's load is most of an attach's own time under emulation
 * (checksums of both header copies, JSON validation), and nothing of the
 * mapping could start before it.  A peek reads the primary header's JSON
 * area and binary UUID directly, so that the KMS call and the table load
 * can run while libcryptsetup loads.  It is never trusted: kc_luks_peek_matches()
 * holds it against the loaded header, and attach resumes no mapping built
 * from a peek that does not match (agent/attach.c).
 *
 * What the peek checks: the primary binary header's magic and version;
 * its hdr_offset 0, the offset the primary copy is read at, and its
 * hdr_size one LUKS2 allows, a power of two from 16 KiB (up to
 * PEEK_HDR_SIZE_MAX here), as cryptsetup's loader checks them before the
 * checksum (hdr_disk_sanity_check_pre() in lib/luks2/luks2_disk_metadata.c;
 * the power of two is LUKS2_check_metadata_area_size()'s); a NUL-terminated
 * UUID and label; and the JSON area's layout as the loader reads it
 * (validate_json_area()): '{' first, the text, then only NUL bytes to the
 * area's end, at least one; the text strict JSON, an object.  What it
 * leaves to libcryptsetup's load: the checksum (the load's main cost), the
 * seqid, the secondary header and the choice between the two copies, and
 * the LUKS2 validation of the JSON.  A primary copy the load passes over
 * (bad checksum, older seqid) is no risk: the load then gives the
 * secondary's JSON, and the peek counts only where that is the JSON it
 * read.  Whatever the peek refuses is -EOPNOTSUPP (-ENOMEM aside), and
 * attach waits for the load, which gives the real error if there is one.
 */
#define LUKS2_BIN_HDR_SIZE 4096
#define LUKS2_MAGIC "LUKS\xba\xbe"
#define LUKS2_LABEL_OFF 24
#define LUKS2_UUID_OFF 168
#define LUKS2_HDR_OFFSET_OFF 256
#define LUKS2_HDR_SIZE_MIN (16 * 1024)
#define PEEK_HDR_SIZE_DEFAULT (16 * 1024)
#define PEEK_HDR_SIZE_MAX (64 * 1024)   /* a bigger header just waits for the load */

struct kc_luks_peek {
        struct json_object *json;
        char uuid[40];
        char label[48];
        char data_device[PATH_MAX];
};

/* A NUL-terminated string field of the binary header, or -EOPNOTSUPP. */
static int peek_field(const uint8_t *hdr, size_t off, char *buf, size_t size) {
        const char *f = (const char *) hdr + off;

        if (strnlen(f, size) == size)
                return -EOPNOTSUPP;
        memcpy(buf, f, strlen(f) + 1);
        return 0;
}

/*
 * The first len bytes of path in buf (aligned).  From the page cache when
 * they are all there, without I/O and without readahead (RWF_NOWAIT): udev's
 * blkid probe reads a LUKS2 header when its device appears, so a boot or
 * hotplug attach usually finds it cached.  Otherwise one direct read, as
 * libcryptsetup reads headers, so that no readahead of the data behind the
 * header goes through the page cache; a buffered read where O_DIRECT is
 * refused (tmpfs).  A stale cached copy is no risk: the peek is held against
 * libcryptsetup's direct load before anything of it is used.
 */
static int read_start(const char *path, void *buf, size_t len) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        struct iovec iov = { .iov_base = buf, .iov_len = len };
        ssize_t n;

        if (fd < 0)
                return negative_errno();
        if (preadv2(fd, &iov, 1, 0, RWF_NOWAIT) == (ssize_t) len)
                return 0;
        (void) fcntl(fd, F_SETFL, O_DIRECT);    /* refused by tmpfs: then a buffered read */
        n = pread(fd, buf, len, 0);
        if (n < 0 && errno == EINVAL) {         /* O_DIRECT accepted by fcntl, refused at read */
                (void) fcntl(fd, F_SETFL, 0);
                n = pread(fd, buf, len, 0);
        }
        return n == (ssize_t) len ? 0 : -EOPNOTSUPP;
}

int kc_luks_peek(const char *device, const char *header, struct kc_luks_peek **ret) {
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_(kc_luks_peek_freep) struct kc_luks_peek *pk = NULL;
        uint64_t hdr_size, hdr_offset;
        size_t area_size, json_len;
        const char *area;
        int r;

        if (!device || !ret)
                return -EINVAL;
        if (posix_memalign((void **) &buf, LUKS2_BIN_HDR_SIZE, PEEK_HDR_SIZE_MAX) != 0)
                return -ENOMEM;
        /* The default header size in one read; a bigger header's rest in a second. */
        r = read_start(header ?: device, buf, PEEK_HDR_SIZE_DEFAULT);
        if (r < 0)
                return r;
        if (memcmp(buf, LUKS2_MAGIC, 6) != 0 || buf[6] != 0 || buf[7] != 2)
                return -EOPNOTSUPP;
        memcpy(&hdr_size, buf + 8, sizeof(hdr_size));
        hdr_size = be64toh(hdr_size);
        memcpy(&hdr_offset, buf + LUKS2_HDR_OFFSET_OFF, sizeof(hdr_offset));
        /* A copy that says it lives elsewhere, or of a size LUKS2 has not, the load refuses as the primary. */
        if (be64toh(hdr_offset) != 0)
                return -EOPNOTSUPP;
        if (hdr_size < LUKS2_HDR_SIZE_MIN || hdr_size > PEEK_HDR_SIZE_MAX || (hdr_size & (hdr_size - 1)) != 0)
                return -EOPNOTSUPP;
        if (hdr_size > PEEK_HDR_SIZE_DEFAULT && read_start(header ?: device, buf, hdr_size) < 0)
                return -EOPNOTSUPP;
        area = (const char *) buf + LUKS2_BIN_HDR_SIZE;
        area_size = hdr_size - LUKS2_BIN_HDR_SIZE;
        json_len = strnlen(area, area_size);
        /* A JSON area the load would refuse (before the JSON itself) is none the peek goes on from. */
        if (area[0] != '{' || json_len == area_size || !kc_all_zero(area + json_len, area_size - json_len))
                return -EOPNOTSUPP;

        pk = calloc(1, sizeof(*pk));
        if (!pk)
                return -ENOMEM;
        if (peek_field(buf, LUKS2_UUID_OFF, pk->uuid, sizeof(pk->uuid)) < 0 ||
            peek_field(buf, LUKS2_LABEL_OFF, pk->label, sizeof(pk->label)) < 0 ||
            copy_string(pk->data_device, sizeof(pk->data_device), device) < 0)
                return -EOPNOTSUPP;
        r = kc_json_parse_object(area, json_len, NULL, &pk->json, NULL);
        if (r < 0)
                return r == -ENOMEM ? r : -EOPNOTSUPP;
        *ret = TAKE_PTR(pk);
        return 0;
}

void kc_luks_peek_free(struct kc_luks_peek *pk) {
        if (!pk)
                return;
        json_object_put(pk->json);
        free(pk);
}

/* A non-negative integer member (JSON number, or a decimal string as LUKS2 writes 64-bit ones). */
static int json_u64_member(struct json_object *o, const char *key, uint64_t *ret) {
        struct json_object *v = json_object_object_get(o, key);
        const char *s;
        char *end;

        if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0) {
                *ret = (uint64_t) json_object_get_int64(v);
                return 0;
        }
        s = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
        if (!s || !*s || *s == '-')
                return -EOPNOTSUPP;
        errno = 0;
        *ret = strtoull(s, &end, 10);
        return errno || *end ? -EOPNOTSUPP : 0;
}

/*
 * The segment as kc_luks_segment() gives it, from the peeked JSON; the key
 * size is left 0 (the unwrapped key's length, proven by the digest check).
 */
int kc_luks_peek_segment(const struct kc_luks_peek *pk, struct kc_luks_segment *ret) {
        struct json_object *seg = json_path(pk->json, "segments", "0");
        struct kc_luks_segment s = {};
        uint64_t offset, iv, sector_size;
        const char *cipher;
        int r;

        if (!json_object_is_type(seg, json_type_object) ||
            !streq_ptr(json_object_get_string(json_object_object_get(seg, "type")), "crypt") ||
            json_object_object_get(seg, "integrity"))
                return -EOPNOTSUPP;
        r = segment_size(pk->json, &s.size);
        if (r < 0)
                return -EOPNOTSUPP;
        cipher = json_object_is_type(json_object_object_get(seg, "encryption"), json_type_string)
                ? json_object_get_string(json_object_object_get(seg, "encryption")) : NULL;
        /* Unchecked bytes: a sector size that the attach computes with must be one LUKS2 allows. */
        if (!cipher || json_u64_member(seg, "offset", &offset) < 0 || offset % 512 ||
            json_u64_member(seg, "iv_tweak", &iv) < 0 || json_u64_member(seg, "sector_size", &sector_size) < 0 ||
            !kc_crypt_sector_size_valid(sector_size) || copy_string(s.cipher, sizeof(s.cipher), cipher) < 0)
                return -EOPNOTSUPP;
        s.offset = offset / 512;
        s.iv_offset = iv;
        s.sector_size = (uint32_t) sector_size;
        memcpy(s.uuid, pk->uuid, sizeof(s.uuid));
        memcpy(s.label, pk->label, sizeof(s.label));
        memcpy(s.data_device, pk->data_device, sizeof(s.data_device));
        *ret = s;
        return 0;
}

/*
 * The one kmscrypt token of the peeked JSON, parsed as kc_luks_token_read()
 * parses it.  Only the ids libcryptsetup's token calls reach count: "0" up
 * to crypt_token_max() - 1, written as it writes them.
 */
int kc_luks_peek_token(const struct kc_luks_peek *pk, struct kc_token *ret) {
        struct json_object *tokens = json_object_object_get(pk->json, "tokens"), *found = NULL;
        int max = crypt_token_max(CRYPT_LUKS2);
        struct kc_err perr = {};
        char canonical[16];

        if (!json_object_is_type(tokens, json_type_object))
                return -EOPNOTSUPP;
        json_object_object_foreach(tokens, id, t) {
                char *end;
                long n;

                errno = 0;
                n = strtol(id, &end, 10);
                if (errno || *end || n < 0 || n >= max ||
                    (snprintf(canonical, sizeof(canonical), "%ld", n), !streq(canonical, id)))
                        continue;
                if (!streq_ptr(json_object_get_string(json_object_object_get(t, "type")), KC_TOKEN_TYPE))
                        continue;
                if (found)
                        return -EOPNOTSUPP;
                found = t;
        }
        if (!found)
                return -EOPNOTSUPP;
        return kc_token_parse(json_object_to_json_string_ext(found, JSON_C_TO_STRING_PLAIN), ret, &perr) < 0
                ? -EOPNOTSUPP : 0;
}

/*
 * Whether the peek saw what libcryptsetup loaded: the same JSON (so the
 * same token and digest) and the same UUID and label.  seg is the peek's
 * segment: it must be the one kc_luks_segment() gives, but for the key size,
 * which the peek leaves 0 and which libcryptsetup knows only from keyslots.
 */
bool kc_luks_peek_matches(const struct kc_luks_peek *pk, const struct kc_luks_segment *seg, struct kc_luks *l,
                          const struct kc_luks_segment *lseg) {
        _cleanup_json_ struct json_object *hdr = NULL;

        if (!pk || !l || header_json(l, &hdr) < 0 || !json_object_equal(pk->json, hdr))
                return false;
        return streq(seg->cipher, lseg->cipher) && seg->offset == lseg->offset &&
                seg->iv_offset == lseg->iv_offset && seg->size == lseg->size &&
                seg->sector_size == lseg->sector_size && streq(seg->uuid, lseg->uuid) &&
                streq(seg->label, lseg->label) && streq(seg->data_device, lseg->data_device);
}

/* ---- token ---- */

/* Token ids of type kmscrypt; more than one is refused, since nothing could say which one counts. */
static int token_find(struct kc_luks *l, int *ret_id, struct kc_err *err) {
        int max = crypt_token_max(CRYPT_LUKS2), found = -1;

        for (int i = 0; i < max; i++) {
                const char *type = NULL;
                crypt_token_info st = crypt_token_status(l->cd, i, &type);

                if (st == CRYPT_TOKEN_INVALID || st == CRYPT_TOKEN_INACTIVE || !streq_ptr(type, KC_TOKEN_TYPE))
                        continue;
                if (found >= 0)
                        return kc_err_set(err, -ENOTUNIQ, "%s has more than one kmscrypt token (%d and %d)",
                                          l->header ?: l->device, found, i);
                found = i;
        }
        if (found < 0)
                return kc_err_set(err, -ENOENT, "%s has no kmscrypt token", l->header ?: l->device);
        *ret_id = found;
        return 0;
}

int kc_luks_token_read(struct kc_luks *l, struct kc_token *ret, int *ret_id, struct kc_err *err) {
        struct kc_err perr = {};
        const char *json = NULL;
        int id, r;

        if (!l || !ret)
                return -EINVAL;
        r = token_find(l, &id, err);
        if (r < 0)
                return r;
        r = crypt_token_json_get(l->cd, id, &json);
        if (r < 0)
                return kc_err_set(err, r, "cannot read token %d of %s: %s", id, l->header ?: l->device, strerror(-r));
        r = kc_token_parse(json, ret, &perr);
        if (r < 0)
                return kc_err_set(err, r, "kmscrypt token %d of %s is invalid: %s", id, l->header ?: l->device,
                                  kc_err_msg(&perr, r));
        if (ret_id)
                *ret_id = id;
        return 0;
}

int kc_luks_token_write(struct kc_luks *l, int id, const struct kc_token *t, struct kc_err *err) {
        struct kc_err ferr = {};
        int existing = -1, r;

        if (!l || !t)
                return -EINVAL;
        r = token_find(l, &existing, &ferr);
        if (r < 0 && r != -ENOENT)
                return kc_err_set(err, r, "%s", kc_err_msg(&ferr, r));
        if (id < 0 && existing >= 0)
                return kc_err_set(err, -EEXIST, "%s already has a kmscrypt token (%d)", l->header ?: l->device, existing);
        /* Replacing must not clobber a token of another type, e.g. a systemd-tpm2 one. */
        if (id >= 0 && id != existing)
                return kc_err_set(err, -EINVAL, "token %d of %s is not the kmscrypt token", id, l->header ?: l->device);
        header_changed(l);
        return token_add(l->cd, id, t, err);
}

/* ---- keys and keyslots ---- */

/*
 * The LUKS2 digest every attach checks: PBKDF2-HMAC-SHA256 (RFC 8018) of
 * the volume key, one 32-byte block.  libcryptsetup computes it through
 * OpenSSL 3's provider HMAC, whose per-iteration context copies and
 * allocations cost five times the hashing itself (0.34 against 1.8 ms for
 * 1000 iterations on the host; 30-90 ms of an attach in the vm tier).
 * Here the inner and outer HMAC states are computed once and copied per
 * iteration, with OpenSSL's SHA-256 doing every block; the result is
 * checked against OpenSSL's PKCS5_PBKDF2_HMAC in tests/unit/test-luks.c.
 * All key-derived state lives in one wiped secret buffer.
 */
struct hmac_sha256 {
        SHA256_CTX inner, outer, c;
        unsigned char pad[SHA256_CBLOCK], u[SHA256_DIGEST_LENGTH], t[SHA256_DIGEST_LENGTH];
};

/* RFC 2104 with the pads hashed once; NULL: no memory, or a key longer than a block (no LUKS2 key is). */
static struct hmac_sha256 *hmac_sha256_new(const void *key, size_t key_size) {
        struct hmac_sha256 *h;

        if (key_size > SHA256_CBLOCK || !(h = kc_secret_alloc(sizeof(*h))))
                return NULL;
        memset(h->pad, 0x36, sizeof(h->pad));
        for (size_t i = 0; i < key_size; i++)
                h->pad[i] ^= ((const unsigned char *) key)[i];
        SHA256_Init(&h->inner);
        SHA256_Update(&h->inner, h->pad, sizeof(h->pad));
        for (size_t i = 0; i < sizeof(h->pad); i++)
                h->pad[i] ^= 0x36 ^ 0x5c;
        SHA256_Init(&h->outer);
        SHA256_Update(&h->outer, h->pad, sizeof(h->pad));
        h->c = h->inner;
        return h;
}

/* The HMAC of what was fed to h->c since it was set to h->inner, into h->u. */
static void hmac_sha256_final(struct hmac_sha256 *h) {
        SHA256_Final(h->u, &h->c);
        h->c = h->outer;
        SHA256_Update(&h->c, h->u, sizeof(h->u));
        SHA256_Final(h->u, &h->c);
}

static int digest_pbkdf2_sha256(const void *key, size_t key_size, const unsigned char *salt, size_t salt_len,
                                uint64_t iterations, unsigned char ret[SHA256_DIGEST_LENGTH]) {
        _cleanup_secret_ struct hmac_sha256 *st = hmac_sha256_new(key, key_size);
        static const unsigned char block1[4] = { 0, 0, 0, 1 };

        if (!st)
                return key_size > SHA256_CBLOCK ? -EOPNOTSUPP : -ENOMEM;
        /* U1 = HMAC(key, salt || INT(1)); Ui = HMAC(key, Ui-1); T = U1 ^ ... ^ Uc */
        SHA256_Update(&st->c, salt, salt_len);
        SHA256_Update(&st->c, block1, sizeof(block1));
        hmac_sha256_final(st);
        memcpy(st->t, st->u, sizeof(st->t));
        for (uint64_t i = 1; i < iterations; i++) {
                st->c = st->inner;
                SHA256_Update(&st->c, st->u, sizeof(st->u));
                hmac_sha256_final(st);
                for (size_t j = 0; j < sizeof(st->t); j++)
                        st->t[j] ^= st->u[j];
        }
        memcpy(ret, st->t, SHA256_DIGEST_LENGTH);
        return 0;
}

/* Standard base64 with '=' padding (as LUKS2 writes it) into buf of size bytes: its length, or -EINVAL. */
static ssize_t base64_decode(const char *text, unsigned char *buf, size_t size) {
        size_t n = text ? strlen(text) : 0, pad;
        unsigned char out[96];
        int got;

        if (n == 0 || n % 4 != 0 || n / 4 * 3 > sizeof(out))
                return -EINVAL;
        pad = (text[n - 1] == '=') + (text[n - 2] == '=');
        got = EVP_DecodeBlock(out, (const unsigned char *) text, (int) n);
        if (got < 0 || (size_t) got < pad || (size_t) got - pad > size)
                return -EINVAL;
        memcpy(buf, out, (size_t) got - pad);
        return (ssize_t) ((size_t) got - pad);
}

/* Iterations of a header we did not write are bounded like libcryptsetup's PBKDF2 (no 2^32 stall). */
#define DIGEST_ITERATIONS_MAX UINT32_MAX

/* A PBKDF2-SHA256 LUKS2 digest, the only kind kmscrypt computes itself. */
struct luks_digest {
        unsigned char salt[64];
        size_t salt_len;
        unsigned char digest[SHA256_DIGEST_LENGTH];
        uint64_t iterations;
};

/*
 * The digest of segment 0 when it is one we verify here (pbkdf2, sha256,
 * a 32-byte digest): 1 and its parameters; 0 for anything else, which
 * libcryptsetup then verifies.
 */
static int segment_digest(struct json_object *hdr, struct luks_digest *ret) {
        struct json_object *digests = json_object_object_get(hdr, "digests"), *found = NULL, *v;
        ssize_t salt_len, digest_len;
        int64_t iterations;

        if (!json_object_is_type(digests, json_type_object))
                return 0;
        json_object_object_foreach(digests, id, d) {
                struct json_object *segs = json_object_object_get(d, "segments");

                (void) id;
                for (size_t i = 0; json_object_is_type(segs, json_type_array) && i < json_object_array_length(segs); i++)
                        if (streq_ptr(json_object_get_string(json_object_array_get_idx(segs, i)), "0")) {
                                if (found)
                                        return 0;       /* two digests claim the segment: leave it to libcryptsetup */
                                found = d;
                        }
        }
        if (!found || !streq_ptr(json_object_get_string(json_object_object_get(found, "type")), "pbkdf2") ||
            !streq_ptr(json_object_get_string(json_object_object_get(found, "hash")), "sha256") ||
            !json_object_object_get_ex(found, "iterations", &v) || !json_object_is_type(v, json_type_int))
                return 0;
        iterations = json_object_get_int64(v);
        if (iterations < 1 || (uint64_t) iterations > DIGEST_ITERATIONS_MAX)
                return 0;
        salt_len = base64_decode(json_object_get_string(json_object_object_get(found, "salt")), ret->salt,
                                 sizeof(ret->salt));
        digest_len = base64_decode(json_object_get_string(json_object_object_get(found, "digest")), ret->digest,
                                   sizeof(ret->digest));
        if (salt_len <= 0 || digest_len != SHA256_DIGEST_LENGTH)
                return 0;
        ret->salt_len = (size_t) salt_len;
        ret->iterations = (uint64_t) iterations;
        return 1;
}

/* The digest's verdict on key: 0 or -EPERM; -EOPNOTSUPP when it cannot be computed here (libcryptsetup's, then). */
static int digest_verdict(const struct luks_digest *d, const void *key, size_t key_size) {
        unsigned char have[SHA256_DIGEST_LENGTH];
        int r;

        if (digest_pbkdf2_sha256(key, key_size, d->salt, d->salt_len, d->iterations, have) < 0)
                return -EOPNOTSUPP;
        r = CRYPTO_memcmp(have, d->digest, sizeof(have)) == 0 ? 0 : -EPERM;
        OPENSSL_cleanse(have, sizeof(have));
        return r;
}

/*
 * The token's key check (docs/token.md): HMAC-SHA256 under the volume key
 * of a label and the whole digest it was seen to match (iterations, salt,
 * value).  Only someone holding the key can make one, as only someone
 * holding it can make the digest, and it names the digest, so a check is
 * worth exactly what the digest is: proof that this key opens segment 0.
 * It costs four SHA-256 blocks where the digest's 1000 PBKDF2 iterations
 * cost 2000, which for a 512-bit random key buy nothing.
 */
#define KEY_CHECK_LABEL "kmscrypt key check 1"

static int key_check_compute(const struct luks_digest *d, const void *key, size_t key_size,
                             uint8_t ret[KC_TOKEN_KEY_CHECK_SIZE]) {
        _cleanup_secret_ struct hmac_sha256 *h = hmac_sha256_new(key, key_size);
        uint64_t iterations = htobe64(d->iterations);
        uint8_t salt_len = (uint8_t) d->salt_len;

        if (!h)
                return key_size > SHA256_CBLOCK ? -EOPNOTSUPP : -ENOMEM;
        SHA256_Update(&h->c, KEY_CHECK_LABEL, sizeof(KEY_CHECK_LABEL));   /* with its NUL */
        SHA256_Update(&h->c, &iterations, sizeof(iterations));
        SHA256_Update(&h->c, &salt_len, sizeof(salt_len));
        SHA256_Update(&h->c, d->salt, d->salt_len);
        SHA256_Update(&h->c, d->digest, sizeof(d->digest));
        hmac_sha256_final(h);
        memcpy(ret, h->u, KC_TOKEN_KEY_CHECK_SIZE);
        return 0;
}

/* Whether t's key check proves key for digest d: 0, -EPERM when not, -ENOENT when t has none. */
static int key_check_verdict(const struct luks_digest *d, const void *key, size_t key_size,
                             const struct kc_token *t) {
        uint8_t have[KC_TOKEN_KEY_CHECK_SIZE];
        int r;

        if (!t || !t->has_key_check)
                return -ENOENT;
        r = key_check_compute(d, key, key_size, have);
        if (r < 0)
                return r;
        r = CRYPTO_memcmp(have, t->key_check, sizeof(have)) == 0 ? 0 : -EPERM;
        OPENSSL_cleanse(have, sizeof(have));
        return r;
}

/*
 * The verdict on key for segment 0 of hdr: 0 or -EPERM; -EOPNOTSUPP when
 * its digest is not one computed here.  t's key check first, when it has
 * one; one that does not match (a header rewritten by another tool, a key
 * changed since) is no verdict, the digest decides.
 */
static int verify_key_json(struct json_object *hdr, const void *key, size_t key_size, const struct kc_token *t) {
        struct luks_digest d;

        if (segment_digest(hdr, &d) <= 0)
                return -EOPNOTSUPP;
        if (key_check_verdict(&d, key, key_size, t) == 0)
                return 0;
        return digest_verdict(&d, key, key_size);
}

/* A key whose length the header records must have it. */
static bool key_size_fits(struct kc_luks *l, size_t key_size) {
        int known = crypt_get_volume_key_size(l->cd);

        return known <= 0 || (size_t) known == key_size;
}

int kc_luks_verify_key(struct kc_luks *l, const void *key, size_t key_size, const struct kc_token *t) {
        _cleanup_json_ struct json_object *hdr = NULL;
        int r;

        if (!l || !key || key_size == 0)
                return -EINVAL;
        if (!key_size_fits(l, key_size))
                return -EPERM;
        if (header_json(l, &hdr) >= 0 && (r = verify_key_json(hdr, key, key_size, t)) != -EOPNOTSUPP)
                return r;
        r = crypt_volume_key_verify(l->cd, key, key_size);
        return r < 0 ? r : 0;
}

int kc_luks_peek_verify_key(const struct kc_luks_peek *pk, const void *key, size_t key_size,
                            const struct kc_token *t) {
        if (!pk || !key || key_size == 0)
                return -EINVAL;
        return verify_key_json(pk->json, key, key_size, t);
}

/* The check for key and segment 0's digest in hdr, proven by that digest first. */
static int bind_key_json(struct json_object *hdr, const void *key, size_t key_size, struct kc_token *t) {
        struct luks_digest d;
        int r;

        t->has_key_check = false;
        if (segment_digest(hdr, &d) <= 0)
                return -EOPNOTSUPP;
        r = digest_verdict(&d, key, key_size);
        if (r < 0)
                return r;
        r = key_check_compute(&d, key, key_size, t->key_check);
        if (r < 0)
                return r;
        t->has_key_check = true;
        return 0;
}

int kc_luks_bind_key(struct kc_luks *l, const void *key, size_t key_size, struct kc_token *t) {
        _cleanup_json_ struct json_object *hdr = NULL;
        int r;

        if (!l || !key || key_size == 0 || !t)
                return -EINVAL;
        t->has_key_check = false;
        if (!key_size_fits(l, key_size))
                return -EPERM;
        r = header_json(l, &hdr);
        if (r >= 0)
                r = bind_key_json(hdr, key, key_size, t);
        if (r != -EOPNOTSUPP)
                return r;
        /* A digest only libcryptsetup computes: proven by it, and no check. */
        r = crypt_volume_key_verify(l->cd, key, key_size);
        return r < 0 ? r : 0;
}

int kc_luks_key_check_verify(struct kc_luks *l, const void *key, size_t key_size, const struct kc_token *t) {
        _cleanup_json_ struct json_object *hdr = NULL;
        struct luks_digest d;
        int r;

        if (!l || !key || key_size == 0 || !t)
                return -EINVAL;
        r = header_json(l, &hdr);
        if (r < 0)
                return r;
        if (segment_digest(hdr, &d) <= 0)
                return -EOPNOTSUPP;
        return key_check_verdict(&d, key, key_size, t);
}

int kc_luks_volume_key_by_passphrase(struct kc_luks *l, const void *pass, size_t pass_len,
                                     void **ret_key, struct kc_err *err) {
        _cleanup_secret_ void *key = NULL;
        size_t size;
        int r;

        if (!l || !pass || !ret_key)
                return -EINVAL;
        r = crypt_get_volume_key_size(l->cd);
        if (r <= 0)
                return kc_err_set(err, -EINVAL, "%s has no volume key size", l->header ?: l->device);
        size = (size_t) r;
        key = kc_secret_alloc(size);
        if (!key)
                return -ENOMEM;
        r = crypt_volume_key_get(l->cd, CRYPT_ANY_SLOT, key, &size, pass, pass_len);
        if (r == -EPERM)
                return kc_err_set(err, -EPERM, "no keyslot of %s opens with that passphrase", l->header ?: l->device);
        if (r < 0)
                return kc_err_set(err, r, "cannot unlock %s: %s", l->header ?: l->device, strerror(-r));
        if (size != kc_secret_size(key))
                return kc_err_set(err, -EINVAL, "keyslot %d of %s holds a key of unexpected size", r, l->header ?: l->device);
        *ret_key = TAKE_PTR(key);
        return 0;
}

int kc_luks_set_pbkdf(struct kc_luks *l, const struct kc_luks_pbkdf *p, struct kc_err *err) {
        if (!l)
                return -EINVAL;
        return pbkdf_apply(l->cd, p, err);
}

int kc_luks_add_passphrase(struct kc_luks *l, const void *key, size_t key_size,
                           const void *pass, size_t pass_len, struct kc_err *err) {
        int r;

        if (!l || !key || !pass)
                return -EINVAL;
        header_changed(l);
        r = crypt_keyslot_add_by_volume_key(l->cd, CRYPT_ANY_SLOT, key, key_size, pass, pass_len);
        if (r < 0)
                return kc_err_set(err, r, "cannot add a keyslot to %s: %s", l->header ?: l->device, strerror(-r));
        return r;
}

int kc_luks_remove_keyslots(struct kc_luks *l, struct kc_err *err) {
        int max = crypt_keyslot_max(CRYPT_LUKS2), removed = 0;

        if (!l)
                return -EINVAL;
        header_changed(l);
        for (int i = 0; i < max; i++) {
                crypt_keyslot_info st = crypt_keyslot_status(l->cd, i);
                int r;

                if (st == CRYPT_SLOT_INACTIVE || st == CRYPT_SLOT_INVALID)
                        continue;
                r = crypt_keyslot_destroy(l->cd, i);
                if (r < 0)
                        return kc_err_set(err, r, "cannot remove keyslot %d of %s: %s", i,
                                          l->header ?: l->device, strerror(-r));
                removed++;
        }
        return removed;
}

/* ---- dump ---- */


/* An absent or empty string is a JSON null (json-c's null is a NULL pointer, so add it directly). */
static int json_add_string(struct json_object *o, const char *name, const char *s) {
        if (!s || !*s)
                return json_object_object_add(o, name, NULL) < 0 ? -ENOMEM : 0;
        return kc_json_add(o, name, json_object_new_string(s));
}

/* A key size in bits from libcryptsetup's bytes; one it does not know (0) is a JSON null. */
static int json_add_key_bits(struct json_object *o, const char *name, int bytes) {
        if (bytes <= 0)
                return json_object_object_add(o, name, NULL) < 0 ? -ENOMEM : 0;
        return kc_json_add(o, name, json_object_new_int(bytes * 8));
}

/* "aes" and "xts-plain64" as the one "aes-xts-plain64" dm-crypt and status show. */
static int json_add_cipher(struct json_object *o, const char *name, struct crypt_device *cd) {
        _cleanup_free_ char *s = NULL;
        const char *cipher = crypt_get_cipher(cd), *mode = crypt_get_cipher_mode(cd);

        if (!cipher || !mode)
                return json_add_string(o, name, cipher);
        if (asprintf(&s, "%s-%s", cipher, mode) < 0)
                return -ENOMEM;
        return json_add_string(o, name, s);
}

/* [{"Id": 0, "Type": "luks2", "Kdf": "argon2id"}, ...] from the header's "keyslots" object. */
static int dump_keyslots(struct json_object *hdr, struct json_object **ret) {
        _cleanup_json_ struct json_object *a = json_object_new_array();
        struct json_object *slots = json_object_object_get(hdr, "keyslots");

        if (!a)
                return -ENOMEM;
        if (slots && json_object_is_type(slots, json_type_object)) {
                json_object_object_foreach(slots, id, slot) {
                        struct json_object *e = json_object_new_object(), *kdf = json_path(slot, "kdf", "type");
                        int r;

                        if (!e)
                                return -ENOMEM;
                        if ((r = kc_json_add(e, "Id", json_object_new_int(atoi(id)))) < 0 ||
                            (r = json_add_string(e, "Type", json_object_get_string(json_object_object_get(slot, "type")))) < 0 ||
                            (r = json_add_string(e, "Kdf", kdf ? json_object_get_string(kdf) : NULL)) < 0 ||
                            (r = json_object_array_add(a, e) < 0 ? -ENOMEM : 0) < 0) {
                                json_object_put(e);
                                return r;
                        }
                }
        }
        *ret = TAKE_PTR(a);
        return 0;
}

static int dump_tokens(struct kc_luks *l, struct json_object **ret) {
        _cleanup_json_ struct json_object *a = json_object_new_array();
        int max = crypt_token_max(CRYPT_LUKS2);

        if (!a)
                return -ENOMEM;
        for (int i = 0; i < max; i++) {
                const char *type = NULL;
                crypt_token_info st = crypt_token_status(l->cd, i, &type);
                struct json_object *e;
                int r;

                if (st == CRYPT_TOKEN_INVALID || st == CRYPT_TOKEN_INACTIVE)
                        continue;
                e = json_object_new_object();
                if (!e)
                        return -ENOMEM;
                if ((r = kc_json_add(e, "Id", json_object_new_int(i))) < 0 ||
                    (r = json_add_string(e, "Type", type)) < 0 ||
                    (r = json_object_array_add(a, e) < 0 ? -ENOMEM : 0) < 0) {
                        json_object_put(e);
                        return r;
                }
        }
        *ret = TAKE_PTR(a);
        return 0;
}

/* The token's facts; the blob (not secret: only the KMS can open it) as the header stores it. */
static int dump_token(const struct kc_token *t, int id, struct json_object *hdr, struct json_object **ret) {
        _cleanup_json_ struct json_object *o = json_object_new_object();
        _cleanup_json_ struct json_object *ctx = NULL;
        _cleanup_free_ char *ref = NULL;
        struct json_object *stored;
        char idstr[16];
        int r;

        if (!o)
                return -ENOMEM;
        r = kc_token_key_ref(t, &ref);
        if (r < 0)
                return r;
        r = kc_context_to_json(t->context, &ctx);
        if (r < 0)
                return r;
        if ((r = kc_json_add(o, "TokenId", json_object_new_int(id))) < 0 ||
            (r = kc_json_add(o, "Version", json_object_new_int64(t->version))) < 0 ||
            (r = kc_json_add(o, "Provider", json_object_new_string(t->provider))) < 0 ||
            (r = kc_json_add(o, "KeyId", json_object_new_string(t->key_id))) < 0 ||
            (r = kc_json_add(o, "KeyRef", json_object_new_string(ref))) < 0 ||
            (r = kc_json_add(o, "KeyVersion", json_object_new_int64(t->key_version))) < 0 ||
            (r = kc_json_add(o, "EncryptionContext", TAKE_PTR(ctx))) < 0 ||
            (r = kc_json_add(o, "CiphertextBlobLength", json_object_new_int64((int64_t) t->wrapped_key_len))) < 0)
                return r;
        snprintf(idstr, sizeof(idstr), "%d", id);
        stored = json_object_object_get(json_path(hdr, "tokens", idstr), "wrapped_key");
        if (stored && (r = kc_json_add(o, "CiphertextBlob", json_object_get(stored))) < 0)
                return r;
        /* null: every attach proves the key by the LUKS2 digest's PBKDF2 (docs/token.md). */
        stored = json_object_object_get(json_path(hdr, "tokens", idstr), "key_check");
        r = json_add_string(o, "KeyCheck", t->has_key_check ? json_object_get_string(stored) : NULL);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(o);
        return 0;
}

int kc_luks_dump_json(struct kc_luks *l, struct json_object **ret) {
        _cleanup_json_ struct json_object *hdr = NULL, *o = NULL;
        struct json_object *slots = NULL, *tokens = NULL, *kc = NULL, *seg;
        struct kc_token t = {};
        uint64_t metadata = 0, keyslots_size = 0;
        int r, id;

        if (!l || !ret)
                return -EINVAL;
        r = header_json(l, &hdr);
        if (r < 0)
                return r;
        (void) crypt_get_metadata_size(l->cd, &metadata, &keyslots_size);
        seg = json_path(hdr, "segments", "0");

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        /* data_offset unsigned: a hostile header's may pass 2^63 bytes (tests/hostile). */
        if ((r = json_add_string(o, "Device", crypt_get_device_name(l->cd))) < 0 ||
            (r = json_add_string(o, "Header", l->header)) < 0 ||
            (r = json_add_string(o, "Type", crypt_get_type(l->cd))) < 0 ||
            (r = json_add_string(o, "LuksUuid", crypt_get_uuid(l->cd))) < 0 ||
            (r = json_add_string(o, "Label", crypt_get_label(l->cd))) < 0 ||
            (r = json_add_string(o, "Subsystem", crypt_get_subsystem(l->cd))) < 0 ||
            (r = json_add_cipher(o, "Cipher", l->cd)) < 0 ||
            (r = json_add_key_bits(o, "KeySize", crypt_get_volume_key_size(l->cd))) < 0 ||
            (r = kc_json_add(o, "SectorSize", json_object_new_int(crypt_get_sector_size(l->cd)))) < 0 ||
            (r = kc_json_add(o, "DataOffset", json_object_new_uint64(crypt_get_data_offset(l->cd) * 512))) < 0 ||
            (r = kc_json_add(o, "IvOffset", json_object_new_int64((int64_t) crypt_get_iv_offset(l->cd)))) < 0 ||
            (r = json_add_string(o, "DataSize", seg ? json_object_get_string(json_object_object_get(seg, "size")) : NULL)) < 0 ||
            (r = kc_json_add(o, "MetadataSize", json_object_new_int64((int64_t) metadata))) < 0 ||
            (r = kc_json_add(o, "KeyslotsSize", json_object_new_int64((int64_t) keyslots_size))) < 0)
                return r;

        if ((r = dump_keyslots(hdr, &slots)) < 0 || (r = kc_json_add(o, "Keyslots", slots)) < 0)
                return r;
        if ((r = dump_tokens(l, &tokens)) < 0 || (r = kc_json_add(o, "Tokens", tokens)) < 0)
                return r;

        /* The kmscrypt token when there is a valid one; callers that need the reason use kc_luks_token_read(). */
        if (kc_luks_token_read(l, &t, &id, NULL) >= 0) {
                r = dump_token(&t, id, hdr, &kc);
                kc_token_clear(&t);
                if (r < 0 || (r = kc_json_add(o, "KmscryptToken", kc)) < 0)
                        return r;
        }
        *ret = TAKE_PTR(o);
        return 0;
}
