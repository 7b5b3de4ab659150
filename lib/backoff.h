/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Exponential backoff with jitter, for retries against a KMS: the ceiling
 * of a retry doubles from base_ms with each attempt up to cap_ms, and the
 * delay is drawn at random below it, so that many clients that failed
 * together (volumes at boot, after one outage) do not retry together.
 */

/* The ceiling of retry number attempt (0 for the first): base_ms * 2^attempt, at most cap_ms. */
unsigned kc_backoff_ceiling(unsigned attempt, unsigned base_ms, unsigned cap_ms);

/*
 * A delay drawn uniformly from [ceiling - spread, ceiling] (spread at most
 * ceiling): spread = ceiling is "full jitter", ceiling / 2 keeps at least
 * half the ceiling between attempts.
 */
unsigned kc_backoff_draw(unsigned ceiling, unsigned spread);
