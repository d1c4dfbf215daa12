/* Unit tests for eb_ratelimit: RateLimit and Retry-After parsing. */
#include "eb_ratelimit.h"
#include "eb_test.h"
#include "eb_time.h"

#include <errno.h>

static void test_ratelimit_ok(void)
{
        static const struct {
                const char *hdr;
                double limit, remaining, reset;
        } cases[] = {
                {"limit=100, remaining=50, reset=5", 100, 50, 5},
                {"limit=100, remaining=50, reset=0.734", 100, 50, 0.734},
                {"remaining=0,limit=10,reset=2", 10, 0, 2},
                {" limit = 100 ; remaining=1 ; reset=3 ", 100, 1, 3},
                {"reset=1.5", -1, -1, 1.5},
                {"limit=20, remaining=19", 20, 19, -1},
                {"LIMIT=7, Remaining=6, Reset=0.25", 7, 6, 0.25},
                {"policy=\"burst\", limit=1, reset=1", 1, -1, 1},
                {"limit=100, remaining=50, reset=5,", 100, 50, 5},
                {"limit=100, remaining=50, reset=5.", 100, 50, 5},
        };
        size_t i;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                double l = -2, r = -2, s = -2;
                int rc = eb_ratelimit_parse(cases[i].hdr, &l, &r, &s);

                if (rc != 0)
                        fprintf(stderr, "  case %zu: %s\n", i, cases[i].hdr);
                EB_CHECK_INT(rc, 0);
                EB_CHECK(l == cases[i].limit);
                EB_CHECK(r == cases[i].remaining);
                EB_CHECK(s == cases[i].reset);
        }
}

static void test_ratelimit_bad(void)
{
        static const char *const cases[] = {
                "",
                "   ",
                "limit",
                "limit=",
                "limit=abc",
                "limit=-1",
                "limit=+1",
                "limit=1e3",
                "limit=1 remaining=2",
                "limit=1, limit=2",
                "foo=1",
                "=5",
                "limit=0x10",
                "reset=nan",
                "reset=inf",
        };
        char big[EB_RATELIMIT_MAX_HEADER + 64];
        size_t i;
        double l = 0, r = 0, s = 0;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                int rc = eb_ratelimit_parse(cases[i], &l, &r, &s);

                if (rc != -EINVAL)
                        fprintf(stderr, "  case %zu: \"%s\"\n", i, cases[i]);
                EB_CHECK_INT(rc, -EINVAL);
                EB_CHECK(l == -1 && r == -1 && s == -1);
        }
        EB_CHECK_INT(eb_ratelimit_parse(NULL, &l, &r, &s), -EINVAL);
        memset(big, ' ', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        memcpy(big + sizeof(big) - 10, "reset=1.0", 9);
        EB_CHECK_INT(eb_ratelimit_parse(big, &l, &r, &s), -EINVAL);
        /* NULL outputs are allowed. */
        EB_CHECK_INT(eb_ratelimit_parse("reset=1", NULL, NULL, NULL), 0);
}

static void test_reset_ms(void)
{
        EB_CHECK_INT(eb_ratelimit_reset_ms(0.734), 734);
        EB_CHECK_INT(eb_ratelimit_reset_ms(0.7341), 735);
        EB_CHECK_INT(eb_ratelimit_reset_ms(0.0001), 1);
        EB_CHECK_INT(eb_ratelimit_reset_ms(5), 5000);
        EB_CHECK_INT(eb_ratelimit_reset_ms(1.5), 1500);
        EB_CHECK_INT(eb_ratelimit_reset_ms(0), 0);
        EB_CHECK_INT(eb_ratelimit_reset_ms(-3), 0);
        EB_CHECK_INT(eb_ratelimit_reset_ms(1e12), EB_RATELIMIT_MAX_WAIT_MS);
}

static void test_retry_after_delta(void)
{
        static const struct {
                const char *hdr;
                int64_t ms;
        } cases[] = {
                {"120", 120000},
                {" 5 ", 5000},
                {"0", 0},
                {"1.5", 1500},
                {"0.001", 1},
                {"300", 300000},
                {"86400", 86400000},
                {"99999999999", EB_RATELIMIT_MAX_WAIT_MS},
        };
        size_t i;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                int64_t ms = -1;

                EB_CHECK_INT(eb_retry_after_parse(cases[i].hdr, 0, &ms), 0);
                EB_CHECK_INT(ms, cases[i].ms);
        }
}

static void test_retry_after_date(void)
{
        int64_t at, ms = -1;

        /* 2015-10-21T07:28:00Z, in the three HTTP-date formats. */
        EB_REQUIRE(eb_rfc3339_parse("2015-10-21T07:28:00Z", &at) == 0);
        EB_CHECK_INT(eb_retry_after_parse("Wed, 21 Oct 2015 07:28:00 GMT",
                                          at - 30000, &ms),
                     0);
        EB_CHECK_INT(ms, 30000);
        ms = -1;
        EB_CHECK_INT(eb_retry_after_parse("Wednesday, 21-Oct-15 07:28:00 GMT",
                                          at - 1500, &ms),
                     0);
        EB_CHECK_INT(ms, 1500);
        ms = -1;
        EB_CHECK_INT(eb_retry_after_parse("Wed Oct 21 07:28:00 2015",
                                          at - 60000, &ms),
                     0);
        EB_CHECK_INT(ms, 60000);
        /* asctime pads a one-digit day with a space. */
        EB_REQUIRE(eb_rfc3339_parse("1994-11-06T08:49:37Z", &at) == 0);
        ms = -1;
        EB_CHECK_INT(eb_retry_after_parse("Sun Nov  6 08:49:37 1994", at - 2000,
                                          &ms),
                     0);
        EB_CHECK_INT(ms, 2000);
        ms = -1;
        EB_CHECK_INT(eb_retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT",
                                          at - 2000, &ms),
                     0);
        EB_CHECK_INT(ms, 2000);
        /* A date in the past: no wait. */
        ms = -1;
        EB_CHECK_INT(eb_retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT",
                                          at + 10000, &ms),
                     0);
        EB_CHECK_INT(ms, 0);
        /* Far future: clamped to a day. */
        ms = -1;
        EB_CHECK_INT(
                eb_retry_after_parse("Fri, 01 Jan 2100 00:00:00 GMT", at, &ms),
                0);
        EB_CHECK_INT(ms, EB_RATELIMIT_MAX_WAIT_MS);
        /* Leap day. */
        EB_CHECK_INT(
                eb_retry_after_parse("Thu, 29 Feb 2024 00:00:00 GMT", 0, &ms),
                0);
}

static void test_retry_after_bad(void)
{
        static const char *const cases[] = {
                "",
                "  ",
                "soon",
                "-5",
                "5s",
                "1e3",
                "Wed, 32 Oct 2015 07:28:00 GMT",
                "Wed, 21 Foo 2015 07:28:00 GMT",
                "Wed, 21 Oct 2015 07:28:00 UTC",
                "Wed, 21 Oct 2015 25:28:00 GMT",
                "Wed, 21 Oct 2015 07:28 GMT",
                "Xyz, 21 Oct 2015 07:28:00 GMT",
                "Wed, 21 Oct 2015 07:28:00 GMT trailing",
                "Thu, 29 Feb 2023 00:00:00 GMT",
                "Wed Oct 21 07:28:00",
        };
        size_t i;
        int64_t ms = 42;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                int rc = eb_retry_after_parse(cases[i], 0, &ms);

                if (rc != -EINVAL)
                        fprintf(stderr, "  case %zu: \"%s\"\n", i, cases[i]);
                EB_CHECK_INT(rc, -EINVAL);
        }
        EB_CHECK_INT(eb_retry_after_parse(NULL, 0, &ms), -EINVAL);
        EB_CHECK_INT(ms, 42); /* untouched on error */
}

int main(void)
{
        EB_RUN(test_ratelimit_ok);
        EB_RUN(test_ratelimit_bad);
        EB_RUN(test_reset_ms);
        EB_RUN(test_retry_after_delta);
        EB_RUN(test_retry_after_date);
        EB_RUN(test_retry_after_bad);
        return eb_test_summary();
}
