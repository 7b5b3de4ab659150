/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The inverse of kc_crypt_table_build(): read back a dm-crypt table as the
 * kernel reports it ("cipher key iv_offset major:minor offset [n opts]"),
 * for status and for recognising our own mappings.  Tables are read
 * without keys, and kmscrypt tables only ever hold a keyring reference.
 */
#include <inttypes.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "dmsetup-helpers/dmcrypt.h"
#include "lib/log.h"

static int parse_u64(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* ":<size>:<type>:<description>" -> size and description; a hex key or "-" is refused. */
static int parse_key_field(char *field, struct kc_crypt_params *p) {
        char *size_end, *desc;
        unsigned long size;

        if (field[0] != ':')
                return -EOPNOTSUPP; /* not a keyring reference: not one of ours */
        errno = 0;
        size = strtoul(field + 1, &size_end, 10);
        if (errno || size_end == field + 1 || *size_end != ':' || size == 0 || size > 1024)
                return -EINVAL;
        if (strncmp(size_end + 1, "logon:", 6) != 0)
                return -EOPNOTSUPP;
        desc = size_end + 1 + 6;
        if (!*desc)
                return -EINVAL;
        p->key_size = size;
        p->key_description = desc;
        return 0;
}

static int parse_option(const char *opt, struct kc_crypt_params *p) {
        unsigned flag;
        uint64_t v;

        if (strncmp(opt, "sector_size:", 12) == 0) {
                if (parse_u64(opt + 12, &v) < 0 || v < 512 || v > 4096 || (v & (v - 1)))
                        return -EINVAL;
                p->sector_size = (uint32_t) v;
                return 0;
        }
        /* One flag name per table word; "none" and lists are our syntax, not the kernel's. */
        if (!strchr(opt, ',') && !streq(opt, "none") && kc_crypt_flags_parse(opt, &flag) == 0) {
                p->flags |= flag;
                return 0;
        }
        /* Options we never set (integrity, high_priority, ...): not a kmscrypt table. */
        return -EOPNOTSUPP;
}

int kc_crypt_table_parse(const char *params, uint64_t size, struct kc_crypt_table *ret) {
        struct kc_crypt_table t = { .p = { .size = size, .sector_size = 512 } };
        char *field[5], *save = NULL, *tok;
        uint64_t nopts;
        int r;

        if (!params || !ret)
                return -EINVAL;
        t.buf = strdup(params);
        if (!t.buf)
                return -ENOMEM;

        for (size_t i = 0; i < ARRAY_SIZE(field); i++) {
                field[i] = strtok_r(i == 0 ? t.buf : NULL, " ", &save);
                if (!field[i]) {
                        r = -EINVAL;
                        goto fail;
                }
        }
        t.p.cipher = field[0];
        r = parse_key_field(field[1], &t.p);
        if (r < 0)
                goto fail;
        t.p.device = field[3];
        if (parse_u64(field[2], &t.p.iv_offset) < 0 || parse_u64(field[4], &t.p.offset) < 0) {
                r = -EINVAL;
                goto fail;
        }

        tok = strtok_r(NULL, " ", &save);
        if (tok) {
                if (parse_u64(tok, &nopts) < 0) {
                        r = -EINVAL;
                        goto fail;
                }
                for (uint64_t i = 0; i < nopts; i++) {
                        tok = strtok_r(NULL, " ", &save);
                        r = tok ? parse_option(tok, &t.p) : -EINVAL;
                        if (r < 0)
                                goto fail;
                }
                if (strtok_r(NULL, " ", &save)) {
                        r = -EINVAL;
                        goto fail;
                }
        }
        *ret = t;
        return 0;
fail:
        log_debug("dm-crypt table not understood (%s)", strerror(-r));
        free(t.buf);
        return r;
}

int kc_crypt_table_device(const char *params, dev_t *ret) {
        char word[32], *colon;
        const char *dev = params;
        uint64_t maj, min;
        size_t n;

        for (int i = 0; i < 3 && dev; i++)
                if ((dev = strchr(dev, ' ')))
                        dev++;
        if (!dev)
                return -EINVAL;
        n = strcspn(dev, " ");
        if (n >= sizeof(word))
                return -EINVAL;
        memcpy(word, dev, n);
        word[n] = '\0';
        colon = strchr(word, ':');
        if (!colon)
                return -EINVAL;
        *colon = '\0';
        if (parse_u64(word, &maj) < 0 || parse_u64(colon + 1, &min) < 0 || maj > UINT32_MAX || min > UINT32_MAX)
                return -EINVAL;
        *ret = makedev((unsigned) maj, (unsigned) min);
        return 0;
}

void kc_crypt_table_clear(struct kc_crypt_table *t) {
        if (!t)
                return;
        free(t->buf);
        *t = (struct kc_crypt_table) {};
}
