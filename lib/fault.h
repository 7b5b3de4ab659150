/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Fault injection, for tests only (tests/vm/guest/fault-kill.sh).  Always
 * compiled in, inert unless the environment variable KC_FAULT_STEP names a
 * step: then the process raises SIGKILL when it reaches that step, which is
 * what a kill -9, an OOM kill or a crash at that very point leaves behind.
 * Step names are "<operation>:<where>", e.g. "attach:after-key-add"; the
 * call sites are the step list (grep kc_fault_point).  KC_FAULT_STOP names
 * a step where the process stops itself instead (SIGSTOP), for a test to
 * look at that moment from outside and then let it go on (SIGCONT).
 * Nothing secret is involved: the variables are read, compared and
 * forgotten.
 */

#include <sys/types.h>

void kc_fault_point(const char *step);

/*
 * A helper process that does part of another's work (kmscryptd's mapper
 * processes) names that process: its fault points kill both, as a crash
 * of the one program would.
 */
void kc_fault_set_partner(pid_t pid);
