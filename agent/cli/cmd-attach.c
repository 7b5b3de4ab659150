/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kmscrypt attach | detach | status | list */
#include <inttypes.h>
#include <string.h>

#include "agent/attach.h"
#include "agent/cli/cli.h"
#include "agent/client.h"
#include "agent/daemon/protocol.h"
#include "agent/daemon/volumes.h"
#include "agent/reencrypt.h"
#include "agent/rotate.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "lib/crypto-init.h"
#include "lib/log.h"
#include "lib/strv.h"

static int usage_error(const char *cmd, const char *what) {
        log_error("%s: %s (see 'kmscrypt %s --help')", cmd, what, cmd);
        return KC_EXIT_USAGE;
}

int kc_cli_parse_expect(const char *kv, const char *json, struct kc_context **ret) {
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

        if (cli->quiet)
                return;
        if (!cli->json) {
                printf("%s %s as /dev/mapper/%s\n", res->device, res->already ? "is already attached" : "attached",
                       res->name);
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

int kc_cli_volumes_load(const char *path, struct kc_volumes **ret, struct kc_err *err) {
        struct kc_err lerr = {};
        int r = kc_volumes_load(path, ret, &lerr);

        /* Not into err: its first line would stay, and name the missing file instead of what
         * the caller finds wrong next ("no volume NAME in FILE"). */
        if (r == -ENOENT)
                return kc_volumes_parse("", 0, path, ret, err);
        if (r < 0 && err)
                *err = lerr;
        return r;
}

/*
 * kc_attach_params.open_kms for kmscrypt itself: kc_cli_kms(), which says
 * why it fails, once; r is its outcome, sticky once it failed.  Left to
 * kc_attach(), so that a device it refuses from the header alone leaves no
 * keystore or audit log behind.
 */
struct kms_opener {
        struct kc_cli *cli;
        int r;
};

static int open_kms(void *userdata, struct kc_kms **ret) {
        struct kms_opener *o = userdata;

        if (o->r >= 0)
                o->r = kc_cli_kms(o->cli, ret);
        return o->r;
}

static void params_from_conf(const struct kc_volume_conf *v, struct kc_attach_params *p) {
        *p = (struct kc_attach_params) {
                .device = v->device, .header = v->header, .name = v->name, .expect = v->context,
                .providers = v->kms, .read_only = v->read_only, .flags = v->flags,
        };
}

/* Without the agent: one try of each configured volume, in file order. */
static int attach_all_direct(struct kc_cli *cli, const char *path, struct kc_agent_volume **ret, size_t *ret_n,
                             struct kc_err *load_err) {
        _cleanup_volumes_ struct kc_volumes *vs = NULL;
        struct kms_opener opener = { .cli = cli };
        struct kc_agent_volume *out;
        int r;

        r = kc_cli_volumes_load(path, &vs, load_err);
        if (r < 0)
                return r;
        out = calloc(vs->n ? vs->n : 1, sizeof(*out));
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < vs->n; i++) {
                const struct kc_volume_conf *v = &vs->volumes[i];
                struct kc_kms_request req = kc_cli_request(cli, NULL);
                struct kc_attach_params p;
                struct kc_attach_result res;
                struct kc_err err = {};
                int k;

                params_from_conf(v, &p);
                p.open_kms = open_kms;
                p.open_kms_userdata = &opener;
                k = kc_attach(NULL, &req, &p, &res, &err);
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

/*
 * Print the outcome of attach --all; the status is that of the first volume
 * that is not nofail and not attached.  Quiet still names each such volume
 * on stderr: a failure is never silent (the initramfs runs attach -q).
 */
static int print_attach_all(struct kc_cli *cli, const struct kc_agent_volume *v, size_t n) {
        struct json_object *arr = kc_cli_prints_json(cli) ? json_object_new_array() : NULL;
        int status = KC_EXIT_OK;

        for (size_t i = 0; i < n; i++) {
                bool fails = !v[i].nofail && v[i].state != KC_VOLUME_ATTACHED;

                if (arr)
                        json_object_array_add(arr, kc_agent_volume_to_json(&v[i]));
                else if (!cli->quiet)
                        print_agent_volume(&v[i]);
                else if (fails)
                        log_error("%s: %s", v[i].name,
                                  v[i].error < 0 ? v[i].reason : kc_volume_state_to_string(v[i].state));
                /* As attach DEVICE says it: a header kmscrypt cannot use is the device's state, not a usage error. */
                if (status == KC_EXIT_OK && fails)
                        status = v[i].error < 0 ? kc_cli_exit_status(kc_cli_header_error(v[i].error)) : KC_EXIT_FAILURE;
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

        r = agent ? kc_client_attach_all(agent, &v, &n, &err) : attach_all_direct(cli, volumes, &v, &n, &err);
        if (r < 0) {
                log_error("cannot attach the configured volumes: %s", kc_err_msg(&err, r));
                return kc_cli_exit_status(r);
        }
        return print_attach_all(cli, v, n);
}

/*
 * A volume whose data key replacement was interrupted (kc_attach() says
 * -EINPROGRESS) is carried to its end before it is attached (why:
 * docs/rotation.md), so that the attach itself stays the plain fast path on
 * a kmscrypt logon key.
 */
static int resume_reencryption(struct kc_cli *cli, struct kc_kms *kms, const struct kc_attach_params *p,
                               struct kc_err *err, int *ret_said) {
        _cleanup_free_ char *device = NULL;
        struct kc_cli_reencrypt_options o;
        int r;

        r = kc_resolve_device(p->device, &device, err);
        if (r < 0)
                return r;
        if (!cli->quiet)
                fprintf(stderr, "%s: its data key replacement was interrupted; finishing it first\n", p->device);
        o = (struct kc_cli_reencrypt_options) {
                .label = p->device, .device = device, .header = p->header, .expect = p->expect,
                .resume = true, .no_report = true,
        };
        /* It said why on its own line, and its exit status is the attach's. */
        *ret_said = kc_cli_reencrypt(cli, kms, &o);
        return *ret_said == KC_EXIT_OK ? 0 : -EBUSY;
}

/*
 * One volume: through the agent when it runs, else here.  *ret_said is the
 * exit status when the failure was already printed (kc_cli_kms says why the
 * KMS cannot open, an interrupted reencryption why it could not finish),
 * so that the refusal stays one line; else 0.  The KMS is opened only once
 * the header shows a volume to unwrap (kc_attach_params.open_kms).
 */
static int attach_one(struct kc_cli *cli, const struct kc_attach_params *p, const char *volume,
                      const char *volumes, struct kc_attach_result *res, struct kc_err *err, int *ret_said) {
        _cleanup_(kc_client_closep) struct kc_client *agent = open_agent();
        _cleanup_volumes_ struct kc_volumes *vs = NULL;
        _cleanup_free_ char *device = NULL;
        const struct kc_volume_conf *v;
        struct kc_attach_params cp = *p;
        struct kms_opener opener = { .cli = cli };
        struct kc_kms_request req;
        struct kc_kms *kms = NULL;
        int r;

        /* What kc_attach() (here or in the agent) calls invalid is the header's: not a bad argument
         * (--name is checked before), unlike a mistake in the volumes file below. */
        if (agent)
                return kc_cli_header_error(volume ? kc_client_attach_volume(agent, volume, false, res, err)
                                                  : kc_client_attach(agent, p, res, err));
        /* The attach is ours: OpenSSL's first fetches go to another CPU while we read and resolve. */
        kc_crypto_prefetch();
        if (volume) {
                r = kc_cli_volumes_load(volumes, &vs, err);
                if (r < 0)
                        return r;
                v = kc_volumes_find(vs, volume);
                if (!v)
                        return kc_err_set(err, -ENOENT, "no volume %s in %s", volume, volumes);
                params_from_conf(v, &cp);
        }
        /* A mistyped device is refused before the KMS is opened, which would create the keystore and
         * audit log (as kc_attach() refuses a header it cannot use); resolved once, so that kc_attach()
         * does not ask blkid again. */
        r = kc_resolve_device(cp.device, &device, err);
        if (r >= 0)
                r = kc_luks_check_paths(device, cp.header, err);
        if (r < 0)
                return r;
        cp.device = device;
        cp.open_kms = open_kms;
        cp.open_kms_userdata = &opener;
        p = &cp;
        req = kc_cli_request(cli, NULL);
        r = kc_attach(NULL, &req, p, res, err);
        if (r == -EINPROGRESS) {
                *err = (struct kc_err) {};
                r = open_kms(&opener, &kms);
                if (r >= 0) {
                        r = resume_reencryption(cli, kms, p, err, ret_said);
                        if (r < 0)
                                return r;
                        r = kc_attach(kms, &req, p, res, err);
                }
        }
        if (opener.r < 0) {
                *ret_said = kc_cli_exit_status(opener.r);
                return opener.r;
        }
        /* As kmscrypt status says it: attached, but no I/O goes through. */
        if (r >= 0 && res->key_wiped)
                return kc_err_set(err, -EKEYREVOKED, "%s is attached as /dev/mapper/%s but suspended, its key "
                                  "wiped (kmscryptd's revocation policy, or cryptsetup luksSuspend)", res->device,
                                  res->name);
        return kc_cli_header_error(r);
}

static int run_attach(struct kc_cli *cli, int argc, char **argv) {
        const char *expect_kv = NULL, *expect_json = NULL, *perf = NULL, *volumes = NULL;
        struct kc_attach_params p = { .flags = KC_CRYPT_DEFAULT_FLAGS };
        bool discards = false, all = false, read_only = false;
        int said = 0;
        const struct kc_cli_option options[] = {
                { .name = "all", .help = "attach every configured volume that is not attached", .flag = &all },
                { .name = "volumes", .arg = "FILE", .help = "volumes file when working without the agent", .value = &volumes },
                { .name = "name", .short_name = 'n', .arg = "NAME", .help = "mapping name (default: the context's volume-id)", .value = &p.name },
                { .name = "header", .arg = "FILE", .help = "detached LUKS2 header", .value = &p.header },
                { .name = "expect-context", .arg = "K=V,...", .help = "refuse unless the token's context is exactly this", .value = &expect_kv },
                { .name = "expect-context-json", .arg = "JSON", .help = "the same as a JSON object", .value = &expect_json },
                { .name = "read-only", .short_name = 'r', .help = "read-only mapping", .flag = &read_only },
                { .name = "perf-options", .arg = "LIST", .help = "dm-crypt flags (default no_read_workqueue,no_write_workqueue; 'none')", .value = &perf },
                { .name = "allow-discards", .help = "pass discards (TRIM) to the device", .flag = &discards },
                {},
        };
        const struct kc_cli_usage usage = {
                .synopsis = "attach DEVICE|UUID=...|LABEL=...|VOLUME|--all [OPTIONS]",
                .description =
                        "Unwrap the volume's data key through its KMS under the encryption context\n"
                        "stored in its kmscrypt token, load it into the kernel keyring and create\n"
                        "the dm-crypt mapping /dev/mapper/NAME.  VOLUME is a name of the volumes file.\n"
                        "When kmscryptd runs, the agent does it (and keeps retrying a volume whose KMS\n"
                        "or device is away); otherwise kmscrypt does it itself, with the same output.",
                .options = options,
                .volumes = &volumes,
                .min_args = 0, .max_args = 1,
        };
        _cleanup_context_ struct kc_context *expect = NULL;
        struct kc_attach_result res;
        struct kc_err err = {};
        const char *volume = NULL;
        bool tuned;
        int nargs, r;

        r = kc_cli_parse(cli, argc, argv, &usage, &nargs);
        if (r <= 0)
                return kc_cli_parse_exit(r);
        tuned = p.name || p.header || expect_kv || expect_json || read_only || perf || discards;
        if (all) {
                if (nargs != 0 || tuned)
                        return usage_error("attach", "--all takes no DEVICE and no per-volume options");
                return attach_all(cli, volumes);
        }
        if (nargs != 1)
                return usage_error("attach", "expected exactly one DEVICE or VOLUME");
        if (is_volume_name(argv[1])) {
                if (tuned)
                        return usage_error("attach", "a configured VOLUME takes its options from the volumes file");
                volume = argv[1];
        }
        /* A usage error here, so that what kc_attach() calls invalid is the header's (attach_one). */
        if (p.name && !kc_dm_name_is_valid(p.name))
                return usage_error("attach", "invalid --name: 1 to 127 characters, no '/' or blank, not . or ..");
        p.device = argv[1];
        p.read_only = read_only;
        if (perf && kc_crypt_flags_parse(perf, &p.flags) < 0)
                return usage_error("attach", "invalid --perf-options");
        if (discards)
                p.flags |= KC_CRYPT_ALLOW_DISCARDS;
        if (kc_cli_parse_expect(expect_kv, expect_json, &expect) < 0)
                return KC_EXIT_USAGE;
        p.expect = expect;

        r = attach_one(cli, &p, volume, volumes, &res, &err, &said);
        if (r < 0 && said)
                return said;
        if (r < 0) {
                char what[KC_ERR_MSG_MAX];
                snprintf(what, sizeof(what), "cannot attach %s", p.device);
                return kc_cli_fail(cli, r, &err, what);
        }
        print_attach(cli, &res);
        return KC_EXIT_OK;
}

static int run_detach(struct kc_cli *cli, int argc, char **argv) {
        bool deferred = false;
        const struct kc_cli_option options[] = {
                { .name = "deferred", .help = "remove when the last user closes it", .flag = &deferred },
                {},
        };
        const struct kc_cli_usage usage = {
                .synopsis = "detach NAME [--deferred]",
                .description = "Remove the dm-crypt mapping of a kmscrypt volume; the kernel wipes its key.",
                .options = options,
                .min_args = 1, .max_args = 1,
        };
        _cleanup_(kc_client_closep) struct kc_client *agent = NULL;
        struct kc_err err = {};
        int nargs, r;

        r = kc_cli_parse(cli, argc, argv, &usage, &nargs);
        if (r <= 0)
                return kc_cli_parse_exit(r);
        agent = open_agent();
        r = agent ? kc_client_detach(agent, argv[1], deferred, &err) : kc_detach(argv[1], deferred, &err);
        if (r < 0) {
                char what[KC_ERR_MSG_MAX];
                snprintf(what, sizeof(what), "cannot detach %s", argv[1]);
                return kc_cli_fail(cli, r, &err, what);
        }
        if (cli->quiet)
                return KC_EXIT_OK;
        if (cli->json) {
                struct json_object *o = json_object_new_object();

                /* What the agent's detach answers (docs/protocol.md). */
                json_object_object_add(o, "Name", json_object_new_string(argv[1]));
                json_object_object_add(o, "Deferred", json_object_new_boolean(deferred));
                kc_cli_print_json(o);
        } else
                printf("%s %s\n", argv[1], deferred ? "marked for deferred removal" : "detached");
        return KC_EXIT_OK;
}

/*
 * "key state:" (text) or KeyState and KeyStateReason (JSON): a disabled or deleted CMK leaves only
 * recovery keyslots.  KeyState is the bare state word that the key commands print, for scripts to
 * compare; absent when the KMS could not tell, and KeyStateReason then says why.
 */
static void status_key_state(struct kc_cli *cli, const struct kc_volume_status *s, const char *header,
                             struct json_object *o) {
        struct kc_volume_key_health h;
        char line[KC_ERR_MSG_MAX + 128];

        if (!s->has_token || !kc_cli_key_state(cli, s->device, header, &h))
                return;
        if (!o) {
                kc_volume_key_health_format(&h, line, sizeof(line));
                printf("  key state:    %s\n", line);
                return;
        }
        if (h.known)
                json_object_object_add(o, "KeyState", json_object_new_string(kc_key_state_to_string(h.state)));
        kc_volume_key_health_reason(&h, line, sizeof(line));
        if (line[0])
                json_object_object_add(o, "KeyStateReason", json_object_new_string(line));
}

static void status_text(const struct kc_volume_status *s) {
        _cleanup_free_ char *flags = NULL, *ctx = NULL;

        (void) kc_crypt_flags_format(s->flags, &flags);
        if (s->context)
                (void) kc_context_to_string(s->context, &ctx);
        printf("/dev/mapper/%s is %s%s.\n", s->name,
               s->key_wiped ? "suspended, key wiped" : s->suspended ? "suspended" : "active",
               s->open_count > 0 ? " and is in use" : "");
        printf("  device:       %s\n", s->device);
        printf("  luks uuid:    %s\n", s->luks_uuid);
        if (s->has_token) {
                printf("  provider:     %s\n", s->provider);
                /* A key reference, as dump's "Key:" (docs/token.md); KeyId in JSON is the id alone. */
                printf("  key:          %s:%s (version %" PRIu32 ")\n", s->provider, s->key_id, s->key_version);
                printf("  context:      %s\n", strna(ctx));
        } else
                printf("  token:        header not readable\n");
        printf("  cipher:       %s\n", s->cipher);
        printf("  keysize:      %" PRIu32 " bits\n", s->key_size * 8);
        if (s->key_wiped)
                printf("  key location: wiped (revocation policy; was keyring %s)\n", s->key_description);
        else
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
        struct json_object *arr = kc_cli_prints_json(cli) ? json_object_new_array() : NULL;
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
                if (arr) {
                        struct json_object *o = kc_volume_status_to_json(&s);

                        status_key_state(cli, &s, header, o);
                        json_object_array_add(arr, o);
                } else if (!cli->quiet) {
                        status_text(&s);
                        status_key_state(cli, &s, header, NULL);
                }
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

/* Whether the status shows a kmscrypt mapping of that name. */
static bool mapping_shown(const struct kc_client_status *st, const char *name) {
        for (size_t i = 0; i < st->n_volumes; i++)
                if (streq(st->volumes[i].name, name))
                        return true;
        return false;
}

/*
 * Status through the agent: the same mapping output as without it, then what
 * the agent knows about configured volumes that are not attached (why they
 * wait, since when) or are attached with a reason (a revoked key).  A name that is configured but not attached shows its
 * state instead of an error.
 */
static int print_agent_statuses(struct kc_cli *cli, struct kc_client *agent, char **names) {
        struct kc_client_status st = {};
        struct json_object *arr = kc_cli_prints_json(cli) ? json_object_new_array() : NULL;
        struct kc_err err = {};
        int status = KC_EXIT_OK, r;

        r = kc_client_status(agent, names, &st, &err);
        if (r < 0) {
                json_object_put(arr);
                log_error("cannot get the status from kmscryptd: %s", kc_err_msg(&err, r));
                return kc_cli_exit_status(r);
        }
        for (size_t i = 0; i < st.n_volumes; i++)
                if (arr) {
                        struct json_object *o = kc_volume_status_to_json(&st.volumes[i]);
                        const struct kc_agent_volume *v = find_configured(&st, st.volumes[i].name);

                        status_key_state(cli, &st.volumes[i], NULL, o);
                        /* What the agent says about an attached volume (kept under a revoked key)
                         * goes with its mapping, not as a second element of the same name. */
                        if (v && v->state == KC_VOLUME_ATTACHED && v->error < 0)
                                json_object_object_add(o, "AgentReason", json_object_new_string(v->reason));
                        json_object_array_add(arr, o);
                } else if (!cli->quiet) {
                        status_text(&st.volumes[i]);
                        status_key_state(cli, &st.volumes[i], NULL, NULL);
                }
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
                /* Its mapping is shown above; what the agent says about it too, when it says
                 * something (kept running under a revoked key).  A mapping that is not
                 * kmscrypt's any more (cryptsetup luksResume keyed it) is not: the agent's line is. */
                if (v->state == KC_VOLUME_ATTACHED && st.device_mapper && (v->error == 0 || arr) &&
                    mapping_shown(&st, v->name))
                        continue;
                if (arr)
                        json_object_array_add(arr, kc_agent_volume_to_json(v));
                else if (!cli->quiet)
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

static int run_status_or_list(struct kc_cli *cli, int argc, char **argv, bool list) {
        const char *header = NULL;
        const struct kc_cli_option status_options[] = {
                { .name = "header", .arg = "FILE", .help = "detached LUKS2 header of the volume named", .value = &header },
                {},
        };
        const struct kc_cli_usage status_usage = {
                .synopsis = "status [NAME...] [--header FILE]",
                .description =
                        "Show attached kmscrypt volumes: device, LUKS UUID, provider, key and version,\n"
                        "encryption context, cipher, key size, sector size, flags, open count, size.\n"
                        "Without NAME, every attached kmscrypt volume (and, through kmscryptd, every\n"
                        "configured volume that waits, with the reason and since when).",
                .options = status_options,
                .min_args = 0, .max_args = 1024,
        }, list_usage = {
                .synopsis = "list",
                .description = "Names of the attached kmscrypt volumes.",
        };
        _cleanup_strv_ char **names = NULL;
        _cleanup_(kc_client_closep) struct kc_client *agent = NULL;
        struct kc_err err = {};
        int nargs, r;

        r = kc_cli_parse(cli, argc, argv, list ? &list_usage : &status_usage, &nargs);
        if (r <= 0)
                return kc_cli_parse_exit(r);
        /* A detached header is read here, not by the agent. */
        agent = header ? NULL : open_agent();
        if (agent && !list)
                return print_agent_statuses(cli, agent, nargs > 0 ? argv + 1 : NULL);
        if (nargs > 0)
                return print_statuses(cli, argv + 1, header);

        r = agent ? kc_client_list(agent, &names, &err) : kc_volume_list(&names);
        if (r < 0) {
                /* The same words as the agent's, so scripts see one message either way. */
                if (!agent)
                        kc_err_set(&err, r, "cannot list device-mapper devices: %s", strerror(-r));
                return kc_cli_fail(cli, r, &err, "cannot list volumes");
        }
        if (!list)
                return print_statuses(cli, names, NULL);
        if (cli->quiet)
                return KC_EXIT_OK;
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
