/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Every Check test program defines kc_test_suite() and links
 * tests/unit/check-main.c, which runs it and exits 0 only when every
 * check passed (77 when the suite asks to be skipped).
 */

#include <check.h>

Suite *kc_test_suite(void);

/* A suite may call this from kc_test_suite() to skip the whole program (exit 77). */
void kc_test_skip(const char *why) __attribute__((noreturn));

/* Fresh private temporary directory for a test; removed recursively at exit. Caller frees. */
char *kc_test_tmpdir(void);
