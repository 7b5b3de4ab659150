/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Everything the aws provider reads from the network, parsed apart from the
 * network: the bodies of AWS KMS responses, the credential documents of the
 * container endpoint and of instance metadata (IMDS), and their timestamps.
 * Each function takes a body as received (bytes and length, not necessarily
 * NUL-terminated; the HTTP status where it decides the meaning), so that
 * unit tests and tests/fuzz/fuzz-aws-response.c reach exactly the code the
 * provider runs.  Error bodies (status >= 300) are kc_aws_error_map's
 * (errors.h).
 *
 * A body that is not what the API reference promises is refused with
 * -EBADMSG (or the errno named below) and one line in err that names the
 * operation and what is wrong, never a secret.  ret_* are written only on
 * success.  Plaintext keys and credentials land in kc_secret memory only;
 * json-c's copies of them are wiped before the parsed document is freed.
 */

#include <stddef.h>
#include <time.h>

#include "agent/aws/credentials.h"
#include "agent/kms.h"
#include "lib/error.h"
#include "lib/time-util.h"

#define KC_AWS_MAX_DATA_KEY 1024          /* GenerateDataKey NumberOfBytes: 1..1024 */
#define KC_AWS_MAX_PLAINTEXT 4096         /* Decrypt: KMS encrypts at most 4096 bytes */
#define KC_AWS_MAX_CIPHERTEXT 6144        /* CiphertextBlob: 1..6144 bytes */
#define KC_AWS_KEY_ID_MAX 64              /* a key id is a UUID or "mrk-" + 32 hex: 36 */
#define KC_AWS_TIME_MAX KC_TIME_MAX       /* 9999-12-31T23:59:59Z, the last date AWS can write */
/*
 * AWS exposes no key material versions: rotation keeps the key id and KMS
 * keeps the old material, so a key is always at its one version.  It is 1,
 * not 0, because a kmscrypt token's key_version starts at 1 (docs/token.md).
 */
#define KC_AWS_KEY_VERSION 1

/*
 * GenerateDataKey (nbytes > 0: Plaintext of exactly nbytes is required),
 * Encrypt or ReEncrypt (nbytes 0: Plaintext is not read).  CiphertextBlob is required;
 * KeyId, a key ARN, gives ret->key_id its id part ("" when absent), and for
 * ReEncrypt SourceKeyId gives ret->source_key_id (version
 * KC_AWS_KEY_VERSION; "" and 0 when absent).
 */
int kc_aws_response_data_key(const char *operation, const char *body, size_t len, size_t nbytes,
                             struct kc_data_key *ret, struct kc_err *err);

/* Decrypt: Plaintext (kc_secret, 1..KC_AWS_MAX_PLAINTEXT bytes, kc_secret_size() is its length) and KeyId. */
int kc_aws_response_decrypt(const char *body, size_t len, void **ret_plaintext, char ret_key_id[65],
                            struct kc_err *err);

/*
 * DescribeKey: KeyMetadata (Arn required; KeyId, Description, KeyState,
 * CreationDate, DeletionDate) into ret.  ret->alias is left empty: the
 * response does not carry it, the caller knows it from the request.
 */
int kc_aws_response_describe_key(const char *body, size_t len, struct kc_key_info *ret, struct kc_err *err);

/* ScheduleKeyDeletion: DeletionDate (0 when absent: a multi-Region primary with replicas). */
int kc_aws_response_deletion_date(const char *body, size_t len, time_t *ret, struct kc_err *err);

/*
 * Temporary credentials as the container endpoint and IMDS both serve them:
 * {"Code", "AccessKeyId", "SecretAccessKey", "Token", "Expiration"}.  what
 * names the source in messages.  Not 200, or a Code other than "Success":
 * -EACCES.  The three secrets must be printable ASCII (they become HTTP
 * headers).  ret->source is left to the caller.
 */
int kc_aws_response_credentials(const char *what, long status, const char *body, size_t len,
                                struct kc_aws_credentials *ret, struct kc_err *err);

/* IMDSv2 session token (PUT /latest/api/token) as a kc_secret string; not 200: -EACCES. */
int kc_aws_response_imds_token(long status, const char *body, size_t len, char **ret, struct kc_err *err);

/* The role name, first line of .../iam/security-credentials/, a plain path segment; not 200: -ENOENT. */
int kc_aws_response_imds_role(long status, const char *body, size_t len, char **ret, struct kc_err *err);

/*
 * "2024-05-01T12:00:00Z" (the form IMDS and container endpoints use), with
 * optional fractional seconds and "Z" or "+00:00"; a real date in 1970..9999.
 */
int kc_aws_parse_time(const char *s, time_t *ret);

/*
 * An HTTP Date header as AWS sends it, RFC 9110's IMF-fixdate
 * ("Sun, 06 Nov 1994 08:49:37 GMT"); a real date in 1970..9999.  The
 * obsolete RFC 850 and asctime forms are refused: no AWS endpoint sends them.
 */
int kc_aws_parse_http_date(const char *s, time_t *ret);
