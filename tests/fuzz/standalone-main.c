/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Replay driver for the fuzz targets when libFuzzer is not linked (gcc, or
 * a plain clang build): feeds every file named on the command line, and
 * every regular file in every directory named, to LLVMFuzzerTestOneInput()
 * once.  A crash or failed invariant aborts the run, so `make check` fails
 * on any input that once crashed a parser.  Prints how many inputs ran.
 */

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/macro.h"
#include "tests/fuzz/fuzz.h"

static int replay_file(const char *path) {
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        struct stat st;
        size_t n;

        f = fopen(path, "re");
        if (!f || fstat(fileno(f), &st) < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -errno;
        }
        /* One byte more than needed, so that an empty file still gets a valid pointer. */
        buf = malloc((size_t) st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        n = fread(buf, 1, (size_t) st.st_size, f);
        if (n != (size_t) st.st_size) {
                fprintf(stderr, "%s: short read\n", path);
                return -EIO;
        }
        LLVMFuzzerTestOneInput(buf, n);
        return 0;
}

static int replay(const char *path, unsigned *count) {
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        struct stat st;
        int r;

        if (stat(path, &st) < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -errno;
        }
        if (!S_ISDIR(st.st_mode)) {
                r = replay_file(path);
                *count += r == 0;
                return r;
        }
        d = opendir(path);
        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                _cleanup_free_ char *child = NULL;

                if (de->d_name[0] == '.')
                        continue;
                if (asprintf(&child, "%s/%s", path, de->d_name) < 0)
                        return -ENOMEM;
                r = replay(child, count);
                if (r < 0)
                        return r;
        }
        return 0;
}

int main(int argc, char **argv) {
        unsigned count = 0;

        for (int i = 1; i < argc; i++)
                if (replay(argv[i], &count) < 0)
                        return EXIT_FAILURE;
        printf("%s: %u inputs replayed\n", argv[0], count);
        return EXIT_SUCCESS;
}
