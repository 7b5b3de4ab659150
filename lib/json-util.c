/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include <json-c/printbuf.h>

#include "lib/error.h"
#include "lib/json-util.h"
#include "lib/secret.h"

const char *kc_json_type_label(enum json_type t) {
        static const char *const labels[] = {
                [json_type_null] = "null",
                [json_type_boolean] = "a boolean",
                [json_type_double] = "a number",
                [json_type_int] = "a number",
                [json_type_object] = "an object",
                [json_type_array] = "an array",
                [json_type_string] = "a string",
        };
        return (size_t) t < ARRAY_SIZE(labels) && labels[t] ? labels[t] : "not a string";
}

void kc_json_put_wiped(struct json_object *o) {
        struct json_object_iterator it, end;

        switch (json_object_get_type(o)) {
        case json_type_string:
                kc_wipe((char *) json_object_get_string(o), (size_t) json_object_get_string_len(o));
                break;
        case json_type_array:
                for (size_t i = 0; i < json_object_array_length(o); i++)
                        kc_json_put_wiped(json_object_get(json_object_array_get_idx(o, i)));
                break;
        case json_type_object:
                end = json_object_iter_end(o);
                for (it = json_object_iter_begin(o); !json_object_iter_equal(&it, &end); json_object_iter_next(&it))
                        kc_json_put_wiped(json_object_get(json_object_iter_peek_value(&it)));
                break;
        default:
                break;
        }
        json_object_put(o);
}

static void put(struct json_object *o, bool secret) {
        if (secret)
                kc_json_put_wiped(o);
        else
                json_object_put(o);
}

static bool all_whitespace(const char *text, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (!strchr(" \t\r\n", text[i]))
                        return false;
        return true;
}

/*
 * Feed text[0..n) to tok, then the end of the text: a number at the end is
 * whole only once json-c has seen that nothing follows.  The value (NULL
 * if none) and, in *ret_end, the byte after it or where the error is.
 */
static struct json_object *feed(struct json_tokener *tok, const char *text, size_t n, size_t *ret_end) {
        struct json_object *o = json_tokener_parse_ex(tok, text, (int) n);

        *ret_end = json_tokener_get_parse_end(tok);
        if (!o && json_tokener_get_error(tok) == json_tokener_continue) {
                o = json_tokener_parse_ex(tok, "", 1);
                *ret_end = n;
        }
        return o;
}

/*
 * A new tokener for how.  A secret text's strings are collected in the
 * tokener's printbuf, grown with realloc(), which frees the old block
 * unwiped: no string is longer than the text, so size it for that once and
 * it never moves (the caller wipes it before the free).
 */
static struct json_tokener *tokener_new(const struct kc_json_parse *how, size_t n) {
        struct json_tokener *tok = how->depth > 0 ? json_tokener_new_ex(how->depth) : json_tokener_new();

        if (!tok)
                return NULL;
        json_tokener_set_flags(tok, how->flags | JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
        if (how->secret) {
                if (printbuf_memset(tok->pb, 0, 0, (int) n + 1) < 0) {
                        json_tokener_free(tok);
                        return NULL;
                }
                printbuf_reset(tok->pb);
        }
        return tok;
}

static void tokener_free(struct json_tokener *tok, bool secret) {
        /* The struct is public (if deprecated): there is no other way to wipe the printbuf. */
        if (secret && tok->pb && tok->pb->buf)
                kc_wipe(tok->pb->buf, (size_t) tok->pb->size);
        json_tokener_free(tok);
}

/*
 * Where text[0..n), which json-c's strict mode accepted, is still not
 * RFC 8259 JSON in a way json-c never writes: a single-quoted member name
 * or a control character not escaped in a string.  n when it is not.
 */
static size_t json_c_leniency(const char *text, size_t n, const char **ret_what) {
        bool in_string = false;

        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) text[i];

                if (in_string && c == '\\')
                        i++;
                else if (c == '"')
                        in_string = !in_string;
                else if (in_string && c < 0x20) {
                        *ret_what = "a control character in a string";
                        return i;
                } else if (!in_string && c == '\'') {
                        *ret_what = "a single-quoted name";
                        return i;
                }
        }
        return n;
}

int kc_json_parse_object(const char *text, size_t n, const struct kc_json_parse *how, struct json_object **ret,
                         struct kc_err *err) {
        static const struct kc_json_parse strict = {};
        struct json_tokener *tok;
        struct json_object *o;
        enum json_tokener_error e;
        enum json_type type;
        const char *nul, *what;
        size_t end, at;

        how = how ?: &strict;
        if (n > INT32_MAX - 1)
                return kc_err_set(err, -EBADMSG, "too long for a JSON text");
        nul = memchr(text, '\0', n);
        if (nul)
                return kc_err_set(err, -EBADMSG, "not valid JSON (a NUL byte, at byte %zu)", (size_t) (nul - text));
        if (all_whitespace(text, n))
                return kc_err_set(err, -EBADMSG, "not valid JSON (empty)");
        tok = tokener_new(how, n);
        if (!tok)
                return -ENOMEM;
        o = feed(tok, text, n, &end);
        e = json_tokener_get_error(tok);
        tokener_free(tok, how->secret);
        if (e != json_tokener_success)
                return kc_err_set(err, -EBADMSG, "not valid JSON (%s, at byte %zu)", json_tokener_error_desc(e), end);
        type = json_object_get_type(o);         /* a JSON null is o == NULL */
        if (type != json_type_object) {
                put(o, how->secret);
                return kc_err_set(err, -EBADMSG, "%s, not a JSON object", kc_json_type_label(type));
        }
        /* With JSON_TOKENER_ALLOW_TRAILING_CHARS, json-c ate the whitespace after the object and stopped at the rest. */
        if (end != n) {
                put(o, how->secret);
                return kc_err_set(err, -EBADMSG, "not valid JSON (data after the object, at byte %zu)", end);
        }
        at = json_c_leniency(text, n, &what);
        if (at != n) {
                put(o, how->secret);
                return kc_err_set(err, -EBADMSG, "not valid JSON (%s, at byte %zu)", what, at);
        }
        *ret = o;
        return 0;
}
