#include "eb_util.h"

#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t size)
{
        eb_error("util", "out of memory allocating %zu bytes", size);
        abort();
}

void *eb_xcalloc(size_t nmemb, size_t size)
{
        void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);

        if (!p)
                oom(nmemb * size);
        return p;
}

void *eb_xmalloc(size_t size)
{
        void *p = malloc(size ? size : 1);

        if (!p)
                oom(size);
        return p;
}

void *eb_xrealloc(void *p, size_t size)
{
        void *n = realloc(p, size ? size : 1);

        if (!n)
                oom(size);
        return n;
}

char *eb_xstrdup(const char *s)
{
        char *d;

        if (!s)
                return NULL;
        d = strdup(s);
        if (!d)
                oom(strlen(s));
        return d;
}

char *eb_xstrndup(const char *s, size_t n)
{
        char *d = eb_xmalloc(n + 1);

        memcpy(d, s, n);
        d[n] = '\0';
        return d;
}

char *eb_xasprintf(const char *fmt, ...)
{
        va_list ap;
        int n;
        char *p;

        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                oom(0);
        p = eb_xmalloc((size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(p, (size_t)n + 1, fmt, ap);
        va_end(ap);
        return p;
}

void eb_assert_fail(const char *what, const char *file, int line)
{
        eb_error("assert", "%s:%d: assertion failed: %s", file, line, what);
        abort();
}

int eb_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
        const volatile unsigned char *pa = a, *pb = b;
        unsigned char diff = 0;
        size_t i;

        /* Walk b's length whatever a holds; index a modulo its length so a
         * short or empty a costs the same time. */
        for (i = 0; i < blen; i++) {
                unsigned char ca = alen ? pa[i % alen] : 0;
                diff |= (unsigned char)(ca ^ pb[i]);
        }
        return (diff == 0) & (alen == blen);
}

void eb_hex_encode(const unsigned char *in, size_t n, char *out)
{
        static const char digits[] = "0123456789abcdef";
        size_t i;

        for (i = 0; i < n; i++) {
                out[2 * i] = digits[in[i] >> 4];
                out[2 * i + 1] = digits[in[i] & 0xf];
        }
        out[2 * n] = '\0';
}

int eb_hex_digit(int c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int eb_hex_decode(const char *in, unsigned char *out, size_t outsz)
{
        size_t n = strlen(in), i;

        if (n % 2 || n / 2 > outsz)
                return -EINVAL;
        for (i = 0; i < n / 2; i++) {
                int hi = eb_hex_digit((unsigned char)in[2 * i]);
                int lo = eb_hex_digit((unsigned char)in[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                out[i] = (unsigned char)(hi << 4 | lo);
        }
        return (int)(n / 2);
}

int eb_hmac_sha256(const void *key, size_t keylen, const void *msg,
                   size_t msglen, unsigned char out[32])
{
        unsigned int outlen = 32;
        static const unsigned char empty = 0;

        if (!HMAC(EVP_sha256(), keylen ? key : &empty, (int)keylen,
                  msglen ? msg : &empty, msglen, out, &outlen) ||
            outlen != 32)
                return -EIO;
        return 0;
}

uint64_t eb_fnv1a64(const void *p, size_t n)
{
        const unsigned char *s = p;
        uint64_t h = 14695981039346656037ULL;
        size_t i;

        for (i = 0; i < n; i++) {
                h ^= s[i];
                h *= 1099511628211ULL;
        }
        return h;
}

int eb_parse_i64(const char *s, int64_t *out)
{
        char *end = NULL;
        long long v;

        if (!s || !*s)
                return -EINVAL;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (!end || *end || end == s)
                return -EINVAL;
        *out = (int64_t)v;
        return 0;
}

int eb_parse_double(const char *s, double *out)
{
        char *end = NULL;
        double v;

        if (!s || !*s)
                return -EINVAL;
        errno = 0;
        v = strtod(s, &end);
        if (errno || !end || *end || end == s || !isfinite(v))
                return -EINVAL;
        *out = v;
        return 0;
}

char *eb_base64_encode(const void *p, size_t n)
{
        static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "abcdefghijklmnopqrstuvwxyz0123456789+/";
        const unsigned char *in = p;
        size_t i, o = 0;
        char *out;

        if (n > (SIZE_MAX - 1) / 4 * 3 - 3)
                return NULL;
        out = malloc((n + 2) / 3 * 4 + 1);
        if (!out)
                return NULL;
        for (i = 0; i + 2 < n; i += 3) {
                uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
                             in[i + 2];

                out[o++] = tbl[v >> 18 & 63];
                out[o++] = tbl[v >> 12 & 63];
                out[o++] = tbl[v >> 6 & 63];
                out[o++] = tbl[v & 63];
        }
        if (i < n) {
                uint32_t v = (uint32_t)in[i] << 16;

                if (i + 1 < n)
                        v |= (uint32_t)in[i + 1] << 8;
                out[o++] = tbl[v >> 18 & 63];
                out[o++] = tbl[v >> 12 & 63];
                out[o++] = i + 1 < n ? tbl[v >> 6 & 63] : '=';
                out[o++] = '=';
        }
        out[o] = '\0';
        return out;
}
