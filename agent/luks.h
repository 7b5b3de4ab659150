/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * LUKS2 through libcryptsetup: the only module that calls it.  kmscrypt
 * uses libcryptsetup for the header and the token, never for activation
 * (that is kernel-keyring/ + dmsetup-helpers/).
 */

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/token.h"
#include "lib/error.h"

struct kc_luks;   /* an open header: wraps struct crypt_device */
struct crypt_device;

/*
 * What the dm-crypt table needs, read from the LUKS2 segment.
 *
 * libcryptsetup 2.6 records the volume key size only in keyslots: a
 * kmscrypt volume without a recovery keyslot has none, so key_size is 0 and
 * the unwrapped key's own length is the key size (kc_luks_verify_key()
 * proves it against the digest, which does not depend on keyslots).
 */
struct kc_luks_segment {
        char cipher[64];         /* "aes-xts-plain64" */
        size_t key_size;         /* bytes; 0 when no keyslot records it (below) */
        uint64_t offset;         /* data offset, 512-byte sectors */
        uint64_t iv_offset;      /* 512-byte sectors */
        uint64_t size;           /* 512-byte sectors of data (0 = to end of device) */
        uint32_t sector_size;
        char uuid[40];
        char label[48];
        char data_device[PATH_MAX]; /* path of the data device */
};

/*
 * PBKDF of passphrase (recovery) keyslots.  Zeroed fields mean libcryptsetup's
 * defaults (argon2id, benchmarked to 2 s); the knobs exist for slow hosts and
 * for tests, like cryptsetup's --pbkdf, --pbkdf-force-iterations, --pbkdf-memory.
 */
struct kc_luks_pbkdf {
        const char *type;            /* "argon2id", "argon2i", "pbkdf2", or NULL */
        uint32_t iterations;         /* forced iterations (no benchmark), 0 = benchmark */
        uint32_t max_memory_kb;      /* argon2 memory cost, 0 = default */
};

/*
 * Whether libcryptsetup accepts p for a passphrase keyslot, asked of
 * libcryptsetup itself in a context without a device (nothing is read or
 * written): 0, or a negative errno (-EINVAL: refused) with one line in
 * libcryptsetup's words naming what it refuses.  NULL and an all-zero p (the
 * defaults) are accepted.  Run before anything is written, so that a bad
 * cost leaves no header or keyslot behind.
 */
int kc_luks_pbkdf_check(const struct kc_luks_pbkdf *p, struct kc_err *err);

/*
 * Set libcryptsetup's crypto backend up now (its library context and
 * providers), which its first load would otherwise do, the first attaches
 * waiting their turn (see backend_first_use_begin()).  For a process that
 * knows it will load headers soon and has a spare moment or CPU before:
 * kmscryptd at start.  Best effort: on failure the first load does it.
 */
void kc_luks_warm_up(void);

struct kc_luks_format_params {
        const char *device;          /* data device */
        const char *header;          /* detached header file, or NULL */
        uint32_t sector_size;        /* 512 or 4096; 0 = 4096 where the device allows, else 512 */
        const char *label;           /* or NULL */
        const void *volume_key;      /* kc_secret buffer */
        size_t volume_key_size;      /* 64 for aes-xts-plain64 */
        const char *recovery_passphrase; /* kc_secret buffer, or NULL: no keyslot */
        size_t recovery_passphrase_len;
        const struct kc_luks_pbkdf *pbkdf; /* recovery keyslot PBKDF, NULL = defaults */
        const char *uuid;            /* LUKS UUID to use, or NULL: generated */
        bool force;                  /* overwrite existing signatures */
};

/* Refuse (-EEXIST, message names the signature) when device carries a filesystem, LUKS or other signature. */
int kc_luks_check_blank(const char *device, struct kc_err *err);

/*
 * Whether the device's geometry can take a format, read before the KMS is
 * asked.  Refuse (-ENOSPC, one line naming device, its size and the least
 * it needs) a device format would leave no sector of data on: after
 * libcryptsetup's default 16 MiB LUKS2 header, or after nothing when
 * header (a detached header file, or NULL) is given.  sector_size as
 * kc_luks_format_params has it (0: the device's logical block size, the
 * smallest format picks).
 * First refuses, with kc_luks_format()'s -EINVAL and line, a sector_size
 * the device cannot take (not 512..4096 and a power of two, below its
 * logical block size).  Reads nothing but the geometry.
 */
int kc_luks_check_geometry(const char *device, const char *header, uint32_t sector_size, struct kc_err *err);

/*
 * Format LUKS2 aes-xts-plain64 with the given volume key and write the
 * token.  A device kc_luks_check_geometry() refuses, or whose header as laid
 * out leaves no sector of data, is -ENOSPC.
 */
int kc_luks_format(const struct kc_luks_format_params *p, const struct kc_token *token, struct kc_err *err);

/*
 * kc_luks_open()'s first check on its own, in its words: device (and header,
 * unless NULL) exist, each a block device or a regular file ("device PATH:
 * No such file or directory", -ENOENT).  For a caller that refuses a typo
 * before it opens anything that leaves a trace (kc_kms_open() creates the
 * keystore directory and the audit log).
 */
int kc_luks_check_paths(const char *device, const char *header, struct kc_err *err);

/* Whether path carries a LUKS1 header: what kc_luks_open() refuses as such, told apart from none. */
bool kc_luks_is_luks1(const char *path);

/* Open the header of device (header = detached header or NULL). -EINVAL not LUKS2 (LUKS1 named as such). */
int kc_luks_open(const char *device, const char *header, struct kc_luks **ret, struct kc_err *err);

/*
 * kc_luks_open() for a caller that adds no keyslot through the handle (an
 * attach, a check, a status): libcryptsetup's load then skips setting up
 * the PBKDF a new keyslot would get, which reads /sys and /proc at every
 * load.  Such a keyslot would get PBKDF2 at libcryptsetup's LUKS1 default
 * cost, not argon2id.
 */
int kc_luks_open_read(const char *device, const char *header, struct kc_luks **ret, struct kc_err *err);
void kc_luks_close(struct kc_luks *l);
DEFINE_CLEANUP_FUNC(struct kc_luks *, kc_luks_close)
#define _cleanup_luks_ _cleanup_(kc_luks_closep)

int kc_luks_segment(struct kc_luks *l, struct kc_luks_segment *ret);

/*
 * A look at the primary header without libcryptsetup, for an attach to start
 * on while libcryptsetup loads the header: never trusted until
 * kc_luks_peek_matches() says the loaded header is the same.  -EOPNOTSUPP
 * for anything it does not read (no LUKS2 primary header, a big one, ...).
 */
struct kc_luks_peek;
int kc_luks_peek(const char *device, const char *header, struct kc_luks_peek **ret);
void kc_luks_peek_free(struct kc_luks_peek *pk);
DEFINE_CLEANUP_FUNC(struct kc_luks_peek *, kc_luks_peek_free)
int kc_luks_peek_segment(const struct kc_luks_peek *pk, struct kc_luks_segment *ret);
int kc_luks_peek_token(const struct kc_luks_peek *pk, struct kc_token *ret);
/* The check of kc_luks_verify_key() on the peeked JSON; -EOPNOTSUPP when it needs libcryptsetup. */
int kc_luks_peek_verify_key(const struct kc_luks_peek *pk, const void *key, size_t key_size,
                            const struct kc_token *t);
bool kc_luks_peek_matches(const struct kc_luks_peek *pk, const struct kc_luks_segment *seg, struct kc_luks *l,
                          const struct kc_luks_segment *lseg);

/* Find and parse the kmscrypt token. -ENOENT when there is none. ret_id: token number. */
int kc_luks_token_read(struct kc_luks *l, struct kc_token *ret, int *ret_id, struct kc_err *err);
/* Replace (id >= 0) or add (id < 0) the kmscrypt token in one metadata write. Returns the token id. */
int kc_luks_token_write(struct kc_luks *l, int id, const struct kc_token *t, struct kc_err *err);

/*
 * Whether key is the volume key of segment 0: 0, or -EPERM.  Proven by the
 * key check of t (docs/token.md) when t is not NULL and has one for the
 * header's current digest, else by the LUKS2 digest itself (PBKDF2), as
 * crypt_volume_key_verify() does.
 */
int kc_luks_verify_key(struct kc_luks *l, const void *key, size_t key_size, const struct kc_token *t);

/*
 * Prove key by the LUKS2 digest (0, -EPERM) and give t the key check for
 * that digest, to be written with it: every writer of a token that knows
 * the key calls this, so the next attach can skip the PBKDF2.  A digest
 * kmscrypt does not compute itself (not PBKDF2-SHA256) leaves t without one.
 */
int kc_luks_bind_key(struct kc_luks *l, const void *key, size_t key_size, struct kc_token *t);

/* The key check of t alone: 0, -EPERM, -ENOENT (t has none), -EOPNOTSUPP (a digest not computed here). */
int kc_luks_key_check_verify(struct kc_luks *l, const void *key, size_t key_size, const struct kc_token *t);

/* Unlock the volume key with a passphrase (adopt). Key returned in kc_secret memory. */
int kc_luks_volume_key_by_passphrase(struct kc_luks *l, const void *pass, size_t pass_len,
                                     void **ret_key, struct kc_err *err);
/* PBKDF for keyslots added through this handle from now on. */
int kc_luks_set_pbkdf(struct kc_luks *l, const struct kc_luks_pbkdf *p, struct kc_err *err);
/* Add a passphrase keyslot for key. Returns keyslot number. */
int kc_luks_add_passphrase(struct kc_luks *l, const void *key, size_t key_size,
                           const void *pass, size_t pass_len, struct kc_err *err);
/* Remove every passphrase keyslot (adopt --remove-passphrase). */
int kc_luks_remove_keyslots(struct kc_luks *l, struct kc_err *err);

/*
 * The libcryptsetup handle, for agent/reencrypt.c only: LUKS2 reencryption
 * is driven by libcryptsetup itself, through keyslots (docs/rotation.md).
 */
struct crypt_device *kc_luks_crypt_device(struct kc_luks *l);
/*
 * The LUKS2 metadata of cd as crypt_dump_json() gives it, by the shared
 * strict parse: a new object.  -EINVAL if it does not parse.
 */
int kc_luks_metadata_json(struct crypt_device *cd, struct json_object **ret);

/* Header and token as JSON for `kmscrypt dump --json` (no secret, no KMS), in the members kc_volume_dump() lists. */
int kc_luks_dump_json(struct kc_luks *l, struct json_object **ret);
