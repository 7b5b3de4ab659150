/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Volume workflows: what `kmscrypt` (and the agent) do with a device, built
 * from the KMS layer (agent/kms.h), the LUKS2 boundary (agent/luks.h) and,
 * for activation, kernel-keyring/ and dmsetup-helpers/.
 *
 *   header side (volume-header.c): format, adopt, dump
 *   activation side (volume-attach.c, to come): attach, detach, status, list
 *
 * Every workflow takes the device (and a detached header or NULL), refuses
 * bad input with one line in err and a negative errno, and leaves the
 * device untouched when it fails before its first write.  Plaintext keys
 * exist only in kc_secret memory and are wiped on every path.  KMS calls
 * are audited with the caller given here and the LUKS UUID as the volume.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/caller.h"
#include "agent/context.h"
#include "agent/kms.h"
#include "agent/luks.h"
#include "lib/error.h"

/* Where a volume's header lives. */
struct kc_volume_ref {
        const char *device;             /* data device (block device or image file) */
        const char *header;             /* detached LUKS2 header file, or NULL */
};

/* Context pairs every volume key must name (DESIGN.md, key hierarchy). */
#define KC_VOLUME_CONTEXT_DB "db-id"
#define KC_VOLUME_CONTEXT_VOLUME "volume-id"

/* -EINVAL with a message unless ctx names a non-empty db-id and volume-id. */
int kc_volume_check_context(const struct kc_context *ctx, struct kc_err *err);

/* What a header-changing workflow did. */
struct kc_volume_result {
        char uuid[40];                  /* LUKS2 UUID */
        int token_id;                   /* the kmscrypt token */
        char provider[16];              /* KMS provider of the CMK, as the token names it ("local") */
        char key_id[65];                /* CMK id at the provider */
        uint32_t key_version;           /* CMK version the key is wrapped under */
        int recovery_keyslot;           /* format: keyslot added, -1 for none */
        int removed_keyslots;           /* adopt --remove-passphrase: how many */
};

/* A kmscrypt token for a key the KMS just wrapped (dk->plaintext is not used). -ENAMETOOLONG, -ENOMEM. */
int kc_volume_token_build(const char *provider, const struct kc_data_key *dk, const struct kc_context *ctx,
                          struct kc_token *ret);

struct kc_volume_format_params {
        struct kc_volume_ref ref;
        const char *key_ref;            /* CMK, e.g. "alias/pgdata", "local:5f0c..." */
        const struct kc_context *context;
        uint32_t sector_size;           /* 0: 4096 where the device allows, else its logical block size */
        const char *label;              /* or NULL */
        const char *recovery_passphrase; /* kc_secret buffer, or NULL: no keyslot */
        size_t recovery_passphrase_len;
        const struct kc_luks_pbkdf *pbkdf; /* recovery keyslot cost, NULL: cryptsetup defaults */
        bool force;                     /* format over existing signatures */
};

/*
 * Generate a 512-bit data key with the KMS under key_ref bound to context,
 * format LUKS2 aes-xts-plain64 with it, store the kmscrypt token, then read
 * the header back and prove the token unwraps (through the KMS) to a key the
 * LUKS2 digest accepts.  Refuses before any KMS call or write: a device with
 * a signature (unless force; -EEXIST), a read-only or missing device, one
 * too small to keep data after the header (-ENOSPC, kc_luks_check_geometry()) or
 * whose logical blocks are larger than sector_size (-EINVAL), a context
 * without db-id and volume-id.
 */
int kc_volume_format(struct kc_kms *kms, const struct kc_caller *caller,
                     const struct kc_volume_format_params *p, struct kc_volume_result *ret, struct kc_err *err);
/*
 * What kc_volume_format() refuses before any KMS call, in its words, for a
 * caller that has yet to open the KMS: opening the local one creates its
 * keystore and audit log, which a refused format must not leave behind.
 * Writes nothing (a missing header file is not created).
 */
int kc_volume_format_check(const struct kc_volume_format_params *p, struct kc_err *err);

struct kc_volume_adopt_params {
        struct kc_volume_ref ref;
        const char *key_ref;
        const struct kc_context *context;
        const void *passphrase;         /* kc_secret buffer: opens an existing keyslot */
        size_t passphrase_len;
        bool remove_passphrase;         /* destroy every keyslot once the token is verified */
};

/*
 * Put an existing LUKS2 volume under kmscrypt: unlock its volume key once
 * with the passphrase, wrap it with the KMS (Encrypt) bound to context,
 * store the token, verify it as format does, and only then, if asked,
 * remove the keyslots.  The data is never touched.  A volume that already
 * has a kmscrypt token is refused (-EEXIST).
 */
int kc_volume_adopt(struct kc_kms *kms, const struct kc_caller *caller,
                    const struct kc_volume_adopt_params *p, struct kc_volume_result *ret, struct kc_err *err);
/*
 * What kc_volume_adopt() refuses before it unlocks the volume key (not
 * LUKS2, LUKS1, a kmscrypt token already, read-only, ...), in its words,
 * for a caller that has yet to open the KMS (kc_volume_format_check()).
 */
int kc_volume_adopt_check(const struct kc_volume_adopt_params *p, struct kc_err *err);

/*
 * Header facts and the kmscrypt token as JSON, without any KMS call, named
 * as `kmscrypt status --json` names the same facts:
 *   {"Device", "Header", "Type", "LuksUuid", "Label", "Subsystem",
 *    "Cipher" ("aes-xts-plain64"), "KeySize" (bits), "SectorSize",
 *    "DataOffset" (bytes), "IvOffset" (sectors), "DataSize" ("dynamic" or
 *    bytes), "MetadataSize", "KeyslotsSize",
 *    "Keyslots": [{"Id", "Type", "Kdf"}], "Tokens": [{"Id", "Type"}],
 *    "KmscryptToken": {"TokenId", "Version", "Provider", "KeyId", "KeyRef",
 *                      "KeyVersion", "EncryptionContext",
 *                      "CiphertextBlobLength", "CiphertextBlob"}}
 * Fails (nothing in *ret) when the header is not LUKS2.  A LUKS2 header
 * without a valid kmscrypt token still gives the facts (no "KmscryptToken"
 * member), and token_err says why (token_err->error < 0): -ENOENT none,
 * -EINVAL / -E2BIG / -EPROTONOSUPPORT invalid, -ENOTUNIQ several.
 */
int kc_volume_dump(const struct kc_volume_ref *ref, struct json_object **ret,
                   struct kc_err *token_err, struct kc_err *err);
