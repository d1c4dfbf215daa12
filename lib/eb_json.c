#include "eb_json.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes that need an escape: control characters, '"' and '\\'. */
static const unsigned char needs_escape[256] = {
        [0x00] = 1, [0x01] = 1, [0x02] = 1, [0x03] = 1, [0x04] = 1, [0x05] = 1,
        [0x06] = 1, [0x07] = 1, [0x08] = 1, [0x09] = 1, [0x0a] = 1, [0x0b] = 1,
        [0x0c] = 1, [0x0d] = 1, [0x0e] = 1, [0x0f] = 1, [0x10] = 1, [0x11] = 1,
        [0x12] = 1, [0x13] = 1, [0x14] = 1, [0x15] = 1, [0x16] = 1, [0x17] = 1,
        [0x18] = 1, [0x19] = 1, [0x1a] = 1, [0x1b] = 1, [0x1c] = 1, [0x1d] = 1,
        [0x1e] = 1, [0x1f] = 1, ['"'] = 1,  ['\\'] = 1,
};

/*
 * A parsed text and its canonical containers: the objects and arrays
 * whose bytes in the text are exactly what put() writes for them
 * (compact, keys in order, no duplicate, strings escaped as
 * eb_json_put_chars() escapes them, numbers as put() formats them).
 * Keyed by the json_t's address; the tree is held (root) so that no
 * mapped address is freed and reused while the table lives.
 */
struct span {
        const json_t *v; /* NULL: free slot */
        uint32_t off, len;
};

struct eb_json_src {
        int refs;
        json_t *root;
        char *text;
        struct span *tab; /* open addressing, a power of two */
        size_t cap, cnt;
        size_t bytes; /* text and table, counted in src_live */
};

/*
 * Bytes of text and tables held by every live src of the process. A
 * walk published oldest first holds all its pages until they are
 * rendered (a backfill: many); past this budget pages are parsed
 * without one and their events written from the tree (same bytes), so
 * the memory this costs stays bounded whatever is buffered.
 */
static _Atomic size_t src_live;
static _Atomic size_t src_budget = EB_JSON_SRC_BUDGET;

size_t eb_json_src_set_budget(size_t bytes)
{
        return atomic_exchange(&src_budget, bytes);
}

size_t eb_json_src_live(void)
{
        return atomic_load(&src_live);
}

static size_t span_slot(const json_t *v, size_t cap)
{
        uint64_t h = (uint64_t)(uintptr_t)v * UINT64_C(0x9E3779B97F4A7C15);

        return (size_t)(h >> 32) & (cap - 1);
}

static const struct span *span_find(const struct eb_json_src *src,
                                    const json_t *v)
{
        size_t i;

        if (!src->cnt)
                return NULL;
        for (i = span_slot(v, src->cap);; i = (i + 1) & (src->cap - 1)) {
                if (src->tab[i].v == v)
                        return &src->tab[i];
                if (!src->tab[i].v)
                        return NULL;
        }
}

/* Smaller containers are written from the tree: copying saves little
 * there, and a table entry costs 16 bytes. */
#define EB_JSON_SPAN_MIN 24

/* Room for the containers a text of @p len bytes likely holds (one of
 * 24 bytes or more per 128 bytes of text, at most half full), made
 * before parsing: a table grown during the parse is a large allocation
 * between the tree's small ones, and glibc then consolidates its free
 * small blocks each time. Not more: the table lives as long as the
 * page's events, and a walk that is published oldest first holds all
 * of its pages. */
static int span_init(struct eb_json_src *src, size_t len)
{
        size_t cap = 64;

        while (cap < len / 64 && cap < ((size_t)1 << 24))
                cap *= 2;
        src->tab = calloc(cap, sizeof(*src->tab));
        if (!src->tab)
                return -1;
        src->cap = cap;
        return 0;
}

static int span_add(struct eb_json_src *src, const json_t *v, size_t off,
                    size_t len)
{
        size_t i;

        if (off > UINT32_MAX || len > UINT32_MAX)
                return 0; /* not recorded: written the long way */
        if ((src->cnt + 1) * 2 > src->cap) {
                size_t ncap = src->cap ? src->cap * 2 : 64, j;
                struct span *nt = calloc(ncap, sizeof(*nt));

                if (!nt)
                        return -1;
                for (j = 0; j < src->cap; j++) {
                        if (!src->tab[j].v)
                                continue;
                        for (i = span_slot(src->tab[j].v, ncap); nt[i].v;
                             i = (i + 1) & (ncap - 1))
                                ;
                        nt[i] = src->tab[j];
                }
                free(src->tab);
                src->tab = nt;
                src->cap = ncap;
        }
        for (i = span_slot(v, src->cap); src->tab[i].v;
             i = (i + 1) & (src->cap - 1))
                ;
        src->tab[i].v = v;
        src->tab[i].off = (uint32_t)off;
        src->tab[i].len = (uint32_t)len;
        src->cnt++;
        return 0;
}

struct eb_json_src *eb_json_src_ref(struct eb_json_src *src)
{
        if (src)
                src->refs++;
        return src;
}

void eb_json_src_unref(struct eb_json_src *src)
{
        if (!src || --src->refs > 0)
                return;
        atomic_fetch_sub(&src_live, src->bytes);
        json_decref(src->root);
        free(src->text);
        free(src->tab);
        free(src);
}

size_t eb_json_src_spans(const struct eb_json_src *src)
{
        return src ? src->cnt : 0;
}

int eb_json_put_chars(struct eb_buf *b, const char *s, size_t len)
{
        static const char hex[] = "0123456789ABCDEF";
        size_t i = 0, run;
        int rc;

        while (i < len) {
                char esc[6];
                size_t n = 2;
                unsigned char c;

                for (run = i; run < len && !needs_escape[(unsigned char)s[run]];
                     run++)
                        ;
                if (run > i && (rc = eb_buf_append(b, s + i, run - i)))
                        return rc;
                if (run == len)
                        break;
                c = (unsigned char)s[run];
                esc[0] = '\\';
                switch (c) {
                case '"':
                case '\\':
                        esc[1] = (char)c;
                        break;
                case '\b':
                        esc[1] = 'b';
                        break;
                case '\f':
                        esc[1] = 'f';
                        break;
                case '\n':
                        esc[1] = 'n';
                        break;
                case '\r':
                        esc[1] = 'r';
                        break;
                case '\t':
                        esc[1] = 't';
                        break;
                default:
                        esc[1] = 'u';
                        esc[2] = '0';
                        esc[3] = '0';
                        esc[4] = hex[c >> 4];
                        esc[5] = hex[c & 15];
                        n = 6;
                }
                if ((rc = eb_buf_append(b, esc, n)))
                        return rc;
                i = run + 1;
        }
        return 0;
}

int eb_json_put_str(struct eb_buf *b, const char *s, size_t len)
{
        int rc;

        if ((rc = eb_buf_append(b, "\"", 1)) ||
            (rc = eb_json_put_chars(b, s, len)))
                return rc;
        return eb_buf_append(b, "\"", 1);
}

/* Decimal digits of @p v into the end of @p end's buffer. */
static char *fmt_int(char *end, json_int_t v)
{
        unsigned long long u =
                v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

        do {
                *--end = (char)('0' + u % 10);
                u /= 10;
        } while (u);
        if (v < 0)
                *--end = '-';
        return end;
}

/* jansson's real format: %.17g, then ".0" if it reads as an integer, and
 * the exponent without '+' or leading zeros ("1e+20" -> "1e20"). */
static int fmt_real(char buf[64], double d)
{
        char *e, *digits, *p;
        int n = snprintf(buf, 64, "%.17g", d);

        if (n < 0 || (size_t)n >= 64 - 3)
                return -EINVAL;
        if (!strchr(buf, '.') && !strchr(buf, 'e')) {
                buf[n++] = '.';
                buf[n++] = '0';
                buf[n] = '\0';
        }
        e = strchr(buf, 'e');
        if (e) {
                digits = e + 1;
                if (*digits == '-')
                        digits++;
                p = digits;
                if (*p == '+')
                        p++;
                while (*p == '0' && p[1])
                        p++;
                memmove(digits, p, strlen(p) + 1);
        }
        return 0;
}

static int put_real(struct eb_buf *b, double d)
{
        char buf[64];
        int rc = fmt_real(buf, d);

        return rc ? rc : eb_buf_append(b, buf, strlen(buf));
}

static const struct span *span_find(const struct eb_json_src *src,
                                    const json_t *v);

static int put(struct eb_buf *b, const json_t *v, int depth,
               const struct eb_json_src *src)
{
        char num[32];
        size_t i;
        int rc;

        if (!v || depth > EB_JSON_MAX_DEPTH)
                return -EINVAL;
        if (src && (json_is_object(v) || json_is_array(v))) {
                const struct span *sp = span_find(src, v);

                /* text the reader found already written as put() would
                 * write it: copied as it is */
                if (sp)
                        return eb_buf_append(b, src->text + sp->off, sp->len);
        }
        switch (json_typeof(v)) {
        case JSON_OBJECT: {
                void *it = json_object_iter((json_t *)v);
                int first = 1;

                if ((rc = eb_buf_append(b, "{", 1)))
                        return rc;
                for (; it; it = json_object_iter_next((json_t *)v, it)) {
                        if (!first && (rc = eb_buf_append(b, ",", 1)))
                                return rc;
                        first = 0;
                        if ((rc = eb_json_put_str(
                                     b, json_object_iter_key(it),
                                     json_object_iter_key_len(it))) ||
                            (rc = eb_buf_append(b, ":", 1)) ||
                            (rc = put(b, json_object_iter_value(it), depth + 1,
                                      src)))
                                return rc;
                }
                return eb_buf_append(b, "}", 1);
        }
        case JSON_ARRAY:
                if ((rc = eb_buf_append(b, "[", 1)))
                        return rc;
                for (i = 0; i < json_array_size(v); i++) {
                        if (i && (rc = eb_buf_append(b, ",", 1)))
                                return rc;
                        if ((rc = put(b, json_array_get(v, i), depth + 1, src)))
                                return rc;
                }
                return eb_buf_append(b, "]", 1);
        case JSON_STRING:
                return eb_json_put_str(b, json_string_value(v),
                                       json_string_length(v));
        case JSON_INTEGER: {
                char *p = fmt_int(num + sizeof(num), json_integer_value(v));
                return eb_buf_append(b, p, (size_t)(num + sizeof(num) - p));
        }
        case JSON_REAL:
                return put_real(b, json_real_value(v));
        case JSON_TRUE:
                return eb_buf_append(b, "true", 4);
        case JSON_FALSE:
                return eb_buf_append(b, "false", 5);
        case JSON_NULL:
                return eb_buf_append(b, "null", 4);
        }
        return -EINVAL;
}

int eb_json_put(struct eb_buf *b, const json_t *v)
{
        return put(b, v, 0, NULL);
}

int eb_json_put_src(struct eb_buf *b, const json_t *v,
                    const struct eb_json_src *src)
{
        return put(b, v, 0, src);
}

char *eb_json_dumps(const json_t *v)
{
        struct eb_buf b;

        eb_buf_init(&b, 0);
        if (eb_json_put(&b, v)) {
                eb_buf_fini(&b);
                return NULL;
        }
        return eb_buf_take(&b, NULL);
}

int eb_utf8_valid(const char *str, size_t len)
{
        const unsigned char *s = (const unsigned char *)str;
        const unsigned char *end = s + len;

        while (s < end) {
                unsigned c = *s;
                size_t n, i;
                unsigned cp;

                if (c < 0x80) {
                        s++;
                        continue;
                }
                if (c >= 0xc2 && c <= 0xdf) {
                        n = 1;
                        cp = c & 0x1f;
                } else if (c >= 0xe0 && c <= 0xef) {
                        n = 2;
                        cp = c & 0x0f;
                } else if (c >= 0xf0 && c <= 0xf4) {
                        n = 3;
                        cp = c & 0x07;
                } else {
                        return 0; /* continuation byte, overlong 0xc0/0xc1,
                                     or beyond U+10FFFF */
                }
                if ((size_t)(end - s) <= n)
                        return 0;
                for (i = 1; i <= n; i++) {
                        if ((s[i] & 0xc0) != 0x80)
                                return 0;
                        cp = (cp << 6) | (s[i] & 0x3f);
                }
                if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
                    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return 0;
                s += n + 1;
        }
        return 1;
}

/* ---- reading --------------------------------------------------------------
 *
 * A fast path in front of json_loadb(): a direct parser over the buffer
 * that builds the same jansson tree with jansson's own constructors. It
 * is conservative: on anything unusual (any error, a number it cannot
 * convert exactly as jansson would, nesting past the limit) it gives up
 * and json_loadb() parses the input again, so errors keep jansson's
 * messages and anything it accepts is jansson's tree. Checked against
 * json_loadb() by tests/unit/test_eb_json.c and the json_load fuzz
 * target.
 */

struct rd {
        const unsigned char *p, *end;
        const unsigned char *start; /* of the text */
        int reject_dups;
        char *scratch; /* decoded strings with escapes */
        size_t scratch_cap;
        /* eb_json_loadb_src(): where to record canonical containers, and
         * how many non-canonical tokens (whitespace, an escape or number
         * put() would write differently, a repeated key) were read so
         * far: a container is canonical when none was read inside it. */
        struct eb_json_src *src;
        unsigned long nc;
        /* a repeated key replaced (freed) a value whose address may be in
         * the table: the table is dropped */
        int src_bad;
};

static void skip_ws(struct rd *r)
{
        const unsigned char *p0 = r->p;

        while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' ||
                                 *r->p == '\r' || *r->p == '\t'))
                r->p++;
        if (r->p != p0)
                r->nc++;
}

/* Record the container @p v read from @p open to r->p if nothing
 * non-canonical was read since @p nc0. @returns 0 or -1 (no memory). */
static int note_span(struct rd *r, const json_t *v, const unsigned char *open,
                     unsigned long nc0)
{
        if (!r->src || r->nc != nc0 || (size_t)(r->p - open) < EB_JSON_SPAN_MIN)
                return 0;
        return span_add(r->src, v, (size_t)(open - r->start),
                        (size_t)(r->p - open));
}

/* Is "\\u" + @p p (4 hex digits, value @p cp) what eb_json_put_chars()
 * writes for @p cp? Only for control characters without a short escape,
 * in upper case. */
static int canonical_u(const unsigned char *p, unsigned cp)
{
        static const char hex[] = "0123456789ABCDEF";

        if (cp >= 0x20 || cp == '\b' || cp == '\f' || cp == '\n' ||
            cp == '\r' || cp == '\t')
                return 0;
        return p[0] == '0' && p[1] == '0' && p[2] == hex[cp >> 4] &&
               p[3] == hex[cp & 15];
}

static int hex4(const unsigned char *p, unsigned *out)
{
        unsigned v = 0;
        int i;

        for (i = 0; i < 4; i++) {
                unsigned c = p[i], d;

                if (c >= '0' && c <= '9')
                        d = c - '0';
                else if (c >= 'a' && c <= 'f')
                        d = c - 'a' + 10;
                else if (c >= 'A' && c <= 'F')
                        d = c - 'A' + 10;
                else
                        return -1;
                v = v << 4 | d;
        }
        *out = v;
        return 0;
}

static int scratch_put(struct rd *r, size_t *len, const void *s, size_t n)
{
        if (!n)
                return 0; /* and no arithmetic on a scratch not yet made */
        if (*len + n > r->scratch_cap) {
                size_t cap = r->scratch_cap ? r->scratch_cap * 2 : 256;
                char *np;

                while (cap < *len + n)
                        cap *= 2;
                np = realloc(r->scratch, cap);
                if (!np)
                        return -1;
                r->scratch = np;
                r->scratch_cap = cap;
        }
        memcpy(r->scratch + *len, s, n);
        *len += n;
        return 0;
}

/* Length of the valid UTF-8 sequence at @p s (lead byte >= 0x80), or 0. */
static size_t utf8_seq(const unsigned char *s, const unsigned char *end)
{
        size_t n = *s >= 0xc2 && *s <= 0xdf   ? 2
                   : *s >= 0xe0 && *s <= 0xef ? 3
                   : *s >= 0xf0 && *s <= 0xf4 ? 4
                                              : 0;

        if (!n || (size_t)(end - s) < n || !eb_utf8_valid((const char *)s, n))
                return 0;
        return n;
}

/* @p cp (1 .. 0x10ffff, no surrogate) as UTF-8 into @p u8. @returns
 * its length. */
static size_t utf8_put(unsigned cp, unsigned char u8[4])
{
        if (cp < 0x80) {
                u8[0] = (unsigned char)cp;
                return 1;
        }
        if (cp < 0x800) {
                u8[0] = (unsigned char)(0xc0 | cp >> 6);
                u8[1] = (unsigned char)(0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                u8[0] = (unsigned char)(0xe0 | cp >> 12);
                u8[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
                u8[2] = (unsigned char)(0x80 | (cp & 0x3f));
                return 3;
        }
        u8[0] = (unsigned char)(0xf0 | cp >> 18);
        u8[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
        u8[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        u8[3] = (unsigned char)(0x80 | (cp & 0x3f));
        return 4;
}

/* The \u escape at @p *pp (on the 'u'), with the low half of a
 * surrogate pair after it: its code point in @p *cpp, @p *pp past it.
 * @returns 0, or -1 to give up (bad hex, lone surrogate, NUL). */
static int read_u_escape(struct rd *r, const unsigned char **pp, unsigned *cpp)
{
        const unsigned char *p = *pp;
        unsigned cp, lo;

        if (r->end - p < 5 || hex4(p + 1, &cp))
                return -1;
        if (!canonical_u(p + 1, cp))
                r->nc++;
        p += 5;
        if (cp >= 0xdc00 && cp <= 0xdfff)
                return -1;
        if (cp >= 0xd800 && cp <= 0xdbff) {
                if (r->end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
                    hex4(p + 2, &lo) || lo < 0xdc00 || lo > 0xdfff)
                        return -1;
                p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }
        if (cp == 0)
                return -1; /* no JSON_ALLOW_NUL */
        *pp = p;
        *cpp = cp;
        return 0;
}

/* The escape at @p *pp (just past the backslash) appended to the scratch
 * buffer (@p len bytes so far), @p *pp past it. @returns 0 or -1. */
static int read_escape(struct rd *r, const unsigned char **pp, size_t *len)
{
        const unsigned char *p = *pp;
        unsigned char u8[4];
        unsigned cp;
        char c;

        switch (*p) {
        case '/':
                r->nc++; /* written back as '/' */
                /* fall through */
        case '"':
        case '\\':
                c = (char)*p;
                break;
        case 'b':
                c = '\b';
                break;
        case 'f':
                c = '\f';
                break;
        case 'n':
                c = '\n';
                break;
        case 'r':
                c = '\r';
                break;
        case 't':
                c = '\t';
                break;
        case 'u':
                if (read_u_escape(r, &p, &cp) ||
                    scratch_put(r, len, u8, utf8_put(cp, u8)))
                        return -1;
                *pp = p;
                return 0;
        default:
                return -1;
        }
        if (scratch_put(r, len, &c, 1))
                return -1;
        *pp = p + 1;
        return 0;
}

/*
 * The string at r->p (just past the opening quote): its bytes in
 * @p *sp / @p *lenp (into the input when it has no escapes, else into the
 * scratch buffer). @returns 0, or -1 to give up.
 */
static int read_str(struct rd *r, const char **sp, size_t *lenp)
{
        const unsigned char *start = r->p, *p = r->p;
        size_t len = 0;
        int esc = 0;

        for (;;) {
                while (p < r->end && *p >= 0x20 && *p < 0x80 && *p != '"' &&
                       *p != '\\')
                        p++;
                if (p >= r->end || *p < 0x20)
                        return -1;
                if (*p == '"')
                        break;
                if (*p >= 0x80) {
                        size_t n = utf8_seq(p, r->end);

                        if (!n)
                                return -1;
                        p += n;
                        continue;
                }
                /* a backslash: the rest goes through the scratch buffer */
                if (!esc) {
                        esc = 1;
                        len = 0;
                }
                if (scratch_put(r, &len, start, (size_t)(p - start)))
                        return -1;
                if (r->end - p < 2)
                        return -1;
                p++;
                if (read_escape(r, &p, &len))
                        return -1;
                start = p;
        }
        if (esc) {
                if (scratch_put(r, &len, start, (size_t)(p - start)))
                        return -1;
                *sp = r->scratch;
                *lenp = len;
        } else {
                *sp = (const char *)start;
                *lenp = (size_t)(p - start);
        }
        r->p = p + 1;
        return 0;
}

static json_t *read_num(struct rd *r)
{
        const unsigned char *s = r->p, *p = r->p;
        int real = 0;
        char tok[64];
        size_t n;

        if (p < r->end && *p == '-')
                p++;
        if (p >= r->end)
                return NULL;
        if (*p == '0') {
                p++;
        } else if (*p >= '1' && *p <= '9') {
                while (p < r->end && *p >= '0' && *p <= '9')
                        p++;
        } else {
                return NULL;
        }
        if (p < r->end && *p == '.') {
                real = 1;
                p++;
                if (p >= r->end || *p < '0' || *p > '9')
                        return NULL;
                while (p < r->end && *p >= '0' && *p <= '9')
                        p++;
        }
        if (p < r->end && (*p == 'e' || *p == 'E')) {
                real = 1;
                p++;
                if (p < r->end && (*p == '+' || *p == '-'))
                        p++;
                if (p >= r->end || *p < '0' || *p > '9')
                        return NULL;
                while (p < r->end && *p >= '0' && *p <= '9')
                        p++;
        }
        /* jansson lexes a number followed by a letter as an error */
        if (p < r->end &&
            ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '.'))
                return NULL;
        n = (size_t)(p - s);
        if (n >= sizeof(tok))
                return NULL;
        r->p = p;
        if (!real) {
                unsigned long long v = 0;
                const unsigned char *q = s + (*s == '-');

                for (; q < p; q++) {
                        if (v > (ULLONG_MAX - 9) / 10)
                                return NULL;
                        v = v * 10 + (unsigned)(*q - '0');
                }
                if (*s == '-') {
                        if (v > (unsigned long long)LLONG_MAX + 1)
                                return NULL;
                        if (!v)
                                r->nc++; /* "-0" is written "0" */
                        return json_integer(v ? (json_int_t)(0 - v) : 0);
                }
                if (v > (unsigned long long)LLONG_MAX)
                        return NULL;
                return json_integer((json_int_t)v);
        }
        memcpy(tok, s, n);
        tok[n] = '\0';
        {
                char *end;
                double d;

                errno = 0;
                d = strtod(tok, &end);
                if (errno || end != tok + n)
                        return NULL;
                if (r->src) {
                        char out[64];

                        if (fmt_real(out, d) || strcmp(out, tok))
                                r->nc++;
                }
                return json_real(d);
        }
}

static json_t *read_value(struct rd *r, int depth);

static json_t *read_object(struct rd *r, int depth)
{
        const unsigned char *open = r->p - 1;
        unsigned long nc0 = r->nc;
        size_t nkeys = 0; /* members read: more than the object's size
                           * when a key came again */
        json_t *o = json_object();

        if (!o)
                return NULL;
        skip_ws(r);
        if (r->p < r->end && *r->p == '}') {
                r->p++;
                if (note_span(r, o, open, nc0))
                        goto fail;
                return o;
        }
        for (;;) {
                const char *k;
                size_t klen;
                char kbuf[128], *key;
                json_t *v;

                if (r->p >= r->end || *r->p != '"')
                        goto fail;
                r->p++;
                if (read_str(r, &k, &klen))
                        goto fail;
                /* k may point into the scratch buffer, which the value
                 * reuses: keep a copy */
                key = klen < sizeof(kbuf) ? kbuf : malloc(klen + 1);
                if (!key)
                        goto fail;
                memcpy(key, k, klen);
                key[klen] = '\0';
                skip_ws(r);
                if (r->p >= r->end || *r->p != ':') {
                        if (key != kbuf)
                                free(key);
                        goto fail;
                }
                r->p++;
                v = read_value(r, depth + 1);
                if (!v || json_object_setn_new_nocheck(o, key, klen, v)) {
                        if (key != kbuf)
                                free(key);
                        goto fail;
                }
                if (key != kbuf)
                        free(key);
                nkeys++;
                skip_ws(r);
                if (r->p < r->end && *r->p == ',') {
                        r->p++;
                        skip_ws(r);
                        continue;
                }
                if (r->p < r->end && *r->p == '}') {
                        r->p++;
                        if (json_object_size(o) != nkeys) {
                                /* A key came again: refused with
                                 * JSON_REJECT_DUPLICATES (jansson says
                                 * where). Else the last one won and
                                 * freed the first, whose address may be
                                 * recorded: no table. */
                                if (r->reject_dups)
                                        goto fail;
                                r->src_bad = 1;
                        }
                        if (note_span(r, o, open, nc0))
                                goto fail;
                        return o;
                }
                goto fail;
        }
fail:
        json_decref(o);
        return NULL;
}

static json_t *read_array(struct rd *r, int depth)
{
        const unsigned char *open = r->p - 1;
        unsigned long nc0 = r->nc;
        json_t *a = json_array();

        if (!a)
                return NULL;
        skip_ws(r);
        if (r->p < r->end && *r->p == ']') {
                r->p++;
                if (note_span(r, a, open, nc0))
                        goto fail;
                return a;
        }
        for (;;) {
                json_t *v = read_value(r, depth + 1);

                if (!v || json_array_append_new(a, v))
                        goto fail;
                skip_ws(r);
                if (r->p < r->end && *r->p == ',') {
                        r->p++;
                        continue;
                }
                if (r->p < r->end && *r->p == ']') {
                        r->p++;
                        if (note_span(r, a, open, nc0))
                                goto fail;
                        return a;
                }
                goto fail;
        }
fail:
        json_decref(a);
        return NULL;
}

static int literal(struct rd *r, const char *word, size_t n)
{
        if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n))
                return -1;
        r->p += n;
        /* "truex" is one bad token to jansson */
        if (r->p < r->end &&
            ((*r->p >= 'a' && *r->p <= 'z') || (*r->p >= 'A' && *r->p <= 'Z') ||
             (*r->p >= '0' && *r->p <= '9')))
                return -1;
        return 0;
}

static json_t *read_value(struct rd *r, int depth)
{
        const char *s;
        size_t len;

        if (depth > EB_JSON_MAX_DEPTH)
                return NULL;
        skip_ws(r);
        if (r->p >= r->end)
                return NULL;
        switch (*r->p) {
        case '{':
                r->p++;
                return read_object(r, depth);
        case '[':
                r->p++;
                return read_array(r, depth);
        case '"':
                r->p++;
                if (read_str(r, &s, &len))
                        return NULL;
                return json_stringn_nocheck(s, len);
        case 't':
                return literal(r, "true", 4) ? NULL : json_true();
        case 'f':
                return literal(r, "false", 5) ? NULL : json_false();
        case 'n':
                return literal(r, "null", 4) ? NULL : json_null();
        default:
                return read_num(r);
        }
}

static json_t *load_fast(const char *buf, size_t len, size_t flags,
                         struct eb_json_src *src)
{
        struct rd r;
        json_t *v = NULL;

        if (flags & ~(size_t)JSON_REJECT_DUPLICATES)
                return NULL;
        memset(&r, 0, sizeof(r));
        r.p = (const unsigned char *)buf;
        r.start = r.p;
        r.end = r.p + len;
        r.src = src;
        r.reject_dups = !!(flags & JSON_REJECT_DUPLICATES);
        skip_ws(&r);
        /* like json_loadb() without JSON_DECODE_ANY: an object or array */
        if (r.p < r.end && (*r.p == '{' || *r.p == '['))
                v = read_value(&r, 1);
        if (v) {
                skip_ws(&r);
                if (r.p != r.end) {
                        json_decref(v);
                        v = NULL;
                }
        }
        free(r.scratch);
        if (src && r.src_bad)
                src->cnt = 0; /* eb_json_loadb_src() drops it */
        return v;
}

json_t *eb_json_loadb_fast(const char *buf, size_t len, size_t flags)
{
        return load_fast(buf, len, flags, NULL);
}

json_t *eb_json_loadb_src(const char *buf, size_t len, size_t flags,
                          json_error_t *error, struct eb_json_src **srcp)
{
        /* the text, and about a slot of 16 bytes per 64 of it */
        size_t need = len + len / 4 + 1024;
        struct eb_json_src *src =
                atomic_load(&src_live) + need <= atomic_load(&src_budget)
                        ? calloc(1, sizeof(*src))
                        : NULL;
        json_t *v = NULL;

        *srcp = NULL;
        /* the large blocks first, then the tree's small ones */
        if (src && (span_init(src, len) || !(src->text = malloc(len + 1)))) {
                free(src->tab);
                free(src);
                src = NULL;
        }
        v = load_fast(buf, len, flags, src);
        if (!v || !src || !src->cnt) {
                if (src) {
                        free(src->text);
                        free(src->tab);
                        free(src);
                }
                return v ? v : json_loadb(buf, len, flags, error);
        }
        memcpy(src->text, buf, len);
        src->bytes = len + 1 + src->cap * sizeof(*src->tab);
        atomic_fetch_add(&src_live, src->bytes);
        src->refs = 1;
        src->root = json_incref(v);
        *srcp = src;
        return v;
}

json_t *eb_json_loadb(const char *buf, size_t len, size_t flags,
                      json_error_t *error)
{
        json_t *v = eb_json_loadb_fast(buf, len, flags);

        return v ? v : json_loadb(buf, len, flags, error);
}
