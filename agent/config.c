/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>

#include "agent/config.h"
#include "lib/fileio.h"
#include "lib/log.h"

#ifndef KC_SYSCONFDIR
#define KC_SYSCONFDIR "/etc/kmscrypt"
#endif
#ifndef KC_STATEDIR
#define KC_STATEDIR "/var/lib/kmscrypt"
#endif

#define KC_CONFIG_FILE_MAX (1024 * 1024)

struct config_key {
        const char *name;
        const char *env;      /* environment variable, NULL if none */
        /* Parse value into c; from_file: paths must be absolute (the daemon's cwd is no anchor). */
        int (*parse)(struct kc_config *c, const struct config_key *k, const char *value,
                     bool from_file, struct kc_err *err);
        size_t offset;        /* of the field in struct kc_config */
};

static bool has_control(const char *s) {
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || *s == 0x7f)
                        return true;
        return false;
}

static int set_string(struct kc_config *c, const struct config_key *k, const char *value) {
        char **field = (char **) ((char *) c + k->offset);
        char *copy = strdup(value);

        if (!copy)
                return -ENOMEM;
        free(*field);
        *field = copy;
        return 0;
}

static int parse_path(struct kc_config *c, const struct config_key *k, const char *value,
                      bool from_file, struct kc_err *err) {
        if (strlen(value) >= PATH_MAX)
                return kc_err_set(err, -EINVAL, "%s: path too long", k->name);
        if (from_file && value[0] != '/')
                return kc_err_set(err, -EINVAL, "%s: path must be absolute: %s", k->name, value);
        return set_string(c, k, value);
}

static int parse_key_ref(struct kc_config *c, const struct config_key *k, const char *value,
                         bool from_file, struct kc_err *err) {
        if (strlen(value) > 300 || strpbrk(value, " \t"))
                return kc_err_set(err, -EINVAL, "%s: not a key reference: %s", k->name, value);
        return set_string(c, k, value);
}

/*
 * An endpoint URL as the AWS SDKs take it: scheme and host, optional port and
 * path.  Only the shape is checked here; the provider decides at open whether
 * plain http may be used (loopback only, with KMSCRYPT_AWS_ALLOW_HTTP=1).
 */
static int parse_endpoint(struct kc_config *c, const struct config_key *k, const char *value,
                          bool from_file, struct kc_err *err) {
        const char *host, *path;

        if (strncasecmp(value, "https://", 8) == 0)
                host = value + 8;
        else if (strncasecmp(value, "http://", 7) == 0)
                host = value + 7;
        else
                return kc_err_set(err, -EINVAL, "%s: expected an https:// or http:// URL, got \"%.128s\"",
                                  k->name, value);
        if (strlen(value) > 512)
                return kc_err_set(err, -EINVAL, "%s: URL longer than 512 bytes", k->name);
        if (host[0] == '\0' || host[0] == '/' || host[0] == ':')
                return kc_err_set(err, -EINVAL, "%s: URL has no host: %s", k->name, value);
        /* Credentials in the URL would be logged and sent; a query or fragment would break signing. */
        if (strpbrk(value, " \t@?#\\"))
                return kc_err_set(err, -EINVAL, "%s: URL may not hold blanks, '@', '?', '#' or '\\': %s",
                                  k->name, value);
        /* Requests are signed (SigV4) for the path "/": one under a path would be refused, each. */
        path = strchr(host, '/');
        if (path && !streq(path, "/"))
                return kc_err_set(err, -EINVAL, "%s: URL may not have a path (%s): requests are signed for \"/\": %s",
                                  k->name, path, value);
        return set_string(c, k, value);
}

/* "eu-west-1", "us-gov-east-1", "cn-north-1": a lower-case letter, then [a-z0-9-], at most 31. */
static int parse_region(struct kc_config *c, const struct config_key *k, const char *value,
                        bool from_file, struct kc_err *err) {
        size_t n = strlen(value);

        if (n > 31 || value[0] < 'a' || value[0] > 'z' || value[n - 1] == '-' ||
            strspn(value, "abcdefghijklmnopqrstuvwxyz0123456789-") != n)
                return kc_err_set(err, -EINVAL, "%s: not an AWS region name: \"%.40s\"", k->name, value);
        return set_string(c, k, value);
}

static int parse_uint(const char *value, unsigned min, unsigned max, unsigned *ret) {
        unsigned long v;
        char *end;

        if (value[0] < '0' || value[0] > '9')
                return -EINVAL;
        errno = 0;
        v = strtoul(value, &end, 10);
        if (errno != 0 || *end != '\0' || v < min || v > max)
                return -ERANGE;
        *ret = (unsigned) v;
        return 0;
}

static int parse_window(struct kc_config *c, const struct config_key *k, const char *value,
                        bool from_file, struct kc_err *err) {
        /* The waiting period AWS KMS allows: long enough to notice a mistake. */
        if (parse_uint(value, 7, 30, &c->deletion_window_days) < 0)
                return kc_err_set(err, -EINVAL, "%s: expected a number of days from 7 to 30, got \"%s\"",
                                  k->name, value);
        return 0;
}

static const struct {
        const char *name;
        int level;
} log_levels[] = {
        { "err", LOG_ERR },
        { "error", LOG_ERR },
        { "warning", LOG_WARNING },
        { "notice", LOG_NOTICE },
        { "info", LOG_INFO },
        { "debug", LOG_DEBUG },
};

int kc_config_log_level(const char *name) {
        for (size_t i = 0; i < ARRAY_SIZE(log_levels); i++)
                if (streq(name, log_levels[i].name))
                        return log_levels[i].level;
        return -EINVAL;
}

static int parse_log_level(struct kc_config *c, const struct config_key *k, const char *value,
                           bool from_file, struct kc_err *err) {
        int level = kc_config_log_level(value);

        if (level < 0)
                return kc_err_set(err, -EINVAL, "%s: expected " KC_CONFIG_LOG_LEVELS ", got \"%s\"", k->name, value);
        c->log_level = level;
        return 0;
}

static int parse_bool(const char *value) {
        static const char *const yes[] = { "yes", "true", "on", "1" };
        static const char *const no[] = { "no", "false", "off", "0" };

        for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
                if (streq(value, yes[i]))
                        return 1;
                if (streq(value, no[i]))
                        return 0;
        }
        return -EINVAL;
}

/* A boolean key: the bool field at k->offset. */
static int parse_flag(struct kc_config *c, const struct config_key *k, const char *value,
                      bool from_file, struct kc_err *err) {
        int b = parse_bool(value);

        if (b < 0)
                return kc_err_set(err, -EINVAL, "%s: expected yes or no, got \"%s\"", k->name, value);
        *(bool *) ((char *) c + k->offset) = b;
        return 0;
}

#define STR_FIELD(f) offsetof(struct kc_config, f)

static const struct config_key config_keys[] = {
        { "keystore", "KMSCRYPT_KEYSTORE", parse_path, STR_FIELD(keystore_dir) },
        { "root-key-file", "KMSCRYPT_ROOT_KEY_FILE", parse_path, STR_FIELD(root_key_file) },
        { "audit-log", "KMSCRYPT_AUDIT_LOG", parse_path, STR_FIELD(audit_log) },
        { "audit-head", "KMSCRYPT_AUDIT_HEAD", parse_path, STR_FIELD(audit_head) },
        { "default-key", NULL, parse_key_ref, STR_FIELD(default_key) },
        { "deletion-window-days", NULL, parse_window, 0 },
        { "log-level", NULL, parse_log_level, 0 },
        { "syslog", NULL, parse_flag, offsetof(struct kc_config, syslog) },
        { "initramfs-keystore", NULL, parse_flag, offsetof(struct kc_config, initramfs_keystore) },
        /* No env here: the aws provider puts the SDKs' variables above these (config.h). */
        { "aws-endpoint", NULL, parse_endpoint, STR_FIELD(aws_endpoint) },
        { "aws-region", NULL, parse_region, STR_FIELD(aws_region) },
        { "aws-ca-file", NULL, parse_path, STR_FIELD(aws_ca_file) },
};

static const struct config_key *find_key(const char *name) {
        for (size_t i = 0; i < ARRAY_SIZE(config_keys); i++)
                if (streq(config_keys[i].name, name))
                        return &config_keys[i];
        return NULL;
}

static int set_key(struct kc_config *c, const char *key, const char *value, bool from_file,
                   struct kc_err *err) {
        const struct config_key *k = find_key(key);

        if (!k)
                return kc_err_set(err, -ENOENT, "unknown key \"%s\"", key);
        if (value[0] == '\0')
                return kc_err_set(err, -EINVAL, "%s: empty value", key);
        if (has_control(value))
                return kc_err_set(err, -EINVAL, "%s: control character in value", key);
        return k->parse(c, k, value, from_file, err);
}

int kc_config_set(struct kc_config *c, const char *key, const char *value, struct kc_err *err) {
        return set_key(c, key, value, false, err);
}

int kc_config_init(struct kc_config *c) {
        *c = (struct kc_config) {
                .keystore_dir = strdup(KC_STATEDIR "/keystore"),
                .audit_log = strdup(KC_STATEDIR "/audit.log"),
                .deletion_window_days = 30,
                .log_level = LOG_INFO,
                .syslog = true,
        };
        if (!c->keystore_dir || !c->audit_log) {
                kc_config_done(c);
                return -ENOMEM;
        }
        return 0;
}

void kc_config_done(struct kc_config *c) {
        free(c->keystore_dir);
        free(c->root_key_file);
        free(c->audit_log);
        free(c->audit_head);
        free(c->default_key);
        free(c->source);
        free(c->aws_endpoint);
        free(c->aws_region);
        free(c->aws_ca_file);
        c->keystore_dir = c->root_key_file = c->audit_log = c->audit_head = NULL;
        c->default_key = c->source = NULL;
        c->aws_endpoint = c->aws_region = c->aws_ca_file = NULL;
}

static bool is_blank(char ch) {
        return ch == ' ' || ch == '\t' || ch == '\r';
}

/* Trim blanks in place; returns the start of the trimmed text. */
static char *trim(char *s) {
        char *end;

        while (is_blank(*s))
                s++;
        end = s + strlen(s);
        while (end > s && is_blank(end[-1]))
                *--end = '\0';
        return s;
}

/* One line, already NUL-terminated and without its newline. seen[] holds the line of each key. */
static int parse_line(struct kc_config *c, char *line, unsigned lineno, unsigned seen[],
                      const char *name, struct kc_err *err) {
        struct kc_err e = {};
        const struct config_key *k;
        char *eq, *key, *value;
        int r;

        line = trim(line);
        if (line[0] == '\0' || line[0] == '#')
                return 0;
        eq = strchr(line, '=');
        if (!eq)
                return kc_err_set(err, -EINVAL, "%s:%u: expected \"key = value\"", name, lineno);
        *eq = '\0';
        key = trim(line);
        value = trim(eq + 1);
        if (key[0] == '\0')
                return kc_err_set(err, -EINVAL, "%s:%u: missing key before '='", name, lineno);
        k = find_key(key);
        if (k && seen[k - config_keys])
                return kc_err_set(err, -EINVAL, "%s:%u: \"%s\" already set on line %u", name, lineno,
                                  key, seen[k - config_keys]);
        r = set_key(c, key, value, true, &e);
        if (r < 0)
                return kc_err_set(err, r == -ENOENT ? -EINVAL : r, "%s:%u: %s", name, lineno, e.msg);
        seen[k - config_keys] = lineno;
        return 0;
}

int kc_config_parse_text(struct kc_config *c, const char *text, size_t len, const char *name,
                         struct kc_err *err) {
        unsigned seen[ARRAY_SIZE(config_keys)] = {};
        char line[KC_CONFIG_LINE_MAX + 1];
        unsigned lineno = 0;
        size_t pos = 0;
        int r;

        while (pos < len) {
                const char *nl = memchr(text + pos, '\n', len - pos);
                size_t n = (nl ? (size_t) (nl - text) : len) - pos;

                lineno++;
                if (n > KC_CONFIG_LINE_MAX)
                        return kc_err_set(err, -EINVAL, "%s:%u: line longer than %d bytes", name, lineno,
                                          KC_CONFIG_LINE_MAX);
                /* Checked per line so that the message names it, as every other one does. */
                if (memchr(text + pos, '\0', n))
                        return kc_err_set(err, -EINVAL, "%s:%u: NUL byte in the line", name, lineno);
                memcpy(line, text + pos, n);
                line[n] = '\0';
                r = parse_line(c, line, lineno, seen, name, err);
                if (r < 0)
                        return r;
                pos += n + 1;
        }
        return 0;
}

int kc_config_parse_file(struct kc_config *c, const char *path, struct kc_err *err) {
        _cleanup_free_ char *buf = NULL;
        size_t len;
        char *copy;
        int r;

        r = kc_read_small_file(path, KC_CONFIG_FILE_MAX, &buf, &len, err);
        if (r < 0)
                return r;
        r = kc_config_parse_text(c, buf, len, path, err);
        if (r < 0)
                return r;
        copy = strdup(path);
        if (!copy)
                return -ENOMEM;
        free(c->source);
        c->source = copy;
        return 0;
}

static int apply_environment(struct kc_config *c, struct kc_err *err) {
        for (size_t i = 0; i < ARRAY_SIZE(config_keys); i++) {
                const char *v = config_keys[i].env ? getenv(config_keys[i].env) : NULL;
                struct kc_err e = {};
                int r;

                if (!v || v[0] == '\0')  /* an empty variable counts as unset, as in most tools */
                        continue;
                r = set_key(c, config_keys[i].name, v, false, &e);
                if (r < 0)
                        return kc_err_set(err, r, "%s: %s", config_keys[i].env, e.msg);
        }
        return 0;
}

static int apply_overrides(struct kc_config *c, const struct kc_config_overrides *o, struct kc_err *err) {
        const struct {
                const char *option, *key, *value;
        } map[] = {
                { "--keystore", "keystore", o->keystore_dir },
                { "--root-key-file", "root-key-file", o->root_key_file },
                { "--audit-log", "audit-log", o->audit_log },
        };

        for (size_t i = 0; i < ARRAY_SIZE(map); i++) {
                struct kc_err e = {};
                int r;

                if (!map[i].value)
                        continue;
                r = set_key(c, map[i].key, map[i].value, false, &e);
                if (r < 0)
                        return kc_err_set(err, r, "%s: %s", map[i].option, e.msg);
        }
        return 0;
}

const char *kc_config_file_named(const struct kc_config_overrides *overrides) {
        const char *env = getenv("KMSCRYPT_CONFIG");

        if (overrides && overrides->config_file)
                return overrides->config_file;
        return env && env[0] ? env : NULL;
}

int kc_config_load(const struct kc_config_overrides *overrides, struct kc_config *ret,
                   struct kc_err *err) {
        const struct kc_config_overrides none = {};
        const char *path = kc_config_file_named(overrides);
        struct kc_config c;
        bool explicit = path;
        int r;

        if (!overrides)
                overrides = &none;
        if (!path)
                path = KC_SYSCONFDIR "/kmscrypt.conf";

        r = kc_config_init(&c);
        if (r < 0)
                return r;
        r = kc_config_parse_file(&c, path, err);
        /* Only the default file may be absent: a file that was named must be read. */
        if (r == -ENOENT && !explicit) {
                if (err)
                        *err = (struct kc_err) {};
                r = 0;
        }
        if (r >= 0)
                r = apply_environment(&c, err);
        if (r >= 0)
                r = apply_overrides(&c, overrides, err);
        if (r < 0) {
                kc_config_done(&c);
                return r;
        }
        *ret = c;
        return 0;
}

void kc_config_kms(const struct kc_config *c, struct kc_kms_config *ret) {
        *ret = (struct kc_kms_config) {
                .keystore_dir = c->keystore_dir,
                .root_key_file = c->root_key_file,
                .audit_log = c->audit_log,
                .audit_head = c->audit_head,
                .aws_endpoint = c->aws_endpoint,
                .aws_region = c->aws_region,
                .aws_ca_file = c->aws_ca_file,
        };
}
