/*
 * eb_time: clocks, durations and RFC 3339 times. No application state.
 *
 * Times are int64 milliseconds: since the Unix epoch for wall-clock times,
 * since an arbitrary origin for monotonic ones.
 */
#ifndef EB_TIME_H
#define EB_TIME_H

#include <stddef.h>
#include <stdint.h>

#include "eb_log.h"

/** @returns wall-clock time in ms since the epoch. */
int64_t eb_now_ms(void);

/** @returns days since 1970-01-01 of a proleptic Gregorian date (Howard
 *  Hinnant's days_from_civil): no timegm(), no TZ variable. */
int64_t eb_days_from_civil(int64_t y, int m, int d);

/** @brief Read exactly @p digits decimal digits at @p *pp into @p *out and
 *  advance @p *pp. @returns 0, or -1 (a non-digit; @p *pp unmoved). */
int eb_parse_digits(const char **pp, int digits, int *out);
/** @returns monotonic time in ms (for intervals and timeouts). */
int64_t eb_mono_ms(void);
/** @returns monotonic time in microseconds. */
int64_t eb_mono_us(void);
/** @returns ms left until the eb_mono_ms() @p deadline, 0 once past. */
int64_t eb_mono_left_ms(int64_t deadline);

/**
 * @brief Parse a duration: one or more <number><unit> groups, units ms, s,
 * m, h, d (e.g. "10s", "5m", "24h", "1h30m", "250ms"). A bare "0" is zero.
 * @returns 0 and the value in ms, or -EINVAL.
 */
int eb_duration_parse(const char *s, int64_t *ms) EB_WUR;

/** @brief Format ms as a short duration ("1h30m", "250ms", "0s"). */
void eb_duration_format(int64_t ms, char *buf, size_t sz);

/**
 * @brief Parse an RFC 3339 / ISO 8601 date-time: "2024-05-15T14:22:30Z",
 * with optional fractional seconds (any digits, kept to ms) and a "Z",
 * "+hh:mm" or "-hh:mm" offset. A time with no offset is taken as UTC (Close
 * writes date_created that way). A space may stand for the 'T'.
 * Only times from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z (after
 * the offset) are accepted, so that every parsed time can be formatted
 * back by eb_rfc3339_format() and parsed again to the same value.
 * @returns 0 and ms since the epoch, or -EINVAL.
 */
int eb_rfc3339_parse(const char *s, int64_t *ms) EB_WUR;

/** The latest time eb_rfc3339_parse() accepts, 9999-12-31T23:59:59.999Z. */
#define EB_RFC3339_MAX_MS INT64_C(253402300799999)

/**
 * @brief Format @p ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" (@p frac_digits 3) or
 * without a fraction (@p frac_digits 0), or with microsecond digits (6,
 * zero-filled). @p sz must be at least 32.
 */
void eb_rfc3339_format(int64_t ms, int frac_digits, char *buf, size_t sz);

/**
 * @brief Parse a start position: "now", a duration back from @p now_ms, or
 * an RFC 3339 time. @returns 0 and ms since the epoch, or -EINVAL.
 */
int eb_time_parse_start(const char *s, int64_t now_ms, int64_t *ms) EB_WUR;

#endif /* EB_TIME_H */
