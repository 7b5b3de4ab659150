/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kmscrypt rewrap | rebind | snapshot | backup | restore, and the helpers
 * behind `key usage`, `key rotate --rewrap` and `key schedule-deletion`'s
 * in-use check (cmd-key.c).  The work is in agent/rotate.h; this file finds
 * the volumes, prints a line per volume and maps outcomes to exit codes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/attach.h"
#include "agent/cli/cli.h"
#include "agent/daemon/volumes.h"
#include "agent/rotate.h"
#include "lib/fileio.h"
#include "lib/json-util.h"
#include "lib/log.h"

/* ---- which volume ---- */

/* A bare word (no '/', no '=') names a configured volume or an attached mapping. */
static bool is_name(const char *arg) {
        return !strchr(arg, '/') && !strchr(arg, '=');
}

void kc_cli_target_clear(struct kc_cli_target *t) {
        free(t->name);
        free(t->device);
        free(t->header);
}

/* NAME (volumes file, then attached mapping) or DEVICE (path, UUID=, LABEL=) to a device and header. */
static int target_find(const char *arg, const char *header, const char *volumes, struct kc_cli_target *ret,
                       struct kc_err *err) {
        _cleanup_volumes_ struct kc_volumes *vs = NULL;
        const struct kc_volume_conf *c = NULL;
        struct kc_volume_status st;
        struct kc_err lerr = {};
        struct kc_cli_target t = {};
        int r;

        if (!is_name(arg)) {
                r = kc_resolve_device(arg, &t.device, err);
                if (r < 0)
                        return r;
                t.header = header ? strdup(header) : NULL;
                if (header && !t.header) {
                        kc_cli_target_clear(&t);
                        return -ENOMEM;
                }
                *ret = t;
                return 0;
        }
        r = volumes ? kc_volumes_load(volumes, &vs, &lerr) : -ENOENT;
        if (r < 0 && r != -ENOENT)
                return kc_err_set(err, r, "%s", kc_err_msg(&lerr, r));
        if (r >= 0)
                c = kc_volumes_find(vs, arg);
        if (c) {
                r = kc_resolve_device(c->device, &t.device, err);
                if (r < 0)
                        return r;
                header = header ?: c->header;
        } else {
                r = kc_volume_status(arg, NULL, &st, NULL);
                if (r < 0)
                        return kc_err_set(err, -ENOENT, "no volume %s in %s and no attached volume of that name",
                                          arg, strna(volumes));
                t.device = strdup(st.device);
                kc_volume_status_clear(&st);
        }
        t.name = strdup(arg);
        t.header = header ? strdup(header) : NULL;
        if (!t.device || !t.name || (header && !t.header)) {
                kc_cli_target_clear(&t);
                return -ENOMEM;
        }
        *ret = t;
        return 0;
}

/*
 * target_find(), and the device and header there: every command that takes
 * a target reads its header, and refusing a typo here, in kc_luks_open()'s
 * words, comes before the command opens the KMS, which would create the
 * keystore and the audit log.
 */
int kc_cli_target_resolve(const char *arg, const char *header, const char *volumes, struct kc_cli_target *ret,
                          struct kc_err *err) {
        struct kc_cli_target t = {};
        int r;

        r = target_find(arg, header, volumes, &t, err);
        if (r < 0)
                return r;
        r = kc_luks_check_paths(t.device, t.header, err);
        if (r < 0) {
                kc_cli_target_clear(&t);
                return r;
        }
        *ret = t;
        return 0;
}

int kc_cli_target_token(const struct kc_cli_target *t, struct kc_token *ret, struct kc_err *err) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        _cleanup_(kc_token_clear) struct kc_token tok = {};
        int r;

        r = kc_luks_open(t->device, t->header, &l, err);
        if (r >= 0)
                r = kc_luks_token_read(l, &tok, NULL, err);
        if (r < 0)
                return kc_cli_header_error(r);
        if (ret) {
                *ret = tok;
                tok = (struct kc_token) {};
        }
        return 0;
}

/* ---- output ---- */

static struct json_object *rewrap_json(const char *name, const char *device, const struct kc_rewrap_result *res,
                                       bool dry_run) {
        struct json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        if ((name && kc_json_add(o, "Name", json_object_new_string(name)) < 0) ||
            kc_json_add(o, "Device", json_object_new_string(device)) < 0 ||
            kc_json_add(o, "LuksUuid", json_object_new_string(res->uuid)) < 0 ||
            kc_json_add(o, "TokenId", json_object_new_int(res->token_id)) < 0 ||
            kc_json_add(o, "SourceKeyId", json_object_new_string(res->old_key_id)) < 0 ||
            kc_json_add(o, "SourceKeyVersion", json_object_new_int64(res->old_key_version)) < 0 ||
            kc_json_add(o, "KeyId", json_object_new_string(res->new_key_id)) < 0 ||
            kc_json_add(o, "KeyVersion", json_object_new_int64(res->new_key_version)) < 0 ||
            kc_json_add(o, "Changed", json_object_new_boolean(res->changed)) < 0 ||
            kc_json_add(o, "AlreadyCurrent", json_object_new_boolean(res->current)) < 0 ||
            kc_json_add(o, "DryRun", json_object_new_boolean(dry_run)) < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

static const char *rewrap_verb(const struct kc_rewrap_result *res, bool dry_run, bool rebind) {
        if (res->current)
                return "already under the newest key version";
        if (dry_run)
                return rebind ? "would be rebound" : "would be rewrapped";
        return rebind ? "rebound" : "rewrapped";
}

/* Keys as key references (provider:id, docs/token.md), as format's and status's "Key" name them. */
static void rewrap_text(const char *prefix, const char *label, const struct kc_rewrap_result *res, bool dry_run,
                        bool rebind) {
        if (res->current)
                printf("%s%s: %s (key %s:%s version %" PRIu32 ")\n", prefix, label, rewrap_verb(res, dry_run, rebind),
                       res->provider, res->old_key_id, res->old_key_version);
        else
                printf("%s%s: %s, key %s:%s version %" PRIu32 " -> %s:%s version %" PRIu32 "\n", prefix, label,
                       rewrap_verb(res, dry_run, rebind), res->provider, res->old_key_id, res->old_key_version,
                       res->provider, res->new_key_id, res->new_key_version);
}

/* ---- rewrap ---- */

struct rewrap_run {
        struct kc_cli *cli;
        struct kc_kms *kms;
        const char *key;          /* --key or NULL */
        bool dry_run, always;
        struct json_object *out;  /* --json: array of results */
        unsigned done, current, failed, unreadable;
};

static int rewrap_one(struct rewrap_run *w, const char *name, const char *device, const char *header,
                      const char *prefix) {
        struct kc_rewrap_params p = {
                .ref = { .device = device, .header = header },
                .dst_key_ref = w->key, .dry_run = w->dry_run, .always = w->always,
        };
        struct kc_rewrap_result res;
        struct kc_err err = {};
        const char *label = name ?: device;
        int r;

        r = kc_rewrap(w->kms, &w->cli->caller, &p, &res, &err);
        if (r < 0) {
                w->failed++;
                log_error("%s%s: cannot rewrap: %s", prefix, label, kc_err_msg(&err, r));
                return kc_cli_header_error(r);
        }
        if (r > 0) {
                char what[KC_ERR_MSG_MAX];

                snprintf(what, sizeof(what), "%s%s", prefix, label);
                kc_cli_warn_unrecorded(w->cli, &err, what);
        }
        if (res.current)
                w->current++;
        else
                w->done++;
        if (w->out)
                json_object_array_add(w->out, rewrap_json(name, device, &res, w->dry_run));
        else if (!w->cli->quiet)
                rewrap_text(prefix, label, &res, w->dry_run, false);
        return 0;
}

/*
 * A volume whose header cannot be read.  One found (configured, attached),
 * a nofail one whose disk is away, must not stop the others' rewrap: a
 * warning.  A DEVICE the command line names is one the user asked for: its
 * failure is the run's, in rewrap_one()'s words (-ENOENT: not there).
 */
static int rewrap_unreadable(struct rewrap_run *w, const struct kc_known_volume *v) {
        if (!v->given) {
                w->unreadable++;
                log_warning("%s: not checked: %s", v->name ?: strna(v->device), v->reason);
                return 0;
        }
        w->failed++;
        log_error("%s: cannot rewrap: %s", strna(v->device), v->reason);
        return kc_cli_header_error(v->error);
}

/* Every readable known volume (that uses key, when key is not NULL), with a "[i/n]" counter per line. */
static int rewrap_known(struct rewrap_run *w, const struct kc_known_volumes *k, const struct kc_key_info *key) {
        size_t n = 0, i = 0;
        int first = 0;

        for (size_t j = 0; j < k->n; j++)
                n += !key || kc_known_volume_uses(&k->v[j], key);
        for (size_t j = 0; j < k->n; j++) {
                const struct kc_known_volume *v = &k->v[j];
                char prefix[32];
                int r;

                if (v->error < 0) {
                        r = rewrap_unreadable(w, v);
                        if (r < 0 && first == 0)
                                first = r;
                        continue;
                }
                if (key && !kc_known_volume_uses(v, key))
                        continue;
                snprintf(prefix, sizeof(prefix), "[%zu/%zu] ", ++i, n);
                r = rewrap_one(w, v->name, v->device, v->header, prefix);
                if (r < 0 && first == 0)
                        first = r;
        }
        return first;
}

static int rewrap_finish(struct rewrap_run *w, int r) {
        if (w->out)
                kc_cli_print_json(TAKE_PTR(w->out));
        else if (kc_cli_prints_text(w->cli) && w->done + w->current + w->failed + w->unreadable > 1)
                printf("%u %s, %u already current, %u failed, %u not readable\n", w->done,
                       w->dry_run ? "would be rewrapped" : "rewrapped", w->current, w->failed, w->unreadable);
        return r < 0 ? kc_cli_exit_status(r) : KC_EXIT_OK;
}

int kc_cli_rewrap_users(struct kc_cli *cli, struct kc_kms *kms, const char *key_ref, const char *volumes,
                        char **devices, struct json_object **ret_json) {
        _cleanup_known_volumes_ struct kc_known_volumes *k = NULL;
        struct rewrap_run w = { .cli = cli, .kms = kms };
        struct kc_kms_request req = kc_cli_request(cli, NULL);
        struct kc_key_info info;
        struct kc_err err = {};
        int r;

        r = kc_kms_describe_key(kms, &req, key_ref, &info, &err);
        if (r < 0)
                return kc_cli_fail(cli, r, &err, "describe key");
        r = kc_known_volumes_scan(volumes, devices, &k, &err);
        if (r < 0)
                return kc_cli_fail(cli, r, &err, "find volumes");
        w.out = kc_cli_prints_json(cli) ? json_object_new_array() : NULL;
        r = rewrap_known(&w, k, &info);
        if (ret_json)
                *ret_json = TAKE_PTR(w.out);
        return rewrap_finish(&w, r);
}

/*
 * The DEVICEs named on the command line are there, as
 * kc_cli_target_resolve() makes sure for one volume, before the KMS is
 * opened: a typo is status 3 with nothing made or changed, not a run of the
 * other volumes.
 */
int kc_cli_check_devices(struct kc_cli *cli, char **devices, const char *verb) {
        for (size_t i = 0; devices[i]; i++) {
                _cleanup_free_ char *dev = NULL;
                struct kc_err err = {};
                char what[KC_ERR_MSG_MAX];
                int r;

                r = kc_resolve_device(devices[i], &dev, &err);
                if (r >= 0)
                        r = kc_luks_check_paths(dev, NULL, &err);
                if (r < 0) {
                        snprintf(what, sizeof(what), "%s: %s", devices[i], verb);
                        return kc_cli_fail(cli, r, &err, what);
                }
        }
        return KC_EXIT_OK;
}

static int run_rewrap(struct kc_cli *cli, int argc, char **argv) {
        const char *key = NULL, *header = NULL, *volumes = NULL;
        bool all = false, dry_run = false, always = false;
        const struct kc_cli_option options[] = {
                { .name = "all", .help = "every known volume: configured, attached, and DEVICEs given", .flag = &all },
                { .name = "key", .arg = "KEY", .help = "wrap under this CMK instead (newest version)", .value = &key },
                { .name = "dry-run", .help = "prove the rewrap works (ReEncrypt, Decrypt, digest), write nothing", .flag = &dry_run },
                { .name = "always", .help = "rewrap even a volume already under the newest version", .flag = &always },
                { .name = "header", .arg = "FILE", .help = "detached LUKS2 header", .value = &header },
                { .name = "volumes", .arg = "FILE", .help = "volumes file (default " KC_VOLUMES_FILE ")", .value = &volumes },
                {},
        };
        const struct kc_cli_usage usage = {
                .synopsis = "rewrap NAME|DEVICE|--all [DEVICE...] [--key KEY] [--dry-run]",
                .description = "Re-wrap volume data keys under the newest version of their CMK, or under\n"
                               "another CMK, through the KMS's ReEncrypt.  The data and the data key are\n"
                               "not touched; attached volumes stay in use.  The new token is written only\n"
                               "after it is proven to unwrap to the key the LUKS2 digest accepts.",
                .options = options,
                .volumes = &volumes,
                .max_args = 64,
        };
        struct rewrap_run w = { .cli = cli };
        _cleanup_(kc_cli_target_clear) struct kc_cli_target t = {};
        struct kc_err err = {};
        int nargs, r;

        /* Usage errors first: they change nothing and need no KMS. */
        r = kc_cli_parse(cli, argc, argv, &usage, &nargs);
        if (r <= 0)
                return kc_cli_parse_exit(r);
        if (all && header)
                return kc_cli_usage_error(&usage, "--header names one volume; not with --all");
        if (!all && nargs != 1)
                return kc_cli_usage_error(&usage, "give one NAME or DEVICE, or --all");
        if (kc_cli_check_key_ref(&usage, key) < 0)
                return KC_EXIT_USAGE;
        /* The volume too, before the KMS is opened (kc_cli_target_resolve). */
        if (all) {
                r = kc_cli_check_devices(cli, argv + 1, "cannot rewrap");
                if (r != KC_EXIT_OK)
                        return r;
        } else {
                /* Its header too: one rewrap would refuse (not LUKS2, no kmscrypt token) needs no KMS. */
                r = kc_cli_target_resolve(argv[1], header, volumes, &t, &err);
                if (r >= 0)
                        r = kc_cli_target_token(&t, NULL, &err);
                if (r < 0) {
                        char what[KC_ERR_MSG_MAX];

                        /* The words of rewrap_one()'s failure, which this one came before. */
                        snprintf(what, sizeof(what), "%s: cannot rewrap", argv[1]);
                        return kc_cli_fail(cli, r, &err, what);
                }
        }
        r = kc_cli_kms(cli, &w.kms);
        if (r < 0)
                return kc_cli_exit_status(r);
        w.key = key;
        w.dry_run = dry_run;
        w.always = always;
        w.out = kc_cli_prints_json(cli) ? json_object_new_array() : NULL;
        if (all) {
                _cleanup_known_volumes_ struct kc_known_volumes *k = NULL;

                r = kc_known_volumes_scan(volumes, argv + 1, &k, &err);
                if (r < 0) {
                        json_object_put(w.out);
                        return kc_cli_fail(cli, r, &err, "find volumes");
                }
                return rewrap_finish(&w, rewrap_known(&w, k, NULL));
        }
        return rewrap_finish(&w, rewrap_one(&w, t.name, t.device, t.header, ""));
}

/* ---- rebind ---- */

/* The token's context with the pairs of given replacing or adding theirs. */
static int merged_context(const struct kc_cli_target *t, const struct kc_context *given, struct kc_context **ret,
                          struct kc_err *err) {
        _cleanup_(kc_token_clear) struct kc_token tok = {};
        int r;

        r = kc_cli_target_token(t, &tok, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < kc_context_count(given); i++) {
                r = kc_context_set(tok.context, kc_context_key(given, i), kc_context_value(given, i), err);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(tok.context);
        return 0;
}

static int run_rebind(struct kc_cli *cli, int argc, char **argv) {
        const char *kv = NULL, *key = NULL, *header = NULL;
        bool force = false, dry_run = false, reencrypt = false;
        const struct kc_cli_option options[] = {
                { .name = "context", .arg = "K=V,...", .help = "pairs that replace or join the token's context (required)", .value = &kv },
                { .name = "reencrypt", .help = "then give the clone a data key of its own (kmscrypt reencrypt)", .flag = &reencrypt },
                { .name = "key", .arg = "KEY", .help = "wrap under this CMK instead", .value = &key },
                { .name = "header", .arg = "FILE", .help = "detached LUKS2 header", .value = &header },
                { .name = "dry-run", .help = "prove the rebind works, write nothing", .flag = &dry_run },
                { .name = "force", .help = "rebind even though DEVICE is attached under its current context", .flag = &force },
                {},
        };
        const struct kc_cli_usage usage = {
                .synopsis = "rebind DEVICE --context volume-id=NEW[,K=V...] [--key KEY] [--force] [--reencrypt]",
                .description = "Move a volume's wrapped data key to a new encryption context (a clone or a\n"
                               "restored copy becomes a volume of its own in the audit trail).  The KMS\n"
                               "re-encrypts the key; it is never handed to this program's caller.\n"
                               "An attached device is refused without --force: its configured context\n"
                               "would no longer match, and the next attach would be refused.",
                .options = options,
                .min_args = 1,
                .max_args = 1,
        };
        _cleanup_(kc_cli_target_clear) struct kc_cli_target t = {};
        _cleanup_context_ struct kc_context *ctx = NULL, *given = NULL;
        _cleanup_free_ char *mapping = NULL;
        struct kc_rewrap_params p = {};
        struct kc_rewrap_result res;
        struct kc_err err = {};
        struct kc_kms *kms;
        int nargs, r;

        /* Usage errors first: they change nothing and need no KMS. */
        r = kc_cli_parse(cli, argc, argv, &usage, &nargs);
        if (r <= 0)
                return kc_cli_parse_exit(r);
        if (!kv)
                return kc_cli_usage_error(&usage, "--context is required");
        if (is_name(argv[1]))
                return kc_cli_usage_error(&usage, "rebind takes a DEVICE path, UUID= or LABEL=, not a name");
        if (kc_cli_check_key_ref(&usage, key) < 0)
                return KC_EXIT_USAGE;
        /* A malformed --context is a usage error, told apart from a header that cannot be used. */
        r = kc_context_parse_kv(kv, &given, &err);
        if (r < 0)
                return kc_cli_usage_error(&usage, "--context: %s", kc_err_msg(&err, r));
        /* A DEVICE, never a name (refused above): no volumes file to read.  Its header is read, and
         * a refusal found there made, before the KMS is opened: that would create the keystore. */
        r = kc_cli_target_resolve(argv[1], header, NULL, &t, &err);
        if (r >= 0)
                r = merged_context(&t, given, &ctx, &err);
        if (r < 0)
                return kc_cli_fail(cli, r, &err, "rebind");
        if (!force && kc_mapping_of_device(t.device, &mapping) >= 0) {
                kc_err_set(&err, -EBUSY, "%s is attached as %s under its current context; detach it, "
                           "or rebind with --force", t.device, mapping);
                return kc_cli_fail(cli, -EBUSY, &err, "rebind");
        }
        r = kc_cli_kms(cli, &kms);
        if (r < 0)
                return kc_cli_exit_status(r);
        p = (struct kc_rewrap_params) {
                .ref = { .device = t.device, .header = t.header },
                .dst_key_ref = key, .dst_context = ctx, .dry_run = dry_run,
        };
        r = kc_rewrap(kms, &cli->caller, &p, &res, &err);
        if (r < 0)
                return kc_cli_fail(cli, kc_cli_header_error(r), &err, "rebind");
        if (r > 0)
                kc_cli_warn_unrecorded(cli, &err, "rebind");
        if (cli->quiet)
                ;
        else if (cli->json)
                kc_cli_print_json(rewrap_json(NULL, t.device, &res, dry_run));
        else
                rewrap_text("", t.device, &res, dry_run, true);
        if (!reencrypt || dry_run)
                return KC_EXIT_OK;
        /* A clone shares its original's data key until it gets one of its own. */
        return kc_cli_reencrypt(cli, kms, &(struct kc_cli_reencrypt_options) {
                .label = t.device, .device = t.device, .header = t.header, .expect = ctx, .no_report = cli->json,
        });
}

/* ---- key usage and retirement (for cmd-key.c) ---- */

static struct json_object *known_json(const struct kc_known_volume *v) {
        struct json_object *o = json_object_new_object();

        if (v->name)
                json_object_object_add(o, "Name", json_object_new_string(v->name));
        if (v->device)
                json_object_object_add(o, "Device", json_object_new_string(v->device));
        if (v->mapping)
                json_object_object_add(o, "Mapping", json_object_new_string(v->mapping));
        if (v->uuid[0])
                json_object_object_add(o, "LuksUuid", json_object_new_string(v->uuid));
        if (v->error < 0)
                json_object_object_add(o, "Error", json_object_new_string(v->reason));
        return o;
}

/* One volume at indent, after label; why it is unreadable on a line of its own, indented under it. */
static void known_text(const char *indent, const char *label, const struct kc_known_volume *v) {
        if (v->name)
                printf("%s%s%s (%s)", indent, label, v->name, strna(v->device));
        else
                printf("%s%s%s", indent, label, strna(v->device));
        printf("%s%s\n", v->mapping ? ", attached as " : "", v->mapping ?: "");
        if (v->error < 0)
                printf("%s  not readable: %s\n", indent, v->reason);
}

static void print_usage(struct kc_cli *cli, const struct kc_key_info *info, const struct kc_known_volumes *k) {
        struct json_object *o = NULL, *versions = NULL, *unreadable = NULL;

        if (cli->json) {
                o = json_object_new_object();
                versions = json_object_new_array();
                unreadable = json_object_new_array();
                json_object_object_add(o, "KeyId", json_object_new_string(info->key_id));
                json_object_object_add(o, "Arn", json_object_new_string(info->arn));
                json_object_object_add(o, "KeyVersion", json_object_new_int64(info->current_version));
        } else
                printf("%s%s%s%s: current version %" PRIu32 "\n", info->arn, info->alias[0] ? " (" : "",
                       info->alias, info->alias[0] ? ")" : "", info->current_version);

        for (uint32_t ver = info->current_version; ver >= 1; ver--) {
                struct json_object *vols = cli->json ? json_object_new_array() : NULL, *e;
                unsigned n = 0;

                for (size_t i = 0; i < k->n; i++) {
                        if (!kc_known_volume_uses(&k->v[i], info) || k->v[i].key_version != ver)
                                continue;
                        if (!n++ && !vols)
                                printf("  version %" PRIu32 ":\n", ver);
                        if (vols)
                                json_object_array_add(vols, known_json(&k->v[i]));
                        else
                                known_text("    ", "", &k->v[i]);
                }
                if (!vols)
                        continue;
                e = json_object_new_object();
                json_object_object_add(e, "KeyVersion", json_object_new_int64(ver));
                json_object_object_add(e, "Volumes", vols);
                json_object_array_add(versions, e);
        }
        for (size_t i = 0; i < k->n; i++) {
                if (k->v[i].error == 0)
                        continue;
                if (unreadable)
                        json_object_array_add(unreadable, known_json(&k->v[i]));
                else
                        known_text("  ", "unknown: ", &k->v[i]);
        }
        if (o) {
                json_object_object_add(o, "Versions", versions);
                json_object_object_add(o, "Unreadable", unreadable);
                kc_cli_print_json(o);
        }
}

int kc_cli_key_usage(struct kc_cli *cli, int argc, char **argv) {
        const char *volumes = NULL;
        const struct kc_cli_option options[] = {
                { .name = "volumes", .arg = "FILE", .help = "volumes file (default " KC_VOLUMES_FILE ")", .value = &volumes },
                {},
        };
        const struct kc_cli_usage usage = {
                .synopsis = "key usage KEY [DEVICE...] [--volumes FILE]",
                .description = "List the known volumes (configured, attached, and DEVICEs given) whose data\n"
                               "key is wrapped under KEY, per key version; volumes whose header cannot be\n"
                               "read are listed apart, since they may depend on it too.",
                .options = options,
                .volumes = &volumes,
                .min_args = 1,
                .max_args = 64,
        };
        _cleanup_known_volumes_ struct kc_known_volumes *k = NULL;
        struct kc_kms_request req = kc_cli_request(cli, NULL);
        struct kc_key_info info;
        struct kc_err err = {};
        struct kc_kms *kms;
        int nargs, r;

        r = kc_cli_parse(cli, argc, argv, &usage, &nargs);
        if (r <= 0)
                return kc_cli_parse_exit(r);
        /* A DEVICE asked for is not there: a failure (a volume found missing is listed as unreadable). */
        r = kc_cli_check_devices(cli, argv + 2, "cannot read");
        if (r != KC_EXIT_OK)
                return r;
        r = kc_cli_kms(cli, &kms);
        if (r < 0)
                return kc_cli_exit_status(r);
        r = kc_kms_describe_key(kms, &req, argv[1], &info, &err);
        if (r < 0)
                return kc_cli_fail(cli, r, &err, "describe key");
        r = kc_known_volumes_scan(volumes, argv + 2, &k, &err);
        if (r < 0)
                return kc_cli_fail(cli, r, &err, "find volumes");
        if (!cli->quiet)
                print_usage(cli, &info, k);
        return KC_EXIT_OK;
}

/*
 * The volumes of k whose data key info wraps, for one line: "pg, pgwal and 3
 * more", each by its configured or mapping name, else its device, cut where
 * the next would not fit in size (key usage lists them all).  Their number.
 */
static unsigned key_users(const struct kc_known_volumes *k, const struct kc_key_info *info, char *buf, size_t size) {
        unsigned n = 0, shown = 0;
        size_t len = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < k->n; i++) {
                const char *label = k->v[i].name ?: strna(k->v[i].device);

                if (!kc_known_volume_uses(&k->v[i], info))
                        continue;
                /* Room for this one and for a later " and N more". */
                if (n++ == shown && len + strlen(label) + 2 + 16 < size) {
                        len += (size_t) snprintf(buf + len, size - len, "%s%s", shown ? ", " : "", label);
                        shown++;
                }
        }
        if (n > shown && shown > 0)
                snprintf(buf + len, size - len, " and %u more", n - shown);
        else if (n > shown)
                snprintf(buf, size, "%u volume%s", n, n == 1 ? "" : "s");
        return n;
}

/*
 * A refusal of the in-use check goes where the KMS's own refusals go: the
 * audit trail, as the ScheduleKeyDeletion it stopped.  A record that cannot
 * be written leaves the refusal as it is (nothing was changed).
 */
static void audit_retire_refusal(struct kc_cli *cli, struct kc_kms *kms, const struct kc_key_info *info,
                                 const struct kc_err *err) {
        struct kc_kms_request req = kc_cli_request(cli, NULL);
        struct kc_audit_record rec = {
                .operation = "ScheduleKeyDeletion", .key_id = info->key_id, .result = -EPERM,
                .error = kc_err_msg(err, -EPERM), .detail = "refused by kmscrypt: volumes still use the key",
        };
        int r = kc_kms_audit_refusal(kms, &req, &rec);

        if (r < 0)
                log_debug_errno(r, "audit record of the refused deletion of key %s not written: %m", info->key_id);
}

int kc_cli_key_retire_check(struct kc_cli *cli, struct kc_kms *kms, const char *key_ref, const char *volumes,
                            bool force) {
        _cleanup_known_volumes_ struct kc_known_volumes *k = NULL;
        struct kc_kms_request req = kc_cli_request(cli, NULL);
        struct kc_key_info info;
        struct kc_err err = {};
        char users[96];
        unsigned n = 0;
        int r;

        r = kc_known_volumes_scan(volumes, NULL, &k, &err);
        if (r < 0)
                return kc_cli_fail(cli, r, &err, "find the volumes that use the key");
        for (size_t i = 0; i < k->n; i++)
                n += k->v[i].error == 0;
        /* Nothing to compare with: no DescribeKey (and no audit record) for nothing. */
        if (n == 0)
                return KC_EXIT_OK;
        r = kc_kms_describe_key(kms, &req, key_ref, &info, &err);
        if (r < 0)
                return kc_cli_fail(cli, r, &err, "describe key");
        n = key_users(k, &info, users, sizeof(users));
        if (n == 0)
                return KC_EXIT_OK;
        if (force) {
                log_warning("--force: scheduling the deletion of key %s though it still wraps the data key of %s; "
                            "once it is destroyed they open only with a recovery keyslot", info.key_id, users);
                return KC_EXIT_OK;
        }
        kc_err_set(&err, -EPERM, "key %s still wraps the data key of %s: rewrap %s under another key first "
                   "(kmscrypt rewrap NAME --key OTHER) or give --force", info.key_id, users, n == 1 ? "it" : "them");
        audit_retire_refusal(cli, kms, &info, &err);
        return kc_cli_fail(cli, -EPERM, &err, "schedule deletion");
}

/* ---- key state for status (cmd-attach.c) ---- */

/* The KMS for status only: opened quietly, since status must work (without this line) where it cannot. */
static struct kc_kms *status_kms(struct kc_cli *cli) {
        struct kc_kms_config kcfg;

        if (cli->kms)
                return cli->kms;
        if (!cli->config_loaded && kc_config_load(&cli->overrides, &cli->config, NULL) >= 0)
                cli->config_loaded = true;
        if (!cli->config_loaded)
                return NULL;
        kc_config_kms(&cli->config, &kcfg);
        (void) kc_kms_open(&kcfg, &cli->kms, NULL);
        return cli->kms;
}

bool kc_cli_key_state(struct kc_cli *cli, const char *device, const char *header, struct kc_volume_key_health *ret) {
        struct kc_volume_ref ref = { .device = device, .header = header };
        struct kc_kms_request req = kc_cli_request(cli, NULL);
        struct kc_kms *kms = status_kms(cli);

        /* Without it (no memory), each volume's CMK is described on its own. */
        if (kms && !cli->key_lookups)
                cli->key_lookups = kc_key_lookups_new();
        req.detail = "status";
        return kms && kc_volume_key_health(kms, cli->key_lookups, &req, &ref, ret, NULL) >= 0;
}

/* ---- copies ---- */

struct progress {
        bool tty;
        const char *what;
        time_t start;
        int last_pct;
        bool open;              /* a progress line without its newline yet */
};

/* An error line of its own, not at the end of a progress line left open. */
static void progress_end(struct progress *p) {
        if (p->open)
                fputc('\n', stderr);
        p->open = false;
}

static void progress_print(uint64_t done, uint64_t total, void *userdata) {
        struct progress *p = userdata;
        int pct = total ? (int) (done * 100 / total) : 100;
        time_t el = time(NULL) - p->start;

        if (!p->tty || pct == p->last_pct)
                return;
        p->last_pct = pct;
        fprintf(stderr, "\r%s: %3d%% %" PRIu64 " MiB, ETA %llds ", p->what, pct, done >> 20,
                done && el ? (long long) ((total - done) * (uint64_t) el / done) : 0LL);
        p->open = true;
        if (done == total)
                progress_end(p);
}

static bool path_startswith_dev(const char *path) {
        return strncmp(path, "/dev/", 5) == 0;
}

static int copy_done(struct kc_cli *cli, const char *verb, const char *src, const char *dst, const char *hdr_dst) {
        struct json_object *o;

        if (cli->quiet)
                return KC_EXIT_OK;
        if (!cli->json) {
                printf("%s %s to %s (encrypted, block for block)%s%s\n", verb, src, dst,
                       hdr_dst ? ", its header to " : "", hdr_dst ?: "");
                return KC_EXIT_OK;
        }
        o = json_object_new_object();
        json_object_object_add(o, "Source", json_object_new_string(src));
        json_object_object_add(o, "Destination", json_object_new_string(dst));
        if (hdr_dst)
                json_object_object_add(o, "HeaderDestination", json_object_new_string(hdr_dst));
        kc_cli_print_json(o);
        return KC_EXIT_OK;
}

/*
 * Where the copy of a detached header goes, beside the data's as
 * DEST.header; one that is there already stops the copy before its data is
 * copied, in kc_copy_encrypted()'s words.
 */
static int header_dst_prepare(const char *dst, bool force, char **ret, struct kc_err *err) {
        _cleanup_free_ char *p = NULL;
        struct stat st;
        int r;

        /* DEST.header beside a device would be a new file in /dev. */
        if (path_startswith_dev(dst) || (stat(dst, &st) == 0 && !S_ISREG(st.st_mode)))
                return kc_err_set(err, -EINVAL, "%s is not a file: the copy of a volume with a detached header is "
                                  "a pair of files, DEST and DEST.header (copy the header to a device with "
                                  "cryptsetup luksHeaderBackup)", dst);
        if (asprintf(&p, "%s.header", dst) < 0)
                return -ENOMEM;
        r = kc_copy_dst_check(p, force, err);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(p);
        return 0;
}

/*
 * A device not attached here: refused when written to by someone else (the
 * copy would be torn), or when its copy would not be encrypted.
 */
static int device_copyable(const struct kc_cli_target *t, struct kc_err *err) {
        char holder[64];

        if (kc_mapping_of_device(t->device, NULL) >= 0)
                return kc_err_set(err, -EBUSY, "%s is attached; back it up by its name", t->device);
        /* Opened by another tool (cryptsetup open, LVM): written to while copied, the copy is torn. */
        if (kc_device_has_holders(t->device, holder) > 0)
                return kc_err_set(err, -EBUSY, "%s is in use by %s; a copy of it would not be consistent: "
                                  "close that first, or attach it with kmscrypt and back it up by name",
                                  t->device, holder);
        /* A --header that is no LUKS2 header is status 5, as for every command (kc_cli_header_error). */
        return kc_cli_header_error(kc_copy_source_check(t->device, t->header, err));
}

/* The data of a device not attached here; *ret_hdr_dst: where its detached header goes, if it has one. */
static int copy_device(const struct kc_cli_target *t, const char *dst, bool force, struct progress *pg,
                       char **ret_hdr_dst, struct kc_err *err) {
        int r;

        r = device_copyable(t, err);
        if (r >= 0 && t->header)
                r = header_dst_prepare(dst, force, ret_hdr_dst, err);
        if (r < 0)
                return r;
        return kc_copy_encrypted(t->device, dst, force, progress_print, pg, err);
}

/* The data of an attached volume, suspended for the copy; its backing device checked as a device's. */
static int copy_attached(const char *name, const char *header, const char *dst, bool force, struct progress *pg,
                         struct kc_err *err) {
        struct kc_volume_status st;
        int r;

        r = kc_volume_status(name, NULL, &st, err);
        if (r < 0)
                return r;
        r = kc_cli_header_error(kc_copy_source_check(st.device, header, err));
        kc_volume_status_clear(&st);
        if (r < 0)
                return r;
        return kc_snapshot(name, dst, force, progress_print, pg, err);
}

/*
 * The detached header after its data: the pair is complete or, should the
 * header's copy fail, the data's is taken back (useless without it).
 */
static int copy_header(const char *header, const char *dst, const char *hdr_dst, bool force, struct kc_err *err) {
        int r = kc_copy_encrypted(header, hdr_dst, force, NULL, NULL, err);

        if (r < 0)
                (void) unlink(dst);
        return r;
}

static int run_snapshot_or_backup(struct kc_cli *cli, int argc, char **argv, bool backup) {
        const char *header = NULL;
        bool force = false;
        const struct kc_cli_option options[] = {
                /* Named as each synopsis names the copy: snapshot's DEST, backup's FILE. */
                { .name = "header", .arg = "HDR", .value = &header,
                  .help = backup ? "detached LUKS2 header, copied to FILE.header" :
                                   "detached LUKS2 header, copied to DEST.header" },
                { .name = "force", .help = "overwrite an existing file", .flag = &force },
                {},
        };
        const struct kc_cli_usage usage_snapshot = {
                .synopsis = "snapshot NAME DEST [--header HDR] [--force]",
                .description = "Consistent block copy of the attached volume NAME: suspend it (flushing and\n"
                               "freezing its filesystem), copy its backing device, header and ciphertext,\n"
                               "to DEST (a device or file), resume.  Nothing is decrypted.  A detached\n"
                               "header (--header) is copied to DEST.header.",
                .options = options, .min_args = 2, .max_args = 2,
        };
        const struct kc_cli_usage usage_backup = {
                .synopsis = "backup NAME|DEVICE FILE [--header HDR] [--force]",
                .description = "Copy a volume, header and ciphertext, to FILE: a snapshot when NAME is\n"
                               "attached, a plain copy of DEVICE otherwise.  A DEVICE without a LUKS2\n"
                               "header is refused: its copy would not be encrypted.  A detached header\n"
                               "(--header) is copied to FILE.header.  Restore with `kmscrypt restore`.",
                .options = options, .min_args = 2, .max_args = 2,
        };
        const struct kc_cli_usage *u = backup ? &usage_backup : &usage_snapshot;
        struct progress pg = { .tty = isatty(STDERR_FILENO), .what = argv[0], .start = time(NULL), .last_pct = -1 };
        _cleanup_(kc_cli_target_clear) struct kc_cli_target t = {};
        _cleanup_free_ char *hdr_dst = NULL;
        struct kc_volume_status st;
        struct kc_err err = {};
        int r;

        r = kc_cli_parse(cli, argc, argv, u, &argc);
        if (r <= 0)
                return kc_cli_parse_exit(r);
        pg.tty = pg.tty && !cli->quiet;
        if (is_name(argv[1]) && kc_volume_status(argv[1], NULL, &st, NULL) >= 0) {
                kc_volume_status_clear(&st);
                r = header ? header_dst_prepare(argv[2], force, &hdr_dst, &err) : 0;
                if (r >= 0)
                        r = copy_attached(argv[1], header, argv[2], force, &pg, &err);
        } else if (backup) {
                const char *volumes = NULL;

                /* Only a NAME is looked up in the volumes file; a DEVICE needs none. */
                if (is_name(argv[1]) && kc_cli_volumes_file(NULL, &volumes) < 0)
                        return KC_EXIT_USAGE;
                r = kc_cli_target_resolve(argv[1], header, volumes, &t, &err);
                if (r >= 0)
                        r = copy_device(&t, argv[2], force, &pg, &hdr_dst, &err);
                /* A configured volume's header too, from the volumes file. */
                header = t.header;
        } else
                r = kc_err_set(&err, -ENXIO, "no attached volume %s", argv[1]);
        progress_end(&pg);
        if (r >= 0 && header)
                r = copy_header(header, argv[2], hdr_dst, force, &err);
        if (r < 0)
                return kc_cli_fail(cli, r, &err, argv[0]);
        return copy_done(cli, backup ? "backed up" : "snapshot of", argv[1], argv[2], hdr_dst);
}

static int run_snapshot(struct kc_cli *cli, int argc, char **argv) {
        return run_snapshot_or_backup(cli, argc, argv, false);
}

static int run_backup(struct kc_cli *cli, int argc, char **argv) {
        return run_snapshot_or_backup(cli, argc, argv, true);
}

/* restore --context: the restored copy rebound, as `rebind DEVICE [--header HDR] --context KV` would. */
static int restore_rebind(struct kc_cli *cli, const char *device, const char *header, const char *kv) {
        /* DEVICE is a path here, also a bare file name, which rebind would take for a volume name. */
        _cleanup_free_ char *path = NULL;
        char *argv[] = { (char *) "rebind", (char *) device, (char *) "--context", (char *) kv,
                         (char *) "--header", (char *) header, NULL };

        if (is_name(device)) {
                if (asprintf(&path, "./%s", device) < 0)
                        return kc_cli_fail(cli, -ENOMEM, NULL, "restore");
                argv[1] = path;
        }
        return run_rebind(cli, header ? 6 : 4, argv);
}

/*
 * The data is written, its header is not: a file restore made for it is
 * removed again, as backup does with its copy; a device or a file that was
 * there keeps the data, and the message says so.
 */
static int header_failed(const char *dst, bool created, int r, struct kc_err *err) {
        char why[KC_ERR_MSG_MAX];

        snprintf(why, sizeof(why), "%s", kc_err_msg(err, r));
        *err = (struct kc_err) {};   /* kc_err_set() keeps the first error: this one says more */
        if (created && unlink(dst) >= 0)
                return kc_err_set(err, r, "%s; the data written to %s is removed again", why, dst);
        return kc_err_set(err, r, "%s; the data was written to %s, its header was not", why, dst);
}

/* The data, then (--header) the header that backup --header put beside it, FILE.header, to header. */
static int restore_copy(const char *src, const char *dst, const char *header, bool force, struct progress *pg,
                        struct kc_err *err) {
        _cleanup_free_ char *hdr_src = NULL;
        struct stat st;
        bool created;
        int r;

        if (header) {
                if (asprintf(&hdr_src, "%s.header", src) < 0)
                        return -ENOMEM;
                r = kc_path_check_length("header of the backup", hdr_src, err);
                if (r < 0)
                        return r;
                /* Before the data is written: a backup without its header restores nothing usable. */
                if (access(hdr_src, F_OK) < 0)
                        return kc_err_set(err, negative_errno(), "%s: %s (the header of a backup made with "
                                          "--header)", hdr_src, strerror(errno));
                /* And HDR can take it: refused only after the data was written, it left a volume with no header. */
                r = kc_copy_dst_check(header, force, err);
                if (r < 0)
                        return r;
        }
        created = lstat(dst, &st) < 0 && errno == ENOENT;
        r = kc_copy_encrypted(src, dst, force, progress_print, pg, err);
        progress_end(pg);
        if (r >= 0 && header) {
                r = kc_copy_encrypted(hdr_src, header, force, NULL, NULL, err);
                if (r < 0)
                        return header_failed(dst, created, r, err);
        }
        return r;
}

static int run_restore(struct kc_cli *cli, int argc, char **argv) {
        const char *kv = NULL, *header = NULL;
        bool force = false;
        const struct kc_cli_option options[] = {
                { .name = "context", .arg = "K=V,...", .help = "rebind the restored copy (e.g. volume-id=NEW)", .value = &kv },
                { .name = "header", .arg = "HDR", .help = "write FILE.header of the backup to this detached header", .value = &header },
                { .name = "force", .help = "overwrite an existing file", .flag = &force },
                {},
        };
        const struct kc_cli_usage usage = {
                .synopsis = "restore FILE DEVICE [--header HDR] [--context volume-id=NEW,...] [--force]",
                .description = "Write a backup (header and ciphertext) to DEVICE, which must not be attached.\n"
                               "A backup made with --header has its header in FILE.header: --header names\n"
                               "where that goes.  With --context the copy is then rebound: a volume of its own.",
                .options = options, .min_args = 2, .max_args = 2,
        };
        struct progress pg = { .tty = isatty(STDERR_FILENO), .what = "restore", .start = time(NULL), .last_pct = -1 };
        struct kc_err err = {};
        int r;

        r = kc_cli_parse(cli, argc, argv, &usage, &argc);
        if (r <= 0)
                return kc_cli_parse_exit(r);
        pg.tty = pg.tty && !cli->quiet;
        if (kc_mapping_of_device(argv[2], NULL) >= 0)
                return kc_cli_fail(cli, -EBUSY, NULL, "restore: the target device is attached");
        /* A mistyped /dev/sdX would become a new file in /dev, "restored". */
        if (path_startswith_dev(argv[2]) && access(argv[2], F_OK) < 0)
                return kc_cli_fail(cli, kc_err_set(&err, -ENOENT, "%s does not exist", argv[2]), &err, "restore");
        r = restore_copy(argv[1], argv[2], header, force, &pg, &err);
        if (r < 0)
                return kc_cli_fail(cli, r, &err, "restore");
        /* With --context, --json prints the one object of the rebind (it names the device). */
        if (!kv || !cli->json)
                copy_done(cli, "restored", argv[1], argv[2], header);
        return kv ? restore_rebind(cli, argv[2], header, kv) : KC_EXIT_OK;
}

const struct kc_cli_command kc_cli_cmd_rewrap = {
        .name = "rewrap", .summary = "re-wrap data keys under the newest CMK version or another CMK", .run = run_rewrap,
};
const struct kc_cli_command kc_cli_cmd_rebind = {
        .name = "rebind", .summary = "move a volume's wrapped key to a new encryption context", .run = run_rebind,
};
const struct kc_cli_command kc_cli_cmd_snapshot = {
        .name = "snapshot", .summary = "consistent encrypted block copy of an attached volume", .run = run_snapshot,
};
const struct kc_cli_command kc_cli_cmd_backup = {
        .name = "backup", .summary = "copy a volume (header and ciphertext) to a file", .run = run_backup,
};
const struct kc_cli_command kc_cli_cmd_restore = {
        .name = "restore", .summary = "write a backup to a device, optionally rebinding it", .run = run_restore,
};
