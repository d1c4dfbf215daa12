/*
 * eb_ratelimit: parsing of the rate-limit signals upstream APIs send.
 *
 * Pure functions with no application state, shared by the provider
 * adapters (which report the values in struct eb_page) and the scheduler
 * (which paces each source with them).
 *
 *   RateLimit: limit=100, remaining=50, reset=0.734     (Close)
 *   Retry-After: 120                                    (delta-seconds)
 *   Retry-After: Wed, 21 Oct 2026 07:28:00 GMT          (HTTP-date)
 */
#ifndef EB_RATELIMIT_H
#define EB_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "eb_log.h"

/** Longest header value either parser looks at; longer ones are refused. */
#define EB_RATELIMIT_MAX_HEADER 1024

/** Largest wait either parser reports, in ms (1 day): a bigger value is
 *  clamped to it, never trusted blindly. */
#define EB_RATELIMIT_MAX_WAIT_MS (24LL * 3600 * 1000)

/**
 * @brief Parse a RateLimit header of the form
 * "limit=100, remaining=50, reset=0.734": comma- (or semicolon-) separated
 * key=value pairs, any order, optional spaces, decimal values (reset may
 * be fractional). Unknown keys are ignored (forward compatibility); some
 * Close 429s carry only "reset", so any subset of the three is accepted.
 * @param limit, remaining, reset_s set to the parsed value, or to -1 when
 *        that key is absent. Any of them may be NULL.
 * @returns 0 when at least one of the three keys was present and every
 * pair parsed; -EINVAL on NULL, empty, oversized or malformed input
 * (negative or non-finite numbers, a key given twice, missing '='), in
 * which case the outputs are all -1.
 */
int eb_ratelimit_parse(const char *hdr, double *limit, double *remaining,
                       double *reset_s) EB_WUR;

/**
 * @brief Parse a Retry-After header (RFC 9110 10.2.3): delta-seconds
 * ("120", a fraction such as "1.5" is tolerated) or an HTTP-date in any of
 * the three formats a recipient must accept (IMF-fixdate
 * "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850 "Sunday, 06-Nov-94 08:49:37
 * GMT", asctime "Sun Nov  6 08:49:37 1994").
 * @param now_ms wall clock used to turn a date into a wait.
 * @param ms the wait in ms: 0 for a date in the past, at most
 *        EB_RATELIMIT_MAX_WAIT_MS.
 * @returns 0, or -EINVAL on NULL, empty, oversized or malformed input.
 */
int eb_retry_after_parse(const char *hdr, int64_t now_ms, int64_t *ms) EB_WUR;

/** @returns @p reset_s seconds as ms rounded up (0.734 s -> 734 ms,
 *  0.0001 s -> 1 ms), clamped to [0, EB_RATELIMIT_MAX_WAIT_MS]. */
int64_t eb_ratelimit_reset_ms(double reset_s);

#endif /* EB_RATELIMIT_H */
