/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * AWS credentials, looked up in the order the AWS SDKs use:
 *
 *   1. environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
 *   2. shared files: AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials), then
 *      AWS_CONFIG_FILE (~/.aws/config), profile AWS_PROFILE or "default";
 *      a profile AWS_PROFILE names that neither file has is -ENOKEY
 *   3. container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (on 169.254.170.2) or
 *      _FULL_URI, with AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)
 *   4. EC2 instance metadata, IMDSv2 only (PUT a session token, then GET the
 *      role's credentials) at AWS_EC2_METADATA_SERVICE_ENDPOINT
 *      (http://169.254.169.254); AWS_EC2_METADATA_DISABLED=true skips it
 *
 * Every secret is kc_secret memory; nothing here logs a secret (only the
 * name of the source).  Temporary credentials carry their expiry; callers
 * reload when kc_aws_credentials_stale() says so.
 */

#include <stdbool.h>
#include <time.h>

#include "agent/aws/http.h"
#include "lib/error.h"

/* Refresh this long before the expiry the source gave. */
#define KC_AWS_CREDENTIALS_REFRESH_S (5 * 60)

struct kc_aws_credentials {
        char *access_key_id;        /* kc_secret */
        char *secret_access_key;    /* kc_secret */
        char *session_token;        /* kc_secret, NULL if none */
        time_t expiration;          /* 0: does not expire */
        const char *source;         /* "environment", "shared-file", "container", "imds" */
};

void kc_aws_credentials_clear(struct kc_aws_credentials *c);
bool kc_aws_credentials_stale(const struct kc_aws_credentials *c, time_t now);

/* Walk the chain; -ENOKEY with a message naming what was tried when nothing gave credentials. */
int kc_aws_credentials_load(struct kc_http *h, struct kc_aws_credentials *ret, struct kc_err *err);

/*
 * Reload c (empty, or held from an earlier load) when it is stale at now
 * (the provider's session clock, corrected to the KMS's after a skew).
 * c is replaced only by a complete new set; when the reload fails and c has
 * not yet expired, c is kept and 0 returned.  Otherwise the load's error.
 */
int kc_aws_credentials_refresh(struct kc_http *h, struct kc_aws_credentials *c, time_t now, struct kc_err *err);

/* AWS_REGION, AWS_DEFAULT_REGION, then "region" of the profile in the config file. Caller frees. */
int kc_aws_default_region(char **ret);

/*
 * Value of key in [section] of an INI-style AWS file (secret memory).
 * -ENOENT when the file, section or key is missing.
 */
int kc_aws_ini_lookup(const char *path, const char *section, const char *key, char **ret);

/*
 * The same in text, an INI-style AWS file in memory, which it cuts up: the
 * value of key in [section], a copy in secret memory with the blanks around
 * it gone; key NULL: 0 when the section is there at all (ret untouched).
 * -ENOENT when the section or key is missing.
 */
int kc_aws_ini_parse(char *text, const char *section, const char *key, char **ret);
