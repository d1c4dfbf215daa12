/*
 * rand.c: deterministic random streams (xoshiro256**, seeded through
 * splitmix64 from the --seed value and a label) and the word lists the
 * generators draw names from.
 *
 * Every stream is independent: an account's event content comes from its
 * own stream, so changing the fault or webhook settings never changes what
 * events an account produces.
 */
#include "sim.h"

#include <string.h>

#include "eb_util.h"

const char sim_base62[] =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const char sim_hexdigits[] = "0123456789abcdef";
const char sim_crockford[] = "0123456789abcdefghjkmnpqrstvwxyz";

static uint64_t splitmix64(uint64_t *x)
{
        uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
        return (x << k) | (x >> (64 - k));
}

void sim_rng_seed(struct sim_rng *r, uint64_t seed, const char *label)
{
        uint64_t x = seed ^ eb_fnv1a64(label, strlen(label));
        int i;

        for (i = 0; i < 4; i++)
                r->s[i] = splitmix64(&x);
}

uint64_t sim_rng_next(struct sim_rng *r)
{
        uint64_t *s = r->s;
        uint64_t result = rotl(s[1] * 5, 7) * 9;
        uint64_t t = s[1] << 17;

        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return result;
}

double sim_rng_unit(struct sim_rng *r)
{
        return (double)(sim_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t sim_rng_below(struct sim_rng *r, uint64_t n)
{
        if (n == 0)
                return 0;
        return sim_rng_next(r) % n;
}

int64_t sim_rng_range(struct sim_rng *r, int64_t lo, int64_t hi)
{
        if (hi <= lo)
                return lo;
        return lo + (int64_t)sim_rng_below(r, (uint64_t)(hi - lo) + 1);
}

size_t sim_rng_weighted(struct sim_rng *r, const int *w, size_t n)
{
        uint64_t total = 0, pick;
        size_t i;

        for (i = 0; i < n; i++)
                total += (uint64_t)(w[i] > 0 ? w[i] : 0);
        if (total == 0)
                return 0;
        pick = sim_rng_below(r, total);
        for (i = 0; i < n; i++) {
                uint64_t wi = (uint64_t)(w[i] > 0 ? w[i] : 0);
                if (pick < wi)
                        return i;
                pick -= wi;
        }
        return n - 1;
}

uint64_t sim_hash3(uint64_t seed, const char *label, uint64_t n)
{
        uint64_t x = seed ^ eb_fnv1a64(label, strlen(label));

        x ^= n * 0xd6e8feb86659fd93ULL;
        splitmix64(&x);
        return splitmix64(&x);
}

double sim_hash_unit(uint64_t seed, const char *label, uint64_t n)
{
        return (double)(sim_hash3(seed, label, n) >> 11) * 0x1.0p-53;
}

char *sim_rand_id(struct sim_rng *r, const char *prefix, const char *alpha,
                  size_t n)
{
        size_t plen = strlen(prefix), alen = strlen(alpha), i;
        char *s = eb_xmalloc(plen + n + 1);

        memcpy(s, prefix, plen);
        for (i = 0; i < n; i++)
                s[plen + i] = alpha[sim_rng_below(r, alen)];
        s[plen + n] = '\0';
        return s;
}

char *sim_rand_uuid(struct sim_rng *r)
{
        char *s = sim_rand_id(r, "", sim_hexdigits, 36);

        s[8] = s[13] = s[18] = s[23] = '-';
        s[14] = '4';
        s[19] = "89ab"[sim_rng_below(r, 4)];
        return s;
}

const char *sim_pick(struct sim_rng *r, const char *const *list, size_t n)
{
        return list[sim_rng_below(r, n)];
}

const char *const sim_first_names[] = {
        "Jane",  "John",    "Maria", "Liam",  "Olivia", "Noah",  "Emma",
        "Ivan",  "Sofia",   "Lucas", "Anna",  "Mateo",  "Chloe", "Omar",
        "Aisha", "Hiroshi", "Mei",   "Pavel", "Elena",  "Tomas",
};
const size_t sim_first_names_n =
        sizeof(sim_first_names) / sizeof(sim_first_names[0]);

const char *const sim_last_names[] = {
        "Doe",    "Smith",  "Garcia", "Kowalski", "Novak",   "Silva",
        "Murphy", "Tanaka", "Okafor", "Ivanova",  "Rossi",   "Dubois",
        "Larsen", "Kumar",  "Chen",   "Jones",    "Fischer", "Haddad",
};
const size_t sim_last_names_n =
        sizeof(sim_last_names) / sizeof(sim_last_names[0]);

const char *const sim_words[] = {
        "Acme",    "Globex",     "Initech",  "Umbrella", "Stark",
        "Wayne",   "Hooli",      "Vandelay", "Wonka",    "Cyberdyne",
        "Soylent", "Tyrell",     "Aperture", "Massive",  "Gringotts",
        "Oscorp",  "Pied Piper", "Dunder",
};
const size_t sim_words_n = sizeof(sim_words) / sizeof(sim_words[0]);
