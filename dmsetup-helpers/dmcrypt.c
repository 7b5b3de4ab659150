/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The pure half of dmsetup-helpers: the dm-crypt table line, the crypt
 * option flags and the dm UUID, all built from validated fields.
 *
 * The table format is the kernel's (Documentation/admin-guide/
 * device-mapper/dm-crypt.rst):
 *
 *     <cipher> <key> <iv_offset> <device> <offset> [<#opt> <opt>...]
 *
 * with <key> always a keyring reference ":<bytes>:logon:<description>",
 * and the optional parameters in the order cryptsetup writes them, so a
 * mapping made here reads back exactly like one made by cryptsetup.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "dmsetup-helpers/dmcrypt.h"
#include "lib/log.h"

#define SECTOR_SIZE 512u
#define KEY_SIZE_MAX 1024u        /* bytes; far above any real cipher */
#define CIPHER_SPEC_MAX 128u
#define KEY_DESC_MAX 4095u        /* the kernel's key description limit, without NUL */
#define DEVICE_PATH_MAX 4095u
#define DM_NAME_MAX 127u          /* DM_NAME_LEN - 1 */
#define DM_UUID_MAX 128u          /* DM_UUID_LEN - 1 */
#define DEV_MAJOR_MAX 0xfffu      /* MKDEV() limits the kernel checks */
#define DEV_MINOR_MAX 0xfffffu
#define KEYCOUNT_MAX 64u          /* loop-AES multi-key mode uses 64 */
#define TCW_EXTRA_KEY 32u         /* tcw: IV seed (16) + whitening (16) */

/* Kernel table order, which is also cryptsetup's order of optional parameters. */
static const struct crypt_flag_name {
        unsigned flag;
        const char *name;
} crypt_flag_names[] = {
        { .flag = KC_CRYPT_ALLOW_DISCARDS,         .name = "allow_discards" },
        { .flag = KC_CRYPT_SAME_CPU_CRYPT,         .name = "same_cpu_crypt" },
        { .flag = KC_CRYPT_SUBMIT_FROM_CRYPT_CPUS, .name = "submit_from_crypt_cpus" },
        { .flag = KC_CRYPT_NO_READ_WORKQUEUE,      .name = "no_read_workqueue" },
        { .flag = KC_CRYPT_NO_WRITE_WORKQUEUE,     .name = "no_write_workqueue" },
        { .flag = KC_CRYPT_IV_LARGE_SECTORS,       .name = "iv_large_sectors" },
};

static unsigned crypt_flags_known(void) {
        unsigned all = 0;
        for (size_t i = 0; i < ARRAY_SIZE(crypt_flag_names); i++)
                all |= crypt_flag_names[i].flag;
        return all;
}

/* IV generators dm-crypt knows; essiv and elephant need a hash as ivopts. */
enum iv_key { IV_KEY_NONE, IV_KEY_LMK, IV_KEY_TCW, IV_KEY_ELEPHANT };

static const struct ivmode {
        const char *name;
        bool needs_opts;
        enum iv_key key;  /* how the IV generator changes the key length */
} ivmodes[] = {
        { .name = "plain" },
        { .name = "plain64" },
        { .name = "plain64be" },
        { .name = "essiv",    .needs_opts = true },
        { .name = "benbi" },
        { .name = "null" },
        { .name = "eboiv" },
        { .name = "lmk",      .key = IV_KEY_LMK },
        { .name = "tcw",      .key = IV_KEY_TCW },
        { .name = "random" },
        { .name = "elephant", .needs_opts = true, .key = IV_KEY_ELEPHANT },
};

/* Block ciphers whose key lengths we know; others get only the range check. */
static const struct block_cipher {
        const char *name;
        unsigned key_sizes[3];
} block_ciphers[] = {
        { .name = "aes",      .key_sizes = { 16, 24, 32 } },
        { .name = "serpent",  .key_sizes = { 16, 24, 32 } },
        { .name = "twofish",  .key_sizes = { 16, 24, 32 } },
        { .name = "camellia", .key_sizes = { 16, 24, 32 } },
        { .name = "aria",     .key_sizes = { 16, 24, 32 } },
        { .name = "sm4",      .key_sizes = { 16 } },
};

/*
 * Chain modes: key = multiplier * cipher key + extra (xts: two keys; lrw: a
 * tweak key).  XTS is specified (IEEE 1619, NIST SP 800-38E) for 128- and
 * 256-bit cipher keys only, so aes-xts takes 32 or 64 bytes, never 48.
 */
static const struct chain_mode {
        const char *name;
        unsigned multiplier, extra;
        bool no_192;
} chain_modes[] = {
        { .name = "xts",  .multiplier = 2, .no_192 = true },
        { .name = "lrw",  .multiplier = 1, .extra = 16 },
        { .name = "cbc",  .multiplier = 1 },
        { .name = "ecb",  .multiplier = 1 },
        { .name = "ctr",  .multiplier = 1 },
        { .name = "cts",  .multiplier = 1 },
        { .name = "pcbc", .multiplier = 1 },
};

struct cipher_spec {
        char cipher[CIPHER_SPEC_MAX + 1];  /* block cipher, "" when not recognisable */
        char mode[CIPHER_SPEC_MAX + 1];    /* chain mode, "" when not recognisable */
        unsigned keycount;
        const struct ivmode *iv;           /* NULL only for "<cipher>-ecb" */
};

/* Characters the kernel's dm_split_args() takes literally: printable ASCII, no
 * space, no backslash (its escape).  Bytes >= 0x80 are refused too, because the
 * kernel's isspace() counts 0xa0, a common UTF-8 continuation byte, as space. */
static bool table_char_ok(char c) {
        return c > ' ' && c < 0x7f && c != '\\';
}

static bool in_charset(const char *s, size_t n, const char *extra) {
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                      (extra && c && strchr(extra, c))))
                        return false;
        }
        return true;
}

/* A crypto API name component: [a-z0-9_]+. */
static bool name_ok(const char *s, size_t n) {
        return n > 0 && in_charset(s, n, NULL);
}

static const struct ivmode *ivmode_find(const char *s, size_t n) {
        for (size_t i = 0; i < ARRAY_SIZE(ivmodes); i++)
                if (strlen(ivmodes[i].name) == n && strncmp(ivmodes[i].name, s, n) == 0)
                        return &ivmodes[i];
        return NULL;
}

/* "ivmode[:ivopts]" of length n. */
static int parse_iv(const char *s, size_t n, struct cipher_spec *c) {
        const char *colon = memchr(s, ':', n);
        size_t mode_len = colon ? (size_t) (colon - s) : n;

        c->iv = ivmode_find(s, mode_len);
        if (!c->iv)
                return log_debug_errno(-EINVAL, "Unknown IV mode \"%.*s\".", (int) mode_len, s);
        if (colon) {
                const char *opts = colon + 1;
                size_t opts_len = n - mode_len - 1;
                if (!c->iv->needs_opts)
                        return log_debug_errno(-EINVAL, "IV mode %s takes no options.", c->iv->name);
                if (opts_len == 0 || !in_charset(opts, opts_len, "-(),"))
                        return log_debug_errno(-EINVAL, "Invalid IV options for %s.", c->iv->name);
        } else if (c->iv->needs_opts)
                return log_debug_errno(-EINVAL, "IV mode %s needs a hash, e.g. %s:sha256.",
                                       c->iv->name, c->iv->name);
        return 0;
}

static void copy_part(char *dst, const char *src, size_t n) {
        memcpy(dst, src, n);
        dst[n] = '\0';
}

/* cipher[:keycount]-chainmode-ivmode[:ivopts], or <cipher>-ecb (the kernel needs no IV for ecb). */
static int parse_cipher_legacy(const char *s, struct cipher_spec *c) {
        const char *dash1 = strchr(s, '-'), *dash2, *colon, *mode;
        size_t mode_len;

        if (!dash1)
                return log_debug_errno(-EINVAL, "Cipher \"%s\" lacks a chain mode.", s);
        colon = memchr(s, ':', dash1 - s);
        if (!name_ok(s, (colon ?: dash1) - s))
                return log_debug_errno(-EINVAL, "Invalid cipher name in \"%s\".", s);
        copy_part(c->cipher, s, (colon ?: dash1) - s);

        c->keycount = 1;
        if (colon) {
                size_t n = dash1 - colon - 1;
                unsigned long k = 0;
                if (n == 0 || n > 2 || colon[1] == '0')
                        return log_debug_errno(-EINVAL, "Invalid key count in \"%s\".", s);
                for (size_t i = 0; i < n; i++) {
                        if (colon[1 + i] < '0' || colon[1 + i] > '9')
                                return log_debug_errno(-EINVAL, "Invalid key count in \"%s\".", s);
                        k = k * 10 + (unsigned long) (colon[1 + i] - '0');
                }
                if (k > KEYCOUNT_MAX || (k & (k - 1)) != 0)
                        return log_debug_errno(-EINVAL, "Key count in \"%s\" is not a power of two up to %u.",
                                               s, KEYCOUNT_MAX);
                c->keycount = (unsigned) k;
        }

        mode = dash1 + 1;
        dash2 = strchr(mode, '-');
        mode_len = dash2 ? (size_t) (dash2 - mode) : strlen(mode);
        if (!name_ok(mode, mode_len))
                return log_debug_errno(-EINVAL, "Invalid chain mode in \"%s\".", s);
        copy_part(c->mode, mode, mode_len);

        if (!dash2) {
                if (!streq(c->mode, "ecb"))
                        return log_debug_errno(-EINVAL, "Cipher \"%s\" lacks an IV mode.", s);
                c->iv = NULL;
                return 0;
        }
        return parse_iv(dash2 + 1, strlen(dash2 + 1), c);
}

/* Parentheses balanced and never closing below zero. */
static bool parens_balanced(const char *s, size_t n) {
        int depth = 0;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '(')
                        depth++;
                else if (s[i] == ')' && --depth < 0)
                        return false;
        }
        return depth == 0;
}

/*
 * capi:<crypto API spec>-ivmode[:ivopts].  Like the kernel, take ivopts after
 * the last ':' and the IV mode after the last '-'.  A spec of the simple form
 * mode(cipher) also gets the key length check.
 */
static int parse_cipher_capi(const char *s, struct cipher_spec *c) {
        const char *api = s + strlen("capi:"), *colon, *dash, *open;
        size_t end = strlen(api), api_len;
        int r;

        colon = memrchr(api, ':', end);
        dash = memrchr(api, '-', colon ? (size_t) (colon - api) : end);
        if (!dash)
                return log_debug_errno(-EINVAL, "Cipher \"%s\" lacks an IV mode.", s);
        api_len = dash - api;
        if (api_len == 0 || !in_charset(api, api_len, "(),-") || !parens_balanced(api, api_len))
                return log_debug_errno(-EINVAL, "Invalid crypto API spec in \"%s\".", s);

        r = parse_iv(dash + 1, end - api_len - 1, c);
        if (r < 0)
                return r;
        /* The kernel runs lmk in the capi form with 64 keys, as loop-AES does. */
        c->keycount = c->iv->key == IV_KEY_LMK ? 64 : 1;

        open = memchr(api, '(', api_len);
        if (open && api[api_len - 1] == ')' && name_ok(api, open - api) &&
            name_ok(open + 1, api_len - (open - api) - 2)) {
                copy_part(c->mode, api, open - api);
                copy_part(c->cipher, open + 1, api_len - (open - api) - 2);
        }
        return 0;
}

static int parse_cipher(const char *s, struct cipher_spec *ret) {
        struct cipher_spec c = {};
        int r;

        if (!s || !*s)
                return log_debug_errno(-EINVAL, "No cipher given.");
        if (strlen(s) > CIPHER_SPEC_MAX)
                return log_debug_errno(-EINVAL, "Cipher specification longer than %u characters.",
                                       CIPHER_SPEC_MAX);
        for (const char *p = s; *p; p++)
                if (!table_char_ok(*p))
                        return log_debug_errno(-EINVAL, "Cipher specification has an invalid character.");

        /*
         * Anywhere in the spec: the kernel also finds a cipher by its driver
         * name, so "capi:ecb-cipher_null-plain" (no parentheses, no cipher
         * parsed out of it) is the null cipher too.
         */
        if (strstr(s, "cipher_null"))
                return log_debug_errno(-EINVAL, "cipher_null does not encrypt; refused.");
        r = strncmp(s, "capi:", 5) == 0 ? parse_cipher_capi(s, &c) : parse_cipher_legacy(s, &c);
        if (r < 0)
                return r;
        *ret = c;
        return 0;
}

static const struct block_cipher *block_cipher_find(const char *name) {
        for (size_t i = 0; i < ARRAY_SIZE(block_ciphers); i++)
                if (streq(block_ciphers[i].name, name))
                        return &block_ciphers[i];
        return NULL;
}

static const struct chain_mode *chain_mode_find(const char *name) {
        for (size_t i = 0; i < ARRAY_SIZE(chain_modes); i++)
                if (streq(chain_modes[i].name, name))
                        return &chain_modes[i];
        return NULL;
}

/* Whether key_size fits the cipher, following how dm-crypt splits the key into parts. */
static bool key_size_fits(const struct cipher_spec *c, size_t key_size) {
        const struct block_cipher *bc = block_cipher_find(c->cipher);
        const struct chain_mode *cm = chain_mode_find(c->mode);
        enum iv_key ivk = c->iv ? c->iv->key : IV_KEY_NONE;

        if (!bc || !cm)
                return true; /* not a combination we know: the range check is all we can do */

        for (size_t i = 0; i < ARRAY_SIZE(bc->key_sizes) && bc->key_sizes[i]; i++) {
                size_t part = cm->multiplier * bc->key_sizes[i] + cm->extra;
                size_t keys = c->keycount * part;

                if (cm->no_192 && bc->key_sizes[i] == 24)
                        continue;

                if (key_size == keys && ivk != IV_KEY_TCW && ivk != IV_KEY_ELEPHANT)
                        return true;
                if (ivk == IV_KEY_LMK && key_size == keys + part)   /* extra seed key part */
                        return true;
                if (ivk == IV_KEY_TCW && key_size == keys + TCW_EXTRA_KEY)
                        return true;
                if (ivk == IV_KEY_ELEPHANT && key_size == 2 * keys) /* cbc key + elephant key */
                        return true;
        }
        return false;
}

static int validate_key(const struct cipher_spec *c, const char *cipher, size_t key_size) {
        if (key_size == 0 || key_size > KEY_SIZE_MAX)
                return log_debug_errno(-EINVAL, "Key size %zu out of range 1..%u bytes.", key_size, KEY_SIZE_MAX);
        if (!key_size_fits(c, key_size))
                return log_debug_errno(-EINVAL, "Key size %zu bytes does not fit cipher %s.", key_size, cipher);
        return 0;
}

/* logon keys need "prefix:rest"; the description is one table word. */
static int validate_key_description(const char *d) {
        const char *colon;
        size_t n;

        if (!d)
                return log_debug_errno(-EINVAL, "No key description given.");
        n = strlen(d);
        if (n == 0 || n > KEY_DESC_MAX)
                return log_debug_errno(-EINVAL, "Key description length %zu out of range.", n);
        for (size_t i = 0; i < n; i++)
                if (!table_char_ok(d[i]))
                        return log_debug_errno(-EINVAL, "Key description has an invalid character at %zu.", i);
        colon = strchr(d, ':');
        if (!colon || colon == d || colon[1] == '\0')
                return log_debug_errno(-EINVAL, "Key description \"%s\" is not of the form prefix:rest.", d);
        return 0;
}

/* Decimal number of at most max, digits only (no sign, no spaces). */
static bool parse_dev_number(const char *s, size_t n, unsigned max, unsigned *ret) {
        unsigned long v = 0;

        if (n == 0 || n > 7)
                return false;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (unsigned long) (s[i] - '0');
        }
        if (v > max)
                return false;
        *ret = (unsigned) v;
        return true;
}

/* Absolute path (one table word), or major:minor within the kernel's dev_t.  The
 * latter is written back normalised; ret_devno gets "" for a path. */
static int validate_device(const char *dev, char ret_devno[static 24]) {
        const char *colon;
        unsigned major, minor;
        size_t n;

        if (!dev || !*dev)
                return log_debug_errno(-EINVAL, "No backing device given.");
        n = strlen(dev);
        if (dev[0] == '/') {
                if (n < 2 || n > DEVICE_PATH_MAX)
                        return log_debug_errno(-EINVAL, "Device path length %zu out of range.", n);
                for (size_t i = 0; i < n; i++)
                        if (!table_char_ok(dev[i]))
                                return log_debug_errno(-EINVAL, "Device path has an invalid character at %zu.", i);
                ret_devno[0] = '\0';
                return 0;
        }
        colon = strchr(dev, ':');
        if (!colon || !parse_dev_number(dev, colon - dev, DEV_MAJOR_MAX, &major) ||
            !parse_dev_number(colon + 1, strlen(colon + 1), DEV_MINOR_MAX, &minor))
                return log_debug_errno(-EINVAL, "Device \"%s\" is neither an absolute path nor major:minor.", dev);
        snprintf(ret_devno, 24, "%u:%u", major, minor);
        return 0;
}

bool kc_crypt_sector_size_valid(uint64_t bytes) {
        return bytes >= 512 && bytes <= 4096 && (bytes & (bytes - 1)) == 0;
}

static int validate_geometry(const struct kc_crypt_params *p) {
        uint64_t unit;

        if (!kc_crypt_sector_size_valid(p->sector_size))
                return log_debug_errno(-EINVAL, "Sector size %" PRIu32 " is not 512, 1024, 2048 or 4096.",
                                       p->sector_size);
        unit = p->sector_size / SECTOR_SIZE;
        if (p->size == 0 || p->size % unit != 0)
                return log_debug_errno(-EINVAL, "Size %" PRIu64 " is zero or not a multiple of %" PRIu64 " sectors.",
                                       p->size, unit);
        /* The kernel refuses an IV offset that does not start an encryption sector. */
        if (p->iv_offset % unit != 0)
                return log_debug_errno(-EINVAL, "IV offset %" PRIu64 " is not a multiple of %" PRIu64 " sectors.",
                                       p->iv_offset, unit);
        /* The last byte must be addressable, and IVs must not wrap: a wrap reuses IVs. */
        if (p->size > (UINT64_MAX >> 9) || p->offset > (UINT64_MAX >> 9) - p->size)
                return log_debug_errno(-EINVAL, "Offset %" PRIu64 " plus size %" PRIu64 " overflows.", p->offset, p->size);
        if (p->iv_offset > UINT64_MAX - p->size)
                return log_debug_errno(-EINVAL, "IV offset %" PRIu64 " plus size %" PRIu64 " overflows.",
                                       p->iv_offset, p->size);
        return 0;
}

static int validate_flags(unsigned flags, uint32_t sector_size) {
        if (flags & ~crypt_flags_known())
                return log_debug_errno(-EINVAL, "Unknown crypt flag bits 0x%x.", flags & ~crypt_flags_known());
        if ((flags & KC_CRYPT_IV_LARGE_SECTORS) && sector_size == SECTOR_SIZE)
                return log_debug_errno(-EINVAL, "iv_large_sectors needs a sector size above 512.");
        return 0;
}

/* " <#opts> <opts...>" in cryptsetup's order, or "" when there are none. */
static void format_optional(unsigned flags, uint32_t sector_size, char *buf, size_t size) {
        char words[256] = "";
        unsigned n = 0;
        size_t len = 0;

        for (size_t i = 0; i < ARRAY_SIZE(crypt_flag_names); i++)
                if (flags & crypt_flag_names[i].flag) {
                        len += snprintf(words + len, sizeof(words) - len, " %s", crypt_flag_names[i].name);
                        n++;
                }
        if (sector_size != SECTOR_SIZE) {
                snprintf(words + len, sizeof(words) - len, " sector_size:%" PRIu32, sector_size);
                n++;
        }
        if (n == 0)
                buf[0] = '\0';
        else
                snprintf(buf, size, " %u%s", n, words);
}

int kc_crypt_table_build(const struct kc_crypt_params *p, char **ret_params) {
        struct cipher_spec c;
        char devno[24], optional[320];
        char *params;
        int r;

        if (!p || !ret_params)
                return -EINVAL;
        r = parse_cipher(p->cipher, &c);
        if (r < 0)
                return r;
        r = validate_key(&c, p->cipher, p->key_size);
        if (r < 0)
                return r;
        r = validate_key_description(p->key_description);
        if (r < 0)
                return r;
        r = validate_device(p->device, devno);
        if (r < 0)
                return r;
        r = validate_geometry(p);
        if (r < 0)
                return r;
        r = validate_flags(p->flags, p->sector_size);
        if (r < 0)
                return r;

        format_optional(p->flags, p->sector_size, optional, sizeof(optional));
        if (asprintf(&params, "%s :%zu:logon:%s %" PRIu64 " %s %" PRIu64 "%s",
                     p->cipher, p->key_size, p->key_description, p->iv_offset,
                     devno[0] ? devno : p->device, p->offset, optional) < 0)
                return -ENOMEM;
        *ret_params = params;
        return 0;
}

static const struct crypt_flag_name *crypt_flag_find(const char *s, size_t n) {
        for (size_t i = 0; i < ARRAY_SIZE(crypt_flag_names); i++)
                if (strlen(crypt_flag_names[i].name) == n && strncmp(crypt_flag_names[i].name, s, n) == 0)
                        return &crypt_flag_names[i];
        return NULL;
}

int kc_crypt_flags_parse(const char *list, unsigned *ret_flags) {
        unsigned flags = 0;

        if (!list || !ret_flags)
                return -EINVAL;
        if (streq(list, "") || streq(list, "none")) {
                *ret_flags = 0;
                return 0;
        }
        for (const char *p = list;;) {
                size_t n = strcspn(p, ",");
                const struct crypt_flag_name *f = crypt_flag_find(p, n);

                if (!f)
                        return log_debug_errno(-EINVAL, "Unknown crypt flag \"%.*s\".", (int) n, p);
                flags |= f->flag; /* a repeated name is harmless */
                if (p[n] == '\0')
                        break;
                p += n + 1;
        }
        *ret_flags = flags;
        return 0;
}

int kc_crypt_flags_format(unsigned flags, char **ret_list) {
        char buf[256] = "";
        size_t len = 0;
        char *s;

        if (!ret_list)
                return -EINVAL;
        if (flags & ~crypt_flags_known())
                return log_debug_errno(-EINVAL, "Unknown crypt flag bits 0x%x.", flags & ~crypt_flags_known());
        for (size_t i = 0; i < ARRAY_SIZE(crypt_flag_names); i++)
                if (flags & crypt_flag_names[i].flag)
                        len += snprintf(buf + len, sizeof(buf) - len, "%s%s", len ? "," : "",
                                        crypt_flag_names[i].name);
        s = strdup(buf);
        if (!s)
                return -ENOMEM;
        *ret_list = s;
        return 0;
}

bool kc_dm_name_is_valid(const char *name) {
        size_t n;

        if (!name)
                return false;
        n = strlen(name);
        if (n == 0 || n > DM_NAME_MAX || streq(name, ".") || streq(name, ".."))
                return false;
        /* '/' is the kernel's own rule; whitespace and control characters would
         * be mangled by libdevmapper and break /dev/mapper/NAME for scripts. */
        for (size_t i = 0; i < n; i++)
                if (name[i] == '/' || (unsigned char) name[i] <= ' ' || name[i] == 0x7f)
                        return false;
        return true;
}

/* Canonical 8-4-4-4-12 hex form, as libuuid's uuid_parse() accepts it. */
static bool luks_uuid_valid(const char *u) {
        if (strlen(u) != 36)
                return false;
        for (size_t i = 0; i < 36; i++) {
                bool dash = i == 8 || i == 13 || i == 18 || i == 23;
                char c = u[i];
                if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
                        return false;
        }
        return true;
}

int kc_dm_uuid_luks2(const char *luks_uuid, const char *name, char **ret_uuid) {
        char hex[33], *uuid;
        size_t j = 0;

        if (!luks_uuid || !luks_uuid_valid(luks_uuid))
                return log_debug_errno(-EINVAL, "LUKS UUID is not of the form 8-4-4-4-12 hex.");
        if (!kc_dm_name_is_valid(name))
                return log_debug_errno(-EINVAL, "Invalid device-mapper name.");
        if (!ret_uuid)
                return -EINVAL;

        for (size_t i = 0; luks_uuid[i]; i++)
                if (luks_uuid[i] != '-')
                        hex[j++] = luks_uuid[i];
        hex[j] = '\0';

        if (asprintf(&uuid, "CRYPT-LUKS2-%s-%s", hex, name) < 0)
                return -ENOMEM;
        /* Like cryptsetup, cut at the kernel's limit: lookups by LUKS UUID use
         * only the "CRYPT-LUKS2-<uuid>-" prefix, which always fits. */
        if (strlen(uuid) > DM_UUID_MAX) {
                log_debug("dm UUID for %s truncated to %u characters.", name, DM_UUID_MAX);
                uuid[DM_UUID_MAX] = '\0';
        }
        *ret_uuid = uuid;
        return 0;
}
