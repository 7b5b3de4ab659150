/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Every Check test program defines kc_test_suite() and links
 * tests/unit/check-main.c, which runs it and exits 0 only when every
 * check passed (77 when the suite asks to be skipped).
 */

#include <check.h>
#include <sys/types.h>

Suite *kc_test_suite(void);

/* A suite may call this from kc_test_suite() to skip the whole program (exit 77). */
void kc_test_skip(const char *why) __attribute__((noreturn));

/* Fresh private temporary directory for a test; removed recursively at exit. Caller frees. */
char *kc_test_tmpdir(void);

/*
 * Run fn(userdata) with RLIMIT_FSIZE at `limit` bytes (SIGXFSZ ignored), so
 * that a write past it fails with EFBIG, for root too: a file system that
 * fills up, for one file.  The limit holds for every file of the process,
 * Check's own message file included, and a ck_assert that appends to it
 * while the limit is on can be cut short (read back as "Bad message type"):
 * fn must not assert.  Store results and check them after this returns.
 */
void kc_test_with_file_limit(off_t limit, void (*fn)(void *userdata), void *userdata);

/*
 * From now on, in the calling thread and the threads and children it then
 * starts, the system call nr fails with error, when its first argument is
 * arg0 (any first argument for -1): a kernel without it, or a quota spent.
 * A seccomp filter, which nothing lifts: call it in a test's own process
 * (Check forks one for each test) or in a child.  -errno if it cannot be
 * installed.
 */
int kc_test_refuse_syscall(long nr, long arg0, int error);
