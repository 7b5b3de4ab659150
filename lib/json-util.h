/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Small json-c helpers: scoped release and building objects without leaks. */

#include <errno.h>
#include <stddef.h>

#include <json-c/json.h>

#include "lib/macro.h"

DEFINE_CLEANUP_FUNC(struct json_object *, json_object_put)
#define _cleanup_json_ _cleanup_(json_object_putp)

/*
 * Add v (owned) to object o under name; v is released if it cannot be
 * added.  v == NULL is taken as an allocation failure, so a JSON null must
 * be added with json_object_object_add(o, name, NULL) directly.
 */
static inline int kc_json_add(struct json_object *o, const char *name, struct json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, name, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

struct kc_err;

/*
 * text[0..n) as one JSON object: strict JSON (JSON_TOKENER_STRICT, plus
 * the tokener flags in flags, such as JSON_TOKENER_VALIDATE_UTF8), no NUL
 * byte, and nothing after the object but whitespace (a JSON text may end
 * in some).  -EBADMSG with a reason in err ("not valid JSON (data after
 * the object)"), for the caller to put after what it was reading; -ENOMEM.
 */
int kc_json_parse_object(const char *text, size_t n, int flags, struct json_object **ret, struct kc_err *err);
