/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "lib/error.h"
#include "lib/json-util.h"

/* Parse text[0..n) with flags: the value (NULL if none), the tokener's verdict and where it stopped; -ENOMEM. */
static int parse(const char *text, size_t n, int flags, struct json_object **ret, enum json_tokener_error *ret_e,
                 size_t *ret_end) {
        struct json_tokener *tok = json_tokener_new();

        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, flags);
        *ret = json_tokener_parse_ex(tok, text, (int) n);
        *ret_e = json_tokener_get_error(tok);
        *ret_end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);
        return 0;
}

/* Whether text[0..n), where a parse stopped, is one whole JSON value. */
static bool whole_value(const char *text, size_t n, int flags) {
        _cleanup_json_ struct json_object *o = NULL;
        enum json_tokener_error e;
        size_t end;

        return n > 0 && parse(text, n, flags, &o, &e, &end) == 0 && o && e == json_tokener_success && end == n;
}

int kc_json_parse_object(const char *text, size_t n, int flags, struct json_object **ret, struct kc_err *err) {
        _cleanup_json_ struct json_object *o = NULL;
        enum json_tokener_error e;
        size_t end;
        int r;

        if (n > INT32_MAX)
                return kc_err_set(err, -EBADMSG, "too long for a JSON text");
        if (memchr(text, '\0', n))
                return kc_err_set(err, -EBADMSG, "contains a NUL byte");
        flags |= JSON_TOKENER_STRICT;
        r = parse(text, n, flags, &o, &e, &end);
        if (r < 0)
                return r;
        if (!o || e != json_tokener_success || end != n) {
                /* Strict json-c stops at the first byte after a whole value: say that, not "unexpected character". */
                if (whole_value(text, end, flags))
                        return kc_err_set(err, -EBADMSG, "not valid JSON (data after the object, at byte %zu)", end);
                return kc_err_set(err, -EBADMSG, "not valid JSON (%s)",
                                  e == json_tokener_continue ? "incomplete" : json_tokener_error_desc(e));
        }
        if (!json_object_is_type(o, json_type_object))
                return kc_err_set(err, -EBADMSG, "not a JSON object");
        *ret = TAKE_PTR(o);
        return 0;
}
