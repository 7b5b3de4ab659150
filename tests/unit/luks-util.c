/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>
#include <libcryptsetup.h>

#include "lib/macro.h"
#include "lib/secret.h"
#include "tests/unit/luks-util.h"

const struct kc_luks_pbkdf kc_test_fast_pbkdf = { .type = "pbkdf2", .iterations = 1000 };

#define FAST_PBKDF_ARGS "--pbkdf pbkdf2 --pbkdf-force-iterations 1000"

char *kc_test_image(const char *dir, const char *name, uint64_t size) {
        char *path;
        int fd;

        ck_assert_int_ge(asprintf(&path, "%s/%s", dir, name), 0);
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(ftruncate(fd, (off_t) size), 0);
        close(fd);
        return path;
}

char *kc_test_write_file(const char *dir, const char *name, const char *text) {
        char *path;
        FILE *f;

        ck_assert_int_ge(asprintf(&path, "%s/%s", dir, name), 0);
        f = fopen(path, "we");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(fputs(text, f) >= 0, 1);
        ck_assert_int_eq(fclose(f), 0);
        return path;
}

void *kc_test_random_key(size_t n) {
        void *k = kc_secret_alloc(n);

        ck_assert_ptr_nonnull(k);
        ck_assert_int_eq(getrandom(k, n, 0), (ssize_t) n);
        return k;
}

void kc_test_token(struct kc_token *t, uint32_t key_version) {
        struct kc_err err = {};

        *t = (struct kc_token) { .version = KC_TOKEN_VERSION, .key_version = key_version };
        strcpy(t->provider, "local");
        strcpy(t->key_id, "5f0c6a1e-0e8b-4f0d-9a3c-2b1a00112233");
        ck_assert_int_eq(kc_context_parse_kv("db-id=db-1,volume-id=vol-2", &t->context, &err), 0);
        t->wrapped_key_len = 60;
        t->wrapped_key = malloc(60);
        ck_assert_ptr_nonnull(t->wrapped_key);
        for (size_t i = 0; i < 60; i++)
                t->wrapped_key[i] = (uint8_t) (i * 7);
}

bool kc_test_token_equal(const struct kc_token *a, const struct kc_token *b) {
        return a->version == b->version && streq(a->provider, b->provider) && streq(a->key_id, b->key_id) &&
                a->key_version == b->key_version && kc_context_equal(a->context, b->context) &&
                a->wrapped_key_len == b->wrapped_key_len &&
                memcmp(a->wrapped_key, b->wrapped_key, a->wrapped_key_len) == 0;
}

char *kc_test_run(const char *fmt, ...) {
        _cleanup_free_ char *cmd = NULL;
        char *out = NULL;
        size_t size = 0;
        FILE *p, *mem;
        char buf[4096];
        size_t n;
        va_list ap;
        int st;

        va_start(ap, fmt);
        ck_assert_int_ge(vasprintf(&cmd, fmt, ap), 0);
        va_end(ap);
        p = popen(cmd, "re");
        ck_assert_ptr_nonnull(p);
        mem = open_memstream(&out, &size);
        ck_assert_ptr_nonnull(mem);
        while ((n = fread(buf, 1, sizeof(buf), p)) > 0)
                fwrite(buf, 1, n, mem);
        fclose(mem);
        st = pclose(p);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "\"%s\" failed: %s", cmd, out);
        return out;
}

static char *stock_format(const char *dir, const char *name, const char *args) {
        _cleanup_free_ char *passname = NULL, *passfile = NULL;
        char *img = kc_test_image(dir, name, KC_TEST_IMAGE_SIZE);

        ck_assert_int_ge(asprintf(&passname, "%s.pass", name), 0);
        passfile = kc_test_write_file(dir, passname, "old passphrase");
        free(kc_test_run("cryptsetup luksFormat --batch-mode %s --key-file '%s' '%s' 2>&1", args, passfile, img));
        return img;
}

char *kc_test_luks1(const char *dir, const char *name) {
        return stock_format(dir, name, "--type luks1 --pbkdf-force-iterations 1000");
}

char *kc_test_luks2_plain(const char *dir, const char *name, const char *cipher_args) {
        _cleanup_free_ char *args = NULL;

        ck_assert_int_ge(asprintf(&args, "--type luks2 " FAST_PBKDF_ARGS " %s", cipher_args ?: ""), 0);
        return stock_format(dir, name, args);
}

void *kc_test_cryptsetup_volume_key(const char *img, const char *header, const char *passfile) {
        _cleanup_free_ char *out = NULL, *hdr = NULL;
        uint8_t key[512];
        size_t n = 0;
        unsigned bits;
        const char *p;

        if (header)
                ck_assert_int_ge(asprintf(&hdr, "--header '%s'", header), 0);
        out = kc_test_run("cryptsetup luksDump --dump-volume-key --batch-mode %s --key-file '%s' '%s'",
                          hdr ?: "", passfile, img);
        p = strstr(out, "MK bits:");
        ck_assert_ptr_nonnull(p);
        ck_assert_int_eq(sscanf(p + 8, " %u", &bits), 1);
        p = strstr(out, "MK dump:");
        ck_assert_ptr_nonnull(p);
        p += 8;
        while (n < bits / 8) {
                unsigned v;
                int used;

                ck_assert_int_eq(sscanf(p, " %2x%n", &v, &used), 1);
                key[n++] = (uint8_t) v;
                p += used;
        }
        void *k = kc_secret_memdup(key, n);
        kc_wipe(key, sizeof(key));
        kc_wipe(out, strlen(out));
        return k;
}

void kc_test_token_set_raw(const char *img, const char *header, int id, const char *json) {
        struct crypt_device *cd = NULL;

        ck_assert_int_eq(header ? crypt_init_data_device(&cd, header, img) : crypt_init(&cd, img), 0);
        ck_assert_int_eq(crypt_load(cd, CRYPT_LUKS2, NULL), 0);
        ck_assert_int_ge(crypt_token_json_set(cd, id < 0 ? CRYPT_ANY_TOKEN : id, json), 0);
        crypt_free(cd);
}

static int read_all(const char *path, int (*fn)(const uint8_t *buf, size_t n, void *userdata), void *userdata) {
        uint8_t buf[1 << 16];
        ssize_t n;
        int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;

        ck_assert_int_ge(fd, 0);
        while (r == 0 && (n = read(fd, buf, sizeof(buf))) > 0)
                r = fn(buf, (size_t) n, userdata);
        close(fd);
        return r;
}

static int nonzero(const uint8_t *buf, size_t n, void *userdata) {
        for (size_t i = 0; i < n; i++)
                if (buf[i])
                        return 1;
        return 0;
}

bool kc_test_file_is_zero(const char *path) {
        return read_all(path, nonzero, NULL) == 0;
}

static int fnv(const uint8_t *buf, size_t n, void *userdata) {
        uint64_t *h = userdata;

        for (size_t i = 0; i < n; i++)
                *h = (*h ^ buf[i]) * 0x100000001b3ULL;
        return 0;
}

uint64_t kc_test_file_hash(const char *path) {
        uint64_t h = 0xcbf29ce484222325ULL;

        read_all(path, fnv, &h);
        return h;
}
