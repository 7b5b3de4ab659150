/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Shared by the fuzz targets.  Each target defines LLVMFuzzerTestOneInput();
 * it is linked either with libFuzzer (--enable-fuzzing, clang) or with
 * standalone-main.c, which replays files (`make check`, any compiler).
 *
 * A target checks more than "does not crash": FUZZ_ASSERT states an
 * invariant of the parser (a refusal names what is wrong, a value that was
 * accepted survives a round trip) and aborts when it does not hold, so the
 * fuzzer reports it like a crash.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                               \
        do {                                                                            \
                if (!(cond)) {                                                          \
                        fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,      \
                                __LINE__, #cond);                                       \
                        abort();                                                        \
                }                                                                       \
        } while (0)

/* NUL-terminated copy of the input (parsers of text take C strings). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size) {
        char *s = malloc(size + 1);
        if (!s)
                abort();
        memcpy(s, data, size);
        s[size] = '\0';
        return s;
}

/*
 * A refusal (r < 0, other than -ENOMEM) must carry the one-line message
 * promised by lib/error.h: set, not empty, no control character.
 */
static inline void fuzz_assert_refusal(int r, const struct kc_err *err) {
        if (r >= 0 || r == -ENOMEM)
                return;
        FUZZ_ASSERT(err->error < 0);
        FUZZ_ASSERT(err->msg[0] != '\0');
        for (const char *p = err->msg; *p; p++)
                FUZZ_ASSERT((unsigned char) *p >= 0x20 && *p != 0x7f);
}
