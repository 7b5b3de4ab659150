/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Configuration of kmscrypt and kmscryptd: /etc/kmscrypt/kmscrypt.conf,
 * documented in kmscrypt.conf(5).  One "key = value" per line; '#' starts a
 * comment line; blank lines are ignored; surrounding blanks are trimmed.
 * Every mistake is an error naming file:line, and so is an unknown key or a
 * key given twice: a typo must not silently fall back to a default.
 *
 * Precedence, highest first: command-line option > environment variable >
 * configuration file > built-in default.
 *
 *   key                    env                       option
 *   keystore               KMSCRYPT_KEYSTORE         --keystore DIR
 *   root-key-file          KMSCRYPT_ROOT_KEY_FILE    --root-key-file FILE
 *   audit-log              KMSCRYPT_AUDIT_LOG        --audit-log FILE
 *   audit-head             KMSCRYPT_AUDIT_HEAD       -
 *   default-key            -                         -
 *   deletion-window-days   -                         -
 *   log-level              -                         --verbose (debug)
 *   syslog                 -                         -
 *   initramfs-keystore     -                         -
 *   aws-endpoint           (*)                       -
 *   aws-region             (*)                       -
 *   aws-ca-file            (*)                       -
 *
 * (*) The aws-* keys are read by the aws provider, which lets the AWS SDKs'
 * own variables win over them as the SDKs let them win over their config
 * file: AWS_ENDPOINT_URL_KMS, AWS_ENDPOINT_URL > aws-endpoint;
 * AWS_REGION, AWS_DEFAULT_REGION > aws-region > the AWS config file's region;
 * KMSCRYPT_AWS_CA_FILE, AWS_CA_BUNDLE > aws-ca-file (docs/aws.md).
 *
 * The file itself is --config FILE, else KMSCRYPT_CONFIG, else
 * KC_SYSCONFDIR/kmscrypt.conf; only the default one may be missing.
 */

#include <stdbool.h>

#include "agent/kms.h"
#include "lib/error.h"

#define KC_CONFIG_LINE_MAX 4096

struct kc_config {
        char *keystore_dir;           /* never NULL after kc_config_init() */
        char *root_key_file;          /* NULL: <keystore>/root.key */
        char *audit_log;              /* never NULL after kc_config_init() */
        char *audit_head;             /* NULL: <keystore>/audit.head */
        char *default_key;            /* key reference for new volumes, NULL: none */
        unsigned deletion_window_days; /* default for schedule-deletion, 7..30 */
        int log_level;                /* LOG_ERR..LOG_DEBUG */
        bool syslog;                  /* refusals also to syslog */
        bool initramfs_keystore;      /* the initramfs hooks may copy the local keystore and root key */
        char *aws_endpoint;           /* aws provider: endpoint URL, NULL: regional */
        char *aws_region;             /* aws provider: region of bare key ids, NULL: none */
        char *aws_ca_file;            /* aws provider: CA bundle, NULL: system default */
        char *source;                 /* configuration file that was read, NULL if none */
};

/* Values from the command line; NULL where the option was not given. Strings are borrowed. */
struct kc_config_overrides {
        const char *config_file;
        const char *keystore_dir;
        const char *root_key_file;
        const char *audit_log;
};

/* Built-in defaults. -ENOMEM. */
int kc_config_init(struct kc_config *c);
/* Free what c owns; c may then be initialised again. Safe to call twice. */
void kc_config_done(struct kc_config *c);

/* The names log-level and kmscryptd --log-level take, for messages and --help. */
#define KC_CONFIG_LOG_LEVELS "err (or error), warning, notice, info or debug"
/* LOG_ERR..LOG_DEBUG for one of KC_CONFIG_LOG_LEVELS, else -EINVAL. */
int kc_config_log_level(const char *name);

/* Set one key from a string, validated; -ENOENT for an unknown key, -EINVAL for a bad value. */
int kc_config_set(struct kc_config *c, const char *key, const char *value, struct kc_err *err);

/*
 * Parse configuration text (name is used in messages, e.g. the file path).
 * Errors read "NAME:LINE: what is wrong".  c is left partly updated on error.
 */
int kc_config_parse_text(struct kc_config *c, const char *text, size_t len, const char *name,
                         struct kc_err *err);
/* Parse a file; a missing file is -ENOENT (callers decide whether that matters). */
int kc_config_parse_file(struct kc_config *c, const char *path, struct kc_err *err);

/*
 * Everything in precedence order: defaults, the file, the environment, then
 * overrides (may be NULL).  On success *ret is initialised and owned by the
 * caller (kc_config_done()); on failure it is untouched.
 */
int kc_config_load(const struct kc_config_overrides *overrides, struct kc_config *ret,
                   struct kc_err *err);

/*
 * The configuration file that was named (overrides->config_file, else a
 * non-empty KMSCRYPT_CONFIG), which must exist; NULL when none was and the
 * default, which may be missing, applies.  overrides may be NULL.
 */
const char *kc_config_file_named(const struct kc_config_overrides *overrides);

/* The KMS layer's view; pointers borrowed from c. */
void kc_config_kms(const struct kc_config *c, struct kc_kms_config *ret);
