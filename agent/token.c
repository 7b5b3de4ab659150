/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kmscrypt LUKS2 token (layout in docs/token.md).  The JSON comes from a
 * device header, so it is untrusted: every member is checked for presence,
 * type and size, and anything unexpected is refused with a message naming
 * the member.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "agent/token.h"
#include "lib/json-util.h"
#include "lib/log.h"
#include "lib/macro.h"

/* ---- strict base64 (RFC 4648, standard alphabet, padded, no whitespace) ---- */

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(char c) {
        const char *p = c ? strchr(b64_alphabet, c) : NULL;
        return p ? (int) (p - b64_alphabet) : -1;
}

static int b64_encode(const uint8_t *in, size_t n, char **ret) {
        char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;

        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i += 3) {
                uint32_t v = (uint32_t) in[i] << 16;
                size_t left = n - i;

                if (left > 1)
                        v |= (uint32_t) in[i + 1] << 8;
                if (left > 2)
                        v |= in[i + 2];
                *o++ = b64_alphabet[(v >> 18) & 63];
                *o++ = b64_alphabet[(v >> 12) & 63];
                *o++ = left > 1 ? b64_alphabet[(v >> 6) & 63] : '=';
                *o++ = left > 2 ? b64_alphabet[v & 63] : '=';
        }
        *o = '\0';
        *ret = out;
        return 0;
}

/* Refuses anything but canonical padded base64: a blob has exactly one spelling. */
static int b64_decode(const char *in, uint8_t **ret, size_t *ret_len) {
        size_t len = strlen(in), pad = 0, n = 0;
        _cleanup_free_ uint8_t *out = NULL;

        if (len == 0 || len % 4 != 0)
                return -EINVAL;
        if (in[len - 1] == '=')
                pad = in[len - 2] == '=' ? 2 : 1;
        out = malloc(len / 4 * 3);
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < len; i += 4) {
                bool last = i + 4 == len;
                uint32_t v = 0;

                for (size_t j = 0; j < 4; j++) {
                        int d;

                        if (last && j >= 4 - pad) {
                                d = 0;
                                if (in[i + j] != '=')
                                        return -EINVAL;
                        } else if ((d = b64_value(in[i + j])) < 0)
                                return -EINVAL;
                        v = v << 6 | (uint32_t) d;
                }
                /* Non-zero bits under the padding would give a second spelling of the same bytes. */
                if (last && ((pad == 1 && (v & 0xff)) || (pad == 2 && (v & 0xffff))))
                        return -EINVAL;
                out[n++] = v >> 16;
                if (!last || pad < 2)
                        out[n++] = (v >> 8) & 0xff;
                if (!last || pad < 1)
                        out[n++] = v & 0xff;
        }
        *ret = TAKE_PTR(out);
        *ret_len = n;
        return 0;
}

/* ---- field validation shared by parse and format ---- */

static bool provider_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n >= sizeof(((struct kc_token *) NULL)->provider))
                return false;
        return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

/* Printable ASCII without space: ids and ARNs never need more, and it keeps messages safe. */
static bool key_id_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n >= sizeof(((struct kc_token *) NULL)->key_id))
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] < 0x21 || s[i] > 0x7e)
                        return false;
        return true;
}

static bool keyslot_valid(int64_t k) {
        return k >= 0 && k < KC_TOKEN_KEYSLOTS_MAX;
}

static bool reencrypt_valid(const struct kc_token_reencrypt *re) {
        return re->wrapped_passphrase && re->wrapped_passphrase_len > 0 &&
               re->wrapped_passphrase_len <= KC_TOKEN_WRAPPED_MAX &&
               re->wrapped_key && re->wrapped_key_len > 0 && re->wrapped_key_len <= KC_TOKEN_WRAPPED_MAX &&
               re->key_version > 0 && keyslot_valid(re->keyslot_old) && keyslot_valid(re->keyslot_new) &&
               re->keyslot_old != re->keyslot_new;
}

static int token_validate(const struct kc_token *t, struct kc_err *err) {
        if (t->version != KC_TOKEN_VERSION)
                return kc_err_set(err, -EPROTONOSUPPORT, "unsupported kmscrypt token version %u", t->version);
        if (!provider_valid(t->provider))
                return kc_err_set(err, -EINVAL, "token provider is not a valid provider name");
        if (!key_id_valid(t->key_id))
                return kc_err_set(err, -EINVAL, "token key_id is not a valid key id");
        if (t->key_version == 0)
                return kc_err_set(err, -EINVAL, "token key_version must be at least 1");
        if (!t->context)
                return kc_err_set(err, -EINVAL, "token has no context");
        if (!t->wrapped_key || t->wrapped_key_len == 0)
                return kc_err_set(err, -EINVAL, "token has no wrapped_key");
        if (t->wrapped_key_len > KC_TOKEN_WRAPPED_MAX)
                return kc_err_set(err, -E2BIG, "token wrapped_key is %zu bytes, more than %d",
                                  t->wrapped_key_len, KC_TOKEN_WRAPPED_MAX);
        if (t->reencrypt && !reencrypt_valid(t->reencrypt))
                return kc_err_set(err, -EINVAL, "token kmscrypt_reencrypt member is incomplete");
        return 0;
}

void kc_token_reencrypt_free(struct kc_token_reencrypt *re) {
        if (!re)
                return;
        free(re->wrapped_passphrase);
        free(re->wrapped_key);
        free(re);
}

void kc_token_clear(struct kc_token *t) {
        if (!t)
                return;
        kc_context_free(t->context);
        free(t->wrapped_key);
        kc_token_reencrypt_free(t->reencrypt);
        *t = (struct kc_token) {};
}

/* ---- parse ---- */

struct member {
        const char *name;
        enum json_type type;
        const char *type_name;
        bool optional;
};

/* Every member a version 1 token may have; any other member is refused. */
static const struct member members[] = {
        { .name = "type",             .type = json_type_string, .type_name = "a string" },
        { .name = "keyslots",         .type = json_type_array,  .type_name = "an array" },
        { .name = "kmscrypt_version", .type = json_type_int,    .type_name = "an integer" },
        { .name = "provider",         .type = json_type_string, .type_name = "a string" },
        { .name = "key_id",           .type = json_type_string, .type_name = "a string" },
        { .name = "key_version",      .type = json_type_int,    .type_name = "an integer" },
        { .name = "context",          .type = json_type_object, .type_name = "an object" },
        { .name = "wrapped_key",      .type = json_type_string, .type_name = "a string" },
        { .name = "kmscrypt_reencrypt", .type = json_type_object, .type_name = "an object", .optional = true },
        { .name = "key_check",        .type = json_type_string, .type_name = "a string", .optional = true },
};

/* The members of "kmscrypt_reencrypt": all required. */
static const struct member reencrypt_members[] = {
        { .name = "wrapped_passphrase", .type = json_type_string, .type_name = "a string" },
        { .name = "wrapped_key",        .type = json_type_string, .type_name = "a string" },
        { .name = "key_version",        .type = json_type_int,    .type_name = "an integer" },
        { .name = "keyslot_old",        .type = json_type_int,    .type_name = "an integer" },
        { .name = "keyslot_new",        .type = json_type_int,    .type_name = "an integer" },
};

static int check_members_of(struct json_object *o, const struct member *table, size_t n_members,
                            const char *where, struct kc_err *err) {
        json_object_object_foreach(o, name, value) {
                const struct member *m = NULL;

                for (size_t i = 0; i < n_members; i++)
                        if (streq(table[i].name, name))
                                m = &table[i];
                if (!m)
                        /* The name came from the header: print it only when it is short and plain. */
                        return strlen(name) <= 64 && strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-") == strlen(name)
                                ? kc_err_set(err, -EINVAL, "%s has unknown member \"%s\"", where, name)
                                : kc_err_set(err, -EINVAL, "%s has an unknown member", where);
                if (!json_object_is_type(value, m->type))
                        return kc_err_set(err, -EINVAL, "%s member \"%s\" is not %s", where, name, m->type_name);
        }
        for (size_t i = 0; i < n_members; i++)
                if (!table[i].optional && !json_object_object_get_ex(o, table[i].name, NULL))
                        return kc_err_set(err, -EINVAL, "%s has no \"%s\"", where, table[i].name);
        return 0;
}

static int check_members(struct json_object *o, struct kc_err *err) {
        return check_members_of(o, members, ARRAY_SIZE(members), "token", err);
}

/* json-c clamps out-of-range integers to INT64_MIN/MAX, so the range check also catches overflow. */
static int get_u32(struct json_object *o, const char *name, uint32_t min, uint32_t *ret, struct kc_err *err) {
        int64_t v = json_object_get_int64(json_object_object_get(o, name));

        if (v < (int64_t) min || v > UINT32_MAX)
                return kc_err_set(err, -ERANGE, "token member \"%s\" is out of range", name);
        *ret = (uint32_t) v;
        return 0;
}

static int get_string(struct json_object *o, const char *name, char *buf, size_t size,
                      bool (*valid)(const char *), struct kc_err *err) {
        const char *s = json_object_get_string(json_object_object_get(o, name));
        size_t n = (size_t) json_object_get_string_len(json_object_object_get(o, name));

        /* An embedded NUL would make the C string shorter than the JSON one. */
        if (n != strlen(s))
                return kc_err_set(err, -EINVAL, "token member \"%s\" contains a NUL character", name);
        if (n >= size)
                return kc_err_set(err, -E2BIG, "token member \"%s\" is longer than %zu bytes", name, size - 1);
        if (!valid(s))
                return kc_err_set(err, -EINVAL, "token member \"%s\" has invalid characters", name);
        memcpy(buf, s, n + 1);
        return 0;
}

/* A base64 member of at most KC_TOKEN_WRAPPED_MAX decoded bytes. */
static int get_blob(struct json_object *o, const char *name, uint8_t **ret, size_t *ret_len, struct kc_err *err) {
        struct json_object *v = json_object_object_get(o, name);
        const char *s = json_object_get_string(v);
        size_t n = (size_t) json_object_get_string_len(v);

        /* Bound before decoding so a huge string costs nothing. */
        if (n > (KC_TOKEN_WRAPPED_MAX + 2) / 3 * 4)
                return kc_err_set(err, -E2BIG, "token %s is longer than %d bytes", name, KC_TOKEN_WRAPPED_MAX);
        if (n != strlen(s) || b64_decode(s, ret, ret_len) < 0)
                return kc_err_set(err, -EINVAL, "token %s is not valid base64", name);
        if (*ret_len > KC_TOKEN_WRAPPED_MAX)
                return kc_err_set(err, -E2BIG, "token %s is longer than %d bytes", name, KC_TOKEN_WRAPPED_MAX);
        return 0;
}

/* The optional key check: exactly KC_TOKEN_KEY_CHECK_SIZE bytes, or absent. */
static int get_key_check(struct json_object *o, struct kc_token *t, struct kc_err *err) {
        _cleanup_free_ uint8_t *check = NULL;
        size_t len = 0;
        int r;

        if (!json_object_object_get_ex(o, "key_check", NULL))
                return 0;
        r = get_blob(o, "key_check", &check, &len, err);
        if (r < 0)
                return r;
        if (len != KC_TOKEN_KEY_CHECK_SIZE)
                return kc_err_set(err, -EINVAL, "token key_check is %zu bytes, not %d", len, KC_TOKEN_KEY_CHECK_SIZE);
        memcpy(t->key_check, check, len);
        t->has_key_check = true;
        return 0;
}

static int get_keyslot(struct json_object *o, const char *name, int *ret, struct kc_err *err) {
        int64_t v = json_object_get_int64(json_object_object_get(o, name));

        if (!keyslot_valid(v))
                return kc_err_set(err, -ERANGE, "token kmscrypt_reencrypt member \"%s\" is not a keyslot number", name);
        *ret = (int) v;
        return 0;
}

static int parse_reencrypt(struct json_object *o, struct kc_token_reencrypt **ret, struct kc_err *err) {
        struct kc_token_reencrypt *re;
        int r;

        r = check_members_of(o, reencrypt_members, ARRAY_SIZE(reencrypt_members), "token kmscrypt_reencrypt", err);
        if (r < 0)
                return r;
        re = calloc(1, sizeof(*re));
        if (!re)
                return -ENOMEM;
        *ret = re; /* freed with the token on failure */
        r = get_blob(o, "wrapped_passphrase", &re->wrapped_passphrase, &re->wrapped_passphrase_len, err);
        if (r >= 0)
                r = get_blob(o, "wrapped_key", &re->wrapped_key, &re->wrapped_key_len, err);
        if (r >= 0)
                r = get_u32(o, "key_version", 1, &re->key_version, err);
        if (r >= 0)
                r = get_keyslot(o, "keyslot_old", &re->keyslot_old, err);
        if (r >= 0)
                r = get_keyslot(o, "keyslot_new", &re->keyslot_new, err);
        if (r >= 0 && re->keyslot_old == re->keyslot_new)
                r = kc_err_set(err, -EINVAL, "token kmscrypt_reencrypt names keyslot %d twice", re->keyslot_old);
        return r;
}

static int parse_object(struct json_object *o, struct kc_token *t, struct kc_err *err) {
        struct json_object *v;
        uint32_t version = 0;
        int r;

        /* The version first: a newer token, whatever members it has, is "unsupported", not "malformed". */
        v = json_object_object_get(o, "kmscrypt_version");
        if (!v && !json_object_object_get_ex(o, "kmscrypt_version", NULL))
                return kc_err_set(err, -EINVAL, "token has no \"kmscrypt_version\"");
        if (!json_object_is_type(v, json_type_int))
                return kc_err_set(err, -EINVAL, "token member \"kmscrypt_version\" is not an integer");
        r = get_u32(o, "kmscrypt_version", 0, &version, err);
        if (r < 0)
                return r;
        if (version != KC_TOKEN_VERSION)
                return kc_err_set(err, -EPROTONOSUPPORT, "unsupported kmscrypt token version %u", version);
        t->version = version;

        r = check_members(o, err);
        if (r < 0)
                return r;

        if (!streq(json_object_get_string(json_object_object_get(o, "type")), KC_TOKEN_TYPE))
                return kc_err_set(err, -EINVAL, "token type is not \"" KC_TOKEN_TYPE "\"");
        if (json_object_array_length(json_object_object_get(o, "keyslots")) != 0)
                return kc_err_set(err, -EINVAL, "token keyslots must be empty");

        r = get_string(o, "provider", t->provider, sizeof(t->provider), provider_valid, err);
        if (r < 0)
                return r;
        r = get_string(o, "key_id", t->key_id, sizeof(t->key_id), key_id_valid, err);
        if (r < 0)
                return r;
        r = get_u32(o, "key_version", 1, &t->key_version, err);
        if (r < 0)
                return r;

        r = kc_context_from_json(json_object_object_get(o, "context"), &t->context, err);
        if (r < 0)
                return r;

        r = get_blob(o, "wrapped_key", &t->wrapped_key, &t->wrapped_key_len, err);
        if (r < 0)
                return r;
        r = get_key_check(o, t, err);
        if (r < 0)
                return r;
        v = json_object_object_get(o, "kmscrypt_reencrypt");
        return v ? parse_reencrypt(v, &t->reencrypt, err) : 0;
}

int kc_token_parse(const char *json, struct kc_token *ret, struct kc_err *err) {
        static const struct kc_json_parse utf8 = { .flags = JSON_TOKENER_VALIDATE_UTF8 };
        _cleanup_json_ struct json_object *o = NULL;
        struct kc_token t = {};
        struct kc_err why = {};
        size_t len;
        int r;

        if (!json || !ret)
                return -EINVAL;
        len = strnlen(json, KC_TOKEN_JSON_MAX + 1);
        if (len > KC_TOKEN_JSON_MAX)
                return kc_err_set(err, -E2BIG, "token JSON is larger than %d bytes", KC_TOKEN_JSON_MAX);

        r = kc_json_parse_object(json, len, &utf8, &o, &why);
        if (r == -EBADMSG)
                return kc_err_set(err, -EINVAL, "token is %s", why.msg);
        if (r < 0)
                return r;

        r = parse_object(o, &t, err);
        if (r < 0) {
                kc_token_clear(&t);
                return r;
        }
        *ret = t;
        return 0;
}

/* ---- format ---- */

static int reencrypt_to_json(const struct kc_token_reencrypt *re, struct json_object **ret) {
        _cleanup_json_ struct json_object *o = json_object_new_object();
        _cleanup_free_ char *pass = NULL, *key = NULL;
        int r;

        if (!o)
                return -ENOMEM;
        if ((r = b64_encode(re->wrapped_passphrase, re->wrapped_passphrase_len, &pass)) < 0 ||
            (r = b64_encode(re->wrapped_key, re->wrapped_key_len, &key)) < 0)
                return r;
        if ((r = kc_json_add(o, "wrapped_passphrase", json_object_new_string(pass))) < 0 ||
            (r = kc_json_add(o, "wrapped_key", json_object_new_string(key))) < 0 ||
            (r = kc_json_add(o, "key_version", json_object_new_int64(re->key_version))) < 0 ||
            (r = kc_json_add(o, "keyslot_old", json_object_new_int(re->keyslot_old))) < 0 ||
            (r = kc_json_add(o, "keyslot_new", json_object_new_int(re->keyslot_new))) < 0)
                return r;
        *ret = TAKE_PTR(o);
        return 0;
}

int kc_token_format(const struct kc_token *t, char **ret_json) {
        _cleanup_json_ struct json_object *o = NULL;
        _cleanup_json_ struct json_object *ctx = NULL, *re = NULL;
        _cleanup_free_ char *b64 = NULL, *check = NULL;
        const char *text;
        char *copy;
        int r;

        if (!t || !ret_json)
                return -EINVAL;
        r = token_validate(t, NULL);
        if (r < 0)
                return r;
        r = b64_encode(t->wrapped_key, t->wrapped_key_len, &b64);
        if (r < 0)
                return r;
        r = kc_context_to_json(t->context, &ctx);
        if (r < 0)
                return r;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        /* Members in the documented order, so a luksDump reads like docs/token.md. */
        if ((r = kc_json_add(o, "type", json_object_new_string(KC_TOKEN_TYPE))) < 0 ||
            (r = kc_json_add(o, "keyslots", json_object_new_array())) < 0 ||
            (r = kc_json_add(o, "kmscrypt_version", json_object_new_int64(t->version))) < 0 ||
            (r = kc_json_add(o, "provider", json_object_new_string(t->provider))) < 0 ||
            (r = kc_json_add(o, "key_id", json_object_new_string(t->key_id))) < 0 ||
            (r = kc_json_add(o, "key_version", json_object_new_int64(t->key_version))) < 0 ||
            (r = kc_json_add(o, "context", TAKE_PTR(ctx))) < 0 ||
            (r = kc_json_add(o, "wrapped_key", json_object_new_string(b64))) < 0)
                return r;
        if (t->has_key_check &&
            ((r = b64_encode(t->key_check, sizeof(t->key_check), &check)) < 0 ||
             (r = kc_json_add(o, "key_check", json_object_new_string(check))) < 0))
                return r;
        if (t->reencrypt && ((r = reencrypt_to_json(t->reencrypt, &re)) < 0 ||
                             (r = kc_json_add(o, "kmscrypt_reencrypt", TAKE_PTR(re))) < 0))
                return r;

        text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text)
                return -ENOMEM;
        if (strlen(text) > KC_TOKEN_JSON_MAX)
                return -E2BIG;
        copy = strdup(text);
        if (!copy)
                return -ENOMEM;
        *ret_json = copy;
        return 0;
}

int kc_token_key_ref(const struct kc_token *t, char **ret_ref) {
        char *ref;

        if (!t || !ret_ref || !provider_valid(t->provider) || !key_id_valid(t->key_id))
                return -EINVAL;
        if (asprintf(&ref, "%s:%s", t->provider, t->key_id) < 0)
                return -ENOMEM;
        *ret_ref = ref;
        return 0;
}
