/*
 * eb_dedupe: the table of recently seen event identities.
 *
 * An identity is the 128-bit fingerprint of the bytes returned by
 * eb_event_dedupe_key() ("<source>\x1f<id>\x1f<version>").  The table
 * remembers each fingerprint with a time in seconds, bounded two ways:
 *
 *  - by count: at most @c capacity ring slots; inserting into a full ring
 *    evicts the oldest entry first (insertion order, exactly);
 *  - by time: eb_dedupe_expire(now) evicts, from the oldest end, every entry
 *    whose time is older than now - window.  Expiry follows insertion order:
 *    an entry inserted after a newer one leaves when it reaches the oldest
 *    end, never earlier (keeping an id a little longer is the safe side).
 *
 * Memory is allocated once by eb_dedupe_new() and never grows: 16 bytes of
 * fingerprint + 4 bytes of time per ring slot, plus an index of 4-byte slots
 * whose size is the power of two >= 1.25 x capacity (1.25 to 2.5 slots per
 * id): 25 to 30 bytes per id plus a small constant, see eb_dedupe_bytes().
 *
 * Fingerprints are MurmurHash3 x64_128 with the fixed seed EB_FP_SEED, so
 * they are stable across processes, hosts and versions: they are persisted
 * (hex form, eb_fp_format()) and restored at start-up.  Changing the hash or
 * the seed would silently forget every persisted id: do not.
 *
 * The table is not hash-flooding resistant (the seed is public); it indexes
 * identities of events fetched from authenticated upstream APIs.
 *
 * Thread context: none; a table is used from one thread at a time.
 * This header includes nothing but libc.
 */
#ifndef EB_DEDUPE_H
#define EB_DEDUPE_H

#include <stddef.h>
#include <stdint.h>

/**
 * A 128-bit fingerprint: visible value type, copied freely.
 * @c hi and @c lo are the two 64-bit halves of MurmurHash3 x64_128 (h1, h2).
 * The table indexes by the low bits of @c lo; any value, including all
 * zeroes, is a valid fingerprint.
 */
struct eb_fp {
        uint64_t hi;
        uint64_t lo;
};

/** Seed of eb_fp_compute(): part of the persisted format, never change. */
#define EB_FP_SEED 0x65766272u /* "evbr" */

/** Length of the hex form of a fingerprint, without the NUL. */
#define EB_FP_HEX_LEN 32

/** Largest capacity eb_dedupe_new() accepts (about 30 GiB of memory). */
#define EB_DEDUPE_MAX_CAPACITY ((size_t)1 << 30)

/** Largest time an entry can hold; larger times are clamped to it. */
#define EB_DEDUPE_MAX_TIME ((int64_t)UINT32_MAX - 1)

typedef struct eb_dedupe_s eb_dedupe_t;

/** Counters of one table, for metrics. */
struct eb_dedupe_stats {
        size_t size;               /**< ids remembered now */
        size_t capacity;           /**< as given to eb_dedupe_new() */
        size_t bytes;              /**< eb_dedupe_bytes() */
        uint64_t inserts;          /**< successful inserts */
        uint64_t duplicates;       /**< inserts refused as present */
        uint64_t removes;          /**< successful eb_dedupe_remove() */
        uint64_t evicted_capacity; /**< evicted because the ring was full */
        uint64_t evicted_window;   /**< evicted by eb_dedupe_expire() */
};

/**
 * @brief Fingerprint an identity: MurmurHash3 x64_128 seeded with EB_FP_SEED.
 * @param key bytes to hash (borrowed; may be NULL when @p len is 0),
 *        normally from eb_event_dedupe_key().
 * @param out receives the fingerprint.
 * @remark The result does not depend on the host's byte order.
 */
void eb_fp_compute(const void *key, size_t len, struct eb_fp *out);

/**
 * @brief MurmurHash3 x64_128 with an explicit seed.
 *
 * eb_fp_compute() is this function with EB_FP_SEED; it is exported so tests
 * can check the algorithm against its published verification value.
 * @p out->hi is h1 and @p out->lo is h2 of the reference algorithm, whose
 * 16-byte digest is h1 then h2, each little-endian.
 */
void eb_fp_murmur3(const void *key, size_t len, uint32_t seed,
                   struct eb_fp *out);

/**
 * @brief Write the 32-character lowercase hex form: @c hi then @c lo, each
 * most significant nibble first, NUL-terminated.
 * @param out caller's buffer of at least EB_FP_HEX_LEN + 1 bytes.
 */
void eb_fp_format(const struct eb_fp *fp, char out[EB_FP_HEX_LEN + 1]);

/**
 * @brief Parse the hex form written by eb_fp_format().
 * @param s NUL-terminated string: exactly 32 hex digits (either case),
 *        nothing before or after.
 * @param out receives the fingerprint; untouched on error.
 * @returns 0, or -EINVAL for anything else (including NULL @p s).
 */
int eb_fp_parse(const char *s, struct eb_fp *out);

/**
 * @brief Allocate an empty table; all of its memory is allocated here.
 * @param capacity most ids remembered, 1 .. EB_DEDUPE_MAX_CAPACITY.
 * @param window_s how long an id is remembered, in seconds, counted from the
 *        time given at insertion; 0 means no time bound (ids then leave only
 *        by capacity eviction or eb_dedupe_remove()).
 * @returns new table (free with eb_dedupe_free()), or NULL with errno set to
 *          EINVAL (capacity or window out of range) or ENOMEM.
 */
eb_dedupe_t *eb_dedupe_new(size_t capacity, int64_t window_s);

/** @brief Free a table; NULL is a no-op. */
void eb_dedupe_free(eb_dedupe_t *dd);

/**
 * @returns 1 if @p fp is remembered, else 0.  Does not look at times: an
 *          entry stays until eb_dedupe_expire() or an eviction drops it.
 */
int eb_dedupe_contains(const eb_dedupe_t *dd, const struct eb_fp *fp);

/**
 * @brief Remember @p fp with time @p time_s (seconds, normally the Unix time
 * of insertion; restored entries pass their original time).
 *
 * If the ring is full, the oldest slot is reclaimed first; if it holds a live
 * id, that id is evicted (counted in evicted_capacity).  Times are clamped to
 * 0 .. EB_DEDUPE_MAX_TIME.  Does not expire anything by time.
 * @returns 1 inserted, 0 already present (the table is unchanged: the
 *          existing entry keeps its time and position).
 */
int eb_dedupe_insert(eb_dedupe_t *dd, const struct eb_fp *fp, int64_t time_s);

/**
 * @brief The intake path in one call: eb_dedupe_expire(@p now_s), then
 * eb_dedupe_insert(@p fp, @p now_s).
 * @returns 1 if @p fp was new (it is now remembered), 0 if it is a duplicate.
 */
int eb_dedupe_check_and_insert(eb_dedupe_t *dd, const struct eb_fp *fp,
                               int64_t now_s);

/**
 * @brief Forget @p fp, e.g. to roll back an insert whose publish failed
 * (NOT_PERSISTED), so a retry is not taken for a duplicate.
 *
 * Removing the newest entries (the usual rollback) gives their ring slots
 * back at once.  An entry removed from the middle leaves a dead slot that is
 * reclaimed when it becomes the oldest; until then it occupies ring space,
 * so the table can evict a live id while holding fewer than capacity ids.
 * @returns 1 removed, 0 not present.
 */
int eb_dedupe_remove(eb_dedupe_t *dd, const struct eb_fp *fp);

/**
 * @brief Evict, oldest first, every entry with time < @p now_s - window,
 * stopping at the first entry that is recent enough.
 * @returns the number of ids evicted (0 when the window is 0).
 * @remark Meant to be driven by a periodic timer; cost is proportional to
 *         the number of entries evicted.
 */
size_t eb_dedupe_expire(eb_dedupe_t *dd, int64_t now_s);

/**
 * @brief Call @p fn for every remembered id, oldest first (insertion order),
 * e.g. to persist the table.
 * @param fn gets a borrowed fingerprint (valid during the call) and the
 *        entry's time; it must not modify the table.
 */
void eb_dedupe_foreach(const eb_dedupe_t *dd,
                       void (*fn)(const struct eb_fp *fp, int64_t time_s,
                                  void *opaque),
                       void *opaque);

/** @returns the number of ids remembered now. */
size_t eb_dedupe_size(const eb_dedupe_t *dd);

/** @returns the capacity given to eb_dedupe_new(). */
size_t eb_dedupe_capacity(const eb_dedupe_t *dd);

/** @returns the window given to eb_dedupe_new(), in seconds. */
int64_t eb_dedupe_window(const eb_dedupe_t *dd);

/**
 * @returns the bytes allocated for the table (constant for its lifetime):
 *          handle + fingerprints + times + index.
 */
size_t eb_dedupe_bytes(const eb_dedupe_t *dd);

/** @returns ids evicted so far, by capacity and by window together. */
uint64_t eb_dedupe_evictions(const eb_dedupe_t *dd);

/** @brief Fill @p st with the table's counters. */
void eb_dedupe_stats(const eb_dedupe_t *dd, struct eb_dedupe_stats *st);

#endif /* EB_DEDUPE_H */
