/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kmscrypt attach | detach | status | list */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "agent/attach.h"
#include "agent/cli/cli.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "lib/log.h"
#include "lib/strv.h"

static int usage_error(const char *cmd, const char *what) {
        log_error("%s: %s (see 'kmscrypt %s --help')", cmd, what, cmd);
        return KC_EXIT_USAGE;
}

static const char attach_help[] =
        "Usage: kmscrypt attach DEVICE|UUID=...|LABEL=... [OPTIONS]\n"
        "\n"
        "Unwrap the volume's data key through its KMS under the encryption context\n"
        "stored in its kmscrypt token, load it into the kernel keyring and create\n"
        "the dm-crypt mapping /dev/mapper/NAME.\n"
        "\n"
        "  -n, --name NAME              mapping name (default: the context's volume-id)\n"
        "      --header FILE            detached LUKS2 header\n"
        "      --expect-context K=V,..  refuse unless the token's context is exactly this\n"
        "      --expect-context-json J  the same as a JSON object\n"
        "  -r, --read-only              read-only mapping\n"
        "      --perf-options LIST      dm-crypt flags, e.g. no_read_workqueue,same_cpu_crypt\n"
        "                               (default: no_read_workqueue,no_write_workqueue; 'none')\n"
        "      --allow-discards         pass discards (TRIM) to the device\n"
        "      --json                   print the result as JSON\n"
        "  -h, --help                   this text\n";

static int parse_expect(const char *kv, const char *json, struct kc_context **ret) {
        struct kc_err err = {};
        int r;

        if (kv && json)
                return log_error_errno(-EINVAL, "give --expect-context or --expect-context-json, not both");
        if (!kv && !json)
                return 0;
        r = kv ? kc_context_parse_kv(kv, ret, &err) : kc_context_parse_json(json, ret, &err);
        if (r < 0)
                return log_error_errno(r, "invalid expected context: %s", kc_err_msg(&err, r));
        return 0;
}

static void print_attach(struct kc_cli *cli, const struct kc_attach_result *res) {
        struct json_object *o;

        if (!cli->json) {
                if (!cli->quiet)
                        printf("%s %s as /dev/mapper/%s\n", res->device,
                               res->already ? "is already attached" : "attached", res->name);
                return;
        }
        o = json_object_new_object();
        json_object_object_add(o, "Name", json_object_new_string(res->name));
        json_object_object_add(o, "Device", json_object_new_string(res->device));
        json_object_object_add(o, "LuksUuid", json_object_new_string(res->luks_uuid));
        json_object_object_add(o, "AlreadyAttached", json_object_new_boolean(res->already));
        kc_cli_print_json(o);
}

static int run_attach(struct kc_cli *cli, int argc, char **argv) {
        enum { ARG_HEADER = 0x100, ARG_EXPECT, ARG_EXPECT_JSON, ARG_PERF, ARG_DISCARDS, ARG_JSON };
        static const struct option options[] = {
                { "name",                required_argument, NULL, 'n' },
                { "header",              required_argument, NULL, ARG_HEADER },
                { "expect-context",      required_argument, NULL, ARG_EXPECT },
                { "expect-context-json", required_argument, NULL, ARG_EXPECT_JSON },
                { "read-only",           no_argument,       NULL, 'r' },
                { "perf-options",        required_argument, NULL, ARG_PERF },
                { "allow-discards",      no_argument,       NULL, ARG_DISCARDS },
                { "json",                no_argument,       NULL, ARG_JSON },
                { "help",                no_argument,       NULL, 'h' },
                {}
        };
        struct kc_attach_params p = { .flags = KC_CRYPT_DEFAULT_FLAGS };
        _cleanup_context_ struct kc_context *expect = NULL;
        const char *expect_kv = NULL, *expect_json = NULL;
        struct kc_attach_result res;
        struct kc_kms_request req;
        struct kc_err err = {};
        struct kc_kms *kms;
        bool discards = false;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "+n:rh", options, NULL)) >= 0)
                switch (c) {
                case 'n': p.name = optarg; break;
                case ARG_HEADER: p.header = optarg; break;
                case ARG_EXPECT: expect_kv = optarg; break;
                case ARG_EXPECT_JSON: expect_json = optarg; break;
                case 'r': p.read_only = true; break;
                case ARG_PERF:
                        if (kc_crypt_flags_parse(optarg, &p.flags) < 0)
                                return usage_error("attach", "invalid --perf-options");
                        break;
                case ARG_DISCARDS: discards = true; break;
                case ARG_JSON: cli->json = true; break;
                case 'h': fputs(attach_help, stdout); return KC_EXIT_OK;
                default: return KC_EXIT_USAGE;
                }
        if (optind != argc - 1)
                return usage_error("attach", "expected exactly one DEVICE");
        p.device = argv[optind];
        if (discards)
                p.flags |= KC_CRYPT_ALLOW_DISCARDS;
        if (parse_expect(expect_kv, expect_json, &expect) < 0)
                return KC_EXIT_USAGE;
        p.expect = expect;

        r = kc_cli_kms(cli, &kms);
        if (r < 0)
                return kc_cli_exit_status(r);
        req = kc_cli_request(cli, NULL);
        r = kc_attach(kms, &req, &p, &res, &err);
        if (r < 0) {
                log_error("cannot attach %s: %s", p.device, kc_err_msg(&err, r));
                return kc_cli_exit_status(r);
        }
        print_attach(cli, &res);
        return KC_EXIT_OK;
}

static const char detach_help[] =
        "Usage: kmscrypt detach NAME [--deferred]\n"
        "\n"
        "Remove the dm-crypt mapping of a kmscrypt volume; the kernel wipes its key.\n"
        "\n"
        "      --deferred   remove when the last user closes it\n"
        "  -h, --help       this text\n";

static int run_detach(struct kc_cli *cli, int argc, char **argv) {
        static const struct option options[] = {
                { "deferred", no_argument, NULL, 'd' },
                { "json",     no_argument, NULL, 'j' },
                { "help",     no_argument, NULL, 'h' },
                {}
        };
        struct kc_err err = {};
        bool deferred = false;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (c) {
                case 'd': deferred = true; break;
                case 'j': cli->json = true; break;
                case 'h': fputs(detach_help, stdout); return KC_EXIT_OK;
                default: return KC_EXIT_USAGE;
                }
        if (optind != argc - 1)
                return usage_error("detach", "expected exactly one NAME");
        r = kc_detach(argv[optind], deferred, &err);
        if (r < 0) {
                log_error("cannot detach %s: %s", argv[optind], kc_err_msg(&err, r));
                return kc_cli_exit_status(r);
        }
        if (!cli->quiet && !cli->json)
                printf("%s %s\n", argv[optind], deferred ? "marked for deferred removal" : "detached");
        return KC_EXIT_OK;
}

static struct json_object *status_json(const struct kc_volume_status *s) {
        struct json_object *o = json_object_new_object(), *ctx = NULL;
        _cleanup_free_ char *flags = NULL;

        (void) kc_crypt_flags_format(s->flags, &flags);
        json_object_object_add(o, "Name", json_object_new_string(s->name));
        json_object_object_add(o, "Device", json_object_new_string(s->device));
        json_object_object_add(o, "LuksUuid", json_object_new_string(s->luks_uuid));
        if (s->has_token) {
                json_object_object_add(o, "Provider", json_object_new_string(s->provider));
                json_object_object_add(o, "KeyId", json_object_new_string(s->key_id));
                json_object_object_add(o, "KeyVersion", json_object_new_int64(s->key_version));
                if (s->context && kc_context_to_json(s->context, &ctx) >= 0)
                        json_object_object_add(o, "EncryptionContext", ctx);
        }
        json_object_object_add(o, "Cipher", json_object_new_string(s->cipher));
        json_object_object_add(o, "KeySize", json_object_new_int64((int64_t) s->key_size * 8));
        json_object_object_add(o, "KeyDescription", json_object_new_string(s->key_description));
        json_object_object_add(o, "SectorSize", json_object_new_int64(s->sector_size));
        json_object_object_add(o, "Offset", json_object_new_int64((int64_t) s->offset));
        json_object_object_add(o, "Size", json_object_new_int64((int64_t) s->size));
        json_object_object_add(o, "Flags", json_object_new_string(strna(flags)));
        json_object_object_add(o, "ReadOnly", json_object_new_boolean(s->read_only));
        json_object_object_add(o, "Suspended", json_object_new_boolean(s->suspended));
        json_object_object_add(o, "OpenCount", json_object_new_int64(s->open_count));
        return o;
}

static void status_text(const struct kc_volume_status *s) {
        _cleanup_free_ char *flags = NULL, *ctx = NULL;

        (void) kc_crypt_flags_format(s->flags, &flags);
        if (s->context)
                (void) kc_context_to_string(s->context, &ctx);
        printf("/dev/mapper/%s is %s%s.\n", s->name, s->suspended ? "suspended" : "active",
               s->open_count > 0 ? " and is in use" : "");
        printf("  device:       %s\n", s->device);
        printf("  luks uuid:    %s\n", s->luks_uuid);
        if (s->has_token) {
                printf("  provider:     %s\n", s->provider);
                printf("  key:          %s (version %" PRIu32 ")\n", s->key_id, s->key_version);
                printf("  context:      %s\n", strna(ctx));
        } else
                printf("  token:        header not readable\n");
        printf("  cipher:       %s\n", s->cipher);
        printf("  keysize:      %" PRIu32 " bits\n", s->key_size * 8);
        printf("  key location: keyring (%s)\n", s->key_description);
        printf("  sector size:  %" PRIu32 "\n", s->sector_size);
        printf("  offset:       %" PRIu64 " sectors\n", s->offset);
        printf("  size:         %" PRIu64 " sectors\n", s->size);
        printf("  mode:         %s\n", s->read_only ? "readonly" : "read/write");
        printf("  flags:        %s\n", flags && *flags ? flags : "none");
        printf("  open count:   %" PRIu32 "\n", s->open_count);
}

/* Status of every name; the exit status is that of the first failure. */
static int print_statuses(struct kc_cli *cli, char **names, const char *header) {
        struct json_object *arr = cli->json ? json_object_new_array() : NULL;
        int status = KC_EXIT_OK;

        for (size_t i = 0; names[i]; i++) {
                struct kc_volume_status s;
                struct kc_err err = {};
                int r = kc_volume_status(names[i], header, &s, &err);

                if (r < 0) {
                        log_error("%s: %s", names[i], kc_err_msg(&err, r));
                        if (status == KC_EXIT_OK)
                                status = kc_cli_exit_status(r);
                        continue;
                }
                if (arr)
                        json_object_array_add(arr, status_json(&s));
                else
                        status_text(&s);
                kc_volume_status_clear(&s);
        }
        if (arr)
                kc_cli_print_json(arr);
        return status;
}

static const char status_help[] =
        "Usage: kmscrypt status [NAME...] [--json] [--header FILE]\n"
        "       kmscrypt list [--json]\n"
        "\n"
        "Show attached kmscrypt volumes: device, LUKS UUID, provider, key and version,\n"
        "encryption context, cipher, key size, sector size, flags, open count, size.\n"
        "Without NAME, every attached kmscrypt volume.  `list` prints names only.\n";

static int run_status_or_list(struct kc_cli *cli, int argc, char **argv, bool list) {
        static const struct option options[] = {
                { "json",   no_argument,       NULL, 'j' },
                { "header", required_argument, NULL, 'H' },
                { "help",   no_argument,       NULL, 'h' },
                {}
        };
        _cleanup_strv_ char **names = NULL;
        const char *header = NULL;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (c) {
                case 'j': cli->json = true; break;
                case 'H': header = optarg; break;
                case 'h': fputs(status_help, stdout); return KC_EXIT_OK;
                default: return KC_EXIT_USAGE;
                }
        if (list && optind < argc)
                return usage_error("list", "takes no arguments");
        if (optind < argc)
                return print_statuses(cli, argv + optind, header);

        r = kc_volume_list(&names);
        if (r < 0) {
                log_error_errno(r, "cannot list device-mapper devices: %m");
                return kc_cli_exit_status(r);
        }
        if (!list)
                return print_statuses(cli, names, NULL);
        if (cli->json) {
                struct json_object *arr = json_object_new_array();
                for (size_t i = 0; names[i]; i++)
                        json_object_array_add(arr, json_object_new_string(names[i]));
                kc_cli_print_json(arr);
        } else
                for (size_t i = 0; names[i]; i++)
                        printf("%s\n", names[i]);
        return KC_EXIT_OK;
}

static int run_status(struct kc_cli *cli, int argc, char **argv) {
        return run_status_or_list(cli, argc, argv, false);
}

static int run_list(struct kc_cli *cli, int argc, char **argv) {
        return run_status_or_list(cli, argc, argv, true);
}

const struct kc_cli_command kc_cli_cmd_attach = {
        .name = "attach", .summary = "unwrap a volume's key and create its dm-crypt mapping", .run = run_attach,
};
const struct kc_cli_command kc_cli_cmd_detach = {
        .name = "detach", .summary = "remove a volume's mapping", .run = run_detach,
};
const struct kc_cli_command kc_cli_cmd_status = {
        .name = "status", .summary = "show attached volumes in detail", .run = run_status,
};
const struct kc_cli_command kc_cli_cmd_list = {
        .name = "list", .summary = "list attached volumes", .run = run_list,
};
