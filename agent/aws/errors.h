/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * AWS KMS error responses ({"__type": "...Exception", "message": "..."},
 * or the type in an X-Amzn-ErrorType header)
 * turned into negative errno, a one-line message and whether the call may
 * be retried (throttling, 5xx, KMS internal errors):
 *
 *   InvalidCiphertextException, IncorrectKeyException   -EBADMSG
 *   DisabledException                                   -EKEYREVOKED
 *   KMSInvalidStateException (pending deletion)         -EKEYEXPIRED, or -EAGAIN when DescribeKey
 *                                                       says Unavailable, Creating, Updating or
 *                                                       Enabled (changed since)
 *   NotFoundException                                   -ENOKEY
 *   AccessDeniedException, rejected credentials         -EACCES
 *   RequestTimeTooSkewed, a signature expired           -EACCES (kms-aws.c corrects its clock, once)
 *   ThrottlingException, LimitExceededException         -EBUSY  (retried)
 *   KMSInternalException, 5xx                           -EAGAIN (retried)
 */

#include <stdbool.h>
#include <stddef.h>

#include "agent/kms.h"
#include "lib/error.h"

/*
 * status >= 300: fill err and return the mapped errno; *ret_retry tells
 * whether to try again.  The type is the X-Amzn-ErrorType header's
 * (header_type, NULL or "" when none), else the body's "code" or "__type",
 * without a "namespace#" prefix or a ":<url>" suffix.
 */
int kc_aws_error_map(long status, const char *header_type, const char *body, size_t body_len,
                     const char *operation, const char *request_id, bool *ret_retry, struct kc_err *err);

/*
 * Whether an error response (as for kc_aws_error_map) refuses the request
 * for its time: RequestTimeTooSkewed, RequestExpired, RequestInTheFuture,
 * or InvalidSignatureException / SignatureDoesNotMatch whose message says
 * "Signature expired" or "Signature not yet current".
 */
bool kc_aws_error_clock_skew(const char *header_type, const char *body, size_t body_len);

/*
 * A cryptographic operation refused with KMSInvalidStateException
 * (-EKEYEXPIRED, request_id its request id) on a key that DescribeKey
 * (describe_request_id) then found in state: when that state passes by
 * itself or is an outage of the key's store (Unavailable, Creating,
 * Updating: kc_key_state_outage(), which says what it means), or is
 * Enabled (it changed between the two calls: enabled again, its store
 * reconnected), err names it and that meaning, and -EAGAIN is returned,
 * which callers retry.  Otherwise 0: the refusal stands as it was.
 */
int kc_aws_error_state_outage(const char *operation, const char *request_id, const char *key_id,
                              enum kc_key_state state, const char *describe_request_id, struct kc_err *err);
