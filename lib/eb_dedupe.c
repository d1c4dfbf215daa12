#include "eb_dedupe.h"

#include "eb_util.h"

#include <errno.h>
#include <stdlib.h>

/*
 * Layout.
 *
 * The ring holds entries in insertion order: fps[pos] and times[pos] for pos
 * in head .. head + used - 1 (mod capacity).  Fingerprints and times live in
 * two arrays rather than one packed 20-byte struct so that lookups touch
 * only the fingerprint array and nothing is misaligned.  A slot removed from
 * the middle is marked dead (time EB_DEAD, fingerprint zeroed); it keeps its
 * ring position until it becomes the oldest or the newest slot.
 *
 * Invariant: when used > 0, neither the oldest (head) nor the newest (tail)
 * slot is dead.  So a full ring always evicts a live id, and used == 0
 * exactly when live == 0.
 *
 * The index is open addressing with linear probing over a power-of-two array
 * of uint32 slots, at least 1.25 x capacity, so the load factor stays
 * below 0.8 and a probe always meets an empty slot.  The home bucket is the
 * low bits of fp.lo (fingerprints are already hash output).  A slot packs
 * the ring position + 1 in its low pos_bits bits (0 = empty) and, above
 * them, a tag taken from the top bits of fp.hi.  The tag lets a probe skip
 * most foreign entries without reading the ring, which is a cache miss on a
 * large table.  It also lets eviction find an entry's slot by comparing the
 * whole slot value, as ring positions are unique.
 *
 * Deletion shifts later members of the probe run back (no tombstones), so
 * lookups of absent ids stay short however many ids have passed through.
 */

#define EB_DEAD      UINT32_MAX /* times[] value of a removed ring slot */
#define EB_MIN_INDEX 8

struct eb_dedupe_s {
        struct eb_fp *fps; /* ring: fingerprints */
        uint32_t *times;   /* ring: times, or EB_DEAD */
        uint32_t *index;   /* index_mask + 1 slots */
        size_t capacity;
        size_t head; /* ring position of the oldest slot */
        size_t used; /* ring slots in use, live or dead */
        size_t live; /* live ids */
        size_t index_mask;
        uint32_t pos_mask;  /* low bits of a slot: ring position + 1 */
        unsigned pos_bits;  /* popcount of pos_mask */
        unsigned tag_shift; /* fp.hi >> tag_shift is the tag */
        int64_t window;
        size_t bytes;
        uint64_t inserts;
        uint64_t duplicates;
        uint64_t removes;
        uint64_t evicted_capacity;
        uint64_t evicted_window;
};

/* ---- fingerprints: MurmurHash3 x64_128 --------------------------------- */

#define EB_M3_C1 0x87c37b91114253d5ULL
#define EB_M3_C2 0x4cf5ad432745937fULL

static inline uint64_t rotl64(uint64_t x, unsigned r)
{
        return (x << r) | (x >> (64 - r));
}

static inline uint64_t fmix64(uint64_t k)
{
        k ^= k >> 33;
        k *= 0xff51afd7ed558ccdULL;
        k ^= k >> 33;
        k *= 0xc4ceb9fe1a85ec53ULL;
        k ^= k >> 33;
        return k;
}

/* Little-endian load whatever the host order; compilers emit one load. */
static inline uint64_t load_le64(const unsigned char *p)
{
        return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
               (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 |
               (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
               (uint64_t)p[7] << 56;
}

static inline uint64_t mix_k1(uint64_t k1)
{
        k1 *= EB_M3_C1;
        k1 = rotl64(k1, 31);
        return k1 * EB_M3_C2;
}

static inline uint64_t mix_k2(uint64_t k2)
{
        k2 *= EB_M3_C2;
        k2 = rotl64(k2, 33);
        return k2 * EB_M3_C1;
}

void eb_fp_murmur3(const void *key, size_t len, uint32_t seed,
                   struct eb_fp *out)
{
        const unsigned char *p = key;
        size_t nblocks = len / 16;
        size_t rem = len % 16;
        uint64_t h1 = seed;
        uint64_t h2 = seed;
        uint64_t k1 = 0;
        uint64_t k2 = 0;
        size_t i;

        for (i = 0; i < nblocks; i++, p += 16) {
                h1 ^= mix_k1(load_le64(p));
                h1 = rotl64(h1, 27);
                h1 += h2;
                h1 = h1 * 5 + 0x52dce729;

                h2 ^= mix_k2(load_le64(p + 8));
                h2 = rotl64(h2, 31);
                h2 += h1;
                h2 = h2 * 5 + 0x38495ab5;
        }

        /* Tail: bytes 0..7 feed k1, bytes 8..14 feed k2, little-endian. */
        for (i = rem; i > 8; i--)
                k2 = (k2 << 8) | p[i - 1];
        for (i = rem < 8 ? rem : 8; i > 0; i--)
                k1 = (k1 << 8) | p[i - 1];
        if (rem > 8)
                h2 ^= mix_k2(k2);
        if (rem > 0)
                h1 ^= mix_k1(k1);

        h1 ^= (uint64_t)len;
        h2 ^= (uint64_t)len;
        h1 += h2;
        h2 += h1;
        h1 = fmix64(h1);
        h2 = fmix64(h2);
        h1 += h2;
        h2 += h1;

        out->hi = h1;
        out->lo = h2;
}

void eb_fp_compute(const void *key, size_t len, struct eb_fp *out)
{
        eb_fp_murmur3(key, len, EB_FP_SEED, out);
}

void eb_fp_format(const struct eb_fp *fp, char out[EB_FP_HEX_LEN + 1])
{
        static const char digits[] = "0123456789abcdef";
        int i;

        for (i = 0; i < 16; i++) {
                out[i] = digits[(fp->hi >> (60 - 4 * i)) & 0xf];
                out[16 + i] = digits[(fp->lo >> (60 - 4 * i)) & 0xf];
        }
        out[EB_FP_HEX_LEN] = '\0';
}

int eb_fp_parse(const char *s, struct eb_fp *out)
{
        uint64_t half[2] = {0, 0};
        int i;
        int v;

        if (!s)
                return -EINVAL;
        /* Stops at the first non-hex character, the NUL included. */
        for (i = 0; i < EB_FP_HEX_LEN; i++) {
                v = eb_hex_digit(s[i]);
                if (v < 0)
                        return -EINVAL;
                half[i / 16] = (half[i / 16] << 4) | (uint64_t)v;
        }
        if (s[EB_FP_HEX_LEN] != '\0')
                return -EINVAL;
        out->hi = half[0];
        out->lo = half[1];
        return 0;
}

/* ---- the table ---------------------------------------------------------- */

static inline uint32_t slot_of(const eb_dedupe_t *dd, const struct eb_fp *fp,
                               size_t pos)
{
        uint32_t tag = (uint32_t)(fp->hi >> dd->tag_shift);

        return (tag << dd->pos_bits) | (uint32_t)(pos + 1);
}

static inline size_t home_of(const eb_dedupe_t *dd, const struct eb_fp *fp)
{
        return (size_t)fp->lo & dd->index_mask;
}

/*
 * Index position of @fp's slot, or of the empty slot that ends its probe
 * run (then *found is 0).
 */
static inline size_t index_find(const eb_dedupe_t *dd, const struct eb_fp *fp,
                                int *found)
{
        uint32_t want = (uint32_t)(fp->hi >> dd->tag_shift);
        size_t i = home_of(dd, fp);
        const struct eb_fp *e;
        uint32_t s;

        for (;;) {
                s = dd->index[i];
                if (!s) {
                        *found = 0;
                        return i;
                }
                if ((s >> dd->pos_bits) == want) {
                        e = &dd->fps[(s & dd->pos_mask) - 1];
                        if (e->lo == fp->lo && e->hi == fp->hi) {
                                *found = 1;
                                return i;
                        }
                }
                i = (i + 1) & dd->index_mask;
        }
}

/* Backward-shift deletion of index slot @i (Knuth 6.4 algorithm R). */
static void index_delete(eb_dedupe_t *dd, size_t i)
{
        size_t mask = dd->index_mask;
        size_t j = i;
        size_t home;
        uint32_t s;

        for (;;) {
                j = (j + 1) & mask;
                s = dd->index[j];
                if (!s)
                        break;
                home = home_of(dd, &dd->fps[(s & dd->pos_mask) - 1]);
                /*
                 * The entry at j may fill the hole at i only if its home
                 * is not inside (i, j]: otherwise a probe from its home
                 * would no longer pass over it.
                 */
                if (((j - home) & mask) >= ((j - i) & mask)) {
                        dd->index[i] = s;
                        i = j;
                }
        }
        dd->index[i] = 0;
}

/* Drop the index slot of the live entry at ring position @pos. */
static void index_delete_pos(eb_dedupe_t *dd, size_t pos)
{
        const struct eb_fp *fp = &dd->fps[pos];
        uint32_t want = slot_of(dd, fp, pos);
        size_t i = home_of(dd, fp);

        /* Present by construction, so the probe ends on it. */
        while (dd->index[i] != want)
                i = (i + 1) & dd->index_mask;
        index_delete(dd, i);
}

static inline size_t ring_pos(const eb_dedupe_t *dd, size_t nth)
{
        size_t pos = dd->head + nth;

        return pos >= dd->capacity ? pos - dd->capacity : pos;
}

static void trim_dead_head(eb_dedupe_t *dd)
{
        while (dd->used > 0 && dd->times[dd->head] == EB_DEAD) {
                dd->head = ring_pos(dd, 1);
                dd->used--;
        }
}

static void trim_dead_tail(eb_dedupe_t *dd)
{
        while (dd->used > 0 && dd->times[ring_pos(dd, dd->used - 1)] == EB_DEAD)
                dd->used--;
}

/* Evict the oldest entry, which is live by the invariant. */
static void evict_head(eb_dedupe_t *dd)
{
        index_delete_pos(dd, dd->head);
        dd->head = ring_pos(dd, 1);
        dd->used--;
        dd->live--;
        trim_dead_head(dd);
}

static unsigned bit_length(size_t v)
{
        unsigned n = 0;

        while (v) {
                n++;
                v >>= 1;
        }
        return n;
}

eb_dedupe_t *eb_dedupe_new(size_t capacity, int64_t window_s)
{
        eb_dedupe_t *dd = NULL;
        size_t need;
        size_t slots = EB_MIN_INDEX;

        if (capacity < 1 || capacity > EB_DEDUPE_MAX_CAPACITY || window_s < 0) {
                errno = EINVAL;
                return NULL;
        }
        need = capacity + capacity / 4 + (capacity % 4 != 0);
        while (slots < need)
                slots *= 2;
        if (capacity > SIZE_MAX / sizeof(struct eb_fp) ||
            slots > SIZE_MAX / sizeof(uint32_t))
                goto nomem;

        dd = calloc(1, sizeof(*dd));
        if (!dd)
                goto nomem;
        dd->fps = malloc(capacity * sizeof(*dd->fps));
        dd->times = malloc(capacity * sizeof(*dd->times));
        dd->index = calloc(slots, sizeof(*dd->index));
        if (!dd->fps || !dd->times || !dd->index)
                goto nomem;

        dd->capacity = capacity;
        dd->index_mask = slots - 1;
        /* capacity <= 2^30, so pos_bits <= 31 and the tag has >= 1 bit. */
        dd->pos_bits = bit_length(capacity);
        dd->pos_mask = (uint32_t)(((uint64_t)1 << dd->pos_bits) - 1);
        dd->tag_shift = 64 - (32 - dd->pos_bits);
        dd->window = window_s;
        dd->bytes = sizeof(*dd) + capacity * sizeof(*dd->fps) +
                    capacity * sizeof(*dd->times) + slots * sizeof(*dd->index);
        return dd;

nomem:
        eb_dedupe_free(dd);
        errno = ENOMEM;
        return NULL;
}

void eb_dedupe_free(eb_dedupe_t *dd)
{
        if (!dd)
                return;
        free(dd->fps);
        free(dd->times);
        free(dd->index);
        free(dd);
}

int eb_dedupe_contains(const eb_dedupe_t *dd, const struct eb_fp *fp)
{
        int found;

        (void)index_find(dd, fp, &found);
        return found;
}

int eb_dedupe_insert(eb_dedupe_t *dd, const struct eb_fp *fp, int64_t time_s)
{
        size_t i;
        size_t pos;
        int found;

        i = index_find(dd, fp, &found);
        if (found) {
                dd->duplicates++;
                return 0;
        }
        if (dd->used == dd->capacity) {
                evict_head(dd);
                dd->evicted_capacity++;
                /* The backward shift may have moved the hole: re-probe. */
                i = home_of(dd, fp);
                while (dd->index[i])
                        i = (i + 1) & dd->index_mask;
        }
        if (time_s < 0)
                time_s = 0;
        else if (time_s > EB_DEDUPE_MAX_TIME)
                time_s = EB_DEDUPE_MAX_TIME;

        pos = ring_pos(dd, dd->used);
        dd->fps[pos] = *fp;
        dd->times[pos] = (uint32_t)time_s;
        dd->index[i] = slot_of(dd, fp, pos);
        dd->used++;
        dd->live++;
        dd->inserts++;
        return 1;
}

size_t eb_dedupe_expire(eb_dedupe_t *dd, int64_t now_s)
{
        size_t n = 0;
        int64_t cutoff;

        if (dd->window == 0)
                return 0;
        if (now_s < INT64_MIN + dd->window)
                return 0; /* nothing can be older than the distant past */
        cutoff = now_s - dd->window;
        while (dd->used > 0 && (int64_t)dd->times[dd->head] < cutoff) {
                evict_head(dd);
                n++;
        }
        dd->evicted_window += n;
        return n;
}

int eb_dedupe_check_and_insert(eb_dedupe_t *dd, const struct eb_fp *fp,
                               int64_t now_s)
{
        (void)eb_dedupe_expire(dd, now_s);
        return eb_dedupe_insert(dd, fp, now_s);
}

int eb_dedupe_remove(eb_dedupe_t *dd, const struct eb_fp *fp)
{
        size_t i;
        size_t pos;
        int found;

        i = index_find(dd, fp, &found);
        if (!found)
                return 0;
        pos = (dd->index[i] & dd->pos_mask) - 1;
        index_delete(dd, i);
        dd->fps[pos].hi = 0;
        dd->fps[pos].lo = 0;
        dd->times[pos] = EB_DEAD;
        dd->live--;
        dd->removes++;
        trim_dead_tail(dd);
        trim_dead_head(dd);
        return 1;
}

void eb_dedupe_foreach(const eb_dedupe_t *dd,
                       void (*fn)(const struct eb_fp *fp, int64_t time_s,
                                  void *opaque),
                       void *opaque)
{
        size_t n;
        size_t pos;

        for (n = 0; n < dd->used; n++) {
                pos = ring_pos(dd, n);
                if (dd->times[pos] != EB_DEAD)
                        fn(&dd->fps[pos], (int64_t)dd->times[pos], opaque);
        }
}

size_t eb_dedupe_size(const eb_dedupe_t *dd)
{
        return dd->live;
}

size_t eb_dedupe_capacity(const eb_dedupe_t *dd)
{
        return dd->capacity;
}

int64_t eb_dedupe_window(const eb_dedupe_t *dd)
{
        return dd->window;
}

size_t eb_dedupe_bytes(const eb_dedupe_t *dd)
{
        return dd->bytes;
}

uint64_t eb_dedupe_evictions(const eb_dedupe_t *dd)
{
        return dd->evicted_capacity + dd->evicted_window;
}

void eb_dedupe_stats(const eb_dedupe_t *dd, struct eb_dedupe_stats *st)
{
        st->size = dd->live;
        st->capacity = dd->capacity;
        st->bytes = dd->bytes;
        st->inserts = dd->inserts;
        st->duplicates = dd->duplicates;
        st->removes = dd->removes;
        st->evicted_capacity = dd->evicted_capacity;
        st->evicted_window = dd->evicted_window;
}
