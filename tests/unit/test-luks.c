/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The LUKS2 boundary on small sparse image files: format, tokens, keyslots,
 * refusals, and interoperability with the stock cryptsetup tool.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <endian.h>
#include <json-c/json.h>
#include <libcryptsetup.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "agent/luks.h"
#include "lib/fileio.h"
#include "lib/json-util.h"
#include "lib/macro.h"
#include "lib/secret.h"
#include "tests/unit/luks-util.h"
#include "tests/unit/check-main.h"

START_TEST(test_format_and_read) {
        _cleanup_free_ char *dir = kc_test_tmpdir(), *img = kc_test_image(dir, "a.img", KC_TEST_IMAGE_SIZE);
        _cleanup_secret_ uint8_t *key = kc_test_random_key(64), *other = kc_test_random_key(64);
        _cleanup_(kc_token_clear) struct kc_token tok = {}, back = {};
        _cleanup_luks_ struct kc_luks *l = NULL;
        _cleanup_free_ char *dump = NULL;
        struct kc_luks_segment seg;
        struct kc_err err = {};
        int id;

        kc_test_token(&tok, 3);
        struct kc_luks_format_params p = {
                .device = img, .label = "pgdata", .volume_key = key, .volume_key_size = 64,
                .uuid = "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
        };
        ck_assert_msg(kc_luks_format(&p, &tok, &err) == 0, "%s", err.msg);

        ck_assert_int_eq(kc_luks_open(img, NULL, &l, &err), 0);
        ck_assert_int_eq(kc_luks_segment(l, &seg), 0);
        ck_assert_str_eq(seg.cipher, "aes-xts-plain64");
        /* No keyslot records the key size: the key itself does, through the digest. */
        ck_assert_uint_eq(seg.key_size, 0);
        ck_assert_uint_eq(seg.sector_size, 4096);
        ck_assert_uint_eq(seg.offset, 16 * 1024 * 1024 / 512);
        ck_assert_uint_eq(seg.iv_offset, 0);
        ck_assert_uint_eq(seg.size, 0);
        ck_assert_str_eq(seg.uuid, p.uuid);
        ck_assert_str_eq(seg.label, "pgdata");
        ck_assert_str_eq(seg.data_device, img);

        ck_assert_int_eq(kc_luks_token_read(l, &back, &id, &err), 0);
        ck_assert_int_eq(id, 0);
        ck_assert(kc_test_token_equal(&tok, &back));

        ck_assert_int_eq(kc_luks_verify_key(l, key, 64, NULL), 0);
        ck_assert_int_eq(kc_luks_verify_key(l, other, 64, NULL), -EPERM);
        ck_assert_int_eq(kc_luks_verify_key(l, key, 32, NULL), -EPERM);

        /* Stock cryptsetup sees a LUKS2 header with our token, and no keyslot. */
        dump = kc_test_run("cryptsetup luksDump '%s'", img);
        ck_assert_ptr_nonnull(strstr(dump, "Version:       \t2"));
        ck_assert_ptr_nonnull(strstr(dump, "kmscrypt"));
        ck_assert_ptr_nonnull(strstr(dump, "pgdata"));
        ck_assert_ptr_null(strstr(dump, "luks2\n\tKey:"));
}
END_TEST

/*
 * kc_luks_verify_key() checks the LUKS2 digest itself when it is PBKDF2-
 * SHA256: on headers libcryptsetup formatted with various digest
 * parameters, its verdict is libcryptsetup's (the digest libcryptsetup
 * stored is OpenSSL's PBKDF2, so a match proves the same derivation).
 */
static const struct {
        const char *hash;
        uint32_t time_ms;       /* 0: minimum iterations, no benchmark */
        size_t key_size;
} digest_cases[] = {
        { "sha256", 0, 64 },
        { "sha256", 0, 32 },
        { "sha256", 3, 64 },    /* benchmarked: some other count than 1000 */
        { "sha512", 0, 64 },    /* not ours to compute: libcryptsetup verifies */
        { "sha1", 0, 64 },
};

static uint64_t digest_iterations(struct crypt_device *cd) {
        const char *text = NULL;
        struct json_object *o, *d;
        uint64_t n = 0;

        ck_assert_int_eq(crypt_dump_json(cd, &text, 0), 0);
        o = json_tokener_parse(text);
        ck_assert_ptr_nonnull(o);
        if (json_object_object_get_ex(o, "digests", &d) && json_object_object_get_ex(d, "0", &d) &&
            json_object_object_get_ex(d, "iterations", &d))
                n = (uint64_t) json_object_get_int64(d);
        json_object_put(o);
        return n;
}

START_TEST(test_verify_matches_libcryptsetup) {
        _cleanup_free_ char *dir = kc_test_tmpdir(), *img = kc_test_image(dir, "d.img", KC_TEST_IMAGE_SIZE);
        size_t n = digest_cases[_i].key_size;
        _cleanup_secret_ uint8_t *key = kc_test_random_key(n), *other = kc_test_random_key(n);
        _cleanup_luks_ struct kc_luks *l = NULL;
        struct crypt_pbkdf_type pbkdf = {
                .type = CRYPT_KDF_PBKDF2, .hash = digest_cases[_i].hash,
                .time_ms = digest_cases[_i].time_ms ?: 1, .iterations = 1000,
                .flags = digest_cases[_i].time_ms ? 0 : CRYPT_PBKDF_NO_BENCHMARK,
        };
        struct crypt_device *cd = NULL;
        uint64_t iterations;

        /*
         * HMAC pads its key with zeros: a key ending in a zero byte and the
         * same key one byte shorter give the same digest, and the check of
         * the truncated key below would pass for 1 random key in 256.
         */
        key[n - 1] |= 0x80;
        ck_assert_int_eq(crypt_init(&cd, img), 0);
        ck_assert_int_eq(crypt_set_pbkdf_type(cd, &pbkdf), 0);
        ck_assert_int_eq(crypt_format(cd, CRYPT_LUKS2, "aes", "xts-plain64", NULL, (const char *) key, n, NULL), 0);
        iterations = digest_iterations(cd);
        ck_assert_uint_ge(iterations, 1000);
        if (digest_cases[_i].time_ms)
                ck_assert_uint_ne(iterations, 1000);
        ck_assert_int_eq(crypt_volume_key_verify(cd, (const char *) key, n), 0);
        ck_assert_int_eq(crypt_volume_key_verify(cd, (const char *) other, n), -EPERM);
        crypt_free(cd);

        ck_assert_int_eq(kc_luks_open(img, NULL, &l, NULL), 0);
        ck_assert_int_eq(kc_luks_verify_key(l, key, n, NULL), 0);
        ck_assert_int_eq(kc_luks_verify_key(l, other, n, NULL), -EPERM);
        key[n - 1] ^= 1;
        ck_assert_int_eq(kc_luks_verify_key(l, key, n, NULL), -EPERM);
        key[n - 1] ^= 1;
        ck_assert_int_eq(kc_luks_verify_key(l, key, n - 1, NULL), -EPERM);
        ck_assert_int_eq(kc_luks_verify_key(l, key, n, NULL), 0);
}
END_TEST

/* A base64 member of digest "0" of img's header, decoded into buf: its length. */
static size_t digest_member(struct json_object *d, const char *name, unsigned char *buf) {
        const char *text = json_object_get_string(json_object_object_get(d, name));
        size_t n = strlen(text);
        int got = EVP_DecodeBlock(buf, (const unsigned char *) text, (int) n);

        ck_assert_int_gt(got, 0);
        return (size_t) got - (text[n - 1] == '=') - (text[n - 2] == '=');
}

/* The key check of docs/token.md for key and img's digest, from its description, by OpenSSL's HMAC. */
static void key_check_expected(const char *img, const uint8_t *key, size_t key_size, unsigned char ret[32]) {
        static const char label[] = "kmscrypt key check 1";
        unsigned char msg[sizeof(label) + 8 + 1 + 96 + 96], salt[96], digest[96];
        struct crypt_device *cd = NULL;
        struct json_object *o, *d;
        const char *text = NULL;
        size_t salt_len, n = 0;
        uint64_t iterations;
        unsigned len = 0;

        ck_assert_int_eq(crypt_init(&cd, img), 0);
        ck_assert_int_eq(crypt_load(cd, CRYPT_LUKS2, NULL), 0);
        ck_assert_int_eq(crypt_dump_json(cd, &text, 0), 0);
        o = json_tokener_parse(text);
        ck_assert(json_object_object_get_ex(o, "digests", &d) && json_object_object_get_ex(d, "0", &d));
        iterations = htobe64((uint64_t) json_object_get_int64(json_object_object_get(d, "iterations")));
        salt_len = digest_member(d, "salt", salt);
        ck_assert_uint_eq(digest_member(d, "digest", digest), 32);
        memcpy(msg + n, label, sizeof(label)), n += sizeof(label);
        memcpy(msg + n, &iterations, 8), n += 8;
        msg[n++] = (unsigned char) salt_len;
        memcpy(msg + n, salt, salt_len), n += salt_len;
        memcpy(msg + n, digest, 32), n += 32;
        ck_assert_ptr_nonnull(HMAC(EVP_sha256(), key, (int) key_size, msg, n, ret, &len));
        ck_assert_uint_eq(len, 32);
        json_object_put(o);
        crypt_free(cd);
}

/*
 * The token's key check: format writes the one docs/token.md describes;
 * it decides on its own (a check made with another key for this digest
 * passes that key, just as a digest made with it would: which is why only
 * a writer that has proven the key writes one); a check for another
 * volume's digest, a corrupted one, or none is no verdict: the digest
 * decides.
 */
START_TEST(test_key_check) {
        _cleanup_free_ char *dir = kc_test_tmpdir(), *a = kc_test_image(dir, "a.img", KC_TEST_IMAGE_SIZE),
                            *b = kc_test_image(dir, "b.img", KC_TEST_IMAGE_SIZE);
        _cleanup_secret_ uint8_t *key = kc_test_random_key(64), *other = kc_test_random_key(64);
        _cleanup_(kc_token_clear) struct kc_token tok = {}, ta = {}, tb = {};
        _cleanup_(kc_luks_peek_freep) struct kc_luks_peek *pk = NULL;
        _cleanup_luks_ struct kc_luks *la = NULL, *lb = NULL;
        unsigned char want[32];
        struct kc_token bound = {};
        struct kc_err err = {};

        kc_test_token(&tok, 1);
        struct kc_luks_format_params p = { .device = a, .volume_key = key, .volume_key_size = 64 };
        ck_assert_msg(kc_luks_format(&p, &tok, &err) == 0, "%s", err.msg);
        p = (struct kc_luks_format_params) { .device = b, .volume_key = other, .volume_key_size = 64 };
        ck_assert_msg(kc_luks_format(&p, &tok, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(kc_luks_open(a, NULL, &la, &err), 0);
        ck_assert_int_eq(kc_luks_token_read(la, &ta, NULL, &err), 0);
        ck_assert_int_eq(kc_luks_open(b, NULL, &lb, &err), 0);
        ck_assert_int_eq(kc_luks_token_read(lb, &tb, NULL, &err), 0);

        ck_assert(ta.has_key_check);
        key_check_expected(a, key, 64, want);
        ck_assert_mem_eq(ta.key_check, want, 32);
        ck_assert_int_eq(kc_luks_key_check_verify(la, key, 64, &ta), 0);
        ck_assert_int_eq(kc_luks_key_check_verify(la, other, 64, &ta), -EPERM);
        ck_assert_int_eq(kc_luks_verify_key(la, key, 64, &ta), 0);
        ck_assert_int_eq(kc_luks_verify_key(la, other, 64, &ta), -EPERM);

        /* b's token, check and all, on a: its check names b's digest. */
        ck_assert_int_eq(kc_luks_key_check_verify(la, other, 64, &tb), -EPERM);
        ck_assert_int_eq(kc_luks_verify_key(la, other, 64, &tb), -EPERM);
        ck_assert_int_eq(kc_luks_verify_key(lb, other, 64, &tb), 0);

        /* It decides: made with other for a's digest, it passes other, by the key check alone. */
        key_check_expected(a, other, 64, want);
        memcpy(tb.key_check, want, 32);
        ck_assert_int_eq(kc_luks_verify_key(la, other, 64, &tb), 0);
        ck_assert_int_eq(kc_luks_peek(a, NULL, &pk), 0);
        ck_assert_int_eq(kc_luks_peek_verify_key(pk, other, 64, &tb), 0);
        ck_assert_int_eq(kc_luks_peek_verify_key(pk, other, 64, NULL), -EPERM);
        ck_assert_int_eq(kc_luks_peek_verify_key(pk, key, 64, &ta), 0);

        /* Corrupted, or none: the digest's verdict. */
        ta.key_check[31] ^= 1;
        ck_assert_int_eq(kc_luks_key_check_verify(la, key, 64, &ta), -EPERM);
        ck_assert_int_eq(kc_luks_verify_key(la, key, 64, &ta), 0);
        ck_assert_int_eq(kc_luks_peek_verify_key(pk, key, 64, &ta), 0);
        ta.has_key_check = false;
        ck_assert_int_eq(kc_luks_key_check_verify(la, key, 64, &ta), -ENOENT);
        ck_assert_int_eq(kc_luks_verify_key(la, key, 64, &ta), 0);

        /* bind: proven by the digest first; a refused key leaves no check. */
        ck_assert_int_eq(kc_luks_bind_key(la, key, 64, &bound), 0);
        ck_assert(bound.has_key_check);
        key_check_expected(a, key, 64, want);
        ck_assert_mem_eq(bound.key_check, want, 32);
        ck_assert_int_eq(kc_luks_bind_key(la, other, 64, &bound), -EPERM);
        ck_assert(!bound.has_key_check);
        ck_assert_int_eq(kc_luks_bind_key(la, key, 32, &bound), -EPERM);

        /* A token without one: dump says null, and the attach's verdict is the digest's. */
        {
                _cleanup_json_ struct json_object *o = NULL;
                struct json_object *v = (struct json_object *) 1;

                ck_assert_int_eq(kc_luks_token_write(la, 0, &ta, &err), 0);
                ck_assert_int_eq(kc_luks_dump_json(la, &o), 0);
                ck_assert(json_object_object_get_ex(json_object_object_get(o, "KmscryptToken"), "KeyCheck", &v));
                ck_assert_ptr_null(v);
                ck_assert_int_eq(kc_luks_verify_key(la, key, 64, &ta), 0);
        }
}
END_TEST

START_TEST(test_recovery_keyslot) {
        _cleanup_free_ char *dir = kc_test_tmpdir(), *img = kc_test_image(dir, "a.img", KC_TEST_IMAGE_SIZE);
        _cleanup_free_ char *passfile = NULL;
        _cleanup_secret_ uint8_t *key = kc_test_random_key(64);
        _cleanup_secret_ void *got = NULL, *mk = NULL;
        _cleanup_(kc_token_clear) struct kc_token tok = {};
        _cleanup_luks_ struct kc_luks *l = NULL;
        struct kc_luks_segment seg;
        struct kc_err err = {};
        static const char pass[] = "correct horse battery staple";

        kc_test_token(&tok, 1);
        struct kc_luks_format_params p = {
                .device = img, .volume_key = key, .volume_key_size = 64,
                .recovery_passphrase = pass, .recovery_passphrase_len = strlen(pass),
                .pbkdf = &kc_test_fast_pbkdf,
        };
        ck_assert_msg(kc_luks_format(&p, &tok, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(kc_luks_open(img, NULL, &l, &err), 0);
        ck_assert_int_eq(kc_luks_segment(l, &seg), 0);
        ck_assert_uint_eq(seg.key_size, 64);

        ck_assert_int_eq(kc_luks_volume_key_by_passphrase(l, pass, strlen(pass), &got, &err), 0);
        ck_assert_uint_eq(kc_secret_size(got), 64);
        ck_assert_mem_eq(got, key, 64);
        ck_assert_int_eq(kc_luks_volume_key_by_passphrase(l, "wrong", 5, &mk, &err), -EPERM);
        ck_assert_ptr_null(mk);
        ck_assert_ptr_nonnull(strstr(err.msg, "no keyslot"));

        /* The stock tool opens the recovery keyslot to the very same key. */
        passfile = kc_test_write_file(dir, "pass", pass);
        mk = kc_test_cryptsetup_volume_key(img, NULL, passfile);
        ck_assert_mem_eq(mk, key, 64);

        ck_assert_int_eq(kc_luks_remove_keyslots(l, &err), 1);
        ck_assert_int_lt(kc_luks_volume_key_by_passphrase(l, pass, strlen(pass), &got, &err), 0);
        ck_assert_int_eq(kc_luks_verify_key(l, key, 64, NULL), 0);

        /* A keyslot can be added back from the volume key alone. */
        ck_assert_int_eq(kc_luks_set_pbkdf(l, &kc_test_fast_pbkdf, &err), 0);
        ck_assert_int_ge(kc_luks_add_passphrase(l, key, 64, "again", 5, &err), 0);
        kc_secret_free(TAKE_PTR(got));
        ck_assert_int_eq(kc_luks_volume_key_by_passphrase(l, "again", 5, &got, &err), 0);
        ck_assert_mem_eq(got, key, 64);
}
END_TEST

START_TEST(test_detached_header) {
        _cleanup_free_ char *dir = kc_test_tmpdir(), *img = kc_test_image(dir, "data.img", KC_TEST_IMAGE_SIZE),
                            *hdr = kc_test_image(dir, "hdr.img", 0);  /* new and empty, as a header file usually starts */
        _cleanup_secret_ uint8_t *key = kc_test_random_key(64);
        _cleanup_(kc_token_clear) struct kc_token tok = {}, back = {};
        _cleanup_luks_ struct kc_luks *l = NULL, *nol = NULL;
        struct kc_luks_segment seg;
        struct kc_err err = {};

        kc_test_token(&tok, 1);
        struct kc_luks_format_params p = {
                .device = img, .header = hdr, .volume_key = key, .volume_key_size = 64,
        };
        ck_assert_msg(kc_luks_format(&p, &tok, &err) == 0, "%s", err.msg);

        /* The data device stays raw: still all zeros, no signature. */
        ck_assert(kc_test_file_is_zero(img));
        ck_assert_int_eq(kc_luks_check_blank(img, &err), 0);
        ck_assert_int_eq(kc_luks_open(img, NULL, &nol, &err), -EINVAL);

        ck_assert_int_eq(kc_luks_open(img, hdr, &l, &err), 0);
        ck_assert_int_eq(kc_luks_segment(l, &seg), 0);
        ck_assert_uint_eq(seg.offset, 0);
        ck_assert_str_eq(seg.data_device, img);
        ck_assert_int_eq(kc_luks_token_read(l, &back, NULL, &err), 0);
        ck_assert_int_eq(kc_luks_verify_key(l, key, 64, NULL), 0);
}
END_TEST

START_TEST(test_sector_size) {
        _cleanup_free_ char *dir = kc_test_tmpdir();
        _cleanup_secret_ uint8_t *key = kc_test_random_key(64);
        _cleanup_(kc_token_clear) struct kc_token tok = {};
        static const struct {
                uint64_t size;
                uint32_t requested, want;
                int r;
        } cases[] = {
                { KC_TEST_IMAGE_SIZE, 0, 4096, 0 },
                { KC_TEST_IMAGE_SIZE, 512, 512, 0 },
                { KC_TEST_IMAGE_SIZE, 4096, 4096, 0 },
                { KC_TEST_IMAGE_SIZE + 512, 0, 512, 0 },   /* 4096 would not divide the device */
                { KC_TEST_IMAGE_SIZE, 1000, 0, -EINVAL },
                { KC_TEST_IMAGE_SIZE, 8192, 0, -EINVAL },
                { KC_TEST_IMAGE_SIZE, 256, 0, -EINVAL },
        };

        kc_test_token(&tok, 1);
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                _cleanup_free_ char *name = NULL, *img = NULL;
                _cleanup_luks_ struct kc_luks *l = NULL;
                struct kc_luks_segment seg;
                struct kc_err err = {};

                ck_assert_int_ge(asprintf(&name, "s%zu.img", i), 0);
                img = kc_test_image(dir, name, cases[i].size);
                struct kc_luks_format_params p = {
                        .device = img, .volume_key = key, .volume_key_size = 64,
                        .sector_size = cases[i].requested,
                };
                ck_assert_int_eq(kc_luks_format(&p, &tok, &err), cases[i].r);
                if (cases[i].r < 0) {
                        struct kc_err cerr = {};

                        ck_assert_ptr_nonnull(strstr(err.msg, "sector size"));
                        /* The check format's callers make before the KMS refuses it alike. */
                        ck_assert_int_eq(kc_luks_check_geometry(img, NULL, cases[i].requested, &cerr), cases[i].r);
                        ck_assert_str_eq(cerr.msg, err.msg);
                        ck_assert(kc_test_file_is_zero(img));
                        continue;
                }
                ck_assert_int_eq(kc_luks_open(img, NULL, &l, &err), 0);
                ck_assert_int_eq(kc_luks_segment(l, &seg), 0);
                ck_assert_uint_eq(seg.sector_size, cases[i].want);
        }
}
END_TEST

/*
 * A device with no room for data after the header is refused before
 * libcryptsetup writes (it would grow a small file to 16 MiB and leave a
 * header over nothing): -ENOSPC, naming the device, its size and the least
 * it needs.  A detached header needs one sector of data only.
 */
START_TEST(test_too_small) {
        _cleanup_free_ char *dir = kc_test_tmpdir();
        _cleanup_secret_ uint8_t *key = kc_test_random_key(64);
        _cleanup_(kc_token_clear) struct kc_token tok = {};
        static const uint64_t MIB16 = 16ULL << 20;
        static const struct {
                uint64_t size;
                bool detached;
                uint32_t requested;
                int r;
                const char *want;
        } cases[] = {
                { 0, false, 0, -ENOSPC, "is 0 bytes; it needs at least 16777728 (16777216 for the LUKS2 header, 512 " },
                { 1 << 20, false, 0, -ENOSPC, "is 1048576 bytes; it needs at least 16777728 " },
                { MIB16, false, 0, -ENOSPC, "is 16777216 bytes; it needs at least 16777728 " },
                { MIB16 + 512, false, 0, 0, NULL },
                { MIB16 + 512, false, 4096, -ENOSPC, "it needs at least 16781312 (16777216 for the LUKS2 header, 4096 " },
                { MIB16 + 4096, false, 4096, 0, NULL },
                { 0, true, 0, -ENOSPC, "is 0 bytes; it needs at least 512 (one sector of data; the header is detached)" },
                { 511, true, 0, -ENOSPC, "is 511 bytes; it needs at least 512 " },
                { 512, true, 0, 0, NULL },
                { 2048, true, 4096, -ENOSPC, "is 2048 bytes; it needs at least 4096 " },
        };

        kc_test_token(&tok, 1);
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                _cleanup_free_ char *name = NULL, *hname = NULL, *img = NULL, *h = NULL;
                struct kc_err err = {}, ferr = {};
                uint64_t size;

                ck_assert_int_ge(asprintf(&name, "t%zu.img", i), 0);
                ck_assert_int_ge(asprintf(&hname, "t%zu.hdr", i), 0);
                img = kc_test_image(dir, name, cases[i].size);
                if (cases[i].detached)
                        h = kc_test_image(dir, hname, 0);  /* new and empty, as format's caller creates it */
                ck_assert_int_eq(kc_luks_check_geometry(img, h, cases[i].requested, &err), cases[i].r);
                struct kc_luks_format_params p = {
                        .device = img, .header = h, .volume_key = key, .volume_key_size = 64,
                        .sector_size = cases[i].requested,
                };
                ck_assert_int_eq(kc_luks_format(&p, &tok, &ferr), cases[i].r);
                if (cases[i].r == 0)
                        continue;
                ck_assert_msg(strstr(err.msg, img) && strstr(err.msg, cases[i].want), "case %zu: %s", i, err.msg);
                ck_assert_str_eq(ferr.msg, err.msg);
                /* Nothing written: the file not grown, the header file as it was. */
                ck_assert_int_eq(kc_path_size(img, &size), 0);
                ck_assert_uint_eq(size, cases[i].size);
                ck_assert(kc_test_file_is_zero(img));
                if (h) {
                        ck_assert_int_eq(kc_path_size(h, &size), 0);
                        ck_assert_uint_eq(size, 0);
                }
        }
}
END_TEST

START_TEST(test_signatures) {
        _cleanup_free_ char *dir = kc_test_tmpdir(), *img = kc_test_image(dir, "a.img", KC_TEST_IMAGE_SIZE),
                            *fs = kc_test_image(dir, "fs.img", KC_TEST_IMAGE_SIZE);
        _cleanup_secret_ uint8_t *key = kc_test_random_key(64);
        _cleanup_(kc_token_clear) struct kc_token tok = {};
        struct kc_err err = {};
        uint64_t before;

        kc_test_token(&tok, 1);
        ck_assert_int_eq(kc_luks_check_blank(img, &err), 0);
        struct kc_luks_format_params p = { .device = img, .volume_key = key, .volume_key_size = 64 };
        ck_assert_int_eq(kc_luks_format(&p, &tok, &err), 0);

        /* A LUKS device is refused, and left exactly as it was. */
        before = kc_test_file_hash(img);
        ck_assert_int_eq(kc_luks_check_blank(img, &err), -EEXIST);
        ck_assert_ptr_nonnull(strstr(err.msg, "crypto_LUKS"));
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_luks_format(&p, &tok, &err), -EEXIST);
        ck_assert_uint_eq(kc_test_file_hash(img), before);
        p.force = true;
        ck_assert_int_eq(kc_luks_format(&p, &tok, &err), 0);
        ck_assert_uint_ne(kc_test_file_hash(img), before);

        /* A filesystem too. */
        if (system("command -v mkfs.ext4 >/dev/null 2>&1") == 0) {
                free(kc_test_run("mkfs.ext4 -q -F '%s' 2>&1", fs));
                err = (struct kc_err) {};
                ck_assert_int_eq(kc_luks_check_blank(fs, &err), -EEXIST);
                ck_assert_msg(strstr(err.msg, "ext4"), "%s", err.msg);
        }
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_luks_check_blank("/nonexistent/x.img", &err), -ENOENT);
}
END_TEST

/*
 * Recovery keyslot costs as libcryptsetup judges them.  format: cheap enough
 * to format with (forced iterations), so an accepted cost is proven by a
 * real keyslot, not only by the check.  what: a word the refusal must name.
 */
static const struct {
        struct kc_luks_pbkdf pbkdf;
        bool ok, format;
        const char *what;
} pbkdf_cases[] = {
        { { "pbkdf2", 999, 0 }, false, true, "iteration" },
        { { "pbkdf2", 1000, 0 }, true, true, NULL },
        { { "pbkdf2", 1000, 64 }, false, true, "memory" },
        { { "pbkdf2", 0, 64 }, false, true, "memory" },
        { { "argon2id", 3, 32 }, false, true, "iteration" },
        { { "argon2id", 3, 0 }, false, true, "iteration" },
        { { "argon2id", 4, 32 }, true, true, NULL },
        { { "argon2i", 4, 32 }, true, true, NULL },
        { { "argon2id", 4, 31 }, false, true, "memory" },
        { { "argon2id", 0, 31 }, false, true, "memory" },   /* benchmarked: the floor holds all the same */
        { { "argon2i", 4, 4u << 21 }, false, true, "memory" },
        { { "argon2id", 0, 4u << 20 }, true, false, NULL },   /* 4 GiB: accepted, too costly to format with */
        { { "md5", 1000, 0 }, false, true, "md5" },
        { { NULL, 0, 0 }, true, false, NULL },                /* the defaults */
};

START_TEST(test_pbkdf_check) {
        _cleanup_free_ char *dir = kc_test_tmpdir(), *img = kc_test_image(dir, "a.img", KC_TEST_IMAGE_SIZE),
                            *data = kc_test_image(dir, "data.img", KC_TEST_IMAGE_SIZE),
                            *hdr = kc_test_image(dir, "hdr.img", 0);
        _cleanup_secret_ uint8_t *key = kc_test_random_key(64), *old = kc_test_random_key(64);
        _cleanup_secret_ void *got = NULL;
        _cleanup_(kc_token_clear) struct kc_token tok = {};
        _cleanup_luks_ struct kc_luks *l = NULL;
        const struct kc_luks_pbkdf *pb = &pbkdf_cases[_i].pbkdf;
        struct kc_err err = {};
        struct stat st;
        uint64_t before;
        int r;

        r = kc_luks_pbkdf_check(pb, &err);
        if (pbkdf_cases[_i].ok) {
                ck_assert_msg(r == 0, "%s/%u/%u: %s", pb->type, pb->iterations, pb->max_memory_kb, err.msg);
        } else {
                ck_assert_msg(r == -EINVAL, "%s/%u/%u: %d", pb->type, pb->iterations, pb->max_memory_kb, r);
                ck_assert_ptr_nonnull(strstr(err.msg, "refused by libcryptsetup"));
                ck_assert_msg(strcasestr(err.msg, pbkdf_cases[_i].what), "%s", err.msg);
                ck_assert_ptr_null(strchr(err.msg, '\n'));
        }
        if (!pbkdf_cases[_i].format)
                return;

        /* A volume that is there already: format --force with a refused cost must not touch it. */
        kc_test_token(&tok, 1);
        struct kc_luks_format_params p = {
                .device = img, .volume_key = old, .volume_key_size = 64,
                .recovery_passphrase = "pw", .recovery_passphrase_len = 2, .pbkdf = &kc_test_fast_pbkdf,
        };
        ck_assert_int_eq(kc_luks_format(&p, &tok, &err), 0);
        before = kc_test_file_hash(img);
        p.volume_key = key;
        p.pbkdf = pb;
        p.force = true;
        err = (struct kc_err) {};
        r = kc_luks_format(&p, &tok, &err);
        if (!pbkdf_cases[_i].ok) {
                ck_assert_int_eq(r, -EINVAL);
                ck_assert_ptr_nonnull(strstr(err.msg, "refused by libcryptsetup"));
                ck_assert_uint_eq(kc_test_file_hash(img), before);
                ck_assert_int_eq(kc_luks_open(img, NULL, &l, &err), 0);
                ck_assert_int_eq(kc_luks_volume_key_by_passphrase(l, "pw", 2, &got, &err), 0);
                ck_assert_mem_eq(got, old, 64);

                /* Nor a new detached header file and its data device (the header is not even grown). */
                struct kc_luks_format_params d = {
                        .device = data, .header = hdr, .volume_key = key, .volume_key_size = 64,
                        .recovery_passphrase = "pw", .recovery_passphrase_len = 2, .pbkdf = pb,
                };
                ck_assert_int_eq(kc_luks_format(&d, &tok, &err), -EINVAL);
                ck_assert_int_eq(stat(hdr, &st), 0);
                ck_assert_int_eq(st.st_size, 0);
                ck_assert(kc_test_file_is_zero(data));
                return;
        }
        /* Accepted: the recovery keyslot is really made with that cost. */
        ck_assert_msg(r == 0, "%s", err.msg);
        ck_assert_uint_ne(kc_test_file_hash(img), before);
        ck_assert_int_eq(kc_luks_open(img, NULL, &l, &err), 0);
        ck_assert_int_eq(kc_luks_volume_key_by_passphrase(l, "pw", 2, &got, &err), 0);
        ck_assert_mem_eq(got, key, 64);
}
END_TEST

START_TEST(test_open_refusals) {
        _cleanup_free_ char *dir = kc_test_tmpdir(), *img = kc_test_image(dir, "zero.img", KC_TEST_IMAGE_SIZE),
                            *l1 = kc_test_luks1(dir, "l1.img");
        _cleanup_luks_ struct kc_luks *l = NULL;
        struct kc_err err = {};
        uint64_t before = kc_test_file_hash(l1);

        ck_assert_int_eq(kc_luks_open(img, NULL, &l, &err), -EINVAL);
        ck_assert_msg(strstr(err.msg, "not a LUKS2 device"), "%s", err.msg);
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_luks_open(l1, NULL, &l, &err), -EINVAL);
        ck_assert_msg(strstr(err.msg, "is LUKS1"), "%s", err.msg);
        ck_assert_uint_eq(kc_test_file_hash(l1), before);
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_luks_open("/nonexistent/x.img", NULL, &l, &err), -ENOENT);
        ck_assert_ptr_nonnull(strstr(err.msg, "/nonexistent/x.img"));
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_luks_open(dir, NULL, &l, &err), -ENOTBLK);
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_luks_open(img, "/nonexistent/hdr", &l, &err), -ENOENT);
        ck_assert_ptr_null(l);
}
END_TEST

/*
 * A handle opened only to read loads the same header as one opened to
 * write, and refuses the same devices in the same words.  Its load set no
 * argon2id PBKDF up (the /sys and /proc reads that costs); a writable
 * handle's keyslots still get LUKS2's default.
 */
START_TEST(test_open_read) {
        _cleanup_free_ char *dir = kc_test_tmpdir(), *img = kc_test_image(dir, "a.img", KC_TEST_IMAGE_SIZE),
                            *zero = kc_test_image(dir, "zero.img", KC_TEST_IMAGE_SIZE), *l1 = kc_test_luks1(dir, "l1.img");
        _cleanup_secret_ uint8_t *key = kc_test_random_key(64);
        _cleanup_(kc_token_clear) struct kc_token tok = {}, a = {}, b = {};
        _cleanup_luks_ struct kc_luks *rw = NULL, *ro = NULL;
        struct kc_luks_segment sa, sb;
        const struct crypt_pbkdf_type *pw, *pr;
        struct kc_err err = {};

        kc_test_token(&tok, 1);
        struct kc_luks_format_params p = { .device = img, .label = "pgdata", .volume_key = key, .volume_key_size = 64 };
        ck_assert_msg(kc_luks_format(&p, &tok, &err) == 0, "%s", err.msg);

        ck_assert_int_eq(kc_luks_open(img, NULL, &rw, &err), 0);
        ck_assert_int_eq(kc_luks_open_read(img, NULL, &ro, &err), 0);
        ck_assert_int_eq(kc_luks_segment(rw, &sa), 0);
        ck_assert_int_eq(kc_luks_segment(ro, &sb), 0);
        ck_assert_str_eq(sa.uuid, sb.uuid);
        ck_assert_str_eq(sa.label, sb.label);
        ck_assert_str_eq(sa.cipher, sb.cipher);
        ck_assert_uint_eq(sa.offset, sb.offset);
        ck_assert_uint_eq(sa.sector_size, sb.sector_size);
        ck_assert_int_eq(kc_luks_token_read(rw, &a, NULL, &err), 0);
        ck_assert_int_eq(kc_luks_token_read(ro, &b, NULL, &err), 0);
        ck_assert(kc_test_token_equal(&a, &b));
        ck_assert_int_eq(kc_luks_verify_key(ro, key, 64, NULL), 0);

        pw = crypt_get_pbkdf_type(kc_luks_crypt_device(rw));
        pr = crypt_get_pbkdf_type(kc_luks_crypt_device(ro));
        ck_assert_ptr_nonnull(pw);
        ck_assert_ptr_nonnull(pr);
        ck_assert_str_eq(pw->type, CRYPT_KDF_ARGON2ID);
        ck_assert_str_eq(pr->type, CRYPT_KDF_PBKDF2);

        kc_luks_close(TAKE_PTR(ro));
        ck_assert_int_eq(kc_luks_open_read(zero, NULL, &ro, &err), -EINVAL);
        ck_assert_msg(strstr(err.msg, "not a LUKS2 device"), "%s", err.msg);
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_luks_open_read(l1, NULL, &ro, &err), -EINVAL);
        ck_assert_msg(strstr(err.msg, "is LUKS1"), "%s", err.msg);
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_luks_open_read("/nonexistent/x.img", NULL, &ro, &err), -ENOENT);
        ck_assert_ptr_null(ro);
}
END_TEST

/* Raw token JSON as another tool (or an attacker) could store it, and what reading it must say. */
static const struct {
        const char *json;
        int r;
        const char *want;
} bad_tokens[] = {
        { "{\"type\":\"kmscrypt\",\"keyslots\":[]}", -EINVAL, "no \"kmscrypt_version\"" },
        { "{\"type\":\"kmscrypt\",\"keyslots\":[],\"kmscrypt_version\":1}", -EINVAL, "has no \"provider\"" },
        { "{\"type\":\"kmscrypt\",\"keyslots\":[],\"kmscrypt_version\":2,\"future\":true}", -EPROTONOSUPPORT,
          "unsupported kmscrypt token version 2" },
        { "{\"type\":\"kmscrypt\",\"keyslots\":[],\"kmscrypt_version\":\"1\"}", -EINVAL,
          "\"kmscrypt_version\" is not an integer" },
        { "{\"type\":\"kmscrypt\",\"keyslots\":[],\"kmscrypt_version\":1,\"provider\":\"local\",\"key_id\":\"k\","
          "\"key_version\":\"3\",\"context\":{\"db-id\":\"d\",\"volume-id\":\"v\"},\"wrapped_key\":\"AAAA\"}",
          -EINVAL, "\"key_version\" is not an integer" },
        { "{\"type\":\"kmscrypt\",\"keyslots\":[],\"kmscrypt_version\":1,\"provider\":\"local\",\"key_id\":\"k\","
          "\"key_version\":3,\"context\":{\"db-id\":\"d\",\"volume-id\":\"v\"},\"wrapped_key\":\"AA*A\"}",
          -EINVAL, "not valid base64" },
        { "{\"type\":\"kmscrypt\",\"keyslots\":[],\"kmscrypt_version\":1,\"provider\":\"local\",\"key_id\":\"k\","
          "\"key_version\":3,\"context\":[],\"wrapped_key\":\"AAAA\"}",
          -EINVAL, "\"context\" is not an object" },
        { "{\"type\":\"kmscrypt\",\"keyslots\":[],\"kmscrypt_version\":1,\"provider\":\"local\",\"key_id\":\"k\","
          "\"key_version\":3,\"context\":{\"db-id\":\"d\",\"volume-id\":\"v\"},\"wrapped_key\":\"AAAA\",\"x\":1}",
          -EINVAL, "unknown member \"x\"" },
};

START_TEST(test_bad_token) {
        _cleanup_free_ char *dir = kc_test_tmpdir(), *img = kc_test_luks2_plain(dir, "a.img", NULL);

        for (size_t i = 0; i < ARRAY_SIZE(bad_tokens); i++) {
                _cleanup_luks_ struct kc_luks *l = NULL;
                struct kc_token t = { .key_version = 4242 };
                struct kc_err err = {};
                uint64_t before;

                kc_test_token_set_raw(img, NULL, 0, bad_tokens[i].json);
                before = kc_test_file_hash(img);
                ck_assert_int_eq(kc_luks_open(img, NULL, &l, &err), 0);
                ck_assert_int_eq(kc_luks_token_read(l, &t, NULL, &err), bad_tokens[i].r);
                ck_assert_msg(strstr(err.msg, bad_tokens[i].want), "%s", err.msg);
                ck_assert_ptr_nonnull(strstr(err.msg, "kmscrypt token 0 of"));
                ck_assert_uint_eq(t.key_version, 4242);
                ck_assert_uint_eq(kc_test_file_hash(img), before);
                kc_test_token_set_raw(img, NULL, 0, NULL);
        }
}
END_TEST

START_TEST(test_token_presence) {
        _cleanup_free_ char *dir = kc_test_tmpdir(), *img = kc_test_luks2_plain(dir, "a.img", NULL), *pad = NULL;
        _cleanup_(kc_token_clear) struct kc_token tok = {}, back = {};
        _cleanup_luks_ struct kc_luks *l = NULL;
        struct kc_err err = {};
        int id;

        /* LUKS2 without any token, then with someone else's token only. */
        ck_assert_int_eq(kc_luks_open(img, NULL, &l, &err), 0);
        ck_assert_int_eq(kc_luks_token_read(l, &back, NULL, &err), -ENOENT);
        ck_assert_ptr_nonnull(strstr(err.msg, "has no kmscrypt token"));
        kc_luks_close(TAKE_PTR(l));
        kc_test_token_set_raw(img, NULL, 3, "{\"type\":\"systemd-recovery\",\"keyslots\":[]}");
        ck_assert_int_eq(kc_luks_open(img, NULL, &l, &err), 0);
        ck_assert_int_eq(kc_luks_token_read(l, &back, NULL, &err), -ENOENT);

        /* Write ours; a second add is refused; replacing the other type's token is refused. */
        kc_test_token(&tok, 5);
        ck_assert_int_eq(kc_luks_token_write(l, -1, &tok, &err), 0);
        ck_assert_int_eq(kc_luks_token_write(l, -1, &tok, &err), -EEXIST);
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_luks_token_write(l, 3, &tok, &err), -EINVAL);
        ck_assert_ptr_nonnull(strstr(err.msg, "not the kmscrypt token"));

        /* Replace in place (what a re-wrap does). */
        tok.key_version = 6;
        ck_assert_int_eq(kc_luks_token_write(l, 0, &tok, &err), 0);
        kc_luks_close(TAKE_PTR(l));
        ck_assert_int_eq(kc_luks_open(img, NULL, &l, &err), 0);
        ck_assert_int_eq(kc_luks_token_read(l, &back, &id, &err), 0);
        ck_assert_int_eq(id, 0);
        ck_assert_uint_eq(back.key_version, 6);
        kc_luks_close(TAKE_PTR(l));

        /* Two kmscrypt tokens: nothing could say which counts. */
        {
                _cleanup_free_ char *json = NULL;

                ck_assert_int_eq(kc_token_format(&tok, &json), 0);
                kc_test_token_set_raw(img, NULL, 7, json);
        }
        ck_assert_int_eq(kc_luks_open(img, NULL, &l, &err), 0);
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_luks_token_read(l, &back, NULL, &err), -ENOTUNIQ);
        ck_assert_ptr_nonnull(strstr(err.msg, "more than one kmscrypt token (0 and 7)"));
        kc_luks_close(TAKE_PTR(l));

        /* Oversized: libcryptsetup stores it (the JSON area is 12 KiB), we refuse it. */
        kc_test_token_set_raw(img, NULL, 7, NULL);
        kc_test_token_set_raw(img, NULL, 0, NULL);
        pad = malloc(KC_TOKEN_JSON_MAX + 200);
        ck_assert_ptr_nonnull(pad);
        snprintf(pad, KC_TOKEN_JSON_MAX + 200, "{\"type\":\"kmscrypt\",\"keyslots\":[],\"kmscrypt_version\":1,\"x\":\"%0*d\"}",
                 KC_TOKEN_JSON_MAX, 0);
        kc_test_token_set_raw(img, NULL, 1, pad);
        ck_assert_int_eq(kc_luks_open(img, NULL, &l, &err), 0);
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_luks_token_read(l, &back, NULL, &err), -E2BIG);
        ck_assert_msg(strstr(err.msg, "larger than 8192"), "%s", err.msg);
}
END_TEST

/* Offset of the first s in the first 64 KiB of path. */
static off_t file_find(const char *path, const char *s) {
        static char buf[65536];
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;
        char *at;

        ck_assert_int_ge(fd, 0);
        n = read(fd, buf, sizeof(buf));
        close(fd);
        ck_assert_int_gt(n, 0);
        at = memmem(buf, (size_t) n, s, strlen(s));
        ck_assert_ptr_nonnull(at);
        return at - buf;
}

/* Headers the peek refuses: bytes written at an offset of a good detached header. */
static const struct {
        off_t offset;
        const char *bytes;
        size_t n;
} bad_peeks[] = {
        { 0, "LUKS\xba\xbf", 6 },                                         /* magic */
        { 6, "\0\1", 2 },                                                 /* version 1 */
        { 8, "\0\0\0\0\0\0\x10\0", 8 },                                   /* hdr_size: no JSON area */
        { 8, "\0\0\0\0\x01\0\0\0", 8 },                                   /* hdr_size 16 MiB: not peeked */
        { 8, "\0\0\0\0\0\0\x20\0", 8 },                                   /* hdr_size 8 KiB: under LUKS2's 16 */
        { 256, "\0\0\0\0\0\0\x40\0", 8 },                                 /* hdr_offset: the secondary's */
        { 256, "\x80\0\0\0\0\0\0\0", 8 },                                 /* hdr_offset: its top byte */
        { 168, "0123456789012345678901234567890123456789", 40 },          /* UUID without its NUL */
        { 24, "0123456789012345678901234567890123456789012345678", 48 },  /* label without its NUL */
        { 4096, "[1,2,3]", 8 },                                           /* JSON not an object */
        { 4096, "{\"a\":", 6 },                                           /* JSON cut short */
        { 4096, "{}   ", 5 },                                             /* an object, then the rest of the text */
};

static void copy_file(const char *from, const char *to) {
        free(kc_test_run("cp '%s' '%s'", from, to));
}

/* Bytes at offset of path replaced. */
static void patch_file(const char *path, off_t offset, const void *bytes, size_t n) {
        int fd = open(path, O_WRONLY | O_CLOEXEC);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(pwrite(fd, bytes, n, offset), (ssize_t) n);
        close(fd);
}

/* The peek, segment and token against the loaded header's; key_size aside (the peek leaves it 0). */
static void assert_peek_matches(const char *img, const char *hdr) {
        _cleanup_(kc_luks_peek_freep) struct kc_luks_peek *pk = NULL;
        _cleanup_(kc_token_clear) struct kc_token pt = {}, lt = {};
        _cleanup_luks_ struct kc_luks *l = NULL;
        struct kc_luks_segment ps, ls;
        struct kc_err err = {};

        ck_assert_int_eq(kc_luks_peek(img, hdr, &pk), 0);
        ck_assert_int_eq(kc_luks_peek_segment(pk, &ps), 0);
        ck_assert_int_eq(kc_luks_peek_token(pk, &pt), 0);
        ck_assert_int_eq(kc_luks_open(img, hdr, &l, &err), 0);
        ck_assert_int_eq(kc_luks_segment(l, &ls), 0);
        ck_assert_int_eq(kc_luks_token_read(l, &lt, NULL, &err), 0);
        ck_assert(kc_luks_peek_matches(pk, &ps, l, &ls));
        ck_assert(kc_test_token_equal(&pt, &lt));
        ck_assert_uint_eq(ps.key_size, 0);
        ps.key_size = ls.key_size;
        ck_assert_mem_eq(&ps, &ls, sizeof(ps));
}

/*
 * The peek that attach starts from (agent/attach.c) reads what
 * libcryptsetup loads, and kc_luks_peek_matches() notices when it does not:
 * a header rewritten after the peek, a primary header that libcryptsetup
 * passes over for the secondary.  What the peek cannot read is
 * -EOPNOTSUPP, never a crash or a guess.
 */
START_TEST(test_peek) {
        _cleanup_free_ char *dir = kc_test_tmpdir(), *img = kc_test_image(dir, "a.img", KC_TEST_IMAGE_SIZE),
                            *data = kc_test_image(dir, "d.img", KC_TEST_IMAGE_SIZE), *hdr = kc_test_image(dir, "h.img", 0),
                            *l1 = kc_test_luks1(dir, "l1.img"), *zero = kc_test_image(dir, "z.img", KC_TEST_IMAGE_SIZE);
        _cleanup_secret_ uint8_t *key = kc_test_random_key(64);
        _cleanup_(kc_luks_peek_freep) struct kc_luks_peek *pk = NULL;
        _cleanup_(kc_token_clear) struct kc_token tok = {}, other = {};
        struct kc_luks_segment ps, ls;
        struct kc_err err = {};

        kc_test_token(&tok, 3);
        struct kc_luks_format_params p = { .device = img, .label = "pgdata", .volume_key = key, .volume_key_size = 64 };
        ck_assert_msg(kc_luks_format(&p, &tok, &err) == 0, "%s", err.msg);
        assert_peek_matches(img, NULL);
        p = (struct kc_luks_format_params) { .device = data, .header = hdr, .volume_key = key, .volume_key_size = 64 };
        ck_assert_msg(kc_luks_format(&p, &tok, &err) == 0, "%s", err.msg);
        assert_peek_matches(data, hdr);

        /* Peeked, then the token rewritten: the load no longer matches the peek. */
        ck_assert_int_eq(kc_luks_peek(img, NULL, &pk), 0);
        ck_assert_int_eq(kc_luks_peek_segment(pk, &ps), 0);
        {
                _cleanup_luks_ struct kc_luks *l = NULL;

                kc_test_token(&other, 4);
                ck_assert_int_eq(kc_luks_open(img, NULL, &l, &err), 0);
                ck_assert_int_ge(kc_luks_token_write(l, 0, &other, &err), 0);
                ck_assert_int_eq(kc_luks_segment(l, &ls), 0);
                ck_assert(!kc_luks_peek_matches(pk, &ps, l, &ls));
        }
        assert_peek_matches(img, NULL);
        kc_luks_peek_free(TAKE_PTR(pk));

        /*
         * The primary copy changed behind libcryptsetup's back: its checksum
         * fails, libcryptsetup loads the secondary, the peek read the primary.
         */
        {
                _cleanup_(kc_luks_peek_freep) struct kc_luks_peek *pk2 = NULL;
                _cleanup_luks_ struct kc_luks *l = NULL;

                patch_file(img, file_find(img, "aes-xts-plain64"), "aes-cbc-plain64", 15);
                ck_assert_int_eq(kc_luks_peek(img, NULL, &pk2), 0);
                ck_assert_int_eq(kc_luks_peek_segment(pk2, &ps), 0);
                ck_assert_str_eq(ps.cipher, "aes-cbc-plain64");
                ck_assert_int_eq(kc_luks_open(img, NULL, &l, &err), 0);
                ck_assert_int_eq(kc_luks_segment(l, &ls), 0);
                ck_assert_str_eq(ls.cipher, "aes-xts-plain64");
                ck_assert(!kc_luks_peek_matches(pk2, &ps, l, &ls));
        }

        /*
         * A sector size LUKS2 does not allow, in a primary copy changed
         * behind libcryptsetup's back: the peek reads the header but not
         * the segment, and the attach starts again from the loaded header
         * (it divides by the sector size; 256 once made that a zero).
         */
        for (size_t i = 0; i < 3; i++) {
                static const char *const bad[] = { "   0", " 256", "3072" };
                _cleanup_free_ char *copy = kc_test_image(dir, "ss.img", 0);
                _cleanup_(kc_luks_peek_freep) struct kc_luks_peek *pk3 = NULL;
                off_t at;

                copy_file(hdr, copy);
                at = file_find(copy, "\"sector_size\":4096") + (off_t) strlen("\"sector_size\":");
                patch_file(copy, at, bad[i], 4);
                ck_assert_int_eq(kc_luks_peek(data, copy, &pk3), 0);
                ck_assert_msg(kc_luks_peek_segment(pk3, &ps) == -EOPNOTSUPP, "sector size \"%s\"", bad[i]);
        }

        /* What the peek does not read. */
        ck_assert_int_eq(kc_luks_peek(zero, NULL, &pk), -EOPNOTSUPP);
        ck_assert_int_eq(kc_luks_peek(l1, NULL, &pk), -EOPNOTSUPP);
        ck_assert_int_eq(kc_luks_peek(data, NULL, &pk), -EOPNOTSUPP);
        ck_assert_int_eq(kc_luks_peek("/nonexistent/x.img", NULL, &pk), -ENOENT);
        for (size_t i = 0; i < ARRAY_SIZE(bad_peeks); i++) {
                _cleanup_free_ char *copy = kc_test_image(dir, "bad.img", 0);

                copy_file(hdr, copy);
                patch_file(copy, bad_peeks[i].offset, bad_peeks[i].bytes, bad_peeks[i].n);
                ck_assert_msg(kc_luks_peek(data, copy, &pk) == -EOPNOTSUPP, "bad peek %zu", i);
                ck_assert_ptr_null(pk);
        }

        /*
         * hdr_size 24 KiB, a multiple of 4 KiB but no size LUKS2 has, over
         * a JSON area the peek would otherwise take (the secondary copy at
         * 16 KiB zeroed: the text, then NUL bytes to 24 KiB).
         */
        {
                _cleanup_free_ char *copy = kc_test_image(dir, "24k.img", 0);
                static const uint8_t zero8k[8192];

                copy_file(hdr, copy);
                patch_file(copy, 16384, zero8k, sizeof(zero8k));
                ck_assert_int_eq(kc_luks_peek(data, copy, &pk), 0);
                kc_luks_peek_free(TAKE_PTR(pk));
                patch_file(copy, 8, "\0\0\0\0\0\0\x60\0", 8);
                ck_assert_int_eq(kc_luks_peek(data, copy, &pk), -EOPNOTSUPP);
                ck_assert_ptr_null(pk);
        }
}
END_TEST

/* The JSON area of path's primary header (hdr_size - 4096 bytes at 4096), with the text's length. */
static char *json_area_read(const char *path, size_t *ret_size, size_t *ret_text_len) {
        uint8_t be[8];
        uint64_t hdr_size = 0;
        char *area;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(pread(fd, be, sizeof(be), 8), (ssize_t) sizeof(be));
        for (size_t i = 0; i < sizeof(be); i++)
                hdr_size = hdr_size << 8 | be[i];
        ck_assert_uint_gt(hdr_size, 4096);
        area = malloc(hdr_size - 4096);
        ck_assert_ptr_nonnull(area);
        ck_assert_int_eq(pread(fd, area, hdr_size - 4096, 4096), (ssize_t) (hdr_size - 4096));
        close(fd);
        *ret_size = hdr_size - 4096;
        *ret_text_len = strnlen(area, *ret_size);
        return area;
}

/*
 * The JSON area as cryptsetup's loader reads it (validate_json_area()):
 * '{' first, then the text, then NUL bytes to its end.  The peek refuses
 * any other byte there, as the load refuses that copy, even where the text
 * before the first NUL is a good header.
 */
START_TEST(test_peek_json_area) {
        _cleanup_free_ char *dir = kc_test_tmpdir(), *img = kc_test_luks2_plain(dir, "stock.img", NULL);
        _cleanup_free_ char *area = NULL, *shifted = NULL;
        size_t size, len;

        area = json_area_read(img, &size, &len);
        ck_assert_uint_lt(len + 2, size);
        shifted = malloc(len + 1);
        ck_assert_ptr_nonnull(shifted);
        shifted[0] = ' ';
        memcpy(shifted + 1, area, len);

        const struct {
                off_t offset;
                const void *bytes;
                size_t n;
                int r;
        } cases[] = {
                { 4096 + (off_t) len, "\n", 1, 0 },                      /* whitespace after the object: json-c eats it */
                { 4096 + (off_t) len + 1, "x", 1, -EOPNOTSUPP },        /* a byte after the text's NUL */
                { 4096 + (off_t) len + 1, "\n", 1, -EOPNOTSUPP },       /* even whitespace */
                { 4096 + (off_t) size - 1, "\1", 1, -EOPNOTSUPP },      /* the area's last byte */
                { 4096, shifted, len + 1, -EOPNOTSUPP },                 /* whitespace before the object */
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                _cleanup_free_ char *copy = kc_test_image(dir, "pad.img", 0);
                _cleanup_(kc_luks_peek_freep) struct kc_luks_peek *pk = NULL;

                copy_file(img, copy);
                patch_file(copy, cases[i].offset, cases[i].bytes, cases[i].n);
                ck_assert_msg(kc_luks_peek(copy, NULL, &pk) == cases[i].r, "case %zu", i);
                ck_assert(!pk == (cases[i].r < 0));
        }

        /* No NUL at all: the text, then whitespace to the area's end. */
        {
                _cleanup_free_ char *copy = kc_test_image(dir, "full.img", 0);
                _cleanup_(kc_luks_peek_freep) struct kc_luks_peek *pk = NULL;

                memset(area + len, ' ', size - len);
                copy_file(img, copy);
                patch_file(copy, 4096, area, size);
                ck_assert_int_eq(kc_luks_peek(copy, NULL, &pk), -EOPNOTSUPP);
        }
}
END_TEST

/*
 * A header as stock cryptsetup writes it (its JSON area the text, then NUL
 * bytes to its end) is read by the strict parse, by the peek from the disk
 * and from libcryptsetup's dump once loaded.
 */
START_TEST(test_stock_header_strict) {
        _cleanup_free_ char *dir = kc_test_tmpdir(), *img = kc_test_luks2_plain(dir, "stock.img", NULL);
        _cleanup_(kc_luks_peek_freep) struct kc_luks_peek *pk = NULL;
        _cleanup_luks_ struct kc_luks *l = NULL;
        struct kc_luks_segment ps, ls;
        struct kc_err err = {};

        ck_assert_int_eq(kc_luks_peek(img, NULL, &pk), 0);
        ck_assert_int_eq(kc_luks_peek_segment(pk, &ps), 0);
        ck_assert_msg(kc_luks_open(img, NULL, &l, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(kc_luks_segment(l, &ls), 0);
        ck_assert_str_eq(ps.cipher, ls.cipher);
        ck_assert_uint_eq(ps.offset, ls.offset);
        ck_assert_uint_eq(ps.sector_size, ls.sector_size);
}
END_TEST

START_TEST(test_dump_json) {
        _cleanup_free_ char *dir = kc_test_tmpdir(), *img = kc_test_image(dir, "a.img", KC_TEST_IMAGE_SIZE);
        _cleanup_secret_ uint8_t *key = kc_test_random_key(64);
        _cleanup_(kc_token_clear) struct kc_token tok = {};
        _cleanup_luks_ struct kc_luks *l = NULL;
        struct json_object *o = NULL, *kc, *slots, *tokens;
        struct kc_err err = {};

        kc_test_token(&tok, 9);
        struct kc_luks_format_params p = {
                .device = img, .volume_key = key, .volume_key_size = 64, .label = "L",
                .recovery_passphrase = "pw", .recovery_passphrase_len = 2, .pbkdf = &kc_test_fast_pbkdf,
        };
        ck_assert_int_eq(kc_luks_format(&p, &tok, &err), 0);
        ck_assert_int_eq(kc_luks_open(img, NULL, &l, &err), 0);
        ck_assert_int_eq(kc_luks_dump_json(l, &o), 0);

        ck_assert_str_eq(json_object_get_string(json_object_object_get(o, "Type")), "LUKS2");
        ck_assert_str_eq(json_object_get_string(json_object_object_get(o, "Label")), "L");
        ck_assert_str_eq(json_object_get_string(json_object_object_get(o, "Cipher")), "aes-xts-plain64");
        ck_assert_int_eq(json_object_get_int(json_object_object_get(o, "KeySize")), 512);   /* bits, from the keyslot */
        ck_assert_int_eq(json_object_get_int64(json_object_object_get(o, "DataOffset")), 16 << 20);
        ck_assert_str_eq(json_object_get_string(json_object_object_get(o, "DataSize")), "dynamic");
        ck_assert(json_object_object_get_ex(o, "Header", NULL));
        ck_assert_ptr_null(json_object_object_get(o, "Header"));

        slots = json_object_object_get(o, "Keyslots");
        ck_assert_uint_eq(json_object_array_length(slots), 1);
        ck_assert_str_eq(json_object_get_string(json_object_object_get(json_object_array_get_idx(slots, 0), "Kdf")),
                         "pbkdf2");
        tokens = json_object_object_get(o, "Tokens");
        ck_assert_uint_eq(json_object_array_length(tokens), 1);
        ck_assert_str_eq(json_object_get_string(json_object_object_get(json_object_array_get_idx(tokens, 0), "Type")),
                         "kmscrypt");

        kc = json_object_object_get(o, "KmscryptToken");
        ck_assert_ptr_nonnull(kc);
        ck_assert_int_eq(json_object_get_int(json_object_object_get(kc, "KeyVersion")), 9);
        ck_assert_str_eq(json_object_get_string(json_object_object_get(kc, "KeyRef")), "local:5f0c6a1e-0e8b-4f0d-9a3c-2b1a00112233");
        ck_assert_int_eq(json_object_get_int(json_object_object_get(kc, "CiphertextBlobLength")), (int) tok.wrapped_key_len);
        /* Written by format: 32 bytes in base64. */
        ck_assert_uint_eq(strlen(json_object_get_string(json_object_object_get(kc, "KeyCheck"))), 44);
        ck_assert_str_eq(json_object_get_string(json_object_object_get(json_object_object_get(kc, "EncryptionContext"), "volume-id")),
                         "vol-2");
        json_object_put(o);
}
END_TEST

/*
 * First header loads from eight threads at once, in processes where
 * libcryptsetup has not set its crypto backend up yet (forks of this test,
 * whose runner never calls libcryptsetup), 200 times over.  libcryptsetup
 * builds its backend behind a plain flag; kc_luks_open() makes first loads
 * take turns.  Without that, 2 of 300 such processes lost a load here.
 * In the loop's second pass thread 0 is kmscryptd's warm-up
 * (kc_luks_warm_up()) instead, racing the first loads of the other seven.
 */
#define FIRST_LOAD_THREADS 8
#define FIRST_LOAD_PROCESSES 200

static pthread_barrier_t first_load_barrier;
static atomic_int first_load_failures;

static void *warm_up(void *unused) {
        pthread_barrier_wait(&first_load_barrier);
        kc_luks_warm_up();
        return unused;
}

static void *first_load(void *img) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        struct kc_luks_segment seg;

        pthread_barrier_wait(&first_load_barrier);
        if (kc_luks_open(img, NULL, &l, NULL) < 0 || kc_luks_segment(l, &seg) < 0)
                atomic_fetch_add(&first_load_failures, 1);
        return NULL;
}

static void first_loads_at_once(const char *img, bool with_warm_up) {
        pthread_t t[FIRST_LOAD_THREADS];

        pthread_barrier_init(&first_load_barrier, NULL, FIRST_LOAD_THREADS);
        for (int i = 0; i < FIRST_LOAD_THREADS; i++)
                if (pthread_create(&t[i], NULL, i == 0 && with_warm_up ? warm_up : first_load, (void *) img) != 0)
                        _exit(2);
        for (int i = 0; i < FIRST_LOAD_THREADS; i++)
                pthread_join(t[i], NULL);
        _exit(atomic_load(&first_load_failures) ? 1 : 0);
}

START_TEST(test_first_loads_in_parallel) {
        _cleanup_free_ char *dir = kc_test_tmpdir(), *img = kc_test_luks2_plain(dir, "a.img", NULL);
        unsigned failed = 0;

        for (int i = 0; i < FIRST_LOAD_PROCESSES; i++) {
                pid_t pid = fork();
                int status;

                ck_assert_int_ge(pid, 0);
                if (pid == 0)
                        first_loads_at_once(img, _i == 1);
                ck_assert_int_eq(waitpid(pid, &status, 0), pid);
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        failed++;
        }
        ck_assert_uint_eq(failed, 0);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("luks");
        TCase *tc = tcase_create("luks");

        if (getuid() != 0 && access("/run/cryptsetup", W_OK) < 0)
                /* libcryptsetup takes its metadata locks there. */
                kc_test_skip("needs /run/cryptsetup writable (root)");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_format_and_read);
        tcase_add_test(tc, test_recovery_keyslot);
        tcase_add_loop_test(tc, test_verify_matches_libcryptsetup, 0, ARRAY_SIZE(digest_cases));
        tcase_add_test(tc, test_key_check);
        tcase_add_test(tc, test_detached_header);
        tcase_add_test(tc, test_sector_size);
        tcase_add_test(tc, test_too_small);
        tcase_add_test(tc, test_signatures);
        tcase_add_loop_test(tc, test_pbkdf_check, 0, ARRAY_SIZE(pbkdf_cases));
        tcase_add_loop_test(tc, test_first_loads_in_parallel, 0, 2);
        tcase_add_test(tc, test_open_refusals);
        tcase_add_test(tc, test_open_read);
        tcase_add_test(tc, test_bad_token);
        tcase_add_test(tc, test_token_presence);
        tcase_add_test(tc, test_stock_header_strict);
        tcase_add_test(tc, test_dump_json);
        tcase_add_test(tc, test_peek);
        tcase_add_test(tc, test_peek_json_area);
        suite_add_tcase(s, tc);
        return s;
}
