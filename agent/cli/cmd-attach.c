/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kmscrypt attach | detach | status | list */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "agent/attach.h"
#include "agent/cli/cli.h"
#include "agent/client.h"
#include "agent/daemon/protocol.h"
#include "agent/daemon/volumes.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "lib/log.h"
#include "lib/strv.h"

static int usage_error(const char *cmd, const char *what) {
        log_error("%s: %s (see 'kmscrypt %s --help')", cmd, what, cmd);
        return KC_EXIT_USAGE;
}

static const char attach_help[] =
        "Usage: kmscrypt attach DEVICE|UUID=...|LABEL=... [OPTIONS]\n"
        "       kmscrypt attach VOLUME        (a name in the volumes file)\n"
        "       kmscrypt attach --all         (every volume of the volumes file)\n"
        "\n"
        "Unwrap the volume's data key through its KMS under the encryption context\n"
        "stored in its kmscrypt token, load it into the kernel keyring and create\n"
        "the dm-crypt mapping /dev/mapper/NAME.  When kmscryptd runs, the agent does\n"
        "it (and keeps retrying a volume whose KMS or device is away); otherwise\n"
        "kmscrypt does it itself, with the same output.\n"
        "\n"
        "      --all                    attach every configured volume that is not attached\n"
        "      --volumes FILE           volumes file without the agent (default " KC_VOLUMES_FILE ")\n"
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

/* The agent when it runs and this user may reach it; NULL: work directly. */
static struct kc_client *open_agent(void) {
        struct kc_client *c = NULL;
        int r = kc_client_open(NULL, &c);

        if (r < 0)
                log_debug_errno(r, "cannot reach kmscryptd, working directly: %m");
        return c;
}

/* A bare word that is neither a path nor a TAG=value names a volume of the volumes file. */
static bool is_volume_name(const char *arg) {
        return !strchr(arg, '/') && !strchr(arg, '=');
}

static int load_volumes(const char *path, struct kc_volumes **ret) {
        struct kc_err err = {};
        int r = kc_volumes_load(path, ret, &err);

        if (r == -ENOENT)
                return kc_volumes_parse("", 0, path, ret, &err);
        if (r < 0)
                log_error("%s", kc_err_msg(&err, r));
        return r;
}

static void params_from_conf(const struct kc_volume_conf *v, struct kc_attach_params *p) {
        *p = (struct kc_attach_params) {
                .device = v->device, .header = v->header, .name = v->name, .expect = v->context,
                .read_only = v->read_only, .flags = v->flags,
        };
}

/* Without the agent: one try of each configured volume, in file order. */
static int attach_all_direct(struct kc_cli *cli, const char *path, struct kc_agent_volume **ret, size_t *ret_n) {
        _cleanup_volumes_ struct kc_volumes *vs = NULL;
        struct kc_agent_volume *out;
        struct kc_kms *kms;
        int r;

        r = load_volumes(path, &vs);
        if (r < 0)
                return r;
        out = calloc(vs->n ? vs->n : 1, sizeof(*out));
        if (!out)
                return -ENOMEM;
        r = vs->n ? kc_cli_kms(cli, &kms) : 0;
        for (size_t i = 0; i < vs->n; i++) {
                const struct kc_volume_conf *v = &vs->volumes[i];
                struct kc_kms_request req = kc_cli_request(cli, NULL);
                struct kc_attach_params p;
                struct kc_attach_result res;
                struct kc_err err = {};
                int k = r;

                params_from_conf(v, &p);
                if (k >= 0)
                        k = kc_attach(kms, &req, &p, &res, &err);
                kc_strscpy(out[i].name, sizeof(out[i].name), v->name);
                kc_strscpy(out[i].device, sizeof(out[i].device), v->device);
                out[i].state = k >= 0 ? KC_VOLUME_ATTACHED : KC_VOLUME_FAILED;
                out[i].since = time(NULL);
                out[i].attempts = 1;
                out[i].error = k < 0 ? k : 0;
                out[i].nofail = v->nofail;
                if (k < 0)
                        kc_strscpy(out[i].reason, sizeof(out[i].reason), kc_err_msg(&err, k));
        }
        *ret = out;
        *ret_n = vs->n;
        return 0;
}

static void print_agent_volume(const struct kc_agent_volume *v) {
        char since[32], next[32];

        kc_cli_format_time(v->since, since);
        kc_cli_format_time(v->next_try, next);
        printf("%s: %s since %s", v->name, kc_volume_state_to_string(v->state), since);
        if (v->state == KC_VOLUME_WAITING)
                printf(" (attempt %u, next try %s)", v->attempts, next);
        if (v->error < 0)
                printf(": %s", v->reason);
        printf("%s\n", v->nofail ? " [nofail]" : "");
}

/* Print the outcome of attach --all; the status is that of the first volume that is not nofail and not attached. */
static int print_attach_all(struct kc_cli *cli, const struct kc_agent_volume *v, size_t n) {
        struct json_object *arr = cli->json ? json_object_new_array() : NULL;
        int status = KC_EXIT_OK;

        for (size_t i = 0; i < n; i++) {
                if (arr)
                        json_object_array_add(arr, kc_agent_volume_to_json(&v[i]));
                else if (!cli->quiet)
                        print_agent_volume(&v[i]);
                if (status == KC_EXIT_OK && !v[i].nofail && v[i].state != KC_VOLUME_ATTACHED)
                        status = v[i].error < 0 ? kc_cli_exit_status(v[i].error) : KC_EXIT_FAILURE;
        }
        if (arr)
                kc_cli_print_json(arr);
        return status;
}

static int attach_all(struct kc_cli *cli, const char *volumes) {
        _cleanup_(kc_client_closep) struct kc_client *agent = open_agent();
        _cleanup_free_ struct kc_agent_volume *v = NULL;
        struct kc_err err = {};
        size_t n = 0;
        int r;

        r = agent ? kc_client_attach_all(agent, &v, &n, &err) : attach_all_direct(cli, volumes, &v, &n);
        if (r < 0) {
                log_error("cannot attach the configured volumes: %s", kc_err_msg(&err, r));
                return kc_cli_exit_status(r);
        }
        return print_attach_all(cli, v, n);
}

/* One volume: through the agent when it runs, else here. */
static int attach_one(struct kc_cli *cli, const struct kc_attach_params *p, const char *volume,
                      const char *volumes, struct kc_attach_result *res, struct kc_err *err) {
        _cleanup_(kc_client_closep) struct kc_client *agent = open_agent();
        _cleanup_volumes_ struct kc_volumes *vs = NULL;
        const struct kc_volume_conf *v;
        struct kc_attach_params cp;
        struct kc_kms_request req;
        struct kc_kms *kms;
        int r;

        if (agent)
                return volume ? kc_client_attach_volume(agent, volume, res, err) : kc_client_attach(agent, p, res, err);
        if (volume) {
                r = load_volumes(volumes, &vs);
                if (r < 0)
                        return r;
                v = kc_volumes_find(vs, volume);
                if (!v)
                        return kc_err_set(err, -ENOENT, "no volume %s in %s", volume, volumes);
                params_from_conf(v, &cp);
                p = &cp;
        }
        r = kc_cli_kms(cli, &kms);
        if (r < 0)
                return r;
        req = kc_cli_request(cli, NULL);
        return kc_attach(kms, &req, p, res, err);
}

static int run_attach(struct kc_cli *cli, int argc, char **argv) {
        enum { ARG_HEADER = 0x100, ARG_EXPECT, ARG_EXPECT_JSON, ARG_PERF, ARG_DISCARDS, ARG_JSON, ARG_ALL,
               ARG_VOLUMES };
        static const struct option options[] = {
                { "name",                required_argument, NULL, 'n' },
                { "header",              required_argument, NULL, ARG_HEADER },
                { "expect-context",      required_argument, NULL, ARG_EXPECT },
                { "expect-context-json", required_argument, NULL, ARG_EXPECT_JSON },
                { "read-only",           no_argument,       NULL, 'r' },
                { "perf-options",        required_argument, NULL, ARG_PERF },
                { "allow-discards",      no_argument,       NULL, ARG_DISCARDS },
                { "json",                no_argument,       NULL, ARG_JSON },
                { "all",                 no_argument,       NULL, ARG_ALL },
                { "volumes",             required_argument, NULL, ARG_VOLUMES },
                { "help",                no_argument,       NULL, 'h' },
                {}
        };
        struct kc_attach_params p = { .flags = KC_CRYPT_DEFAULT_FLAGS };
        _cleanup_context_ struct kc_context *expect = NULL;
        const char *expect_kv = NULL, *expect_json = NULL, *volumes = KC_VOLUMES_FILE, *volume = NULL;
        struct kc_attach_result res;
        struct kc_err err = {};
        bool discards = false, all = false, tuned = false;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "n:rh", options, NULL)) >= 0)
                switch (c) {
                case 'n': p.name = optarg; tuned = true; break;
                case ARG_HEADER: p.header = optarg; tuned = true; break;
                case ARG_EXPECT: expect_kv = optarg; tuned = true; break;
                case ARG_EXPECT_JSON: expect_json = optarg; tuned = true; break;
                case 'r': p.read_only = true; tuned = true; break;
                case ARG_PERF:
                        if (kc_crypt_flags_parse(optarg, &p.flags) < 0)
                                return usage_error("attach", "invalid --perf-options");
                        tuned = true;
                        break;
                case ARG_DISCARDS: discards = true; tuned = true; break;
                case ARG_JSON: cli->json = true; break;
                case ARG_ALL: all = true; break;
                case ARG_VOLUMES: volumes = optarg; break;
                case 'h': fputs(attach_help, stdout); return KC_EXIT_OK;
                default: return KC_EXIT_USAGE;
                }
        if (all) {
                if (optind != argc || tuned)
                        return usage_error("attach", "--all takes no DEVICE and no per-volume options");
                return attach_all(cli, volumes);
        }
        if (optind != argc - 1)
                return usage_error("attach", "expected exactly one DEVICE or VOLUME");
        if (is_volume_name(argv[optind])) {
                if (tuned)
                        return usage_error("attach", "a configured VOLUME takes its options from the volumes file");
                volume = argv[optind];
        }
        p.device = argv[optind];
        if (discards)
                p.flags |= KC_CRYPT_ALLOW_DISCARDS;
        if (parse_expect(expect_kv, expect_json, &expect) < 0)
                return KC_EXIT_USAGE;
        p.expect = expect;

        r = attach_one(cli, &p, volume, volumes, &res, &err);
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
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'd': deferred = true; break;
                case 'j': cli->json = true; break;
                case 'h': fputs(detach_help, stdout); return KC_EXIT_OK;
                default: return KC_EXIT_USAGE;
                }
        if (optind != argc - 1)
                return usage_error("detach", "expected exactly one NAME");
        {
                _cleanup_(kc_client_closep) struct kc_client *agent = open_agent();
                r = agent ? kc_client_detach(agent, argv[optind], deferred, &err)
                          : kc_detach(argv[optind], deferred, &err);
        }
        if (r < 0) {
                log_error("cannot detach %s: %s", argv[optind], kc_err_msg(&err, r));
                return kc_cli_exit_status(r);
        }
        if (!cli->quiet && !cli->json)
                printf("%s %s\n", argv[optind], deferred ? "marked for deferred removal" : "detached");
        return KC_EXIT_OK;
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
                        json_object_array_add(arr, kc_volume_status_to_json(&s));
                else
                        status_text(&s);
                kc_volume_status_clear(&s);
        }
        if (arr)
                kc_cli_print_json(arr);
        return status;
}

/* A configured volume the agent knows, by name; NULL if none. */
static const struct kc_agent_volume *find_configured(const struct kc_client_status *st, const char *name) {
        for (size_t i = 0; i < st->n_configured; i++)
                if (streq(st->configured[i].name, name))
                        return &st->configured[i];
        return NULL;
}

/*
 * Status through the agent: the same mapping output as without it, then what
 * the agent knows about configured volumes that are not attached (why they
 * wait, since when).  A name that is configured but not attached shows its
 * state instead of an error.
 */
static int print_agent_statuses(struct kc_cli *cli, struct kc_client *agent, char **names) {
        struct kc_client_status st = {};
        struct json_object *arr = cli->json ? json_object_new_array() : NULL;
        struct kc_err err = {};
        int status = KC_EXIT_OK, r;

        r = kc_client_status(agent, names, &st, &err);
        if (r < 0) {
                json_object_put(arr);
                log_error("cannot get the status from kmscryptd: %s", kc_err_msg(&err, r));
                return kc_cli_exit_status(r);
        }
        for (size_t i = 0; i < st.n_volumes; i++)
                if (arr)
                        json_object_array_add(arr, kc_volume_status_to_json(&st.volumes[i]));
                else
                        status_text(&st.volumes[i]);
        for (size_t i = 0; i < st.n_errors; i++) {
                const struct kc_agent_volume *v = find_configured(&st, st.errors[i].name);
                if (v && v->state != KC_VOLUME_ATTACHED)
                        continue;       /* shown below */
                log_error("%s: %s", st.errors[i].name, st.errors[i].message);
                if (status == KC_EXIT_OK)
                        status = kc_cli_exit_status(st.errors[i].error);
        }
        for (size_t i = 0; i < st.n_configured; i++) {
                const struct kc_agent_volume *v = &st.configured[i];
                if (v->state == KC_VOLUME_ATTACHED && st.device_mapper)
                        continue;       /* its mapping is shown above */
                if (arr)
                        json_object_array_add(arr, kc_agent_volume_to_json(v));
                else
                        print_agent_volume(v);
        }
        if (names)
                for (size_t i = 0; names[i]; i++)
                        if (!find_configured(&st, names[i]) && !st.device_mapper) {
                                log_error("%s: device-mapper is not available on this host", names[i]);
                                if (status == KC_EXIT_OK)
                                        status = kc_cli_exit_status(-EOPNOTSUPP);
                        }
        if (arr)
                kc_cli_print_json(arr);
        kc_client_status_clear(&st);
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
        _cleanup_(kc_client_closep) struct kc_client *agent = NULL;
        struct kc_err err = {};
        const char *header = NULL;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'j': cli->json = true; break;
                case 'H': header = optarg; break;
                case 'h': fputs(status_help, stdout); return KC_EXIT_OK;
                default: return KC_EXIT_USAGE;
                }
        if (list && optind < argc)
                return usage_error("list", "takes no arguments");
        /* A detached header is read here, not by the agent. */
        agent = header ? NULL : open_agent();
        if (agent && !list)
                return print_agent_statuses(cli, agent, optind < argc ? argv + optind : NULL);
        if (optind < argc)
                return print_statuses(cli, argv + optind, header);

        r = agent ? kc_client_list(agent, &names, &err) : kc_volume_list(&names);
        if (r < 0) {
                if (agent)
                        log_error("%s", kc_err_msg(&err, r));
                else
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
