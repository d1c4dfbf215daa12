/*
 * eb_config: load, interpolate and validate the JSON configuration file.
 *
 * Three passes over one jansson tree:
 *
 *   1. parse (jansson, duplicate keys rejected);
 *   2. interpolate every string value in place (${VAR}, ${file:/path},
 *      "$${"), so the tree each source keeps in src->json is the one the
 *      daemon actually runs with;
 *   3. walk the tree against declarative key tables (the shape of the file:
 *      name, type, range, target field), rejecting unknown keys, wrong
 *      types and out-of-range values with "<key path>: <what is wrong>".
 *
 * Defaults live in eb_config_new_default() and source_defaults(); the
 * tables only say what a key may hold and where it goes.
 */
#include "eb_config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eb_buf.h"
#include "eb_time.h"
#include "eb_util.h"

#define EB_CFG_FILE_MAX       (64 * 1024)   /* ${file:} value cap */
#define EB_CFG_VALUE_MAX      (1024 * 1024) /* any string after interpolation */
#define EB_CFG_PATH_MAX       512           /* key path in messages */
#define EB_CONFIG_MAX_SHARDS  1024          /* scale.shards */
#define EB_CFG_MSG_MAX        1024          /* one error message */
#define EB_CFG_QUOTE_MAX      60            /* bytes of a value echoed back */
#define EB_CFG_NAME_MAX       100           /* source name length */
#define EB_CFG_TOPIC_PART_MAX 200           /* topic_prefix, state_prefix */
#define EB_CFG_TEMPLATE_MAX   1000          /* topic_template length */

#define KIB ((int64_t)1024)
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)

#define MS_SEC  ((int64_t)1000)
#define MS_MIN  (60 * MS_SEC)
#define MS_HOUR (60 * MS_MIN)
#define MS_DAY  (24 * MS_HOUR)

/* Shape-only loading (eb_config_load_shape()): a ${file:} whose file
 * does not exist becomes a placeholder instead of an error. */
struct absent_files {
        size_t cnt;
        char first[256];
};

struct cfg_ctx {
        char *errstr;
        size_t errstr_size;
        struct absent_files *absent; /* NULL: every file must exist */
};

static int cfg_err(struct cfg_ctx *ctx, const char *path, const char *fmt, ...)
        EB_PRINTF(3, 4);

/* Record "path: message" (first error wins: the walk stops there).
 * @returns -EINVAL, so callers can "return cfg_err(...)". */
static int cfg_err(struct cfg_ctx *ctx, const char *path, const char *fmt, ...)
{
        char msg[EB_CFG_MSG_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (ctx->errstr && ctx->errstr_size)
                snprintf(ctx->errstr, ctx->errstr_size, "%s: %s", path, msg);
        return -EINVAL;
}

static void set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
        EB_PRINTF(3, 4);

static void set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
{
        va_list ap;

        if (!errstr || !errstr_size)
                return;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
}

/* "a string", "a number", ... for "expected X, got Y" messages. */
static const char *json_kind(const json_t *v)
{
        switch (json_typeof(v)) {
        case JSON_OBJECT:
                return "an object";
        case JSON_ARRAY:
                return "an array";
        case JSON_STRING:
                return "a string";
        case JSON_INTEGER:
        case JSON_REAL:
                return "a number";
        case JSON_TRUE:
        case JSON_FALSE:
                return "a boolean";
        case JSON_NULL:
                return "null";
        }
        return "an unknown value";
}

/*
 * Quote @p s for a message: at most EB_CFG_QUOTE_MAX bytes (cut on a UTF-8
 * boundary, "..." appended), control bytes and quotes shown as '?'. Never
 * used on secret keys: those only ever report their JSON type.
 */
static const char *quote(const char *s, char *buf, size_t sz)
{
        size_t n = strlen(s), i, o = 0;
        int cut = 0;

        if (n > EB_CFG_QUOTE_MAX) {
                n = EB_CFG_QUOTE_MAX;
                while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
                        n--;
                cut = 1;
        }
        if (sz < n + 6)
                n = sz > 6 ? sz - 6 : 0;
        buf[o++] = '"';
        for (i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                buf[o++] = (c < 0x20 || c == 0x7f || c == '"') ? '?' : (char)c;
        }
        if (cut) {
                memcpy(buf + o, "...", 3);
                o += 3;
        }
        buf[o++] = '"';
        buf[o] = '\0';
        return buf;
}

/* The value itself for "got ..." (strings quoted, numbers printed, other
 * types by kind). */
static const char *describe(const json_t *v, char *buf, size_t sz)
{
        if (json_is_string(v))
                return quote(json_string_value(v), buf, sz);
        if (json_is_integer(v)) {
                snprintf(buf, sz, "%" JSON_INTEGER_FORMAT,
                         json_integer_value(v));
                return buf;
        }
        if (json_is_real(v)) {
                snprintf(buf, sz, "%g", json_real_value(v));
                return buf;
        }
        if (json_is_boolean(v))
                return json_is_true(v) ? "true" : "false";
        return json_kind(v);
}

static void path_join(char *out, size_t sz, const char *path, const char *key)
{
        if (*path)
                snprintf(out, sz, "%s.%s", path, key);
        else
                snprintf(out, sz, "%s", key);
}

static void fmt_size(int64_t v, char *buf, size_t sz)
{
        if (v >= GIB && v % GIB == 0)
                snprintf(buf, sz, "%" PRId64 "GiB", v / GIB);
        else if (v >= MIB && v % MIB == 0)
                snprintf(buf, sz, "%" PRId64 "MiB", v / MIB);
        else if (v >= KIB && v % KIB == 0)
                snprintf(buf, sz, "%" PRId64 "KiB", v / KIB);
        else
                snprintf(buf, sz, "%" PRId64 "B", v);
}

static int is_name_char(int c)
{
        return isalnum(c) || c == '.' || c == '_' || c == '-';
}

/* ------------------------------------------------------------------ */
/* Interpolation                                                       */
/* ------------------------------------------------------------------ */

/*
 * Append the contents of @p path, one trailing newline ("\n" or "\r\n")
 * removed. Mounted secrets usually end in a newline the writer never meant
 * to be part of the value. Anything over EB_CFG_FILE_MAX after that is an
 * error rather than a silent cut: a truncated key fails much later and much
 * less clearly.
 */
/* A value that passes every check made on a secret (non-empty, hex, long
 * enough) and differs from file to file: 64 hex digits of the path's
 * FNV-1a hash. */
static int append_placeholder(struct eb_buf *b, const char *path)
{
        uint64_t h = 14695981039346656037ULL;
        char hex[65];
        int i;

        for (; *path; path++)
                h = (h ^ (unsigned char)*path) * 1099511628211ULL;
        for (i = 0; i < 64; i++)
                hex[i] = "0123456789abcdef"[(h >> ((i % 16) * 4)) & 0xf];
        hex[64] = '\0';
        return eb_buf_append(b, hex, 64);
}

static int append_file(struct eb_buf *b, const char *path,
                       struct absent_files *absent, char *errstr,
                       size_t errstr_size)
{
        const size_t readmax = EB_CFG_FILE_MAX + 3;
        FILE *fp = NULL;
        char *data = NULL;
        size_t n;
        int rc = -EINVAL;

        fp = fopen(path, "rb");
        if (!fp && errno == ENOENT && absent) {
                if (!absent->cnt++)
                        snprintf(absent->first, sizeof(absent->first), "%s",
                                 path);
                return append_placeholder(b, path);
        }
        if (!fp) {
                set_err(errstr, errstr_size, "cannot read file %s: %s", path,
                        strerror(errno));
                goto out;
        }
        data = eb_xmalloc(readmax);
        n = fread(data, 1, readmax, fp);
        if (ferror(fp)) {
                set_err(errstr, errstr_size, "cannot read file %s: %s", path,
                        strerror(errno ? errno : EIO));
                goto out;
        }
        if (n == readmax)
                goto too_big;
        if (n > 0 && data[n - 1] == '\n') {
                n--;
                if (n > 0 && data[n - 1] == '\r')
                        n--;
        }
        if (n > EB_CFG_FILE_MAX)
                goto too_big;
        if (memchr(data, '\0', n)) {
                set_err(errstr, errstr_size, "file %s contains a NUL byte",
                        path);
                goto out;
        }
        rc = eb_buf_append(b, data, n);
        if (rc == -E2BIG)
                set_err(errstr, errstr_size,
                        "value is longer than %d bytes after interpolation",
                        EB_CFG_VALUE_MAX);
        else if (rc)
                set_err(errstr, errstr_size, "out of memory");
        goto out;
too_big:
        set_err(errstr, errstr_size, "file %s is larger than %d bytes", path,
                EB_CFG_FILE_MAX);
        rc = -EFBIG;
out:
        free(data);
        if (fp)
                fclose(fp);
        return rc;
}

static int valid_var_name(const char *s, size_t n)
{
        size_t i;

        if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
                return 0;
        for (i = 1; i < n; i++) {
                if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
                        return 0;
        }
        return 1;
}

static char *interpolate(const char *in, struct absent_files *absent,
                         char *errstr, size_t errstr_size)
{
        struct eb_buf b;
        const char *p = in;
        char *name = NULL;
        int rc = 0;

        eb_buf_init(&b, EB_CFG_VALUE_MAX);
        while (*p) {
                const char *d = strchr(p, '$'), *ref, *end;
                size_t reflen;

                if (!d) {
                        rc = eb_buf_append(&b, p, strlen(p));
                        break;
                }
                rc = eb_buf_append(&b, p, (size_t)(d - p));
                if (rc)
                        break;
                if (d[1] == '$' && d[2] == '{') {
                        /* "$${" is the escape for a literal "${". */
                        rc = eb_buf_append(&b, "${", 2);
                        p = d + 3;
                } else if (d[1] != '{') {
                        rc = eb_buf_append(&b, "$", 1);
                        p = d + 1;
                } else {
                        ref = d + 2;
                        end = strchr(ref, '}');
                        if (!end) {
                                set_err(errstr, errstr_size,
                                        "unterminated \"${\" at offset %zu "
                                        "(write \"$${\" for a literal "
                                        "\"${\")",
                                        (size_t)(d - in));
                                goto fail;
                        }
                        reflen = (size_t)(end - ref);
                        if (reflen >= 5 && !strncmp(ref, "file:", 5)) {
                                if (reflen == 5) {
                                        set_err(errstr, errstr_size,
                                                "\"${file:}\" needs a path, "
                                                "like \"${file:/run/secrets/"
                                                "token}\"");
                                        goto fail;
                                }
                                name = eb_xstrndup(ref + 5, reflen - 5);
                                rc = append_file(&b, name, absent, errstr,
                                                 errstr_size);
                                if (rc)
                                        goto fail;
                        } else {
                                const char *val;

                                if (!valid_var_name(ref, reflen)) {
                                        set_err(errstr, errstr_size,
                                                "invalid reference "
                                                "\"${%.*s}\": expected "
                                                "${NAME} (letters, digits, "
                                                "'_') or ${file:/path}",
                                                reflen > 64 ? 64 : (int)reflen,
                                                ref);
                                        goto fail;
                                }
                                name = eb_xstrndup(ref, reflen);
                                val = getenv(name);
                                if (!val) {
                                        set_err(errstr, errstr_size,
                                                "environment variable %s is "
                                                "not set",
                                                name);
                                        goto fail;
                                }
                                rc = eb_buf_append(&b, val, strlen(val));
                        }
                        free(name);
                        name = NULL;
                        p = end + 1;
                }
                if (rc)
                        break;
        }
        if (rc == -E2BIG) {
                set_err(errstr, errstr_size,
                        "value is longer than %d bytes after interpolation",
                        EB_CFG_VALUE_MAX);
                goto fail;
        } else if (rc) {
                set_err(errstr, errstr_size, "out of memory");
                goto fail;
        }
        return eb_buf_take(&b, NULL);
fail:
        free(name);
        eb_buf_fini(&b);
        return NULL;
}

char *eb_config_interpolate(const char *in, char *errstr, size_t errstr_size)
{
        return interpolate(in, NULL, errstr, errstr_size);
}

/*
 * Interpolate every string value under @p v in place. @p path holds the
 * key path of @p v (length @p len, capacity EB_CFG_PATH_MAX); children
 * extend it and restore it. Keys are never interpolated.
 */
static int interp_tree(struct cfg_ctx *ctx, json_t *v, char *path, size_t len)
{
        char msg[EB_CFG_MSG_MAX];
        const char *key;
        json_t *child;
        size_t i;
        int rc;

        switch (json_typeof(v)) {
        case JSON_OBJECT:
                json_object_foreach(v, key, child)
                {
                        snprintf(path + len, EB_CFG_PATH_MAX - len,
                                 len ? ".%s" : "%s", key);
                        rc = interp_tree(ctx, child, path, strlen(path));
                        path[len] = '\0';
                        if (rc)
                                return rc;
                }
                return 0;
        case JSON_ARRAY:
                json_array_foreach(v, i, child)
                {
                        snprintf(path + len, EB_CFG_PATH_MAX - len, "[%zu]", i);
                        rc = interp_tree(ctx, child, path, strlen(path));
                        path[len] = '\0';
                        if (rc)
                                return rc;
                }
                return 0;
        case JSON_STRING: {
                const char *s = json_string_value(v);
                char *out;

                if (!strchr(s, '$'))
                        return 0;
                out = interpolate(s, ctx->absent, msg, sizeof(msg));
                if (!out)
                        return cfg_err(ctx, path, "%s", msg);
                rc = json_string_set(v, out);
                free(out);
                if (rc)
                        return cfg_err(ctx, path,
                                       "the interpolated value is not valid "
                                       "UTF-8");
                return 0;
        }
        default:
                return 0;
        }
}

/* ------------------------------------------------------------------ */
/* Declarative key tables                                              */
/* ------------------------------------------------------------------ */

enum cfg_type {
        CFG_STR,      /* char *, replaced; optional check() */
        CFG_INT,      /* int from a JSON integer in [min, max] */
        CFG_COUNT,    /* size_t from a JSON integer in [min, max] */
        CFG_DUR,      /* int64_t ms from a duration string in [min, max] */
        CFG_SIZE,     /* size_t bytes: integer or "512KiB" in [min, max] */
        CFG_BOOL,     /* int 0 / 1 */
        CFG_OBJ,      /* nested object, same target struct, table sub */
        CFG_FREEFORM, /* any object (provider options): src->json only */
        CFG_FN,       /* custom: fn(ctx, value, path, field) */
        CFG_ENUM,     /* enum (int-sized) from one of the names in enums */
};

#define CFG_F_REQUIRED 0x1 /* absent key is an error */
#define CFG_F_SECRET   0x2 /* eb_log_add_secret(); value never echoed */
#define CFG_F_NONEMPTY 0x4 /* "" is an error */

typedef int (*cfg_fn)(struct cfg_ctx *ctx, json_t *val, const char *path,
                      void *base, void *field);
typedef int (*cfg_check)(struct cfg_ctx *ctx, const char *s, const char *path);

/* One accepted spelling of a CFG_ENUM key and the value it stores. */
struct cfg_enum {
        const char *name;
        int value;
};

struct cfg_key {
        const char *name;
        enum cfg_type type;
        size_t off; /* field offset in the target struct */
        int64_t min, max;
        int flags;
        const struct cfg_key *sub;    /* CFG_OBJ */
        cfg_fn fn;                    /* CFG_FN */
        cfg_check check;              /* CFG_STR */
        const struct cfg_enum *enums; /* CFG_ENUM: ends with name NULL */
};

#define K_STR(st, n, f, fl, chk)                                               \
        {                                                                      \
                .name = n, .type = CFG_STR, .off = offsetof(st, f),            \
                .flags = fl, .check = chk                                      \
        }
#define K_NUM(st, t, n, f, lo, hi)                                             \
        {                                                                      \
                .name = n, .type = t, .off = offsetof(st, f), .min = lo,       \
                .max = hi                                                      \
        }
#define K_BOOL(st, n, f)                                                       \
        {                                                                      \
                .name = n, .type = CFG_BOOL, .off = offsetof(st, f)            \
        }
#define K_OBJ(n, tab)                                                          \
        {                                                                      \
                .name = n, .type = CFG_OBJ, .sub = tab                         \
        }
#define K_FN(st, n, f, func)                                                   \
        {                                                                      \
                .name = n, .type = CFG_FN, .off = offsetof(st, f), .fn = func  \
        }
/* The field is an enum or int: every enum here is int-sized (below). */
#define K_ENUM(st, n, f, tab)                                                  \
        {                                                                      \
                .name = n, .type = CFG_ENUM, .off = offsetof(st, f),           \
                .enums = tab                                                   \
        }
#define K_FREEFORM(n)                                                          \
        {                                                                      \
                .name = n, .type = CFG_FREEFORM                                \
        }
#define K_END                                                                  \
        {                                                                      \
                .name = NULL                                                   \
        }

static int parse_enum(struct cfg_ctx *ctx, json_t *val, const char *path,
                      const struct cfg_enum *tab, void *field);
static int parse_object(struct cfg_ctx *ctx, json_t *obj, const char *path,
                        const struct cfg_key *tab, void *base);

/* Edit distance, for "did you mean" on unknown keys (short keys only). */
static size_t edit_distance(const char *a, const char *b)
{
        size_t la = strlen(a), lb = strlen(b), i, j;
        size_t row[65], prev, tmp;

        if (la > 64 || lb > 64)
                return SIZE_MAX;
        for (j = 0; j <= lb; j++)
                row[j] = j;
        for (i = 1; i <= la; i++) {
                prev = row[0];
                row[0] = i;
                for (j = 1; j <= lb; j++) {
                        size_t best = prev + (a[i - 1] != b[j - 1]);

                        if (row[j] + 1 < best)
                                best = row[j] + 1;
                        if (row[j - 1] + 1 < best)
                                best = row[j - 1] + 1;
                        tmp = row[j];
                        row[j] = best;
                        prev = tmp;
                }
        }
        return row[lb];
}

static int unknown_key(struct cfg_ctx *ctx, const struct cfg_key *tab,
                       const char *key, const char *path)
{
        const struct cfg_key *k, *best = NULL;
        size_t bestd = 3, d;

        for (k = tab; k->name; k++) {
                d = edit_distance(key, k->name);
                if (d < bestd && d < strlen(k->name)) {
                        bestd = d;
                        best = k;
                }
        }
        if (best)
                return cfg_err(ctx, path, "unknown key (did you mean \"%s\"?)",
                               best->name);
        return cfg_err(ctx, path, "unknown key");
}

static void *field_at(void *base, size_t off)
{
        return (char *)base + off;
}

static int parse_int_value(struct cfg_ctx *ctx, const struct cfg_key *k,
                           json_t *val, const char *path, int64_t *out)
{
        char got[96];
        json_int_t v;

        if (!json_is_integer(val)) {
                if (json_is_real(val))
                        return cfg_err(ctx, path, "expected an integer, got %s",
                                       describe(val, got, sizeof(got)));
                return cfg_err(ctx, path, "expected an integer, got %s",
                               json_kind(val));
        }
        v = json_integer_value(val);
        if (v < k->min || v > k->max)
                return cfg_err(ctx, path,
                               "expected an integer from %" PRId64
                               " to %" PRId64 ", got %" JSON_INTEGER_FORMAT,
                               k->min, k->max, v);
        *out = v;
        return 0;
}

static int parse_duration_value(struct cfg_ctx *ctx, const struct cfg_key *k,
                                json_t *val, const char *path, int64_t *out)
{
        char got[96], lo[32], hi[32];
        int64_t ms;

        if (!json_is_string(val)) {
                if (json_is_number(val))
                        return cfg_err(ctx, path,
                                       "expected a duration like \"10s\", got "
                                       "the number %s (durations are strings "
                                       "with a unit: ms, s, m, h, d)",
                                       describe(val, got, sizeof(got)));
                return cfg_err(ctx, path,
                               "expected a duration like \"10s\", got %s",
                               json_kind(val));
        }
        if (eb_duration_parse(json_string_value(val), &ms) != 0)
                return cfg_err(ctx, path,
                               "expected a duration like \"10s\", got %s",
                               describe(val, got, sizeof(got)));
        if (ms < k->min || ms > k->max) {
                eb_duration_format(k->min, lo, sizeof(lo));
                eb_duration_format(k->max, hi, sizeof(hi));
                if (k->min == 0)
                        memcpy(lo, "0", 2);
                if (k->max == INT64_MAX)
                        return cfg_err(ctx, path,
                                       "expected a duration of at least %s, "
                                       "got %s",
                                       lo, describe(val, got, sizeof(got)));
                return cfg_err(ctx, path,
                               "expected a duration from %s to %s, got %s", lo,
                               hi, describe(val, got, sizeof(got)));
        }
        *out = ms;
        return 0;
}

/* "1048576", "512KiB", "1 MiB", "1MB", "64kb": decimal units are powers of
 * 1000, binary ones of 1024; letters are case-insensitive. */
static int parse_size_str(const char *s, int64_t *out)
{
        static const struct {
                const char *unit;
                int64_t mult;
        } units[] = {{"", 1},
                     {"b", 1},
                     {"kb", 1000},
                     {"kib", KIB},
                     {"mb", 1000 * 1000},
                     {"mib", MIB},
                     {"gb", 1000 * 1000 * 1000},
                     {"gib", GIB}};
        int64_t n = 0;
        size_t i;
        const char *p = s;

        if (!isdigit((unsigned char)*p))
                return -EINVAL;
        while (isdigit((unsigned char)*p)) {
                if (n > (INT64_MAX - 9) / 10)
                        return -ERANGE;
                n = n * 10 + (*p - '0');
                p++;
        }
        if (*p == ' ')
                p++;
        for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
                if (!strcasecmp(p, units[i].unit)) {
                        if (n > INT64_MAX / units[i].mult)
                                return -ERANGE;
                        *out = n * units[i].mult;
                        return 0;
                }
        }
        return -EINVAL;
}

static int parse_size_value(struct cfg_ctx *ctx, const struct cfg_key *k,
                            json_t *val, const char *path, int64_t *out)
{
        char got[96], lo[32], hi[32];
        int64_t v;

        if (json_is_integer(val)) {
                v = json_integer_value(val);
                if (v < 0)
                        goto bad;
        } else if (json_is_string(val)) {
                int rc = parse_size_str(json_string_value(val), &v);

                if (rc == -ERANGE)
                        v = INT64_MAX;
                else if (rc)
                        goto bad;
        } else {
                goto bad;
        }
        if (v < k->min || v > k->max) {
                fmt_size(k->min, lo, sizeof(lo));
                fmt_size(k->max, hi, sizeof(hi));
                return cfg_err(ctx, path,
                               "expected a size from %s to %s, got %s", lo, hi,
                               describe(val, got, sizeof(got)));
        }
        *out = v;
        return 0;
bad:
        return cfg_err(ctx, path,
                       "expected a size in bytes like 1048576, \"512KiB\" or "
                       "\"1MiB\", got %s",
                       json_is_string(val) || json_is_number(val)
                               ? describe(val, got, sizeof(got))
                               : json_kind(val));
}

static int parse_string_value(struct cfg_ctx *ctx, const struct cfg_key *k,
                              json_t *val, const char *path, char **out)
{
        const char *s;
        int rc;

        if (!json_is_string(val))
                return cfg_err(ctx, path, "expected a string, got %s",
                               json_kind(val));
        s = json_string_value(val);
        if ((k->flags & CFG_F_NONEMPTY) && !*s)
                return cfg_err(ctx, path, "must not be empty");
        if (k->check) {
                rc = k->check(ctx, s, path);
                if (rc)
                        return rc;
        }
        if (k->flags & CFG_F_SECRET)
                eb_log_add_secret(s);
        free(*out);
        *out = eb_xstrdup(s);
        return 0;
}

static int parse_value(struct cfg_ctx *ctx, const struct cfg_key *k,
                       json_t *val, const char *path, void *base)
{
        void *field = field_at(base, k->off);
        int64_t v = 0;
        int rc;

        switch (k->type) {
        case CFG_STR:
                return parse_string_value(ctx, k, val, path, (char **)field);
        case CFG_INT:
                rc = parse_int_value(ctx, k, val, path, &v);
                if (!rc)
                        *(int *)field = (int)v;
                return rc;
        case CFG_COUNT:
                rc = parse_int_value(ctx, k, val, path, &v);
                if (!rc)
                        *(size_t *)field = (size_t)v;
                return rc;
        case CFG_DUR:
                return parse_duration_value(ctx, k, val, path,
                                            (int64_t *)field);
        case CFG_SIZE:
                rc = parse_size_value(ctx, k, val, path, &v);
                if (!rc)
                        *(size_t *)field = (size_t)v;
                return rc;
        case CFG_BOOL:
                if (!json_is_boolean(val))
                        return cfg_err(ctx, path,
                                       "expected true or false, got %s",
                                       json_kind(val));
                *(int *)field = json_is_true(val);
                return 0;
        case CFG_OBJ:
                if (!json_is_object(val))
                        return cfg_err(ctx, path, "expected an object, got %s",
                                       json_kind(val));
                return parse_object(ctx, val, path, k->sub, base);
        case CFG_FREEFORM:
                if (!json_is_object(val))
                        return cfg_err(ctx, path, "expected an object, got %s",
                                       json_kind(val));
                return 0;
        case CFG_FN:
                return k->fn(ctx, val, path, base, field);
        case CFG_ENUM:
                return parse_enum(ctx, val, path, k->enums, field);
        }
        return cfg_err(ctx, path, "internal error: bad key type");
}

static int parse_object(struct cfg_ctx *ctx, json_t *obj, const char *path,
                        const struct cfg_key *tab, void *base)
{
        char sub[EB_CFG_PATH_MAX];
        const struct cfg_key *k;
        const char *key;
        json_t *val;
        int rc;

        json_object_foreach(obj, key, val)
        {
                path_join(sub, sizeof(sub), path, key);
                for (k = tab; k->name; k++) {
                        if (!strcmp(k->name, key))
                                break;
                }
                if (!k->name)
                        return unknown_key(ctx, tab, key, sub);
                rc = parse_value(ctx, k, val, sub, base);
                if (rc)
                        return rc;
        }
        for (k = tab; k->name; k++) {
                if ((k->flags & CFG_F_REQUIRED) &&
                    !json_object_get(obj, k->name)) {
                        path_join(sub, sizeof(sub), path, k->name);
                        return cfg_err(ctx, sub, "required key is missing");
                }
        }
        return 0;
}

/* One of the names in @p tab (exact match), stored in the int-sized
 * enum at @p field. @returns 0 or -EINVAL naming every accepted one. */
static int parse_enum(struct cfg_ctx *ctx, json_t *val, const char *path,
                      const struct cfg_enum *tab, void *field)
{
        char want[256], got[96];
        size_t i, o = 0;
        const char *s;

        if (!json_is_string(val))
                return cfg_err(ctx, path, "expected a string, got %s",
                               json_kind(val));
        s = json_string_value(val);
        for (i = 0; tab[i].name; i++) {
                if (!strcmp(s, tab[i].name)) {
                        *(int *)field = tab[i].value;
                        return 0;
                }
        }
        for (i = 0; tab[i].name && o < sizeof(want); i++) {
                int w = snprintf(want + o, sizeof(want) - o, "%s\"%s\"",
                                 i == 0             ? ""
                                 : !tab[i + 1].name ? " or "
                                                    : ", ",
                                 tab[i].name);
                if (w < 0)
                        break;
                o += (size_t)w;
        }
        return cfg_err(ctx, path, "expected %s, got %s", want,
                       quote(s, got, sizeof(got)));
}

/* @returns the name of the value stored at @p field, NULL if none. */
static const char *enum_name(const struct cfg_enum *tab, const void *field)
{
        int v = *(const int *)field;

        for (; tab->name; tab++)
                if (tab->value == v)
                        return tab->name;
        return NULL;
}

/* ------------------------------------------------------------------ */
/* kafka                                                               */
/* ------------------------------------------------------------------ */

static int parse_brokers(struct cfg_ctx *ctx, json_t *val, const char *path,
                         void *base, void *field)
{
        struct eb_config *cfg = base;
        char got[96];
        const char *s, *p;

        (void)field;
        if (!json_is_string(val))
                return cfg_err(ctx, path, "expected a string, got %s",
                               json_kind(val));
        s = json_string_value(val);
        free(cfg->brokers);
        cfg->brokers = NULL;
        if (!strcmp(s, "embedded")) {
                cfg->embedded = 1;
                return 0;
        }
        /* A comma-separated list of host[:port] (librdkafka's
         * bootstrap.servers): every item non-empty, no blanks inside. */
        p = s;
        for (;;) {
                size_t n = strcspn(p, ","), i, b = 0, e = n;

                while (b < n && isspace((unsigned char)p[b]))
                        b++;
                while (e > b && isspace((unsigned char)p[e - 1]))
                        e--;
                if (b == e)
                        goto bad;
                for (i = b; i < e; i++) {
                        if (isspace((unsigned char)p[i]) ||
                            iscntrl((unsigned char)p[i]))
                                goto bad;
                }
                if (!p[n])
                        break;
                p += n + 1;
        }
        cfg->brokers = eb_xstrdup(s);
        cfg->embedded = 0;
        return 0;
bad:
        return cfg_err(ctx, path,
                       "expected a comma-separated broker list like "
                       "\"kafka-0:9092,kafka-1:9092\" or \"embedded\", got %s",
                       quote(s, got, sizeof(got)));
}

/* 1..@p max characters of [A-Za-z0-9._-]; the error says so, with
 * @p why after the class when not NULL. */
static int check_name_chars(struct cfg_ctx *ctx, const char *s,
                            const char *path, size_t max, const char *why)
{
        char got[96];
        size_t n = strlen(s), i;

        for (i = 0; i < n; i++) {
                if (!is_name_char((unsigned char)s[i]))
                        break;
        }
        if (n == 0 || n > max || i < n)
                return cfg_err(ctx, path,
                               "expected 1 to %zu characters of "
                               "[A-Za-z0-9._-]%s%s%s, got %s",
                               max, why ? " (" : "", why ? why : "",
                               why ? ")" : "", quote(s, got, sizeof(got)));
        return 0;
}

/* Part of a Kafka topic name. */
static int check_topic_part(struct cfg_ctx *ctx, const char *s,
                            const char *path)
{
        return check_name_chars(ctx, s, path, EB_CFG_TOPIC_PART_MAX,
                                "legal in a Kafka topic name");
}

static int check_template(struct cfg_ctx *ctx, const char *s, const char *path)
{
        static const char *const names[] = {"prefix", "provider", "entity",
                                            "action", "source",   "account"};
        const char *p = s;
        size_t i;

        if (strlen(s) > EB_CFG_TEMPLATE_MAX)
                return cfg_err(ctx, path, "longer than %d characters",
                               EB_CFG_TEMPLATE_MAX);
        while (*p) {
                const char *end;
                size_t n;

                if (*p == '}')
                        return cfg_err(ctx, path,
                                       "unbalanced braces: \"}\" without "
                                       "\"{\" at offset %zu",
                                       (size_t)(p - s));
                if (*p != '{') {
                        p++;
                        continue;
                }
                end = strpbrk(p + 1, "{}");
                if (!end || *end == '{')
                        return cfg_err(ctx, path,
                                       "unbalanced braces: \"{\" at offset "
                                       "%zu is not closed",
                                       (size_t)(p - s));
                n = (size_t)(end - p - 1);
                for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                        if (strlen(names[i]) == n &&
                            !strncmp(p + 1, names[i], n))
                                break;
                }
                if (i == sizeof(names) / sizeof(names[0]))
                        return cfg_err(ctx, path,
                                       "unknown placeholder \"{%.*s}\"; "
                                       "expected {prefix}, {provider}, "
                                       "{entity}, {action}, {source} or "
                                       "{account}",
                                       n > 40 ? 40 : (int)n, p + 1);
                p = end + 1;
        }
        return 0;
}

static const struct cfg_enum delivery_names[] = {
        {"exactly-once", EB_DELIVERY_EXACTLY_ONCE},
        {"at-least-once", EB_DELIVERY_AT_LEAST_ONCE},
        {NULL, 0},
};

static const struct cfg_enum envelope_names[] = {
        {"structured", 0},
        {"binary", 1},
        {NULL, 0},
};

static const struct cfg_enum log_level_names[] = {
        {"debug", EB_LOG_DEBUG},
        {"info", EB_LOG_INFO},
        {"warn", EB_LOG_WARN},
        {"error", EB_LOG_ERROR},
        {NULL, 0},
};

static const struct cfg_enum log_format_names[] = {
        {"text", EB_LOG_FMT_TEXT},
        {"json", EB_LOG_FMT_JSON},
        {NULL, 0},
};

/* K_ENUM stores through an int *. */
_Static_assert(sizeof(eb_delivery_t) == sizeof(int) &&
                       sizeof(eb_log_level_t) == sizeof(int) &&
                       sizeof(eb_log_format_t) == sizeof(int),
               "K_ENUM fields must be int-sized");

/* librdkafka properties whose values are credentials. */
static int is_secret_property(const char *key)
{
        return strstr(key, "password") || strstr(key, "secret") ||
               !strcmp(key, "ssl.key.pem") ||
               !strcmp(key, "sasl.oauthbearer.config");
}

/* Shortest "%.*g" that reads back to the same double. */
static void fmt_real(double d, char *buf, size_t sz)
{
        int prec;

        for (prec = 15; prec <= 17; prec++) {
                snprintf(buf, sz, "%.*g", prec, d);
                if (strtod(buf, NULL) == d)
                        return;
        }
}

static int parse_properties(struct cfg_ctx *ctx, json_t *val, const char *path,
                            void *base, void *field)
{
        struct eb_config *cfg = base;
        char sub[EB_CFG_PATH_MAX], num[64];
        struct eb_kv *kv;
        const char *key;
        json_t *v;
        size_t n = 0, i;

        (void)field;
        if (!json_is_object(val))
                return cfg_err(ctx, path, "expected an object, got %s",
                               json_kind(val));
        kv = eb_xcalloc(json_object_size(val) + 1, sizeof(*kv));
        json_object_foreach(val, key, v)
        {
                const char *s;

                path_join(sub, sizeof(sub), path, key);
                if (!*key) {
                        cfg_err(ctx, path, "empty property name");
                        goto fail;
                }
                switch (json_typeof(v)) {
                case JSON_STRING:
                        s = json_string_value(v);
                        break;
                case JSON_INTEGER:
                        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
                                 json_integer_value(v));
                        s = num;
                        break;
                case JSON_REAL:
                        fmt_real(json_real_value(v), num, sizeof(num));
                        s = num;
                        break;
                case JSON_TRUE:
                        s = "true";
                        break;
                case JSON_FALSE:
                        s = "false";
                        break;
                default:
                        cfg_err(ctx, sub,
                                "expected a string, number or boolean, got "
                                "%s",
                                json_kind(v));
                        goto fail;
                }
                if (is_secret_property(key))
                        eb_log_add_secret(s);
                kv[n].key = eb_xstrdup(key);
                kv[n].value = eb_xstrdup(s);
                n++;
        }
        for (i = 0; i < cfg->properties_cnt; i++) {
                free(cfg->properties[i].key);
                free(cfg->properties[i].value);
        }
        free(cfg->properties);
        cfg->properties = kv;
        cfg->properties_cnt = n;
        return 0;
fail:
        for (i = 0; i < n; i++) {
                free(kv[i].key);
                free(kv[i].value);
        }
        free(kv);
        return -EINVAL;
}

static const struct cfg_key batch_keys[] = {
        K_NUM(struct eb_config, CFG_DUR, "linger", batch_linger_ms, 0,
              10 * MS_SEC),
        K_NUM(struct eb_config, CFG_INT, "max_events", batch_max_events, 1,
              1000000),
        K_END,
};

static const struct cfg_key kafka_keys[] = {
        K_FN(struct eb_config, "brokers", brokers, parse_brokers),
        K_NUM(struct eb_config, CFG_INT, "embedded_brokers", embedded_brokers,
              1, 9),
        K_STR(struct eb_config, "topic_prefix", topic_prefix, 0,
              check_topic_part),
        K_STR(struct eb_config, "topic_template", topic_template,
              CFG_F_NONEMPTY, check_template),
        K_STR(struct eb_config, "state_prefix", state_prefix, 0,
              check_topic_part),
        K_STR(struct eb_config, "deadletter_topic", deadletter_topic, 0,
              check_topic_part),
        K_STR(struct eb_config, "transactional_id", transactional_id,
              CFG_F_NONEMPTY, NULL),
        K_ENUM(struct eb_config, "delivery", delivery, delivery_names),
        K_ENUM(struct eb_config, "envelope", envelope_binary, envelope_names),
        K_OBJ("batch", batch_keys),
        K_NUM(struct eb_config, CFG_COUNT, "queue_max_messages",
              queue_max_messages, 1000, 10000000),
        K_FN(struct eb_config, "properties", properties, parse_properties),
        K_END,
};

/* ------------------------------------------------------------------ */
/* http, dedupe, log, shutdown                                         */
/* ------------------------------------------------------------------ */

/*
 * "host:port" or "[v6]:port" into a new host (brackets removed) and port.
 * @returns 0 or -EINVAL.
 */
static int split_host_port(const char *s, char **host, int *port)
{
        const char *h, *colon, *p;
        size_t hlen, i;
        long v = 0;

        if (s[0] == '[') {
                const char *rb = strchr(s, ']');

                if (!rb || rb[1] != ':')
                        return -EINVAL;
                h = s + 1;
                hlen = (size_t)(rb - h);
                colon = rb + 1;
                if (!memchr(h, ':', hlen))
                        return -EINVAL;
        } else {
                colon = strchr(s, ':');
                if (!colon || strchr(colon + 1, ':'))
                        return -EINVAL;
                h = s;
                hlen = (size_t)(colon - s);
        }
        if (hlen == 0)
                return -EINVAL;
        for (i = 0; i < hlen; i++) {
                unsigned char c = (unsigned char)h[i];

                if (isspace(c) || iscntrl(c) || c == '/' || c == '[' ||
                    c == ']')
                        return -EINVAL;
        }
        p = colon + 1;
        if (!*p || strlen(p) > 5)
                return -EINVAL;
        for (; *p; p++) {
                if (!isdigit((unsigned char)*p))
                        return -EINVAL;
                v = v * 10 + (*p - '0');
        }
        if (v > 65535)
                return -ERANGE;
        *host = eb_xstrndup(h, hlen);
        *port = (int)v;
        return 0;
}

static int parse_listen(struct cfg_ctx *ctx, json_t *val, const char *path,
                        void *base, void *field)
{
        struct eb_config *cfg = base;
        char got[96];
        char *host = NULL;
        const char *s;
        int port = 0, rc;

        (void)field;
        if (json_is_null(val) ||
            (json_is_string(val) && !*json_string_value(val))) {
                free(cfg->listen);
                free(cfg->listen_host);
                cfg->listen = NULL;
                cfg->listen_host = NULL;
                cfg->listen_port = 0;
                return 0;
        }
        if (!json_is_string(val))
                return cfg_err(ctx, path, "expected a string or null, got %s",
                               json_kind(val));
        s = json_string_value(val);
        rc = split_host_port(s, &host, &port);
        if (rc == -ERANGE)
                return cfg_err(ctx, path,
                               "expected a port from 0 to 65535, got %s",
                               quote(s, got, sizeof(got)));
        if (rc)
                return cfg_err(ctx, path,
                               "expected \"host:port\" or \"[ipv6]:port\" "
                               "like \"0.0.0.0:8080\" (null or \"\" "
                               "disables the listener), got %s",
                               quote(s, got, sizeof(got)));
        free(cfg->listen);
        free(cfg->listen_host);
        cfg->listen = eb_xstrdup(s);
        cfg->listen_host = host;
        cfg->listen_port = port;
        return 0;
}

static const struct cfg_key http_keys[] = {
        K_FN(struct eb_config, "listen", listen, parse_listen),
        K_NUM(struct eb_config, CFG_SIZE, "max_body", http_max_body, 1, GIB),
        K_NUM(struct eb_config, CFG_SIZE, "max_headers", http_max_headers, 1,
              MIB),
        K_NUM(struct eb_config, CFG_DUR, "timeout", http_timeout_ms, 1,
              MS_HOUR),
        K_NUM(struct eb_config, CFG_DUR, "webhook_deadline",
              webhook_deadline_ms, 1, 10 * MS_MIN),
        K_NUM(struct eb_config, CFG_INT, "max_held", http_max_held, 1, 1000000),
        K_END,
};

static const struct cfg_key dedupe_keys[] = {
        K_NUM(struct eb_config, CFG_DUR, "window", dedupe_window_ms, MS_MIN,
              365 * MS_DAY),
        K_NUM(struct eb_config, CFG_COUNT, "capacity", dedupe_capacity, 1000,
              1000000000),
        K_END,
};

static const struct cfg_key log_keys[] = {
        K_ENUM(struct eb_config, "level", log_level, log_level_names),
        K_ENUM(struct eb_config, "format", log_format, log_format_names),
        K_END,
};

static const struct cfg_key scale_keys[] = {
        K_NUM(struct eb_config, CFG_INT, "shards", scale_shards, 0,
              EB_CONFIG_MAX_SHARDS),
        K_NUM(struct eb_config, CFG_DUR, "rebalance_timeout",
              scale_rebalance_timeout_ms, 100, 10 * MS_MIN),
        K_NUM(struct eb_config, CFG_DUR, "session_timeout",
              scale_session_timeout_ms, MS_SEC, 5 * MS_MIN),
        K_END,
};

static const struct cfg_key shutdown_keys[] = {
        K_NUM(struct eb_config, CFG_DUR, "drain_timeout", drain_timeout_ms,
              MS_SEC, 10 * MS_MIN),
        K_END,
};

/* ------------------------------------------------------------------ */
/* sources                                                             */
/* ------------------------------------------------------------------ */

static int check_source_name(struct cfg_ctx *ctx, const char *s,
                             const char *path)
{
        return check_name_chars(ctx, s, path, EB_CFG_NAME_MAX, NULL);
}

static int check_start(struct cfg_ctx *ctx, const char *s, const char *path)
{
        char got[96];
        int64_t ms;

        if (eb_time_parse_start(s, eb_now_ms(), &ms) != 0)
                return cfg_err(ctx, path,
                               "expected \"now\", a duration back from now "
                               "like \"24h\" or an RFC 3339 time like "
                               "\"2024-05-15T00:00:00Z\", got %s",
                               quote(s, got, sizeof(got)));
        return 0;
}

/* http:// or https:// (any case), a host, no blanks. Trailing slashes are
 * dropped so adapters can append "/api/...". */
static int parse_base_url(struct cfg_ctx *ctx, json_t *val, const char *path,
                          void *base, void *field)
{
        char **out = (char **)field;
        char got[96];
        const char *s, *rest;
        size_t n, i;

        (void)base;
        if (!json_is_string(val))
                return cfg_err(ctx, path, "expected a string, got %s",
                               json_kind(val));
        s = json_string_value(val);
        if (!strncasecmp(s, "https://", 8))
                rest = s + 8;
        else if (!strncasecmp(s, "http://", 7))
                rest = s + 7;
        else
                goto bad;
        n = strlen(s);
        for (i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];

                if (isspace(c) || iscntrl(c))
                        goto bad;
        }
        if (!*rest || *rest == '/' || *rest == '?' || *rest == '#')
                goto bad;
        while (n > (size_t)(rest - s) && s[n - 1] == '/')
                n--;
        free(*out);
        *out = eb_xstrndup(s, n);
        return 0;
bad:
        return cfg_err(ctx, path,
                       "expected a URL starting with http:// or https:// "
                       "followed by a host, got %s",
                       quote(s, got, sizeof(got)));
}

static int parse_rps(struct cfg_ctx *ctx, json_t *val, const char *path,
                     void *base, void *field)
{
        char got[96];
        double d;

        (void)base;
        if (!json_is_number(val))
                return cfg_err(ctx, path, "expected a number, got %s",
                               json_kind(val));
        d = json_number_value(val);
        if (!(d > 0.0 && d <= 1000.0))
                return cfg_err(ctx, path,
                               "expected a number greater than 0 and at most "
                               "1000, got %s",
                               describe(val, got, sizeof(got)));
        *(double *)field = d;
        return 0;
}

static const struct cfg_key cred_keys[] = {
        K_STR(struct eb_source_cfg, "token", token,
              CFG_F_SECRET | CFG_F_NONEMPTY, NULL),
        K_STR(struct eb_source_cfg, "api_key", api_key,
              CFG_F_SECRET | CFG_F_NONEMPTY, NULL),
        K_STR(struct eb_source_cfg, "client_id", client_id, CFG_F_NONEMPTY,
              NULL),
        K_STR(struct eb_source_cfg, "client_secret", client_secret,
              CFG_F_SECRET | CFG_F_NONEMPTY, NULL),
        K_STR(struct eb_source_cfg, "redirect_uri", redirect_uri,
              CFG_F_NONEMPTY, NULL),
        K_STR(struct eb_source_cfg, "refresh_token", refresh_token,
              CFG_F_SECRET | CFG_F_NONEMPTY, NULL),
        K_STR(struct eb_source_cfg, "token_key", token_key,
              CFG_F_SECRET | CFG_F_NONEMPTY, NULL),
        K_END,
};

static const struct cfg_key poll_keys[] = {
        K_NUM(struct eb_source_cfg, CFG_DUR, "interval", poll_interval_ms, 100,
              MS_DAY),
        K_STR(struct eb_source_cfg, "start", poll_start, CFG_F_NONEMPTY,
              check_start),
        K_NUM(struct eb_source_cfg, CFG_DUR, "overlap", overlap_ms, 0,
              7 * MS_DAY),
        K_NUM(struct eb_source_cfg, CFG_DUR, "lag", lag_ms, 0, MS_DAY),
        K_NUM(struct eb_source_cfg, CFG_INT, "page_size", page_size, 0, 1000),
        K_NUM(struct eb_source_cfg, CFG_INT, "max_buffered_events",
              max_buffered_events, 100, 10000000),
        K_END,
};

static const struct cfg_key rate_keys[] = {
        K_FN(struct eb_source_cfg, "rps", rate_rps, parse_rps),
        K_NUM(struct eb_source_cfg, CFG_INT, "burst", rate_burst, 1, 1000),
        K_BOOL(struct eb_source_cfg, "above_documented", rate_above_documented),
        K_END,
};

static const struct cfg_key src_http_keys[] = {
        K_NUM(struct eb_source_cfg, CFG_DUR, "timeout", timeout_ms, 1,
              10 * MS_MIN),
        K_NUM(struct eb_source_cfg, CFG_DUR, "connect_timeout",
              connect_timeout_ms, 1, 10 * MS_MIN),
        K_NUM(struct eb_source_cfg, CFG_SIZE, "max_body", max_body, 1, GIB),
        K_END,
};

static const struct cfg_key webhook_keys[] = {
        K_STR(struct eb_source_cfg, "secret", webhook_secret,
              CFG_F_SECRET | CFG_F_NONEMPTY, NULL),
        K_STR(struct eb_source_cfg, "token", webhook_token,
              CFG_F_SECRET | CFG_F_NONEMPTY, NULL),
        K_STR(struct eb_source_cfg, "scheme", webhook_scheme, CFG_F_NONEMPTY,
              NULL),
        K_NUM(struct eb_source_cfg, CFG_DUR, "tolerance", webhook_tolerance_ms,
              MS_SEC, MS_DAY),
        K_END,
};

static int parse_webhook(struct cfg_ctx *ctx, json_t *val, const char *path,
                         void *base, void *field)
{
        struct eb_source_cfg *src = base;

        (void)field;
        if (!json_is_object(val))
                return cfg_err(ctx, path, "expected an object, got %s",
                               json_kind(val));
        src->webhook_enabled = 1;
        return parse_object(ctx, val, path, webhook_keys, src);
}

static const struct cfg_key source_keys[] = {
        K_STR(struct eb_source_cfg, "name", name,
              CFG_F_REQUIRED | CFG_F_NONEMPTY, check_source_name),
        K_STR(struct eb_source_cfg, "provider", provider,
              CFG_F_REQUIRED | CFG_F_NONEMPTY, NULL),
        K_FN(struct eb_source_cfg, "base_url", base_url, parse_base_url),
        K_BOOL(struct eb_source_cfg, "enabled", enabled),
        K_OBJ("credentials", cred_keys),
        K_OBJ("poll", poll_keys),
        K_OBJ("rate_limit", rate_keys),
        K_OBJ("http", src_http_keys),
        K_FN(struct eb_source_cfg, "webhook", webhook_enabled, parse_webhook),
        K_FREEFORM("options"),
        K_END,
};

static void source_defaults(struct eb_source_cfg *src)
{
        memset(src, 0, sizeof(*src));
        src->enabled = 1;
        src->poll_interval_ms = 10 * MS_SEC;
        src->poll_start = eb_xstrdup("24h");
        src->overlap_ms = -1;
        src->lag_ms = -1;
        src->page_size = 0;
        src->rate_rps = 0;
        src->rate_burst = 0;
        src->timeout_ms = 20 * MS_SEC;
        src->connect_timeout_ms = 5 * MS_SEC;
        src->max_body = (size_t)(16 * MIB);
        src->webhook_tolerance_ms = 5 * MS_MIN;
        src->max_buffered_events = 2000;
}

static void source_fini(struct eb_source_cfg *src)
{
        free(src->name);
        free(src->provider);
        free(src->base_url);
        free(src->token);
        free(src->api_key);
        free(src->client_id);
        free(src->client_secret);
        free(src->redirect_uri);
        free(src->refresh_token);
        free(src->token_key);
        free(src->poll_start);
        free(src->webhook_secret);
        free(src->webhook_token);
        free(src->webhook_scheme);
        json_decref(src->json);
}

static int parse_sources(struct cfg_ctx *ctx, json_t *val, const char *path,
                         void *base, void *field)
{
        struct eb_config *cfg = base;
        char sub[EB_CFG_PATH_MAX], got[96];
        size_t n, i, j;
        json_t *elem;
        int rc;

        (void)field;
        if (!json_is_array(val))
                return cfg_err(ctx, path, "expected an array, got %s",
                               json_kind(val));
        n = json_array_size(val);
        /* Every entry gets its defaults before any is parsed, so that
         * eb_config_free() can release a half-parsed array uniformly. */
        cfg->sources = n ? eb_xcalloc(n, sizeof(*cfg->sources)) : NULL;
        for (i = 0; i < n; i++)
                source_defaults(&cfg->sources[i]);
        cfg->sources_cnt = n;

        json_array_foreach(val, i, elem)
        {
                struct eb_source_cfg *src = &cfg->sources[i];

                snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
                if (!json_is_object(elem))
                        return cfg_err(ctx, sub, "expected an object, got %s",
                                       json_kind(elem));
                src->json = json_incref(elem);
                rc = parse_object(ctx, elem, sub, source_keys, src);
                if (rc)
                        return rc;
                for (j = 0; j < i; j++) {
                        if (!strcmp(cfg->sources[j].name, src->name)) {
                                snprintf(sub, sizeof(sub), "%s[%zu].name", path,
                                         i);
                                return cfg_err(
                                        ctx, sub,
                                        "duplicate source name %s "
                                        "(also %s[%zu])",
                                        quote(src->name, got, sizeof(got)),
                                        path, j);
                        }
                }
        }
        return 0;
}

static const struct cfg_key top_keys[] = {
        K_OBJ("kafka", kafka_keys),
        K_OBJ("http", http_keys),
        K_OBJ("dedupe", dedupe_keys),
        K_FN(struct eb_config, "sources", sources, parse_sources),
        K_OBJ("log", log_keys),
        K_OBJ("shutdown", shutdown_keys),
        K_OBJ("scale", scale_keys),
        K_END,
};

/* ------------------------------------------------------------------ */
/* Every key and its default (evbridge --print-defaults)               */
/* ------------------------------------------------------------------ */

/* The default of a key parsed by a function: what the default config
 * holds, in the file's words; "-" where it is computed (brokers: the
 * embedded cluster; transactional_id: from state_prefix; rps: the
 * provider's). */
static void fn_default(const struct cfg_key *k, const void *base, int is_src,
                       char *buf, size_t size)
{
        const struct eb_config *cfg = base;

        snprintf(buf, size, "-");
        if (is_src)
                return;
        if (!strcmp(k->name, "listen"))
                snprintf(buf, size, "\"%s\"", cfg->listen);
        else if (!strcmp(k->name, "properties"))
                snprintf(buf, size, "{}");
}

static void describe_tab(const struct cfg_key *tab, const void *base,
                         int is_src, const char *prefix,
                         void (*fn)(const char *key, const char *type,
                                    const char *dflt, void *opaque),
                         void *opaque);

static void describe_key(const struct cfg_key *k, const void *base, int is_src,
                         const char *key,
                         void (*fn)(const char *key, const char *type,
                                    const char *dflt, void *opaque),
                         void *opaque)
{
        const char *field = (const char *)base + k->off;
        const char *type = "function";
        char dflt[256];

        switch (k->type) {
        case CFG_STR: {
                const char *v = *(char *const *)(const void *)field;

                type = "string";
                if (v)
                        snprintf(dflt, sizeof(dflt), "\"%s\"", v);
                else
                        snprintf(dflt, sizeof(dflt), "-");
                break;
        }
        case CFG_INT:
                type = "integer";
                snprintf(dflt, sizeof(dflt), "%d",
                         *(const int *)(const void *)field);
                break;
        case CFG_COUNT:
                type = "integer";
                snprintf(dflt, sizeof(dflt), "%zu",
                         *(const size_t *)(const void *)field);
                break;
        case CFG_DUR:
                type = "duration";
                snprintf(dflt, sizeof(dflt), "%" PRId64 "ms",
                         *(const int64_t *)(const void *)field);
                break;
        case CFG_SIZE:
                type = "size";
                snprintf(dflt, sizeof(dflt), "%zu",
                         *(const size_t *)(const void *)field);
                break;
        case CFG_BOOL:
                type = "boolean";
                snprintf(dflt, sizeof(dflt), "%s",
                         *(const int *)(const void *)field ? "true" : "false");
                break;
        case CFG_OBJ:
                describe_tab(k->sub, base, is_src, key, fn, opaque);
                return;
        case CFG_FREEFORM:
                type = "object";
                snprintf(dflt, sizeof(dflt), "{}");
                break;
        case CFG_ENUM: {
                const char *name = enum_name(k->enums, field);

                type = "string";
                if (name)
                        snprintf(dflt, sizeof(dflt), "\"%s\"", name);
                else
                        snprintf(dflt, sizeof(dflt), "-");
                break;
        }
        case CFG_FN:
                type = !strcmp(k->name, "properties") ? "object"
                       : !strcmp(k->name, "rps")      ? "number"
                                                      : "string";
                fn_default(k, base, is_src, dflt, sizeof(dflt));
                break;
        }
        if (k->type == CFG_STR && (k->flags & CFG_F_REQUIRED))
                snprintf(dflt, sizeof(dflt), "required");
        /* A default outside the key's own range is a sentinel: the real
         * one comes from elsewhere (the provider's overlap, lag, burst). */
        if ((k->type == CFG_INT &&
             *(const int *)(const void *)field < k->min) ||
            (k->type == CFG_DUR &&
             *(const int64_t *)(const void *)field < k->min))
                snprintf(dflt, sizeof(dflt), "-");
        /* Computed from kafka.state_prefix when the file has none. */
        if (!strcmp(key, "kafka.transactional_id"))
                snprintf(dflt, sizeof(dflt), "\"<state_prefix>-main\"");
        fn(key, type, dflt, opaque);
}

static void describe_tab(const struct cfg_key *tab, const void *base,
                         int is_src, const char *prefix,
                         void (*fn)(const char *key, const char *type,
                                    const char *dflt, void *opaque),
                         void *opaque)
{
        char key[EB_CFG_PATH_MAX];

        for (; tab->name; tab++) {
                path_join(key, sizeof(key), prefix, tab->name);
                if (!is_src && !strcmp(key, "sources")) {
                        struct eb_source_cfg src;

                        memset(&src, 0, sizeof(src));
                        source_defaults(&src);
                        fn("sources", "array", "[]", opaque);
                        describe_tab(source_keys, &src, 1, "sources[]", fn,
                                     opaque);
                        source_fini(&src);
                        continue;
                }
                if (is_src && !strcmp(tab->name, "webhook")) {
                        fn(key, "object", "absent", opaque);
                        describe_tab(webhook_keys, base, 1, key, fn, opaque);
                        continue;
                }
                describe_key(tab, base, is_src, key, fn, opaque);
        }
}

void eb_config_describe(void (*fn)(const char *key, const char *type,
                                   const char *dflt, void *opaque),
                        void *opaque)
{
        struct eb_config *cfg = eb_config_new_default();

        describe_tab(top_keys, cfg, 0, "", fn, opaque);
        eb_config_free(cfg);
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */
/* ------------------------------------------------------------------ */

struct eb_config *eb_config_new_default(void)
{
        struct eb_config *cfg = eb_xcalloc(1, sizeof(*cfg));

        cfg->path = eb_xstrdup("<default>");
        cfg->brokers = NULL;
        cfg->embedded = 1;
        cfg->embedded_brokers = 1;
        cfg->topic_prefix = eb_xstrdup("crm");
        cfg->topic_template =
                eb_xstrdup("{prefix}.{provider}.{entity}.{action}");
        cfg->state_prefix = eb_xstrdup("evbridge");
        cfg->transactional_id = eb_xstrdup("evbridge-main");
        cfg->delivery = EB_DELIVERY_EXACTLY_ONCE;
        cfg->envelope_binary = 0;
        cfg->batch_linger_ms = 5;
        cfg->batch_max_events = 5000;
        cfg->queue_max_messages = 100000;
        cfg->listen = eb_xstrdup("0.0.0.0:8080");
        cfg->listen_host = eb_xstrdup("0.0.0.0");
        cfg->listen_port = 8080;
        cfg->http_max_body = (size_t)MIB;
        cfg->http_max_headers = (size_t)(16 * KIB);
        cfg->http_timeout_ms = 10 * MS_SEC;
        cfg->webhook_deadline_ms = 1500;
        cfg->http_max_held = 10000;
        cfg->dedupe_window_ms = 72 * MS_HOUR;
        cfg->dedupe_capacity = 1000000;
        cfg->log_level = EB_LOG_INFO;
        cfg->log_format = EB_LOG_FMT_TEXT;
        cfg->drain_timeout_ms = 20 * MS_SEC;
        cfg->scale_rebalance_timeout_ms = 10 * MS_SEC;
        cfg->scale_session_timeout_ms = 10 * MS_SEC;
        return cfg;
}

void eb_config_free(struct eb_config *cfg)
{
        size_t i;

        if (!cfg)
                return;
        free(cfg->path);
        free(cfg->brokers);
        free(cfg->topic_prefix);
        free(cfg->topic_template);
        free(cfg->state_prefix);
        free(cfg->deadletter_topic);
        free(cfg->transactional_id);
        for (i = 0; i < cfg->properties_cnt; i++) {
                free(cfg->properties[i].key);
                free(cfg->properties[i].value);
        }
        free(cfg->properties);
        free(cfg->listen);
        free(cfg->listen_host);
        for (i = 0; i < cfg->sources_cnt; i++)
                source_fini(&cfg->sources[i]);
        free(cfg->sources);
        free(cfg);
}

const struct eb_source_cfg *eb_config_source(const struct eb_config *cfg,
                                             const char *name)
{
        size_t i;

        for (i = 0; i < cfg->sources_cnt; i++) {
                if (cfg->sources[i].name && !strcmp(cfg->sources[i].name, name))
                        return &cfg->sources[i];
        }
        return NULL;
}

size_t eb_config_enabled_sources(const struct eb_config *cfg)
{
        size_t i, n = 0;

        for (i = 0; i < cfg->sources_cnt; i++)
                n += cfg->sources[i].enabled ? 1 : 0;
        return n;
}

static const struct eb_source_cfg *enabled_source(const struct eb_config *cfg,
                                                  const char *name)
{
        const struct eb_source_cfg *s = eb_config_source(cfg, name);

        return s && s->enabled ? s : NULL;
}

void eb_config_diff_sources(const struct eb_config *old,
                            const struct eb_config *ncfg,
                            void (*fn)(const struct eb_source_cfg *o,
                                       const struct eb_source_cfg *n,
                                       void *opaque),
                            void *opaque)
{
        size_t i;

        for (i = 0; i < ncfg->sources_cnt; i++) {
                const struct eb_source_cfg *n = &ncfg->sources[i];
                const struct eb_source_cfg *o;

                if (!n->enabled)
                        continue;
                o = enabled_source(old, n->name);
                if (!o || !json_equal(o->json, n->json))
                        fn(o, n, opaque);
        }
        for (i = 0; i < old->sources_cnt; i++) {
                const struct eb_source_cfg *o = &old->sources[i];

                if (o->enabled && !enabled_source(ncfg, o->name))
                        fn(o, NULL, opaque);
        }
}

/* Interpolate and validate a parsed @p root (borrowed; strings are
 * rewritten in place). Errors carry no file prefix. */
static struct eb_config *config_from_json(json_t *root, const char *origin,
                                          struct absent_files *absent,
                                          char *errstr, size_t errstr_size)
{
        struct cfg_ctx ctx = {errstr, errstr_size, absent};
        char path[EB_CFG_PATH_MAX] = "";
        struct eb_config *cfg = NULL;

        if (!json_is_object(root)) {
                set_err(errstr, errstr_size,
                        "expected an object at the top level, got %s",
                        json_kind(root));
                return NULL;
        }
        cfg = eb_config_new_default();
        free(cfg->path);
        cfg->path = eb_xstrdup(origin);
        /* Unset, so that the default can follow kafka.state_prefix. */
        free(cfg->transactional_id);
        cfg->transactional_id = NULL;

        if (interp_tree(&ctx, root, path, 0))
                goto fail;
        if (parse_object(&ctx, root, "", top_keys, cfg))
                goto fail;
        if (!cfg->transactional_id)
                cfg->transactional_id =
                        eb_xasprintf("%s-main", cfg->state_prefix);
        /* Shards fence each other through Kafka transactions and share
         * state through a real cluster: neither exists otherwise. */
        if (cfg->scale_shards > 0 &&
            cfg->delivery != EB_DELIVERY_EXACTLY_ONCE) {
                set_err(errstr, errstr_size,
                        "scale.shards: sharding needs kafka.delivery "
                        "\"exactly-once\" (each shard is fenced through "
                        "its own transactional.id)");
                goto fail;
        }
        if (cfg->scale_shards > 0 && cfg->embedded) {
                set_err(errstr, errstr_size,
                        "scale.shards: sharding needs kafka.brokers (replicas "
                        "must share one cluster; the embedded one is "
                        "private to a process)");
                goto fail;
        }
        return cfg;
fail:
        eb_config_free(cfg);
        return NULL;
}

static struct eb_config *load_file(const char *path,
                                   struct absent_files *absent, char *errstr,
                                   size_t errstr_size)
{
        char msg[EB_CFG_MSG_MAX + EB_CFG_PATH_MAX];
        struct eb_config *cfg = NULL;
        json_error_t jerr;
        json_t *root;

        root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
        if (!root) {
                if (json_error_code(&jerr) == json_error_cannot_open_file) {
                        FILE *fp = fopen(path, "rb");
                        int err = fp ? EIO : errno;

                        if (fp)
                                fclose(fp);
                        set_err(errstr, errstr_size,
                                "%s: cannot open the config file: %s", path,
                                strerror(err));
                } else {
                        set_err(errstr, errstr_size, "%s:%d:%d: %s", path,
                                jerr.line, jerr.column, jerr.text);
                }
                return NULL;
        }
        cfg = config_from_json(root, path, absent, msg, sizeof(msg));
        if (!cfg)
                set_err(errstr, errstr_size, "%s: %s", path, msg);
        json_decref(root);
        return cfg;
}

struct eb_config *eb_config_load(const char *path, char *errstr,
                                 size_t errstr_size)
{
        return load_file(path, NULL, errstr, errstr_size);
}

struct eb_config *eb_config_load_shape(const char *path, size_t *absent_cnt,
                                       char *first, size_t first_size,
                                       char *errstr, size_t errstr_size)
{
        struct absent_files absent;
        struct eb_config *cfg;

        memset(&absent, 0, sizeof(absent));
        cfg = load_file(path, &absent, errstr, errstr_size);
        *absent_cnt = absent.cnt;
        if (first_size)
                snprintf(first, first_size, "%s", absent.first);
        return cfg;
}

struct eb_config *eb_config_load_string(const char *json, char *errstr,
                                        size_t errstr_size)
{
        struct eb_config *cfg;
        json_error_t jerr;
        json_t *root;

        root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
        if (!root) {
                set_err(errstr, errstr_size, "<string>:%d:%d: %s", jerr.line,
                        jerr.column, jerr.text);
                return NULL;
        }
        cfg = config_from_json(root, "<string>", NULL, errstr, errstr_size);
        json_decref(root);
        return cfg;
}
