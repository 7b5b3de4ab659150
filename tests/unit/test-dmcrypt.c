/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <libdevmapper.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "dmsetup-helpers/dmcrypt.h"
#include "lib/log.h"
#include "tests/unit/check-main.h"

#define SENTINEL ((char *) 0x1)

/* A 4096-sector LUKS2 volume as kmscrypt formats it, to vary one field at a time. */
static struct kc_crypt_params base(void) {
        return (struct kc_crypt_params) {
                .cipher = "aes-xts-plain64",
                .key_size = 64,
                .key_description = "kmscrypt:0b5e2d3c-1a2b-4c5d-8e9f-0a1b2c3d4e5f",
                .device = "/dev/vdb",
                .iv_offset = 0,
                .offset = 32768,
                .size = 2097152,
                .sector_size = 4096,
                .flags = KC_CRYPT_DEFAULT_FLAGS | KC_CRYPT_IV_LARGE_SECTORS,
        };
}

static void assert_table(const struct kc_crypt_params *p, const char *want) {
        _cleanup_free_ char *t = NULL;
        int r = kc_crypt_table_build(p, &t);
        ck_assert_msg(r == 0, "build failed (%d) for expected \"%s\"", r, want);
        ck_assert_str_eq(t, want);
}

/* Accepted, and the table contains needle. */
static void assert_accepted(const struct kc_crypt_params *p, const char *needle) {
        _cleanup_free_ char *t = NULL;
        int r = kc_crypt_table_build(p, &t);
        ck_assert_msg(r == 0, "refused (%d) with cipher %s, %zu-byte key", r, p->cipher, p->key_size);
        ck_assert_msg(strstr(t, needle), "\"%s\" lacks \"%s\"", t, needle);
}

/* Refused with -EINVAL, output untouched. */
static void assert_refused(const struct kc_crypt_params *p, const char *what) {
        char *t = SENTINEL;
        int r = kc_crypt_table_build(p, &t);
        ck_assert_msg(r == -EINVAL, "%s: expected -EINVAL, got %d", what, r);
        ck_assert_ptr_eq(t, SENTINEL);
}

START_TEST(test_table_512_plain) {
        struct kc_crypt_params p = base();
        p.key_description = "kmscrypt:x";
        p.device = "/dev/loop0";
        p.offset = 0;
        p.size = 2048;
        p.sector_size = 512;
        p.flags = 0;
        assert_table(&p, "aes-xts-plain64 :64:logon:kmscrypt:x 0 /dev/loop0 0");

        /* The table vm-recipe.md checked against a real dm-crypt. */
        p.flags = KC_CRYPT_DEFAULT_FLAGS;
        assert_table(&p, "aes-xts-plain64 :64:logon:kmscrypt:x 0 /dev/loop0 0 2 no_read_workqueue no_write_workqueue");
}
END_TEST

START_TEST(test_table_4096_default) {
        struct kc_crypt_params p = base();
        assert_table(&p, "aes-xts-plain64 :64:logon:kmscrypt:0b5e2d3c-1a2b-4c5d-8e9f-0a1b2c3d4e5f 0 /dev/vdb 32768 "
                         "4 no_read_workqueue no_write_workqueue iv_large_sectors sector_size:4096");

        /* 4096 without iv_large_sectors (IVs counted in 512-byte sectors), nonzero IV offset. */
        p.flags = 0;
        p.iv_offset = 8;
        assert_table(&p, "aes-xts-plain64 :64:logon:kmscrypt:0b5e2d3c-1a2b-4c5d-8e9f-0a1b2c3d4e5f 8 /dev/vdb 32768 "
                         "1 sector_size:4096");
}
END_TEST

START_TEST(test_table_all_flags_order) {
        struct kc_crypt_params p = base();
        p.key_description = "kmscrypt:v";
        p.sector_size = 2048;
        p.flags = KC_CRYPT_ALLOW_DISCARDS | KC_CRYPT_SAME_CPU_CRYPT | KC_CRYPT_SUBMIT_FROM_CRYPT_CPUS |
                  KC_CRYPT_NO_READ_WORKQUEUE | KC_CRYPT_NO_WRITE_WORKQUEUE | KC_CRYPT_IV_LARGE_SECTORS;
        /* cryptsetup's order: flags in kernel-table order, then sector_size. */
        assert_table(&p, "aes-xts-plain64 :64:logon:kmscrypt:v 0 /dev/vdb 32768 7 allow_discards same_cpu_crypt "
                         "submit_from_crypt_cpus no_read_workqueue no_write_workqueue iv_large_sectors sector_size:2048");
}
END_TEST

START_TEST(test_table_capi_and_devno) {
        struct kc_crypt_params p = base();
        p.cipher = "capi:xts(aes)-plain64";
        p.key_size = 32;
        p.key_description = "kmscrypt:c";
        p.device = "8:16";
        p.iv_offset = 16;
        p.offset = 4096;
        p.size = 1024;
        p.sector_size = 512;
        p.flags = KC_CRYPT_ALLOW_DISCARDS;
        assert_table(&p, "capi:xts(aes)-plain64 :32:logon:kmscrypt:c 16 8:16 4096 1 allow_discards");

        /* major:minor is written back normalised. */
        p.device = "008:001";
        assert_table(&p, "capi:xts(aes)-plain64 :32:logon:kmscrypt:c 16 8:1 4096 1 allow_discards");
}
END_TEST

START_TEST(test_table_other_ciphers) {
        struct kc_crypt_params p = base();
        p.key_description = "kmscrypt:o";
        p.sector_size = 512;
        p.flags = 0;
        p.offset = 0;

        p.cipher = "aes-cbc-essiv:sha256";
        p.key_size = 32;
        assert_table(&p, "aes-cbc-essiv:sha256 :32:logon:kmscrypt:o 0 /dev/vdb 0");
        p.key_size = 16;
        assert_table(&p, "aes-cbc-essiv:sha256 :16:logon:kmscrypt:o 0 /dev/vdb 0");

        p.cipher = "capi:cbc(aes)-essiv:sha3-256";
        p.key_size = 24;
        assert_table(&p, "capi:cbc(aes)-essiv:sha3-256 :24:logon:kmscrypt:o 0 /dev/vdb 0");

        p.cipher = "serpent-xts-plain64";
        p.key_size = 32;
        assert_table(&p, "serpent-xts-plain64 :32:logon:kmscrypt:o 0 /dev/vdb 0");

        p.cipher = "aes-ecb";                    /* the kernel needs no IV for ecb */
        p.key_size = 16;
        assert_table(&p, "aes-ecb :16:logon:kmscrypt:o 0 /dev/vdb 0");

        p.cipher = "aes-cbc-tcw";                /* tcw adds IV seed + whitening */
        p.key_size = 64;
        assert_table(&p, "aes-cbc-tcw :64:logon:kmscrypt:o 0 /dev/vdb 0");

        p.cipher = "aes-cbc-elephant:sha256";    /* BitLocker: cbc key + elephant key */
        p.key_size = 64;
        assert_table(&p, "aes-cbc-elephant:sha256 :64:logon:kmscrypt:o 0 /dev/vdb 0");

        p.cipher = "aes:4-cbc-lmk";              /* multi-key with an extra seed part */
        p.key_size = 5 * 16;
        assert_table(&p, "aes:4-cbc-lmk :80:logon:kmscrypt:o 0 /dev/vdb 0");

        p.cipher = "capi:authenc(hmac(sha256),xts(aes))-random"; /* unknown combination: range check only */
        p.key_size = 96;
        assert_table(&p, "capi:authenc(hmac(sha256),xts(aes))-random :96:logon:kmscrypt:o 0 /dev/vdb 0");
}
END_TEST

START_TEST(test_refuse_cipher) {
        static const char *bad[] = {
                "", "aes", "aes-xts", "aes-cbc", "-xts-plain64", "aes--plain64", "aes-xts-",
                "aes-xts-plain65", "AES-xts-plain64", "aes-XTS-plain64", "aes-xts-plain64 x",
                "aes-xts-plain64\t", "aes-x\\ts-plain64", "aes-xts-pl\xc3\xa4in64",
                "aes-cbc-essiv", "aes-cbc-essiv:", "aes-cbc-essiv:sha 256", "aes-cbc-essiv:sha:256",
                "aes-xts-plain64:sha256", "aes-cbc-elephant",
                "aes:3-cbc-plain", "aes:0-cbc-plain", "aes:-cbc-plain", "aes:x-cbc-plain", "aes:128-cbc-plain",
                "aes:02-cbc-plain", "cipher_null-ecb", "cipher_null-ecb-null", "capi:ecb(cipher_null)-null",
                "capi:ecb-cipher_null-plain", "capi:ecb(cipher_null-generic)-plain",
                "capi:xts(aes)", "capi:-plain64", "capi:xts(aes-plain64", "capi:xts)aes(-plain64",
                "capi:xts(aes)-plain64:sha256", "capi:xts(AES)-plain64", "capi:xts(aes)-bogus",
                "aes-xts-plain64-x",
        };
        struct kc_crypt_params p = base();
        char spec[160];

        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                p.cipher = bad[i];
                assert_refused(&p, bad[i]);
        }
        p.cipher = NULL;
        assert_refused(&p, "NULL cipher");

        /* A well-formed crypto API spec is refused only for its length (over 128). */
        p.cipher = spec;
        p.key_size = 64;
        snprintf(spec, sizeof(spec), "capi:xts(%0*d)-plain64", 128 - 18, 0);
        ck_assert_uint_eq(strlen(spec), 128);
        assert_accepted(&p, spec);
        snprintf(spec, sizeof(spec), "capi:xts(%0*d)-plain64", 129 - 18, 0);
        assert_refused(&p, "129-character cipher");
}
END_TEST

START_TEST(test_refuse_key_size) {
        static const struct { const char *cipher; size_t size; } bad[] = {
                { "aes-xts-plain64", 0 }, { "aes-xts-plain64", 16 }, { "aes-xts-plain64", 48 },
                { "aes-xts-plain64", 63 }, { "aes-xts-plain64", 128 }, { "capi:xts(aes)-plain64", 24 },
                { "aes-cbc-essiv:sha256", 64 }, { "aes-cbc-essiv:sha256", 8 }, { "aes-ecb", 20 },
                { "sm4-xts-plain64", 64 }, { "aes-cbc-tcw", 32 }, { "aes-cbc-elephant:sha256", 40 },
                { "aes:4-cbc-lmk", 48 }, { "aes-lrw-benbi", 33 },
                { "capi:authenc(hmac(sha256),xts(aes))-random", 0 },
                { "capi:authenc(hmac(sha256),xts(aes))-random", 1025 },
                { "blowfish-cbc-plain", 4096 },
        };
        struct kc_crypt_params p = base();

        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                p.cipher = bad[i].cipher;
                p.key_size = bad[i].size;
                assert_refused(&p, bad[i].cipher);
        }
        /* Sizes that fit the same ciphers, so the refusals above are about the size. */
        static const struct { const char *cipher; size_t size; } good[] = {
                { "aes-xts-plain64", 32 }, { "capi:xts(aes)-plain64", 64 }, { "aes-cbc-essiv:sha256", 24 },
                { "aes-ecb", 32 }, { "sm4-xts-plain64", 32 }, { "aes-cbc-tcw", 48 },
                { "aes-cbc-elephant:sha256", 32 }, { "aes:4-cbc-lmk", 64 }, { "aes-lrw-benbi", 48 },
                { "capi:authenc(hmac(sha256),xts(aes))-random", 1024 }, { "blowfish-cbc-plain", 56 },
        };
        for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
                p.cipher = good[i].cipher;
                p.key_size = good[i].size;
                assert_accepted(&p, good[i].cipher);
        }
}
END_TEST

START_TEST(test_refuse_key_description) {
        static const char *bad[] = {
                "", "kmscrypt", ":rest", "kmscrypt:", "kms crypt:x", "kmscrypt:a\tb", "kmscrypt:a\nb",
                "kmscrypt:\\x", "kmscrypt:\xc2\xa0", "kmscrypt:\x7f",
        };
        struct kc_crypt_params p = base();
        char *longdesc = malloc(4097);

        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                p.key_description = bad[i];
                assert_refused(&p, bad[i]);
        }
        p.key_description = NULL;
        assert_refused(&p, "NULL key description");

        ck_assert_ptr_nonnull(longdesc);
        memcpy(longdesc, "kmscrypt:", 9);
        memset(longdesc + 9, 'a', 4096 - 9);
        longdesc[4096] = '\0';
        p.key_description = longdesc;
        assert_refused(&p, "4096-character description");
        longdesc[4095] = '\0';
        assert_accepted(&p, longdesc);
        free(longdesc);
}
END_TEST

START_TEST(test_refuse_device) {
        static const char *bad[] = {
                "", "dev/loop0", "/", "/dev/loop 0", "/dev/loop0\n", "/dev/disk/by-label/a\\x20b",
                "/dev/\xc3\xa9", "8:", ":1", "8", "4096:0", "8:1048576", "8:1x", "-1:2", "+8:1",
                "0x8:1", "8:1:2", " 8:1", "12345678:1",
        };
        struct kc_crypt_params p = base();

        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                p.device = bad[i];
                assert_refused(&p, bad[i]);
        }
        p.device = NULL;
        assert_refused(&p, "NULL device");

        /* The limits themselves are accepted. */
        p.device = "4095:1048575";
        assert_accepted(&p, " 4095:1048575 ");
}
END_TEST

START_TEST(test_refuse_sector_size) {
        static const uint32_t bad[] = { 0, 1, 256, 511, 513, 1000, 3072, 8192, 65536 };
        struct kc_crypt_params p = base();

        p.flags = 0;
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                p.sector_size = bad[i];
                assert_refused(&p, "sector size");
        }
}
END_TEST

START_TEST(test_refuse_size_and_alignment) {
        struct kc_crypt_params p = base();

        p.size = 0;
        assert_refused(&p, "size 0");
        p.size = 2097152 + 1;               /* not a whole number of 4096-byte sectors */
        assert_refused(&p, "size not a multiple of 8");
        p.size = 4;
        assert_refused(&p, "size below one sector");
        p.size = 2097152;
        p.iv_offset = 4;                    /* the kernel refuses a misaligned IV offset */
        assert_refused(&p, "iv_offset not a multiple of 8");

        /* 512-byte sectors accept any size and IV offset. */
        p.sector_size = 512;
        p.flags = 0;
        p.size = 7;
        p.iv_offset = 3;
        assert_accepted(&p, " 3 /dev/vdb 32768");
}
END_TEST

START_TEST(test_refuse_overflow) {
        struct kc_crypt_params p = base();

        p.offset = UINT64_MAX - 1024;
        assert_refused(&p, "offset + size wraps");
        p.offset = (UINT64_MAX >> 9) - p.size + 1;
        assert_refused(&p, "last byte beyond 2^64");
        p.offset = (UINT64_MAX >> 9) - p.size;
        assert_accepted(&p, " /dev/vdb 36028797016866815"); /* 2^55 - 1 - 2097152 */

        p.offset = 0;
        p.iv_offset = UINT64_MAX - 7;       /* aligned, but IVs would wrap */
        assert_refused(&p, "iv_offset + size wraps");

        p.iv_offset = 0;
        p.size = UINT64_MAX - 7;
        assert_refused(&p, "size beyond 2^64 bytes");
}
END_TEST

START_TEST(test_refuse_flags) {
        struct kc_crypt_params p = base();

        p.flags = 1u << 6;
        assert_refused(&p, "unknown flag bit 6");
        p.flags = KC_CRYPT_DEFAULT_FLAGS | 0x80000000u;
        assert_refused(&p, "unknown flag bit 31");

        p.flags = KC_CRYPT_IV_LARGE_SECTORS;
        p.sector_size = 512;
        assert_refused(&p, "iv_large_sectors with 512-byte sectors");
        p.sector_size = 1024;
        assert_accepted(&p, " 2 iv_large_sectors sector_size:1024");
}
END_TEST

START_TEST(test_refuse_null) {
        struct kc_crypt_params p = base();
        char *t = SENTINEL;

        ck_assert_int_eq(kc_crypt_table_build(NULL, &t), -EINVAL);
        ck_assert_ptr_eq(t, SENTINEL);
        ck_assert_int_eq(kc_crypt_table_build(&p, NULL), -EINVAL);
}
END_TEST

START_TEST(test_flags_parse) {
        unsigned f = 0xdead;

        ck_assert_int_eq(kc_crypt_flags_parse("", &f), 0);
        ck_assert_uint_eq(f, 0);
        f = 0xdead;
        ck_assert_int_eq(kc_crypt_flags_parse("none", &f), 0);
        ck_assert_uint_eq(f, 0);
        ck_assert_int_eq(kc_crypt_flags_parse("no_read_workqueue,no_write_workqueue", &f), 0);
        ck_assert_uint_eq(f, KC_CRYPT_DEFAULT_FLAGS);
        ck_assert_int_eq(kc_crypt_flags_parse("allow_discards,allow_discards", &f), 0);
        ck_assert_uint_eq(f, KC_CRYPT_ALLOW_DISCARDS);
        ck_assert_int_eq(kc_crypt_flags_parse("iv_large_sectors,same_cpu_crypt,submit_from_crypt_cpus", &f), 0);
        ck_assert_uint_eq(f, KC_CRYPT_IV_LARGE_SECTORS | KC_CRYPT_SAME_CPU_CRYPT | KC_CRYPT_SUBMIT_FROM_CRYPT_CPUS);
}
END_TEST

START_TEST(test_flags_parse_refused) {
        static const char *bad[] = {
                "bogus", "allow_discards,", ",allow_discards", "allow_discards,,same_cpu_crypt",
                "Allow_discards", " allow_discards", "allow_discards ", "none,allow_discards",
                "allow_discard", "allow_discardsx", "no_read_workqueue;no_write_workqueue", ",",
        };

        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                unsigned f = 0xdead;
                ck_assert_msg(kc_crypt_flags_parse(bad[i], &f) == -EINVAL, "accepted \"%s\"", bad[i]);
                ck_assert_uint_eq(f, 0xdead);
        }
        ck_assert_int_eq(kc_crypt_flags_parse(NULL, &(unsigned) { 0 }), -EINVAL);
}
END_TEST

START_TEST(test_flags_format_roundtrip) {
        char *s = SENTINEL;

        {
                _cleanup_free_ char *t = NULL;
                ck_assert_int_eq(kc_crypt_flags_format(0, &t), 0);
                ck_assert_str_eq(t, "");
        }
        {
                _cleanup_free_ char *t = NULL;
                ck_assert_int_eq(kc_crypt_flags_format(KC_CRYPT_DEFAULT_FLAGS, &t), 0);
                ck_assert_str_eq(t, "no_read_workqueue,no_write_workqueue");
        }
        /* Every combination of the six flags survives format then parse. */
        for (unsigned f = 0; f < 64; f++) {
                _cleanup_free_ char *t = NULL;
                unsigned back = 0xdead;
                ck_assert_int_eq(kc_crypt_flags_format(f, &t), 0);
                ck_assert_int_eq(kc_crypt_flags_parse(t, &back), 0);
                ck_assert_uint_eq(back, f);
        }
        ck_assert_int_eq(kc_crypt_flags_format(1u << 6, &s), -EINVAL);
        ck_assert_ptr_eq(s, SENTINEL);
}
END_TEST

START_TEST(test_uuid_luks2) {
        _cleanup_free_ char *u = NULL, *upper = NULL;

        ck_assert_int_eq(kc_dm_uuid_luks2("0b5e2d3c-1a2b-4c5d-8e9f-0a1b2c3d4e5f", "pgdata", &u), 0);
        ck_assert_str_eq(u, "CRYPT-LUKS2-0b5e2d3c1a2b4c5d8e9f0a1b2c3d4e5f-pgdata");
        /* Like cryptsetup, the UUID's characters are kept as given. */
        ck_assert_int_eq(kc_dm_uuid_luks2("0B5E2D3C-1A2B-4C5D-8E9F-0A1B2C3D4E5F", "x", &upper), 0);
        ck_assert_str_eq(upper, "CRYPT-LUKS2-0B5E2D3C1A2B4C5D8E9F0A1B2C3D4E5F-x");
}
END_TEST

START_TEST(test_uuid_luks2_truncated) {
        _cleanup_free_ char *u = NULL;
        char name[128];

        memset(name, 'n', 127);
        name[127] = '\0';
        ck_assert_int_eq(kc_dm_uuid_luks2("0b5e2d3c-1a2b-4c5d-8e9f-0a1b2c3d4e5f", name, &u), 0);
        ck_assert_uint_eq(strlen(u), 128);
        ck_assert(strncmp(u, "CRYPT-LUKS2-0b5e2d3c1a2b4c5d8e9f0a1b2c3d4e5f-nnn", 48) == 0);
}
END_TEST

START_TEST(test_uuid_luks2_refused) {
        static const char *bad_uuid[] = {
                "", "0b5e2d3c1a2b4c5d8e9f0a1b2c3d4e5f", "0b5e2d3c-1a2b-4c5d-8e9f-0a1b2c3d4e5", 
                "0b5e2d3c-1a2b-4c5d-8e9f-0a1b2c3d4e5f0", "0b5e2d3c-1a2b-4c5d-8e9f0-a1b2c3d4e5f",
                "0b5e2d3g-1a2b-4c5d-8e9f-0a1b2c3d4e5f", "0b5e2d3c-1a2b-4c5d-8e9f-0a1b2c3d4e5 ",
                "{b5e2d3c-1a2b-4c5d-8e9f-0a1b2c3d4e5f",
        };
        static const char *bad_name[] = { "", "a/b", "/", ".", "..", "a b", "a\nb", "a\x7f" };
        char longname[129];

        for (size_t i = 0; i < ARRAY_SIZE(bad_uuid); i++) {
                char *u = SENTINEL;
                ck_assert_msg(kc_dm_uuid_luks2(bad_uuid[i], "x", &u) == -EINVAL, "accepted uuid \"%s\"", bad_uuid[i]);
                ck_assert_ptr_eq(u, SENTINEL);
        }
        for (size_t i = 0; i < ARRAY_SIZE(bad_name); i++) {
                char *u = SENTINEL;
                ck_assert_msg(kc_dm_uuid_luks2("0b5e2d3c-1a2b-4c5d-8e9f-0a1b2c3d4e5f", bad_name[i], &u) == -EINVAL,
                              "accepted name \"%s\"", bad_name[i]);
                ck_assert_ptr_eq(u, SENTINEL);
        }
        memset(longname, 'n', 128);
        longname[128] = '\0';
        ck_assert(!kc_dm_name_is_valid(longname));
        longname[127] = '\0';
        ck_assert(kc_dm_name_is_valid(longname));
        ck_assert(!kc_dm_name_is_valid(NULL));
        ck_assert_int_eq(kc_dm_uuid_luks2(NULL, "x", &(char *) { NULL }), -EINVAL);
}
END_TEST

/* ---- device-mapper operations, on a machine where they cannot succeed ---- */

static bool control_node_present(void) {
        char path[256];
        snprintf(path, sizeof(path), "%s/control", dm_dir());
        return access(path, F_OK) == 0;
}

START_TEST(test_dm_unavailable) {
        struct kc_dm_info info = { .exists = true };
        char *target = SENTINEL, *params = SENTINEL, **names = (char **) SENTINEL;
        bool node_before = control_node_present();

        /* A stale control node (libdm run as root makes one) must not fool us either. */
        ck_assert(!kc_dm_available());

        ck_assert_int_eq(kc_dm_create("kc-test", "CRYPT-TEST-kc-test", "zero", 8, "", false), -ENODEV);
        ck_assert_int_eq(kc_dm_remove("kc-test", false), -ENODEV);
        ck_assert_int_eq(kc_dm_remove("kc-test", true), -ENODEV);
        ck_assert_int_eq(kc_dm_info("kc-test", &info), -ENODEV);
        ck_assert(info.exists); /* untouched */
        ck_assert_int_eq(kc_dm_table("kc-test", &target, &params), -ENODEV);
        ck_assert_ptr_eq(target, SENTINEL);
        ck_assert_ptr_eq(params, SENTINEL);
        ck_assert_int_eq(kc_dm_suspend("kc-test"), -ENODEV);
        ck_assert_int_eq(kc_dm_resume("kc-test"), -ENODEV);
        ck_assert_int_eq(kc_dm_message("kc-test", "key wipe"), -ENODEV);
        ck_assert_int_eq(kc_dm_list("CRYPT-LUKS2-", &names), -ENODEV);
        ck_assert_ptr_eq(names, (char **) SENTINEL);

        /* Run as root, libdm would create the control node itself; we must not. */
        if (!node_before)
                ck_assert(!control_node_present());
}
END_TEST

START_TEST(test_dm_invalid_arguments) {
        struct kc_dm_info info;
        char *t, *p, **names;
        char longname[200];

        memset(longname, 'a', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';

        /* Refused before any device-mapper call, wherever this runs. */
        ck_assert_int_eq(kc_dm_create(NULL, NULL, "zero", 8, "", false), -EINVAL);
        ck_assert_int_eq(kc_dm_create("a/b", NULL, "zero", 8, "", false), -EINVAL);
        ck_assert_int_eq(kc_dm_create(longname, NULL, "zero", 8, "", false), -EINVAL);
        ck_assert_int_eq(kc_dm_create("kc-test", "", "zero", 8, "", false), -EINVAL);
        ck_assert_int_eq(kc_dm_create("kc-test", "bad uuid", "zero", 8, "", false), -EINVAL);
        ck_assert_int_eq(kc_dm_create("kc-test", longname, "zero", 8, "", false), -EINVAL);
        ck_assert_int_eq(kc_dm_create("kc-test", NULL, NULL, 8, "", false), -EINVAL);
        ck_assert_int_eq(kc_dm_create("kc-test", NULL, "", 8, "", false), -EINVAL);
        ck_assert_int_eq(kc_dm_create("kc-test", NULL, "zero", 0, "", false), -EINVAL);
        ck_assert_int_eq(kc_dm_create("kc-test", NULL, "zero", 8, NULL, false), -EINVAL);
        ck_assert_int_eq(kc_dm_remove("", false), -EINVAL);
        ck_assert_int_eq(kc_dm_remove("..", true), -EINVAL);
        ck_assert_int_eq(kc_dm_info("a/b", &info), -EINVAL);
        ck_assert_int_eq(kc_dm_info("kc-test", NULL), -EINVAL);
        ck_assert_int_eq(kc_dm_table(NULL, &t, &p), -EINVAL);
        ck_assert_int_eq(kc_dm_table("kc-test", NULL, &p), -EINVAL);
        ck_assert_int_eq(kc_dm_suspend(longname), -EINVAL);
        ck_assert_int_eq(kc_dm_resume("a b"), -EINVAL);
        ck_assert_int_eq(kc_dm_message("kc-test", NULL), -EINVAL);
        ck_assert_int_eq(kc_dm_message("kc-test", ""), -EINVAL);
        ck_assert_int_eq(kc_dm_list(NULL, &names), -EINVAL);
        ck_assert_int_eq(kc_dm_list("CRYPT-", NULL), -EINVAL);
}
END_TEST

static char captured[4096];

static void capture_sink(int priority, const char *message, void *userdata) {
        size_t len = strlen(captured);
        snprintf(captured + len, sizeof(captured) - len, "%d:%s\n", priority, message);
}

/*
 * libdm's own error messages must reach our log at debug level and never
 * stderr.  This calls libdm directly only to make it log, with its config
 * parser: a libdm task would open (and, as root, create) the control node.
 */
START_TEST(test_dm_log_routed) {
        char path[] = "/tmp/kc-dm-stderr.XXXXXX";
        int fd = mkstemp(path), saved;
        struct dm_config_tree *cft;
        struct stat st;

        ck_assert_int_ge(fd, 0);
        unlink(path);
        kc_log_set_sink(capture_sink, NULL);
        kc_log_set_max_priority(LOG_DEBUG);
        (void) kc_dm_available(); /* installs the log route */

        fflush(stderr);
        saved = dup(STDERR_FILENO);
        ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
        cft = dm_config_from_string("section {");
        fflush(stderr);
        dup2(saved, STDERR_FILENO);
        close(saved);

        ck_assert_ptr_null(cft);
        ck_assert_int_eq(fstat(fd, &st), 0);
        ck_assert_msg(st.st_size == 0, "libdevmapper wrote %lld bytes to stderr", (long long) st.st_size);
        ck_assert_msg(strstr(captured, "7:libdevmapper[") != NULL, "nothing routed to the debug log: %s", captured);
        close(fd);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("dmcrypt");
        TCase *table = tcase_create("table");
        TCase *flags = tcase_create("flags");
        TCase *uuid = tcase_create("uuid");
        TCase *dm = tcase_create("dm");

        tcase_add_test(table, test_table_512_plain);
        tcase_add_test(table, test_table_4096_default);
        tcase_add_test(table, test_table_all_flags_order);
        tcase_add_test(table, test_table_capi_and_devno);
        tcase_add_test(table, test_table_other_ciphers);
        tcase_add_test(table, test_refuse_cipher);
        tcase_add_test(table, test_refuse_key_size);
        tcase_add_test(table, test_refuse_key_description);
        tcase_add_test(table, test_refuse_device);
        tcase_add_test(table, test_refuse_sector_size);
        tcase_add_test(table, test_refuse_size_and_alignment);
        tcase_add_test(table, test_refuse_overflow);
        tcase_add_test(table, test_refuse_flags);
        tcase_add_test(table, test_refuse_null);
        suite_add_tcase(s, table);

        tcase_add_test(flags, test_flags_parse);
        tcase_add_test(flags, test_flags_parse_refused);
        tcase_add_test(flags, test_flags_format_roundtrip);
        suite_add_tcase(s, flags);

        tcase_add_test(uuid, test_uuid_luks2);
        tcase_add_test(uuid, test_uuid_luks2_truncated);
        tcase_add_test(uuid, test_uuid_luks2_refused);
        suite_add_tcase(s, uuid);

        tcase_add_test(dm, test_dm_invalid_arguments);
        tcase_add_test(dm, test_dm_log_routed);
        /* Only meaningful where device-mapper does not work; the vm tier covers the rest. */
        if (!kc_dm_available())
                tcase_add_test(dm, test_dm_unavailable);
        suite_add_tcase(s, dm);
        return s;
}
