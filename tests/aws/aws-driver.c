/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Test driver for tests/aws/test-aws-kms.py: one KMS operation per run,
 * through kc_kms_* (so dispatch and the audit record are exercised too).
 *
 *   aws-driver DIR generate  KEYREF CONTEXT OUT-BLOB
 *   aws-driver DIR decrypt   KEYREF CONTEXT BLOB
 *   aws-driver DIR encrypt   KEYREF CONTEXT PLAINTEXT-FILE OUT-BLOB
 *   aws-driver DIR reencrypt SRC-KEYREF SRC-CONTEXT BLOB DST-KEYREF DST-CONTEXT OUT-BLOB
 *   aws-driver DIR describe  KEYREF [TIMES]   (TIMES calls in one session, default 1)
 *   aws-driver DIR disable|enable|cancel-deletion KEYREF
 *   aws-driver DIR schedule-deletion KEYREF DAYS
 *
 * DIR holds the audit log and head.  CONTEXT is "k=v,k=v".  With
 * KMSCRYPT_CONFIG set, that kmscrypt.conf is loaded as the CLI loads it and
 * its aws-* keys reach the provider (kc_config_kms).  Prints
 * "ok ..." (with the SHA-256 of a plaintext, never the plaintext) and the
 * elapsed milliseconds, or "error <ERRNO-NAME> <message>" and exits 1.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>

#include "agent/config.h"
#include "agent/kms.h"
#include "lib/crypto-init.h"
#include "lib/secret.h"

static long elapsed_ms(const struct timespec *t0) {
        struct timespec t;

        clock_gettime(CLOCK_MONOTONIC, &t);
        return (t.tv_sec - t0->tv_sec) * 1000L + (t.tv_nsec - t0->tv_nsec) / 1000000L;
}

static void sha_hex(const void *p, size_t n, char out[65]) {
        uint8_t md[32];

        SHA256(p, n, md);
        for (size_t i = 0; i < 32; i++)
                sprintf(out + 2 * i, "%02x", md[i]);
}

static int read_file(const char *path, uint8_t **ret, size_t *ret_len) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        uint8_t *buf = malloc(65536);
        size_t n;

        if (!f || !buf) {
                free(buf);
                return -errno;
        }
        n = fread(buf, 1, 65536, f);
        *ret = buf;
        *ret_len = n;
        return 0;
}

static int write_file(const char *path, const uint8_t *p, size_t n) {
        _cleanup_fclose_ FILE *f = fopen(path, "we");

        return f && fwrite(p, 1, n, f) == n ? 0 : -EIO;
}

static int fail(int r, const struct kc_err *err) {
        printf("error %s %s\n", strerrorname_np(-r) ?: "?", kc_err_msg(err, r));
        return 1;
}

int main(int argc, char **argv) {
        _cleanup_free_ char *log = NULL, *head = NULL;
        _cleanup_kms_ struct kc_kms *k = NULL;
        _cleanup_context_ struct kc_context *ctx = NULL, *ctx2 = NULL;
        struct kc_kms_request req = { .volume = "aws-driver" };
        struct kc_config conf = {};
        struct kc_kms_config kcfg = {};
        struct kc_err err = {};
        struct timespec t0;
        const char *op;
        char hex[65];
        int r;

        kc_crypto_init();       /* as kmscrypt and kmscryptd: TLS without OpenSSL's legacy cipher table */
        if (argc < 4) {
                fprintf(stderr, "usage: aws-driver DIR OP KEYREF ...\n");
                return 2;
        }
        op = argv[2];
        if (asprintf(&log, "%s/audit.log", argv[1]) < 0 || asprintf(&head, "%s/audit.head", argv[1]) < 0)
                return 2;
        if (getenv("KMSCRYPT_CONFIG")) {
                r = kc_config_load(NULL, &conf, &err);
                if (r < 0)
                        return fail(r, &err);
                kc_config_kms(&conf, &kcfg);
        }
        kcfg.keystore_dir = argv[1];
        kcfg.audit_log = log;
        kcfg.audit_head = head;
        r = kc_kms_open(&kcfg, &k, &err);
        kc_config_done(&conf);
        if (r < 0)
                return fail(r, &err);
        clock_gettime(CLOCK_MONOTONIC, &t0);

        if (streq(op, "generate") && argc == 6) {
                struct kc_data_key dk = {};
                r = kc_context_parse_kv(argv[4], &ctx, &err);
                if (r >= 0)
                        r = kc_kms_generate_data_key(k, &req, argv[3], ctx, 64, &dk, &err);
                if (r < 0)
                        return fail(r, &err);
                sha_hex(dk.plaintext, kc_secret_size(dk.plaintext), hex);
                r = write_file(argv[5], dk.blob, dk.blob_len);
                printf("ok plaintext-sha256 %s key-id %s bytes %zu ms %ld\n", hex, dk.key_id,
                       kc_secret_size(dk.plaintext), elapsed_ms(&t0));
                kc_data_key_clear(&dk);
                return r < 0;
        }
        if (streq(op, "decrypt") && argc == 6) {
                _cleanup_free_ uint8_t *blob = NULL;
                _cleanup_secret_ void *pt = NULL;
                size_t len;
                char id[65];
                uint32_t version;
                r = kc_context_parse_kv(argv[4], &ctx, &err);
                if (r >= 0)
                        r = read_file(argv[5], &blob, &len);
                if (r >= 0)
                        r = kc_kms_decrypt(k, &req, argv[3], blob, len, ctx, &pt, id, &version, &err);
                if (r < 0)
                        return fail(r, &err);
                sha_hex(pt, kc_secret_size(pt), hex);
                printf("ok plaintext-sha256 %s key-id %s ms %ld\n", hex, id, elapsed_ms(&t0));
                return 0;
        }
        if (streq(op, "encrypt") && argc == 7) {
                _cleanup_free_ uint8_t *in = NULL;
                _cleanup_secret_ void *pt = NULL;
                struct kc_data_key dk = {};
                size_t len = 0;
                r = kc_context_parse_kv(argv[4], &ctx, &err);
                if (r >= 0)
                        r = read_file(argv[5], &in, &len);
                /* The key material as the callers hold it: in kc_secret memory. */
                if (r >= 0 && !(pt = kc_secret_memdup(in, len ?: 1)))
                        r = -ENOMEM;
                if (in)
                        kc_wipe(in, len);
                if (r >= 0)
                        r = kc_kms_encrypt(k, &req, argv[3], ctx, pt, len, &dk, &err);
                if (r < 0)
                        return fail(r, &err);
                sha_hex(pt, len, hex);
                r = write_file(argv[6], dk.blob, dk.blob_len);
                printf("ok plaintext-sha256 %s key-id %s plaintext %s ms %ld\n", hex, dk.key_id,
                       dk.plaintext ? "returned" : "none", elapsed_ms(&t0));
                kc_data_key_clear(&dk);
                return r < 0;
        }
        if (streq(op, "reencrypt") && argc == 9) {
                _cleanup_free_ uint8_t *blob = NULL;
                struct kc_data_key dk = {};
                size_t len;
                r = kc_context_parse_kv(argv[4], &ctx, &err);
                if (r >= 0)
                        r = kc_context_parse_kv(argv[7], &ctx2, &err);
                if (r >= 0)
                        r = read_file(argv[5], &blob, &len);
                if (r >= 0)
                        r = kc_kms_re_encrypt(k, &req, argv[3], blob, len, ctx, argv[6], ctx2, &dk, &err);
                if (r < 0)
                        return fail(r, &err);
                r = write_file(argv[8], dk.blob, dk.blob_len);
                printf("ok key-id %s plaintext %s ms %ld\n", dk.key_id, dk.plaintext ? "returned" : "none",
                       elapsed_ms(&t0));
                kc_data_key_clear(&dk);
                return r < 0;
        }
        if (streq(op, "describe") && (argc == 4 || argc == 5)) {
                struct kc_key_info info;
                int times = argc == 5 ? atoi(argv[4]) : 1;
                for (int i = 0; i < times; i++) {
                        r = kc_kms_describe_key(k, &req, argv[3], &info, &err);
                        if (r < 0)
                                return fail(r, &err);
                }
                printf("ok state %s key-id %s arn %s alias %s created %lld deletion %lld ms %ld\n",
                       kc_key_state_to_string(info.state), info.key_id, info.arn, info.alias[0] ? info.alias : "-",
                       (long long) info.created, (long long) info.deletion_date, elapsed_ms(&t0));
                return 0;
        }
        if ((streq(op, "disable") || streq(op, "enable")) && argc == 4) {
                r = kc_kms_set_enabled(k, &req, argv[3], streq(op, "enable"), &err);
                if (r < 0)
                        return fail(r, &err);
                printf("ok ms %ld\n", elapsed_ms(&t0));
                return 0;
        }
        if (streq(op, "schedule-deletion") && argc == 5) {
                time_t date = 0;
                r = kc_kms_schedule_deletion(k, &req, argv[3], (unsigned) atoi(argv[4]), &date, &err);
                if (r < 0)
                        return fail(r, &err);
                printf("ok deletion %lld ms %ld\n", (long long) date, elapsed_ms(&t0));
                return 0;
        }
        if (streq(op, "cancel-deletion") && argc == 4) {
                r = kc_kms_cancel_deletion(k, &req, argv[3], &err);
                if (r < 0)
                        return fail(r, &err);
                printf("ok ms %ld\n", elapsed_ms(&t0));
                return 0;
        }
        fprintf(stderr, "aws-driver: bad operation or arguments\n");
        return 2;
}
