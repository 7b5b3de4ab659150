/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Rewrap rate on file-backed LUKS2 volumes, local provider, audited:
 * format N volumes (sparse image files) under one CMK, rotate it, then
 * time kc_rewrap() over all of them (ReEncrypt + Decrypt + digest check +
 * one token write + read-back + RewrapVolume record, each with its fsync).
 *
 * Usage: rewrap-bench [N] [DIRECTORY] [clone]   (defaults 1000, $TMPDIR or /tmp)
 *
 * clone: format the first volume only and give the others a copy of its
 * LUKS2 metadata (both header copies; the keyslot area is empty).  Every
 * format writes the 16 MiB keyslot area, which makes 1000 of them take
 * hours and 17 GB in the vm tier's RAM-backed guest; a rewrap touches
 * only the metadata, so the copies are rewrapped exactly as formatted
 * volumes would be (they share the first one's UUID and context).
 */
#include <endian.h>
#include <fcntl.h>
#include <stdint.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/rotate.h"
#include "agent/volume.h"
#include "lib/secret.h"

#define IMAGE_SIZE (17ULL << 20)   /* the 16 MiB LUKS2 header and a little data */

static double now(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st; (void) flag; (void) ftw;
        return remove(path);
}

static void die(const char *what, const struct kc_err *err, int r) {
        fprintf(stderr, "rewrap-bench: %s: %s\n", what, kc_err_msg(err, r));
        exit(EXIT_FAILURE);
}

static char *image(const char *dir, unsigned i) {
        char *path;
        int fd;

        if (asprintf(&path, "%s/v%u.img", dir, i) < 0)
                exit(EXIT_FAILURE);
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || ftruncate(fd, (off_t) IMAGE_SIZE) < 0)
                exit(EXIT_FAILURE);
        close(fd);
        return path;
}

static void format_all(struct kc_kms *kms, const struct kc_caller *caller, char **img, unsigned n) {
        for (unsigned i = 0; i < n; i++) {
                _cleanup_context_ struct kc_context *ctx = NULL;
                struct kc_volume_format_params p;
                struct kc_volume_result res;
                struct kc_err err = {};
                char kv[64];
                int r;

                snprintf(kv, sizeof(kv), "db-id=bench,volume-id=v%u", i);
                if (kc_context_parse_kv(kv, &ctx, &err) < 0)
                        die("context", &err, -EINVAL);
                p = (struct kc_volume_format_params) {
                        .ref = { .device = img[i] }, .key_ref = "alias/bench", .context = ctx,
                };
                r = kc_volume_format(kms, caller, &p, &res, &err);
                if (r < 0)
                        die("format", &err, r);
        }
}

/* Copy both LUKS2 header copies of src (their size is in the binary header) into dst. */
static void clone_metadata(const char *src, const char *dst) {
        static char buf[2 * 4 * 1024 * 1024];
        uint64_t hdr_size;
        int in = open(src, O_RDONLY | O_CLOEXEC), out = open(dst, O_WRONLY | O_CLOEXEC);

        if (in < 0 || out < 0 || pread(in, &hdr_size, sizeof(hdr_size), 8) != sizeof(hdr_size))
                exit(EXIT_FAILURE);
        hdr_size = be64toh(hdr_size);
        if (hdr_size < 16384 || 2 * hdr_size > sizeof(buf) ||
            pread(in, buf, 2 * hdr_size, 0) != (ssize_t) (2 * hdr_size) ||
            pwrite(out, buf, 2 * hdr_size, 0) != (ssize_t) (2 * hdr_size) || fsync(out) < 0)
                exit(EXIT_FAILURE);
        close(in);
        close(out);
}

int main(int argc, char **argv) {
        unsigned n = argc > 1 ? (unsigned) strtoul(argv[1], NULL, 10) : 1000;
        const char *base = argc > 2 ? argv[2] : getenv("TMPDIR") ?: "/tmp";
        bool clone = argc > 3 && streq(argv[3], "clone");
        char dir[4096], ks[4200], log[4200];
        struct kc_kms_config cfg = { .keystore_dir = ks, .audit_log = log };
        struct kc_kms_request req;
        struct kc_caller caller;
        struct kc_key_info key;
        struct kc_kms *kms = NULL;
        struct kc_err err = {};
        char **img;
        double t0, t1, t2;
        uint32_t v;
        int r;

        if (n == 0)
                return EXIT_FAILURE;
        snprintf(dir, sizeof(dir), "%s/rewrap-bench.XXXXXX", base);
        if (!mkdtemp(dir))
                return EXIT_FAILURE;
        snprintf(ks, sizeof(ks), "%s/keystore", dir);
        snprintf(log, sizeof(log), "%s/audit.log", dir);
        kc_caller_self(&caller);
        req = (struct kc_kms_request) { .caller = &caller };
        if ((r = kc_kms_open(&cfg, &kms, &err)) < 0)
                die("kms", &err, r);
        if ((r = kc_kms_create_key(kms, &req, NULL, "alias/bench", "", &key, &err)) < 0)
                die("create key", &err, r);
        img = calloc(n, sizeof(*img));
        for (unsigned i = 0; i < n; i++)
                img[i] = image(dir, i);

        t0 = now();
        format_all(kms, &caller, img, clone ? 1 : n);
        for (unsigned i = 1; clone && i < n; i++)
                clone_metadata(img[0], img[i]);
        t1 = now();
        if ((r = kc_kms_rotate_key(kms, &req, "alias/bench", &v, &err)) < 0)
                die("rotate", &err, r);
        for (unsigned i = 0; i < n; i++) {
                struct kc_rewrap_params p = { .ref = { .device = img[i] } };
                struct kc_rewrap_result res;

                r = kc_rewrap(kms, &caller, &p, &res, &err);
                if (r < 0 || !res.changed || res.new_key_version != v)
                        die("rewrap", &err, r < 0 ? r : -EIO);
        }
        t2 = now();
        printf("volumes             %u (file-backed, %llu MiB sparse each)\n", n, IMAGE_SIZE >> 20);
        printf("format              %.1f volumes/s%s\n", n / (t1 - t0), clone ? " (one formatted, the others copies)" : "");
        printf("rewrap              %.1f volumes/s (%.2f ms each, %.2f s for all)\n",
               n / (t2 - t1), (t2 - t1) * 1000 / n, t2 - t1);

        kc_kms_close(kms);
        for (unsigned i = 0; i < n; i++)
                free(img[i]);
        free(img);
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        return EXIT_SUCCESS;
}
