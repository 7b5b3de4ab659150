/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Key rotation and the life cycle of volumes (docs/rotation.md):
 *
 *   rewrap    the wrapped data key moves to the newest version of its CMK,
 *             or to another CMK, through the KMS's ReEncrypt; the data and
 *             the data key stay as they are.
 *   rebind    the same, to another encryption context (a clone becomes a
 *             volume of its own in the audit trail).
 *   usage     which known volumes depend on which CMK version.
 *   copies    snapshot, backup and restore: block copies of the backing
 *             device (header and ciphertext), never of the mapping.
 *
 * The header side works on any LUKS2 device or image file, attached or not:
 * the header is not the mapping, and the data key does not change.  Every
 * KMS call is audited by the KMS layer; the header write itself is one more
 * record ("RewrapVolume" / "RebindVolume") written before success is reported.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/caller.h"
#include "agent/context.h"
#include "agent/kms.h"
#include "agent/volume.h"
#include "lib/error.h"

struct kc_rewrap_params {
        struct kc_volume_ref ref;
        const char *dst_key_ref;              /* NULL: the token's CMK, newest version */
        const struct kc_context *dst_context; /* NULL: the token's context (rewrap); set: rebind */
        bool dry_run;                         /* prove it would work, write nothing */
        bool always;                          /* rewrap even when already under the newest version */
};

struct kc_rewrap_result {
        char uuid[40];
        int token_id;                         /* the same before and after */
        char provider[16];                    /* of both keys, as the token names it ("local") */
        char old_key_id[256];
        uint32_t old_key_version;
        char new_key_id[65];
        uint32_t new_key_version;
        bool changed;                         /* false: already current, or dry run */
        bool current;                         /* already under the newest version: nothing to do */
};

/*
 * Rewrap (or, with dst_context, rebind) one volume:
 *
 *   1. read the token; refuse a header with a reencryption in progress;
 *   2. unless always or a change of key or context is asked for, stop when
 *      the token already names the CMK's current version (DescribeKey);
 *   3. ReEncrypt the blob (the plaintext never reaches this process);
 *   4. Decrypt the new blob under the new context and check the key against
 *      the LUKS2 digest: a blob that does not open the volume is never written;
 *   5. audit the intent of "RewrapVolume" or "RebindVolume" (written ahead,
 *      docs/audit.md): when it cannot be written, nothing is;
 *   6. replace the token in place (same token id): one LUKS2 metadata write;
 *   7. read the header back with a fresh handle: the token must be the one written;
 *   8. audit the outcome.
 *
 * Fails with the header unchanged whenever it fails before step 6.  Returns
 * 0, or 1 when the token was replaced but its outcome record could not be
 * written (err holds that warning; ret is filled, changed is true).
 */
int kc_rewrap(struct kc_kms *kms, const struct kc_caller *caller, const struct kc_rewrap_params *p,
              struct kc_rewrap_result *ret, struct kc_err *err);

/* ---- known volumes ---- */

/*
 * A volume this host knows: configured in the volumes file, attached as a
 * kmscrypt mapping, or named on the command line; with what its header says.
 */
struct kc_known_volume {
        char *name;                           /* configured or mapping name; NULL for a bare device */
        char *device;                         /* resolved path (NULL if it could not be resolved) */
        char *header;                         /* detached header or NULL */
        char *mapping;                        /* name of the attached mapping, or NULL */
        bool given;                           /* one of the devices the caller named */
        /* from the header (error == 0) */
        char uuid[40];
        char provider[16];
        char key_id[256];
        uint32_t key_version;
        struct kc_context *context;
        int error;                            /* < 0: header or token unreadable, reason says why */
        char reason[KC_ERR_MSG_MAX];
};

struct kc_known_volumes {
        struct kc_known_volume *v;
        size_t n;
};
void kc_known_volumes_free(struct kc_known_volumes *k);
DEFINE_CLEANUP_FUNC(struct kc_known_volumes *, kc_known_volumes_free)
#define _cleanup_known_volumes_ _cleanup_(kc_known_volumes_freep)

/*
 * Every known volume, each device once (by device number or inode): those of
 * volumes_file (NULL: none; a missing file is none), the attached kmscrypt
 * mappings (none where device-mapper is unavailable), and devices (NULL or
 * NULL-terminated).  Each one's header is read; one that cannot be read is
 * listed with error set, so that nothing a key still protects goes unseen.
 */
int kc_known_volumes_scan(const char *volumes_file, char *const *devices, struct kc_known_volumes **ret,
                          struct kc_err *err);

/* Does v's token name this CMK (provider and key id as DescribeKey gives them)? */
bool kc_known_volume_uses(const struct kc_known_volume *v, const struct kc_key_info *key);

/* The first attached mapping whose backing device is device, or -ENOENT. Caller frees ret_name (may be NULL). */
int kc_mapping_of_device(const char *device, char **ret_name);

/* ---- key state of one volume ---- */

struct kc_volume_key_health {
        enum kc_key_state state;
        bool known;                           /* false: DescribeKey failed (reason says why) */
        unsigned recovery_keyslots;           /* passphrase keyslots in the header */
        char reason[KC_ERR_MSG_MAX];
};

/*
 * What `kmscrypt status` reports about a volume's CMK: its state and how the
 * volume can still be opened.  A disabled, pending-deletion or destroyed CMK
 * leaves only the recovery keyslots.  lookups (NULL: none): the CMK states
 * the other volumes of this status looked up (kms.h), so that each CMK is
 * described once.
 */
int kc_volume_key_health(struct kc_kms *kms, struct kc_key_lookups *lookups, const struct kc_kms_request *req,
                         const struct kc_volume_ref *ref, struct kc_volume_key_health *ret, struct kc_err *err);
/*
 * What the state means for the volume, without the state itself: "only a recovery keyslot opens this
 * volume (1 keyslot)"; why it is unknown when !h->known; "" for an enabled CMK.  status --json's
 * KeyStateReason, beside the bare KeyState.
 */
void kc_volume_key_health_reason(const struct kc_volume_key_health *h, char *buf, size_t size);
/* One line for status: "Enabled", "Destroyed: only a recovery keyslot opens this volume (1 keyslot)", "unknown (why)". */
void kc_volume_key_health_format(const struct kc_volume_key_health *h, char *buf, size_t size);

/* ---- copies ---- */

/* Called after each chunk of a copy; bytes done and total. */
typedef void (*kc_copy_progress_fn)(uint64_t done, uint64_t total, void *userdata);

/*
 * Copy src (a backing device or an image, never a mapping) to dst, block for
 * block: header and ciphertext, nothing decrypted.  dst is a block device at
 * least as large, or a file (created 0600; an existing one is refused unless
 * overwrite).  fsyncs dst before returning.
 */
int kc_copy_encrypted(const char *src, const char *dst, bool overwrite, kc_copy_progress_fn progress,
                      void *userdata, struct kc_err *err);
/*
 * What kc_copy_encrypted() would refuse of dst before it reads a byte: a
 * path that is neither a block device nor a regular file, an existing file
 * without overwrite, or a path too long (-ENAMETOOLONG: longer than
 * PATH_MAX, or a name in it than NAME_MAX).  For a second copy that goes with a first (a
 * detached header), checked before the first is written.
 */
int kc_copy_dst_check(const char *dst, bool overwrite, struct kc_err *err);

/*
 * Whether a block copy of device is an encrypted volume, before anything is
 * copied: device is no dm-crypt mapping (plaintext) and carries a LUKS2
 * header, or header (a detached header, NULL: none) is one that can be
 * device's: its data segment fits in device, which shows no signature (a
 * file system).  -EPERM when the copy would not be encrypted (a mapping, no
 * LUKS2 header on the device, a signature on it, a header that is not its),
 * the error of kc_luks_open() for a header that is not LUKS2 and for a
 * LUKS1 device (-EINVAL: encrypted, but no volume of ours).
 */
int kc_copy_source_check(const char *device, const char *header, struct kc_err *err);

/*
 * A consistent copy of the attached volume `mapping`: suspend it (dm suspend
 * flushes and holds I/O), copy its backing device, resume, whatever happened
 * (SIGINT, SIGTERM, SIGHUP and SIGQUIT included: they stop the copy, and act
 * once the volume is resumed).  A dst on the mapping, or on a device built on
 * it, is refused before anything is suspended.
 */
int kc_snapshot(const char *mapping, const char *dst, bool overwrite, kc_copy_progress_fn progress,
                void *userdata, struct kc_err *err);

/* 1 and the name of one (e.g. "dm-3") when a block device is held by another (dm, md, a partition); 0 if not. */
int kc_device_has_holders(const char *device, char ret_holder[64]);
