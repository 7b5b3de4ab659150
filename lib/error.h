/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Human-readable reasons for refusing untrusted input.  Parsers and
 * validators take an optional `struct kc_err *err` (NULL allowed) and fill
 * it with one line that names what is wrong (never a secret), while
 * returning a negative errno as usual:
 *
 *         return kc_err_set(err, -EINVAL, "duplicate key \"%s\"", key);
 */

#include <stdbool.h>

#include "lib/macro.h"

/*
 * Room for a message naming three long paths (an audit log, its head and a
 * keystore: "cannot open the KMS" does) and its words: a message cut short
 * loses its end, often the path that says where to look.
 */
#define KC_ERR_MSG_MAX 2048

struct kc_err {
        int error;          /* negative errno, 0 when unset */
        char msg[KC_ERR_MSG_MAX];
};

/* Record the first error only (the root cause); returns -abs(error).  Control characters become '?'. */
int kc_err_set(struct kc_err *err, int error, const char *fmt, ...) _printf_(3, 4);

/* Message, or strerror() of the errno when no message was set. */
const char *kc_err_msg(const struct kc_err *err, int error);

/*
 * Whether error (negative errno) is a refusal: policy (-EPERM, -EACCES)
 * or the KMS saying no (-EBADMSG a blob not under that key or context,
 * -EKEYREJECTED, -EKEYREVOKED disabled, -EKEYEXPIRED pending deletion).
 * Every kmscrypt program exits 4 for these.
 */
bool kc_err_is_refusal(int error);
