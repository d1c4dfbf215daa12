/*
 * Unit tests for eb_metrics (the Prometheus text writer and the collector
 * registry) and the process collector of eb_metrics_collect. Every check
 * compares whole rendered lines, so a stray space or a lost escape fails.
 */
#include "eb_metrics.h"
#include "eb_metrics_collect.h"
#include "eb_test.h"
#include "eb_util.h"

#include <errno.h>
#include <math.h>

/* Render one collector into a fresh string (caller frees), or NULL. */
static char *render_one(eb_metrics_collect_cb *fn, void *opaque, int *rcp)
{
        eb_metrics_t *m = eb_metrics_new();
        struct eb_buf b;
        int rc;

        eb_buf_init(&b, 0);
        eb_metrics_add_collector(m, fn, opaque);
        rc = eb_metrics_render(m, &b);
        eb_metrics_free(m);
        if (rcp)
                *rcp = rc;
        if (!b.data)
                return eb_xstrdup("");
        return eb_buf_take(&b, NULL);
}

/* ---- escaping ----------------------------------------------------------- */

static void collect_escapes(struct eb_prom *w, void *opaque)
{
        const char *lbl[] = {"path", "C:\\dir \"q\"\nnext", "empty", "", NULL};

        (void)opaque;
        eb_prom_family(w, "t_escape", "gauge",
                       "Help with \\ backslash, \"quotes\" and\nnewline.");
        eb_prom_sample(w, NULL, lbl, 1);
}

static void test_escaping(void)
{
        int rc = -1;
        char *out = render_one(collect_escapes, NULL, &rc);

        EB_CHECK_INT(rc, 0);
        /* HELP escapes backslash and newline only; label values also
         * escape the double quote. */
        EB_CHECK_STR(out,
                     "# HELP t_escape Help with \\\\ backslash, \"quotes\" "
                     "and\\nnewline.\n"
                     "# TYPE t_escape gauge\n"
                     "t_escape{path=\"C:\\\\dir \\\"q\\\"\\nnext\","
                     "empty=\"\"} 1\n");
        free(out);
}

/* ---- value formatting --------------------------------------------------- */

static const struct {
        double v;
        const char *text;
} values[] = {
        {0, "0"},
        {1, "1"},
        {-3, "-3"},
        {42, "42"},
        {1e15, "1000000000000000"},
        {9007199254740991.0, "9007199254740991"}, /* 2^53 - 1 */
        {9007199254740992.0, "9007199254740992"}, /* 2^53: %g form */
        {1e20, "1e+20"},
        {0.5, "0.5"},
        {0.1, "0.1"}, /* shortest round trip, not 0.10000000000000001 */
        {0.001, "0.001"},
        {-1.25, "-1.25"},
        {1.0 / 3.0, "0.3333333333333333"}, /* 16 digits */
        {1e-9, "1e-09"},
        {0.1 + 0.2, "0.30000000000000004"}, /* 17 digits */
        {123.456, "123.456"},
};

static double test_value;

static void collect_value(struct eb_prom *w, void *opaque)
{
        (void)opaque;
        eb_prom_family(w, "t_v", "gauge", "v");
        eb_prom_sample(w, NULL, NULL, test_value);
}

static void check_value(double v, const char *text)
{
        char want[128];
        char *out;

        test_value = v;
        out = render_one(collect_value, NULL, NULL);
        snprintf(want, sizeof(want), "# HELP t_v v\n# TYPE t_v gauge\nt_v %s\n",
                 text);
        EB_CHECK_STR(out, want);
        free(out);
}

static void test_values(void)
{
        size_t i;

        for (i = 0; i < sizeof(values) / sizeof(values[0]); i++)
                check_value(values[i].v, values[i].text);
        check_value(INFINITY, "+Inf");
        check_value(-INFINITY, "-Inf");
        check_value(NAN, "NaN");
}

/* Every finite value written must read back as exactly the same double. */
static void test_values_round_trip(void)
{
        static const double vs[] = {0.1,           0.2,
                                    0.3,           1.0 / 3.0,
                                    2.5e-7,        123456.789,
                                    6.02214076e23, -7.25,
                                    4.9e-324,      1.7976931348623157e308};
        size_t i;

        for (i = 0; i < sizeof(vs) / sizeof(vs[0]); i++) {
                char *out, *p;

                test_value = vs[i];
                out = render_one(collect_value, NULL, NULL);
                p = strstr(out, "\nt_v ");
                EB_REQUIRE(p);
                EB_CHECK(strtod(p + 5, NULL) == vs[i]);
                free(out);
        }
}

/* ---- histogram ---------------------------------------------------------- */

static const double hb[] = {0.1, 0.5, 1, 2.5};
static struct eb_histogram test_h;

static void collect_hist(struct eb_prom *w, void *opaque)
{
        const char *lbl[] = {"op", "x", NULL};

        eb_prom_family(w, "t_seconds", "histogram", "Latency.");
        eb_prom_histogram(w, opaque ? lbl : NULL, &test_h);
}

static void test_histogram(void)
{
        static const double obs[] = {0.05, 0.1, 0.2, 0.5, 0.7, 3, 100};
        char *out;
        size_t i;

        eb_histogram_init(&test_h, hb, sizeof(hb) / sizeof(hb[0]));
        out = render_one(collect_hist, NULL, NULL);
        EB_CHECK_STR(out, "# HELP t_seconds Latency.\n"
                          "# TYPE t_seconds histogram\n"
                          "t_seconds_bucket{le=\"0.1\"} 0\n"
                          "t_seconds_bucket{le=\"0.5\"} 0\n"
                          "t_seconds_bucket{le=\"1\"} 0\n"
                          "t_seconds_bucket{le=\"2.5\"} 0\n"
                          "t_seconds_bucket{le=\"+Inf\"} 0\n"
                          "t_seconds_sum 0\n"
                          "t_seconds_count 0\n");
        free(out);

        /* Upper bounds are inclusive (le): 0.1 lands in the 0.1 bucket. */
        for (i = 0; i < sizeof(obs) / sizeof(obs[0]); i++)
                eb_histogram_observe(&test_h, obs[i]);
        EB_CHECK_INT(test_h.count, 7);
        out = render_one(collect_hist, (void *)1, NULL);
        EB_CHECK_STR(out, "# HELP t_seconds Latency.\n"
                          "# TYPE t_seconds histogram\n"
                          "t_seconds_bucket{op=\"x\",le=\"0.1\"} 2\n"
                          "t_seconds_bucket{op=\"x\",le=\"0.5\"} 4\n"
                          "t_seconds_bucket{op=\"x\",le=\"1\"} 5\n"
                          "t_seconds_bucket{op=\"x\",le=\"2.5\"} 5\n"
                          "t_seconds_bucket{op=\"x\",le=\"+Inf\"} 7\n"
                          "t_seconds_sum{op=\"x\"} 104.55\n"
                          "t_seconds_count{op=\"x\"} 7\n");
        free(out);
        eb_histogram_fini(&test_h);
        EB_CHECK(test_h.counts == NULL);
        eb_histogram_fini(&test_h); /* twice is harmless */
}

/* ---- registry ----------------------------------------------------------- */

static void collect_named(struct eb_prom *w, void *opaque)
{
        const char *name = opaque;

        eb_prom_family(w, name, "counter", "c");
        eb_prom_sample(w, NULL, NULL, 1);
}

static void collect_other(struct eb_prom *w, void *opaque)
{
        collect_named(w, opaque);
}

static char *render(eb_metrics_t *m, int *rcp)
{
        struct eb_buf b;
        int rc;

        eb_buf_init(&b, 0);
        rc = eb_metrics_render(m, &b);
        if (rcp)
                *rcp = rc;
        if (!b.data)
                return eb_xstrdup("");
        return eb_buf_take(&b, NULL);
}

/* The family names in render order, space-separated. */
static void families(const char *text, char *out, size_t sz)
{
        const char *p = text;
        size_t n = 0;

        out[0] = '\0';
        while ((p = strstr(p, "# TYPE "))) {
                const char *e;
                p += 7;
                e = strchr(p, ' ');
                if (!e)
                        break;
                n += (size_t)snprintf(out + n, sz - n, "%s%.*s", n ? " " : "",
                                      (int)(e - p), p);
                if (n >= sz)
                        break;
                p = e;
        }
}

static void test_registry(void)
{
        eb_metrics_t *m = eb_metrics_new();
        char a[] = "a_total", b[] = "b_total", c[] = "c_total";
        char d[] = "d_total";
        char names[256];
        char *out;
        int rc = -1;

        out = render(m, &rc);
        EB_CHECK_INT(rc, 0);
        EB_CHECK_STR(out, "");
        free(out);

        eb_metrics_add_collector(m, collect_named, a);
        eb_metrics_add_collector(m, collect_named, b);
        eb_metrics_add_collector(m, collect_named, c);
        out = render(m, NULL);
        families(out, names, sizeof(names));
        EB_CHECK_STR(names, "a_total b_total c_total");
        free(out);

        /* Middle, then a pair that does not match (same opaque, other fn;
         * same fn, other opaque): no-ops. */
        eb_metrics_remove_collector(m, collect_named, b);
        eb_metrics_remove_collector(m, collect_other, a);
        eb_metrics_remove_collector(m, collect_named, d);
        out = render(m, NULL);
        families(out, names, sizeof(names));
        EB_CHECK_STR(names, "a_total c_total");
        free(out);

        /* Removing the tail must keep appends working. */
        eb_metrics_remove_collector(m, collect_named, c);
        eb_metrics_add_collector(m, collect_other, d);
        out = render(m, NULL);
        families(out, names, sizeof(names));
        EB_CHECK_STR(names, "a_total d_total");
        free(out);

        /* Removing the head, then everything, then adding again. */
        eb_metrics_remove_collector(m, collect_named, a);
        eb_metrics_remove_collector(m, collect_other, d);
        out = render(m, NULL);
        EB_CHECK_STR(out, "");
        free(out);
        eb_metrics_add_collector(m, collect_named, b);
        out = render(m, NULL);
        families(out, names, sizeof(names));
        EB_CHECK_STR(names, "b_total");
        free(out);

        eb_metrics_free(m);
        eb_metrics_free(NULL);
}

/* A limited buffer makes rendering fail cleanly, and collectors after the
 * failure are not run. */
static int late_calls;

static void collect_late(struct eb_prom *w, void *opaque)
{
        (void)w;
        (void)opaque;
        late_calls++;
}

static void test_render_limit(void)
{
        eb_metrics_t *m = eb_metrics_new();
        char a[] = "a_long_family_name_total";
        struct eb_buf b;
        int rc;

        eb_metrics_add_collector(m, collect_named, a);
        eb_metrics_add_collector(m, collect_late, NULL);
        eb_buf_init(&b, 16);
        rc = eb_metrics_render(m, &b);
        EB_CHECK(rc < 0);
        EB_CHECK(b.len <= 16);
        EB_CHECK_INT(late_calls, 0);
        eb_buf_fini(&b);

        eb_buf_init(&b, 0);
        rc = eb_metrics_render(m, &b);
        EB_CHECK_INT(rc, 0);
        EB_CHECK_INT(late_calls, 1);
        eb_buf_fini(&b);
        eb_metrics_free(m);
}

/* ---- application collectors without modules ---------------------------- */

static void test_collect_process(void)
{
        struct eb_metrics_app app;
        eb_metrics_t *m = eb_metrics_new();
        char *out;
        int rc = -1;

        memset(&app, 0, sizeof(app));
        app.version = "1.2.3";
        app.gitrev = "abc\"def";
        app.start_time_ms = 1700000000250;
        eb_metrics_register_app(m, &app);
        out = render(m, &rc);
        EB_CHECK_INT(rc, 0);
        /* No poller, pipeline or Kafka: only the process families. */
        EB_CHECK_STR(out,
                     "# HELP evbridge_build_info Always 1; the labels name "
                     "the running build.\n"
                     "# TYPE evbridge_build_info gauge\n"
                     "evbridge_build_info{version=\"1.2.3\","
                     "gitrev=\"abc\\\"def\"} 1\n"
                     "# HELP evbridge_process_start_time_seconds Unix time "
                     "the process started.\n"
                     "# TYPE evbridge_process_start_time_seconds gauge\n"
                     "evbridge_process_start_time_seconds 1700000000.25\n"
                     "# HELP evbridge_state_transitions_illegal_total State "
                     "changes that their machine's table does not allow (a "
                     "bug, logged with both states); 0 is healthy.\n"
                     "# TYPE evbridge_state_transitions_illegal_total "
                     "counter\n"
                     "evbridge_state_transitions_illegal_total 0\n");
        free(out);

        /* Unknown start time: the family is left out, not written as 0. */
        app.start_time_ms = 0;
        app.version = NULL;
        out = render(m, NULL);
        EB_CHECK(strstr(out, "evbridge_build_info{version=\"\",") != NULL);
        EB_CHECK(strstr(out, "start_time") == NULL);
        free(out);

        eb_metrics_unregister_app(m, &app);
        out = render(m, NULL);
        EB_CHECK_STR(out, "");
        free(out);
        eb_metrics_free(m);
}

int main(void)
{
        EB_RUN(test_escaping);
        EB_RUN(test_values);
        EB_RUN(test_values_round_trip);
        EB_RUN(test_histogram);
        EB_RUN(test_registry);
        EB_RUN(test_render_limit);
        EB_RUN(test_collect_process);
        return eb_test_summary();
}
