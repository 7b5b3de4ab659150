/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* NULL-terminated string vectors. */

#include <stddef.h>

#include "lib/macro.h"

size_t kc_strv_length(char * const *v);
/* Append a copy of s; -ENOMEM on failure (v unchanged). */
int kc_strv_push(char ***v, const char *s);
void kc_strv_free(char **v);
DEFINE_CLEANUP_FUNC(char **, kc_strv_free)
#define _cleanup_strv_ _cleanup_(kc_strv_freep)
