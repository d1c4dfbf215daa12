/* Unit tests for eb_util, eb_buf and eb_time. */
#include "eb_buf.h"
#include "eb_provider.h"
#include "eb_test.h"
#include "eb_time.h"
#include "eb_util.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void test_ct_equal(void)
{
        EB_CHECK(eb_ct_equal("abc", 3, "abc", 3) == 1);
        EB_CHECK(eb_ct_equal("abc", 3, "abd", 3) == 0);
        EB_CHECK(eb_ct_equal("abc", 3, "abcd", 4) == 0);
        EB_CHECK(eb_ct_equal("", 0, "a", 1) == 0);
        EB_CHECK(eb_ct_equal("", 0, "", 0) == 1);
}

static void test_hex(void)
{
        unsigned char raw[4];
        char hex[9];

        EB_CHECK_INT(eb_hex_decode("00ff10Ab", raw, sizeof(raw)), 4);
        EB_CHECK(raw[0] == 0 && raw[1] == 0xff && raw[2] == 0x10 &&
                 raw[3] == 0xab);
        eb_hex_encode(raw, 4, hex);
        EB_CHECK_STR(hex, "00ff10ab");
        EB_CHECK_INT(eb_hex_decode("abc", raw, sizeof(raw)), -EINVAL);
        EB_CHECK_INT(eb_hex_decode("zz", raw, sizeof(raw)), -EINVAL);
        EB_CHECK_INT(eb_hex_decode("0011223344", raw, sizeof(raw)), -EINVAL);
}

static void test_hmac_rfc4231(void)
{
        /* RFC 4231 test case 2. */
        unsigned char mac[32];
        char hex[65];

        EB_REQUIRE(eb_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28,
                                  mac) == 0);
        eb_hex_encode(mac, 32, hex);
        EB_CHECK_STR(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839"
                          "dec58b964ec3843");
}

static void test_buf_limit(void)
{
        struct eb_buf b;
        char *p;
        size_t n;

        eb_buf_init(&b, 8);
        EB_CHECK(eb_buf_append(&b, "12345", 5) == 0);
        EB_CHECK(eb_buf_append(&b, "6789", 4) == -E2BIG);
        EB_CHECK_INT(b.len, 5);
        EB_CHECK_STR(b.data, "12345");
        EB_CHECK(eb_buf_append(&b, "678", 3) == 0);
        EB_CHECK(eb_buf_printf(&b, "%d", 9) == -E2BIG);
        p = eb_buf_take(&b, &n);
        EB_CHECK_STR(p, "12345678");
        EB_CHECK_INT(n, 8);
        free(p);
        EB_CHECK(b.data == NULL && b.len == 0);
        eb_buf_fini(&b);
}

static void test_buf_grow(void)
{
        struct eb_buf b;
        int i;

        eb_buf_init(&b, 0);
        for (i = 0; i < 1000; i++)
                EB_REQUIRE(eb_buf_printf(&b, "%04d", i) == 0);
        EB_CHECK_INT(b.len, 4000);
        EB_CHECK(!strncmp(b.data + 3996, "0999", 4));
        eb_buf_fini(&b);
}

static void test_duration(void)
{
        static const struct {
                const char *in;
                int64_t ms;
                int rc;
        } cases[] = {
                {"10s", 10000, 0},
                {"5m", 300000, 0},
                {"24h", 86400000, 0},
                {"1h30m", 5400000, 0},
                {"250ms", 250, 0},
                {"2d", 172800000, 0},
                {"0", 0, 0},
                {"", 0, -EINVAL},
                {"10", 0, -EINVAL},
                {"s", 0, -EINVAL},
                {"10x", 0, -EINVAL},
                {"-5s", 0, -EINVAL},
                {"1.5s", 0, -EINVAL},
                {"often", 0, -EINVAL},
                {"99999999999999999999d", 0, -EINVAL},
        };
        size_t i;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                int64_t ms = -1;
                int rc = eb_duration_parse(cases[i].in, &ms);
                EB_CHECK_INT(rc, cases[i].rc);
                if (!cases[i].rc)
                        EB_CHECK_INT(ms, cases[i].ms);
        }
}

static void test_rfc3339(void)
{
        static const struct {
                const char *in;
                int64_t ms;
                int rc;
        } cases[] = {
                {"1970-01-01T00:00:00Z", 0, 0},
                {"2024-05-15T14:22:30Z", 1715782950000LL, 0},
                {"2019-01-15T12:48:23.395000", 1547556503395LL, 0},
                {"2019-01-15T12:47:39.873000+00:00", 1547556459873LL, 0},
                {"2024-05-15T16:22:30+02:00", 1715782950000LL, 0},
                {"2024-05-15 14:22:30.5Z", 1715782950500LL, 0},
                {"2024-02-29T00:00:00Z", 1709164800000LL, 0},
                {"2023-02-29T00:00:00Z", 0, -EINVAL},
                {"2024-13-01T00:00:00Z", 0, -EINVAL},
                {"2024-05-15", 0, -EINVAL},
                {"2024-05-15T14:22:30Zjunk", 0, -EINVAL},
                {"2024-05-15T14:22:30.Z", 0, -EINVAL},
        };
        size_t i;
        char buf[40];

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                int64_t ms = -1;
                int rc = eb_rfc3339_parse(cases[i].in, &ms);
                EB_CHECK_INT(rc, cases[i].rc);
                if (!cases[i].rc)
                        EB_CHECK_INT(ms, cases[i].ms);
        }
        eb_rfc3339_format(1547556503395LL, 3, buf, sizeof(buf));
        EB_CHECK_STR(buf, "2019-01-15T12:48:23.395Z");
        eb_rfc3339_format(1547556503395LL, 0, buf, sizeof(buf));
        EB_CHECK_STR(buf, "2019-01-15T12:48:23Z");
        eb_rfc3339_format(1547556503395LL, 6, buf, sizeof(buf));
        EB_CHECK_STR(buf, "2019-01-15T12:48:23.395000Z");
}

/* The digits eb_rfc3339_format() writes without printf are printf's,
 * from year 0 to 9999 (and around the edges, where printf takes over). */
static void test_rfc3339_format_digits(void)
{
        static const int64_t edges[] = {
                0,
                999,
                -1,
                -62167219200000LL, /* 0000-01-01T00:00:00.000Z */
                -62167219200001LL, /* year -1: printf */
                253402300799999LL, /* 9999-12-31T23:59:59.999Z */
                253402300800000LL, /* year 10000: printf */
                951782400000LL,    /* 2000-02-29 */
                4102444799999LL,
        };
        uint64_t x = 88172645463325252ULL;
        int i, bad = 0;

        for (i = 0; i < 20000 + (int)(sizeof(edges) / sizeof(edges[0])); i++) {
                int64_t ms, secs;
                char got[40], want[40];
                struct tm tm;
                time_t tt;
                int msec;

                if (i < (int)(sizeof(edges) / sizeof(edges[0]))) {
                        ms = edges[i];
                } else {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        ms = (int64_t)(x % 315569520000000ULL) -
                             62167219200000LL;
                }
                secs = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
                msec = (int)(ms - secs * 1000);
                tt = (time_t)secs;
                gmtime_r(&tt, &tm);
                snprintf(want, sizeof(want),
                         "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                         tm.tm_hour, tm.tm_min, tm.tm_sec, msec);
                eb_rfc3339_format(ms, 3, got, sizeof(got));
                if (strcmp(got, want) && !bad++)
                        fprintf(stderr, "  %lld: %s, printf %s\n",
                                (long long)ms, got, want);
        }
        EB_CHECK_INT(bad, 0);
}

/* Integer ids as text, written without printf: as printf writes them. */
static void test_id_text(void)
{
        static const json_int_t ids[] = {
                0, 7, -7, 10, 20001478, INT64_MAX, INT64_MIN, -1000000000000LL};
        size_t i;

        for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
                json_t *v = json_integer(ids[i]);
                char *got = eb_jfield_id_text(v), want[32];

                snprintf(want, sizeof(want), "%lld", (long long)ids[i]);
                EB_CHECK_STR(got, want);
                free(got);
                json_decref(v);
        }
}

static void test_start(void)
{
        int64_t ms;

        EB_CHECK(eb_time_parse_start("now", 5000000, &ms) == 0 &&
                 ms == 5000000);
        EB_CHECK(eb_time_parse_start("1h", 5000000, &ms) == 0 &&
                 ms == 5000000 - 3600000);
        EB_CHECK(eb_time_parse_start("1970-01-01T00:00:01Z", 0, &ms) == 0 &&
                 ms == 1000);
        EB_CHECK(eb_time_parse_start("yesterday", 0, &ms) == -EINVAL);
}

static void test_parse_numbers(void)
{
        int64_t v;
        double d;

        EB_CHECK(eb_parse_i64("42", &v) == 0 && v == 42);
        EB_CHECK(eb_parse_i64("4x", &v) == -EINVAL);
        EB_CHECK(eb_parse_i64("", &v) == -EINVAL);
        EB_CHECK(eb_parse_i64("99999999999999999999", &v) == -ERANGE);
        EB_CHECK(eb_parse_double("1.5", &d) == 0 && d == 1.5);
        EB_CHECK(eb_parse_double("nan", &d) == -EINVAL);
        EB_CHECK(eb_parse_double("1.5s", &d) == -EINVAL);
}

static void test_base64(void)
{
        char *s;

        s = eb_base64_encode("", 0);
        EB_CHECK_STR(s, "");
        free(s);
        s = eb_base64_encode("f", 1);
        EB_CHECK_STR(s, "Zg==");
        free(s);
        s = eb_base64_encode("fo", 2);
        EB_CHECK_STR(s, "Zm8=");
        free(s);
        s = eb_base64_encode("foo", 3);
        EB_CHECK_STR(s, "Zm9v");
        free(s);
        s = eb_base64_encode("\xff\xfe\xfd\x00", 4);
        EB_CHECK_STR(s, "//79AA==");
        free(s);
        s = eb_base64_encode("foobar", 6);
        EB_CHECK_STR(s, "Zm9vYmFy");
        free(s);
}

int main(void)
{
        EB_RUN(test_ct_equal);
        EB_RUN(test_hex);
        EB_RUN(test_base64);
        EB_RUN(test_hmac_rfc4231);
        EB_RUN(test_buf_limit);
        EB_RUN(test_buf_grow);
        EB_RUN(test_duration);
        EB_RUN(test_rfc3339);
        EB_RUN(test_rfc3339_format_digits);
        EB_RUN(test_id_text);
        EB_RUN(test_start);
        EB_RUN(test_parse_numbers);
        return eb_test_summary();
}
