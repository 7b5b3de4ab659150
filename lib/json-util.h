/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Small json-c helpers: scoped release and building objects without leaks. */

#include <errno.h>
#include <stdbool.h>
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

/* "an array", "a string", "null", ...: a JSON type in a message. */
const char *kc_json_type_label(enum json_type t);

/*
 * Wipe every string in o (members, array items, at any depth), then drop
 * the reference: for a parsed text whose secrets were not taken out.
 */
void kc_json_put_wiped(struct json_object *o);
DEFINE_CLEANUP_FUNC(struct json_object *, kc_json_put_wiped)
#define _cleanup_json_wiped_ _cleanup_(kc_json_put_wipedp)

/* How kc_json_parse_object() reads a text; NULL (or all zero) is strict JSON under json-c's nesting limit. */
struct kc_json_parse {
        int flags;      /* tokener flags besides JSON_TOKENER_STRICT, such as JSON_TOKENER_VALIDATE_UTF8 */
        int depth;      /* nesting limit; 0 is json-c's (32) */
        bool secret;    /* the text carries secrets: json-c's working copy of each string is wiped */
};

/*
 * text[0..n) as one JSON object: json-c's strict JSON, no NUL byte, and
 * nothing after the object but whitespace (a JSON text may end in some).
 * The text need not be NUL-terminated.  Two leniencies of json-c's strict
 * mode that json-c never writes are refused too: single-quoted member
 * names and control characters not escaped in strings.  NaN, Infinity and
 * "1." are taken, as json-c's strict mode takes them: json-c writes them
 * back as they came (libcryptsetup's dump of a header with such a foreign
 * token does), so a caller that must refuse them checks for them itself.
 * -EBADMSG with a reason in err, for the caller to put after "<what> is "
 * or "<what>: ": "not valid JSON (empty)",
 * "not valid JSON (a single-quoted name, at byte N)",
 * "not valid JSON (<json-c's words>, at byte N)", "not valid JSON (a NUL
 * byte, at byte N)", "not valid JSON (data after the object, at byte N)",
 * "an array, not a JSON object", "too long for a JSON text"; -ENOMEM.
 */
int kc_json_parse_object(const char *text, size_t n, const struct kc_json_parse *how, struct json_object **ret,
                         struct kc_err *err);
