/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "lib/fault.h"

static pid_t partner;

void kc_fault_set_partner(pid_t pid) {
        partner = pid;
}

void kc_fault_point(const char *step) {
        /* secure_getenv: a setuid or file-capability program ignores it. */
        const char *want = secure_getenv("KC_FAULT_STEP"), *stop = secure_getenv("KC_FAULT_STOP");

        if (step && stop && strcmp(stop, step) == 0)
                (void) raise(SIGSTOP);
        if (!want || !step || strcmp(want, step) != 0)
                return;
        if (partner > 0)
                (void) kill(partner, SIGKILL);
        (void) raise(SIGKILL);
}
