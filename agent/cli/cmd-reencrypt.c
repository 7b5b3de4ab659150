/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kmscrypt reencrypt: a new data key and an online reencryption of the data
 * (agent/reencrypt.h).  This file resolves the volume, shows progress (a
 * bar with ETA on a terminal, a line every few seconds otherwise), turns
 * SIGINT/SIGTERM into a clean stop, and maps outcomes to exit codes.  Also
 * used by `rebind --reencrypt` and by `attach` of a volume whose
 * reencryption was interrupted.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/attach.h"
#include "agent/cli/cli.h"
#include "agent/daemon/volumes.h"
#include "agent/luks.h"
#include "agent/reencrypt.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "lib/json-util.h"
#include "lib/log.h"
#include "lib/secret.h"

#define PLAIN_INTERVAL_NS (5ull * 1000000000ull)   /* a progress line every 5 s when not on a tty */
#define BAR_WIDTH 30

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig) {
        (void) sig;
        stop_requested = 1;
}

struct progress {
        const char *label;
        bool tty, quiet;
        struct timespec t0, last;
        uint64_t done0;
        bool started, drawn;
};

static uint64_t ns_since(const struct timespec *t) {
        struct timespec now;

        clock_gettime(CLOCK_MONOTONIC, &now);
        return (uint64_t) (now.tv_sec - t->tv_sec) * 1000000000ull + (uint64_t) now.tv_nsec - (uint64_t) t->tv_nsec;
}

/* "1:02:03" or "2:03"; "--:--" when there is no rate yet. */
static void format_eta(double seconds, char *buf, size_t size) {
        unsigned s;

        if (seconds < 0 || seconds > 360000) {
                snprintf(buf, size, "--:--");
                return;
        }
        s = (unsigned) (seconds + 0.5);
        if (s >= 3600)
                snprintf(buf, size, "%u:%02u:%02u", s / 3600, s / 60 % 60, s % 60);
        else
                snprintf(buf, size, "%u:%02u", s / 60, s % 60);
}

static int show_progress(uint64_t done, uint64_t total, void *userdata) {
        struct progress *pr = userdata;
        double secs, rate, pct;
        char eta[32];

        if (!pr->started) {
                pr->started = true;
                pr->done0 = done;
                clock_gettime(CLOCK_MONOTONIC, &pr->t0);
                pr->last = pr->t0;
        }
        if (pr->quiet)
                return stop_requested;
        secs = (double) ns_since(&pr->t0) / 1e9;
        rate = secs > 0 ? (double) (done - pr->done0) / secs : 0;
        pct = total ? 100.0 * (double) done / (double) total : 100.0;
        format_eta(rate > 0 ? (double) (total - done) / rate : -1, eta, sizeof(eta));
        if (pr->tty) {
                int fill = total ? (int) (BAR_WIDTH * done / total) : BAR_WIDTH;

                fprintf(stderr, "\r%s [%.*s%*s] %5.1f%% %7.1f MiB/s ETA %s ", pr->label, fill,
                        "##############################", BAR_WIDTH - fill, "", pct, rate / (1 << 20), eta);
                pr->drawn = true;
        } else if (ns_since(&pr->last) >= PLAIN_INTERVAL_NS || done == total) {
                clock_gettime(CLOCK_MONOTONIC, &pr->last);
                fprintf(stderr, "%s: %.1f%% (%" PRIu64 " of %" PRIu64 " MiB), %.1f MiB/s, ETA %s\n", pr->label, pct,
                        done >> 20, total >> 20, rate / (1 << 20), eta);
        }
        return stop_requested;
}

static struct json_object *result_json(const struct kc_cli_reencrypt_options *o,
                                       const struct kc_reencrypt_result *res) {
        struct json_object *j = json_object_new_object();

        if (!j)
                return NULL;
        if (kc_json_add(j, "Volume", json_object_new_string(o->label)) < 0 ||
            kc_json_add(j, "Device", json_object_new_string(o->device)) < 0 ||
            kc_json_add(j, "LuksUuid", json_object_new_string(res->uuid)) < 0 ||
            kc_json_add(j, "KeyId", json_object_new_string(res->key_id)) < 0 ||
            kc_json_add(j, "SourceKeyVersion", json_object_new_int64(res->old_key_version)) < 0 ||
            kc_json_add(j, "KeyVersion", json_object_new_int64(res->new_key_version)) < 0 ||
            /* json-c's null is a NULL pointer: added directly, since kc_json_add takes NULL for out of memory. */
            (res->mapping[0] ? kc_json_add(j, "Mapping", json_object_new_string(res->mapping))
                             : json_object_object_add(j, "Mapping", NULL)) < 0 ||
            kc_json_add(j, "Online", json_object_new_boolean(res->mapping[0] != '\0')) < 0 ||
            kc_json_add(j, "Resumed", json_object_new_boolean(res->resumed)) < 0 ||
            kc_json_add(j, "Finished", json_object_new_boolean(!res->stopped)) < 0 ||
            kc_json_add(j, "RecoveryKeyslot", json_object_new_int(res->recovery_keyslot)) < 0) {
                json_object_put(j);
                return NULL;
        }
        return j;
}

int kc_cli_reencrypt(struct kc_cli *cli, struct kc_kms *kms, const struct kc_cli_reencrypt_options *o) {
        struct progress pr = { .label = o->label, .tty = isatty(STDERR_FILENO), .quiet = cli->quiet || cli->json };
        struct sigaction sa = { .sa_handler = on_stop }, old_int, old_term;
        struct kc_reencrypt_params p = {
                .ref = { .device = o->device, .header = o->header },
                .resilience = o->resilience,
                .rate_limit = o->rate_limit,
                .resume = o->resume,
                .expect = o->expect,
                .recovery_passphrase = o->recovery_passphrase,
                .recovery_passphrase_len = o->recovery_passphrase_len,
                .pbkdf = o->pbkdf,
                .progress = show_progress,
                .userdata = &pr,
        };
        struct kc_reencrypt_result res;
        struct kc_err err = {};
        char what[KC_ERR_MSG_MAX];
        int r;

        stop_requested = 0;
        sigemptyset(&sa.sa_mask);
        (void) sigaction(SIGINT, &sa, &old_int);
        (void) sigaction(SIGTERM, &sa, &old_term);
        r = kc_reencrypt(kms, &cli->caller, &p, &res, &err);
        (void) sigaction(SIGINT, &old_int, NULL);
        (void) sigaction(SIGTERM, &old_term, NULL);
        if (pr.drawn)
                fputc('\n', stderr);
        if (r < 0) {
                snprintf(what, sizeof(what), "cannot reencrypt %s", o->label);
                return kc_cli_fail(cli, kc_cli_header_error(r), &err, what);
        }
        if (r > 0)
                kc_cli_warn_unrecorded(cli, &err, o->label);
        if (res.stack_taken_over && !cli->quiet)
                fprintf(stderr, "%s: resumed online on the device stack of the interrupted run%s\n", o->label,
                        res.held_io_failed ? "; the I/O it held on its chunk failed (killed between the device "
                                             "switch and the header update)" : "");
        if (res.stopped)
                fprintf(stderr, "%s: stopped; resume with: kmscrypt reencrypt --resume %s\n", o->label, o->label);
        if (o->no_report || cli->quiet)
                ;
        else if (cli->json)
                kc_cli_print_json(result_json(o, &res));
        else if (!res.stopped)
                /* The key as a key reference (provider:id), as format's and status's "Key". */
                printf("%s: %s, key %s:%s version %" PRIu32 " -> new data key under version %" PRIu32 "%s%s\n",
                       o->label, res.resumed ? "reencryption resumed and finished" : "reencrypted", res.provider,
                       res.key_id, res.old_key_version, res.new_key_version,
                       res.mapping[0] ? ", online as " : " (offline)", res.mapping);
        return res.stopped ? KC_EXIT_FAILURE : KC_EXIT_OK;
}

/* "--rate-limit 50": MiB per second. */
static int parse_rate(const char *text, uint64_t *ret) {
        unsigned mib;

        if (!text) {
                *ret = 0;
                return 0;
        }
        if (kc_cli_parse_uint("rate-limit", text, 1, 1u << 20, &mib) < 0)
                return -EINVAL;
        *ret = (uint64_t) mib << 20;
        return 0;
}

/* "MAJOR:MINOR" of mapping name, or "" when there is none. */
static void mapping_majmin(const char *name, char ret[static 32]) {
        struct kc_dm_info info;

        ret[0] = '\0';
        if (kc_dm_info(name, &info) >= 0 && info.exists)
                snprintf(ret, 32, "%u:%u", info.major, info.minor);
}

/*
 * The data device under NAME-overlay: the device of its first crypt target
 * that is not the hotzone device.  The chunk last done still goes through
 * the hotzone until the next chunk's switch, so right after the first chunk
 * the overlay's first target is the hotzone's.
 */
static int overlay_data_device(const char *name, const char *overlay, char majmin[static 32]) {
        static const char *const suffixes[] = { "-hotzone-forward", "-hotzone-backward" };
        struct kc_dm_target *t = NULL;
        char hot[2][32], hz[160];
        size_t n = 0;
        int r = -ENOENT;

        for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
                snprintf(hz, sizeof(hz), "%s%s", name, suffixes[i]);
                mapping_majmin(hz, hot[i]);
        }
        if (kc_dm_targets(overlay, &t, &n) < 0)
                return -ENOENT;
        for (size_t i = 0; i < n && r < 0; i++)
                if (streq(t[i].type, "crypt") && sscanf(t[i].params, "%*s %*s %*s %31s", majmin) == 1 &&
                    !streq(majmin, hot[0]) && !streq(majmin, hot[1]))
                        r = 0;
        kc_dm_targets_free(t, n);
        return r;
}

/*
 * NAME of a volume whose online reencryption was killed: the mapping is a
 * linear target on NAME-overlay (agent/reencrypt.c), so it is no attached
 * volume to kc_cli_target_resolve(); the overlay's crypt targets name the
 * data device.
 */
static int stack_target(const char *name, const char *header, struct kc_cli_target *ret) {
        _cleanup_free_ char *node = NULL;
        char overlay[160], majmin[32];
        int r;

        if (strchr(name, '/') || snprintf(overlay, sizeof(overlay), "%s-overlay", name) >= (int) sizeof(overlay))
                return -ENOENT;
        r = overlay_data_device(name, overlay, majmin);
        if (r < 0)
                return r;
        r = kc_block_devnode(majmin, &node);
        if (r < 0)
                return r;
        *ret = (struct kc_cli_target) { .name = strdup(name), .device = TAKE_PTR(node),
                                        .header = header ? strdup(header) : NULL };
        if (!ret->name || !ret->device || (header && !ret->header)) {
                kc_cli_target_clear(ret);
                return -ENOMEM;
        }
        return 0;
}

static int run_reencrypt(struct kc_cli *cli, int argc, char **argv) {
        const char *header = NULL, *volumes = NULL, *resilience = NULL, *rate = NULL, *passfile = NULL,
                   *pbkdf = NULL, *iterations = NULL, *memory = NULL, *expect_kv = NULL, *expect_json = NULL;
        _cleanup_(kc_context_freep) struct kc_context *expect = NULL;
        bool resume = false;
        const struct kc_cli_option options[] = {
                { .name = "resume", .help = "carry on an interrupted reencryption", .flag = &resume },
                { .name = "resilience", .arg = "MODE", .help = "checksum (default) or journal", .value = &resilience },
                { .name = "rate-limit", .arg = "MiB/s", .help = "at most this many MiB per second", .value = &rate },
                { .name = "recovery-passphrase-file", .arg = "FILE", .help = "passphrase of the recovery keyslot, kept for the new key (-: stdin)", .value = &passfile },
                { .name = "pbkdf", .arg = "TYPE", .help = "new recovery keyslot PBKDF: argon2id (default), argon2i, pbkdf2", .value = &pbkdf },
                { .name = "pbkdf-force-iterations", .arg = "N", .help = "new recovery keyslot PBKDF iterations, no benchmark", .value = &iterations },
                { .name = "pbkdf-memory", .arg = "KB", .help = "new recovery keyslot argon2 memory cost", .value = &memory },
                { .name = "header", .arg = "FILE", .help = "detached LUKS2 header", .value = &header },
                { .name = "expect-context", .arg = "K=V,...", .help = "refuse unless the token's context is exactly this", .value = &expect_kv },
                { .name = "expect-context-json", .arg = "JSON", .help = "the same as a JSON object", .value = &expect_json },
                { .name = "volumes", .arg = "FILE", .help = "volumes file (default " KC_VOLUMES_FILE ")", .value = &volumes },
                {},
        };
        const struct kc_cli_usage usage = {
                .synopsis = "reencrypt NAME|DEVICE [--resilience checksum|journal] [--rate-limit MiB/s] [--resume]\n"
                            "          [--recovery-passphrase-file FILE] [--header FILE] [--expect-context K=V,...]",
                .description = "Replace a volume's data key: a new key from the KMS (same CMK, same context)\n"
                               "and a LUKS2 reencryption of the data, online while the volume is attached\n"
                               "and in use.  Crash-safe: an interrupted run is carried on by --resume, or by\n"
                               "the next attach.  The new token is written only once the new key is proven\n"
                               "against the LUKS2 digest.",
                .options = options,
                .volumes = &volumes,
                .min_args = 1,
                .max_args = 1,
        };
        _cleanup_(kc_cli_target_clear) struct kc_cli_target t = {};
        _cleanup_secret_ char *pass = NULL;
        struct kc_cli_reencrypt_options o = {};
        struct kc_luks_pbkdf pb;
        struct kc_err err = {};
        struct kc_kms *kms;
        size_t pass_len = 0;
        int nargs, r;

        /* Usage errors first: they change nothing and need no KMS. */
        r = kc_cli_parse(cli, argc, argv, &usage, &nargs);
        if (r <= 0)
                return kc_cli_parse_exit(r);
        if (resilience && !streq(resilience, "checksum") && !streq(resilience, "journal")) {
                log_error("--resilience: expected checksum or journal, got \"%s\"", resilience);
                return KC_EXIT_USAGE;
        }
        if (parse_rate(rate, &o.rate_limit) < 0 || kc_cli_pbkdf_from_options(&usage, pbkdf, iterations, memory, &pb) < 0)
                return KC_EXIT_USAGE;
        if (passfile && kc_cli_secret_from_file("recovery-passphrase-file", passfile, true, &pass, &pass_len) < 0)
                return KC_EXIT_USAGE;
        if (kc_cli_parse_expect(expect_kv, expect_json, &expect) < 0)
                return KC_EXIT_USAGE;
        /* The volume before the KMS, which would create the keystore and audit log for a typo. */
        r = kc_cli_target_resolve(argv[1], header, volumes, &t, &err);
        if (r == -ENOENT && stack_target(argv[1], header, &t) >= 0)
                r = 0;
        /* Its header too: one the reencryption would refuse (not LUKS2, no kmscrypt token) needs no KMS. */
        if (r >= 0)
                r = kc_cli_target_token(&t, NULL, &err);
        if (r < 0) {
                char what[KC_ERR_MSG_MAX];

                /* The words of kc_cli_reencrypt()'s failure, which this one came before. */
                snprintf(what, sizeof(what), "cannot reencrypt %s", argv[1]);
                return kc_cli_fail(cli, r, &err, what);
        }
        r = kc_cli_kms(cli, &kms);
        if (r < 0)
                return kc_cli_exit_status(r);
        o.label = t.name ?: t.device;
        o.device = t.device;
        o.header = t.header;
        o.resilience = resilience;
        o.resume = resume;
        o.expect = expect;
        o.recovery_passphrase = pass;
        o.recovery_passphrase_len = pass_len;
        o.pbkdf = &pb;
        return kc_cli_reencrypt(cli, kms, &o);
}

const struct kc_cli_command kc_cli_cmd_reencrypt = {
        .name = "reencrypt", .summary = "replace a volume's data key (online LUKS2 reencryption)", .run = run_reencrypt,
};
