/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kmscrypt config check: kmscrypt.conf, the volumes file, and every configured device present.
 * kmscrypt config list: the names of the volumes file, for scripts and the bash completion.
 * kmscrypt config initramfs: what the initramfs hooks put into the image.
 */
#include <string.h>

#include "agent/attach.h"
#include "agent/cli/cli.h"
#include "agent/daemon/volumes.h"
#include "agent/luks.h"
#include "agent/token.h"
#include "lib/log.h"

enum device_verdict {
        DEVICE_OK,
        DEVICE_ABSENT,      /* not a failure: it may be hotplugged later */
        DEVICE_BAD,         /* present but not what the volumes file says */
};

/* The kmscrypt token of a configured device: DEVICE_OK and *tok (clear it), or why not. */
static enum device_verdict read_token(const struct kc_volume_conf *v, char **ret_path, struct kc_token *tok,
                                      char *why, size_t size) {
        _cleanup_free_ char *path = NULL;
        _cleanup_luks_ struct kc_luks *l = NULL;
        struct kc_err err = {};
        int r;

        r = kc_resolve_device(v->device, &path, &err);
        if (r == -ENODEV || (r >= 0 && access(path, F_OK) < 0)) {
                snprintf(why, size, "%s not present", v->device);
                return DEVICE_ABSENT;
        }
        if (r < 0) {
                /* Named by a tag that two devices carry, say: there, but not one device to check. */
                snprintf(why, size, "%s", kc_err_msg(&err, r));
                return DEVICE_BAD;
        }
        r = kc_luks_open_read(path, v->header, &l, &err);
        if (r >= 0)
                r = kc_luks_token_read(l, tok, NULL, &err);
        if (r < 0) {
                snprintf(why, size, "%s: %s", path, kc_err_msg(&err, r));
                return DEVICE_BAD;
        }
        *ret_path = TAKE_PTR(path);
        return DEVICE_OK;
}

/* Look at one configured device: is it there, a LUKS2 volume with a kmscrypt token, bound to the expected context? */
static enum device_verdict check_device(const struct kc_volume_conf *v, char *why, size_t size) {
        _cleanup_free_ char *path = NULL, *have = NULL, *want = NULL;
        struct kc_token tok = {};
        enum device_verdict verdict = read_token(v, &path, &tok, why, size);

        if (verdict != DEVICE_OK)
                return verdict;
        if (!kc_context_equal(tok.context, v->context)) {
                (void) kc_context_to_string(tok.context, &have);
                (void) kc_context_to_string(v->context, &want);
                snprintf(why, size, "%s is bound to context %s, the volumes file expects %s", path, strna(have),
                         strna(want));
                verdict = DEVICE_BAD;
        } else if (!kc_attach_provider_allowed(v->kms, tok.provider)) {
                snprintf(why, size, "%s is wrapped by KMS provider %s, which its kms= does not allow", path,
                         tok.provider);
                verdict = DEVICE_BAD;
        } else
                snprintf(why, size, "%s, key %s:%s, context matches", path, tok.provider, tok.key_id);
        kc_token_clear(&tok);
        return verdict;
}

static int check_volumes(struct kc_cli *cli, const char *path, struct json_object *out) {
        static const char *const words[] = { [DEVICE_OK] = "ok", [DEVICE_ABSENT] = "absent", [DEVICE_BAD] = "bad" };
        _cleanup_volumes_ struct kc_volumes *vs = NULL;
        struct json_object *arr = json_object_new_array();
        struct kc_err err = {};
        unsigned bad = 0;
        int r;

        json_object_object_add(out, "Volumes", arr);
        r = kc_volumes_load(path, &vs, &err);
        if (r == -ENOENT) {
                if (kc_cli_prints_text(cli))
                        printf("%s: absent (no volumes configured)\n", path);
                return 0;
        }
        if (r < 0)
                return kc_cli_fail(cli, r, &err, "volumes file"), -EINVAL;
        if (kc_cli_prints_text(cli))
                printf("%s: %zu volume%s, syntax ok\n", path, vs->n, vs->n == 1 ? "" : "s");
        for (size_t i = 0; i < vs->n; i++) {
                const struct kc_volume_conf *v = &vs->volumes[i];
                enum device_verdict d;
                char why[KC_ERR_MSG_MAX];
                struct json_object *o;

                d = check_device(v, why, sizeof(why));
                bad += d == DEVICE_BAD;
                if (kc_cli_prints_text(cli))
                        printf("  %-20s %-6s %s\n", v->name, words[d], why);
                o = json_object_new_object();
                json_object_object_add(o, "Name", json_object_new_string(v->name));
                json_object_object_add(o, "Device", json_object_new_string(v->device));
                json_object_object_add(o, "Check", json_object_new_string(words[d]));
                json_object_object_add(o, "Detail", json_object_new_string(why));
                json_object_array_add(arr, o);
        }
        if (bad > 0) {
                log_error("%u configured device%s not match the volumes file", bad, bad == 1 ? " does" : "s do");
                return -EPERM;
        }
        return 0;
}

static int config_check(struct kc_cli *cli, int argc, char **argv) {
        const char *volumes = NULL;
        const struct kc_cli_option options[] = {
                { .name = "volumes", .arg = "FILE", .help = "volumes file (default " KC_VOLUMES_FILE ")",
                  .value = &volumes },
                {}
        };
        const struct kc_cli_usage usage = {
                .synopsis = "config check [--volumes FILE]",
                .description = "Validate kmscrypt.conf and the volumes file, and look at every configured\n"
                               "device that is present: a LUKS2 header with a kmscrypt token bound to the\n"
                               "expected encryption context.  Devices not present are reported, not errors.",
                .options = options,
                .volumes = &volumes,
        };
        struct json_object *out;
        int nargs, r;

        r = kc_cli_parse(cli, argc, argv, &usage, &nargs);
        if (r <= 0)
                return kc_cli_parse_exit(r);
        r = kc_cli_config(cli);
        if (r < 0)
                return kc_cli_exit_status(r);
        out = json_object_new_object();
        json_object_object_add(out, "Config", json_object_new_string(cli->config.source ?: "(defaults)"));
        if (kc_cli_prints_text(cli))
                printf("%s: ok\n", cli->config.source ?: "kmscrypt.conf: absent, defaults");
        r = check_volumes(cli, volumes, out);
        json_object_object_add(out, "Valid", json_object_new_boolean(r >= 0));
        if (kc_cli_prints_json(cli))
                kc_cli_print_json(out);
        else
                json_object_put(out);
        return r < 0 ? kc_cli_exit_status(r) : KC_EXIT_OK;
}

/*
 * The names "attach VOLUME" takes, read by the parser attach and kmscryptd use
 * (agent/daemon/volumes.c), so that the bash completion needs no parser of its
 * own.  No device and no KMS is looked at: it stays fast on a TAB.  The
 * default file missing is no volumes, as for attach; a named one must exist.
 */
static int config_list(struct kc_cli *cli, int argc, char **argv) {
        const char *volumes = NULL;
        const struct kc_cli_option options[] = {
                { .name = "volumes", .arg = "FILE", .help = "volumes file (default " KC_VOLUMES_FILE ")",
                  .value = &volumes },
                {}
        };
        const struct kc_cli_usage usage = {
                .synopsis = "config list [--volumes FILE]",
                .description = "Names of the volumes of the volumes file, one a line, in file order:\n"
                               "what attach VOLUME takes.  The default file, when missing, has none.",
                .options = options,
                .volumes = &volumes,
        };
        _cleanup_volumes_ struct kc_volumes *vs = NULL;
        struct kc_err err = {};
        struct json_object *arr;
        int nargs, r;

        r = kc_cli_parse(cli, argc, argv, &usage, &nargs);
        if (r <= 0)
                return kc_cli_parse_exit(r);
        r = kc_cli_volumes_load(volumes, &vs, &err);
        if (r < 0) {
                /* Status 2 for any of it, as config check: what is wrong is in the line. */
                kc_cli_fail(cli, r, &err, "volumes file");
                return KC_EXIT_USAGE;
        }
        if (cli->quiet)
                return KC_EXIT_OK;
        if (!cli->json) {
                for (size_t i = 0; i < vs->n; i++)
                        printf("%s\n", vs->volumes[i].name);
                return KC_EXIT_OK;
        }
        arr = json_object_new_array();
        for (size_t i = 0; i < vs->n; i++)
                json_object_array_add(arr, json_object_new_string(vs->volumes[i].name));
        kc_cli_print_json(arr);
        return KC_EXIT_OK;
}

struct initramfs_plan {
        struct json_object *volumes;  /* [{Name, Device, Provider, Header (detached only)}] */
        bool local;                   /* a volume uses the local KMS, or may (its device unreadable now) */
};

/* The x-initrd.attach volumes, each with the provider its token names ("unknown" when unreadable now). */
static int plan_volumes(struct kc_cli *cli, const char *path, struct initramfs_plan *plan) {
        _cleanup_volumes_ struct kc_volumes *vs = NULL;
        struct kc_err err = {};
        int r;

        plan->volumes = json_object_new_array();
        r = kc_cli_volumes_load(path, &vs, &err);
        if (r < 0)
                return kc_cli_fail(cli, r, &err, "volumes file"), -EINVAL;
        for (size_t i = 0; i < vs->n; i++) {
                const struct kc_volume_conf *v = &vs->volumes[i];
                _cleanup_free_ char *dev = NULL;
                struct kc_token tok = {};
                struct json_object *o;
                char why[KC_ERR_MSG_MAX], provider[sizeof(tok.provider)] = "unknown";

                if (!v->initrd)
                        continue;
                if (read_token(v, &dev, &tok, why, sizeof(why)) == DEVICE_OK)
                        kc_strscpy(provider, sizeof(provider), tok.provider);
                else
                        log_warning("%s: %s; its KMS provider is unknown, so it counts as the local one", v->name,
                                    why);
                kc_token_clear(&tok);
                plan->local = plan->local || streq(provider, "local") || streq(provider, "unknown");
                o = json_object_new_object();
                json_object_object_add(o, "Name", json_object_new_string(v->name));
                json_object_object_add(o, "Device", json_object_new_string(v->device));
                json_object_object_add(o, "Provider", json_object_new_string(provider));
                /* A detached header must be in the image too, or the volume cannot be opened there. */
                if (v->header)
                        json_object_object_add(o, "Header", json_object_new_string(v->header));
                json_object_array_add(plan->volumes, o);
        }
        return 0;
}

/*
 * The plan as lines for the hooks' shell: "volume NAME DEVICE PROVIDER", each
 * followed by "header FILE" when it has a detached header, then "keystore
 * DIR" and "root-key FILE".
 */
static void print_plan(struct json_object *plan) {
        struct json_object *vols, *dir, *key;

        json_object_object_get_ex(plan, "Volumes", &vols);
        for (size_t i = 0; i < json_object_array_length(vols); i++) {
                struct json_object *o = json_object_array_get_idx(vols, i), *n, *d, *p, *h;

                json_object_object_get_ex(o, "Name", &n);
                json_object_object_get_ex(o, "Device", &d);
                json_object_object_get_ex(o, "Provider", &p);
                printf("volume %s %s %s\n", json_object_get_string(n), json_object_get_string(d),
                       json_object_get_string(p));
                if (json_object_object_get_ex(o, "Header", &h))
                        printf("header %s\n", json_object_get_string(h));
        }
        if (json_object_object_get_ex(plan, "Keystore", &dir) && dir &&
            json_object_object_get_ex(plan, "RootKeyFile", &key) && key)
                printf("keystore %s\nroot-key %s\n", json_object_get_string(dir), json_object_get_string(key));
}

/*
 * What the initramfs hooks put into the image: the x-initrd.attach volumes,
 * and the local keystore with its root key only when such a volume uses the
 * local KMS and kmscrypt.conf says initramfs-keystore = yes.  Never the
 * audit log or its chain head: the initramfs keeps a chain of its own.
 */
static int config_initramfs(struct kc_cli *cli, int argc, char **argv) {
        const char *volumes = NULL;
        const struct kc_cli_option options[] = {
                { .name = "volumes", .arg = "FILE", .help = "volumes file (default " KC_VOLUMES_FILE ")",
                  .value = &volumes },
                {}
        };
        const struct kc_cli_usage usage = {
                .synopsis = "config initramfs [--volumes FILE]",
                .description = "What an initramfs needs, for the dracut and initramfs-tools hooks: one line\n"
                               "\"volume NAME DEVICE PROVIDER\" for each volume with x-initrd.attach, then\n"
                               "\"keystore DIR\" and \"root-key FILE\" when one of them uses the local KMS\n"
                               "and kmscrypt.conf allows it (initramfs-keystore = yes).  Nothing: no early\n"
                               "boot volume, the hooks install nothing.",
                .options = options,
                .volumes = &volumes,
        };
        _cleanup_free_ char *root_key = NULL;
        struct initramfs_plan plan = {};
        struct json_object *out;
        bool keystore = false;
        int nargs, r;

        r = kc_cli_parse(cli, argc, argv, &usage, &nargs);
        if (r <= 0)
                return kc_cli_parse_exit(r);
        r = kc_cli_config(cli);
        if (r < 0)
                return kc_cli_exit_status(r);
        r = plan_volumes(cli, volumes, &plan);
        if (r < 0) {
                json_object_put(plan.volumes);
                return KC_EXIT_USAGE;
        }
        if (plan.local && !cli->config.initramfs_keystore)
                log_warning("an x-initrd.attach volume uses the local KMS, whose keystore and root key stay out of "
                            "the initramfs unless kmscrypt.conf says initramfs-keystore = yes: it cannot be "
                            "attached in early boot");
        else if (plan.local) {
                if (cli->config.root_key_file ? !(root_key = strdup(cli->config.root_key_file))
                                               : asprintf(&root_key, "%s/root.key", cli->config.keystore_dir) < 0) {
                        json_object_put(plan.volumes);
                        return kc_cli_exit_status(-ENOMEM);
                }
                keystore = true;
        }
        out = json_object_new_object();
        json_object_object_add(out, "Volumes", plan.volumes);
        json_object_object_add(out, "Keystore", keystore ? json_object_new_string(cli->config.keystore_dir) : NULL);
        json_object_object_add(out, "RootKeyFile", keystore ? json_object_new_string(root_key) : NULL);
        if (kc_cli_prints_text(cli))
                print_plan(out);
        if (kc_cli_prints_json(cli))
                kc_cli_print_json(out);
        else
                json_object_put(out);
        return KC_EXIT_OK;
}

static const struct kc_cli_command config_commands[] = {
        { .name = "check", .summary = "validate kmscrypt.conf, the volumes file and the configured devices",
          .run = config_check },
        { .name = "list", .summary = "list the volume names of the volumes file", .run = config_list },
        { .name = "initramfs", .summary = "what the initramfs hooks put into the image", .run = config_initramfs },
};

static int run_config(struct kc_cli *cli, int argc, char **argv) {
        const struct kc_cli_usage usage = {
                .synopsis = "config COMMAND ...",
                .description = "Check the configuration, list the configured volumes.",
                .commands = config_commands,
                .n_commands = ARRAY_SIZE(config_commands),
                .stop_at_command = true,
        };
        return kc_cli_dispatch(cli, argc, argv, &usage, config_commands, ARRAY_SIZE(config_commands));
}

const struct kc_cli_command kc_cli_cmd_config = {
        .name = "config",
        .summary = "check the configuration, list the configured volumes",
        .run = run_config,
};
