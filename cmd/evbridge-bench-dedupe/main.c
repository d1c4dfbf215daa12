/*
 * evbridge-bench-dedupe: micro-benchmark of the dedupe table on one core.
 *
 *   evbridge-bench-dedupe [--ids N]     N: count, optional k/M suffix
 *
 * Phases, each timed alone, on a table of capacity N:
 *   fp            fingerprint N dedupe keys (key formatting included)
 *   insert        insert the N fingerprints into the empty table
 *   lookup_hit    look up the N fingerprints in random order (all present)
 *   lookup_miss   look up N other fingerprints (none present)
 *   insert_evict  insert those N others into the full table (each insert
 *                 evicts the oldest id: the steady state of a long run)
 * and prints one JSON line.  Results are checked (every hit found, no miss
 * found, N evictions); a mismatch exits with status 1.
 */
#include "eb_dedupe.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_IDS 1000000

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng_next(uint64_t *state)
{
        uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

/* A realistic dedupe key: "<source>\x1f<id>\x1f<version>" (eb_event.h). */
static size_t make_key(char *buf, uint64_t n)
{
        static const char prefix[] = "bench-close\x1f"
                                     "evt_";
        static const char hex[] = "0123456789abcdef";
        size_t len = sizeof(prefix) - 1;
        int i;

        memcpy(buf, prefix, len);
        for (i = 15; i >= 0; i--)
                buf[len++] = hex[(n >> (4 * i)) & 0xf];
        buf[len++] = '\x1f';
        buf[len++] = (char)('1' + n % 3);
        return len;
}

static void fingerprint_range(struct eb_fp *fps, size_t n, uint64_t first)
{
        char key[64];
        size_t i;
        size_t len;

        for (i = 0; i < n; i++) {
                len = make_key(key, first + i);
                eb_fp_compute(key, len, &fps[i]);
        }
}

static int parse_count(const char *s, size_t *out)
{
        unsigned long long v;
        unsigned long long mult = 1;
        char *end = NULL;

        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || !end)
                return -EINVAL;
        if (*end == 'k' || *end == 'K') {
                mult = 1000;
                end++;
        } else if (*end == 'm' || *end == 'M') {
                mult = 1000000;
                end++;
        }
        if (*end != '\0' || v == 0 || v > EB_DEDUPE_MAX_CAPACITY / mult)
                return -EINVAL;
        *out = (size_t)(v * mult);
        return 0;
}

static void usage(FILE *f)
{
        fprintf(f,
                "usage: evbridge-bench-dedupe [--ids N]\n"
                "  --ids N   ids to remember (default 1M); accepts k/M "
                "suffixes, at most %zu\n",
                (size_t)EB_DEDUPE_MAX_CAPACITY);
}

int main(int argc, char **argv)
{
        size_t ids = DEFAULT_IDS;
        struct eb_fp *fps = NULL;
        eb_dedupe_t *dd = NULL;
        struct eb_dedupe_stats st;
        uint64_t rng = 0x62656e6368ULL;
        struct eb_fp tmp;
        double t0;
        double t_fp, t_ins, t_hit, t_miss, t_evict;
        size_t hits = 0;
        size_t misses_found = 0;
        size_t inserted = 0;
        size_t i;
        size_t j;
        int rc = 1;
        int a;

        for (a = 1; a < argc; a++) {
                if (!strcmp(argv[a], "--ids") && a + 1 < argc) {
                        if (parse_count(argv[++a], &ids) < 0) {
                                fprintf(stderr, "--ids: invalid count '%s'\n",
                                        argv[a]);
                                return 2;
                        }
                } else if (!strcmp(argv[a], "-h") ||
                           !strcmp(argv[a], "--help")) {
                        usage(stdout);
                        return 0;
                } else {
                        usage(stderr);
                        return 2;
                }
        }

        fps = malloc(ids * sizeof(*fps));
        dd = eb_dedupe_new(ids, 72 * 3600);
        if (!fps || !dd) {
                fprintf(stderr, "out of memory for %zu ids\n", ids);
                goto out;
        }

        t0 = now_s();
        fingerprint_range(fps, ids, 0);
        t_fp = now_s() - t0;

        t0 = now_s();
        for (i = 0; i < ids; i++)
                inserted += (size_t)eb_dedupe_insert(
                        dd, &fps[i], 1700000000 + (int64_t)(i / 1000));
        t_ins = now_s() - t0;

        /* Random lookup order, so the ring is not walked sequentially. */
        for (i = ids - 1; i > 0; i--) {
                j = (size_t)(rng_next(&rng) % (i + 1));
                tmp = fps[i];
                fps[i] = fps[j];
                fps[j] = tmp;
        }
        t0 = now_s();
        for (i = 0; i < ids; i++)
                hits += (size_t)eb_dedupe_contains(dd, &fps[i]);
        t_hit = now_s() - t0;

        fingerprint_range(fps, ids, ids);
        t0 = now_s();
        for (i = 0; i < ids; i++)
                misses_found += (size_t)eb_dedupe_contains(dd, &fps[i]);
        t_miss = now_s() - t0;

        t0 = now_s();
        for (i = 0; i < ids; i++)
                inserted += (size_t)eb_dedupe_insert(
                        dd, &fps[i], 1700100000 + (int64_t)(i / 1000));
        t_evict = now_s() - t0;

        eb_dedupe_stats(dd, &st);
        if (hits != ids || misses_found != 0 || inserted != 2 * ids ||
            st.size != ids || st.evicted_capacity != ids) {
                fprintf(stderr,
                        "self-check failed: hits %zu misses found %zu "
                        "inserted %zu size %zu evicted %" PRIu64 "\n",
                        hits, misses_found, inserted, st.size,
                        st.evicted_capacity);
                goto out;
        }

        printf("{\"ids\":%zu,\"fp_per_s\":%.0f,\"inserts_per_s\":%.0f,"
               "\"lookups_hit_per_s\":%.0f,\"lookups_miss_per_s\":%.0f,"
               "\"inserts_evict_per_s\":%.0f,\"bytes\":%zu,"
               "\"bytes_per_id\":%.2f}\n",
               ids, (double)ids / t_fp, (double)ids / t_ins,
               (double)ids / t_hit, (double)ids / t_miss, (double)ids / t_evict,
               st.bytes, (double)st.bytes / (double)ids);
        rc = 0;
out:
        eb_dedupe_free(dd);
        free(fps);
        return rc;
}
