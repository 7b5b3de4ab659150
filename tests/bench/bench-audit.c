/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Durable audit records per second, and what each costs in flushes:
 *
 *   floor      write(2) of a line of the same size + fsync, then the same
 *              for a head file rewritten in place + fdatasync: what one
 *              record, made durable alone, cannot go below
 *   1 thread   kc_audit_write() in a loop on one handle
 *   N threads  N threads, each with a handle of its own on the same chain,
 *              as kmscryptd's attach threads have (each its KMS handle's)
 *
 * The flushes are counted from /proc/self/io's syscw (write-like system
 * calls) where that exists: a batch is one log write, so writes per record
 * below 2 show records sharing their flushes.
 *
 * Usage: bench-audit [SECONDS-PER-ROW] [DIRECTORY] [THREADS]
 *        (defaults 1, $TMPDIR or /tmp, 8)
 */
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/audit.h"
#include "agent/context.h"
#include "lib/thread.h"

#define MAX_THREADS 64

static double seconds_per_row = 1.0;
static char log_path[4200], head_path[4200];
static struct kc_context *context;

static double now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* Write-like system calls of this process so far, or -1 when /proc does not say. */
static long long syscw(void) {
        char buf[1024];
        long long v = -1;
        FILE *f = fopen("/proc/self/io", "re");

        if (!f)
                return -1;
        while (fgets(buf, sizeof(buf), f))
                if (sscanf(buf, "syscw: %lld", &v) == 1)
                        break;
        fclose(f);
        return v;
}

static void die(const char *what, int r) {
        fprintf(stderr, "bench-audit: %s: %s\n", what, strerror(-r));
        exit(EXIT_FAILURE);
}

static const struct kc_audit_record record = {
        .operation = "Decrypt",
        .key_id = "5f3c0a8e-1d2b-4c6f-9a7e-3b8d0c1e2f40",
        .key_version = 1,
        .volume = "4b9e2f7c-8a1d-4e3b-9c5f-0d6a7b8c9e10",
};

struct row {
        double per_second;
        double writes_per_record;
};

/* ---- the floor ---- */

static int floor_one(int log, int head, const char *line, size_t n) {
        if (write(log, line, n) != (ssize_t) n || fsync(log) < 0)
                return -errno;
        if (pwrite(head, line, 90, 0) != 90 || fdatasync(head) < 0)
                return -errno;
        return 0;
}

static struct row run_floor(const char *dir) {
        char path[4200], line[400];
        unsigned long n = 0;
        long long w0 = syscw();
        double start = now(), elapsed;
        int log, head;

        memset(line, 'x', sizeof(line) - 1);
        line[sizeof(line) - 1] = '\n';
        snprintf(path, sizeof(path), "%s/floor.log", dir);
        log = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        snprintf(path, sizeof(path), "%s/floor.head", dir);
        head = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (log < 0 || head < 0)
                die("floor files", -errno);
        do {
                for (int i = 0; i < 16; i++, n++)
                        if (floor_one(log, head, line, sizeof(line)) < 0)
                                die("floor write", -errno);
                elapsed = now() - start;
        } while (elapsed < seconds_per_row);
        close(log);
        close(head);
        return (struct row) { n / elapsed, w0 < 0 ? -1 : (double) (syscw() - w0) / n };
}

/* ---- kc_audit_write from N threads ---- */

struct writer {
        pthread_t thread;
        struct kc_audit *audit;
        unsigned long records;
        int error;
};

static atomic_bool stop;

static void *writer_main(void *userdata) {
        struct writer *w = userdata;
        struct kc_audit_record r = record;

        r.context = context;
        while (!atomic_load(&stop)) {
                w->error = kc_audit_write(w->audit, &r);
                if (w->error < 0)
                        break;
                w->records++;
        }
        return NULL;
}

static struct row run_writers(unsigned threads) {
        struct writer w[MAX_THREADS] = {};
        unsigned long n = 0;
        long long w0;
        double start, elapsed;
        struct kc_err err = {};
        int r;

        for (unsigned i = 0; i < threads; i++) {
                r = kc_audit_open(log_path, head_path, NULL, &w[i].audit, &err);
                if (r < 0) {
                        fprintf(stderr, "bench-audit: %s\n", kc_err_msg(&err, r));
                        exit(EXIT_FAILURE);
                }
        }
        atomic_store(&stop, false);
        w0 = syscw();
        start = now();
        for (unsigned i = 0; i < threads; i++) {
                r = kc_thread_start(&w[i].thread, false, writer_main, &w[i]);
                if (r < 0)
                        die("thread", r);
        }
        usleep((useconds_t) (seconds_per_row * 1e6));
        atomic_store(&stop, true);
        for (unsigned i = 0; i < threads; i++) {
                pthread_join(w[i].thread, NULL);
                if (w[i].error < 0)
                        die("kc_audit_write", w[i].error);
                n += w[i].records;
                kc_audit_close(w[i].audit);
        }
        elapsed = now() - start;
        return (struct row) { n / elapsed, w0 < 0 ? -1 : (double) (syscw() - w0) / n };
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st, (void) flag, (void) ftw;
        return remove(path);
}

static void print_row(const char *what, struct row r, double floor) {
        printf("%-40s %12.0f %10.2f %8.2fx\n", what, r.per_second, r.writes_per_record, floor / r.per_second);
}

int main(int argc, char **argv) {
        char dir[4096], label[64];
        unsigned threads = argc > 3 ? (unsigned) atoi(argv[3]) : 8;
        struct row fl, one, many;
        int r;

        if (argc > 1)
                seconds_per_row = atof(argv[1]);
        if (seconds_per_row <= 0 || threads < 1 || threads > MAX_THREADS) {
                fprintf(stderr, "usage: bench-audit [SECONDS-PER-ROW] [DIRECTORY] [THREADS 1-%d]\n", MAX_THREADS);
                return EXIT_FAILURE;
        }
        snprintf(dir, sizeof(dir), "%s/kmscrypt-bench.XXXXXX", argc > 2 ? argv[2] : getenv("TMPDIR") ?: "/tmp");
        if (!mkdtemp(dir))
                die("mkdtemp", -errno);
        snprintf(log_path, sizeof(log_path), "%s/audit.log", dir);
        snprintf(head_path, sizeof(head_path), "%s/audit.head", dir);
        r = kc_context_parse_kv("db-id=db-CQYSMDPBRZ7BPMH7Y3RTDG5QY,volume-id=vol-ad8c6542", &context, NULL);
        if (r < 0)
                die("context", r);

        fl = run_floor(dir);
        one = run_writers(1);
        many = run_writers(threads);

        printf("kmscrypt audit records, durable, in %s, %.1f s per row\n", dir, seconds_per_row);
        printf("%-40s %12s %10s %9s\n", "", "records/s", "writes/rec", "vs floor");
        print_row("floor: append + fsync, head + fdatasync", fl, fl.per_second);
        print_row("kc_audit_write, 1 thread", one, fl.per_second);
        snprintf(label, sizeof(label), "kc_audit_write, %u threads, own handles", threads);
        print_row(label, many, fl.per_second);

        kc_context_free(context);
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        return EXIT_SUCCESS;
}
