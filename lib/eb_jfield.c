/*
 * eb_jfield: typed reads and writes of JSON object members (eb_jfield.h).
 */
#include "eb_jfield.h"

#include <errno.h>
#include <string.h>

#include "eb_time.h"
#include "eb_util.h"

const char *eb_jfield_str(const json_t *obj, const char *key, size_t maxlen)
{
        const json_t *v = json_object_get(obj, key);
        size_t n;

        if (!json_is_string(v))
                return NULL;
        n = json_string_length(v);
        if (!n || n > maxlen || strlen(json_string_value(v)) != n)
                return NULL;
        return json_string_value(v);
}

char *eb_jfield_id_text(const json_t *v)
{
        if (json_is_integer(v)) {
                /* most ids are numbers (Kommo): no printf per event */
                int64_t x = (int64_t)json_integer_value(v);
                uint64_t u = x < 0 ? 0 - (uint64_t)x : (uint64_t)x;
                char num[24], *p = num + sizeof(num);

                *--p = '\0';
                do {
                        *--p = (char)('0' + u % 10);
                        u /= 10;
                } while (u);
                if (x < 0)
                        *--p = '-';
                return eb_xstrdup(p);
        }
        if (json_is_string(v)) {
                size_t n = json_string_length(v);

                if (!n || n > EB_JFIELD_MAX_ID ||
                    strlen(json_string_value(v)) != n)
                        return NULL;
                return eb_xstrdup(json_string_value(v));
        }
        return NULL;
}

int eb_jfield_opt_id(const json_t *obj, const char *key, char **out)
{
        const json_t *v = json_object_get(obj, key);

        *out = NULL;
        if (!v || json_is_null(v))
                return 0;
        *out = eb_jfield_id_text(v);
        return *out ? 0 : -EINVAL;
}

int64_t eb_jfield_i64(const json_t *obj, const char *key, int64_t dflt)
{
        const json_t *v = json_object_get(obj, key);

        return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

int eb_jfield_rfc3339(const json_t *obj, const char *key, int64_t *ms)
{
        const char *s = eb_jfield_str(obj, key, 64);

        return s ? eb_rfc3339_parse(s, ms) : -EINVAL;
}

void eb_jfield_set_rfc3339(json_t *obj, const char *key, int64_t ms)
{
        char buf[40];

        eb_rfc3339_format(ms, 3, buf, sizeof(buf));
        json_object_set_new(obj, key, json_string(buf));
}

void eb_jfield_copy(json_t *dst, const json_t *src, const char *key)
{
        json_t *v = json_object_get(src, key);

        json_object_set_new(dst, key, v ? json_incref(v) : json_null());
}
