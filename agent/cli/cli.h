/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The kmscrypt command line: a table of commands, each in its own file
 * (cmd-key.c, cmd-kms.c, cmd-audit.c, cmd-volume.c, ...).  main.c parses
 * the global options, loads the configuration, and dispatches.
 *
 * A command's run() gets argv with argv[0] = the command name and returns
 * an exit status (KC_EXIT_*), having printed its one-line error itself
 * (log_error_errno from lib/log.h goes to stderr and, for refusals, the
 * journal).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <json-c/json.h>

#include "agent/config.h"
#include "agent/kms.h"
#include "agent/luks.h"
#include "lib/error.h"

/* Exit codes, documented in kmscrypt(8). */
enum {
        KC_EXIT_OK = 0,
        KC_EXIT_FAILURE = 1,      /* anything not below */
        KC_EXIT_USAGE = 2,        /* bad arguments or options */
        KC_EXIT_NOT_FOUND = 3,    /* no such key, alias, volume or device */
        KC_EXIT_REFUSED = 4,      /* refused by policy: wrong context, disabled/deleted key, tampered blob */
        KC_EXIT_UNAVAILABLE = 5,  /* KMS, keystore, audit log or device unusable (I/O, corruption, busy) */
};

struct kc_cli {
        struct kc_config config;  /* global options over environment over config file over defaults */
        bool json;                /* --json */
        bool quiet;               /* --quiet */
        struct kc_kms *kms;       /* opened on first use by kc_cli_kms() */
        struct kc_key_lookups *key_lookups;  /* status: each CMK described once (kc_cli_key_state) */
        struct kc_caller caller;  /* this process */
        /* Global options as given (before or after the command name); config is loaded
         * from them on first use by kc_cli_config(), so `CMD --help` never needs it. */
        struct kc_config_overrides overrides;
        bool verbose;             /* --verbose */
        bool config_loaded;
};

/* What a command prints on success: its JSON document, its text, or (-q) nothing. */
static inline bool kc_cli_prints_json(const struct kc_cli *cli) {
        return cli->json && !cli->quiet;
}

static inline bool kc_cli_prints_text(const struct kc_cli *cli) {
        return !cli->json && !cli->quiet;
}

struct kc_cli_command {
        const char *name;
        const char *summary;      /* one line for `kmscrypt --help` */
        int (*run)(struct kc_cli *cli, int argc, char **argv);
};

/*
 * Load cli->config on first use (precedence in agent/config.h).  Error
 * already printed when < 0: -EINVAL for a bad configuration.
 */
int kc_cli_config(struct kc_cli *cli);

/*
 * Open the KMS layer (and audit log) on first use; error already printed
 * when < 0: -EINVAL for a bad configuration, -EIO whenever the KMS layer
 * cannot be opened (keystore or audit log unusable: KC_EXIT_UNAVAILABLE,
 * fail closed), whatever the underlying errno that the message names.
 */
int kc_cli_kms(struct kc_cli *cli, struct kc_kms **ret);

/* The request describing this process (and volume, may be NULL) for audit records. */
struct kc_kms_request kc_cli_request(struct kc_cli *cli, const char *volume);

/* Map a negative errno from the library to a KC_EXIT_* status. */
int kc_cli_exit_status(int r);

/*
 * A failure to use a volume's header, as the errno to report: a header
 * kmscrypt cannot use (not LUKS2, a malformed token, ...) is the device's
 * state, not a bad argument, so the -EINVAL family of libcryptsetup and the
 * token parser becomes -EUCLEAN (KC_EXIT_UNAVAILABLE, as kmscrypt(8) says);
 * a missing token stays -ENOENT (not found); anything else is r.  Only for
 * errors that come after the command's arguments were checked.
 */
int kc_cli_header_error(int r);

/*
 * Report a failed operation in one line ("kmscrypt: WHAT: reason") on
 * stderr and, when it is a refusal (KC_EXIT_REFUSED / KC_EXIT_NOT_FOUND),
 * also to syslog.  Returns the KC_EXIT_* status for r.
 */
int kc_cli_fail(struct kc_cli *cli, int r, const struct kc_err *err, const char *what);

/*
 * A change that was made but whose outcome record is missing from the audit
 * log (a kc_kms_* change returned 1): one warning line on stderr, and the
 * same line to syslog, the outside copy of the audit trail.  The command
 * still succeeds: the change stands.
 */
void kc_cli_warn_unrecorded(struct kc_cli *cli, const struct kc_err *err, const char *what);

/*
 * Options: a table per command, terminated by an empty entry.  Global
 * options (--keystore, --audit-log, --config, --root-key-file, --json,
 * --quiet, --verbose) and --help are understood everywhere, before or after
 * the command name, but --json by a command that prints JSON only
 * (kc_cli_usage.no_json).  "--opt=VALUE" and "--opt VALUE" are both accepted.
 */
struct kc_cli_option {
        const char *name;         /* long name without "--" */
        char short_name;          /* 0: none */
        const char *arg;          /* metavariable for an option taking a value; NULL: a flag */
        const char *help;
        const char **value;       /* where the value goes (options with arg) */
        bool *flag;               /* set to true when given (flags) */
};

struct kc_cli_usage {
        const char *synopsis;     /* after "kmscrypt ", e.g. "key describe KEY" */
        const char *description;  /* a paragraph for --help, may be NULL */
        const struct kc_cli_option *options;        /* NULL or terminated by {} */
        const struct kc_cli_command *commands;      /* subcommands listed by --help, or NULL */
        size_t n_commands;
        unsigned min_args, max_args;                /* positional arguments allowed */
        bool stop_at_command;     /* options end at the first positional (a command name) */
        /* A command that prints no JSON (help): --json is refused and left out of its --help.
         * Every other command's --help shows "[--json]" after its synopsis. */
        bool no_json;
        /* A command that reads the volumes file: where its --volumes value goes (NULL when not
         * given); kc_cli_parse() resolves it by kc_cli_volumes_file(). */
        const char **volumes;
};

/*
 * Parse argv[1..] per u, moving the positional arguments to argv[1..*ret_nargs]
 * (argv[*ret_nargs + 1] = NULL).  Returns 1 to go on, 0 when --help was printed,
 * -EINVAL after printing a usage error.  kc_cli_parse_exit() turns the latter two
 * into KC_EXIT_OK / KC_EXIT_USAGE.  For a command (not a group, u->stop_at_command
 * false) it also loads the configuration when a file is named (--config,
 * KMSCRYPT_CONFIG): one that cannot be read or has a mistake is -EINVAL too, as is
 * a named volumes file that does not exist (u->volumes).
 */
int kc_cli_parse(struct kc_cli *cli, int argc, char **argv, const struct kc_cli_usage *u, int *ret_nargs);
static inline int kc_cli_parse_exit(int r) { return r < 0 ? KC_EXIT_USAGE : KC_EXIT_OK; }

/* A usage error found after parsing: one line, the message plus "(see 'kmscrypt CMD --help')"; KC_EXIT_USAGE. */
int kc_cli_usage_error(const struct kc_cli_usage *u, const char *fmt, ...) _printf_(2, 3);

/*
 * The start of most commands: parse per u, then open the KMS.  true to go
 * on with *ret_kms set; false when the command is done (--help, or an error
 * already printed) and should return *ret_status.
 */
bool kc_cli_begin(struct kc_cli *cli, int argc, char **argv, const struct kc_cli_usage *u,
                  struct kc_kms **ret_kms, int *ret_status);

/*
 * --key KEY (NULL: not given) names a provider this build has: a usage error
 * (printed) before any device is read or KMS opened, for every command that
 * takes one, rather than the device's or the KMS's failure it would become.
 */
int kc_cli_check_key_ref(const struct kc_cli_usage *u, const char *key);

/* Parse "--NAME" as an unsigned integer in [min, max]; prints a usage error when < 0. */
int kc_cli_parse_uint(const char *name, const char *text, unsigned min, unsigned max, unsigned *ret);

/*
 * Run argv[1] (after the options of u) from table: "kmscrypt key list ...".
 * The subcommand gets argv starting at its own name.  Prints usage errors.
 */
int kc_cli_dispatch(struct kc_cli *cli, int argc, char **argv, const struct kc_cli_usage *u,
                    const struct kc_cli_command *table, size_t n);

/* Base64 (RFC 4648, padded) of n bytes, in kc_secret memory, NUL-terminated. NULL on ENOMEM. */
char *kc_cli_base64_secret(const void *data, size_t n);
/* Decode base64 text (trailing whitespace allowed) into kc_secret memory; -EINVAL when malformed. */
int kc_cli_unbase64_secret(const char *text, size_t len, uint8_t **ret, size_t *ret_len);
/* Read a whole file ("-": stdin) of at most max bytes into kc_secret memory, NUL-terminated. */
int kc_cli_read_secret_file(const char *path, size_t max, char **ret, size_t *ret_len);
/*
 * The file an option names for reading (--OPTION PATH, "-": stdin), as
 * kc_cli_read_secret_file(); with a prompt (may be NULL), "-" on a terminal
 * is one line typed there, as kc_cli_read_secret_tty().  One that is missing,
 * unreadable or larger than max is a bad argument: one line "--OPTION PATH:
 * reason" printed and -EINVAL (KC_EXIT_USAGE), for every such option alike.
 */
int kc_cli_read_option_file(const char *option, const char *path, size_t max, const char *prompt, char **ret,
                            size_t *ret_len);
/* One line of at most max bytes from the terminal on stdin, not echoed, after prompt; newline kept. */
int kc_cli_read_secret_tty(const char *prompt, size_t max, char **ret, size_t *ret_len);
/* write(2) all of buf to stdout, bypassing stdio so that no copy of a secret stays in its buffer. */
int kc_cli_write_stdout(const void *buf, size_t n);

/*
 * Print o, plus secret_name (may be NULL) whose value is secret_b64 written
 * straight from kc_secret memory, as one JSON object; releases o.
 */
int kc_cli_print_json_secret(struct json_object *o, const char *secret_name, const char *secret_b64);

/* One "Name: value" line of text output, names padded to a column. */
void kc_cli_print_field(const char *name, const char *fmt, ...) _printf_(2, 3);

/* Format t as ISO 8601 UTC ("2026-11-27T23:45:48Z"); "" for 0. */
void kc_cli_format_time(time_t t, char buf[static 32]);

/* Print a JSON object to stdout (pretty, with trailing newline) and release it. */
void kc_cli_print_json(struct json_object *o);

/* Each command file exports its entries; main.c lists them in one table. */
extern const struct kc_cli_command kc_cli_cmd_key;
extern const struct kc_cli_command kc_cli_cmd_kms;
extern const struct kc_cli_command kc_cli_cmd_audit;
/* Volumes, header side (cmd-volume-header.c). */
extern const struct kc_cli_command kc_cli_cmd_format;
extern const struct kc_cli_command kc_cli_cmd_adopt;
extern const struct kc_cli_command kc_cli_cmd_dump;
extern const struct kc_cli_command kc_cli_cmd_attach;
extern const struct kc_cli_command kc_cli_cmd_detach;
extern const struct kc_cli_command kc_cli_cmd_status;
extern const struct kc_cli_command kc_cli_cmd_list;
extern const struct kc_cli_command kc_cli_cmd_config;
/* Rotation and copies (cmd-rotate.c). */
extern const struct kc_cli_command kc_cli_cmd_rewrap;
extern const struct kc_cli_command kc_cli_cmd_rebind;
extern const struct kc_cli_command kc_cli_cmd_snapshot;
extern const struct kc_cli_command kc_cli_cmd_backup;
extern const struct kc_cli_command kc_cli_cmd_restore;
/* For cmd-key.c: `key usage`, `key rotate --rewrap`, and schedule-deletion's in-use check
 * (KC_EXIT_OK to go on, else the status to return: its refusal is one kc_cli_fail line
 * naming the volumes, and an audit record; --force, one warning line).  With --json and
 * ret_json, kc_cli_rewrap_users() hands its array of results over instead of printing it. */
int kc_cli_key_usage(struct kc_cli *cli, int argc, char **argv);
int kc_cli_rewrap_users(struct kc_cli *cli, struct kc_kms *kms, const char *key_ref, const char *volumes,
                        char **devices, struct json_object **ret_json);
int kc_cli_key_retire_check(struct kc_cli *cli, struct kc_kms *kms, const char *key_ref, const char *volumes,
                            bool force);
/* Each of devices (NULL-terminated: paths, UUID=, LABEL=) is there, before the KMS is opened; else
 * one kc_cli_fail line, "DEVICE: verb: device PATH: ...", and its status (3 when it is missing). */
int kc_cli_check_devices(struct kc_cli *cli, char **devices, const char *verb);
/* A volume named on the command line: NAME (volumes file, then attached mapping) or DEVICE (path, UUID=, LABEL=). */
struct kc_cli_target {
        char *name;             /* configured or mapping name, or NULL */
        char *device;
        char *header;
};
void kc_cli_target_clear(struct kc_cli_target *t);
/* volumes: from kc_cli_volumes_file(), or NULL where no volumes file is read (attached mappings only). */
int kc_cli_target_resolve(const char *arg, const char *header, const char *volumes, struct kc_cli_target *ret,
                          struct kc_err *err);
/*
 * The target's header and kmscrypt token (into *ret unless NULL), read before
 * the KMS is opened, which would create the keystore and audit log: a header
 * that is not LUKS2, or has no kmscrypt token, is refused in the words of the
 * command's own read (kc_luks_open(), kc_luks_token_read()), its error passed
 * through kc_cli_header_error().
 */
struct kc_token;
int kc_cli_target_token(const struct kc_cli_target *t, struct kc_token *ret, struct kc_err *err);
/* Data key replacement (cmd-reencrypt.c). */
extern const struct kc_cli_command kc_cli_cmd_reencrypt;
struct kc_cli_reencrypt_options {
        const char *label;                   /* name or device, for messages */
        const char *device, *header;
        const struct kc_context *expect;     /* NULL: no check */
        const char *resilience;              /* NULL: checksum */
        uint64_t rate_limit;                 /* bytes per second, 0: none */
        bool resume;
        bool no_report;                      /* print nothing on success (a step of another command) */
        const char *recovery_passphrase;     /* kc_secret, or NULL */
        size_t recovery_passphrase_len;
        const struct kc_luks_pbkdf *pbkdf;
};
/* Reencrypt (or resume) one volume with a progress display; prints the outcome; KC_EXIT_* status. */
int kc_cli_reencrypt(struct kc_cli *cli, struct kc_kms *kms, const struct kc_cli_reencrypt_options *o);
/*
 * The volumes file of a command: option (its --volumes FILE,
 * NULL when not given), else $KMSCRYPT_VOLUMES, else KC_VOLUMES_FILE.  Only
 * that built-in default may be missing (no volume configured yet); a file
 * that was named must exist, as a named --config must, since a typo read as
 * "no volumes" would let key schedule-deletion skip its in-use check.
 * 0 with *ret set; -EINVAL after printing one line naming the file (the
 * caller returns KC_EXIT_USAGE).
 */
int kc_cli_volumes_file(const char *option, const char **ret);
/* The volumes file at path from kc_cli_volumes_file(); the default one missing has no volumes. */
struct kc_volumes;
int kc_cli_volumes_load(const char *path, struct kc_volumes **ret, struct kc_err *err);

/* From cmd-attach.c: --expect-context K=V,... or --expect-context-json JSON (at most one) into *ret; error printed. */
struct kc_context;
int kc_cli_parse_expect(const char *kv, const char *json, struct kc_context **ret);

/* From cmd-volume-header.c: a passphrase or key file (-: stdin) into kc_secret memory; error printed. */
int kc_cli_secret_from_file(const char *option, const char *path, bool passphrase, char **ret, size_t *ret_len);
/* --pbkdf TYPE --pbkdf-force-iterations N --pbkdf-memory KB, costs checked by libcryptsetup; usage error printed. */
int kc_cli_pbkdf_from_options(const struct kc_cli_usage *u, const char *type, const char *iterations,
                              const char *memory, struct kc_luks_pbkdf *ret);
/* For status: the CMK's state and what still opens the volume; false when the KMS cannot be asked here. */
struct kc_volume_key_health;
bool kc_cli_key_state(struct kc_cli *cli, const char *device, const char *header, struct kc_volume_key_health *ret);
