/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Small json-c helpers: scoped release and building objects without leaks. */

#include <errno.h>

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
