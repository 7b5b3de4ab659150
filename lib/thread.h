/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <pthread.h>
#include <stdbool.h>

/*
 * The stack of every thread kmscrypt starts.  glibc's default is
 * RLIMIT_STACK, 8 MiB, which costs where it is least wanted:
 *
 *  - glibc caches the stacks of finished threads up to 40 MiB, so five of
 *    them: kmscryptd's attaches (8 at once by default, a new thread each)
 *    kept mapping new stacks, and a new mapping is faulted in afresh;
 *  - with transparent huge pages "always" (Debian's kernels), the top of
 *    a fresh 8 MiB stack is a 2 MiB huge page that the kernel clears when
 *    pthread_create() writes the thread's descriptor there, and that
 *    kmscryptd's mlockall() keeps.
 *
 * 1 MiB is under the size of a huge page, lets the cache hold every
 * stack of a busy agent, and is twenty times the most an attach thread
 * was seen to touch (52 KiB in the vm guest: header load, KMS, audit,
 * mapping).  glibc sizes its own stack buffers (getaddrinfo's, say) to
 * the thread's stack.
 */
#define KC_THREAD_STACK_SIZE (1024 * 1024)

/* pthread_create() on a KC_THREAD_STACK_SIZE stack, detached or not; negative errno. */
int kc_thread_start(pthread_t *ret, bool detached, void *(*fn)(void *), void *arg);
