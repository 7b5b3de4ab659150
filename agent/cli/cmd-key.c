/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <assert.h>
#include <string.h>

#include "agent/cli/cli.h"
#include "agent/daemon/volumes.h"
#include "lib/log.h"

/*
 * kmscrypt key ...: life cycle of customer master keys.  JSON output uses
 * the member names of AWS KMS (KeyMetadata, KeyId, Arn, KeyState, ...), so
 * scripts written against `aws kms` read it unchanged.
 */

static void add_string(struct json_object *o, const char *name, const char *value) {
        json_object_object_add(o, name, json_object_new_string(value));
}

static void add_time(struct json_object *o, const char *name, time_t t) {
        char buf[32];

        kc_cli_format_time(t, buf);
        add_string(o, name, buf);
}

static struct json_object *key_metadata_json(const struct kc_key_info *k) {
        struct json_object *m = json_object_new_object();

        add_string(m, "KeyId", k->key_id);
        add_string(m, "Arn", k->arn);
        add_string(m, "Description", k->description);
        add_string(m, "KeyState", kc_key_state_to_string(k->state));
        json_object_object_add(m, "Enabled", json_object_new_boolean(k->state == KC_KEY_ENABLED));
        add_time(m, "CreationDate", k->created);
        if (k->state == KC_KEY_PENDING_DELETION)
                add_time(m, "DeletionDate", k->deletion_date);
        add_string(m, "KeyManager", "CUSTOMER");
        add_string(m, "KeyUsage", "ENCRYPT_DECRYPT");
        add_string(m, "KeySpec", "SYMMETRIC_DEFAULT");
        add_string(m, "Origin", k->provider);
        json_object_object_add(m, "KeyVersion", json_object_new_int64(k->current_version));
        json_object_object_add(m, "KeyVersions", json_object_new_int64(k->versions));
        return m;
}

static struct json_object *aliases_json(const struct kc_key_info *keys, size_t n) {
        struct json_object *a = json_object_new_array();

        for (size_t i = 0; i < n; i++) {
                struct json_object *e;

                if (!keys[i].alias[0])
                        continue;
                e = json_object_new_object();
                add_string(e, "AliasName", keys[i].alias);
                add_string(e, "TargetKeyId", keys[i].key_id);
                json_object_array_add(a, e);
        }
        return a;
}

static void print_key_text(const struct kc_key_info *k) {
        char created[32], deletion[32];

        kc_cli_format_time(k->created, created);
        kc_cli_format_time(k->deletion_date, deletion);
        kc_cli_print_field("KeyId:", "%s", k->key_id);
        kc_cli_print_field("Arn:", "%s", k->arn);
        kc_cli_print_field("Alias:", "%s", k->alias[0] ? k->alias : "-");
        kc_cli_print_field("Description:", "%s", k->description[0] ? k->description : "-");
        kc_cli_print_field("KeyState:", "%s", kc_key_state_to_string(k->state));
        kc_cli_print_field("CreationDate:", "%s", created);
        if (k->state == KC_KEY_PENDING_DELETION)
                kc_cli_print_field("DeletionDate:", "%s", deletion);
        kc_cli_print_field("KeyVersion:", "%u (of %u)", k->current_version, k->versions);
}

static int print_key(struct kc_cli *cli, const struct kc_key_info *k) {
        struct json_object *o;

        if (cli->quiet)
                return KC_EXIT_OK;
        if (!cli->json) {
                print_key_text(k);
                return KC_EXIT_OK;
        }
        o = json_object_new_object();
        json_object_object_add(o, "KeyMetadata", key_metadata_json(k));
        json_object_object_add(o, "Aliases", aliases_json(k, 1));
        kc_cli_print_json(o);
        return KC_EXIT_OK;
}

/*
 * After a change: KeyId and KeyState as they are now, plus the members of
 * extra (released); text output shows the same as "Name: value" lines.
 */
static int print_change(struct kc_cli *cli, struct kc_kms *kms, const char *key_ref, const char *what,
                        struct json_object *extra, int changed) {
        struct kc_kms_request req = kc_cli_request(cli, NULL);
        struct json_object *o;
        struct kc_key_info info;
        struct kc_err err = {};
        int r;

        if (cli->quiet) {
                json_object_put(extra);
                return KC_EXIT_OK;
        }
        r = kc_kms_describe_key(kms, &req, key_ref, &info, &err);
        /* The audit log that lost the outcome record refuses the describe too: the change still stands. */
        if (r < 0 && changed <= 0) {
                json_object_put(extra);
                return kc_cli_fail(cli, r, &err, what);
        }
        o = json_object_new_object();
        add_string(o, "KeyId", r < 0 ? key_ref : info.key_id);
        if (r >= 0)
                add_string(o, "KeyState", kc_key_state_to_string(info.state));
        if (extra) {
                json_object_object_foreach(extra, name, value)
                        json_object_object_add(o, name, json_object_get(value));
                json_object_put(extra);
        }
        if (cli->json) {
                kc_cli_print_json(o);
                return KC_EXIT_OK;
        }
        json_object_object_foreach(o, name, value) {
                char label[40];

                snprintf(label, sizeof(label), "%s:", name);
                kc_cli_print_field(label, "%s", json_object_get_string(value));
        }
        json_object_put(o);
        return KC_EXIT_OK;
}

static int key_create(struct kc_cli *cli, int argc, char **argv) {
        const char *alias = NULL, *description = "", *provider = "local";
        const struct kc_cli_option options[] = {
                { .name = "alias", .arg = "alias/NAME", .help = "name the key (letters, digits, '/', '_', '-')", .value = &alias },
                { .name = "description", .arg = "TEXT", .help = "free text shown by describe", .value = &description },
                { .name = "provider", .arg = "NAME", .help = "KMS provider (default: local)", .value = &provider },
                {},
        };
        const struct kc_cli_usage usage = {
                .synopsis = "key create [--alias alias/NAME] [--description TEXT] [--provider NAME]",
                .description = "Create a customer master key (version 1, enabled).",
                .options = options,
        };
        struct kc_kms_request req = kc_cli_request(cli, NULL);
        struct kc_key_info info;
        struct kc_err err = {};
        struct kc_kms *kms;
        int status, r;

        if (!kc_cli_begin(cli, argc, argv, &usage, &kms, &status))
                return status;
        r = kc_kms_create_key(kms, &req, provider, alias, description, &info, &err);
        if (r < 0)
                return kc_cli_fail(cli, r, &err, "create key");
        if (r > 0)
                kc_cli_warn_unrecorded(cli, &err, "create key");
        return print_key(cli, &info);
}

static void print_list_text(const struct kc_key_info *keys, size_t n) {
        printf("%-40s %-24s %-16s %7s  %s\n", "KEY ID", "ALIAS", "STATE", "VERSION", "CREATED");
        for (size_t i = 0; i < n; i++) {
                char created[32];

                kc_cli_format_time(keys[i].created, created);
                printf("%-40s %-24s %-16s %7u  %s\n", keys[i].key_id, keys[i].alias[0] ? keys[i].alias : "-",
                       kc_key_state_to_string(keys[i].state), keys[i].current_version, created);
        }
}

static void print_list_json(const struct kc_key_info *keys, size_t n) {
        struct json_object *o = json_object_new_object(), *list = json_object_new_array();

        for (size_t i = 0; i < n; i++) {
                struct json_object *e = json_object_new_object();

                add_string(e, "KeyId", keys[i].key_id);
                add_string(e, "KeyArn", keys[i].arn);
                add_string(e, "KeyState", kc_key_state_to_string(keys[i].state));
                add_string(e, "Description", keys[i].description);
                json_object_array_add(list, e);
        }
        json_object_object_add(o, "Keys", list);
        json_object_object_add(o, "Aliases", aliases_json(keys, n));
        kc_cli_print_json(o);
}

static int key_list(struct kc_cli *cli, int argc, char **argv) {
        const char *provider = "local";
        const struct kc_cli_option options[] = {
                { .name = "provider", .arg = "NAME", .help = "KMS provider (default: local)", .value = &provider },
                {},
        };
        const struct kc_cli_usage usage = {
                .synopsis = "key list [--provider NAME]",
                .description = "List the customer master keys with their aliases and states.",
                .options = options,
        };
        struct kc_kms_request req = kc_cli_request(cli, NULL);
        _cleanup_free_ struct kc_key_info *keys = NULL;
        struct kc_err err = {};
        struct kc_kms *kms;
        size_t n = 0;
        int status, r;

        if (!kc_cli_begin(cli, argc, argv, &usage, &kms, &status))
                return status;
        r = kc_kms_list_keys(kms, &req, provider, &keys, &n, &err);
        if (r < 0)
                return kc_cli_fail(cli, r, &err, "list keys");
        if (cli->quiet)
                return KC_EXIT_OK;
        if (cli->json)
                print_list_json(keys, n);
        else
                print_list_text(keys, n);
        return KC_EXIT_OK;
}

static int key_describe(struct kc_cli *cli, int argc, char **argv) {
        const struct kc_cli_usage usage = {
                .synopsis = "key describe KEY",
                .description = "Show one key.  KEY is its id, alias/NAME, or either with a local: prefix.",
                .min_args = 1,
                .max_args = 1,
        };
        struct kc_kms_request req = kc_cli_request(cli, NULL);
        struct kc_key_info info;
        struct kc_err err = {};
        struct kc_kms *kms;
        int status, r;

        if (!kc_cli_begin(cli, argc, argv, &usage, &kms, &status))
                return status;
        r = kc_kms_describe_key(kms, &req, argv[1], &info, &err);
        if (r < 0)
                return kc_cli_fail(cli, r, &err, argv[1]);
        return print_key(cli, &info);
}

/*
 * enable, disable and cancel-deletion share one shape: KEY in, a change,
 * the new state out.
 */
struct key_change {
        const char *name, *synopsis, *description, *what;
        int (*apply)(struct kc_kms *kms, const struct kc_kms_request *req, const char *key, struct kc_err *err);
};

static int apply_enable(struct kc_kms *kms, const struct kc_kms_request *req, const char *key, struct kc_err *err) {
        return kc_kms_set_enabled(kms, req, key, true, err);
}

static int apply_disable(struct kc_kms *kms, const struct kc_kms_request *req, const char *key, struct kc_err *err) {
        return kc_kms_set_enabled(kms, req, key, false, err);
}

static int apply_cancel(struct kc_kms *kms, const struct kc_kms_request *req, const char *key, struct kc_err *err) {
        return kc_kms_cancel_deletion(kms, req, key, err);
}

static const struct key_change key_changes[] = {
        {
                .name = "enable",
                .synopsis = "key enable KEY",
                .description = "Allow the key to be used again.",
                .what = "enable key",
                .apply = apply_enable,
        },
        {
                .name = "disable",
                .synopsis = "key disable KEY",
                .description = "Refuse every use of the key until it is enabled again.  Volumes wrapped\n"
                               "under it cannot be attached meanwhile.",
                .what = "disable key",
                .apply = apply_disable,
        },
        {
                .name = "cancel-deletion",
                .synopsis = "key cancel-deletion KEY",
                .description = "Cancel a scheduled deletion; the key stays disabled until enabled.",
                .what = "cancel deletion",
                .apply = apply_cancel,
        },
};

/* The run() of every command in key_changes[], which argv[0] names. */
static int key_change(struct kc_cli *cli, int argc, char **argv) {
        const struct key_change *c = NULL;
        struct kc_kms_request req = kc_cli_request(cli, NULL);
        struct kc_err err = {};
        struct kc_kms *kms;
        int status, r;

        for (size_t i = 0; i < ARRAY_SIZE(key_changes); i++)
                if (streq(key_changes[i].name, argv[0]))
                        c = &key_changes[i];
        assert(c);

        const struct kc_cli_usage usage = {
                .synopsis = c->synopsis,
                .description = c->description,
                .min_args = 1,
                .max_args = 1,
        };
        if (!kc_cli_begin(cli, argc, argv, &usage, &kms, &status))
                return status;
        r = c->apply(kms, &req, argv[1], &err);
        if (r < 0)
                return kc_cli_fail(cli, r, &err, c->what);
        if (r > 0)
                kc_cli_warn_unrecorded(cli, &err, c->what);
        return print_change(cli, kms, argv[1], c->what, NULL, r);
}

static int key_rotate(struct kc_cli *cli, int argc, char **argv) {
        bool rewrap = false;
        const struct kc_cli_option options[] = {
                { .name = "rewrap", .help = "then rewrap every known volume under KEY (and DEVICEs given)", .flag = &rewrap },
                {},
        };
        const struct kc_cli_usage usage = {
                .synopsis = "key rotate KEY [--rewrap [DEVICE...]]",
                .description = "Add a new version of the key; new data keys are wrapped under it, older\n"
                               "versions still unwrap what they wrapped.",
                .options = options,
                .min_args = 1,
                .max_args = 64,
        };
        struct kc_kms_request req = kc_cli_request(cli, NULL);
        const char *volumes = NULL;
        struct json_object *extra;
        struct kc_err err = {};
        struct kc_kms *kms;
        uint32_t version;
        int nargs, status, r;

        /* Usage errors first: they change nothing and need no KMS. */
        r = kc_cli_parse(cli, argc, argv, &usage, &nargs);
        if (r <= 0)
                return kc_cli_parse_exit(r);
        if (!rewrap && nargs > 1)
                return kc_cli_usage_error(&usage, "unexpected argument \"%s\": DEVICE arguments go with --rewrap",
                                          argv[2]);
        /* Before the rotation: a rewrap that cannot find its volumes must not follow a change. */
        if (rewrap && kc_cli_volumes_file(NULL, &volumes) < 0)
                return KC_EXIT_USAGE;
        /* And a DEVICE named that is not there, before the KMS is opened (kc_cli_target_resolve). */
        if (rewrap) {
                status = kc_cli_check_devices(cli, argv + 2, "cannot rewrap");
                if (status != KC_EXIT_OK)
                        return status;
        }
        r = kc_cli_kms(cli, &kms);
        if (r < 0)
                return kc_cli_exit_status(r);
        r = kc_kms_rotate_key(kms, &req, argv[1], &version, &err);
        if (r < 0)
                return kc_cli_fail(cli, r, &err, "rotate key");
        if (r > 0)
                kc_cli_warn_unrecorded(cli, &err, "rotate key");
        extra = json_object_new_object();
        json_object_object_add(extra, "KeyVersion", json_object_new_int64(version));
        if (rewrap && cli->json) {
                /* One JSON object: the rotation, with the rewraps as its Rewrapped member. */
                struct json_object *rewrapped = NULL;

                status = kc_cli_rewrap_users(cli, kms, argv[1], volumes, argv + 2, &rewrapped);
                json_object_object_add(extra, "Rewrapped", rewrapped ?: json_object_new_array());
                r = print_change(cli, kms, argv[1], "rotate key", extra, r);
                return status != KC_EXIT_OK ? status : r;
        }
        status = print_change(cli, kms, argv[1], "rotate key", extra, r);
        return rewrap && status == KC_EXIT_OK ? kc_cli_rewrap_users(cli, kms, argv[1], volumes, argv + 2, NULL)
                                              : status;
}

static int key_schedule_deletion(struct kc_cli *cli, int argc, char **argv) {
        const char *window = NULL, *volumes = NULL;
        bool force = false;
        const struct kc_cli_option options[] = {
                { .name = "pending-window-in-days", .arg = "DAYS", .help = "waiting period, 7 to 30 (default: configuration, 30)", .value = &window },
                { .name = "force", .help = "even though known volumes still use the key", .flag = &force },
                { .name = "volumes", .arg = "FILE", .help = "volumes file to check (default " KC_VOLUMES_FILE ")", .value = &volumes },
                {},
        };
        const struct kc_cli_usage usage = {
                .synopsis = "key schedule-deletion KEY [--pending-window-in-days DAYS] [--force] [--volumes FILE]",
                .description = "Disable the key now and destroy it after the waiting period, unless\n"
                               "cancel-deletion is run before.  Destroyed keys unwrap nothing, ever.",
                .options = options,
                .volumes = &volumes,
                .min_args = 1,
                .max_args = 1,
        };
        struct kc_kms_request req = kc_cli_request(cli, NULL);
        struct json_object *extra;
        struct kc_err err = {};
        struct kc_kms *kms;
        unsigned days = 0;
        time_t date;
        int nargs, status, r;

        r = kc_cli_parse(cli, argc, argv, &usage, &nargs);
        if (r <= 0)
                return kc_cli_parse_exit(r);
        if (window && kc_cli_parse_uint("pending-window-in-days", window, 7, 30, &days) < 0)
                return KC_EXIT_USAGE;
        r = kc_cli_kms(cli, &kms);
        if (r < 0)
                return kc_cli_exit_status(r);
        if (!window)
                days = cli->config.deletion_window_days;
        status = kc_cli_key_retire_check(cli, kms, argv[1], volumes, force);
        if (status != KC_EXIT_OK)
                return status;
        r = kc_kms_schedule_deletion(kms, &req, argv[1], days, &date, &err);
        if (r < 0)
                return kc_cli_fail(cli, r, &err, "schedule deletion");
        if (r > 0)
                kc_cli_warn_unrecorded(cli, &err, "schedule deletion");
        extra = json_object_new_object();
        add_time(extra, "DeletionDate", date);
        json_object_object_add(extra, "PendingWindowInDays", json_object_new_int64(days));
        return print_change(cli, kms, argv[1], "schedule deletion", extra, r);
}

static const struct kc_cli_command key_commands[] = {
        { .name = "create", .summary = "create a customer master key", .run = key_create },
        { .name = "list", .summary = "list keys, aliases and states", .run = key_list },
        { .name = "describe", .summary = "show one key", .run = key_describe },
        { .name = "enable", .summary = "allow use of a disabled key", .run = key_change },
        { .name = "disable", .summary = "refuse every use of a key", .run = key_change },
        { .name = "rotate", .summary = "add a new key version", .run = key_rotate },
        { .name = "schedule-deletion", .summary = "destroy a key after a waiting period", .run = key_schedule_deletion },
        { .name = "cancel-deletion", .summary = "keep a key scheduled for deletion", .run = key_change },
        { .name = "usage", .summary = "list the volumes that use a key, per version", .run = kc_cli_key_usage },
};

static int run_key(struct kc_cli *cli, int argc, char **argv) {
        const struct kc_cli_usage usage = {
                .synopsis = "key COMMAND ...",
                .description = "Manage customer master keys.  KEY is a key id, alias/NAME, or either\n"
                               "with a provider prefix (local:).",
                .commands = key_commands,
                .n_commands = ARRAY_SIZE(key_commands),
                .stop_at_command = true,
        };
        return kc_cli_dispatch(cli, argc, argv, &usage, key_commands, ARRAY_SIZE(key_commands));
}

const struct kc_cli_command kc_cli_cmd_key = {
        .name = "key",
        .summary = "manage customer master keys",
        .run = run_key,
};
