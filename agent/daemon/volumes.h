/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * /etc/kmscrypt/volumes (kmscrypt-volumes(5)), in the spirit of crypttab:
 *
 *     # name   device              context                          options
 *     pgdata   UUID=0b7e...        db-id=db-1,volume-id=pgdata       nofail,timeout=30
 *     pgwal    PARTLABEL=wal       db-id=db-1,volume-id=pgwal        perf=none,revoke=suspend
 *     root     UUID=77aa...        db-id=db-1,volume-id=root         x-initrd.attach
 *
 * One volume a line; '#' starts a comment line; fields are separated by
 * blanks, and a backslash escapes the next character (so a context value
 * may hold a blank).  The context is the kv syntax of agent/context.h: the
 * encryption context the device's token must carry, or the attach is
 * refused.  Every error names file:line.
 */

#include <stdbool.h>
#include <stddef.h>

#include "agent/context.h"
#include "lib/error.h"

#define KC_VOLUMES_FILE KC_SYSCONFDIR "/volumes"
/* How long a volume is retried when its options do not say (systemd's device timeout). */
#define KC_VOLUME_DEFAULT_TIMEOUT 90
#define KC_VOLUMES_MAX 4096

/* What the agent does with an attached volume whose CMK is disabled or pending deletion. */
enum kc_revoke_policy {
        KC_REVOKE_KEEP,        /* default: keep running; new attaches fail */
        KC_REVOKE_SUSPEND,     /* suspend I/O and wipe the key; resume when the key is enabled again */
};

struct kc_volume_conf {
        char *name;                 /* mapping name */
        char *device;               /* UUID=, PARTUUID=, LABEL=, PARTLABEL= or an absolute path */
        struct kc_context *context; /* expected encryption context */
        char *header;               /* header=PATH, or NULL */
        unsigned flags;             /* KC_CRYPT_* */
        bool read_only;             /* read-only */
        bool nofail;                /* nofail: never holds up readiness or the others */
        bool hotplug;               /* hotplug=yes|no (default yes): attach when the device appears */
        bool netdev;                /* _netdev: needs the network (remote KMS) */
        bool initrd;                /* x-initrd.attach: attached in the initramfs, kept across switch-root */
        unsigned timeout;           /* timeout=SECONDS of retrying; 0: retry for ever */
        char **kms;                 /* kms=A+B: the providers allowed to unwrap it; NULL: any (the token's) */
        enum kc_revoke_policy revoke;  /* revoke=keep|suspend */
        unsigned line;              /* where it was defined */
};

struct kc_volumes {
        struct kc_volume_conf *volumes;
        size_t n;
};

/* Parse text (len bytes); path is only used in messages.  Errors: "path:line: what". */
int kc_volumes_parse(const char *text, size_t len, const char *path, struct kc_volumes **ret, struct kc_err *err);
/*
 * Read and parse a file.  A missing file is -ENOENT (the caller decides
 * whether that means none).  In an initramfs (kc_in_initrd(), lib/initrd.h) only the
 * x-initrd.attach volumes: the others are the real root's, attached after
 * switch-root, and the initramfs may lack what they need.
 */
int kc_volumes_load(const char *path, struct kc_volumes **ret, struct kc_err *err);
/* Drop every volume without x-initrd.attach. */
void kc_volumes_keep_initrd(struct kc_volumes *v);
void kc_volumes_free(struct kc_volumes *v);
DEFINE_CLEANUP_FUNC(struct kc_volumes *, kc_volumes_free)
#define _cleanup_volumes_ _cleanup_(kc_volumes_freep)

const struct kc_volume_conf *kc_volumes_find(const struct kc_volumes *v, const char *name);

const char *kc_revoke_policy_to_string(enum kc_revoke_policy p);

/* Whether attaching v needs the network: _netdev, or a kms= provider other than local. */
bool kc_volume_needs_network(const struct kc_volume_conf *v);
