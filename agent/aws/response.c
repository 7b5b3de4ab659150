/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <math.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "agent/aws/http.h"
#include "agent/aws/response.h"
#include "lib/json-util.h"
#include "lib/secret.h"
#include "lib/time-util.h"

/*
 * Every parsed body is dropped through _cleanup_json_wiped_: a refusal may
 * come before the Plaintext or a credential was taken out of it (a bad
 * CiphertextBlob, a bad KeyId), and json-c frees its strings without wiping
 * them.
 */

/* ---- JSON members ------------------------------------------------------------------------- */

/* The body as a JSON object, the tokener's buffer wiped (it may have held a Plaintext). */
static int parse_object(const char *what, const char *body, size_t len, struct json_object **ret,
                        struct kc_err *err) {
        struct kc_err e = {};
        int r = kc_http_json_parse(body, len, ret, &e);

        return r < 0 ? kc_err_set(err, r, "%s: %s", what, kc_err_msg(&e, r)) : 0;
}

/*
 * Member name of o as a string: -ENOENT only when it is absent; present
 * but null or of another type is -EBADMSG (a wrong shape, not an omission).
 * So is a string with a "\u0000" in it: C would see only the part before
 * it, a CiphertextBlob or KeyId cut short without a word.
 */
static int get_string(struct json_object *o, const char *name, const char **ret) {
        struct json_object *v;

        if (!json_object_object_get_ex(o, name, &v))
                return -ENOENT;
        if (!json_object_is_type(v, json_type_string) ||
            strlen(json_object_get_string(v)) != (size_t) json_object_get_string_len(v))
                return -EBADMSG;
        *ret = json_object_get_string(v);
        return 0;
}

/* Epoch seconds, a JSON number (KMS sends a fraction); 0 when absent. */
static int get_time(const char *what, struct json_object *o, const char *name, time_t *ret, struct kc_err *err) {
        struct json_object *v;
        double d;

        if (!json_object_object_get_ex(o, name, &v)) {
                *ret = 0;
                return 0;
        }
        if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
                return kc_err_set(err, -EBADMSG, "%s: %s is not a number", what, name);
        /* Checked before the cast: a double out of time_t's range makes the cast undefined. */
        d = json_object_get_double(v);
        if (!isfinite(d) || d < 0 || d > (double) KC_AWS_TIME_MAX)
                return kc_err_set(err, -EBADMSG, "%s: %s is not a date in 1970..9999", what, name);
        *ret = (time_t) d;
        return 0;
}

/* Every byte visible ASCII: what may go into an HTTP header or an ARN without quoting. */
static bool visible_ascii(const char *s) {
        if (!s[0])
                return false;
        for (; *s; s++)
                if ((unsigned char) *s <= 0x20 || (unsigned char) *s >= 0x7f)
                        return false;
        return true;
}

/*
 * The id part of a key ARN ("...:key/<id>"), or the whole string.  It goes
 * into tokens and audit records, so it is refused, not cut, when it is not
 * 1..64 characters of [A-Za-z0-9_-].  Absent: "" (KMS always sends it; a
 * missing one was never an error).
 */
static int take_key_id(const char *what, struct json_object *o, const char *name, const char *fallback,
                       char ret[KC_AWS_KEY_ID_MAX + 1], struct kc_err *err) {
        const char *arn = fallback, *id;
        int r = get_string(o, name, &arn);
        size_t n;

        if (r == -EBADMSG)
                return kc_err_set(err, r, "%s: %s is not a string", what, name);
        if (!arn) {
                ret[0] = '\0';
                return 0;
        }
        id = strstr(arn, ":key/");
        id = id ? id + 5 : arn;
        n = strlen(id);
        if (n == 0 || n > KC_AWS_KEY_ID_MAX)
                return kc_err_set(err, -EBADMSG, "%s: %s has a key id of %zu characters, not 1..%d", what, name,
                                  n, KC_AWS_KEY_ID_MAX);
        if (strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") != n)
                return kc_err_set(err, -EBADMSG, "%s: %s has a key id with characters other than "
                                  "letters, digits, '-' and '_'", what, name);
        memcpy(ret, id, n + 1);
        return 0;
}

/* ---- base64 ------------------------------------------------------------------------------- */

/*
 * Strict base64 (padded, no whitespace) of 1..max bytes into kc_secret
 * memory (secret) or malloc(); ret_len is the exact decoded length.  The
 * length bound is checked on the text, before anything is allocated.
 */
static int b64_decode(const char *in, size_t max, bool secret, void **ret, size_t *ret_len) {
        size_t n = strlen(in), pad, len;
        _cleanup_secret_ uint8_t *tmp = NULL;
        void *out;

        if (n == 0 || n % 4 != 0 || n / 4 * 3 > max + 2 ||
            strspn(in, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") != n)
                return -EBADMSG;
        pad = in[n - 1] == '=' ? (in[n - 2] == '=' ? 2 : 1) : 0;
        /* '=' only as the last one or two characters. */
        if (strcspn(in, "=") != n - pad)
                return -EBADMSG;
        len = n / 4 * 3 - pad;
        if (len == 0 || len > max)
                return -EBADMSG;
        /* Decoded in secret memory even when the result is not secret: one path for both. */
        tmp = kc_secret_alloc(n / 4 * 3);
        if (!tmp)
                return -ENOMEM;
        if (EVP_DecodeBlock(tmp, (const unsigned char *) in, (int) n) != (int) (n / 4 * 3))
                return -EBADMSG;
        out = secret ? kc_secret_memdup(tmp, len) : malloc(len);
        if (!out)
                return -ENOMEM;
        if (!secret)
                memcpy(out, tmp, len);
        *ret = out;
        *ret_len = len;
        return 0;
}

/* Plaintext of 1..max bytes into kc_secret memory; json-c's copy of the text is wiped by the take. */
static int take_plaintext(const char *what, struct json_object *o, size_t max, void **ret, size_t *ret_len,
                          struct kc_err *err) {
        _cleanup_secret_ char *b64 = NULL;
        int r = kc_http_json_take_secret(o, "Plaintext", &b64);

        if (r == -ENOMEM)
                return r;
        if (r == -ENOENT)
                return kc_err_set(err, -EBADMSG, "%s: response has no Plaintext string", what);
        if (r < 0)
                return kc_err_set(err, r, "%s: Plaintext holds a NUL character", what);
        r = b64_decode(b64, max, true, ret, ret_len);
        if (r == -EBADMSG)
                return kc_err_set(err, r, "%s: Plaintext is not base64 of 1..%zu bytes", what, max);
        return r;
}

/* ---- KMS operations ----------------------------------------------------------------------- */

int kc_aws_response_data_key(const char *operation, const char *body, size_t len, size_t nbytes,
                             struct kc_data_key *ret, struct kc_err *err) {
        _cleanup_json_wiped_ struct json_object *o = NULL;
        _cleanup_secret_ void *plaintext = NULL;
        _cleanup_free_ void *blob = NULL;
        char what[64], key_id[KC_AWS_KEY_ID_MAX + 1], source_key_id[KC_AWS_KEY_ID_MAX + 1] = "";
        const char *cb = NULL;
        size_t blob_len, plen = 0;
        int r;

        snprintf(what, sizeof(what), "AWS KMS %s", operation);
        if (nbytes > KC_AWS_MAX_DATA_KEY)
                return kc_err_set(err, -EINVAL, "%s: data key size %zu is over %d bytes", what, nbytes,
                                  KC_AWS_MAX_DATA_KEY);
        r = parse_object(what, body, len, &o, err);
        if (r < 0)
                return r;
        if (get_string(o, "CiphertextBlob", &cb) < 0)
                return kc_err_set(err, -EBADMSG, "%s: response has no CiphertextBlob string", what);
        r = b64_decode(cb, KC_AWS_MAX_CIPHERTEXT, false, &blob, &blob_len);
        if (r == -EBADMSG)
                return kc_err_set(err, r, "%s: CiphertextBlob is not base64 of 1..%d bytes", what,
                                  KC_AWS_MAX_CIPHERTEXT);
        if (r < 0)
                return r;
        if (nbytes > 0) {
                r = take_plaintext(what, o, KC_AWS_MAX_DATA_KEY, &plaintext, &plen, err);
                if (r < 0)
                        return r;
                if (plen != nbytes)
                        return kc_err_set(err, -EBADMSG, "%s: Plaintext has %zu bytes, not the %zu asked for",
                                          what, plen, nbytes);
        }
        r = take_key_id(what, o, "KeyId", NULL, key_id, err);
        /* The key that opened the blob, which the caller may have named by an alias: the audit names it. */
        if (r >= 0 && streq(operation, "ReEncrypt"))
                r = take_key_id(what, o, "SourceKeyId", NULL, source_key_id, err);
        if (r < 0)
                return r;
        *ret = (struct kc_data_key) { .plaintext = TAKE_PTR(plaintext), .blob = TAKE_PTR(blob), .blob_len = blob_len,
                                      .key_version = KC_AWS_KEY_VERSION,
                                      .source_key_version = source_key_id[0] ? KC_AWS_KEY_VERSION : 0 };
        memcpy(ret->key_id, key_id, sizeof(key_id));
        memcpy(ret->source_key_id, source_key_id, sizeof(source_key_id));
        return 0;
}

int kc_aws_response_decrypt(const char *body, size_t len, void **ret_plaintext, char ret_key_id[65],
                            struct kc_err *err) {
        _cleanup_json_wiped_ struct json_object *o = NULL;
        _cleanup_secret_ void *plaintext = NULL;
        char key_id[KC_AWS_KEY_ID_MAX + 1];
        size_t plen;
        int r = parse_object("AWS KMS Decrypt", body, len, &o, err);

        if (r >= 0)
                r = take_plaintext("AWS KMS Decrypt", o, KC_AWS_MAX_PLAINTEXT, &plaintext, &plen, err);
        if (r >= 0)
                r = take_key_id("AWS KMS Decrypt", o, "KeyId", NULL, key_id, err);
        if (r < 0)
                return r;
        *ret_plaintext = TAKE_PTR(plaintext);
        memcpy(ret_key_id, key_id, sizeof(key_id));
        return 0;
}

/*
 * -EBADMSG for a state AWS does not document (or none): taken for
 * "disabled", a state added later would suspend the volumes of a
 * revoke=suspend host; refused, the agent's check warns and tries again.
 */
static int key_state(const char *what, const char *name, enum kc_key_state *ret, struct kc_err *err) {
        /* Every KeyState AWS documents is a kc_key_state by its name (kms.h); Destroyed is the local keystore's. */
        for (enum kc_key_state s = KC_KEY_ENABLED; kc_key_state_to_string(s); s++)
                if (s != KC_KEY_DESTROYED && streq(name, kc_key_state_to_string(s))) {
                        *ret = s;
                        return 0;
                }
        if (!name[0])
                return kc_err_set(err, -EBADMSG, "%s: KeyMetadata has no KeyState", what);
        return kc_err_set(err, -EBADMSG, "%s: KeyState \"%.64s\" is not one this agent knows", what,
                          visible_ascii(name) ? name : "(not printable)");
}

/*
 * A description is free text shown by `kmscrypt key describe`: control
 * characters become '?' (no terminal escapes from the network), and a cut
 * never splits a UTF-8 sequence.
 */
static void copy_description(char *dst, size_t size, const char *src) {
        size_t n = 0;

        for (; src[n] && n + 1 < size; n++)
                dst[n] = (unsigned char) src[n] < 0x20 || src[n] == 0x7f ? '?' : src[n];
        /* Cut where the next byte continues a sequence: drop the sequence's first part, lead byte too. */
        if (((unsigned char) src[n] & 0xc0) == 0x80) {
                while (n > 0 && ((unsigned char) dst[n - 1] & 0xc0) == 0x80)
                        n--;
                if (n > 0)
                        n--;
        }
        dst[n] = '\0';
}

int kc_aws_response_describe_key(const char *body, size_t len, struct kc_key_info *ret, struct kc_err *err) {
        static const char what[] = "AWS KMS DescribeKey";
        _cleanup_json_wiped_ struct json_object *o = NULL;
        struct kc_key_info info = { .provider = "aws", .current_version = KC_AWS_KEY_VERSION };
        struct json_object *meta;
        const char *arn = NULL, *desc = "", *state = "";
        int r = parse_object(what, body, len, &o, err);

        if (r < 0)
                return r;
        if (!json_object_object_get_ex(o, "KeyMetadata", &meta) || !json_object_is_type(meta, json_type_object))
                return kc_err_set(err, -EBADMSG, "%s: response has no KeyMetadata object", what);
        if (get_string(meta, "Arn", &arn) < 0)
                return kc_err_set(err, -EBADMSG, "%s: KeyMetadata has no Arn string", what);
        /* It is shown and stored as "aws:<arn>": whole, or refused. */
        if (strncmp(arn, "arn:", 4) != 0 || !visible_ascii(arn) || strlen(arn) + 4 >= sizeof(info.arn))
                return kc_err_set(err, -EBADMSG, "%s: Arn is not an ARN of at most %zu printable characters", what,
                                  sizeof(info.arn) - 5);
        snprintf(info.arn, sizeof(info.arn), "aws:%s", arn);
        if (get_string(meta, "Description", &desc) == -EBADMSG || get_string(meta, "KeyState", &state) == -EBADMSG)
                return kc_err_set(err, -EBADMSG, "%s: Description or KeyState is not a string", what);
        copy_description(info.description, sizeof(info.description), desc);
        r = take_key_id(what, meta, "KeyId", arn, info.key_id, err);
        if (r >= 0)
                r = get_time(what, meta, "CreationDate", &info.created, err);
        if (r >= 0)
                r = get_time(what, meta, "DeletionDate", &info.deletion_date, err);
        if (r >= 0)
                r = key_state(what, state, &info.state, err);
        if (r < 0)
                return r;
        *ret = info;
        return 0;
}

int kc_aws_response_deletion_date(const char *body, size_t len, time_t *ret, struct kc_err *err) {
        _cleanup_json_wiped_ struct json_object *o = NULL;
        time_t t;
        int r = parse_object("AWS KMS ScheduleKeyDeletion", body, len, &o, err);

        if (r >= 0)
                r = get_time("AWS KMS ScheduleKeyDeletion", o, "DeletionDate", &t, err);
        if (r < 0)
                return r;
        *ret = t;
        return 0;
}

/* ---- credential endpoints ----------------------------------------------------------------- */

/*
 * A secret member that becomes part of an HTTP header (the access key id
 * in Authorization, the token as X-Amz-Security-Token): a newline in it
 * would add a header of the sender's choosing, so only visible ASCII.
 * -ENOENT when absent.
 */
static int take_header_secret(const char *what, struct json_object *o, const char *name, char **ret,
                              struct kc_err *err) {
        _cleanup_secret_ char *s = NULL;
        struct json_object *v;
        int r;

        if (!json_object_object_get_ex(o, name, &v))
                return -ENOENT;
        r = kc_http_json_take_secret(o, name, &s);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || !visible_ascii(s))
                return kc_err_set(err, -EBADMSG, "%s: %s is not a string of printable ASCII", what, name);
        *ret = TAKE_PTR(s);
        return 0;
}

static int take_expiration(const char *what, struct json_object *o, time_t *ret, struct kc_err *err) {
        const char *s = NULL;
        int r = get_string(o, "Expiration", &s);

        if (r == -ENOENT) {
                *ret = 0;   /* does not expire */
                return 0;
        }
        if (r < 0 || kc_aws_parse_time(s, ret) < 0)
                return kc_err_set(err, -EBADMSG, "%s: Expiration is not a date like 2024-05-01T12:00:00Z", what);
        return 0;
}

int kc_aws_response_credentials(const char *what, long status, const char *body, size_t len,
                                struct kc_aws_credentials *ret, struct kc_err *err) {
        _cleanup_json_wiped_ struct json_object *o = NULL;
        _cleanup_(kc_aws_credentials_clear) struct kc_aws_credentials c = {};
        struct json_object *v;
        char w[64];
        int r;

        snprintf(w, sizeof(w), "%s credentials", what);
        if (status != 200)
                return kc_err_set(err, -EACCES, "%s: HTTP %ld", w, status);
        r = parse_object(w, body, len, &o, err);
        if (r < 0)
                return r;
        /* IMDS says "Success"; the container endpoint sends no Code. */
        if (json_object_object_get_ex(o, "Code", &v) &&
            !(json_object_is_type(v, json_type_string) && streq(json_object_get_string(v), "Success")))
                return kc_err_set(err, -EACCES, "%s: Code is not Success", w);
        r = take_header_secret(w, o, "AccessKeyId", &c.access_key_id, err);
        if (r >= 0)
                r = take_header_secret(w, o, "SecretAccessKey", &c.secret_access_key, err);
        if (r == -ENOENT)
                return kc_err_set(err, -EBADMSG, "%s: AccessKeyId or SecretAccessKey missing", w);
        if (r >= 0)
                r = take_header_secret(w, o, "Token", &c.session_token, err);
        if (r == -ENOENT)
                r = 0;   /* long-term keys have no token */
        if (r >= 0)
                r = take_expiration(w, o, &c.expiration, err);
        if (r < 0)
                return r;
        *ret = c;
        c = (struct kc_aws_credentials) {};
        return 0;
}

/* The body without trailing whitespace (a newline ends most metadata answers), as one C string. */
static size_t trimmed_len(const char *body, size_t len) {
        while (len > 0 && strchr(" \t\r\n", body[len - 1]) && body[len - 1])
                len--;
        return len;
}

int kc_aws_response_imds_token(long status, const char *body, size_t len, char **ret, struct kc_err *err) {
        _cleanup_secret_ char *t = NULL;

        if (status != 200 || !body || len == 0)
                return kc_err_set(err, -EACCES, "instance metadata refused a session token (HTTP %ld)", status);
        len = trimmed_len(body, len);
        /* It is sent back as X-aws-ec2-metadata-token: a header value, so visible ASCII only. */
        if (len == 0 || len > 4096)
                return kc_err_set(err, -EBADMSG, "instance metadata: session token of %zu bytes", len);
        t = kc_secret_alloc(len + 1);
        if (!t)
                return -ENOMEM;
        memcpy(t, body, len);
        if (strlen(t) != len || !visible_ascii(t))
                return kc_err_set(err, -EBADMSG, "instance metadata: session token is not printable ASCII");
        *ret = TAKE_PTR(t);
        return 0;
}

int kc_aws_response_imds_role(long status, const char *body, size_t len, char **ret, struct kc_err *err) {
        const char *nl;
        char *role;
        size_t n;

        if (status != 200 || !body || len == 0)
                return kc_err_set(err, -ENOENT, "instance metadata: no IAM role attached (HTTP %ld)", status);
        /* The first line is the role name; it goes into the next URL, so a plain path segment. */
        nl = memchr(body, '\n', len);
        n = trimmed_len(body, nl ? (size_t) (nl - body) : len);
        while (n > 0 && strchr(" \t", body[0]) && body[0]) {
                body++;
                n--;
        }
        if (n == 0 || n > 128 || memchr(body, '\0', n))
                return kc_err_set(err, -EBADMSG, "instance metadata: bad role name");
        role = strndup(body, n);
        if (!role)
                return -ENOMEM;
        if (!visible_ascii(role) || strpbrk(role, "/?#%")) {
                free(role);
                return kc_err_set(err, -EBADMSG, "instance metadata: bad role name");
        }
        *ret = role;
        return 0;
}

/* ---- timestamps --------------------------------------------------------------------------- */

int kc_aws_parse_time(const char *s, time_t *ret) {
        const char *end;
        time_t t;
        int r;

        r = kc_time_parse_datetime(s, &t, &end);
        if (r < 0)
                return r;
        if (*end == '.') {          /* fractional seconds */
                if (end[1] < '0' || end[1] > '9')
                        return -EINVAL;
                for (end++; *end >= '0' && *end <= '9'; end++)
                        ;
        }
        if (!streq(end, "Z") && !streq(end, "+00:00"))
                return -EINVAL;
        *ret = t;
        return 0;
}

/* 1 + the index of the three letters at s in names (three letters each), 0 when not there. */
static int name_index(const char *s, const char *names) {
        for (int i = 0; names[3 * i]; i++)
                if (strncmp(s, names + 3 * i, 3) == 0)
                        return i + 1;
        return 0;
}

int kc_aws_parse_http_date(const char *s, time_t *ret) {
        struct kc_utc u = {};

        /* "Sun, 06 Nov 1994 08:49:37 GMT": fixed positions, English names whatever the locale. */
        if (!s || strlen(s) != 29 || !name_index(s, "MonTueWedThuFriSatSun") || s[3] != ',' || s[4] != ' ' ||
            s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || s[19] != ':' || s[22] != ':' || !streq(s + 25, " GMT") ||
            kc_time_digits(s + 5, 2, &u.day) < 0 || kc_time_digits(s + 12, 4, &u.year) < 0 ||
            kc_time_digits(s + 17, 2, &u.hour) < 0 || kc_time_digits(s + 20, 2, &u.minute) < 0 ||
            kc_time_digits(s + 23, 2, &u.second) < 0)
                return -EINVAL;
        u.month = name_index(s + 8, "JanFebMarAprMayJunJulAugSepOctNovDec");
        return kc_time_from_utc(&u, ret);
}
