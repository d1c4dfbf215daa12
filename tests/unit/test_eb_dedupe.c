/* Unit tests for eb_dedupe: fingerprints, the table, and a model check. */
#include "eb_dedupe.h"
#include "eb_test.h"

#include <errno.h>
#include <inttypes.h>

/* Deterministic PRNG (splitmix64): every run sees the same sequence. */
static uint64_t rng_next(uint64_t *state)
{
        uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static size_t rng_below(uint64_t *state, size_t n)
{
        return (size_t)(rng_next(state) % n);
}

static struct eb_fp fp_make(uint64_t hi, uint64_t lo)
{
        struct eb_fp fp;

        fp.hi = hi;
        fp.lo = lo;
        return fp;
}

static int fp_eq(const struct eb_fp *a, const struct eb_fp *b)
{
        return a->hi == b->hi && a->lo == b->lo;
}

/* ---- fingerprints ------------------------------------------------------ */

/*
 * The published verification of MurmurHash3 x64_128 (SMHasher): hash keys
 * {}, {0}, {0,1}, ... {0..254} with seed 256 - length, concatenate the
 * 16-byte digests, hash that with seed 0; the first 4 digest bytes read
 * little-endian must be 0x6384BA69.  Checks every tail length and the block
 * loop against the reference algorithm, not against ourselves.
 */
static void digest_bytes(const struct eb_fp *fp, unsigned char out[16])
{
        int b;

        for (b = 0; b < 8; b++) {
                out[b] = (unsigned char)(fp->hi >> (8 * b));
                out[8 + b] = (unsigned char)(fp->lo >> (8 * b));
        }
}

static void test_fp_murmur3_reference(void)
{
        static unsigned char key[256];
        static unsigned char hashes[256 * 16];
        unsigned char final[16];
        struct eb_fp fp;
        uint32_t verification;
        int i;

        for (i = 0; i < 256; i++) {
                key[i] = (unsigned char)i;
                eb_fp_murmur3(key, (size_t)i, (uint32_t)(256 - i), &fp);
                digest_bytes(&fp, &hashes[i * 16]);
        }
        eb_fp_murmur3(hashes, sizeof(hashes), 0, &fp);
        digest_bytes(&fp, final);
        verification = (uint32_t) final[0] | (uint32_t) final[1] << 8 |
                       (uint32_t) final[2] << 16 | (uint32_t) final[3] << 24;
        EB_CHECK(verification == 0x6384BA69u);

        /* Known property of the algorithm: empty input, seed 0 -> 0. */
        eb_fp_murmur3(NULL, 0, 0, &fp);
        EB_CHECK(fp.hi == 0 && fp.lo == 0);
        /* Widely published digest of "hello" with seed 0. */
        eb_fp_murmur3("hello", 5, 0, &fp);
        EB_CHECK(fp.hi == 0xcbd8a7b341bd9b02ULL);
        EB_CHECK(fp.lo == 0x5b1e906a48ae1d19ULL);
}

/*
 * Regression guard: fingerprints are persisted in Kafka and restored by
 * later versions, so these values must never change.  Computed once with
 * EB_FP_SEED and pinned here.
 */
static void test_fp_pinned(void)
{
        static const struct {
                const char *key;
                const char *hex;
        } cases[] = {
                {"acme-close\x1f"
                 "acli_3fT9\x1f"
                 "2024-03-01T12:00:00.000000+00:00",
                 "ff43726a5b3ba8107d8212dd4cf8ab12"},
                {"kommo-main\x1f"
                 "01HQ7Z\x1f",
                 "c35f3e4e7542b1c41b56adbf48849b32"},
                {"", "aef2e0db8e8780526acd204634c523be"},
                {"a", "327ed5b901630f6378396c1ec59fb143"},
                {"0123456789abcdef", "2a9a3e0d8ab644598e52d478c5c709f0"},
                {"0123456789abcdefg", "d71d64d62d99895e43bf29223a7a3b8b"},
                {"acme-kota\x1f"
                 "evt_42\x1f"
                 "1",
                 "89ef8e41281dba239c0819968632ca30"},
                {"acme-kota\x1f"
                 "evt_42\x1f"
                 "2",
                 "9ccd2a1b268f902a111d9cb6677b37dd"},
        };
        struct eb_fp fp;
        struct eb_fp seeded;
        char hex[EB_FP_HEX_LEN + 1];
        size_t i;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                eb_fp_compute(cases[i].key, strlen(cases[i].key), &fp);
                eb_fp_format(&fp, hex);
                EB_CHECK_STR(hex, cases[i].hex);
                eb_fp_murmur3(cases[i].key, strlen(cases[i].key), EB_FP_SEED,
                              &seeded);
                EB_CHECK(fp_eq(&fp, &seeded));
        }
}

static int fp_cmp(const void *a, const void *b)
{
        const struct eb_fp *x = a;
        const struct eb_fp *y = b;

        if (x->hi != y->hi)
                return x->hi < y->hi ? -1 : 1;
        if (x->lo != y->lo)
                return x->lo < y->lo ? -1 : 1;
        return 0;
}

/*
 * Different sources, ids and versions give different fingerprints, and the
 * bits the table uses (low bits of lo: bucket; top bits of hi: tag) spread
 * evenly.  The inputs are fixed, so the bounds are deterministic.
 */
static void test_fp_distinct_and_spread(void)
{
        enum { N = 65536, BUCKETS = 1024 };
        static const char *sources[] = {"acme-close", "acme-kota", "kommo"};
        struct eb_fp *fps = calloc(N, sizeof(*fps));
        static unsigned lo_hist[BUCKETS];
        static unsigned hi_hist[BUCKETS];
        char key[128];
        unsigned mn = N;
        unsigned mx = 0;
        size_t i;
        int n;

        EB_REQUIRE(fps);
        memset(lo_hist, 0, sizeof(lo_hist));
        memset(hi_hist, 0, sizeof(hi_hist));
        for (i = 0; i < N; i++) {
                /* Neighbouring ids and versions differ by one character. */
                n = snprintf(key, sizeof(key),
                             "%s\x1f"
                             "evt_%zu\x1f"
                             "%zu",
                             sources[i % 3], i / 6, (i / 3) % 2);
                EB_REQUIRE(n > 0 && (size_t)n < sizeof(key));
                eb_fp_compute(key, (size_t)n, &fps[i]);
                lo_hist[fps[i].lo % BUCKETS]++;
                hi_hist[fps[i].hi >> 54]++;
        }
        for (i = 0; i < BUCKETS; i++) {
                mn = lo_hist[i] < mn ? lo_hist[i] : mn;
                mn = hi_hist[i] < mn ? hi_hist[i] : mn;
                mx = lo_hist[i] > mx ? lo_hist[i] : mx;
                mx = hi_hist[i] > mx ? hi_hist[i] : mx;
        }
        /* 64 expected per bucket; +-5 sigma is [24, 104]. */
        EB_CHECK(mn >= 24);
        EB_CHECK(mx <= 104);
        qsort(fps, N, sizeof(*fps), fp_cmp);
        for (i = 1; i < N; i++)
                EB_CHECK(!fp_eq(&fps[i - 1], &fps[i]));
        free(fps);
}

static void test_fp_format_parse(void)
{
        static const struct eb_fp values[] = {
                {0, 0},
                {UINT64_MAX, UINT64_MAX},
                {0x0123456789abcdefULL, 0xfedcba9876543210ULL},
                {1, 0},
                {0, 1},
        };
        static const char *bad[] = {
                "",
                "0123456789abcdef0123456789abcde",   /* 31 */
                "0123456789abcdef0123456789abcdef0", /* 33 */
                "0123456789abcdef0123456789abcdeg",
                " 0123456789abcdef0123456789abcdef",
                "0123456789abcdef0123456789abcdef ",
                "0123456789abcdef0123456789abcdef\n",
                "0x23456789abcdef0123456789abcdef",
                "-123456789abcdef0123456789abcdef",
                "+123456789abcdef0123456789abcdef",
                "0123456789abcdef 123456789abcdef",
        };
        struct eb_fp fp;
        struct eb_fp sentinel = fp_make(42, 43);
        char hex[EB_FP_HEX_LEN + 1];
        size_t i;

        for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
                eb_fp_format(&values[i], hex);
                EB_CHECK_INT(strlen(hex), EB_FP_HEX_LEN);
                EB_CHECK_INT(eb_fp_parse(hex, &fp), 0);
                EB_CHECK(fp_eq(&fp, &values[i]));
        }
        eb_fp_format(&values[2], hex);
        EB_CHECK_STR(hex, "0123456789abcdeffedcba9876543210");

        /* Upper case is accepted. */
        EB_CHECK_INT(eb_fp_parse("0123456789ABCDEFFEDCBA9876543210", &fp), 0);
        EB_CHECK(fp_eq(&fp, &values[2]));

        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                fp = sentinel;
                EB_CHECK_INT(eb_fp_parse(bad[i], &fp), -EINVAL);
                EB_CHECK(fp_eq(&fp, &sentinel));
        }
        EB_CHECK_INT(eb_fp_parse(NULL, &fp), -EINVAL);
}

/* ---- basic table behaviour --------------------------------------------- */

struct collect {
        struct eb_fp fps[64];
        int64_t times[64];
        size_t n;
};

static void collect_cb(const struct eb_fp *fp, int64_t time_s, void *opaque)
{
        struct collect *c = opaque;

        if (c->n < 64) {
                c->fps[c->n] = *fp;
                c->times[c->n] = time_s;
        }
        c->n++;
}

/* Checks that the table holds exactly ids his[0..n) (by hi), oldest first. */
static int holds_exactly(const eb_dedupe_t *dd, const uint64_t *his, size_t n)
{
        struct collect c;
        size_t i;

        c.n = 0;
        eb_dedupe_foreach(dd, collect_cb, &c);
        if (c.n != n || eb_dedupe_size(dd) != n)
                return 0;
        for (i = 0; i < n; i++)
                if (c.fps[i].hi != his[i] || c.fps[i].lo != his[i] * 7)
                        return 0;
        return 1;
}

static struct eb_fp id(uint64_t n)
{
        return fp_make(n, n * 7);
}

static void test_new_rejects(void)
{
        static const struct {
                size_t capacity;
                int64_t window;
        } bad[] = {
                {0, 10},         {EB_DEDUPE_MAX_CAPACITY + 1, 10},
                {SIZE_MAX, 10},  {10, -1},
                {10, INT64_MIN},
        };
        eb_dedupe_t *dd;
        size_t i;

        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                errno = 0;
                dd = eb_dedupe_new(bad[i].capacity, bad[i].window);
                EB_CHECK(!dd);
                EB_CHECK_INT(errno, EINVAL);
                eb_dedupe_free(dd);
        }
        eb_dedupe_free(NULL);

        dd = eb_dedupe_new(1, 0);
        EB_REQUIRE(dd);
        EB_CHECK_INT(eb_dedupe_capacity(dd), 1);
        EB_CHECK_INT(eb_dedupe_window(dd), 0);
        EB_CHECK_INT(eb_dedupe_size(dd), 0);
        eb_dedupe_free(dd);
}

static void test_insert_contains_duplicate(void)
{
        eb_dedupe_t *dd = eb_dedupe_new(16, 3600);
        struct eb_fp a = id(1);
        struct eb_fp a_hi = fp_make(1, 0); /* same hi, other lo */
        struct eb_fp a_lo = fp_make(2, 7); /* same lo, other hi */
        struct eb_fp zero = fp_make(0, 0); /* a valid fingerprint */
        struct eb_dedupe_stats st;
        struct collect c;
        uint64_t want[] = {1};

        EB_REQUIRE(dd);
        EB_CHECK_INT(eb_dedupe_contains(dd, &a), 0);
        EB_CHECK_INT(eb_dedupe_insert(dd, &a, 1000), 1);
        EB_CHECK_INT(eb_dedupe_contains(dd, &a), 1);
        EB_CHECK_INT(eb_dedupe_contains(dd, &a_hi), 0);
        EB_CHECK_INT(eb_dedupe_contains(dd, &a_lo), 0);
        EB_CHECK_INT(eb_dedupe_contains(dd, &zero), 0);

        /* A duplicate changes nothing, not even the time. */
        EB_CHECK_INT(eb_dedupe_insert(dd, &a, 2000), 0);
        EB_CHECK(holds_exactly(dd, want, 1));
        c.n = 0;
        eb_dedupe_foreach(dd, collect_cb, &c);
        EB_CHECK_INT(c.times[0], 1000);

        EB_CHECK_INT(eb_dedupe_insert(dd, &zero, 1000), 1);
        EB_CHECK_INT(eb_dedupe_contains(dd, &zero), 1);
        EB_CHECK_INT(eb_dedupe_check_and_insert(dd, &zero, 1001), 0);
        EB_CHECK_INT(eb_dedupe_check_and_insert(dd, &a_lo, 1001), 1);
        EB_CHECK_INT(eb_dedupe_size(dd), 3);

        eb_dedupe_stats(dd, &st);
        EB_CHECK_INT(st.size, 3);
        EB_CHECK_INT(st.capacity, 16);
        EB_CHECK_INT(st.inserts, 3);
        EB_CHECK_INT(st.duplicates, 2);
        EB_CHECK_INT(st.removes, 0);
        EB_CHECK_INT(st.evicted_capacity + st.evicted_window, 0);
        EB_CHECK_INT(st.bytes, eb_dedupe_bytes(dd));
        eb_dedupe_free(dd);
}

static void test_times_clamped(void)
{
        static const struct {
                int64_t in, stored;
        } cases[] = {
                {0, 0},
                {-1, 0},
                {INT64_MIN, 0},
                {1700000000, 1700000000},
                {EB_DEDUPE_MAX_TIME, EB_DEDUPE_MAX_TIME},
                {EB_DEDUPE_MAX_TIME + 1, EB_DEDUPE_MAX_TIME},
                {INT64_MAX, EB_DEDUPE_MAX_TIME},
        };
        size_t n = sizeof(cases) / sizeof(cases[0]);
        eb_dedupe_t *dd = eb_dedupe_new(n, 0);
        struct eb_fp fp;
        struct collect c;
        size_t i;

        EB_REQUIRE(dd);
        for (i = 0; i < n; i++) {
                fp = id(i + 1);
                EB_CHECK_INT(eb_dedupe_insert(dd, &fp, cases[i].in), 1);
        }
        c.n = 0;
        eb_dedupe_foreach(dd, collect_cb, &c);
        EB_REQUIRE(c.n == n);
        for (i = 0; i < n; i++)
                EB_CHECK_INT(c.times[i], cases[i].stored);
        eb_dedupe_free(dd);
}

/* Capacity eviction drops exactly the oldest ids, in insertion order. */
static void test_capacity_eviction(void)
{
        static const size_t caps[] = {1, 2, 3, 5, 8, 13, 50};
        eb_dedupe_t *dd;
        struct eb_fp fp;
        uint64_t want[64];
        size_t ci;
        size_t cap;
        size_t i;
        size_t total;

        for (ci = 0; ci < sizeof(caps) / sizeof(caps[0]); ci++) {
                cap = caps[ci];
                total = cap * 3 + 1;
                dd = eb_dedupe_new(cap, 0);
                EB_REQUIRE(dd);
                for (i = 1; i <= total; i++) {
                        fp = id(i);
                        EB_CHECK_INT(eb_dedupe_insert(dd, &fp, (int64_t)i), 1);
                        EB_CHECK_INT(eb_dedupe_size(dd), i < cap ? i : cap);
                        EB_CHECK_INT(eb_dedupe_evictions(dd),
                                     i > cap ? i - cap : 0);
                }
                /* Survivors: the last cap ids, oldest first. */
                for (i = 0; i < cap; i++)
                        want[i] = total - cap + 1 + i;
                EB_CHECK(holds_exactly(dd, want, cap));
                for (i = 1; i <= total; i++) {
                        fp = id(i);
                        EB_CHECK_INT(eb_dedupe_contains(dd, &fp),
                                     i > total - cap);
                }
                /* A duplicate of the oldest survivor evicts nothing. */
                fp = id(total - cap + 1);
                EB_CHECK_INT(eb_dedupe_insert(dd, &fp, 0), 0);
                EB_CHECK(holds_exactly(dd, want, cap));
                eb_dedupe_free(dd);
        }
}

/* Window expiry, table-driven: times inserted, "now", survivors. */
static void test_window_expiry(void)
{
        static const struct {
                int64_t window;
                int64_t times[6];
                size_t ntimes;
                int64_t now;
                size_t expired; /* the first `expired` ids leave */
        } cases[] = {
                {10, {100, 101, 102}, 3, 105, 0},
                {10, {100, 101, 102}, 3, 110, 0}, /* 100 == now - window */
                {10, {100, 101, 102}, 3, 111, 1},
                {10, {100, 101, 102}, 3, 112, 2},
                {10, {100, 101, 102}, 3, 113, 3},
                {10, {100, 101, 102}, 3, 0, 0}, /* clock went back */
                {10, {100, 100, 100, 200}, 4, 150, 3},
                /* FIFO: a late insert with an old time leaves in order. */
                {10, {100, 50, 120}, 3, 115, 2},
                {10, {120, 50, 100}, 3, 115, 0},
                {0, {0, 1, 2}, 3, INT64_MAX, 0}, /* no window */
                {INT64_MAX, {0, 1, 2}, 3, INT64_MAX, 0},
                {1, {0, 1, 2}, 3, INT64_MIN, 0},
                {1, {0, 1, 2}, 3, INT64_MAX, 3},
        };
        eb_dedupe_t *dd;
        struct eb_fp fp;
        uint64_t want[8];
        size_t ci;
        size_t i;
        size_t n;

        for (ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
                n = cases[ci].ntimes;
                dd = eb_dedupe_new(8, cases[ci].window);
                EB_REQUIRE(dd);
                for (i = 0; i < n; i++) {
                        fp = id(i + 1);
                        EB_CHECK_INT(
                                eb_dedupe_insert(dd, &fp, cases[ci].times[i]),
                                1);
                }
                EB_CHECK_INT(eb_dedupe_expire(dd, cases[ci].now),
                             cases[ci].expired);
                for (i = cases[ci].expired; i < n; i++)
                        want[i - cases[ci].expired] = i + 1;
                EB_CHECK(holds_exactly(dd, want, n - cases[ci].expired));
                EB_CHECK_INT(eb_dedupe_evictions(dd), cases[ci].expired);
                /* Expiring again at the same time is a no-op. */
                EB_CHECK_INT(eb_dedupe_expire(dd, cases[ci].now), 0);
                eb_dedupe_free(dd);
        }
}

static void test_check_and_insert_expires(void)
{
        eb_dedupe_t *dd = eb_dedupe_new(8, 60);
        struct eb_fp a = id(1);
        struct eb_fp b = id(2);
        struct eb_dedupe_stats st;

        EB_REQUIRE(dd);
        EB_CHECK_INT(eb_dedupe_check_and_insert(dd, &a, 1000), 1);
        EB_CHECK_INT(eb_dedupe_check_and_insert(dd, &a, 1060), 0);
        EB_CHECK_INT(eb_dedupe_check_and_insert(dd, &b, 1060), 1);
        /* At 1061, a (1000) is older than the window: new again. */
        EB_CHECK_INT(eb_dedupe_check_and_insert(dd, &a, 1061), 1);
        eb_dedupe_stats(dd, &st);
        EB_CHECK_INT(st.evicted_window, 1);
        EB_CHECK_INT(st.evicted_capacity, 0);
        EB_CHECK_INT(st.size, 2);
        eb_dedupe_free(dd);
}

static void test_remove(void)
{
        eb_dedupe_t *dd = eb_dedupe_new(4, 100);
        struct eb_fp fp;
        uint64_t i;
        struct eb_dedupe_stats st;

        EB_REQUIRE(dd);
        for (i = 1; i <= 4; i++) {
                fp = id(i);
                EB_CHECK_INT(eb_dedupe_insert(dd, &fp, 10), 1);
        }
        /* Remove from the middle, then reinsert: it becomes the newest. */
        fp = id(2);
        EB_CHECK_INT(eb_dedupe_remove(dd, &fp), 1);
        EB_CHECK_INT(eb_dedupe_remove(dd, &fp), 0);
        EB_CHECK_INT(eb_dedupe_contains(dd, &fp), 0);
        {
                uint64_t want[] = {1, 3, 4};
                EB_CHECK(holds_exactly(dd, want, 3));
        }
        /*
         * The dead slot of 2 still fills the ring: 2's reinsert evicts 1,
         * and the dead slot is reclaimed as it reaches the head.
         */
        EB_CHECK_INT(eb_dedupe_insert(dd, &fp, 11), 1);
        {
                uint64_t want[] = {3, 4, 2};
                EB_CHECK(holds_exactly(dd, want, 3));
        }
        eb_dedupe_stats(dd, &st);
        EB_CHECK_INT(st.evicted_capacity, 1);
        EB_CHECK_INT(st.removes, 1);
        fp = id(5);
        EB_CHECK_INT(eb_dedupe_insert(dd, &fp, 12), 1);
        {
                uint64_t want[] = {3, 4, 2, 5};
                EB_CHECK(holds_exactly(dd, want, 4));
        }
        EB_CHECK_INT(eb_dedupe_evictions(dd), 1);

        /* Removing the oldest reclaims its slot at once. */
        fp = id(3);
        EB_CHECK_INT(eb_dedupe_remove(dd, &fp), 1);
        fp = id(6);
        EB_CHECK_INT(eb_dedupe_insert(dd, &fp, 13), 1);
        {
                uint64_t want[] = {4, 2, 5, 6};
                EB_CHECK(holds_exactly(dd, want, 4));
        }
        EB_CHECK_INT(eb_dedupe_evictions(dd), 1);

        /*
         * Rollback of the newest ids, in any order, gives their slots back:
         * remove 5 (dead in the middle), then 6 (newest): both reclaimed.
         */
        fp = id(5);
        EB_CHECK_INT(eb_dedupe_remove(dd, &fp), 1);
        fp = id(6);
        EB_CHECK_INT(eb_dedupe_remove(dd, &fp), 1);
        for (i = 7; i <= 8; i++) {
                fp = id(i);
                EB_CHECK_INT(eb_dedupe_insert(dd, &fp, 14), 1);
        }
        {
                uint64_t want[] = {4, 2, 7, 8};
                EB_CHECK(holds_exactly(dd, want, 4));
        }
        EB_CHECK_INT(eb_dedupe_evictions(dd), 1);

        /* Remove everything; the table is empty and fully usable. */
        for (i = 1; i <= 8; i++) {
                fp = id(i);
                (void)eb_dedupe_remove(dd, &fp);
        }
        EB_CHECK_INT(eb_dedupe_size(dd), 0);
        EB_CHECK(holds_exactly(dd, NULL, 0));
        EB_CHECK_INT(eb_dedupe_expire(dd, 1000000), 0);
        for (i = 1; i <= 4; i++) {
                fp = id(i);
                EB_CHECK_INT(eb_dedupe_insert(dd, &fp, 20), 1);
        }
        EB_CHECK_INT(eb_dedupe_evictions(dd), 1);
        EB_CHECK_INT(eb_dedupe_size(dd), 4);
        eb_dedupe_free(dd);
}

/* A window expiry stops at a live entry and skips dead ones. */
static void test_expire_with_dead_slots(void)
{
        eb_dedupe_t *dd = eb_dedupe_new(8, 10);
        struct eb_fp fp;
        uint64_t i;

        EB_REQUIRE(dd);
        for (i = 1; i <= 6; i++) {
                fp = id(i);
                EB_CHECK_INT(eb_dedupe_insert(dd, &fp, (int64_t)(100 + i)), 1);
        }
        fp = id(2);
        EB_CHECK_INT(eb_dedupe_remove(dd, &fp), 1);
        fp = id(3);
        EB_CHECK_INT(eb_dedupe_remove(dd, &fp), 1);
        /* now 114: cutoff 104, so 1 leaves; 2 and 3 are dead; 4 stays. */
        EB_CHECK_INT(eb_dedupe_expire(dd, 114), 1);
        {
                uint64_t want[] = {4, 5, 6};
                EB_CHECK(holds_exactly(dd, want, 3));
        }
        EB_CHECK_INT(eb_dedupe_expire(dd, 200), 3);
        EB_CHECK_INT(eb_dedupe_size(dd), 0);
        eb_dedupe_free(dd);
}

/* ---- the model check ---------------------------------------------------- */

/*
 * The reference: a plain array of entries in insertion order, never wrapped
 * (start and end only grow), with where[u] giving the array position of
 * universe member u or -1.  It follows the documented semantics directly:
 * a full table (end - start == capacity slots, dead ones included) drops its
 * oldest entry; dead entries are dropped as soon as they are the oldest or
 * the newest; expiry drops oldest-first while time < now - window.
 */
struct ment {
        size_t u;
        int64_t t;
        int dead;
};

struct model {
        struct ment *e;
        size_t start, end;
        long *where;
        size_t capacity;
        int64_t window;
        size_t live;
        uint64_t ev_cap, ev_win;
};

static void model_trim(struct model *m)
{
        while (m->start < m->end && m->e[m->start].dead)
                m->start++;
        while (m->start < m->end && m->e[m->end - 1].dead)
                m->end--;
}

static void model_pop_oldest(struct model *m)
{
        m->where[m->e[m->start].u] = -1;
        m->start++;
        m->live--;
        model_trim(m);
}

static int model_insert(struct model *m, size_t u, int64_t t)
{
        if (m->where[u] >= 0)
                return 0;
        if (m->end - m->start == m->capacity) {
                model_pop_oldest(m);
                m->ev_cap++;
        }
        if (t < 0)
                t = 0;
        if (t > EB_DEDUPE_MAX_TIME)
                t = EB_DEDUPE_MAX_TIME;
        m->e[m->end].u = u;
        m->e[m->end].t = t;
        m->e[m->end].dead = 0;
        m->where[u] = (long)m->end;
        m->end++;
        m->live++;
        return 1;
}

static int model_remove(struct model *m, size_t u)
{
        if (m->where[u] < 0)
                return 0;
        m->e[m->where[u]].dead = 1;
        m->where[u] = -1;
        m->live--;
        model_trim(m);
        return 1;
}

static size_t model_expire(struct model *m, int64_t now)
{
        size_t n = 0;

        if (m->window == 0)
                return 0;
        while (m->start < m->end && m->e[m->start].t < now - m->window) {
                model_pop_oldest(m);
                n++;
        }
        m->ev_win += n;
        return n;
}

struct walk {
        const struct model *m;
        const struct eb_fp *universe;
        size_t at;
        int ok;
};

static void walk_cb(const struct eb_fp *fp, int64_t time_s, void *opaque)
{
        struct walk *w = opaque;
        const struct model *m = w->m;

        while (w->at < m->end && m->e[w->at].dead)
                w->at++;
        if (w->at >= m->end || !fp_eq(fp, &w->universe[m->e[w->at].u]) ||
            time_s != m->e[w->at].t)
                w->ok = 0;
        w->at++;
}

struct model_cfg {
        size_t capacity;
        int64_t window;
        size_t universe;
        size_t ops;
        int collide; /* 0: random fps; 1: 4 buckets, zero tags; 2: 4
                        buckets, random tags */
};

/* Returns the number of mismatches (reported with the op number). */
static int run_model(const struct model_cfg *cfg, uint64_t seed)
{
        static const uint64_t low_bits[] = {0, 1, 0xffffffffULL, 0xfffffffeULL};
        struct model m;
        struct eb_fp *universe = NULL;
        eb_dedupe_t *dd = NULL;
        struct eb_dedupe_stats st;
        struct walk w;
        uint64_t rng = seed;
        int64_t now = 1000;
        int64_t t;
        size_t op;
        size_t u;
        size_t r;
        int fails = 0;
        int got;
        int want;

        memset(&m, 0, sizeof(m));
        m.capacity = cfg->capacity;
        m.window = cfg->window;
        m.e = calloc(cfg->ops + 1, sizeof(*m.e));
        m.where = malloc(cfg->universe * sizeof(*m.where));
        universe = calloc(cfg->universe, sizeof(*universe));
        dd = eb_dedupe_new(cfg->capacity, cfg->window);
        if (!m.e || !m.where || !universe || !dd) {
                fails = 1;
                goto out;
        }
        for (u = 0; u < cfg->universe; u++) {
                m.where[u] = -1;
                if (cfg->collide == 0) {
                        universe[u].hi = rng_next(&rng);
                        universe[u].lo = rng_next(&rng);
                } else {
                        /* Unique by u in the high half of lo. */
                        universe[u].lo = ((uint64_t)u << 32) |
                                         low_bits[rng_below(&rng, 4)];
                        universe[u].hi = cfg->collide == 1 ? u : rng_next(&rng);
                }
        }

        for (op = 0; op < cfg->ops && fails < 10; op++) {
                /*
                 * Alternate phases: the clock runs (the window bounds the
                 * table), then nearly stalls (bursts: capacity bounds it).
                 */
                if (op % 5000 < 2500)
                        now += (int64_t)rng_below(&rng, 3);
                else if (rng_below(&rng, 50) == 0)
                        now += (int64_t)rng_below(&rng, 4);
                u = rng_below(&rng, cfg->universe);
                r = rng_below(&rng, 100);
                if (r < 40) {
                        /* Mostly "now"; sometimes an older time (restore,
                         * out-of-order intake). */
                        t = now;
                        if (rng_below(&rng, 10) == 0)
                                t -= (int64_t)rng_below(
                                        &rng, (size_t)cfg->window + 5);
                        got = eb_dedupe_insert(dd, &universe[u], t);
                        want = model_insert(&m, u, t);
                } else if (r < 60) {
                        got = eb_dedupe_contains(dd, &universe[u]);
                        want = m.where[u] >= 0;
                } else if (r < 72) {
                        got = eb_dedupe_remove(dd, &universe[u]);
                        want = model_remove(&m, u);
                } else if (r < 80) {
                        got = (int)eb_dedupe_expire(dd, now);
                        want = (int)model_expire(&m, now);
                } else {
                        (void)model_expire(&m, now);
                        want = model_insert(&m, u, now);
                        got = eb_dedupe_check_and_insert(dd, &universe[u], now);
                }
                eb_dedupe_stats(dd, &st);
                if (got != want || st.size != m.live ||
                    st.evicted_capacity != m.ev_cap ||
                    st.evicted_window != m.ev_win) {
                        fprintf(stderr,
                                "  model cap=%zu op %zu: r=%zu got %d want "
                                "%d size %zu/%zu ev %" PRIu64 "/%" PRIu64 "\n",
                                cfg->capacity, op, r, got, want, st.size,
                                m.live, st.evicted_capacity, m.ev_cap);
                        fails++;
                }
                if (op % 997 == 0 || op + 1 == cfg->ops) {
                        for (u = 0; u < cfg->universe; u++) {
                                if (eb_dedupe_contains(dd, &universe[u]) !=
                                    (m.where[u] >= 0)) {
                                        fprintf(stderr,
                                                "  model cap=%zu op %zu: "
                                                "member %zu differs\n",
                                                cfg->capacity, op, u);
                                        fails++;
                                }
                        }
                        w.m = &m;
                        w.universe = universe;
                        w.at = m.start;
                        w.ok = 1;
                        eb_dedupe_foreach(dd, walk_cb, &w);
                        while (w.at < m.end && m.e[w.at].dead)
                                w.at++;
                        if (!w.ok || w.at != m.end) {
                                fprintf(stderr,
                                        "  model cap=%zu op %zu: foreach "
                                        "order differs\n",
                                        cfg->capacity, op);
                                fails++;
                        }
                }
        }
        if (!fails && cfg->ops >= 10000) {
                /* The run must have exercised every path. */
                eb_dedupe_stats(dd, &st);
                if (!st.removes || !st.duplicates || !st.evicted_capacity ||
                    (cfg->window && !st.evicted_window)) {
                        fprintf(stderr,
                                "  model cap=%zu: a path was not exercised: "
                                "removes %" PRIu64 " duplicates %" PRIu64
                                " evicted %" PRIu64 "/%" PRIu64 "\n",
                                cfg->capacity, st.removes, st.duplicates,
                                st.evicted_capacity, st.evicted_window);
                        fails++;
                }
        }
out:
        eb_dedupe_free(dd);
        free(universe);
        free(m.where);
        free(m.e);
        return fails;
}

static void test_model_random(void)
{
        static const struct model_cfg cfgs[] = {
                {1, 0, 4, 20000, 0},          {2, 3, 6, 20000, 0},
                {7, 10, 20, 50000, 0},        {64, 60, 200, 100000, 0},
                {1000, 900, 3000, 200000, 0}, {1000, 0, 2500, 200000, 0},
        };
        size_t i;

        for (i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++)
                EB_CHECK_INT(run_model(&cfgs[i], 0x5eed0000 + i), 0);
}

/*
 * Bucket collisions (not hash collisions): every fingerprint's index bucket
 * is one of four, two of them at the end of the index so probe runs wrap.
 * Long shared probe runs exercise lookups past foreign entries, evictions
 * from the middle of a run and backward-shift deletion across the wrap.
 */
static void test_bucket_collisions(void)
{
        static const struct model_cfg cfgs[] = {
                {200, 0, 600, 60000, 1}, /* all tags equal: full compare */
                {200, 0, 600, 60000, 2}, /* random tags */
                {300, 40, 500, 60000, 2},
                {5, 10, 40, 20000, 1},
        };
        eb_dedupe_t *dd;
        struct eb_fp fp;
        size_t i;
        size_t k;
        size_t cap = 500;

        for (i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++)
                EB_CHECK_INT(run_model(&cfgs[i], 0xc0111de0 + i), 0);

        /*
         * Deterministic variant: one single bucket, capacity eviction
         * through 4 x capacity ids; after each insert exactly the newest
         * `cap` are found.
         */
        dd = eb_dedupe_new(cap, 0);
        EB_REQUIRE(dd);
        for (i = 0; i < 4 * cap; i++) {
                fp = fp_make(i, (uint64_t)i << 32);
                EB_CHECK_INT(eb_dedupe_insert(dd, &fp, 0), 1);
                if (i % 97 != 0)
                        continue;
                for (k = 0; k <= i; k++) {
                        fp = fp_make(k, (uint64_t)k << 32);
                        if (eb_dedupe_contains(dd, &fp) != (k + cap > i)) {
                                EB_CHECK(!"single-bucket membership");
                                break;
                        }
                }
        }
        /* Remove every other survivor, then the rest stay findable. */
        for (k = 3 * cap; k < 4 * cap; k += 2) {
                fp = fp_make(k, (uint64_t)k << 32);
                EB_CHECK_INT(eb_dedupe_remove(dd, &fp), 1);
        }
        for (k = 3 * cap; k < 4 * cap; k++) {
                fp = fp_make(k, (uint64_t)k << 32);
                EB_CHECK_INT(eb_dedupe_contains(dd, &fp), k % 2);
        }
        EB_CHECK_INT(eb_dedupe_size(dd), cap / 2);
        eb_dedupe_free(dd);
}

/* ---- memory ------------------------------------------------------------- */

static void test_bytes_per_id(void)
{
        /*
         * 1M: the nominal case.  838861: just past a power of two / 1.25,
         * so the index is as large as it gets relative to capacity (2.5x).
         */
        static const size_t caps[] = {1000000, 838861, 10000};
        eb_dedupe_t *dd;
        struct eb_fp fp;
        size_t bytes;
        size_t ci;
        size_t i;
        size_t cap;
        uint64_t rng = 1;

        for (ci = 0; ci < sizeof(caps) / sizeof(caps[0]); ci++) {
                cap = caps[ci];
                dd = eb_dedupe_new(cap, 3600);
                EB_REQUIRE(dd);
                bytes = eb_dedupe_bytes(dd);
                /* 20 bytes of ring plus at least 1.25 index slots. */
                EB_CHECK(bytes >= cap * 25);
                EB_CHECK(bytes <= cap * 32);
                if (ci == 0) {
                        fprintf(stderr,
                                "  capacity %zu: %zu bytes, "
                                "%.2f bytes/id\n",
                                cap, bytes, (double)bytes / (double)cap);
                        /* Fill past capacity: nothing grows. */
                        for (i = 0; i < cap + cap / 2; i++) {
                                fp = fp_make(rng_next(&rng), rng_next(&rng));
                                EB_CHECK_INT(eb_dedupe_insert(dd, &fp, 0), 1);
                        }
                        EB_CHECK_INT(eb_dedupe_size(dd), cap);
                        EB_CHECK_INT(eb_dedupe_evictions(dd), cap / 2);
                        EB_CHECK_INT(eb_dedupe_bytes(dd), bytes);
                        EB_CHECK(eb_dedupe_contains(dd, &fp));
                }
                eb_dedupe_free(dd);
        }
}

int main(void)
{
        EB_RUN(test_fp_murmur3_reference);
        EB_RUN(test_fp_pinned);
        EB_RUN(test_fp_distinct_and_spread);
        EB_RUN(test_fp_format_parse);
        EB_RUN(test_new_rejects);
        EB_RUN(test_insert_contains_duplicate);
        EB_RUN(test_times_clamped);
        EB_RUN(test_capacity_eviction);
        EB_RUN(test_window_expiry);
        EB_RUN(test_check_and_insert_expires);
        EB_RUN(test_remove);
        EB_RUN(test_expire_with_dead_slots);
        EB_RUN(test_model_random);
        EB_RUN(test_bucket_collisions);
        EB_RUN(test_bytes_per_id);
        return eb_test_summary();
}
