/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "agent/cli/cli.h"
#include "agent/daemon/volumes.h"
#include "lib/fileio.h"
#include "lib/log.h"
#include "lib/secret.h"

int kc_cli_config(struct kc_cli *cli) {
        struct kc_err err = {};
        int r;

        if (cli->config_loaded)
                return 0;
        r = kc_config_load(&cli->overrides, &cli->config, &err);
        if (r < 0) {
                log_error_errno(r, "%s", kc_err_msg(&err, r));
                return -EINVAL;
        }
        cli->config_loaded = true;
        if (!cli->verbose)
                kc_log_set_max_priority(cli->config.log_level);
        log_debug("configuration: %s, keystore %s, audit log %s", strna(cli->config.source),
                  cli->config.keystore_dir, cli->config.audit_log);
        return 0;
}

int kc_cli_kms(struct kc_cli *cli, struct kc_kms **ret) {
        struct kc_kms_config kcfg;
        struct kc_err err = {};
        int r;

        if (!cli->kms) {
                r = kc_cli_config(cli);
                if (r < 0)
                        return r;
                kc_config_kms(&cli->config, &kcfg);
                r = kc_kms_open(&kcfg, &cli->kms, &err);
                if (r < 0) {
                        /* Fail closed: no key operation without its keystore and audit log. */
                        log_error_errno(r, "cannot open the KMS: %s", kc_err_msg(&err, r));
                        return -EIO;
                }
        }
        *ret = cli->kms;
        return 0;
}

struct kc_kms_request kc_cli_request(struct kc_cli *cli, const char *volume) {
        return (struct kc_kms_request) { .caller = &cli->caller, .volume = volume };
}

static const struct {
        int error;
        int status;
} exit_map[] = {
        { EINVAL, KC_EXIT_USAGE },
        { E2BIG, KC_EXIT_USAGE },
        { ERANGE, KC_EXIT_USAGE },
        { EPROTONOSUPPORT, KC_EXIT_USAGE },
        { ENAMETOOLONG, KC_EXIT_USAGE },        /* a path longer than PATH_MAX, or a name in it than NAME_MAX */
        { ENOENT, KC_EXIT_NOT_FOUND },
        { ENOKEY, KC_EXIT_NOT_FOUND },
        { ENXIO, KC_EXIT_NOT_FOUND },
        { ENODEV, KC_EXIT_NOT_FOUND },
        { EIO, KC_EXIT_UNAVAILABLE },
        { EUCLEAN, KC_EXIT_UNAVAILABLE },
        { ENOTRECOVERABLE, KC_EXIT_UNAVAILABLE },
        { ENOSPC, KC_EXIT_UNAVAILABLE },
        { EFBIG, KC_EXIT_UNAVAILABLE },         /* a file size limit on the audit log or keystore */
        { EDQUOT, KC_EXIT_UNAVAILABLE },
        { EROFS, KC_EXIT_UNAVAILABLE },
        { EBUSY, KC_EXIT_UNAVAILABLE },
        { EUSERS, KC_EXIT_UNAVAILABLE },        /* the agent turned the connection away: too many */
        { EAGAIN, KC_EXIT_UNAVAILABLE },
        { ENOLCK, KC_EXIT_UNAVAILABLE },
        { EISDIR, KC_EXIT_UNAVAILABLE },
        { ENOTDIR, KC_EXIT_UNAVAILABLE },
        { ELOOP, KC_EXIT_UNAVAILABLE },
        { ETIMEDOUT, KC_EXIT_UNAVAILABLE },
        { ECONNREFUSED, KC_EXIT_UNAVAILABLE },
        { EHOSTUNREACH, KC_EXIT_UNAVAILABLE },
};

int kc_cli_exit_status(int r) {
        if (r >= 0)
                return KC_EXIT_OK;
        if (kc_err_is_refusal(r))
                return KC_EXIT_REFUSED;
        for (size_t i = 0; i < ARRAY_SIZE(exit_map); i++)
                if (exit_map[i].error == -r)
                        return exit_map[i].status;
        return KC_EXIT_FAILURE;
}

int kc_cli_header_error(int r) {
        if (r == -EINVAL || r == -E2BIG || r == -ERANGE || r == -EPROTONOSUPPORT || r == -ENOTUNIQ)
                return -EUCLEAN;
        return r;
}

int kc_cli_fail(struct kc_cli *cli, int r, const struct kc_err *err, const char *what) {
        int status = kc_cli_exit_status(r);
        char line[KC_LOG_LINE_MAX];

        snprintf(line, sizeof(line), "%s: %s", what, kc_err_msg(err, r));
        log_error_errno(r, "%s", line);
        /* Refusals are security events: the journal gets them too, even from scripts. */
        if ((status == KC_EXIT_REFUSED || status == KC_EXIT_NOT_FOUND) &&
            (!cli->config_loaded || cli->config.syslog))
                kc_log_sink_syslog(LOG_WARNING, line, NULL);
        return status;
}

void kc_cli_warn_unrecorded(struct kc_cli *cli, const struct kc_err *err, const char *what) {
        char line[KC_LOG_LINE_MAX];

        snprintf(line, sizeof(line), "%s: %s", what, err->msg);
        log_warning("%s", line);
        if (!cli->config_loaded || cli->config.syslog)
                kc_log_sink_syslog(LOG_WARNING, line, NULL);
}

void kc_cli_print_json(struct json_object *o) {
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                       JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
}

/* --- options ------------------------------------------------------------------------------ */

/* A command (not a group, which passes --json on) that prints JSON with --json. */
static bool takes_json(const struct kc_cli_usage *u) {
        return !u->stop_at_command && !u->no_json;
}

/* The global options of u's command: all of them, but --json only where it prints JSON or passes it on. */
static void global_options(struct kc_cli *cli, const struct kc_cli_usage *u, struct kc_cli_option ret[static 8]) {
        struct kc_cli_option g[] = {
                { .name = "keystore", .arg = "DIR", .help = "keystore directory (KMSCRYPT_KEYSTORE)", .value = &cli->overrides.keystore_dir },
                { .name = "audit-log", .arg = "FILE", .help = "audit log (KMSCRYPT_AUDIT_LOG)", .value = &cli->overrides.audit_log },
                { .name = "config", .arg = "FILE", .help = "configuration file (KMSCRYPT_CONFIG)", .value = &cli->overrides.config_file },
                { .name = "root-key-file", .arg = "FILE", .help = "root key of the keystore (KMSCRYPT_ROOT_KEY_FILE)", .value = &cli->overrides.root_key_file },
                { .name = "json", .help = "print JSON", .flag = &cli->json },
                { .name = "quiet", .short_name = 'q', .help = "print nothing on success", .flag = &cli->quiet },
                { .name = "verbose", .short_name = 'v', .help = "print debug messages", .flag = &cli->verbose },
                {},
        };
        size_t n = 0;

        for (size_t i = 0; i < ARRAY_SIZE(g); i++)
                if (!(u->no_json && g[i].flag == &cli->json))
                        ret[n++] = g[i];
}

static void print_options(const struct kc_cli_option *o) {
        for (; o && o->name; o++) {
                char left[64];

                if (o->short_name)
                        snprintf(left, sizeof(left), "-%c, --%s%s%s", o->short_name, o->name, o->arg ? " " : "",
                                 o->arg ?: "");
                else
                        snprintf(left, sizeof(left), "    --%s%s%s", o->name, o->arg ? " " : "", o->arg ?: "");
                printf("  %-30s %s\n", left, o->help);
        }
}

static void print_help(struct kc_cli *cli, const struct kc_cli_usage *u) {
        struct kc_cli_option g[8];

        /* Added here, not written in each synopsis, so that it is there exactly where --json is taken. */
        printf("Usage: kmscrypt %s%s\n", u->synopsis, takes_json(u) ? " [--json]" : "");
        if (u->description)
                printf("\n%s\n", u->description);
        if (u->commands) {
                printf("\nCommands:\n");
                for (size_t i = 0; i < u->n_commands; i++)
                        printf("  %-30s %s\n", u->commands[i].name, u->commands[i].summary);
        }
        if (u->options && u->options->name) {
                printf("\nOptions:\n");
                print_options(u->options);
        }
        global_options(cli, u, g);
        printf("\nGlobal options:\n");
        print_options(g);
        printf("  %-30s %s\n", "-h, --help", "show this help");
        printf("\nSee kmscrypt(8) for exit statuses and examples.\n");
}

/*
 * "kmscrypt key describe" from the synopsis "key describe KEY": its leading
 * lower-case words.  For the hint that ends every usage error.
 */
static void command_path(const struct kc_cli_usage *u, char buf[static 64]) {
        const char *p = u->synopsis;
        size_t n = strlen("kmscrypt");

        memcpy(buf, "kmscrypt", n + 1);
        while (*p >= 'a' && *p <= 'z') {
                size_t len = strspn(p, "abcdefghijklmnopqrstuvwxyz-");

                if ((p[len] != ' ' && p[len] != '\0') || n + 1 + len >= 64)
                        break;
                buf[n++] = ' ';
                memcpy(buf + n, p, len);
                buf[n += len] = '\0';
                p += len;
                p += strspn(p, " ");
        }
}

/*
 * The name of positional argument i (from 0) in the synopsis, e.g. "DEST" of
 * "snapshot NAME DEST [--force]": the words after the command that are not
 * options, their values or optional parts.  "argument" when there is none.
 */
static void positional_name(const struct kc_cli_usage *u, unsigned i, char buf[static 64]) {
        const char *p = u->synopsis;
        bool after_option = false, command = true;

        snprintf(buf, 64, "argument");
        while (*p) {
                size_t len = strcspn(p, " \n");

                if (command && strspn(p, "abcdefghijklmnopqrstuvwxyz-") < len)
                        command = false;
                if (!command && len > 0) {
                        bool positional = !after_option && !strchr("[(-.", p[0]);

                        after_option = p[0] == '-';
                        if (positional && i-- == 0) {
                                snprintf(buf, 64, "%.*s", (int) len, p);
                                return;
                        }
                }
                p += len;
                p += strspn(p, " \n");
        }
}

static const struct kc_cli_option *find_option(const struct kc_cli_option *tables[], size_t n,
                                               const char *name, size_t name_len, char short_name) {
        for (size_t t = 0; t < n; t++)
                for (const struct kc_cli_option *o = tables[t]; o && o->name; o++) {
                        if (short_name && o->short_name == short_name)
                                return o;
                        if (!short_name && strlen(o->name) == name_len && strncmp(o->name, name, name_len) == 0)
                                return o;
                }
        return NULL;
}

/* Handle argv[*i], an option; advances *i past a separate value. 1: ok, 0: --help, <0: error. */
static int parse_one(struct kc_cli *cli, const struct kc_cli_option *tables[], size_t n_tables, int argc,
                     char **argv, int *i, const struct kc_cli_usage *u) {
        const char *arg = argv[*i], *value = NULL, *name, *eq;
        const struct kc_cli_option *o;
        char path[64];
        size_t name_len;

        if (streq(arg, "--help") || streq(arg, "-h")) {
                print_help(cli, u);
                return 0;
        }
        if (arg[1] == '-') {
                name = arg + 2;
                eq = strchr(name, '=');
                name_len = eq ? (size_t) (eq - name) : strlen(name);
                if (eq)
                        value = eq + 1;
                o = find_option(tables, n_tables, name, name_len, 0);
        } else {
                /* Single short flags only (-q, -v); no bundling, so "-qv" is an error. */
                o = arg[2] == '\0' ? find_option(tables, n_tables, NULL, 0, arg[1]) : NULL;
        }
        command_path(u, path);
        if (!o) {
                log_error("unknown option %s (see '%s --help')", arg, path);
                return -EINVAL;
        }
        if (!o->arg) {
                if (value) {
                        log_error("option --%s takes no value (see '%s --help')", o->name, path);
                        return -EINVAL;
                }
                *o->flag = true;
                return 1;
        }
        if (!value) {
                if (*i + 1 >= argc) {
                        log_error("option --%s needs a value %s (see '%s --help')", o->name, o->arg, path);
                        return -EINVAL;
                }
                value = argv[++*i];
        }
        *o->value = value;
        return 1;
}

int kc_cli_usage_error(const struct kc_cli_usage *u, const char *fmt, ...) {
        char path[64], msg[KC_ERR_MSG_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        command_path(u, path);
        log_error("%s (see '%s --help')", msg, path);
        return KC_EXIT_USAGE;
}

/*
 * A configuration file named by --config or KMSCRYPT_CONFIG is read by every
 * command, once its options (which may name it) are parsed, also by those
 * that use none of its settings (dump, config list, backup): a named file
 * that is missing or wrong is status 2, never silently unused.  The default
 * file is read only by the commands that need it, as before.
 */
static int check_named_config(struct kc_cli *cli) {
        return kc_config_file_named(&cli->overrides) ? kc_cli_config(cli) : 0;
}

int kc_cli_volumes_file(const char *option, const char **ret) {
        /* The generator's variable; empty counts as unset, as for every KMSCRYPT_ variable. */
        const char *env = getenv("KMSCRYPT_VOLUMES");
        const char *path = option ?: env && *env ? env : NULL;

        /* Only the built-in default may be absent: no volume configured yet. */
        if (path && access(path, F_OK) < 0) {
                log_error_errno(errno, "volumes file %s (named by %s): %m", path,
                                option ? "--volumes" : "KMSCRYPT_VOLUMES");
                return -EINVAL;
        }
        *ret = path ?: KC_VOLUMES_FILE;
        return 0;
}

int kc_cli_parse(struct kc_cli *cli, int argc, char **argv, const struct kc_cli_usage *u, int *ret_nargs) {
        struct kc_cli_option g[8];
        const struct kc_cli_option *tables[] = { u->options, g };
        bool options_done = false;
        int w = 1, r;

        global_options(cli, u, g);
        for (int i = 1; i < argc; i++) {
                const char *arg = argv[i];

                if (!options_done && streq(arg, "--")) {
                        options_done = true;
                        continue;
                }
                if (options_done || arg[0] != '-' || arg[1] == '\0') {
                        argv[w++] = argv[i];
                        /* A command name: what follows belongs to the command. */
                        if (u->stop_at_command)
                                options_done = true;
                        continue;
                }
                r = parse_one(cli, tables, ARRAY_SIZE(tables), argc, argv, &i, u);
                if (r <= 0)
                        return r;
        }
        argv[w] = NULL;
        if (cli->verbose)
                kc_log_set_max_priority(LOG_DEBUG);
        /* Not among its options (help --json is an unknown option), but given before the
         * command name (kmscrypt --json help), where it was one: refused all the same. */
        if (u->no_json && cli->json) {
                char path[64];

                command_path(u, path);
                log_error("option --json: %s prints no JSON (see '%s --help')", path, path);
                return -EINVAL;
        }
        if (!u->stop_at_command && (unsigned) (w - 1) < u->min_args) {
                char name[64], path[64];

                positional_name(u, (unsigned) (w - 1), name);
                command_path(u, path);
                log_error("missing %s (see '%s --help')", name, path);
                return -EINVAL;
        }
        if (!u->stop_at_command && (unsigned) (w - 1) > u->max_args) {
                char path[64];

                command_path(u, path);
                log_error("unexpected argument \"%s\" (see '%s --help')", argv[u->max_args + 1], path);
                return -EINVAL;
        }
        /* A command, not a group: its global options are all known now. */
        if (!u->stop_at_command && check_named_config(cli) < 0)
                return -EINVAL;
        if (u->volumes && kc_cli_volumes_file(*u->volumes, u->volumes) < 0)
                return -EINVAL;
        *ret_nargs = w - 1;
        return 1;
}

bool kc_cli_begin(struct kc_cli *cli, int argc, char **argv, const struct kc_cli_usage *u,
                  struct kc_kms **ret_kms, int *ret_status) {
        int nargs, r;

        r = kc_cli_parse(cli, argc, argv, u, &nargs);
        if (r <= 0) {
                *ret_status = kc_cli_parse_exit(r);
                return false;
        }
        r = kc_cli_kms(cli, ret_kms);
        if (r < 0) {
                *ret_status = kc_cli_exit_status(r);
                return false;
        }
        return true;
}

int kc_cli_check_key_ref(const struct kc_cli_usage *u, const char *key) {
        const struct kc_kms_provider *provider;
        struct kc_err err = {};
        const char *rest;
        int r;

        if (!key)
                return 0;
        r = kc_kms_resolve(key, &provider, &rest, &err);
        if (r < 0) {
                kc_cli_usage_error(u, "--key: %s", kc_err_msg(&err, r));
                return -EINVAL;
        }
        return 0;
}

int kc_cli_parse_uint(const char *name, const char *text, unsigned min, unsigned max, unsigned *ret) {
        unsigned long v;
        char *end;

        errno = 0;
        v = text[0] >= '0' && text[0] <= '9' ? strtoul(text, &end, 10) : 0;
        if (text[0] < '0' || text[0] > '9' || errno != 0 || *end != '\0' || v < min || v > max) {
                log_error("--%s: expected a number from %u to %u, got \"%s\"", name, min, max, text);
                return -EINVAL;
        }
        *ret = (unsigned) v;
        return 0;
}

int kc_cli_dispatch(struct kc_cli *cli, int argc, char **argv, const struct kc_cli_usage *u,
                    const struct kc_cli_command *table, size_t n) {
        char path[64];
        int nargs, r;

        r = kc_cli_parse(cli, argc, argv, u, &nargs);
        if (r <= 0)
                return kc_cli_parse_exit(r);
        command_path(u, path);
        if (nargs == 0) {
                print_help(cli, u);
                log_error("missing command (see '%s --help')", path);
                return KC_EXIT_USAGE;
        }
        for (size_t i = 0; i < n; i++)
                if (streq(table[i].name, argv[1]))
                        return table[i].run(cli, nargs, argv + 1);
        log_error("unknown command \"%s\" (see '%s --help')", argv[1], path);
        return KC_EXIT_USAGE;
}

/* --- secrets on their way in and out ------------------------------------------------------- */

char *kc_cli_base64_secret(const void *data, size_t n) {
        size_t len = 4 * ((n + 2) / 3) + 1;
        char *out = kc_secret_alloc(len);

        if (!out)
                return NULL;
        /* EVP_EncodeBlock writes straight into out: no intermediate copy to wipe. */
        EVP_EncodeBlock((unsigned char *) out, data, (int) n);
        return out;
}

static int b64_value(char ch) {
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const char *p = ch ? strchr(alphabet, ch) : NULL;
        return p ? (int) (p - alphabet) : -1;
}

int kc_cli_unbase64_secret(const char *text, size_t len, uint8_t **ret, size_t *ret_len) {
        _cleanup_secret_ uint8_t *out = NULL;
        size_t pad = 0, o = 0;
        uint32_t acc = 0;

        while (len > 0 && strchr(" \t\r\n", text[len - 1]))
                len--;
        if (len == 0 || len % 4 != 0)
                return -EINVAL;
        if (text[len - 1] == '=')
                pad = text[len - 2] == '=' ? 2 : 1;
        out = kc_secret_alloc(len / 4 * 3);
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < len; i++) {
                int v = i >= len - pad ? 0 : b64_value(text[i]);
                if (v < 0)
                        return -EINVAL;
                acc = (acc << 6) | (uint32_t) v;
                if (i % 4 == 3) {
                        out[o++] = (uint8_t) (acc >> 16);
                        out[o++] = (uint8_t) (acc >> 8);
                        out[o++] = (uint8_t) acc;
                        acc = 0;
                }
        }
        *ret_len = o - pad;
        *ret = TAKE_PTR(out);
        return 0;
}

/* The terminal's modes while a secret is read with echo off, for a signal that ends the read. */
static struct termios tty_saved;
static const int tty_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };

/* Put the terminal back (async-signal-safe), then die of the signal as without us. */
static void tty_restore_and_die(int sig) {
        (void) tcsetattr(STDIN_FILENO, TCSANOW, &tty_saved);
        signal(sig, SIG_DFL);
        raise(sig);
}

/*
 * One line typed at the terminal on stdin, not echoed (as cryptsetup reads a
 * passphrase), after prompt on stderr; the newline is kept, as a file's
 * would be.  The terminal's modes are put back however the read ends, a
 * Ctrl-C included.
 */
int kc_cli_read_secret_tty(const char *prompt, size_t max, char **ret, size_t *ret_len) {
        _cleanup_secret_ char *buf = NULL;
        struct sigaction old_sa[ARRAY_SIZE(tty_signals)], sa = { .sa_handler = tty_restore_and_die };
        struct termios quiet;
        size_t len = 0;
        int r = 0;

        if (tcgetattr(STDIN_FILENO, &tty_saved) < 0)
                return negative_errno();
        buf = kc_secret_alloc(max + 1);
        if (!buf)
                return -ENOMEM;
        quiet = tty_saved;
        quiet.c_lflag &= ~(tcflag_t) ECHO;
        quiet.c_lflag |= ECHONL;
        for (size_t i = 0; i < ARRAY_SIZE(tty_signals); i++)
                (void) sigaction(tty_signals[i], &sa, &old_sa[i]);
        /* Echo off (and what was typed ahead dropped) before the prompt shows, not after: a
         * line typed as soon as the prompt appears is then neither echoed nor thrown away. */
        if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) < 0)
                r = negative_errno();
        else {
                fputs(prompt, stderr);
                fflush(stderr);
        }
        while (r == 0) {
                ssize_t n = read(STDIN_FILENO, buf + len, 1);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        r = negative_errno();
                else if (n > 0 && len == max)
                        r = -EFBIG;
                if (n <= 0 || r < 0 || buf[len++] == '\n')
                        break;
        }
        (void) tcsetattr(STDIN_FILENO, TCSANOW, &tty_saved);
        for (size_t i = 0; i < ARRAY_SIZE(tty_signals); i++)
                (void) sigaction(tty_signals[i], &old_sa[i], NULL);
        if (r < 0)
                return r;
        buf[len] = '\0';
        *ret_len = len;
        *ret = TAKE_PTR(buf);
        return 0;
}

int kc_cli_read_secret_file(const char *path, size_t max, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = -1;
        _cleanup_secret_ char *buf = NULL;
        size_t len;
        int r;

        fd = streq(path, "-") ? dup(STDIN_FILENO) : open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        /* Read straight into secret memory: stdio would leave a copy in its own buffer. */
        buf = kc_secret_alloc(max + 1);
        if (!buf)
                return -ENOMEM;
        r = kc_read_upto(fd, buf, max, &len);
        if (r < 0)
                return r;
        *ret_len = len;
        *ret = TAKE_PTR(buf);
        return 0;
}

int kc_cli_read_option_file(const char *option, const char *path, size_t max, const char *prompt, char **ret,
                            size_t *ret_len) {
        int r;

        if (prompt && streq(path, "-") && isatty(STDIN_FILENO))
                r = kc_cli_read_secret_tty(prompt, max, ret, ret_len);
        else
                r = kc_cli_read_secret_file(path, max, ret, ret_len);

        /* Whatever the errno, a bad argument (2), as a named --config or --volumes file that is
         * missing is: the line names the option and the file, its reason says the rest. */
        if (r == -EFBIG)
                return log_error_errno(-EINVAL, "--%s %s: larger than %zu bytes", option, path, max);
        if (r < 0) {
                log_error_errno(r, "--%s %s: %m", option, path);
                return -EINVAL;
        }
        return 0;
}

int kc_cli_write_stdout(const void *buf, size_t n) {
        const char *p = buf;

        if (fflush(stdout) != 0)
                return negative_errno();
        while (n > 0) {
                ssize_t w = write(STDOUT_FILENO, p, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return negative_errno();
                p += w;
                n -= (size_t) w;
        }
        return 0;
}

static void print_json_string(const char *s) {
        struct json_object *j = json_object_new_string(s);

        fputs(j ? json_object_to_json_string_ext(j, JSON_C_TO_STRING_NOSLASHESCAPE) : "\"\"", stdout);
        json_object_put(j);
}

int kc_cli_print_json_secret(struct json_object *o, const char *secret_name, const char *secret_b64) {
        const char *sep = "";
        int r = 0;

        /*
         * Members are printed one by one so that the secret one can be written
         * from its kc_secret buffer: json-c (and stdio) would copy it into
         * ordinary heap memory that is never wiped.  Base64 needs no escaping.
         */
        fputs("{", stdout);
        json_object_object_foreach(o, key, val) {
                printf("%s\n  ", sep);
                print_json_string(key);
                printf(": %s", json_object_to_json_string_ext(val, JSON_C_TO_STRING_SPACED |
                                                                      JSON_C_TO_STRING_NOSLASHESCAPE));
                sep = ",";
        }
        json_object_put(o);
        if (secret_name) {
                printf("%s\n  ", sep);
                print_json_string(secret_name);
                fputs(": \"", stdout);
                r = kc_cli_write_stdout(secret_b64, strlen(secret_b64));
                fputs("\"", stdout);
        }
        fputs("\n}\n", stdout);
        return r;
}

void kc_cli_print_field(const char *name, const char *fmt, ...) {
        va_list ap;

        printf("%-16s ", name);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
}

void kc_cli_format_time(time_t t, char buf[static 32]) {
        struct tm tm;

        buf[0] = '\0';
        if (t != 0 && gmtime_r(&t, &tm))
                strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
