/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>

/*
 * Whether this runs in an initramfs: /etc/initrd-release exists, as systemd
 * decides it.  KMSCRYPT_INITRD=1 or 0 overrides that (tests).  The volumes
 * file keeps only x-initrd.attach volumes there, and the audit chain, which
 * starts anew every boot beside a copy of the keystore, takes no keystore
 * as evidence of records it lost.
 */
bool kc_in_initrd(void);
