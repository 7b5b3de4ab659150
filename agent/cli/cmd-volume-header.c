/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>
#include <unistd.h>

#include "agent/cli/cli.h"
#include "agent/volume.h"
#include "lib/json-util.h"
#include "lib/log.h"
#include "lib/secret.h"

/*
 * kmscrypt format | adopt | dump: the header side of volumes (agent/volume.h).
 * Passphrases come from files only (never arguments), straight into secret
 * memory.
 */

#define PASSPHRASE_MAX 8192          /* bytes of a passphrase file */
#define KEY_FILE_MAX (1024 * 1024)   /* bytes of a key file, taken whole */

/* The context from --context k=v,... or --context-json '{...}': exactly one. */
static int context_from_options(const char *kv, const char *json, struct kc_context **ret) {
        struct kc_err err = {};
        int r;

        if (!!kv == !!json) {
                log_error("give exactly one of --context K=V,... and --context-json JSON");
                return -EINVAL;
        }
        r = kv ? kc_context_parse_kv(kv, ret, &err) : kc_context_parse_json(json, ret, &err);
        if (r < 0)
                return log_error_errno(-EINVAL, "--context%s: %s", kv ? "" : "-json", kc_err_msg(&err, r));
        return 0;
}

/* A bad context is a usage error, found before any device is looked at. */
static int volume_context(const struct kc_context *ctx) {
        struct kc_err err = {};
        int r = kc_volume_check_context(ctx, &err);

        if (r < 0)
                return log_error_errno(r, "--context: %s", kc_err_msg(&err, r));
        return 0;
}

/*
 * A secret from a file ("-": stdin; a terminal there is read one line, not
 * echoed).  A passphrase file loses one trailing newline, as the passphrase
 * typed at a prompt would; a key file counts byte for byte, as in
 * cryptsetup --key-file.
 */
int kc_cli_secret_from_file(const char *option, const char *path, bool passphrase, char **ret, size_t *ret_len) {
        _cleanup_secret_ char *buf = NULL;
        char prompt[96];
        size_t len;
        int r;

        /* "-" on a terminal is typed, not a file: not echoed, and one line. */
        snprintf(prompt, sizeof(prompt), "%s for --%s: ", passphrase ? "Passphrase" : "Key", option);
        r = kc_cli_read_option_file(option, path, passphrase ? PASSPHRASE_MAX : KEY_FILE_MAX, prompt, &buf, &len);
        if (r < 0)
                return r;
        if (passphrase && len > 0 && buf[len - 1] == '\n')
                buf[--len] = '\0';
        if (len == 0)
                return log_error_errno(-EINVAL, "--%s %s: empty", option, path);
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

/*
 * Parse the options of format or adopt, and check the context and --key,
 * which default-key of kmscrypt.conf stands in for.  false: done, *ret_status
 * says how.
 */
static bool volume_begin(struct kc_cli *cli, int argc, char **argv, const struct kc_cli_usage *u,
                         const char **key, const char *const *kv, const char *const *json, struct kc_context **ret_ctx, int *ret_status) {
        int nargs, r;

        r = kc_cli_parse(cli, argc, argv, u, &nargs);
        if (r <= 0) {
                *ret_status = kc_cli_parse_exit(r);
                return false;
        }
        *ret_status = KC_EXIT_USAGE;
        if (!*key) {
                if (kc_cli_config(cli) < 0)
                        return false;
                *key = cli->config.default_key;
        }
        if (!*key) {
                kc_cli_usage_error(u, "--key KEY is required (kmscrypt.conf sets no default-key)");
                return false;
        }
        if (kc_cli_check_key_ref(u, *key) < 0)
                return false;
        return context_from_options(*kv, *json, ret_ctx) >= 0 && volume_context(*ret_ctx) >= 0;
}

/*
 * Before the KMS is opened, which creates the keystore directory and the
 * audit log: a mistyped device (or header, unless NULL) is refused with
 * nothing left behind, in the words the workflow would use.  KC_EXIT_OK, or
 * the status of the failure line "what: ...".
 */
static int check_paths(struct kc_cli *cli, const char *device, const char *header, const char *what) {
        struct kc_err err = {};
        int r = kc_luks_check_paths(device, header, &err);

        return r < 0 ? kc_cli_fail(cli, r, &err, what) : KC_EXIT_OK;
}

static int print_result(struct kc_cli *cli, const char *verb, const struct kc_volume_ref *ref,
                        const struct kc_volume_result *res, bool adopt) {
        if (cli->quiet)
                return KC_EXIT_OK;
        if (cli->json) {
                _cleanup_json_ struct json_object *o = json_object_new_object();

                /* kc_json_add() fails only for want of memory: what the one message below says. */
                if (!o ||
                    kc_json_add(o, "Device", json_object_new_string(ref->device)) < 0 ||
                    (ref->header && kc_json_add(o, "Header", json_object_new_string(ref->header)) < 0) ||
                    kc_json_add(o, "LuksUuid", json_object_new_string(res->uuid)) < 0 ||
                    kc_json_add(o, "KeyId", json_object_new_string(res->key_id)) < 0 ||
                    kc_json_add(o, "KeyVersion", json_object_new_int64(res->key_version)) < 0 ||
                    kc_json_add(o, "TokenId", json_object_new_int(res->token_id)) < 0 ||
                    (!adopt && kc_json_add(o, "RecoveryKeyslot", json_object_new_int(res->recovery_keyslot)) < 0) ||
                    (adopt && kc_json_add(o, "RemovedKeyslots", json_object_new_int(res->removed_keyslots)) < 0))
                        return kc_cli_fail(cli, -ENOMEM, NULL, "output");
                kc_cli_print_json(TAKE_PTR(o));
                return KC_EXIT_OK;
        }
        printf("%s %s\n", verb, ref->device);
        if (ref->header)
                kc_cli_print_field("Header:", "%s", ref->header);
        kc_cli_print_field("UUID:", "%s", res->uuid);
        /* "Key" is a key reference, as dump's and config check's are (docs/token.md); the id alone is KeyId in JSON. */
        kc_cli_print_field("Key:", "%s:%s (version %u)", res->provider, res->key_id, res->key_version);
        kc_cli_print_field("Token:", "%d", res->token_id);
        if (!adopt && res->recovery_keyslot >= 0)
                kc_cli_print_field("Recovery slot:", "%d", res->recovery_keyslot);
        if (adopt && res->removed_keyslots > 0)
                kc_cli_print_field("Removed slots:", "%d", res->removed_keyslots);
        return KC_EXIT_OK;
}

/* The PBKDFs of a recovery keyslot, as cryptsetup's --pbkdf names them. */
static const char *const pbkdf_types[] = {
        "argon2id",     /* the default */
        "argon2i",
        "pbkdf2",
};

/*
 * --pbkdf TYPE --pbkdf-force-iterations N --pbkdf-memory KB, as in cryptsetup.
 * Only the syntax is ours; whether the costs are acceptable is libcryptsetup's
 * to say (kc_luks_pbkdf_check), asked here so that a bad cost is a usage
 * error before any KMS is opened or anything written.
 */
int kc_cli_pbkdf_from_options(const struct kc_cli_usage *u, const char *type, const char *iterations,
                              const char *memory, struct kc_luks_pbkdf *ret) {
        struct kc_luks_pbkdf pb = { .type = type };
        struct kc_err err = {};
        size_t t = 0;

        while (type && t < ARRAY_SIZE(pbkdf_types) && !streq(type, pbkdf_types[t]))
                t++;
        if (t == ARRAY_SIZE(pbkdf_types)) {
                kc_cli_usage_error(u, "--pbkdf: expected argon2id, argon2i or pbkdf2, got \"%s\"", type);
                return -EINVAL;
        }
        /* 0 would mean "not given" (benchmark, default memory): only a positive cost can be forced. */
        if (iterations && kc_cli_parse_uint("pbkdf-force-iterations", iterations, 1, UINT32_MAX, &pb.iterations) < 0)
                return -EINVAL;
        if (memory && kc_cli_parse_uint("pbkdf-memory", memory, 1, UINT32_MAX, &pb.max_memory_kb) < 0)
                return -EINVAL;
        if (kc_luks_pbkdf_check(&pb, &err) < 0) {
                kc_cli_usage_error(u, "--pbkdf costs: %s", err.msg);
                return -EINVAL;
        }
        *ret = pb;
        return 0;
}

/* The failure line of format; a signature it refuses says how to go on, on the same line. */
static int format_fail(struct kc_cli *cli, int r, struct kc_err *err, bool force) {
        if (r == -EEXIST && !force) {
                /* The hint always fits, the message whole as a rule. */
                static const char hint[] = "; --force destroys it";
                char why[sizeof(err->msg)];

                snprintf(why, sizeof(why), "%.*s%s", (int) (sizeof(why) - sizeof(hint)), err->msg, hint);
                snprintf(err->msg, sizeof(err->msg), "%s", why);
        }
        return kc_cli_fail(cli, r, err, "format");
}

static int volume_format(struct kc_cli *cli, int argc, char **argv) {
        const char *key = NULL, *kv = NULL, *json = NULL, *header = NULL, *sector = NULL, *passfile = NULL,
                   *label = NULL, *pbkdf = NULL, *iterations = NULL, *memory = NULL;
        bool force = false;
        const struct kc_cli_option options[] = {
                { .name = "key", .arg = "KEY", .help = "customer master key (id, alias/NAME, local:...)", .value = &key },
                { .name = "context", .arg = "K=V,...", .help = "encryption context; must name db-id and volume-id", .value = &kv },
                { .name = "context-json", .arg = "JSON", .help = "the same as a JSON object of strings", .value = &json },
                { .name = "header", .arg = "FILE", .help = "detached LUKS2 header (created if missing)", .value = &header },
                { .name = "sector-size", .arg = "BYTES", .help = "512 or 4096 (default: 4096 where the device allows)", .value = &sector },
                { .name = "recovery-passphrase-file", .arg = "FILE", .help = "add a recovery keyslot with this passphrase (-: stdin)", .value = &passfile },
                { .name = "label", .arg = "LABEL", .help = "LUKS2 label", .value = &label },
                { .name = "force", .help = "format over an existing signature (destroys it)", .flag = &force },
                { .name = "pbkdf", .arg = "TYPE", .help = "recovery keyslot PBKDF: argon2id (default), argon2i, pbkdf2", .value = &pbkdf },
                { .name = "pbkdf-force-iterations", .arg = "N", .help = "recovery keyslot PBKDF iterations, no benchmark", .value = &iterations },
                { .name = "pbkdf-memory", .arg = "KB", .help = "recovery keyslot argon2 memory cost", .value = &memory },
                {},
        };
        const struct kc_cli_usage usage = {
                .synopsis = "format DEVICE --key KEY --context db-id=...,volume-id=... [OPTIONS]",
                .description = "Make DEVICE a kmscrypt volume: a LUKS2 aes-xts-plain64 header whose\n"
                               "512-bit data key the KMS generates and wraps under KEY, bound to the\n"
                               "context.  Refuses a device that carries any signature unless --force.\n"
                               "Refuses a device too small for the LUKS2 header (16 MiB; none with\n"
                               "--header) and one sector of data, before the KMS is asked for a key.",
                .options = options,
                .min_args = 1, .max_args = 1,
        };
        _cleanup_context_ struct kc_context *ctx = NULL;
        _cleanup_secret_ char *pass = NULL;
        struct kc_luks_pbkdf pb;
        struct kc_volume_format_params p;
        struct kc_volume_result res;
        struct kc_err err = {};
        struct kc_kms *kms;
        unsigned sector_size = 0;
        size_t pass_len = 0;
        int status, r;

        if (!volume_begin(cli, argc, argv, &usage, &key, &kv, &json, &ctx, &status))
                return status;
        if (kc_cli_pbkdf_from_options(&usage, pbkdf, iterations, memory, &pb) < 0)
                return KC_EXIT_USAGE;
        if (sector && (kc_cli_parse_uint("sector-size", sector, 512, 4096, &sector_size) < 0 ||
                       (sector_size != 512 && sector_size != 4096))) {
                log_error("--sector-size: expected 512 or 4096");
                return KC_EXIT_USAGE;
        }
        if (passfile && kc_cli_secret_from_file("recovery-passphrase-file", passfile, true, &pass, &pass_len) < 0)
                return KC_EXIT_USAGE;
        /* Not the header: format creates it when missing. */
        status = check_paths(cli, argv[1], NULL, "format");
        if (status != KC_EXIT_OK)
                return status;

        p = (struct kc_volume_format_params) {
                .ref = { .device = argv[1], .header = header },
                .key_ref = key,
                .context = ctx,
                .sector_size = sector_size,
                .label = label,
                .recovery_passphrase = pass,
                .recovery_passphrase_len = pass_len,
                .pbkdf = &pb,
                .force = force,
        };
        /* A signature or a read-only device too, before the KMS opens (check_paths()). */
        r = kc_volume_format_check(&p, &err);
        if (r < 0)
                return format_fail(cli, r, &err, force);
        r = kc_cli_kms(cli, &kms);
        if (r < 0)
                return kc_cli_exit_status(r);
        r = kc_volume_format(kms, &cli->caller, &p, &res, &err);
        if (r < 0)
                return format_fail(cli, r, &err, force);
        return print_result(cli, "Formatted", &p.ref, &res, false);
}

static int volume_adopt(struct kc_cli *cli, int argc, char **argv) {
        const char *key = NULL, *kv = NULL, *json = NULL, *header = NULL, *passfile = NULL, *keyfile = NULL;
        bool remove = false;
        const struct kc_cli_option options[] = {
                { .name = "key", .arg = "KEY", .help = "customer master key to wrap the volume key under", .value = &key },
                { .name = "context", .arg = "K=V,...", .help = "encryption context; must name db-id and volume-id", .value = &kv },
                { .name = "context-json", .arg = "JSON", .help = "the same as a JSON object of strings", .value = &json },
                { .name = "header", .arg = "FILE", .help = "detached LUKS2 header", .value = &header },
                { .name = "passphrase-file", .arg = "FILE", .help = "passphrase of an existing keyslot (-: stdin; one trailing newline dropped)", .value = &passfile },
                { .name = "key-file", .arg = "FILE", .help = "key file of an existing keyslot (taken byte for byte)", .value = &keyfile },
                { .name = "remove-passphrase", .help = "remove every keyslot once the kmscrypt token is verified", .flag = &remove },
                {},
        };
        const struct kc_cli_usage usage = {
                .synopsis = "adopt DEVICE --key KEY --context K=V,... (--passphrase-file FILE | --key-file FILE)\n"
                            "      [--remove-passphrase]",
                .description = "Put an existing LUKS2 volume under kmscrypt: unlock its volume key once,\n"
                               "wrap it with the KMS and store the kmscrypt token.  The data is not touched;\n"
                               "keyslots stay unless --remove-passphrase.",
                .options = options,
                .min_args = 1, .max_args = 1,
        };
        _cleanup_context_ struct kc_context *ctx = NULL;
        _cleanup_secret_ char *pass = NULL;
        struct kc_volume_adopt_params p;
        struct kc_volume_result res;
        struct kc_err err = {};
        struct kc_kms *kms;
        size_t pass_len = 0;
        int status, r;

        if (!volume_begin(cli, argc, argv, &usage, &key, &kv, &json, &ctx, &status))
                return status;
        if (!!passfile == !!keyfile)
                return kc_cli_usage_error(&usage, "give exactly one of --passphrase-file FILE and --key-file FILE");
        if (kc_cli_secret_from_file(passfile ? "passphrase-file" : "key-file", passfile ?: keyfile, !!passfile,
                             &pass, &pass_len) < 0)
                return KC_EXIT_USAGE;
        status = check_paths(cli, argv[1], header, "adopt");
        if (status != KC_EXIT_OK)
                return status;

        p = (struct kc_volume_adopt_params) {
                .ref = { .device = argv[1], .header = header },
                .key_ref = key,
                .context = ctx,
                .passphrase = pass,
                .passphrase_len = pass_len,
                .remove_passphrase = remove,
        };
        /* A header adopt cannot take too (not LUKS2, a kmscrypt token already), before the KMS opens. */
        r = kc_volume_adopt_check(&p, &err);
        if (r >= 0) {
                r = kc_cli_kms(cli, &kms);
                if (r < 0)
                        return kc_cli_exit_status(r);
                r = kc_volume_adopt(kms, &cli->caller, &p, &res, &err);
        }
        if (r < 0)
                return kc_cli_fail(cli, kc_cli_header_error(r), &err, "adopt");
        return print_result(cli, "Adopted", &p.ref, &res, true);
}

/* ---- dump ---- */

static const char *jstr(struct json_object *o, const char *name) {
        return json_object_get_string(json_object_object_get(o, name));
}

static void print_list(const char *name, struct json_object *a, const char *second) {
        size_t n = json_object_array_length(a);

        if (n == 0) {
                kc_cli_print_field(name, "none");
                return;
        }
        for (size_t i = 0; i < n; i++) {
                struct json_object *e = json_object_array_get_idx(a, i);

                kc_cli_print_field(i == 0 ? name : "", "%d: %s%s%s%s", json_object_get_int(json_object_object_get(e, "Id")),
                                   strna(jstr(e, "Type")), second ? " (" : "", second ? strna(jstr(e, second)) : "",
                                   second ? ")" : "");
        }
}

/* Text form of kc_volume_dump(): the facts, and of the token what is not the blob. */
static void print_dump(struct json_object *o) {
        struct json_object *kc = json_object_object_get(o, "KmscryptToken"), *ks = json_object_object_get(o, "KeySize");

        kc_cli_print_field("Device:", "%s", strna(jstr(o, "Device")));
        kc_cli_print_field("Header:", "%s", jstr(o, "Header") ?: "(on the device)");
        kc_cli_print_field("Type:", "%s", strna(jstr(o, "Type")));
        kc_cli_print_field("UUID:", "%s", strna(jstr(o, "LuksUuid")));
        kc_cli_print_field("Label:", "%s", jstr(o, "Label") ?: "(none)");
        kc_cli_print_field("Cipher:", "%s", strna(jstr(o, "Cipher")));
        if (ks)
                kc_cli_print_field("Key size:", "%s bits", jstr(o, "KeySize"));
        else
                kc_cli_print_field("Key size:", "(not recorded without a keyslot)");
        kc_cli_print_field("Sector size:", "%s", strna(jstr(o, "SectorSize")));
        kc_cli_print_field("Data offset:", "%s bytes", strna(jstr(o, "DataOffset")));
        kc_cli_print_field("Data size:", "%s", strna(jstr(o, "DataSize")));
        print_list("Keyslots:", json_object_object_get(o, "Keyslots"), "Kdf");
        print_list("Tokens:", json_object_object_get(o, "Tokens"), NULL);
        if (!kc)
                return;
        kc_cli_print_field("kmscrypt token:", "%s", strna(jstr(kc, "TokenId")));
        kc_cli_print_field("  Version:", "%s", strna(jstr(kc, "Version")));
        kc_cli_print_field("  Provider:", "%s", strna(jstr(kc, "Provider")));
        kc_cli_print_field("  Key:", "%s (version %s)", strna(jstr(kc, "KeyRef")), strna(jstr(kc, "KeyVersion")));
        kc_cli_print_field("  Context:", "%s", json_object_to_json_string_ext(json_object_object_get(kc, "EncryptionContext"),
                                                                            JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        kc_cli_print_field("  Wrapped key:", "%s bytes", strna(jstr(kc, "CiphertextBlobLength")));
        kc_cli_print_field("  Key check:", "%s", json_object_get_string(json_object_object_get(kc, "KeyCheck")) ?
                           "yes (attach proves the key without the digest's PBKDF2)" : "none (attach uses the LUKS2 digest)");
}

static int volume_dump(struct kc_cli *cli, int argc, char **argv) {
        const char *header = NULL;
        const struct kc_cli_option options[] = {
                { .name = "header", .arg = "FILE", .help = "detached LUKS2 header", .value = &header },
                {},
        };
        const struct kc_cli_usage usage = {
                .synopsis = "dump DEVICE [--header FILE]",
                .description = "Show the LUKS2 header and the kmscrypt token, without asking any KMS.\n"
                               "Fails (after the header facts) when there is no valid kmscrypt token.",
                .options = options,
                .min_args = 1, .max_args = 1,
        };
        struct kc_volume_ref ref = {};
        struct json_object *o = NULL;
        struct kc_err err = {}, terr = {};
        int nargs, r;

        r = kc_cli_parse(cli, argc, argv, &usage, &nargs);
        if (r <= 0)
                return kc_cli_parse_exit(r);
        ref = (struct kc_volume_ref) { .device = argv[1], .header = header };
        r = kc_volume_dump(&ref, &o, &terr, &err);
        if (r < 0)
                return kc_cli_fail(cli, kc_cli_header_error(r), &err, "dump");
        if (cli->quiet)
                json_object_put(o);
        else if (cli->json)
                kc_cli_print_json(o);
        else {
                print_dump(o);
                json_object_put(o);
        }
        fflush(stdout);
        if (terr.error < 0)
                return kc_cli_fail(cli, kc_cli_header_error(terr.error), &terr, "dump");
        return KC_EXIT_OK;
}

const struct kc_cli_command kc_cli_cmd_format = {
        .name = "format",
        .summary = "make a device a kmscrypt volume (LUKS2, data key from the KMS)",
        .run = volume_format,
};

const struct kc_cli_command kc_cli_cmd_adopt = {
        .name = "adopt",
        .summary = "put an existing LUKS2 volume under a KMS key",
        .run = volume_adopt,
};

const struct kc_cli_command kc_cli_cmd_dump = {
        .name = "dump",
        .summary = "show a volume's LUKS2 header and kmscrypt token (no KMS)",
        .run = volume_dump,
};
