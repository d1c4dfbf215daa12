#include "eb_ratelimit.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eb_time.h"

static const char *skip_ows(const char *p)
{
        while (*p == ' ' || *p == '\t')
                p++;
        return p;
}

/* A plain non-negative decimal: 1*DIGIT [ "." *DIGIT ] (no sign, no
 * exponent, no locale). Stores the end in *endp. @returns 0 or -EINVAL. */
static int scan_decimal(const char *p, const char **endp, double *out)
{
        char tmp[64];
        const char *s = p;
        size_t n;
        double v;

        if (!isdigit((unsigned char)*p))
                return -EINVAL;
        while (isdigit((unsigned char)*p))
                p++;
        if (*p == '.') {
                p++;
                while (isdigit((unsigned char)*p))
                        p++;
        }
        n = (size_t)(p - s);
        if (n >= sizeof(tmp))
                return -EINVAL;
        memcpy(tmp, s, n);
        tmp[n] = '\0';
        errno = 0;
        v = strtod(tmp, NULL);
        if (errno || !isfinite(v) || v < 0)
                return -EINVAL;
        *endp = p;
        *out = v;
        return 0;
}

static void set_out(double *p, double v)
{
        if (p)
                *p = v;
}

int eb_ratelimit_parse(const char *hdr, double *limit, double *remaining,
                       double *reset_s)
{
        double vals[3] = {-1, -1, -1};
        static const char *const keys[3] = {"limit", "remaining", "reset"};
        const char *p;
        int found = 0, rc = -EINVAL;

        set_out(limit, -1);
        set_out(remaining, -1);
        set_out(reset_s, -1);
        if (!hdr || strlen(hdr) > EB_RATELIMIT_MAX_HEADER)
                return -EINVAL;
        p = skip_ows(hdr);
        while (*p) {
                const char *k = p;
                size_t klen;
                double v;
                int i, idx = -1;

                while (*p && *p != '=' && *p != ',' && *p != ';' && *p != ' ' &&
                       *p != '\t')
                        p++;
                klen = (size_t)(p - k);
                p = skip_ows(p);
                if (!klen || *p != '=')
                        goto out;
                p = skip_ows(p + 1);
                for (i = 0; i < 3; i++) {
                        if (strlen(keys[i]) == klen &&
                            !strncasecmp(k, keys[i], klen))
                                idx = i;
                }
                if (idx >= 0) {
                        if (vals[idx] >= 0 || scan_decimal(p, &p, &v))
                                goto out;
                        vals[idx] = v;
                        found++;
                } else {
                        /* Unknown key: skip its value, whatever it is. */
                        while (*p && *p != ',' && *p != ';')
                                p++;
                }
                p = skip_ows(p);
                if (*p == ',' || *p == ';')
                        p = skip_ows(p + 1);
                else if (*p)
                        goto out;
        }
        if (!found)
                goto out;
        set_out(limit, vals[0]);
        set_out(remaining, vals[1]);
        set_out(reset_s, vals[2]);
        rc = 0;
out:
        return rc;
}

int64_t eb_ratelimit_reset_ms(double reset_s)
{
        double ms;

        if (!isfinite(reset_s) || reset_s <= 0)
                return 0;
        /* Round up, but do not let binary fractions (0.734 * 1000 =
         * 734.0000000001) add a spurious millisecond. */
        ms = ceil(reset_s * 1000.0 - 1e-6);
        if (ms > (double)EB_RATELIMIT_MAX_WAIT_MS)
                return EB_RATELIMIT_MAX_WAIT_MS;
        return ms < 1 ? 1 : (int64_t)ms;
}

/* ---- HTTP-date ------------------------------------------------------- */

static int lit(const char **pp, const char *s)
{
        size_t n = strlen(s);

        if (strncmp(*pp, s, n))
                return -1;
        *pp += n;
        return 0;
}

static int month(const char **pp, int *mo)
{
        static const char *const names[12] = {"Jan", "Feb", "Mar", "Apr",
                                              "May", "Jun", "Jul", "Aug",
                                              "Sep", "Oct", "Nov", "Dec"};
        int i;

        for (i = 0; i < 12; i++) {
                if (!strncasecmp(*pp, names[i], 3)) {
                        *pp += 3;
                        *mo = i + 1;
                        return 0;
                }
        }
        return -1;
}

/* Day name: short ("Sun") or long ("Sunday"); validated, not checked
 * against the date (a mismatch is the sender's problem, not a reason to
 * ignore the wait). */
static int day_name(const char **pp, int want_long)
{
        static const char *const names[7] = {"Monday",   "Tuesday", "Wednesday",
                                             "Thursday", "Friday",  "Saturday",
                                             "Sunday"};
        int i;

        for (i = 0; i < 7; i++) {
                size_t n = want_long ? strlen(names[i]) : 3;

                if (!strncasecmp(*pp, names[i], n)) {
                        *pp += n;
                        return 0;
                }
        }
        return -1;
}

static int hms(const char **pp, int *h, int *mi, int *s)
{
        if (eb_parse_digits(pp, 2, h) || lit(pp, ":") ||
            eb_parse_digits(pp, 2, mi) || lit(pp, ":") ||
            eb_parse_digits(pp, 2, s))
                return -1;
        return *h > 23 || *mi > 59 || *s > 60 ? -1 : 0;
}

static int http_date_parse(const char *p, int64_t *ms)
{
        static const int mdays[] = {31, 29, 31, 30, 31, 30,
                                    31, 31, 30, 31, 30, 31};
        const char *q = p;
        int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;

        if (day_name(&q, 0) == 0 && *q == ',') {
                /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
                q++;
                if (lit(&q, " ") || eb_parse_digits(&q, 2, &d) ||
                    lit(&q, " ") || month(&q, &mo) || lit(&q, " ") ||
                    eb_parse_digits(&q, 4, &y) || lit(&q, " ") ||
                    hms(&q, &h, &mi, &s) || lit(&q, " GMT"))
                        return -EINVAL;
        } else if ((q = p, day_name(&q, 1) == 0) && *q == ',') {
                /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
                q++;
                if (lit(&q, " ") || eb_parse_digits(&q, 2, &d) ||
                    lit(&q, "-") || month(&q, &mo) || lit(&q, "-") ||
                    eb_parse_digits(&q, 2, &y) || lit(&q, " ") ||
                    hms(&q, &h, &mi, &s) || lit(&q, " GMT"))
                        return -EINVAL;
                y += y < 70 ? 2000 : 1900;
        } else if ((q = p, day_name(&q, 0) == 0) && *q == ' ') {
                /* asctime: Sun Nov  6 08:49:37 1994 */
                q++;
                if (month(&q, &mo) || lit(&q, " "))
                        return -EINVAL;
                if (*q == ' ') {
                        q++;
                        if (eb_parse_digits(&q, 1, &d))
                                return -EINVAL;
                } else if (eb_parse_digits(&q, 2, &d)) {
                        return -EINVAL;
                }
                if (lit(&q, " ") || hms(&q, &h, &mi, &s) || lit(&q, " ") ||
                    eb_parse_digits(&q, 4, &y))
                        return -EINVAL;
        } else {
                return -EINVAL;
        }
        q = skip_ows(q);
        if (*q)
                return -EINVAL;
        if (d < 1 || d > mdays[mo - 1])
                return -EINVAL;
        if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 || y % 400 == 0)))
                return -EINVAL;
        *ms = (eb_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) *
              1000;
        return 0;
}

int eb_retry_after_parse(const char *hdr, int64_t now_ms, int64_t *ms)
{
        const char *p, *end;
        double secs;
        int64_t at, wait;

        if (!hdr || strlen(hdr) > EB_RATELIMIT_MAX_HEADER)
                return -EINVAL;
        p = skip_ows(hdr);
        if (!*p)
                return -EINVAL;
        if (isdigit((unsigned char)*p)) {
                if (scan_decimal(p, &end, &secs))
                        return -EINVAL;
                if (*skip_ows(end))
                        return -EINVAL;
                if (secs * 1000.0 >= (double)EB_RATELIMIT_MAX_WAIT_MS)
                        wait = EB_RATELIMIT_MAX_WAIT_MS;
                else
                        wait = (int64_t)ceil(secs * 1000.0 - 1e-6);
                *ms = wait < 0 ? 0 : wait;
                return 0;
        }
        if (http_date_parse(p, &at))
                return -EINVAL;
        if (at <= now_ms)
                wait = 0;
        else if (at - now_ms > EB_RATELIMIT_MAX_WAIT_MS)
                wait = EB_RATELIMIT_MAX_WAIT_MS;
        else
                wait = at - now_ms;
        *ms = wait;
        return 0;
}
