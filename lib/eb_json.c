#include "eb_json.h"

#include <errno.h>
#include <stdio.h>
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
static int put_real(struct eb_buf *b, double d)
{
        char buf[64], *e, *digits, *p;
        int n = snprintf(buf, sizeof(buf), "%.17g", d);

        if (n < 0 || (size_t)n >= sizeof(buf) - 3)
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
        return eb_buf_append(b, buf, strlen(buf));
}

static int put(struct eb_buf *b, const json_t *v, int depth)
{
        char num[32];
        size_t i;
        int rc;

        if (!v || depth > EB_JSON_MAX_DEPTH)
                return -EINVAL;
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
                            (rc = put(b, json_object_iter_value(it),
                                      depth + 1)))
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
                        if ((rc = put(b, json_array_get(v, i), depth + 1)))
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
        return put(b, v, 0);
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
