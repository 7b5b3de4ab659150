/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A helper program run from kmscryptd's threads, for work that must not
 * run inside the agent: libcryptsetup's reencryption drives libdevmapper
 * from inside its run, which in the agent would hold every other attach's
 * device-mapper calls (dmsetup-helpers' lock) for as long as it takes.
 *
 * posix_spawn, not fork: the agent has threads, and a forked child may
 * only call what is async-signal-safe until it execs.
 */

#include <stdbool.h>
#include <stddef.h>

/*
 * Run argv[0] (a path, or a name PATH finds) with the agent's environment, stdin and
 * stdout on /dev/null, every signal unblocked and at its default; wait for
 * it.  While it runs, stop(userdata) is asked every tenth of a second; once
 * it says true, the child gets one SIGTERM.  The last line it wrote on
 * stderr lands in last_line (size bytes, "" if none).
 *
 * Returns its exit status (0 to 255), 128 + N when signal N ended it, or a
 * negative errno when it could not be run.
 */
int kc_spawn_wait(char *const argv[], bool (*stop)(void *userdata), void *userdata, char *last_line, size_t size);
