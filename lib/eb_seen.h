/*
 * eb_seen: per-second event counts that a walk leaves in its checkpoint,
 * so the next walk can tell whether an overlap it would read again has
 * changed without downloading it (docs/providers.md, "Overlap").
 *
 * In memory the counts are a JSON object {"<unix second>": count}. In a
 * checkpoint they are relative to a top second T, to stay small:
 * "seen": [[T - second, count], ...] newest first, seconds with no event
 * left out, and "seen_span": N (the counts cover [T - N, T]).
 */
#ifndef EB_SEEN_H
#define EB_SEEN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* More events than this in one second is not a count eb_seen_load takes. */
#define EB_SEEN_MAX_COUNT 1000000000LL

/** Add @p n to the count of second @p sec. */
void eb_seen_add(json_t *cnt, int64_t sec, int64_t n);

/** @returns the count of second @p sec (0 when absent). */
int64_t eb_seen_get(const json_t *cnt, int64_t sec);

/** @returns 1 when @p a and @p b hold the same count for every second in
 *  (@p lo, @p hi] (a second absent from one holds 0 there). */
int eb_seen_same(const json_t *a, const json_t *b, int64_t lo, int64_t hi);

/**
 * @brief The counts of checkpoint @p cp ("seen", "seen_span") whose top
 * second is @p top; *lo gets the oldest second they cover.
 * @returns a new object, or NULL when @p cp has none or they do not parse
 * (more than @p max entries, offsets outside the span or repeated,
 * counts below 1 or above EB_SEEN_MAX_COUNT):
 * they only save requests, so an unreadable record is ignored.
 */
json_t *eb_seen_load(const json_t *cp, int64_t top, size_t max, int64_t *lo);

/**
 * @brief Write the counts of @p cnt for the seconds [lo, top] into @p cp,
 * at most @p max seconds with events (the oldest go first, and the span
 * shrinks to the oldest kept).
 */
void eb_seen_store(json_t *cp, const json_t *cnt, int64_t lo, int64_t top,
                   size_t max);

#endif
