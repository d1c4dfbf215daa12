/*
 * The application's metrics, rendered from a real run: eb_app on the
 * embedded Kafka cluster polls four simulated accounts, each driven into
 * a different state, and the /metrics text is checked for content and
 * shape:
 *
 *   kommo-1  healthy: publishes its backlog
 *   kommo-2  polled too fast for its 1 req/s limit: 429, then a 403 ban
 *   close-1  two 500s before it succeeds
 *   kota-1   one malformed body before it succeeds
 *
 * Usage: test_metrics_render [OUT]  (OUT: also write the final text there,
 * for tests/integration/test_metrics_promtool.sh to hand to promtool)
 */
#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>
#include <math.h>

#include "eb_app.h"
#include "eb_config.h"
#include "eb_metrics.h"
#include "eb_test.h"
#include "eb_time.h"
#include "sim_harness.h"

static const char *out_path;

/* ---- the exposition text ------------------------------------------------ */

/* Value of the sample line that starts with exactly @p series (name and
 * labels as rendered), or NAN when there is none. */
static double value_of(const char *text, const char *series)
{
        size_t n = strlen(series);
        const char *p = text;

        while (p && *p) {
                if (!strncmp(p, series, n) && p[n] == ' ')
                        return strtod(p + n + 1, NULL);
                p = strchr(p, '\n');
                if (p)
                        p++;
        }
        return NAN;
}

static double src_value(const char *text, const char *family,
                        const char *source, const char *provider,
                        const char *extra)
{
        char series[512];

        snprintf(series, sizeof(series),
                 "%s{source=\"%s\",provider=\"%s\"%s%s}", family, source,
                 provider, extra ? "," : "", extra ? extra : "");
        return value_of(text, series);
}

/* Families whose samples exist for every source, once they have run. */
static const char *const source_families[] = {
        "evbridge_source_polls_total",
        "evbridge_source_requests_total",
        "evbridge_source_pages_total",
        "evbridge_source_events_received_total",
        "evbridge_source_rate_limited_total",
        "evbridge_source_slowdowns_total",
        "evbridge_source_checkpoints_committed_total",
        "evbridge_source_slice_splits_total",
        "evbridge_source_events_published_total",
        "evbridge_source_duplicates_dropped_total",
        "evbridge_source_backoff_seconds",
        "evbridge_source_banned",
        "evbridge_source_checkpoint_lag_seconds",
        "evbridge_source_last_poll_timestamp_seconds",
};

static const char *const global_families[] = {
        "evbridge_build_info",
        "evbridge_process_start_time_seconds",
        "evbridge_kafka_messages_produced_total",
        "evbridge_kafka_messages_delivered_total",
        "evbridge_kafka_messages_failed_total",
        "evbridge_kafka_queue_full_total",
        "evbridge_kafka_producer_queue_messages",
        "evbridge_kafka_embedded",
        "evbridge_kafka_transactions_committed_total",
        "evbridge_kafka_transactions_aborted_total",
        "evbridge_kafka_delivery_latency_seconds",
        "evbridge_publish_pending_batches",
        "evbridge_dedupe_entries",
        "evbridge_dedupe_capacity",
        "evbridge_dedupe_window_seconds",
        "evbridge_dedupe_evictions_total",
        "evbridge_dedupe_memory_bytes",
        "evbridge_source_errors_total",
        "evbridge_source_state",
};

static const struct {
        const char *name, *provider;
} sources[] = {
        {"kommo-1", "kommo"},
        {"kommo-2", "kommo"},
        {"close-1", "close"},
        {"kota-1", "kota"},
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Everything the run is waiting for has shown up in the metrics. */
static int ready(const char *text)
{
        size_t i;

        for (i = 0; i < NELEM(sources); i++) {
                const char *s = sources[i].name, *p = sources[i].provider;
                if (!(src_value(text, "evbridge_source_events_published_total",
                                s, p, NULL) > 0))
                        return 0;
                if (!(src_value(text, "evbridge_source_polls_total", s, p,
                                NULL) > 0))
                        return 0;
        }
        return src_value(text, "evbridge_source_banned", "kommo-2", "kommo",
                         NULL) == 1 &&
               src_value(text, "evbridge_source_errors_total", "close-1",
                         "close", "kind=\"5xx\"") >= 2 &&
               src_value(text, "evbridge_source_errors_total", "kota-1", "kota",
                         "kind=\"body\"") >= 1;
}

/* ---- running the app ------------------------------------------------------
 */

struct run {
        eb_app_t *app;
        struct event *tick;
        int64_t deadline_ms;
        int ready;
        char *text; /* last rendering (owned) */
};

static char *render_app(eb_app_t *app)
{
        struct eb_buf b;

        eb_buf_init(&b, 16 * 1024 * 1024);
        if (eb_metrics_render(eb_app_metrics(app), &b) != 0) {
                eb_buf_fini(&b);
                return NULL;
        }
        return eb_buf_take(&b, NULL);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
        struct run *r = arg;
        struct timeval tv = {0, 250 * 1000};

        (void)fd;
        (void)what;
        free(r->text);
        r->text = render_app(r->app);
        if (r->text && ready(r->text)) {
                r->ready = 1;
                event_base_loopbreak(eb_app_base(r->app));
                return;
        }
        if (eb_mono_ms() >= r->deadline_ms) {
                event_base_loopbreak(eb_app_base(r->app));
                return;
        }
        evtimer_add(r->tick, &tv);
}

/* One run, shared by the cases below. */
static struct eb_sim g_sim;
static int g_sim_up;
static struct run g_run;
static json_t *g_root;
static char *g_js;
static const char *g_text; /* the final rendering (owned by g_run) */

static double published_total(const char *text)
{
        double sum = 0;
        size_t i;

        for (i = 0; i < NELEM(sources); i++)
                sum += src_value(text, "evbridge_source_events_published_total",
                                 sources[i].name, sources[i].provider, NULL);
        return sum;
}

static json_t *source_json(const struct eb_sim *sim, const char *name,
                           const char *provider)
{
        json_t *src = json_pack("{s:s, s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s}}",
                                "name", name, "provider", provider, "base_url",
                                eb_sim_str(sim, name, "base_url"), "poll",
                                "interval", "1s", "start", "2h", "http",
                                "timeout", "3s", "connect_timeout", "1s");
        json_t *cred = json_object();

        if (!strcmp(provider, "kommo"))
                json_object_set_new(cred, "token",
                                    json_string(eb_sim_str(
                                            sim, name, "credentials.token")));
        else
                json_object_set_new(cred, "api_key",
                                    json_string(eb_sim_str(
                                            sim, name, "credentials.api_key")));
        json_object_set_new(src, "credentials", cred);
        if (!strcmp(name, "kommo-2")) {
                /* Far faster than the account's 1 req/s: 429, then ban. */
                json_object_set_new(json_object_get(src, "poll"), "interval",
                                    json_string("100ms"));
                json_object_set_new(src, "rate_limit",
                                    json_pack("{s:i, s:i, s:b}", "rps", 50,
                                              "burst", 20, "above_documented",
                                              1));
        }
        return src;
}

static void test_run_app(void)
{
        const char *args[] = {"--accounts", "kommo=2,close=1,kota=1",
                              "--backlog", "40", "--backlog-span", "1h",
                              "--rate", "1", "--kommo-rps", "kommo-2=1",
                              "--kommo-ban-after", "kommo-2=1",
                              "--kommo-ban-duration", "kommo-2=10m",
                              /* only kommo-2 is banned: a ban of the
                               * client address would stop kommo-1 too */
                              "--kommo-ban-scope", "account", "--faults",
                              "close-1=500@next=2", "--faults",
                              "kota-1=malformed@next=1", NULL};
        struct run *r = &g_run;
        json_t *srcs;
        struct eb_config *cfg = NULL;
        char errstr[1024];
        const char *text;
        size_t i;

        EB_REQUIRE(eb_sim_start(args, &g_sim) == 0);
        g_sim_up = 1;

        srcs = json_array();
        for (i = 0; i < NELEM(sources); i++)
                json_array_append_new(srcs, source_json(&g_sim, sources[i].name,
                                                        sources[i].provider));
        g_root = json_pack("{s:{s:s}, s:{s:n}, s:{s:s, s:i}, s:{s:s}, s:o}",
                           "kafka", "topic_prefix", "crm", "http", "listen",
                           "dedupe", "window", "1h", "capacity", 5000, "log",
                           "level", "warn", "sources", srcs);
        g_js = json_dumps(g_root, 0);
        cfg = eb_config_load_string(g_js, errstr, sizeof(errstr));
        if (!cfg)
                fprintf(stderr, "  config: %s\n", errstr);
        EB_CHECK(cfg != NULL);
        if (!cfg)
                return;
        r->app = eb_app_new(cfg, errstr, sizeof(errstr));
        if (!r->app) {
                fprintf(stderr, "  app: %s\n", errstr);
                eb_config_free(cfg);
        }
        EB_CHECK(r->app != NULL);
        if (!r->app)
                return;

        r->tick = evtimer_new(eb_app_base(r->app), on_tick, r);
        r->deadline_ms = eb_mono_ms() + EB_T_TMOUT(45000);
        {
                struct timeval tv = {0, 250 * 1000};
                evtimer_add(r->tick, &tv);
        }
        EB_CHECK_INT(eb_app_run(r->app), 0);
        free(r->text);
        r->text = render_app(r->app);
        EB_CHECK(r->text != NULL);
        if (!r->text)
                return;
        text = r->text;
        if (!r->ready)
                fprintf(stderr,
                        "  not every expectation was met in time; "
                        "last rendering:\n%s\n",
                        text);
        EB_CHECK(r->ready);
        g_text = text;

        if (out_path) {
                FILE *fp = fopen(out_path, "w");
                EB_CHECK(fp != NULL);
                if (fp) {
                        EB_CHECK(fputs(text, fp) >= 0);
                        EB_CHECK(fclose(fp) == 0);
                }
        }
}

static void test_every_family(void)
{
        const char *text = g_text;
        size_t i;
        EB_REQUIRE(text);
        /* Every family is declared once, and has samples. */
        for (i = 0; i < NELEM(global_families) + NELEM(source_families); i++) {
                const char *f =
                        i < NELEM(global_families)
                                ? global_families[i]
                                : source_families[i - NELEM(global_families)];
                char decl[256];
                const char *p;
                snprintf(decl, sizeof(decl), "\n# TYPE %s ", f);
                p = strstr(text, decl);
                if (!p)
                        fprintf(stderr, "  family %s missing\n", f);
                EB_CHECK(p != NULL);
                if (p)
                        EB_CHECK(strstr(p + 1, decl) == NULL);
                snprintf(decl, sizeof(decl), "\n%s", f);
                p = strstr(text, decl);
                EB_CHECK(p != NULL &&
                         (p[strlen(decl)] == '{' || p[strlen(decl)] == ' ' ||
                          p[strlen(decl)] == '_'));
        }
}

static void test_per_source(void)
{
        const char *text = g_text;
        char series[256];
        size_t i, j;
        EB_REQUIRE(text);
        /* Per source: every counter family has the source, exactly one
         * state is 1, all six error kinds are present. */
        for (i = 0; i < NELEM(sources); i++) {
                const char *s = sources[i].name, *p = sources[i].provider;
                static const char *const states[] = {"idle",     "waiting",
                                                     "fetching", "publishing",
                                                     "backoff",  "stopped"};
                static const char *const kinds[] = {
                        "http", "5xx", "body", "auth", "client", "publish"};
                double ones = 0;

                for (j = 0; j < NELEM(source_families); j++) {
                        double v =
                                src_value(text, source_families[j], s, p, NULL);
                        if (isnan(v))
                                fprintf(stderr, "  %s: no %s sample\n", s,
                                        source_families[j]);
                        EB_CHECK(!isnan(v) && v >= 0);
                }
                for (j = 0; j < NELEM(states); j++) {
                        double v;
                        snprintf(series, sizeof(series), "state=\"%s\"",
                                 states[j]);
                        v = src_value(text, "evbridge_source_state", s, p,
                                      series);
                        EB_CHECK(v == 0 || v == 1);
                        ones += v;
                }
                EB_CHECK(ones == 1);
                for (j = 0; j < NELEM(kinds); j++) {
                        snprintf(series, sizeof(series), "kind=\"%s\"",
                                 kinds[j]);
                        EB_CHECK(!isnan(
                                src_value(text, "evbridge_source_errors_total",
                                          s, p, series)));
                }
                EB_CHECK(src_value(text, "evbridge_source_requests_total", s, p,
                                   NULL) >=
                         src_value(text, "evbridge_source_pages_total", s, p,
                                   NULL));
                EB_CHECK(src_value(text,
                                   "evbridge_source_events_received_total", s,
                                   p, NULL) >=
                         src_value(text,
                                   "evbridge_source_events_published_total", s,
                                   p, NULL));
        }
}

static void test_driven_states(void)
{
        const char *text = g_text;

        EB_REQUIRE(text);
        /* The states each account was driven into. */
        EB_CHECK(src_value(text, "evbridge_source_banned", "kommo-1", "kommo",
                           NULL) == 0);
        EB_CHECK(src_value(text, "evbridge_source_state", "kommo-2", "kommo",
                           "state=\"stopped\"") == 1);
        EB_CHECK(src_value(text, "evbridge_source_rate_limited_total",
                           "kommo-2", "kommo", NULL) >= 1);
        EB_CHECK(src_value(text, "evbridge_source_errors_total", "close-1",
                           "close", "kind=\"5xx\"") >= 2);
        EB_CHECK(src_value(text, "evbridge_source_errors_total", "kota-1",
                           "kota", "kind=\"body\"") >= 1);
        EB_CHECK(src_value(text, "evbridge_source_errors_total", "kommo-1",
                           "kommo", "kind=\"auth\"") == 0);
        /* Backlog events are at most 1h old (plus the run). */
        EB_CHECK(src_value(text, "evbridge_source_checkpoint_lag_seconds",
                           "kommo-1", "kommo", NULL) < 3600 + 120);
}

static void test_kafka(void)
{
        const char *text = g_text;
        double produced, delivered, failed, count, inf;
        double published = published_total(text);
        char series[256];
        size_t j;
        EB_REQUIRE(text);
        /* Kafka: every report is in the histogram; buckets cumulate. */
        produced = value_of(text, "evbridge_kafka_messages_produced_total");
        delivered = value_of(text, "evbridge_kafka_messages_delivered_total");
        failed = value_of(text, "evbridge_kafka_messages_failed_total");
        count = value_of(text, "evbridge_kafka_delivery_latency_seconds_count");
        inf = value_of(text, "evbridge_kafka_delivery_latency_seconds_bucket"
                             "{le=\"+Inf\"}");
        EB_CHECK(delivered >= published && published > 0);
        EB_CHECK(produced >= delivered + failed);
        EB_CHECK(count == delivered + failed);
        EB_CHECK(inf == count);
        EB_CHECK(value_of(text,
                          "evbridge_kafka_delivery_latency_seconds_sum") >= 0);
        {
                double prev = 0, v;
                const char *le[] = {"0.001", "0.0025", "0.005", "0.01", "0.025",
                                    "0.05",  "0.1",    "0.25",  "0.5",  "1",
                                    "2.5",   "5",      "10",    "30",   "+Inf"};
                for (j = 0; j < NELEM(le); j++) {
                        snprintf(series, sizeof(series),
                                 "evbridge_kafka_delivery_latency_seconds_"
                                 "bucket{le=\"%s\"}",
                                 le[j]);
                        v = value_of(text, series);
                        EB_CHECK(!isnan(v) && v >= prev);
                        prev = v;
                }
        }
        EB_CHECK(value_of(text, "evbridge_kafka_embedded") == 1);
        /* delivery "exactly-once" (the default): events went out in
         * committed transactions */
        EB_CHECK(value_of(text,
                          "evbridge_kafka_transactions_committed_total") >= 1);
}

static void test_dedupe(void)
{
        const char *text = g_text;
        double published = published_total(text);
        EB_REQUIRE(text);
        /* Dedupe: what the config asked for. */
        EB_CHECK(value_of(text, "evbridge_dedupe_capacity") == 5000);
        EB_CHECK(value_of(text, "evbridge_dedupe_window_seconds") == 3600);
        EB_CHECK(value_of(text, "evbridge_dedupe_entries") >= published);
        EB_CHECK(value_of(text, "evbridge_dedupe_memory_bytes") > 0);
        EB_CHECK(value_of(text, "evbridge_dedupe_evictions_total"
                                "{reason=\"capacity\"}") == 0);
        EB_CHECK(!isnan(value_of(text, "evbridge_dedupe_evictions_total"
                                       "{reason=\"window\"}")));
}

static void test_process(void)
{
        const char *text = g_text;
        char series[256];
        EB_REQUIRE(text);
        /* The gitrev is the library's (it may predate this file's). */
        snprintf(series, sizeof(series),
                 "\nevbridge_build_info{version=\"%s\",gitrev=\"", EB_VERSION);
        {
                const char *p = strstr(text, series);
                EB_CHECK(p != NULL);
                if (p) {
                        const char *rev = p + strlen(series);
                        const char *end = strchr(rev, '"');
                        EB_CHECK(end && end > rev &&
                                 !strncmp(end, "\"} 1\n", 5));
                }
        }
        EB_CHECK(fabs(value_of(text, "evbridge_process_start_time_seconds") -
                      (double)eb_now_ms() / 1000.0) < 600);
}

static void test_teardown(void)
{
        if (g_run.tick)
                event_free(g_run.tick);
        eb_app_free(g_run.app);
        free(g_run.text);
        g_text = NULL;
        free(g_js);
        json_decref(g_root);
        if (g_sim_up)
                EB_CHECK(eb_sim_stop(&g_sim) == 0);
}

int main(int argc, char **argv)
{
        if (argc > 1)
                out_path = argv[1];
        curl_global_init(CURL_GLOBAL_DEFAULT);
        EB_RUN(test_run_app);
        EB_RUN(test_every_family);
        EB_RUN(test_per_source);
        EB_RUN(test_driven_states);
        EB_RUN(test_kafka);
        EB_RUN(test_dedupe);
        EB_RUN(test_process);
        EB_RUN(test_teardown);
        curl_global_cleanup();
        return eb_test_summary();
}
