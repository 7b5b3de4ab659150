/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <syslog.h>
#include <unistd.h>

#include "agent/cli/cli.h"
#include "lib/crypto-init.h"
#include "lib/log.h"
#include "lib/secret.h"

/*
 * Every command of kmscrypt, one entry each; a new command file adds its
 * kc_cli_cmd_* here (volume commands: format, attach, ...).
 */
static const struct kc_cli_command *const commands[] = {
        &kc_cli_cmd_key,
        &kc_cli_cmd_kms,
        &kc_cli_cmd_audit,
        &kc_cli_cmd_format,
        &kc_cli_cmd_adopt,
        &kc_cli_cmd_dump,
        &kc_cli_cmd_attach,
        &kc_cli_cmd_detach,
        &kc_cli_cmd_status,
        &kc_cli_cmd_list,
        &kc_cli_cmd_config,
        &kc_cli_cmd_rewrap,
        &kc_cli_cmd_rebind,
        &kc_cli_cmd_reencrypt,
        &kc_cli_cmd_snapshot,
        &kc_cli_cmd_backup,
        &kc_cli_cmd_restore,
};

/* The command table and top-level usage, for main() and for `kmscrypt help`. */
static struct kc_cli_command table[ARRAY_SIZE(commands) + 1];
static bool version;
static const struct kc_cli_option main_options[] = {
        { .name = "version", .help = "print the version", .flag = &version },
        {},
};
static const struct kc_cli_usage main_usage = {
        .synopsis = "[GLOBAL-OPTIONS] COMMAND [SUBCOMMAND] [OPTIONS] [ARGUMENTS]",
        .description = "Manage kmscrypt volumes (LUKS2 whose data key a KMS wraps), the customer master\n"
                       "keys of the local KMS, data keys, and the audit trail.",
        .options = main_options,
        .commands = table,
        .n_commands = ARRAY_SIZE(table),
        .stop_at_command = true,
};

/*
 * `kmscrypt help [COMMAND [SUBCOMMAND]]` is `kmscrypt [COMMAND [SUBCOMMAND]]
 * --help`, as git and systemctl users expect: the same text and status, and
 * an unknown command the same usage error.
 */
static int run_help(struct kc_cli *cli, int argc, char **argv) {
        const struct kc_cli_usage usage = {
                .synopsis = "help [COMMAND [SUBCOMMAND]]",
                .description = "Print the help of kmscrypt, or of COMMAND (and SUBCOMMAND): the same as\n"
                               "`kmscrypt --help` or `kmscrypt COMMAND [SUBCOMMAND] --help`.",
                .max_args = 2,
                .no_json = true,
        };
        char *words[] = { (char *) "kmscrypt", NULL, NULL, NULL, NULL };
        int nargs, n = 1, r;

        r = kc_cli_parse(cli, argc, argv, &usage, &nargs);
        if (r <= 0)
                return kc_cli_parse_exit(r);
        for (int i = 1; i <= nargs; i++)
                words[n++] = argv[i];
        words[n++] = (char *) "--help";
        return kc_cli_dispatch(cli, n, words, &main_usage, table, ARRAY_SIZE(table));
}

static const struct kc_cli_command cmd_help = {
        .name = "help", .summary = "show the help of kmscrypt or of a command", .run = run_help,
};

/* No plaintext key of this process may end up in a core file, nor in swap where it can be avoided. */
static void harden(void) {
        struct rlimit no_core = { 0, 0 };

        (void) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        (void) setrlimit(RLIMIT_CORE, &no_core);
        /* Our secrets are locked in any case; as a user without CAP_IPC_LOCK, the rest is not. */
        (void) kc_secret_lock_all();
}

static void cli_done(struct kc_cli *cli) {
        kc_key_lookups_free(cli->key_lookups);
        cli->key_lookups = NULL;
        kc_kms_close(cli->kms);
        cli->kms = NULL;
        if (cli->config_loaded)
                kc_config_done(&cli->config);
}

int main(int argc, char **argv) {
        struct kc_cli cli = {};
        int nargs, status, r;

        kc_crypto_init();
        harden();
        kc_log_set_program("kmscrypt");
        kc_log_set_sink(kc_log_sink_stderr, NULL);
        openlog("kmscrypt", LOG_PID, LOG_AUTHPRIV);

        for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
                table[i] = *commands[i];
        table[ARRAY_SIZE(commands)] = cmd_help;

        r = kc_caller_self(&cli.caller);
        if (r < 0)
                log_debug_errno(r, "cannot describe this process for the audit trail: %m");

        /* Global options first (--version needs no command), then the command. */
        r = kc_cli_parse(&cli, argc, argv, &main_usage, &nargs);
        if (r <= 0)
                return kc_cli_parse_exit(r);
        if (version) {
                printf("kmscrypt %s\n", PACKAGE_VERSION);
                return KC_EXIT_OK;
        }

        status = kc_cli_dispatch(&cli, nargs + 1, argv, &main_usage, table, ARRAY_SIZE(table));
        if (fflush(stdout) != 0) {
                log_error_errno(negative_errno(), "cannot write output: %m");
                status = status ?: KC_EXIT_FAILURE;
        }
        kc_secret_warn_unlocked();
        cli_done(&cli);
        closelog();
        /*
         * Everything of ours is closed, wiped and freed, and stdout is
         * flushed: skip the libraries' exit handlers.  OpenSSL 3 tearing
         * down two library contexts (ours and libcryptsetup's, with its
         * providers and method stores) cost an attach about as much as
         * its device-mapper work (tens of ms in the vm tier), and the
         * kernel reclaims the rest in one go.  Nothing they hold is a
         * secret of ours (keys live in kc_secret memory, wiped above).
         */
        fflush(stderr);
        _exit(status);
}
