/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>
#include <sys/stat.h>

#include "agent/cli/cli.h"
#include "lib/log.h"

/* kmscrypt audit ...: read and verify the hash-chained audit trail, restart a lost one. */

/*
 * The start of the commands that read the chain (list checks it where it
 * has no records; verify and restart, as a whole), like
 * kc_cli_begin() without opening the KMS: parse per u, then find the
 * chain's head and the evidence that it held records (the keystore's keys;
 * it borrows cli's configuration).  true to go on; false when the command
 * is done and should return *ret_status.
 */
static bool audit_begin(struct kc_cli *cli, int argc, char **argv, const struct kc_cli_usage *u, char **ret_head,
                        struct kc_audit_evidence *ret_evidence, int *ret_status) {
        struct kc_kms_config kcfg;
        int nargs, r;

        r = kc_cli_parse(cli, argc, argv, u, &nargs);
        if (r <= 0) {
                *ret_status = kc_cli_parse_exit(r);
                return false;
        }
        r = kc_cli_config(cli);
        if (r < 0) {
                *ret_status = kc_cli_exit_status(r);
                return false;
        }
        kc_config_kms(&cli->config, &kcfg);
        r = kc_kms_audit_head(&kcfg, ret_head);
        if (r < 0) {
                *ret_status = kc_cli_fail(cli, r, NULL, u->synopsis);
                return false;
        }
        kc_kms_audit_evidence(&kcfg, ret_evidence);
        return true;
}

static const char *record_string(struct json_object *rec, const char *name) {
        struct json_object *v;

        if (!json_object_object_get_ex(rec, name, &v) || !v)
                return NULL;
        return json_object_get_string(v);
}

struct list_state {
        struct kc_cli *cli;
        struct json_object *records;   /* --json: collected */
        unsigned long n;
};

static int list_one(struct json_object *rec, void *userdata) {
        struct list_state *s = userdata;
        const char *result, *ctx, *version;

        s->n++;
        if (s->records) {
                json_object_array_add(s->records, json_object_get(rec));
                return 0;
        }
        if (s->cli->quiet)
                return 0;
        result = record_string(rec, "result");
        ctx = record_string(rec, "encryption_context");
        version = record_string(rec, "key_version");
        printf("%-6s %-24s %-16s %-36s %-4s %-6s %s\n", strna(record_string(rec, "seq")),
               strna(record_string(rec, "time")), strna(record_string(rec, "operation")),
               record_string(rec, "key_id") ?: "-", version && !streq(version, "0") ? version : "-",
               strna(result), ctx && !streq(ctx, "null") ? ctx : "-");
        return 0;
}

/*
 * --key as every other --key takes it (id, alias/NAME, either with local:),
 * as the id that records name the key by, and as given for a refusal
 * recorded under that name.  Looked up without opening the KMS: reading
 * the trail writes neither to it nor to the keystore.  KC_EXIT_* status.
 */
static int key_filter(struct kc_cli *cli, const char *key, char id[static 65], struct kc_audit_filter *f) {
        struct kc_kms_config kcfg;
        struct kc_err err = {};
        int r;

        kc_config_kms(&cli->config, &kcfg);
        r = kc_kms_peek_key_id(&kcfg, key, id, &err);
        if (r < 0)
                return kc_cli_fail(cli, r, &err, "--key");
        f->key_id = id;
        f->key_ref = key;
        return KC_EXIT_OK;
}

/*
 * A log without records lists nothing, which reads as "no key was used":
 * true of a fresh chain only.  Where there is nothing to list, the chain is
 * verified (cheap: no records to hash), and one that was lost with its
 * head, or whose head says it had records, is status 5, as for every
 * command that opens the KMS over it (kmscrypt(8)), in one line that says
 * why and the way on.  A log with records is listed as it is: audit verify
 * checks those.  KC_EXIT_* status.
 */
static int list_check_empty(struct kc_cli *cli, const char *head, const struct kc_audit_evidence *evidence) {
        struct kc_audit_verify v = {};
        struct stat st;
        int r;

        if (stat(cli->config.audit_log, &st) == 0 && st.st_size > 0)
                return KC_EXIT_OK;
        r = kc_audit_verify(cli->config.audit_log, head, evidence, &v);
        if (r >= 0)
                return KC_EXIT_OK;
        /* Not through a kc_err: the reason names two paths and the keystore, and its line must not be cut. */
        log_error("audit list: %s: %s: no records to list (see kmscrypt audit verify, kmscrypt audit restart)",
                  cli->config.audit_log, v.reason[0] ? v.reason : strerror(-r));
        return r == -EBADMSG ? KC_EXIT_UNAVAILABLE : kc_cli_exit_status(r);
}

/* --NAME TIME, when given, as seconds; -EINVAL said in one line. */
static int parse_time_option(const char *name, const char *text, time_t *ret) {
        if (!text || kc_audit_parse_list_time(text, ret) >= 0)
                return 0;
        log_error("--%s: expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or @SECONDS, got \"%s\"", name, text);
        return -EINVAL;
}

static int audit_list(struct kc_cli *cli, int argc, char **argv) {
        const char *key = NULL, *since_text = NULL, *until_text = NULL;
        const struct kc_cli_option options[] = {
                { .name = "key", .arg = "KEY", .help = "only records about this key (id or alias/NAME)", .value = &key },
                { .name = "since", .arg = "TIME", .help = "only records from TIME on (YYYY-MM-DD[THH:MM:SSZ], @SECONDS)", .value = &since_text },
                { .name = "until", .arg = "TIME", .help = "only records before TIME (the same forms)", .value = &until_text },
                {},
        };
        const struct kc_cli_usage usage = {
                .synopsis = "audit list [--key KEY] [--since TIME] [--until TIME]",
                .description = "Print the audit records, oldest first.",
                .options = options,
        };
        _cleanup_free_ char *head = NULL;
        struct kc_audit_evidence evidence;
        struct kc_audit_filter filter = {};
        struct list_state s = { .cli = cli };
        char key_id[65];
        int r;

        if (!audit_begin(cli, argc, argv, &usage, &head, &evidence, &r))
                return r;
        if (parse_time_option("since", since_text, &filter.since) < 0 ||
            parse_time_option("until", until_text, &filter.until) < 0)
                return KC_EXIT_USAGE;
        filter.until_set = until_text != NULL;
        if (key) {
                r = key_filter(cli, key, key_id, &filter);
                if (r != KC_EXIT_OK)
                        return r;
        }
        r = list_check_empty(cli, head, &evidence);
        if (r != KC_EXIT_OK)
                return r;
        if (kc_cli_prints_json(cli))
                s.records = json_object_new_array();
        else if (!cli->quiet)
                printf("%-6s %-24s %-16s %-36s %-4s %-6s %s\n", "SEQ", "TIME", "OPERATION", "KEY ID", "VER",
                       "RESULT", "CONTEXT");
        r = kc_audit_foreach(cli->config.audit_log, &filter, list_one, &s);
        if (r < 0) {
                json_object_put(s.records);
                return kc_cli_fail(cli, r, NULL, cli->config.audit_log);
        }
        if (s.records) {
                struct json_object *o = json_object_new_object();

                json_object_object_add(o, "Records", s.records);
                kc_cli_print_json(o);
        }
        return KC_EXIT_OK;
}

static int audit_verify(struct kc_cli *cli, int argc, char **argv) {
        const struct kc_cli_usage usage = {
                .synopsis = "audit verify",
                .description = "Check the hash chain of the audit log and its head: an edited, removed\n"
                               "or truncated record is reported with its line, and the exit status is 4.",
        };
        _cleanup_free_ char *head = NULL;
        struct kc_audit_evidence evidence;
        struct kc_audit_verify v = {};
        struct kc_err err = {};
        int r;

        if (!audit_begin(cli, argc, argv, &usage, &head, &evidence, &r))
                return r;
        /* Log and head both gone is no empty chain where the keystore's keys say records were written. */
        r = kc_audit_verify(cli->config.audit_log, head, &evidence, &v);
        if (kc_cli_prints_json(cli)) {
                struct json_object *o = json_object_new_object();

                json_object_object_add(o, "AuditLog", json_object_new_string(cli->config.audit_log));
                json_object_object_add(o, "Intact", json_object_new_boolean(r >= 0));
                json_object_object_add(o, "Records", json_object_new_int64((int64_t) v.records));
                if (r < 0) {
                        json_object_object_add(o, "BadLine", json_object_new_int64((int64_t) v.bad_line));
                        json_object_object_add(o, "Reason", json_object_new_string(v.reason[0] ? v.reason : strerror(-r)));
                }
                kc_cli_print_json(o);
        }
        if (r < 0) {
                if (v.bad_line > 0)
                        kc_err_set(&err, r, "%s:%llu: %s", cli->config.audit_log,
                                   (unsigned long long) v.bad_line, v.reason[0] ? v.reason : "bad record");
                else
                        kc_err_set(&err, r, "%s: %s", cli->config.audit_log, v.reason[0] ? v.reason : strerror(-r));
                return kc_cli_fail(cli, r, &err, "audit verify");
        }
        if (kc_cli_prints_text(cli))
                printf("%s: %llu records, chain intact\n", cli->config.audit_log, (unsigned long long) v.records);
        return KC_EXIT_OK;
}

static int audit_restart(struct kc_cli *cli, int argc, char **argv) {
        const struct kc_cli_usage usage = {
                .synopsis = "audit restart",
                .description = "Start a new chain where the audit log and its head were lost although the\n"
                               "keystore's keys say records existed (audit verify exits 4, key operations\n"
                               "are refused).  Its first record, RestartChain, says what was lost.  Nothing\n"
                               "is changed where the chain is there or is fresh; a broken chain is refused.",
        };
        _cleanup_free_ char *head = NULL;
        struct kc_audit_evidence evidence;
        struct kc_err err = {};
        int r;

        if (!audit_begin(cli, argc, argv, &usage, &head, &evidence, &r))
                return r;
        r = kc_audit_restart(cli->config.audit_log, head, &evidence, &cli->caller, &err);
        if (r < 0)
                return kc_cli_fail(cli, r, &err, "audit restart");
        if (kc_cli_prints_json(cli)) {
                struct json_object *o = json_object_new_object();

                json_object_object_add(o, "AuditLog", json_object_new_string(cli->config.audit_log));
                json_object_object_add(o, "Restarted", json_object_new_boolean(r > 0));
                kc_cli_print_json(o);
        } else if (kc_cli_prints_text(cli))
                printf(r > 0 ? "%s: new chain started; its first record says the records before it are lost\n"
                             : "%s: no lost chain, nothing restarted\n", cli->config.audit_log);
        return KC_EXIT_OK;
}

static const struct kc_cli_command audit_commands[] = {
        { .name = "list", .summary = "print audit records", .run = audit_list },
        { .name = "verify", .summary = "check the hash chain of the audit log", .run = audit_verify },
        { .name = "restart", .summary = "start a new chain where the log and its head were lost", .run = audit_restart },
};

static int run_audit(struct kc_cli *cli, int argc, char **argv) {
        const struct kc_cli_usage usage = {
                .synopsis = "audit COMMAND ...",
                .description = "Read the audit trail: one hash-chained JSON record per use of a key.",
                .commands = audit_commands,
                .n_commands = ARRAY_SIZE(audit_commands),
                .stop_at_command = true,
        };
        return kc_cli_dispatch(cli, argc, argv, &usage, audit_commands, ARRAY_SIZE(audit_commands));
}

const struct kc_cli_command kc_cli_cmd_audit = {
        .name = "audit",
        .summary = "list, verify and restart the audit trail",
        .run = run_audit,
};
