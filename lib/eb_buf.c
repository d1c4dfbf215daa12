#include "eb_buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void eb_buf_init(struct eb_buf *b, size_t limit)
{
        b->data = NULL;
        b->len = 0;
        b->cap = 0;
        b->limit = limit;
}

void eb_buf_fini(struct eb_buf *b)
{
        free(b->data);
        b->data = NULL;
        b->len = 0;
        b->cap = 0;
}

void eb_buf_reset(struct eb_buf *b)
{
        b->len = 0;
        if (b->data)
                b->data[0] = '\0';
}

static int grow(struct eb_buf *b, size_t need)
{
        size_t cap;
        char *n;

        if (need <= b->cap)
                return 0;
        cap = b->cap ? b->cap : 256;
        while (cap < need) {
                if (cap > ((size_t)-1) / 2)
                        return -ENOMEM;
                cap *= 2;
        }
        if (b->limit && cap > b->limit + 1)
                cap = b->limit + 1;
        n = realloc(b->data, cap);
        if (!n)
                return -ENOMEM;
        b->data = n;
        b->cap = cap;
        return 0;
}

int eb_buf_reserve(struct eb_buf *b, size_t n)
{
        if (b->limit && (n > b->limit || b->len > b->limit - n))
                return -E2BIG;
        return grow(b, b->len + n + 1);
}

int eb_buf_append_slow(struct eb_buf *b, const void *p, size_t n)
{
        int rc;

        if (b->limit && (n > b->limit || b->len > b->limit - n))
                return -E2BIG;
        rc = grow(b, b->len + n + 1);
        if (rc)
                return rc;
        if (n)
                memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
}

int eb_buf_append_str(struct eb_buf *b, const char *s)
{
        return eb_buf_append(b, s, strlen(s));
}

int eb_buf_printf(struct eb_buf *b, const char *fmt, ...)
{
        va_list ap;
        int n, rc;
        char small[256];
        char *big;

        va_start(ap, fmt);
        n = vsnprintf(small, sizeof(small), fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        if ((size_t)n < sizeof(small))
                return eb_buf_append(b, small, (size_t)n);
        big = malloc((size_t)n + 1);
        if (!big)
                return -ENOMEM;
        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        rc = eb_buf_append(b, big, (size_t)n);
        free(big);
        return rc;
}

char *eb_buf_take(struct eb_buf *b, size_t *lenp)
{
        char *p = b->data;

        if (lenp)
                *lenp = b->len;
        if (!p) {
                p = malloc(1);
                if (p)
                        p[0] = '\0';
        }
        b->data = NULL;
        b->len = 0;
        b->cap = 0;
        return p;
}
