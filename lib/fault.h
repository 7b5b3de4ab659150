/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Fault injection, for tests only (tests/vm/guest/fault-kill.sh).  Always
 * compiled in, inert unless the environment variable KC_FAULT_STEP names a
 * step: then the process raises SIGKILL when it reaches that step, which is
 * what a kill -9, an OOM kill or a crash at that very point leaves behind.
 * Step names are "<operation>:<where>", e.g. "attach:after-key-add"; the
 * call sites are the step list (grep kc_fault_point).  Nothing secret is
 * involved: the variable is read, compared and forgotten.
 */

void kc_fault_point(const char *step);
