/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Whole small files: configuration, the volumes list, keystore entries, credentials. */

#include <stddef.h>
#include <stdint.h>

/* Allocate the buffer with kc_secret_alloc() (free it with kc_secret_free()), for files that hold keys. */
#define KC_READ_SECRET (1u << 0)

/*
 * Read fd to its end into buf, which holds max + 1 bytes, and NUL-terminate
 * it.  -EFBIG when there is more than max bytes (reading stops at max + 1, so
 * a pipe that never ends is refused, not drained).
 */
int kc_read_upto(int fd, char *buf, size_t max, size_t *ret_len);

/*
 * Read the whole regular file open on fd into a NUL-terminated buffer.
 * Refuses what is not a regular file (-EINVAL) and a file larger than max bytes, also one that
 * grows past its fstat() size while being read (-EFBIG): the caller parses the bytes it got, so
 * a writer racing with us must not make it parse a torn or unbounded file.
 * ret_len may be NULL.  Nothing is written to ret or ret_len on failure.
 */
int kc_read_full_fd(int fd, size_t max, unsigned flags, char **ret, size_t *ret_len);

struct kc_err;

/* Opens path and reads it as kc_read_full_fd() does; every refusal is one line naming path. */
int kc_read_small_file(const char *path, size_t max, char **ret, size_t *ret_len, struct kc_err *err);

/* Size in bytes of the block device or regular file open on fd; -ENOTBLK for anything else. */
int kc_fd_size(int fd, uint64_t *ret);

/* The same for path, opened read-only for the question. */
int kc_path_size(const char *path, uint64_t *ret);

/*
 * Whether path fits PATH_MAX with its NUL, as the kernel takes a path and
 * kmscrypt keeps one: 0, or -ENAMETOOLONG with one line naming what and the
 * start of path ("header /srv/...: a path of 5000 bytes, longer than 4095"),
 * since the whole of it would fill a message and push out the reason.
 */
int kc_path_check_length(const char *what, const char *path, struct kc_err *err);
