/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdlib.h>

#include "lib/backoff.h"

unsigned kc_backoff_ceiling(unsigned attempt, unsigned base_ms, unsigned cap_ms) {
        unsigned c = base_ms;

        /* Doubling stops at the cap: no shift can overflow. */
        for (unsigned i = 0; i < attempt && c < cap_ms; i++)
                c = c > cap_ms / 2 ? cap_ms : c * 2;
        return c < cap_ms ? c : cap_ms;
}

unsigned kc_backoff_draw(unsigned ceiling, unsigned spread) {
        if (spread > ceiling)
                spread = ceiling;
        /* arc4random_uniform: uniform without modulo bias, from the kernel's CSPRNG; never blocks. */
        return ceiling - (spread == (unsigned) -1 ? arc4random() : arc4random_uniform(spread + 1));
}
