/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The shared AWS files, ~/.aws/credentials and ~/.aws/config
 * (kc_aws_ini_parse).  Input: a section line, a key line, then the file.
 * A value found is in kc_secret memory, one line, with no blanks around it,
 * and only in a section that is there; a lookup finds nothing else than
 * "missing" to say.
 */

#include <ctype.h>

#include "agent/aws/credentials.h"
#include "lib/secret.h"
#include "tests/fuzz/fuzz.h"

/* The next line of *p (cut off there), or NULL when there is none. */
static char *next_line(char **p) {
        char *line = *p, *nl = strchr(line, '\n');

        if (!nl)
                return NULL;
        *nl = '\0';
        *p = nl + 1;
        return line;
}

static bool section_there(const char *file, const char *section) {
        _cleanup_free_ char *copy = strdup(file);

        FUZZ_ASSERT(copy);
        return kc_aws_ini_parse(copy, section, NULL, NULL) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *text = fuzz_strndup(data, size), *file = NULL;
        _cleanup_secret_ char *value = NULL;
        char *p = text, *section = next_line(&p), *key = next_line(&p);
        size_t n;
        int r;

        if (!section || !key || !*key)
                return 0;
        file = strdup(p);
        FUZZ_ASSERT(file);
        r = kc_aws_ini_parse(p, section, key, &value);
        FUZZ_ASSERT(r == 0 || r == -ENOENT || r == -ENOMEM);
        if (r != 0)
                return 0;
        n = strlen(value);
        FUZZ_ASSERT(kc_secret_size(value) == n + 1);
        FUZZ_ASSERT(!strchr(value, '\n'));
        FUZZ_ASSERT(n == 0 || (!isspace((unsigned char) value[0]) && !isspace((unsigned char) value[n - 1])));
        FUZZ_ASSERT(section_there(file, section));
        return 0;
}
