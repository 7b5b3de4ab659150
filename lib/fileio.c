/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/error.h"
#include "lib/fileio.h"
#include "lib/macro.h"
#include "lib/secret.h"

static void free_buffer(char *p, unsigned flags) {
        if (flags & KC_READ_SECRET)
                kc_secret_free(p);
        else
                free(p);
}

int kc_read_upto(int fd, char *buf, size_t max, size_t *ret_len) {
        size_t len = 0;

        while (len <= max) {
                ssize_t n = read(fd, buf + len, max + 1 - len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        if (len > max)
                return -EFBIG;
        buf[len] = '\0';
        *ret_len = len;
        return 0;
}

int kc_read_full_fd(int fd, size_t max, unsigned flags, char **ret, size_t *ret_len) {
        struct stat st;
        size_t size, len;
        char *buf;
        int r;

        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        if (st.st_size < 0 || (uint64_t) st.st_size > max)
                return -EFBIG;
        size = (size_t) st.st_size;

        /* One spare byte for the growth check and the terminating NUL. */
        buf = (flags & KC_READ_SECRET) ? kc_secret_alloc(size + 1) : malloc(size + 1);
        if (!buf)
                return -ENOMEM;
        r = kc_read_upto(fd, buf, size, &len);
        if (r < 0) {
                free_buffer(buf, flags);
                return r;
        }
        *ret = buf;
        if (ret_len)
                *ret_len = len;
        return 0;
}

int kc_read_small_file(const char *path, size_t max, char **ret, size_t *ret_len, struct kc_err *err) {
        /* O_NONBLOCK: a FIFO put where a configuration file belongs is refused below, not waited on. */
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        int r;

        if (fd < 0)
                return kc_err_set(err, negative_errno(), "%s: %s", path, strerror(errno));
        r = kc_read_full_fd(fd, max, 0, ret, ret_len);
        if (r == -EINVAL)
                return kc_err_set(err, r, "%s: not a regular file", path);
        if (r == -EFBIG)
                return kc_err_set(err, r, "%s: larger than %zu bytes, or growing while read", path, max);
        if (r < 0)
                return kc_err_set(err, r, "%s: %s", path, strerror(-r));
        return 0;
}

int kc_fd_size(int fd, uint64_t *ret) {
        struct stat st;

        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (S_ISBLK(st.st_mode))
                return ioctl(fd, BLKGETSIZE64, ret) < 0 ? negative_errno() : 0;
        if (!S_ISREG(st.st_mode))
                return -ENOTBLK;
        *ret = (uint64_t) st.st_size;
        return 0;
}

int kc_path_size(const char *path, uint64_t *ret) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);

        return fd < 0 ? negative_errno() : kc_fd_size(fd, ret);
}

/* Of a path too long to print, enough to tell which one it is. */
#define PATH_SHOWN 64

int kc_path_check_length(const char *what, const char *path, struct kc_err *err) {
        size_t n = strlen(path);

        if (n < PATH_MAX)
                return 0;
        return kc_err_set(err, -ENAMETOOLONG, "%s %.*s...: a path of %zu bytes, longer than %d", what, PATH_SHOWN,
                          path, n, PATH_MAX - 1);
}
