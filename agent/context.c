/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "agent/context.h"
#include "lib/json-util.h"
#include "lib/log.h"

/*
 * Pairs are kept sorted by key bytes at all times, so the canonical form,
 * JSON output, comparison and lookup all walk one array in one order.
 * Contexts are not secret (they appear in audit records), so plain memory.
 */
struct kc_pair {
        char *key;
        char *value;
        size_t key_len;
        size_t value_len;
};

struct kc_context {
        struct kc_pair *pairs;
        size_t n;
        size_t canonical_len;   /* kept current so every add can enforce KC_CONTEXT_BYTES_MAX */
};

#define CANONICAL_MAGIC "KCX1"
#define CANONICAL_HEADER_LEN 8  /* magic || u32be(n) */
#define CANONICAL_PAIR_OVERHEAD 8 /* two u32be lengths */

/* Longest context text accepted by the parsers: far above any valid context, bounds the scratch buffers. */
#define CONTEXT_TEXT_MAX 65536

/* How many bytes of a key a message quotes: enough to recognise it, short enough for one line. */
#define KEY_QUOTE_MAX 64

int kc_context_new(struct kc_context **ret) {
        struct kc_context *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->canonical_len = CANONICAL_HEADER_LEN;
        *ret = c;
        return 0;
}

void kc_context_free(struct kc_context *c) {
        if (!c)
                return;
        for (size_t i = 0; i < c->n; i++) {
                free(c->pairs[i].key);
                free(c->pairs[i].value);
        }
        free(c->pairs);
        free(c);
}

/* ---- validation ------------------------------------------------------- */

/* RFC 3629 lead bytes: what follows them and the smallest code point each length may encode. */
static const struct {
        uint8_t mask, value;
        uint8_t len;
        uint32_t min;
} utf8_leads[] = {
        { .mask = 0x80, .value = 0x00, .len = 1, .min = 0x0 },
        { .mask = 0xE0, .value = 0xC0, .len = 2, .min = 0x80 },
        { .mask = 0xF0, .value = 0xE0, .len = 3, .min = 0x800 },
        { .mask = 0xF8, .value = 0xF0, .len = 4, .min = 0x10000 },
};

/*
 * Decode one code point at s[0..n).  Returns its length, or 0 with *ret_why
 * naming what is wrong.  Overlongs, surrogates and values above U+10FFFF are
 * refused, so each string has exactly one encoding and canonical forms
 * cannot differ for the same text.
 */
static size_t utf8_decode(const uint8_t *s, size_t n, uint32_t *ret_cp, const char **ret_why) {
        uint32_t cp;
        size_t i, k;

        for (i = 0; i < ARRAY_SIZE(utf8_leads); i++)
                if ((s[0] & utf8_leads[i].mask) == utf8_leads[i].value)
                        break;
        if (i == ARRAY_SIZE(utf8_leads)) {
                *ret_why = "invalid UTF-8 byte";
                return 0;
        }
        if (utf8_leads[i].len > n) {
                *ret_why = "truncated UTF-8 sequence";
                return 0;
        }
        cp = s[0] & (uint8_t) ~utf8_leads[i].mask;
        for (k = 1; k < utf8_leads[i].len; k++) {
                if ((s[k] & 0xC0) != 0x80) {
                        *ret_why = "truncated UTF-8 sequence";
                        return 0;
                }
                cp = (cp << 6) | (s[k] & 0x3F);
        }
        if (cp < utf8_leads[i].min)
                *ret_why = "overlong UTF-8 encoding";
        else if (cp >= 0xD800 && cp <= 0xDFFF)
                *ret_why = "UTF-16 surrogate encoded in UTF-8";
        else if (cp > 0x10FFFF)
                *ret_why = "code point above U+10FFFF";
        else {
                *ret_cp = cp;
                return utf8_leads[i].len;
        }
        return 0;
}

/* NULL when s[0..n) is valid UTF-8 without control characters, else the reason and its byte offset. */
static const char *text_problem(const char *s, size_t n, size_t *ret_offset) {
        const uint8_t *u = (const uint8_t *) s;
        const char *why = NULL;
        size_t i = 0, k;
        uint32_t cp;

        while (i < n) {
                k = utf8_decode(u + i, n - i, &cp, &why);
                if (k == 0)
                        break;
                if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) {
                        why = "control character";
                        break;
                }
                /*
                 * U+FFFD stands for text a decoder could not read, and is what
                 * json-c 0.16 makes of valid escaped pairs too: every code point
                 * whose low 16 bits fall in D800..DFFF ("\ud836\udc00", U+1D800).
                 * A context read through json-c would then name other text than
                 * was written, and two different ones the same: refused in every
                 * context, so no path takes one for the other.
                 */
                if (cp == 0xFFFD) {
                        why = "replacement character U+FFFD";
                        break;
                }
                i += k;
        }
        *ret_offset = i;
        return i < n ? why : NULL;
}

/* Longest prefix of a valid key that fits KEY_QUOTE_MAX without splitting a character. */
static int key_quote_len(const char *key, size_t key_len) {
        size_t n = key_len;

        if (n <= KEY_QUOTE_MAX)
                return (int) n;
        n = KEY_QUOTE_MAX;
        while (n > 0 && ((uint8_t) key[n] & 0xC0) == 0x80)
                n--;
        return (int) n;
}

/* The key cannot be quoted when it is what is wrong: name it by its position instead. */
static int validate_key(const char *key, size_t key_len, size_t index, struct kc_err *err) {
        const char *why;
        size_t off;

        if (key_len == 0)
                return kc_err_set(err, -EINVAL, "pair %zu: empty key", index + 1);
        if (key_len > KC_CONTEXT_KEY_MAX)
                return kc_err_set(err, -E2BIG, "pair %zu: key of %zu bytes is longer than %d",
                                  index + 1, key_len, KC_CONTEXT_KEY_MAX);
        why = text_problem(key, key_len, &off);
        if (why)
                return kc_err_set(err, -EINVAL, "pair %zu: key has %s at byte %zu", index + 1, why, off);
        return 0;
}

static int validate_value(const char *key, size_t key_len, const char *value, size_t value_len,
                          struct kc_err *err) {
        int q = key_quote_len(key, key_len);
        const char *why;
        size_t off;

        if (value_len > KC_CONTEXT_VALUE_MAX)
                return kc_err_set(err, -E2BIG, "key \"%.*s\": value of %zu bytes is longer than %d",
                                  q, key, value_len, KC_CONTEXT_VALUE_MAX);
        why = text_problem(value, value_len, &off);
        if (why)
                return kc_err_set(err, -EINVAL, "key \"%.*s\": value has %s at byte %zu", q, key, why, off);
        return 0;
}

/* ---- the sorted pair array -------------------------------------------- */

/* memcmp order of key bytes; a key sorts before every longer key it is a prefix of. */
static int key_cmp(const char *a, size_t a_len, const char *b, size_t b_len) {
        int r = memcmp(a, b, a_len < b_len ? a_len : b_len);
        if (r != 0)
                return r;
        return a_len < b_len ? -1 : a_len > b_len;
}

/* Index of key if present (*ret_found), else where it would be inserted. */
static size_t find_key(const struct kc_context *c, const char *key, size_t key_len, bool *ret_found) {
        size_t lo = 0, hi = c->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int r = key_cmp(key, key_len, c->pairs[mid].key, c->pairs[mid].key_len);
                if (r == 0) {
                        *ret_found = true;
                        return mid;
                }
                if (r < 0)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        *ret_found = false;
        return lo;
}

static char *memdup_str(const char *s, size_t n) {
        char *p = malloc(n + 1);
        if (p) {
                memcpy(p, s, n);
                p[n] = '\0';
        }
        return p;
}

static int replace_value(struct kc_context *c, size_t i, const char *value, size_t value_len,
                         struct kc_err *err) {
        struct kc_pair *p = &c->pairs[i];
        size_t len = c->canonical_len - p->value_len + value_len;
        char *v;

        if (len > KC_CONTEXT_BYTES_MAX)
                return kc_err_set(err, -E2BIG, "key \"%.*s\": canonical context would be %zu bytes, more than %d",
                                  key_quote_len(p->key, p->key_len), p->key, len, KC_CONTEXT_BYTES_MAX);
        v = memdup_str(value, value_len);
        if (!v)
                return -ENOMEM;
        free(p->value);
        p->value = v;
        p->value_len = value_len;
        c->canonical_len = len;
        return 0;
}

static int insert_pair(struct kc_context *c, size_t i, const char *key, size_t key_len,
                       const char *value, size_t value_len, struct kc_err *err) {
        size_t len = c->canonical_len + CANONICAL_PAIR_OVERHEAD + key_len + value_len;
        int q = key_quote_len(key, key_len);
        _cleanup_free_ char *k = NULL, *v = NULL;
        struct kc_pair *pairs;

        if (c->n >= KC_CONTEXT_PAIRS_MAX)
                return kc_err_set(err, -E2BIG, "key \"%.*s\": context already has the maximum of %d pairs",
                                  q, key, KC_CONTEXT_PAIRS_MAX);
        if (len > KC_CONTEXT_BYTES_MAX)
                return kc_err_set(err, -E2BIG, "key \"%.*s\": canonical context would be %zu bytes, more than %d",
                                  q, key, len, KC_CONTEXT_BYTES_MAX);
        k = memdup_str(key, key_len);
        v = memdup_str(value, value_len);
        pairs = realloc(c->pairs, (c->n + 1) * sizeof(*pairs));
        if (!k || !v || !pairs) {
                if (pairs)
                        c->pairs = pairs;
                return -ENOMEM;
        }
        c->pairs = pairs;
        memmove(&pairs[i + 1], &pairs[i], (c->n - i) * sizeof(*pairs));
        pairs[i] = (struct kc_pair) {
                .key = TAKE_PTR(k),
                .value = TAKE_PTR(v),
                .key_len = key_len,
                .value_len = value_len,
        };
        c->n++;
        c->canonical_len = len;
        return 0;
}

/* What a key that is already present means. */
enum put_mode {
        PUT_ADD,        /* -EEXIST: the API caller may want to tell it apart */
        PUT_PARSE,      /* -EINVAL: bad input like any other */
        PUT_REPLACE,    /* replace the value */
};

/* Every way in (add, set, both parsers) goes through here, so every pair is validated alike. */
static int pair_put(struct kc_context *c, const char *key, size_t key_len, const char *value,
                    size_t value_len, enum put_mode mode, struct kc_err *err) {
        bool found;
        size_t i;
        int r;

        r = validate_key(key, key_len, c->n, err);
        if (r < 0)
                return r;
        r = validate_value(key, key_len, value, value_len, err);
        if (r < 0)
                return r;

        i = find_key(c, key, key_len, &found);
        if (found && mode == PUT_REPLACE)
                return replace_value(c, i, value, value_len, err);
        if (found)
                return kc_err_set(err, mode == PUT_ADD ? -EEXIST : -EINVAL, "duplicate key \"%.*s\"",
                                  key_quote_len(key, key_len), key);
        return insert_pair(c, i, key, key_len, value, value_len, err);
}

int kc_context_add(struct kc_context *c, const char *key, const char *value, struct kc_err *err) {
        if (!c || !key || !value)
                return kc_err_set(err, -EINVAL, "missing context, key or value");
        return pair_put(c, key, strlen(key), value, strlen(value), PUT_ADD, err);
}

int kc_context_set(struct kc_context *c, const char *key, const char *value, struct kc_err *err) {
        if (!c || !key || !value)
                return kc_err_set(err, -EINVAL, "missing context, key or value");
        return pair_put(c, key, strlen(key), value, strlen(value), PUT_REPLACE, err);
}

/* ---- "key=value,key=value" -------------------------------------------- */

static int check_text(const char *text, struct kc_err *err) {
        size_t len;

        if (!text)
                return kc_err_set(err, -EINVAL, "missing context text");
        len = strlen(text);
        if (len > CONTEXT_TEXT_MAX)
                return kc_err_set(err, -E2BIG, "context text of %zu bytes is longer than %d",
                                  len, CONTEXT_TEXT_MAX);
        return 0;
}

/*
 * Copy one backslash-unescaped field of text starting at *p into out, up to
 * the first unescaped character of stops (or the end).  *p is left on that
 * character.  Returns the length, or -EINVAL for a backslash at the end.
 */
static ssize_t kv_field(const char **p, const char *stops, char *out) {
        const char *s = *p;
        size_t n = 0;

        for (; *s && !strchr(stops, *s); s++) {
                if (*s == '\\' && *++s == '\0')
                        return -EINVAL;
                out[n++] = *s;
        }
        *p = s;
        return (ssize_t) n;
}

static int kv_pair(struct kc_context *c, const char **p, char *key, char *value, struct kc_err *err) {
        size_t index = c->n + 1;
        ssize_t key_len, value_len;

        if (**p == ',' || **p == '\0')
                return kc_err_set(err, -EINVAL, "pair %zu is empty", index);
        key_len = kv_field(p, "=,", key);
        if (key_len < 0)
                return kc_err_set(err, -EINVAL, "pair %zu ends in a lone backslash", index);
        if (**p != '=')
                return kc_err_set(err, -EINVAL, "pair %zu has no '=' (write key=value)", index);
        (*p)++;
        value_len = kv_field(p, "=,", value);
        if (value_len < 0)
                return kc_err_set(err, -EINVAL, "pair %zu ends in a lone backslash", index);
        if (**p == '=')
                return kc_err_set(err, -EINVAL, "pair %zu has a second '=' (escape it as \\=)", index);

        return pair_put(c, key, (size_t) key_len, value, (size_t) value_len, PUT_PARSE, err);
}

int kc_context_parse_kv(const char *text, struct kc_context **ret, struct kc_err *err) {
        _cleanup_(kc_context_freep) struct kc_context *c = NULL;
        _cleanup_free_ char *key = NULL, *value = NULL;
        const char *p = text;
        int r;

        r = check_text(text, err);
        if (r < 0)
                return r;
        r = kc_context_new(&c);
        if (r < 0)
                return r;
        /* No field can be longer than the text it came from. */
        key = malloc(strlen(text) + 1);
        value = malloc(strlen(text) + 1);
        if (!key || !value)
                return -ENOMEM;

        while (*p) {
                r = kv_pair(c, &p, key, value, err);
                if (r < 0)
                        return r;
                if (*p == ',' && *++p == '\0')
                        return kc_err_set(err, -EINVAL, "pair %zu is empty (trailing ',')", c->n + 1);
        }
        *ret = TAKE_PTR(c);
        return 0;
}

/* ---- JSON --------------------------------------------------------------- */

int kc_context_from_json(struct json_object *obj, struct kc_context **ret, struct kc_err *err) {
        _cleanup_(kc_context_freep) struct kc_context *c = NULL;
        int r;

        if (!json_object_is_type(obj, json_type_object))
                return kc_err_set(err, -EINVAL, "context is %s, not a JSON object",
                                  kc_json_type_label(json_object_get_type(obj)));
        r = kc_context_new(&c);
        if (r < 0)
                return r;

        json_object_object_foreach(obj, key, val) {
                if (!json_object_is_type(val, json_type_string)) {
                        /* Quote the key only once it is known to be printable. */
                        r = validate_key(key, strlen(key), c->n, err);
                        if (r < 0)
                                return r;
                        return kc_err_set(err, -EINVAL, "key \"%.*s\": value is %s, not a string",
                                          key_quote_len(key, strlen(key)), key,
                                          kc_json_type_label(json_object_get_type(val)));
                }
                r = pair_put(c, key, strlen(key), json_object_get_string(val),
                             (size_t) json_object_get_string_len(val), PUT_PARSE, err);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

static const char *skip_ws(const char *p) {
        return p + strspn(p, " \t\n\r");
}

/* Append code point cp as UTF-8 (cp < 0x110000 and not a surrogate, checked by the caller). */
static size_t utf8_encode(uint32_t cp, char *out) {
        if (cp < 0x80) {
                out[0] = (char) cp;
                return 1;
        }
        if (cp < 0x800) {
                out[0] = (char) (0xC0 | (cp >> 6));
                out[1] = (char) (0x80 | (cp & 0x3F));
                return 2;
        }
        if (cp < 0x10000) {
                out[0] = (char) (0xE0 | (cp >> 12));
                out[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
                out[2] = (char) (0x80 | (cp & 0x3F));
                return 3;
        }
        out[0] = (char) (0xF0 | (cp >> 18));
        out[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char) (0x80 | (cp & 0x3F));
        return 4;
}

static int hex4(const char *p, uint32_t *ret) {
        uint32_t v = 0;

        for (int i = 0; i < 4; i++) {
                char ch = p[i];
                int d = ch >= '0' && ch <= '9' ? ch - '0' :
                        ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 :
                        ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
                if (d < 0)
                        return -EINVAL;
                v = (v << 4) | (uint32_t) d;
        }
        *ret = v;
        return 0;
}

/* "\uXXXX", or a surrogate pair "\uD8xx\uDCxx", at p (just after the backslash-u). Lone surrogates are refused. */
static int json_unicode_escape(const char **p, uint32_t *ret) {
        uint32_t hi, lo;

        if (hex4(*p, &hi) < 0)
                return -EINVAL;
        *p += 4;
        if (hi >= 0xDC00 && hi <= 0xDFFF)
                return -EILSEQ;
        if (hi < 0xD800 || hi > 0xDBFF) {
                *ret = hi;
                return 0;
        }
        if ((*p)[0] != '\\' || (*p)[1] != 'u' || hex4(*p + 2, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
                return -EILSEQ;
        *p += 6;
        *ret = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
        return 0;
}

static const char json_simple_escapes[128] = {
        ['"'] = '"', ['\\'] = '\\', ['/'] = '/',
        ['b'] = '\b', ['f'] = '\f', ['n'] = '\n', ['r'] = '\r', ['t'] = '\t',
};

/*
 * Decode the JSON string starting at the '"' at *p into out (at most as long
 * as the source), leaving *p after the closing quote.  Our own decoder
 * rather than json-c's because json-c turns lone surrogate escapes into
 * U+FFFD silently; the text was already checked by json-c, so syntax errors
 * here cannot happen but are still refused.  Returns the length or -errno.
 */
static ssize_t json_string(const char **p, char *out) {
        const char *s = *p + 1;
        size_t n = 0;
        uint32_t cp;
        int r;

        if (**p != '"')
                return -EINVAL;
        while (*s != '"') {
                if (*s == '\0')
                        return -EINVAL;
                if (*s != '\\') {
                        out[n++] = *s++;
                        continue;
                }
                s++;
                if (*s == 'u') {
                        s++;
                        r = json_unicode_escape(&s, &cp);
                        if (r < 0)
                                return r;
                        n += utf8_encode(cp, out + n);
                } else if ((unsigned char) *s < 128 && json_simple_escapes[(unsigned char) *s]) {
                        out[n++] = json_simple_escapes[(unsigned char) *s++];
                } else
                        return -EINVAL;
        }
        *p = s + 1;
        return (ssize_t) n;
}

/* The type of the JSON value that starts with ch (json-c already checked the syntax). */
static const char *json_text_type_label(char ch) {
        static const struct {
                char first;
                enum json_type type;
        } starts[] = {
                { '{', json_type_object }, { '[', json_type_array }, { 't', json_type_boolean },
                { 'f', json_type_boolean }, { 'n', json_type_null },
        };
        for (size_t i = 0; i < ARRAY_SIZE(starts); i++)
                if (starts[i].first == ch)
                        return kc_json_type_label(starts[i].type);
        return kc_json_type_label(json_type_double);
}

static int json_member(struct kc_context *c, const char **p, char *key, char *value, struct kc_err *err) {
        size_t index = c->n + 1;
        ssize_t key_len, value_len;
        int r;

        key_len = json_string(p, key);
        if (key_len < 0)
                return kc_err_set(err, -EINVAL, "member %zu: %s", index,
                                  key_len == -EILSEQ ? "key has an unpaired UTF-16 surrogate escape" : "malformed key");
        *p = skip_ws(*p);
        if (**p != ':')
                return kc_err_set(err, -EINVAL, "member %zu: expected ':'", index);
        *p = skip_ws(*p + 1);
        /* Strings only: everything else is refused here, so nested values never need skipping. */
        if (**p != '"') {
                r = validate_key(key, (size_t) key_len, c->n, err);
                if (r < 0)
                        return r;
                return kc_err_set(err, -EINVAL, "key \"%.*s\": value is %s, not a string",
                                  key_quote_len(key, (size_t) key_len), key, json_text_type_label(**p));
        }
        value_len = json_string(p, value);
        if (value_len < 0)
                return kc_err_set(err, -EINVAL, "member %zu: %s", index,
                                  value_len == -EILSEQ ? "value has an unpaired UTF-16 surrogate escape" :
                                                         "malformed value");
        return pair_put(c, key, (size_t) key_len, value, (size_t) value_len, PUT_PARSE, err);
}

/* Walk the top-level members of an object json-c has already accepted, so duplicates are seen. */
static int json_members(const char *text, struct kc_context *c, struct kc_err *err) {
        _cleanup_free_ char *key = NULL, *value = NULL;
        const char *p = skip_ws(text);
        int r;

        key = malloc(strlen(text) + 1);
        value = malloc(strlen(text) + 1);
        if (!key || !value)
                return -ENOMEM;
        if (*p != '{')
                return kc_err_set(err, -EINVAL, "context is not a JSON object");
        p = skip_ws(p + 1);
        if (*p == '}')
                return 0;
        for (;;) {
                r = json_member(c, &p, key, value, err);
                if (r < 0)
                        return r;
                p = skip_ws(p);
                if (*p == '}')
                        return 0;
                if (*p != ',')
                        return kc_err_set(err, -EINVAL, "member %zu: expected ',' or '}'", c->n);
                p = skip_ws(p + 1);
        }
}

int kc_context_parse_json(const char *text, struct kc_context **ret, struct kc_err *err) {
        _cleanup_(kc_context_freep) struct kc_context *c = NULL;
        _cleanup_json_ struct json_object *obj = NULL;
        struct kc_err why = {};
        int r;

        r = check_text(text, err);
        if (r < 0)
                return r;
        /* json-c checks the syntax as a whole (and gives the better message); our walk then checks the members. */
        r = kc_json_parse_object(text, strlen(text), NULL, &obj, &why);
        if (r == -EBADMSG)
                return kc_err_set(err, -EINVAL, "context is %s", why.msg);
        if (r < 0)
                return r;
        r = kc_context_new(&c);
        if (r < 0)
                return r;
        r = json_members(text, c, err);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

int kc_context_to_json(const struct kc_context *c, struct json_object **ret) {
        struct json_object *obj = json_object_new_object();

        if (!obj)
                return -ENOMEM;
        /* json-c keeps insertion order, so the object lists the pairs in canonical order. */
        for (size_t i = 0; i < c->n; i++) {
                struct json_object *v = json_object_new_string_len(c->pairs[i].value, (int) c->pairs[i].value_len);
                if (!v || json_object_object_add_ex(obj, c->pairs[i].key, v, JSON_C_OBJECT_ADD_KEY_IS_NEW) < 0) {
                        json_object_put(v);
                        json_object_put(obj);
                        return -ENOMEM;
                }
        }
        *ret = obj;
        return 0;
}

int kc_context_to_string(const struct kc_context *c, char **ret) {
        struct json_object *obj = NULL;
        char *s;
        int r;

        r = kc_context_to_json(c, &obj);
        if (r < 0)
                return r;
        s = strdup(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(obj);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* ---- canonical form and accessors ------------------------------------- */

static uint8_t *put_u32be(uint8_t *p, size_t v) {
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
        return p + 4;
}

static uint8_t *put_field(uint8_t *p, const char *s, size_t n) {
        p = put_u32be(p, n);
        memcpy(p, s, n);
        return p + n;
}

int kc_context_canonical(const struct kc_context *c, uint8_t **ret, size_t *ret_len) {
        uint8_t *buf, *p;

        if (!c)
                return -EINVAL;
        buf = malloc(c->canonical_len);
        if (!buf)
                return -ENOMEM;
        p = buf;
        memcpy(p, CANONICAL_MAGIC, 4);
        p = put_u32be(p + 4, c->n);
        for (size_t i = 0; i < c->n; i++) {
                p = put_field(p, c->pairs[i].key, c->pairs[i].key_len);
                p = put_field(p, c->pairs[i].value, c->pairs[i].value_len);
        }
        if ((size_t) (p - buf) != c->canonical_len)
                abort(); /* the running total is what enforces KC_CONTEXT_BYTES_MAX: it must be exact */
        *ret = buf;
        *ret_len = c->canonical_len;
        return 0;
}

size_t kc_context_count(const struct kc_context *c) {
        return c ? c->n : 0;
}

const char *kc_context_key(const struct kc_context *c, size_t i) {
        return c && i < c->n ? c->pairs[i].key : NULL;
}

const char *kc_context_value(const struct kc_context *c, size_t i) {
        return c && i < c->n ? c->pairs[i].value : NULL;
}

const char *kc_context_get(const struct kc_context *c, const char *key) {
        bool found;
        size_t i;

        if (!c || !key)
                return NULL;
        i = find_key(c, key, strlen(key), &found);
        return found ? c->pairs[i].value : NULL;
}

bool kc_context_equal(const struct kc_context *a, const struct kc_context *b) {
        if (!a || !b)
                return a == b;
        if (a->n != b->n)
                return false;
        for (size_t i = 0; i < a->n; i++) {
                const struct kc_pair *p = &a->pairs[i], *q = &b->pairs[i];
                if (key_cmp(p->key, p->key_len, q->key, q->key_len) != 0 ||
                    p->value_len != q->value_len || memcmp(p->value, q->value, p->value_len) != 0)
                        return false;
        }
        return true;
}

int kc_context_copy(const struct kc_context *c, struct kc_context **ret) {
        _cleanup_(kc_context_freep) struct kc_context *copy = NULL;
        int r;

        if (!c)
                return -EINVAL;
        r = kc_context_new(&copy);
        if (r < 0)
                return r;
        for (size_t i = 0; i < c->n; i++) {
                r = insert_pair(copy, i, c->pairs[i].key, c->pairs[i].key_len,
                                c->pairs[i].value, c->pairs[i].value_len, NULL);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(copy);
        return 0;
}
