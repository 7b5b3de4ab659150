/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <blkid/blkid.h>

#include "lib/macro.h"
#include "udev/unit-name.h"

static bool unit_char_ok(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == ':' || c == '_' || c == '.';
}

/* Escape s into a fresh buffer; slash_to_dash turns '/' into '-'. */
static int escape(const char *s, bool slash_to_dash, char **ret) {
        _cleanup_free_ char *out = malloc(strlen(s) * 4 + 1);
        char *p;

        if (!out)
                return -ENOMEM;
        p = out;
        for (const char *c = s; *c; c++) {
                if (slash_to_dash && *c == '/')
                        *p++ = '-';
                else if (unit_char_ok(*c) && !(*c == '.' && c == s))
                        *p++ = *c;
                else
                        p += sprintf(p, "\\x%02x", (unsigned char) *c);
        }
        *p = '\0';
        *ret = TAKE_PTR(out);
        return 0;
}

int kc_unit_name_escape(const char *s, char **ret) {
        if (!s || !*s)
                return -EINVAL;
        return escape(s, true, ret);
}

int kc_unit_name_from_path(const char *path, const char *suffix, char **ret) {
        _cleanup_free_ char *trimmed = NULL, *esc = NULL;
        size_t n;
        int r;

        if (!path || path[0] != '/' || !suffix)
                return -EINVAL;
        while (*path == '/')
                path++;
        trimmed = strdup(path);
        if (!trimmed)
                return -ENOMEM;
        /* collapse repeated slashes and drop trailing ones, as systemd does */
        n = 0;
        for (char *c = trimmed; *c; c++)
                if (!(*c == '/' && (n == 0 || trimmed[n - 1] == '/')))
                        trimmed[n++] = *c;
        while (n > 0 && trimmed[n - 1] == '/')
                n--;
        trimmed[n] = '\0';
        if (n == 0)
                return asprintf(ret, "-%s", suffix) < 0 ? -ENOMEM : 0;
        r = escape(trimmed, true, &esc);
        if (r < 0)
                return r;
        return asprintf(ret, "%s%s", esc, suffix) < 0 ? -ENOMEM : 0;
}

/*
 * udev names /dev/disk/by-label/ and by-partlabel/ links with libblkid's
 * encoding (every byte outside letters, digits, "#+-.:=@_" and valid UTF-8
 * as \xNN): the same function here, so that a generated unit names the
 * device unit udev makes.
 */
int kc_udev_escape_tag(const char *s, char **ret) {
        _cleanup_free_ char *out = NULL;
        size_t size;

        if (!s || !*s)
                return -EINVAL;
        size = strlen(s) * 4 + 1;
        out = malloc(size);
        if (!out)
                return -ENOMEM;
        if (blkid_encode_string(s, out, size) < 0)
                return -EINVAL;
        *ret = TAKE_PTR(out);
        return 0;
}
