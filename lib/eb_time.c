#include "eb_time.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t eb_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t eb_mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t eb_mono_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t eb_mono_left_ms(int64_t deadline)
{
        int64_t left = deadline - eb_mono_ms();

        return left > 0 ? left : 0;
}

int eb_duration_parse(const char *s, int64_t *ms)
{
        int64_t total = 0;
        const char *p = s;

        if (!s || !*s)
                return -EINVAL;
        if (!strcmp(s, "0")) {
                *ms = 0;
                return 0;
        }
        while (*p) {
                int64_t n = 0, mult;
                int digits = 0;

                while (isdigit((unsigned char)*p)) {
                        if (n > (INT64_MAX - 9) / 10)
                                return -EINVAL;
                        n = n * 10 + (*p - '0');
                        p++;
                        digits++;
                }
                if (!digits)
                        return -EINVAL;
                if (!strncmp(p, "ms", 2)) {
                        mult = 1;
                        p += 2;
                } else if (*p == 's') {
                        mult = 1000;
                        p++;
                } else if (*p == 'm') {
                        mult = 60 * 1000;
                        p++;
                } else if (*p == 'h') {
                        mult = 3600 * 1000;
                        p++;
                } else if (*p == 'd') {
                        mult = 24LL * 3600 * 1000;
                        p++;
                } else {
                        return -EINVAL;
                }
                if (n > (INT64_MAX / mult) || total > INT64_MAX - n * mult)
                        return -EINVAL;
                total += n * mult;
        }
        *ms = total;
        return 0;
}

void eb_duration_format(int64_t ms, char *buf, size_t sz)
{
        static const struct {
                const char *unit;
                int64_t ms;
        } units[] = {{"d", 86400000LL},
                     {"h", 3600000},
                     {"m", 60000},
                     {"s", 1000},
                     {"ms", 1}};
        size_t i, o = 0;

        if (!sz)
                return;
        buf[0] = '\0';
        if (ms <= 0) {
                snprintf(buf, sz, "0s");
                return;
        }
        for (i = 0; i < sizeof(units) / sizeof(units[0]) && o < sz; i++) {
                if (ms >= units[i].ms) {
                        int n = snprintf(buf + o, sz - o, "%lld%s",
                                         (long long)(ms / units[i].ms),
                                         units[i].unit);
                        if (n < 0)
                                return;
                        o += (size_t)n;
                        ms %= units[i].ms;
                }
        }
}

int64_t eb_days_from_civil(int64_t y, int m, int d)
{
        int64_t era, yoe, doy, doe;

        y -= m <= 2;
        era = (y >= 0 ? y : y - 399) / 400;
        yoe = y - era * 400;
        doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

int eb_parse_digits(const char **pp, int digits, int *out)
{
        int v = 0, i;

        for (i = 0; i < digits; i++) {
                if (!isdigit((unsigned char)(*pp)[i]))
                        return -1;
                v = v * 10 + ((*pp)[i] - '0');
        }
        *pp += digits;
        *out = v;
        return 0;
}

int eb_rfc3339_parse(const char *s, int64_t *ms)
{
        static const int mdays[] = {31, 29, 31, 30, 31, 30,
                                    31, 31, 30, 31, 30, 31};
        const char *p = s;
        int y, mo, d, h, mi, sec, frac = 0, fdig = 0, off = 0;
        int64_t t;

        if (!s)
                return -EINVAL;
        if (eb_parse_digits(&p, 4, &y) || *p++ != '-' ||
            eb_parse_digits(&p, 2, &mo) || *p++ != '-' ||
            eb_parse_digits(&p, 2, &d))
                return -EINVAL;
        if (*p != 'T' && *p != 't' && *p != ' ')
                return -EINVAL;
        p++;
        if (eb_parse_digits(&p, 2, &h) || *p++ != ':' ||
            eb_parse_digits(&p, 2, &mi) || *p++ != ':' ||
            eb_parse_digits(&p, 2, &sec))
                return -EINVAL;
        if (*p == '.') {
                p++;
                if (!isdigit((unsigned char)*p))
                        return -EINVAL;
                while (isdigit((unsigned char)*p)) {
                        if (fdig < 3) {
                                frac = frac * 10 + (*p - '0');
                                fdig++;
                        }
                        p++;
                }
                while (fdig < 3) {
                        frac *= 10;
                        fdig++;
                }
        }
        if (*p == 'Z' || *p == 'z') {
                p++;
        } else if (*p == '+' || *p == '-') {
                int sign = *p == '-' ? -1 : 1, oh, om;
                p++;
                if (eb_parse_digits(&p, 2, &oh) || *p++ != ':' ||
                    eb_parse_digits(&p, 2, &om) || oh > 23 || om > 59)
                        return -EINVAL;
                off = sign * (oh * 60 + om);
        }
        if (*p)
                return -EINVAL;
        if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 ||
            mi > 59 || sec > 60)
                return -EINVAL;
        if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 || y % 400 == 0)))
                return -EINVAL;
        t = eb_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
        t -= (int64_t)off * 60;
        t = t * 1000 + frac;
        /* Only what eb_rfc3339_format() can write back: a time an
         * upstream sends ends up in checkpoints and envelopes. */
        if (t < 0 || t > EB_RFC3339_MAX_MS)
                return -EINVAL;
        *ms = t;
        return 0;
}

static void put2(char *p, int v)
{
        p[0] = (char)('0' + v / 10 % 10);
        p[1] = (char)('0' + v % 10);
}

void eb_rfc3339_format(int64_t ms, int frac_digits, char *buf, size_t sz)
{
        int64_t secs = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
        int msec = (int)(ms - secs * 1000);
        time_t tt = (time_t)secs;
        struct tm tm;

        gmtime_r(&tt, &tm);
        if (frac_digits == 3 && sz >= 25 && tm.tm_year >= -1900 &&
            tm.tm_year <= 9999 - 1900) {
                /* every envelope has one: the digits without printf */
                int y = tm.tm_year + 1900;

                buf[0] = (char)('0' + y / 1000);
                buf[1] = (char)('0' + y / 100 % 10);
                buf[2] = (char)('0' + y / 10 % 10);
                buf[3] = (char)('0' + y % 10);
                buf[4] = '-';
                put2(buf + 5, tm.tm_mon + 1);
                buf[7] = '-';
                put2(buf + 8, tm.tm_mday);
                buf[10] = 'T';
                put2(buf + 11, tm.tm_hour);
                buf[13] = ':';
                put2(buf + 14, tm.tm_min);
                buf[16] = ':';
                put2(buf + 17, tm.tm_sec);
                buf[19] = '.';
                buf[20] = (char)('0' + msec / 100);
                buf[21] = (char)('0' + msec / 10 % 10);
                buf[22] = (char)('0' + msec % 10);
                buf[23] = 'Z';
                buf[24] = '\0';
        } else if (frac_digits == 3)
                snprintf(buf, sz, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                         tm.tm_hour, tm.tm_min, tm.tm_sec, msec);
        else if (frac_digits == 6)
                snprintf(buf, sz, "%04d-%02d-%02dT%02d:%02d:%02d.%03d000Z",
                         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                         tm.tm_hour, tm.tm_min, tm.tm_sec, msec);
        else
                snprintf(buf, sz, "%04d-%02d-%02dT%02d:%02d:%02dZ",
                         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                         tm.tm_hour, tm.tm_min, tm.tm_sec);
}

int eb_time_parse_start(const char *s, int64_t now_ms, int64_t *ms)
{
        int64_t d;

        if (!s)
                return -EINVAL;
        if (!strcmp(s, "now")) {
                *ms = now_ms;
                return 0;
        }
        if (eb_duration_parse(s, &d) == 0) {
                *ms = now_ms - d;
                return 0;
        }
        return eb_rfc3339_parse(s, ms);
}
