/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent-floor: the halves of an attach, timed in one process, for the
 * agent benchmark (tests/bench/agent-bench.sh).
 *
 *   agent-floor dm PREFIX DEVICE...
 *       The in-process floor: for each DEVICE, in turn, a random 512-bit key
 *       in secret memory becomes a logon key in this thread's keyring
 *       (kernel-keyring/), an aes-xts-plain64 table with 4096-byte sectors
 *       from 1 MiB on (what agent-mkvols volumes attach as) references it,
 *       kc_dm_create makes mapping PREFIX<n> (dmsetup-helpers/), the key is
 *       dropped.  No header, no KMS: what no attach can do without.
 *   agent-floor unwrap [-o | -t THREADS] DEVICE...
 *       The other half: LUKS2 header and token read, context check skipped,
 *       KMS Decrypt (audited), digest check -- on one KMS handle, or with
 *       -o on a handle opened for each volume, as the agent once did.  With
 *       -t, THREADS threads share the volumes, each on its own KMS handle
 *       as the agent's workers are: whether the half costs more CPU when it
 *       runs in parallel (locks, shared caches) shows in the cpu= figure.
 *
 *   agent-floor notify SOCKET SECONDS
 *       The service manager's end of sd_notify, for waiting on the agent
 *       without taking CPU from it (a shell polling its log with grep
 *       took a tenth of the guest's CPU meanwhile): binds a datagram socket
 *       at SOCKET, then blocks until a message with READY=1 arrives and
 *       prints its STATUS= line, or exits 1 after SECONDS.
 *
 * Prints "ms=<total milliseconds> n=<volumes>", and for unwrap the
 * milliseconds of each step, summed over threads: header= token= decrypt=
 * verify=, and cpu=<milliseconds of CPU the process used>.  Exit status 0, or 1 with
 * one line on stderr.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/luks.h"
#include "agent/token.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "kernel-keyring/keyring.h"
#include "lib/log.h"
#include "lib/secret.h"

#define KEY_BYTES 64
#define DATA_OFFSET 2048        /* sectors, as agent-mkvols lays volumes out */

static uint64_t now_us(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static int device_sectors(const char *path, uint64_t *ret) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        uint64_t bytes;

        if (fd < 0 || ioctl(fd, BLKGETSIZE64, &bytes) < 0)
                return negative_errno();
        *ret = bytes / 512;
        return 0;
}

static int floor_one(const char *name, const char *device, struct kc_err *err) {
        _cleanup_free_ char *params = NULL, *desc = NULL, *dm_uuid = NULL;
        _cleanup_secret_ uint8_t *key = kc_secret_alloc(KEY_BYTES);
        struct kc_crypt_params p = {
                .cipher = "aes-xts-plain64", .key_size = KEY_BYTES, .device = device,
                .offset = DATA_OFFSET, .sector_size = 4096, .flags = KC_CRYPT_DEFAULT_FLAGS,
        };
        uint8_t u[16];
        char uuid[37];
        kc_key_serial_t serial;
        int r;

        if (!key || getrandom(key, KEY_BYTES, 0) != KEY_BYTES || getrandom(u, sizeof(u), 0) != sizeof(u))
                return -EIO;
        snprintf(uuid, sizeof(uuid), "%08x-%04x-4%03x-8%03x-%04x%08x", *(uint32_t *) u, u[4] | u[5] << 8,
                 (u[6] | u[7] << 8) & 0xfff, (u[8] | u[9] << 8) & 0xfff, u[10] | u[11] << 8, *(uint32_t *) (u + 12));
        r = device_sectors(device, &p.size);
        if (r < 0)
                return kc_err_set(err, r, "cannot size %s: %s", device, strerror(-r));
        p.size -= DATA_OFFSET;
        r = kc_keyring_volume_description(uuid, &desc);
        if (r >= 0)
                r = kc_dm_uuid_luks2(uuid, name, &dm_uuid);
        p.key_description = desc;
        if (r >= 0)
                r = kc_crypt_table_build(&p, &params);
        if (r < 0)
                return kc_err_set(err, r, "cannot build the table of %s", name);
        r = kc_keyring_add_logon(desc, key, KEY_BYTES, &serial);
        if (r < 0)
                return kc_err_set(err, r, "cannot add a logon key: %s", strerror(-r));
        r = kc_dm_create(name, dm_uuid, "crypt", p.size, params, false);
        (void) kc_keyring_drop(serial);
        return r < 0 ? kc_err_set(err, r, "cannot create %s: %s", name, strerror(-r)) : 0;
}

/* Microseconds spent in each step of the header + KMS half, over all volumes. */
static _Atomic uint64_t phase_us[4];
static const char *const phase_name[4] = { "header", "token", "decrypt", "verify" };

static void phase_end(unsigned i, uint64_t *t) {
        uint64_t now = now_us();

        phase_us[i] += now - *t;
        *t = now;
}

static int unwrap_one(struct kc_kms *kms, const struct kc_caller *self, const char *device, struct kc_err *err) {
        _cleanup_luks_ struct kc_luks *l = NULL;
        _cleanup_secret_ void *key = NULL;
        _cleanup_free_ char *ref = NULL;
        _cleanup_(kc_token_clear) struct kc_token tok = {};
        struct kc_luks_segment seg;
        struct kc_kms_request req = { .caller = self };
        char key_id[65];
        uint32_t version;
        uint64_t t = now_us();
        int r;

        r = kc_luks_open_read(device, NULL, &l, err);
        if (r >= 0)
                r = kc_luks_segment(l, &seg);
        phase_end(0, &t);
        if (r >= 0)
                r = kc_luks_token_read(l, &tok, NULL, err);
        if (r >= 0)
                r = kc_token_key_ref(&tok, &ref);
        phase_end(1, &t);
        if (r < 0)
                return r;
        req.volume = seg.uuid;
        r = kc_kms_decrypt(kms, &req, ref, tok.wrapped_key, tok.wrapped_key_len, tok.context, &key, key_id,
                           &version, err);
        phase_end(2, &t);
        if (r >= 0 && kc_luks_verify_key(l, key, kc_secret_size(key), &tok) < 0)
                r = kc_err_set(err, -EBADMSG, "the key of %s does not match its header", device);
        phase_end(3, &t);
        return r;
}

struct unwrap_job {
        const struct kc_kms_config *kc;
        const struct kc_caller *self;
        char **devices;
        int n;
        atomic_int next;        /* the next device to take */
        atomic_int failed;      /* the first error, negative errno */
        struct kc_err err;      /* its message, set by the thread that failed first */
};

/* One worker: its own KMS handle, volumes taken in turn until none is left. */
static void *unwrap_worker(void *arg) {
        struct unwrap_job *job = arg;
        _cleanup_kms_ struct kc_kms *kms = NULL;
        struct kc_err err = {};
        int r = kc_kms_open(job->kc, &kms, &err);

        for (int i; r >= 0 && !atomic_load(&job->failed) && (i = atomic_fetch_add(&job->next, 1)) < job->n;)
                r = unwrap_one(kms, job->self, job->devices[i], &err);
        if (r < 0) {
                int expected = 0;

                if (atomic_compare_exchange_strong(&job->failed, &expected, r))
                        job->err = err;
        }
        return NULL;
}

static int run_threads(struct unwrap_job *job, unsigned threads, struct kc_err *err) {
        pthread_t t[64];
        unsigned started = 0;

        for (; started < threads; started++)
                if (pthread_create(&t[started], NULL, unwrap_worker, job) != 0)
                        break;
        for (unsigned i = 0; i < started; i++)
                pthread_join(t[i], NULL);
        if (started < threads)
                return kc_err_set(err, -EAGAIN, "cannot start %u threads", threads);
        if (job->failed) {
                *err = job->err;
                return job->failed;
        }
        return job->n;
}

static int run_unwrap(int argc, char **argv, struct kc_err *err) {
        _cleanup_kms_ struct kc_kms *kms = NULL;
        struct kc_config cfg = {};
        struct kc_kms_config kc;
        struct kc_caller self;
        bool per_volume = argc > 0 && streq(argv[0], "-o");
        unsigned threads = 0;
        int r;

        if (argc > 1 && streq(argv[0], "-t")) {
                threads = (unsigned) strtoul(argv[1], NULL, 10);
                if (threads < 1 || threads > 64)
                        return kc_err_set(err, -EINVAL, "-t wants 1 to 64 threads");
                argc -= 2, argv += 2;
        }
        r = kc_config_load(NULL, &cfg, err);
        if (r < 0)
                return r;
        kc_config_kms(&cfg, &kc);
        (void) kc_caller_self(&self);
        if (threads) {
                struct unwrap_job job = { .kc = &kc, .self = &self, .devices = argv, .n = argc };

                r = run_threads(&job, threads, err);
                kc_config_done(&cfg);
                return r;
        }
        for (int i = per_volume; r >= 0 && i < argc; i++) {
                if (!kms || per_volume) {
                        kms = (kc_kms_close(kms), NULL);
                        r = kc_kms_open(&kc, &kms, err);
                }
                if (r >= 0)
                        r = unwrap_one(kms, &self, argv[i], err);
        }
        kms = (kc_kms_close(kms), NULL);
        kc_config_done(&cfg);
        return r < 0 ? r : argc - per_volume;
}

static int run_dm(int argc, char **argv, struct kc_err *err) {
        int r = 0;

        if (argc < 1)
                return kc_err_set(err, -EINVAL, "dm needs a PREFIX");
        for (int i = 1; r >= 0 && i < argc; i++) {
                char name[128];

                snprintf(name, sizeof(name), "%s%d", argv[0], i);
                r = floor_one(name, argv[i], err);
        }
        return r < 0 ? r : argc - 1;
}

static int run_notify(const char *path, const char *seconds) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        uint64_t deadline = now_us() + strtoull(seconds, NULL, 10) * 1000000;
        char buf[4096];

        if (strlen(path) >= sizeof(sa.sun_path))
                return fprintf(stderr, "agent-floor: socket path too long\n"), 1;
        memcpy(sa.sun_path, path, strlen(path));
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        (void) unlink(path);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return fprintf(stderr, "agent-floor: cannot bind %s: %m\n", path), 1;
        for (uint64_t now; (now = now_us()) < deadline;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t n;

                if (poll(&p, 1, (int) ((deadline - now) / 1000 + 1)) <= 0)
                        continue;
                n = recv(fd, buf, sizeof(buf) - 1, 0);
                if (n <= 0)
                        continue;
                buf[n] = '\0';
                if (strstr(buf, "READY=1")) {
                        const char *status = strstr(buf, "STATUS=");

                        printf("%.*s\n", status ? (int) strcspn(status, "\n") : 0, status ?: "");
                        return 0;
                }
        }
        fprintf(stderr, "agent-floor: no READY=1 on %s within %s s\n", path, seconds);
        return 1;
}

/* CPU time of the whole process, user and system, in milliseconds. */
static uint64_t cpu_ms(void) {
        struct rusage ru;

        if (getrusage(RUSAGE_SELF, &ru) < 0)
                return 0;
        return ((uint64_t) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + (uint64_t) ru.ru_utime.tv_usec +
                (uint64_t) ru.ru_stime.tv_usec + 500) / 1000;
}

int main(int argc, char **argv) {
        struct kc_err err = {};
        uint64_t t0;
        int r;

        if (argc == 4 && streq(argv[1], "notify"))
                return run_notify(argv[2], argv[3]);
        if (argc < 2 || (!streq(argv[1], "dm") && !streq(argv[1], "unwrap"))) {
                fputs("usage: agent-floor dm PREFIX DEVICE... | unwrap [-o | -t THREADS] DEVICE... | notify SOCKET SECONDS\n",
              stderr);
                return 2;
        }
        t0 = now_us();
        r = streq(argv[1], "dm") ? run_dm(argc - 2, argv + 2, &err) : run_unwrap(argc - 2, argv + 2, &err);
        if (r < 0) {
                fprintf(stderr, "agent-floor: %s\n", kc_err_msg(&err, r));
                return 1;
        }
        printf("ms=%" PRIu64 " n=%d", (now_us() - t0 + 500) / 1000, r);
        for (size_t i = 0; i < ARRAY_SIZE(phase_us); i++)
                if (phase_us[i])
                        printf(" %s=%" PRIu64, phase_name[i], (phase_us[i] + 500) / 1000);
        printf(" cpu=%" PRIu64 "\n", cpu_ms());
        return 0;
}
