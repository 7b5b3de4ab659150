/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/daemon/volumes.h"
#include "agent/kms.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "lib/fileio.h"
#include "lib/initrd.h"
#include "lib/strv.h"

#define VOLUMES_FILE_MAX (1024 * 1024)
/* The options field holds header=PATH, up to PATH_MAX, and the other options; paths are checked themselves. */
#define FIELD_MAX (2 * PATH_MAX)

/* ---- options: a table, each entry applies itself ---- */

struct vol_option {
        const char *name;
        bool value;                  /* takes "=VALUE" */
        unsigned flag;               /* crypttab-style flag options add this KC_CRYPT_* flag */
        int (*apply)(struct kc_volume_conf *v, const char *value, struct kc_err *err);
};

static int opt_read_only(struct kc_volume_conf *v, const char *value, struct kc_err *err) {
        v->read_only = true;
        return 0;
}
static int opt_initrd(struct kc_volume_conf *v, const char *value, struct kc_err *err) {
        v->initrd = true;
        return 0;
}
static int opt_nofail(struct kc_volume_conf *v, const char *value, struct kc_err *err) {
        v->nofail = true;
        return 0;
}
static int opt_netdev(struct kc_volume_conf *v, const char *value, struct kc_err *err) {
        v->netdev = true;
        return 0;
}

static int opt_timeout(struct kc_volume_conf *v, const char *value, struct kc_err *err) {
        unsigned long t;
        char *end;

        errno = 0;
        t = strtoul(value, &end, 10);
        if (!*value || *end || errno || value[0] == '-' || value[0] == '+' || t > 7 * 24 * 3600)
                return kc_err_set(err, -EINVAL, "timeout=%.32s is not a number of seconds up to a week", value);
        v->timeout = (unsigned) t;
        return 0;
}

static int opt_hotplug(struct kc_volume_conf *v, const char *value, struct kc_err *err) {
        if (streq(value, "yes"))
                v->hotplug = true;
        else if (streq(value, "no"))
                v->hotplug = false;
        else
                return kc_err_set(err, -EINVAL, "hotplug=%.32s: expected yes or no", value);
        return 0;
}

static int opt_header(struct kc_volume_conf *v, const char *value, struct kc_err *err) {
        int r = kc_path_check_length("header", value, err);

        if (r < 0)
                return r;
        if (value[0] != '/')
                return kc_err_set(err, -EINVAL, "header=%.64s is not an absolute path", value);
        free(v->header);
        v->header = strdup(value);
        return v->header ? 0 : -ENOMEM;
}

/* perf=no_read_workqueue+same_cpu_crypt or perf=none: replaces the default set. */
static int opt_perf(struct kc_volume_conf *v, const char *value, struct kc_err *err) {
        _cleanup_free_ char *list = strdup(value);
        unsigned flags;

        if (!list)
                return -ENOMEM;
        for (char *p = list; *p; p++)
                if (*p == '+')
                        *p = ',';
        if (kc_crypt_flags_parse(list, &flags) < 0)
                return kc_err_set(err, -EINVAL, "perf=%.64s names an unknown dm-crypt flag", value);
        v->flags = flags | (v->flags & KC_CRYPT_ALLOW_DISCARDS);
        return 0;
}

static bool valid_provider_name(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n >= 16)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
                        return false;
        return true;
}

/*
 * kms=aws+local: the KMS providers this volume may be unwrapped through.  A
 * token wrapped by another is refused, as a token bound to another context
 * is; and a volume whose providers are not all local waits for the network
 * at boot, as with _netdev.
 */
static int opt_kms(struct kc_volume_conf *v, const char *value, struct kc_err *err) {
        _cleanup_free_ char *list = strdup(value);
        _cleanup_strv_ char **names = NULL;
        char *save = NULL;
        int r;

        if (!list)
                return -ENOMEM;
        for (char *p = strtok_r(list, "+", &save); p; p = strtok_r(NULL, "+", &save)) {
                if (!valid_provider_name(p))
                        return kc_err_set(err, -EINVAL, "kms=: \"%.32s\" is not a provider name", p);
                /* A typo would make a volume no token can satisfy. */
                if (!kc_kms_provider_known(p))
                        return kc_err_set(err, -EINVAL, "kms=: no KMS provider \"%.32s\" in this build", p);
                r = kc_strv_push(&names, p);
                if (r < 0)
                        return r;
        }
        if (!names)
                return kc_err_set(err, -EINVAL, "kms= names no provider");
        kc_strv_free(v->kms);
        v->kms = TAKE_PTR(names);
        return 0;
}

static int opt_revoke(struct kc_volume_conf *v, const char *value, struct kc_err *err) {
        if (streq(value, "keep"))
                v->revoke = KC_REVOKE_KEEP;
        else if (streq(value, "suspend"))
                v->revoke = KC_REVOKE_SUSPEND;
        else
                return kc_err_set(err, -EINVAL, "revoke=%.32s: expected keep or suspend", value);
        return 0;
}

static const struct vol_option vol_options[] = {
        { .name = "read-only",              .apply = opt_read_only },
        { .name = "readonly",               .apply = opt_read_only },
        { .name = "nofail",                 .apply = opt_nofail },
        { .name = "_netdev",                .apply = opt_netdev },
        { .name = "x-initrd.attach",        .apply = opt_initrd },
        { .name = "discard",                .flag = KC_CRYPT_ALLOW_DISCARDS },
        { .name = "same-cpu-crypt",         .flag = KC_CRYPT_SAME_CPU_CRYPT },
        { .name = "submit-from-crypt-cpus", .flag = KC_CRYPT_SUBMIT_FROM_CRYPT_CPUS },
        { .name = "no-read-workqueue",      .flag = KC_CRYPT_NO_READ_WORKQUEUE },
        { .name = "no-write-workqueue",     .flag = KC_CRYPT_NO_WRITE_WORKQUEUE },
        { .name = "timeout",   .value = true, .apply = opt_timeout },
        { .name = "hotplug",   .value = true, .apply = opt_hotplug },
        { .name = "header",    .value = true, .apply = opt_header },
        { .name = "perf",      .value = true, .apply = opt_perf },
        { .name = "kms",       .value = true, .apply = opt_kms },
        { .name = "revoke",    .value = true, .apply = opt_revoke },
};

static int apply_option(struct kc_volume_conf *v, char *opt, struct kc_err *err) {
        char *value = strchr(opt, '=');

        if (value)
                *value++ = '\0';
        for (size_t i = 0; i < ARRAY_SIZE(vol_options); i++) {
                const struct vol_option *o = &vol_options[i];

                if (!streq(o->name, opt))
                        continue;
                if (o->value != !!value)
                        return kc_err_set(err, -EINVAL, o->value ? "option %s needs a value" :
                                          "option %s takes no value", opt);
                if (o->value && !*value)
                        return kc_err_set(err, -EINVAL, "option %s has an empty value", opt);
                if (o->flag) {
                        v->flags |= o->flag;
                        return 0;
                }
                return o->apply(v, value, err);
        }
        return kc_err_set(err, -EINVAL, "unknown option \"%.64s\"", opt);
}

static int parse_options(struct kc_volume_conf *v, char *text, struct kc_err *err) {
        char *save = NULL;
        int r;

        /*
         * Only the context unescapes (kmscrypt-volumes(5)): here "header=/a\ b"
         * would name a file with a backslash in it, and "\," would still split.
         */
        if (strchr(text, '\\'))
                return kc_err_set(err, -EINVAL, "options \"%.64s\" contain a backslash: "
                                  "only the context field takes escapes", text);
        if (text[0] == ',' || strstr(text, ",,") || (*text && text[strlen(text) - 1] == ','))
                return kc_err_set(err, -EINVAL, "empty option in \"%.64s\"", text);
        for (char *o = strtok_r(text, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
                r = apply_option(v, o, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- fields ---- */

/*
 * Split a line into blank-separated fields.  Backslash escapes are kept in
 * the field text (the context parser interprets them); they only stop a
 * blank from splitting.  -E2BIG beyond max fields.
 */
static int split_fields(const char *line, char **fields, size_t max, size_t *ret_n, struct kc_err *err) {
        size_t n = 0;
        const char *p = line;

        while (*p) {
                const char *start;

                p += strspn(p, " \t");
                if (!*p)
                        break;
                if (n == max)
                        return kc_err_set(err, -E2BIG, "more than %zu fields", max);
                start = p;
                while (*p && *p != ' ' && *p != '\t') {
                        if (*p == '\\') {
                                if (!p[1])
                                        return kc_err_set(err, -EINVAL, "backslash at end of line");
                                p++;
                        }
                        p++;
                }
                if ((size_t) (p - start) > FIELD_MAX)
                        return kc_err_set(err, -E2BIG, "field %zu is longer than %d bytes", n + 1, FIELD_MAX);
                fields[n] = strndup(start, (size_t) (p - start));
                if (!fields[n])
                        return -ENOMEM;
                n++;
        }
        *ret_n = n;
        return 0;
}

/* Mapping names: what dm and /dev/mapper take without surprises. */
static bool valid_volume_name(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > 127 || s[0] == '.' || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+@", s[i]))
                        return false;
        return true;
}

static int check_device(const char *dev, struct kc_err *err) {
        static const char *const tags[] = { "UUID=", "PARTUUID=", "LABEL=", "PARTLABEL=" };

        if (strchr(dev, '\\'))
                return kc_err_set(err, -EINVAL, "device \"%.64s\" contains a backslash", dev);
        if (dev[0] == '/')
                return kc_path_check_length("device", dev, err);
        for (size_t i = 0; i < ARRAY_SIZE(tags); i++)
                if (strncmp(dev, tags[i], strlen(tags[i])) == 0) {
                        if (!dev[strlen(tags[i])])
                                return kc_err_set(err, -EINVAL, "device %s has an empty value", tags[i]);
                        return 0;
                }
        return kc_err_set(err, -EINVAL, "device \"%.64s\" is neither an absolute path nor "
                          "UUID=, PARTUUID=, LABEL=, PARTLABEL=", dev);
}

static void volume_conf_clear(struct kc_volume_conf *v) {
        free(v->name);
        free(v->device);
        kc_context_free(v->context);
        free(v->header);
        kc_strv_free(v->kms);
        *v = (struct kc_volume_conf) {};
}

void kc_volumes_free(struct kc_volumes *v) {
        if (!v)
                return;
        for (size_t i = 0; i < v->n; i++)
                volume_conf_clear(&v->volumes[i]);
        free(v->volumes);
        free(v);
}

static int parse_line(char *line, unsigned lineno, struct kc_volume_conf *ret, struct kc_err *err) {
        char *f[4] = {};
        struct kc_volume_conf v = {
                .flags = KC_CRYPT_DEFAULT_FLAGS, .hotplug = true,
                .timeout = KC_VOLUME_DEFAULT_TIMEOUT, .line = lineno,
        };
        size_t n = 0;
        int r;

        r = split_fields(line, f, ARRAY_SIZE(f), &n, err);
        if (r >= 0 && n < 3)
                r = kc_err_set(err, -EINVAL, "expected: name device context [options]");
        if (r >= 0 && !valid_volume_name(f[0]))
                r = kc_err_set(err, -EINVAL, "invalid volume name \"%.64s\"", f[0]);
        if (r >= 0)
                r = check_device(f[1], err);
        if (r >= 0)
                r = kc_context_parse_kv(f[2], &v.context, err);
        if (r >= 0 && kc_context_count(v.context) == 0)
                r = kc_err_set(err, -EINVAL, "empty encryption context");
        if (r >= 0 && n == 4)
                r = parse_options(&v, f[3], err);
        if (r >= 0) {
                v.name = TAKE_PTR(f[0]);
                v.device = TAKE_PTR(f[1]);
                *ret = v;
        } else
                volume_conf_clear(&v);
        for (size_t i = 0; i < ARRAY_SIZE(f); i++)
                free(f[i]);
        return r;
}

static int check_unique(const struct kc_volumes *vs, const struct kc_volume_conf *v, struct kc_err *err) {
        for (size_t i = 0; i < vs->n; i++) {
                if (streq(vs->volumes[i].name, v->name))
                        return kc_err_set(err, -EEXIST, "volume %s is already defined on line %u",
                                          v->name, vs->volumes[i].line);
                if (streq(vs->volumes[i].device, v->device))
                        return kc_err_set(err, -EEXIST, "device %.64s is already volume %s (line %u)",
                                          v->device, vs->volumes[i].name, vs->volumes[i].line);
        }
        return 0;
}

static int add_volume(struct kc_volumes *vs, char *line, unsigned lineno, struct kc_err *err) {
        struct kc_volume_conf v, *n;
        int r;

        if (vs->n >= KC_VOLUMES_MAX)
                return kc_err_set(err, -E2BIG, "more than %d volumes", KC_VOLUMES_MAX);
        r = parse_line(line, lineno, &v, err);
        if (r < 0)
                return r;
        r = check_unique(vs, &v, err);
        if (r >= 0 && !(n = reallocarray(vs->volumes, vs->n + 1, sizeof(*n))))
                r = -ENOMEM;
        if (r < 0) {
                volume_conf_clear(&v);
                return r;
        }
        vs->volumes = n;
        vs->volumes[vs->n++] = v;
        return 0;
}

int kc_volumes_parse(const char *text, size_t len, const char *path, struct kc_volumes **ret, struct kc_err *err) {
        _cleanup_volumes_ struct kc_volumes *vs = calloc(1, sizeof(*vs));
        unsigned lineno = 0;
        size_t pos = 0;
        int r;

        if (!vs)
                return -ENOMEM;
        while (pos < len) {
                const char *nl = memchr(text + pos, '\n', len - pos);
                size_t n = nl ? (size_t) (nl - text - pos) : len - pos;
                /* Before strndup(), which would stop at it; per line, so that the message names the line. */
                bool nul = memchr(text + pos, '\0', n);
                _cleanup_free_ char *line = strndup(text + pos, n);
                struct kc_err e = {};
                char *s;

                pos += n + 1;
                lineno++;
                if (nul)
                        return kc_err_set(err, -EINVAL, "%s:%u: contains a NUL byte", path, lineno);
                if (!line)
                        return -ENOMEM;
                if (n > 0 && line[n - 1] == '\r')
                        line[n - 1] = '\0';
                s = line + strspn(line, " \t");
                if (!*s || *s == '#')
                        continue;
                r = add_volume(vs, s, lineno, &e);
                if (r < 0)
                        return kc_err_set(err, r, "%s:%u: %s", path, lineno, kc_err_msg(&e, r));
        }
        *ret = TAKE_PTR(vs);
        return 0;
}

int kc_volumes_load(const char *path, struct kc_volumes **ret, struct kc_err *err) {
        _cleanup_free_ char *buf = NULL;
        size_t len;
        int r;

        r = kc_read_small_file(path, VOLUMES_FILE_MAX, &buf, &len, err);
        if (r < 0)
                return r;
        r = kc_volumes_parse(buf, len, path, ret, err);
        if (r >= 0 && kc_in_initrd())
                kc_volumes_keep_initrd(*ret);
        return r;
}

void kc_volumes_keep_initrd(struct kc_volumes *v) {
        size_t k = 0;

        for (size_t i = 0; i < v->n; i++) {
                if (v->volumes[i].initrd)
                        v->volumes[k++] = v->volumes[i];
                else
                        volume_conf_clear(&v->volumes[i]);
        }
        v->n = k;
}

const struct kc_volume_conf *kc_volumes_find(const struct kc_volumes *v, const char *name) {
        for (size_t i = 0; v && i < v->n; i++)
                if (streq(v->volumes[i].name, name))
                        return &v->volumes[i];
        return NULL;
}

const char *kc_revoke_policy_to_string(enum kc_revoke_policy p) {
        return p == KC_REVOKE_SUSPEND ? "suspend" : "keep";
}

bool kc_volume_needs_network(const struct kc_volume_conf *v) {
        if (v->netdev)
                return true;
        for (size_t i = 0; v->kms && v->kms[i]; i++)
                if (!streq(v->kms[i], "local"))
                        return true;
        return false;
}
