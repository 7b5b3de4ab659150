/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Capabilities of kmscryptd: at start it keeps only what device-mapper and
 * the keyring paths need and drops everything else from its effective,
 * permitted, inheritable and ambient sets and from the bounding set, so
 * that neither it nor anything it could ever exec regains them:
 *
 *   CAP_SYS_ADMIN  device-mapper ioctls (create, load, resume, suspend,
 *                  the "key set"/"key wipe" messages)
 *   CAP_MKNOD      /dev/mapper/NAME when no udev makes it (initramfs)
 *   CAP_CHOWN      that node's group (disk), and the socket's status group
 *   CAP_IPC_LOCK   locked memory for keys beyond RLIMIT_MEMLOCK
 *
 * Reading block devices and the keystore needs no capability: they are
 * root's own files, and CAP_DAC_OVERRIDE goes with the rest.  The keyring
 * (a logon key in the thread's own keyring) needs none either.
 */

#include <stdint.h>

/* The capabilities kept, as a mask of 1 << CAP_*. */
uint64_t kc_caps_keep(void);

/*
 * Reduce to kc_caps_keep() (intersected with what the process has: run as
 * an ordinary user it keeps nothing and fails nothing).  Also sets
 * no_new_privs.  0 or a negative errno.
 */
int kc_caps_reduce(void);

/*
 * What a mapper process (mapper.h) keeps: device-mapper's ioctls, and the
 * /dev/mapper node libdevmapper makes and owns when no udev does.  Not
 * CAP_IPC_LOCK (the agent locked the key slots) nor CAP_SYS_PTRACE (it
 * audits no caller).
 */
uint64_t kc_caps_keep_mapper(void);

/* kc_caps_reduce to another set (which the bounding set can no longer grow beyond). */
int kc_caps_reduce_to(uint64_t keep);
