/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "agent/blob.h"
#include "agent/cli/cli.h"
#include "lib/log.h"
#include "lib/secret.h"

/*
 * kmscrypt kms ...: the KMS calls themselves, for scripts.  Binary values
 * are base64 both ways.  A plaintext key is never an argument, and on its
 * way out it is encoded in kc_secret memory and written to stdout with
 * write(2), so no unwiped copy of it is left in this process.
 */

/* The largest base64 blob accepted on the command line or from a file. */
#define BLOB_B64_MAX 8192

struct context_args {
        const char *kv, *json;
};

/* The context from --NAME k=v,... or --NAME-json '{...}': exactly one, and not empty. */
static int parse_context(const struct kc_cli_usage *u, const struct context_args *a, const char *name, bool required,
                         struct kc_context **ret) {
        _cleanup_context_ struct kc_context *c = NULL;
        struct kc_err err = {};
        int r;

        if (a->kv && a->json) {
                kc_cli_usage_error(u, "--%s and --%s-json exclude each other", name, name);
                return -EINVAL;
        }
        if (!a->kv && !a->json) {
                if (!required) {
                        *ret = NULL;
                        return 0;
                }
                kc_cli_usage_error(u, "an encryption context is required: --%s k=v,... or --%s-json '{...}'", name, name);
                return -EINVAL;
        }
        r = a->kv ? kc_context_parse_kv(a->kv, &c, &err) : kc_context_parse_json(a->json, &c, &err);
        if (r < 0) {
                log_error("--%s%s: %s", name, a->kv ? "" : "-json", kc_err_msg(&err, r));
                return -EINVAL;
        }
        if (kc_context_count(c) == 0) {
                log_error("--%s: the encryption context must not be empty", name);
                return -EINVAL;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

/* The blob from --ciphertext-blob B64 or --ciphertext-blob-file FILE ("-": stdin), decoded. */
static int read_blob(const struct kc_cli_usage *u, const char *b64, const char *file, uint8_t **ret, size_t *ret_len) {
        _cleanup_secret_ char *text = NULL;
        size_t len;
        int r;

        if (!!b64 == !!file) {
                kc_cli_usage_error(u, "give exactly one of --ciphertext-blob B64 and --ciphertext-blob-file FILE");
                return -EINVAL;
        }
        if (file) {
                /* As every file an option names (--passphrase-file): a missing one is a bad argument. */
                r = kc_cli_read_option_file("ciphertext-blob-file", file, BLOB_B64_MAX, NULL, &text, &len);
                if (r < 0)
                        return r;
                b64 = text;
        } else
                len = strlen(b64);
        r = kc_cli_unbase64_secret(b64, len, ret, ret_len);
        if (r == -EINVAL)
                return log_error_errno(r, "ciphertext blob is not valid base64");
        return r;
}

/*
 * The KMS says -EINVAL both for a malformed blob and for a malformed key
 * reference.  A blob that does not even parse is refused like a tampered
 * one (KC_EXIT_REFUSED); anything else stays a bad argument.
 */
static int blob_error(int r, const uint8_t *blob, size_t blob_len) {
        struct kc_blob_header h;

        if (r == -EINVAL && kc_blob_peek(blob, blob_len, &h, NULL) < 0)
                return -EBADMSG;
        return r;
}

static int print_result(struct kc_cli *cli, const char *key_id, uint32_t version, const uint8_t *blob,
                        size_t blob_len, const struct kc_context *ctx, const void *plaintext) {
        _cleanup_secret_ char *pt64 = NULL, *blob64 = NULL;
        struct json_object *o;
        int r = 0;

        if (cli->quiet)
                return KC_EXIT_OK;
        if (plaintext) {
                pt64 = kc_cli_base64_secret(plaintext, kc_secret_size(plaintext));
                if (!pt64)
                        return kc_cli_fail(cli, -ENOMEM, NULL, "output");
        }
        if (blob) {
                blob64 = kc_cli_base64_secret(blob, blob_len);
                if (!blob64)
                        return kc_cli_fail(cli, -ENOMEM, NULL, "output");
        }
        if (cli->json) {
                struct json_object *c = NULL;

                o = json_object_new_object();
                if (blob64)
                        json_object_object_add(o, "CiphertextBlob", json_object_new_string(blob64));
                json_object_object_add(o, "KeyId", json_object_new_string(key_id));
                json_object_object_add(o, "KeyVersion", json_object_new_int64(version));
                if (ctx && kc_context_to_json(ctx, &c) >= 0)
                        json_object_object_add(o, "EncryptionContext", c);
                r = kc_cli_print_json_secret(o, pt64 ? "Plaintext" : NULL, pt64);
        } else {
                if (blob64)
                        kc_cli_print_field("CiphertextBlob:", "%s", blob64);
                kc_cli_print_field("KeyId:", "%s", key_id);
                kc_cli_print_field("KeyVersion:", "%u", version);
                if (pt64) {
                        printf("%-16s ", "Plaintext:");
                        r = kc_cli_write_stdout(pt64, strlen(pt64));
                        if (r >= 0)
                                r = kc_cli_write_stdout("\n", 1);
                }
        }
        if (r < 0)
                return kc_cli_fail(cli, r, NULL, "output");
        return KC_EXIT_OK;
}

static int kms_generate_data_key(struct kc_cli *cli, int argc, char **argv) {
        const char *key = NULL, *nbytes_text = NULL;
        struct context_args ca = {};
        const struct kc_cli_option options[] = {
                { .name = "key", .arg = "KEY", .help = "customer master key (id, alias/NAME, local:...)",
                  .value = &key },
                { .name = "context", .arg = "K=V,...", .help = "encryption context ('\\' escapes , = \\)", .value = &ca.kv },
                { .name = "context-json", .arg = "JSON", .help = "encryption context as a JSON object of strings", .value = &ca.json },
                { .name = "number-of-bytes", .arg = "N", .help = "data key length, 1 to 1024 (default 32)", .value = &nbytes_text },
                {},
        };
        const struct kc_cli_usage usage = {
                .synopsis = "kms generate-data-key --key KEY --context K=V,... [--number-of-bytes N]",
                .description = "Generate a data key; print it (Plaintext) and its wrapped form\n"
                               "(CiphertextBlob), both base64.",
                .options = options,
        };
        struct kc_kms_request req = kc_cli_request(cli, NULL);
        _cleanup_context_ struct kc_context *ctx = NULL;
        struct kc_data_key dk = {};
        struct kc_err err = {};
        unsigned nbytes = 32;
        struct kc_kms *kms;
        int nargs, r, status;

        r = kc_cli_parse(cli, argc, argv, &usage, &nargs);
        if (r <= 0)
                return kc_cli_parse_exit(r);
        if (!key)
                return kc_cli_usage_error(&usage, "--key KEY is required");
        if (nbytes_text && kc_cli_parse_uint("number-of-bytes", nbytes_text, 1, KC_BLOB_PLAINTEXT_MAX, &nbytes) < 0)
                return KC_EXIT_USAGE;
        if (parse_context(&usage, &ca, "context", true, &ctx) < 0)
                return KC_EXIT_USAGE;
        r = kc_cli_kms(cli, &kms);
        if (r < 0)
                return kc_cli_exit_status(r);
        r = kc_kms_generate_data_key(kms, &req, key, ctx, nbytes, &dk, &err);
        if (r < 0)
                return kc_cli_fail(cli, r, &err, "generate data key");
        status = print_result(cli, dk.key_id, dk.key_version, dk.blob, dk.blob_len, ctx, dk.plaintext);
        kc_data_key_clear(&dk);
        return status;
}

/* What decrypt and re-encrypt read: a blob, the context it is bound to, and optionally its key. */
struct blob_input {
        const char *b64, *file, *key;   /* key NULL: the one the blob names */
        struct context_args ctx_args;
        struct kc_context *ctx;
        uint8_t *blob;               /* kc_secret */
        size_t blob_len;
};

#define BLOB_INPUT_OPTIONS(in)                                                                          \
        { .name = "ciphertext-blob", .arg = "B64", .help = "wrapped key, base64", .value = &(in).b64 },   \
        { .name = "ciphertext-blob-file", .arg = "FILE",                                                 \
          .help = "read the base64 wrapped key from FILE (-: stdin)", .value = &(in).file },             \
        { .name = "context", .arg = "K=V,...", .help = "encryption context the blob is bound to",          \
          .value = &(in).ctx_args.kv },                                                                  \
        { .name = "context-json", .arg = "JSON", .help = "the same as a JSON object of strings",         \
          .value = &(in).ctx_args.json },                                                                \
        { .name = "key", .arg = "KEY", .help = "refuse unless the blob is wrapped under KEY (default: the blob's)", \
          .value = &(in).key }

static void blob_input_done(struct blob_input *in) {
        kc_context_free(in->ctx);
        kc_secret_free(in->blob);
        *in = (struct blob_input) {};
}

/* Validate the input, then open the KMS.  false: stop with *ret_status (error printed). */
static bool blob_input_load(struct kc_cli *cli, const struct kc_cli_usage *u, struct blob_input *in,
                            struct kc_kms **ret_kms, int *ret_status) {
        int r;

        *ret_status = KC_EXIT_USAGE;
        if (parse_context(u, &in->ctx_args, "context", true, &in->ctx) < 0)
                return false;
        r = read_blob(u, in->b64, in->file, &in->blob, &in->blob_len);
        if (r < 0) {
                *ret_status = r == -EINVAL ? KC_EXIT_USAGE : kc_cli_exit_status(r);
                return false;
        }
        r = kc_cli_kms(cli, ret_kms);
        if (r < 0) {
                *ret_status = kc_cli_exit_status(r);
                return false;
        }
        return true;
}

static int kms_decrypt(struct kc_cli *cli, int argc, char **argv) {
        _cleanup_(blob_input_done) struct blob_input in = {};
        const struct kc_cli_option options[] = {
                BLOB_INPUT_OPTIONS(in),
                {},
        };
        const struct kc_cli_usage usage = {
                .synopsis = "kms decrypt --ciphertext-blob B64 --context K=V,... [--key KEY]",
                .description = "Unwrap a data key and print it (Plaintext, base64).",
                .options = options,
        };
        struct kc_kms_request req = kc_cli_request(cli, NULL);
        _cleanup_secret_ void *plaintext = NULL;
        struct kc_err err = {};
        char key_id[65];
        uint32_t version;
        struct kc_kms *kms;
        int nargs, r, status;

        r = kc_cli_parse(cli, argc, argv, &usage, &nargs);
        if (r <= 0)
                return kc_cli_parse_exit(r);
        if (!blob_input_load(cli, &usage, &in, &kms, &status))
                return status;
        r = kc_kms_decrypt(kms, &req, in.key, in.blob, in.blob_len, in.ctx, &plaintext, key_id, &version, &err);
        if (r < 0)
                return kc_cli_fail(cli, blob_error(r, in.blob, in.blob_len), &err, "decrypt");
        return print_result(cli, key_id, version, NULL, 0, in.ctx, plaintext);
}

static int kms_re_encrypt(struct kc_cli *cli, int argc, char **argv) {
        _cleanup_(blob_input_done) struct blob_input in = {};
        const char *dst_key = NULL;
        struct context_args dst = {};
        const struct kc_cli_option options[] = {
                BLOB_INPUT_OPTIONS(in),
                { .name = "destination-key", .arg = "KEY", .help = "wrap under this key (default: the blob's key), newest version",
                  .value = &dst_key },
                { .name = "destination-context", .arg = "K=V,...", .help = "new encryption context (default: the same)",
                  .value = &dst.kv },
                { .name = "destination-context-json", .arg = "JSON", .help = "the same as a JSON object",
                  .value = &dst.json },
                {},
        };
        const struct kc_cli_usage usage = {
                .synopsis = "kms re-encrypt --ciphertext-blob B64 --context K=V,...\n"
                            "                [--destination-key KEY] [--destination-context K=V,...]",
                .description = "Re-wrap a data key under another key, version or context without\n"
                               "revealing it.",
                .options = options,
        };
        struct kc_kms_request req = kc_cli_request(cli, NULL);
        _cleanup_context_ struct kc_context *dst_ctx = NULL;
        struct kc_data_key dk = {};
        struct kc_err err = {};
        struct kc_kms *kms;
        int nargs, r, status;

        r = kc_cli_parse(cli, argc, argv, &usage, &nargs);
        if (r <= 0)
                return kc_cli_parse_exit(r);
        if (parse_context(&usage, &dst, "destination-context", false, &dst_ctx) < 0)
                return KC_EXIT_USAGE;
        if (!blob_input_load(cli, &usage, &in, &kms, &status))
                return status;
        r = kc_kms_re_encrypt(kms, &req, in.key, in.blob, in.blob_len, in.ctx, dst_key, dst_ctx ?: in.ctx, &dk, &err);
        if (r < 0)
                return kc_cli_fail(cli, blob_error(r, in.blob, in.blob_len), &err, "re-encrypt");
        status = print_result(cli, dk.key_id, dk.key_version, dk.blob, dk.blob_len, dst_ctx ?: in.ctx, NULL);
        kc_data_key_clear(&dk);
        return status;
}

static const struct kc_cli_command kms_commands[] = {
        { .name = "generate-data-key", .summary = "new data key, plaintext and wrapped", .run = kms_generate_data_key },
        { .name = "decrypt", .summary = "unwrap a data key", .run = kms_decrypt },
        { .name = "re-encrypt", .summary = "re-wrap a data key under another key or context", .run = kms_re_encrypt },
};

static int run_kms(struct kc_cli *cli, int argc, char **argv) {
        const struct kc_cli_usage usage = {
                .synopsis = "kms COMMAND ...",
                .description = "Call the KMS directly (base64 in and out), as `aws kms` does.",
                .commands = kms_commands,
                .n_commands = ARRAY_SIZE(kms_commands),
                .stop_at_command = true,
        };
        return kc_cli_dispatch(cli, argc, argv, &usage, kms_commands, ARRAY_SIZE(kms_commands));
}

const struct kc_cli_command kc_cli_cmd_kms = {
        .name = "kms",
        .summary = "generate, decrypt and re-encrypt data keys (for scripts)",
        .run = run_kms,
};
