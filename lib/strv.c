/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "lib/strv.h"

size_t kc_strv_length(char * const *v) {
        size_t n = 0;
        while (v && v[n])
                n++;
        return n;
}

int kc_strv_push(char ***v, const char *s) {
        size_t n = kc_strv_length(*v);
        char *copy = strdup(s);
        char **nv;

        if (!copy)
                return -ENOMEM;
        nv = realloc(*v, (n + 2) * sizeof(char *));
        if (!nv) {
                free(copy);
                return -ENOMEM;
        }
        nv[n] = copy;
        nv[n + 1] = NULL;
        *v = nv;
        return 0;
}

void kc_strv_free(char **v) {
        for (size_t i = 0; v && v[i]; i++)
                free(v[i]);
        free(v);
}
