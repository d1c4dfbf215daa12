/*
 * eb_url: building request URLs (eb_url.h).
 */
#include "eb_url.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int eb_url_encode(struct eb_buf *b, const char *s, const char *keep)
{
        static const char hex[] = "0123456789ABCDEF";
        const unsigned char *p;
        int rc;

        for (p = (const unsigned char *)s; *p; p++) {
                char enc[3];

                if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' ||
                    *p == '~' || (keep && strchr(keep, *p))) {
                        rc = eb_buf_append(b, p, 1);
                } else {
                        enc[0] = '%';
                        enc[1] = hex[*p >> 4];
                        enc[2] = hex[*p & 15];
                        rc = eb_buf_append(b, enc, 3);
                }
                if (rc)
                        return rc;
        }
        return 0;
}

int eb_url_add_param(struct eb_buf *b, const char *key, const char *value)
{
        int rc;

        rc = eb_buf_append(b, b->data && strchr(b->data, '?') ? "&" : "?", 1);
        if (!rc)
                rc = eb_url_encode(b, key, NULL);
        if (!rc)
                rc = eb_buf_append(b, "=", 1);
        if (!rc)
                rc = eb_url_encode(b, value, ",");
        return rc;
}

int eb_url_add_param_i64(struct eb_buf *b, const char *key, int64_t value)
{
        char num[24];

        snprintf(num, sizeof(num), "%" PRId64, value);
        return eb_url_add_param(b, key, num);
}

int eb_url_start(struct eb_buf *b, const char *base, const char *path)
{
        size_t n;
        int rc;

        eb_buf_init(b, EB_URL_MAX);
        if (!base)
                return -EINVAL;
        n = strlen(base);
        while (n && base[n - 1] == '/')
                n--;
        rc = eb_buf_append(b, base, n);
        if (!rc)
                rc = eb_buf_append_str(b, path);
        return rc;
}
