/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lib/error.h"

int kc_err_set(struct kc_err *err, int error, const char *fmt, ...) {
        int r = error < 0 ? error : -error;
        va_list ap;

        if (err && err->error == 0) {
                err->error = r;
                va_start(ap, fmt);
                vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
                va_end(ap);
                /*
                 * Messages quote untrusted input (an unknown op or member
                 * name from a client, a field of a header): keep them one
                 * line with no terminal controls, whatever was quoted, so
                 * that no input can forge log lines or records.
                 */
                for (char *p = err->msg; *p; p++)
                        if ((unsigned char) *p < 0x20 || *p == 0x7f)
                                *p = '?';
        }
        return r;
}

const char *kc_err_msg(const struct kc_err *err, int error) {
        if (err && err->error != 0 && err->msg[0])
                return err->msg;
        return strerror(error < 0 ? -error : error);
}

bool kc_err_is_refusal(int error) {
        static const int refusals[] = { EPERM, EACCES, EBADMSG, EKEYREJECTED, EKEYREVOKED, EKEYEXPIRED };

        for (size_t i = 0; i < ARRAY_SIZE(refusals); i++)
                if (-error == refusals[i])
                        return true;
        return false;
}
