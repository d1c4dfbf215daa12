/*
 * eb_seen: per-second event counts kept in checkpoints (eb_seen.h).
 */
#include "eb_seen.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "eb_util.h"

static void sec_key(int64_t sec, char *key, size_t size)
{
        snprintf(key, size, "%" PRId64, sec);
}

void eb_seen_add(json_t *cnt, int64_t sec, int64_t n)
{
        char key[32];
        json_t *v;

        sec_key(sec, key, sizeof(key));
        v = json_object_get(cnt, key);
        json_object_set_new(cnt, key,
                            json_integer((v ? json_integer_value(v) : 0) + n));
}

int64_t eb_seen_get(const json_t *cnt, int64_t sec)
{
        char key[32];
        json_t *v;

        sec_key(sec, key, sizeof(key));
        v = json_object_get(cnt, key);
        return json_is_integer(v) ? json_integer_value(v) : 0;
}

static int covers(const json_t *a, const json_t *b, int64_t lo, int64_t hi)
{
        const char *key;
        json_t *v;
        int64_t s;

        json_object_foreach((json_t *)a, key, v)
        {
                s = strtoll(key, NULL, 10);
                if (s > lo && s <= hi &&
                    json_integer_value(v) != eb_seen_get(b, s))
                        return 0;
        }
        return 1;
}

int eb_seen_same(const json_t *a, const json_t *b, int64_t lo, int64_t hi)
{
        return covers(a, b, lo, hi) && covers(b, a, lo, hi);
}

json_t *eb_seen_load(const json_t *cp, int64_t top, size_t max, int64_t *lo)
{
        const json_t *seen = json_object_get(cp, "seen"), *e;
        json_t *span = json_object_get(cp, "seen_span"), *cnt;
        int64_t n, d, c;
        size_t i;

        if (!json_is_array(seen) || !json_is_integer(span) ||
            json_array_size(seen) > max)
                return NULL;
        n = json_integer_value(span);
        if (n < 0 || n > top)
                return NULL;
        cnt = json_object();
        json_array_foreach(seen, i, e)
        {
                if (!json_is_array(e) || json_array_size(e) != 2 ||
                    !json_is_integer(json_array_get(e, 0)) ||
                    !json_is_integer(json_array_get(e, 1)))
                        goto bad;
                d = json_integer_value(json_array_get(e, 0));
                c = json_integer_value(json_array_get(e, 1));
                if (d < 0 || d > n || c < 1 || c > EB_SEEN_MAX_COUNT ||
                    eb_seen_get(cnt, top - d))
                        goto bad;
                eb_seen_add(cnt, top - d, c);
        }
        *lo = top - n;
        return cnt;
bad:
        json_decref(cnt);
        return NULL;
}

static int newest_first(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

        return x < y ? 1 : x > y ? -1 : 0;
}

void eb_seen_store(json_t *cp, const json_t *cnt, int64_t lo, int64_t top,
                   size_t max)
{
        int64_t *secs, s;
        const char *key;
        json_t *v, *seen;
        size_t n = 0, i;

        if (lo > top)
                return;
        secs = eb_xmalloc((json_object_size(cnt) + 1) * sizeof(*secs));
        json_object_foreach((json_t *)cnt, key, v)
        {
                s = strtoll(key, NULL, 10);
                if (s >= lo && s <= top && json_integer_value(v) > 0)
                        secs[n++] = s;
        }
        qsort(secs, n, sizeof(*secs), newest_first);
        if (n > max) {
                n = max;
                lo = secs[n - 1];
        }
        seen = json_array();
        for (i = 0; i < n; i++)
                json_array_append_new(
                        seen, json_pack("[II]", (json_int_t)(top - secs[i]),
                                        (json_int_t)eb_seen_get(cnt, secs[i])));
        json_object_set_new(cp, "seen", seen);
        json_object_set_new(cp, "seen_span", json_integer(top - lo));
        free(secs);
}
