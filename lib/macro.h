/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Small helpers every module uses: scoped cleanup, ownership hand-off and
 * errno conversion.  Destructors used with _cleanup_ accept NULL / -1.
 */

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _must_check_ __attribute__((warn_unused_result))
#define _unused_ __attribute__((unused))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Hand ownership of a pointer or fd to someone else: the cleanup then sees NULL / -1. */
#define TAKE_PTR(p) ({ __typeof__(p) _p_ = (p); (p) = NULL; _p_; })
#define TAKE_FD(fd) ({ int _fd_ = (fd); (fd) = -1; _fd_; })

static inline void freep(void *p) { free(*(void **)p); }
static inline void closep(int *fd) { if (*fd >= 0) close(*fd); }
static inline void fclosep(FILE **f) { if (*f) fclose(*f); }
static inline void closedirp(DIR **d) { if (*d) closedir(*d); }

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)

/* Generates `static inline void funcp(type *p)` that calls func(*p) when *p is set. */
#define DEFINE_CLEANUP_FUNC(type, func)                 \
        static inline void func##p(type *p) {           \
                if (*p)                                 \
                        func(*p);                       \
        }

/* errno after a failed libc call, as a negative value that is never 0. */
static inline int negative_errno(void) {
        return errno > 0 ? -errno : -EIO;
}

static inline const char *strna(const char *s) { return s ? s : "n/a"; }

static inline int streq_ptr(const char *a, const char *b) {
        return a && b ? __builtin_strcmp(a, b) == 0 : a == b;
}
#define streq(a, b) (__builtin_strcmp((a), (b)) == 0)

/* Whether the n bytes at p are all zero (n == 0 included). */
static inline int kc_all_zero(const void *p, size_t n) {
        const unsigned char *b = p;
        return n == 0 || (b[0] == 0 && __builtin_memcmp(b, b + 1, n - 1) == 0);
}

/* Copy a string into a fixed buffer; false (and a truncated copy) when it did not fit. */
static inline int kc_strscpy(char *dst, size_t size, const char *src) {
        size_t n = __builtin_strlen(src);
        if (n >= size) {
                __builtin_memcpy(dst, src, size - 1);
                dst[size - 1] = '\0';
                return 0;
        }
        __builtin_memcpy(dst, src, n + 1);
        return 1;
}
