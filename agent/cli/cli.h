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

#include "agent/config.h"
#include "agent/kms.h"
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
        struct kc_caller caller;  /* this process */
};

struct kc_cli_command {
        const char *name;
        const char *summary;      /* one line for `kmscrypt --help` */
        int (*run)(struct kc_cli *cli, int argc, char **argv);
};

/* Open the KMS layer (and audit log) on first use; error already printed when < 0. */
int kc_cli_kms(struct kc_cli *cli, struct kc_kms **ret);

/* The request describing this process (and volume, may be NULL) for audit records. */
struct kc_kms_request kc_cli_request(struct kc_cli *cli, const char *volume);

/* Map a negative errno from the library to a KC_EXIT_* status. */
int kc_cli_exit_status(int r);

/* Print a JSON object to stdout (pretty, with trailing newline) and release it. */
void kc_cli_print_json(struct json_object *o);

/* Each command file exports its entries; main.c lists them in one table. */
extern const struct kc_cli_command kc_cli_cmd_key;
extern const struct kc_cli_command kc_cli_cmd_kms;
extern const struct kc_cli_command kc_cli_cmd_audit;
