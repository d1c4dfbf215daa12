/*
 * Unit tests for eb_config: defaults, a full config with every key,
 * interpolation (${VAR}, ${file:}, "$${"), exact error messages for broken
 * values, every broken fixture listed in tests/fixtures/config/bad-cases.txt,
 * and secret registration.
 */
#include "eb_config.h"
#include "eb_log.h"
#include "eb_test.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KIB ((size_t)1024)
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)

static int contains(const char *hay, const char *needle)
{
        return hay && needle && strstr(hay, needle) != NULL;
}

/* Write @p len bytes to a new temp file. @returns new path or NULL. */
static char *write_temp(const void *data, size_t len)
{
        char *path = strdup("/tmp/eb_cfg_test_XXXXXX");
        FILE *fp;
        int fd;

        if (!path)
                return NULL;
        fd = mkstemp(path);
        if (fd < 0) {
                free(path);
                return NULL;
        }
        fp = fdopen(fd, "wb");
        if (!fp) {
                close(fd);
                unlink(path);
                free(path);
                return NULL;
        }
        if (len && fwrite(data, 1, len, fp) != len) {
                fclose(fp);
                unlink(path);
                free(path);
                return NULL;
        }
        fclose(fp);
        return path;
}

static void remove_temp(char *path)
{
        if (path)
                unlink(path);
        free(path);
}

/* ------------------------------------------------------------------ */

static void check_global_defaults(const struct eb_config *cfg)
{
        EB_CHECK(cfg->brokers == NULL);
        EB_CHECK_INT(cfg->embedded, 1);
        EB_CHECK_INT(cfg->embedded_brokers, 1);
        EB_CHECK_STR(cfg->topic_prefix, "crm");
        EB_CHECK_STR(cfg->topic_template,
                     "{prefix}.{provider}.{entity}.{action}");
        EB_CHECK_STR(cfg->state_prefix, "evbridge");
        EB_CHECK_STR(cfg->transactional_id, "evbridge-main");
        EB_CHECK_INT(cfg->delivery, EB_DELIVERY_EXACTLY_ONCE);
        EB_CHECK_INT(cfg->envelope_binary, 0);
        EB_CHECK_INT(cfg->batch_linger_ms, 5);
        EB_CHECK_INT(cfg->batch_max_events, 5000);
        EB_CHECK_INT(cfg->queue_max_messages, 100000);
        EB_CHECK(cfg->properties == NULL);
        EB_CHECK_INT(cfg->properties_cnt, 0);
        EB_CHECK_STR(cfg->listen, "0.0.0.0:8080");
        EB_CHECK_STR(cfg->listen_host, "0.0.0.0");
        EB_CHECK_INT(cfg->listen_port, 8080);
        EB_CHECK_INT(cfg->http_max_body, MIB);
        EB_CHECK_INT(cfg->http_max_headers, 16 * KIB);
        EB_CHECK_INT(cfg->http_timeout_ms, 10000);
        EB_CHECK_INT(cfg->webhook_deadline_ms, 1500);
        EB_CHECK_INT(cfg->http_max_held, 10000);
        EB_CHECK_INT(cfg->dedupe_window_ms, 72LL * 3600 * 1000);
        EB_CHECK_INT(cfg->dedupe_capacity, 1000000);
        EB_CHECK_INT(cfg->log_level, EB_LOG_INFO);
        EB_CHECK_INT(cfg->log_format, EB_LOG_FMT_TEXT);
        EB_CHECK_INT(cfg->drain_timeout_ms, 20000);
        EB_CHECK(cfg->sources == NULL);
        EB_CHECK_INT(cfg->sources_cnt, 0);
}

static void test_new_default(void)
{
        struct eb_config *cfg = eb_config_new_default();

        EB_REQUIRE(cfg != NULL);
        check_global_defaults(cfg);
        eb_config_free(cfg);
        eb_config_free(NULL); /* no-op */
}

static void test_minimal_defaults(void)
{
        char err[512] = "";
        struct eb_config *cfg;
        const struct eb_source_cfg *src;

        cfg = eb_config_load_string("{}", err, sizeof(err));
        EB_REQUIRE(cfg != NULL);
        EB_CHECK_STR(cfg->path, "<string>");
        check_global_defaults(cfg);
        eb_config_free(cfg);

        cfg = eb_config_load_string(
                "{\"sources\": [{\"name\": \"only\", \"provider\": "
                "\"close\"}]}",
                err, sizeof(err));
        EB_REQUIRE(cfg != NULL);
        EB_REQUIRE(cfg->sources_cnt == 1);
        src = &cfg->sources[0];
        EB_CHECK_STR(src->name, "only");
        EB_CHECK_STR(src->provider, "close");
        EB_CHECK(src->base_url == NULL);
        EB_CHECK_INT(src->enabled, 1);
        EB_CHECK(src->token == NULL);
        EB_CHECK(src->api_key == NULL);
        EB_CHECK_INT(src->poll_interval_ms, 10000);
        EB_CHECK_STR(src->poll_start, "24h");
        EB_CHECK_INT(src->overlap_ms, -1);
        EB_CHECK_INT(src->lag_ms, -1);
        EB_CHECK_INT(src->page_size, 0);
        EB_CHECK(src->rate_rps == 0.0);
        EB_CHECK_INT(src->rate_burst, 0);
        EB_CHECK_INT(src->timeout_ms, 20000);
        EB_CHECK_INT(src->connect_timeout_ms, 5000);
        EB_CHECK_INT(src->max_body, 16 * MIB);
        EB_CHECK_INT(src->webhook_enabled, 0);
        EB_CHECK(src->webhook_secret == NULL);
        EB_CHECK(src->webhook_token == NULL);
        EB_CHECK(src->webhook_scheme == NULL);
        EB_CHECK_INT(src->webhook_tolerance_ms, 5 * 60 * 1000);
        EB_REQUIRE(src->json != NULL);
        EB_CHECK_STR(json_string_value(json_object_get(src->json, "name")),
                     "only");
        eb_config_free(cfg);

        /* The transactional id follows state_prefix unless given. */
        cfg = eb_config_load_string(
                "{\"kafka\": {\"state_prefix\": \"team-a\"}, \"sources\": []}",
                err, sizeof(err));
        EB_REQUIRE(cfg != NULL);
        EB_CHECK_STR(cfg->transactional_id, "team-a-main");
        EB_CHECK_INT(cfg->sources_cnt, 0);
        eb_config_free(cfg);

        /* "embedded" is the same as no brokers; a webhook block with no
         * keys still enables webhooks; null / "" disable the listener. */
        cfg = eb_config_load_string(
                "{\"kafka\": {\"brokers\": \"embedded\"}, \"http\": "
                "{\"listen\": null}, \"sources\": [{\"name\": \"a\", "
                "\"provider\": \"kota\", \"webhook\": {}}]}",
                err, sizeof(err));
        EB_REQUIRE(cfg != NULL);
        EB_CHECK(cfg->brokers == NULL);
        EB_CHECK_INT(cfg->embedded, 1);
        EB_CHECK(cfg->listen == NULL);
        EB_CHECK(cfg->listen_host == NULL);
        EB_CHECK_INT(cfg->sources[0].webhook_enabled, 1);
        eb_config_free(cfg);
}

static void test_valid_full(void)
{
        char err[512] = "";
        char *path = eb_test_fixture("config/valid-full.json");
        struct eb_config *cfg = eb_config_load(path, err, sizeof(err));
        const struct eb_source_cfg *s;
        json_t *opt;

        if (!cfg)
                fprintf(stderr, "  load failed: %s\n", err);
        EB_REQUIRE(cfg != NULL);
        EB_CHECK_STR(cfg->path, path);

        /* kafka */
        EB_CHECK_STR(cfg->brokers, "kafka-0:9092,kafka-1:9092");
        EB_CHECK_INT(cfg->embedded, 0);
        EB_CHECK_INT(cfg->embedded_brokers, 3);
        EB_CHECK_STR(cfg->topic_prefix, "acme");
        EB_CHECK_STR(cfg->topic_template,
                     "{prefix}.{source}.{account}.{provider}.{entity}."
                     "{action}");
        EB_CHECK_STR(cfg->state_prefix, "evb-prod");
        EB_CHECK_STR(cfg->transactional_id, "evb-prod-shard-0");
        EB_CHECK_INT(cfg->delivery, EB_DELIVERY_AT_LEAST_ONCE);
        EB_CHECK_INT(cfg->envelope_binary, 1);
        EB_CHECK_INT(cfg->batch_linger_ms, 250);
        EB_CHECK_INT(cfg->batch_max_events, 2000);
        EB_CHECK_INT(cfg->queue_max_messages, 500000);
        EB_REQUIRE(cfg->properties_cnt == 7);
        /* In file order, every value as a string. */
        EB_CHECK_STR(cfg->properties[0].key, "security.protocol");
        EB_CHECK_STR(cfg->properties[0].value, "SASL_SSL");
        EB_CHECK_STR(cfg->properties[1].key, "sasl.mechanism");
        EB_CHECK_STR(cfg->properties[1].value, "PLAIN");
        EB_CHECK_STR(cfg->properties[2].key, "sasl.username");
        EB_CHECK_STR(cfg->properties[2].value, "evbridge");
        EB_CHECK_STR(cfg->properties[3].key, "sasl.password");
        EB_CHECK_STR(cfg->properties[3].value, "kafka-pass-5e3c1a");
        EB_CHECK_STR(cfg->properties[4].key, "message.timeout.ms");
        EB_CHECK_STR(cfg->properties[4].value, "300000");
        EB_CHECK_STR(cfg->properties[5].key,
                     "enable.ssl.certificate.verification");
        EB_CHECK_STR(cfg->properties[5].value, "true");
        EB_CHECK_STR(cfg->properties[6].key, "linger.ms");
        EB_CHECK_STR(cfg->properties[6].value, "5.5");

        /* http */
        EB_CHECK_STR(cfg->listen, "[::1]:9090");
        EB_CHECK_STR(cfg->listen_host, "::1");
        EB_CHECK_INT(cfg->listen_port, 9090);
        EB_CHECK_INT(cfg->http_max_body, 2 * MIB);
        EB_CHECK_INT(cfg->http_max_headers, 32 * KIB);
        EB_CHECK_INT(cfg->http_timeout_ms, 15000);
        EB_CHECK_INT(cfg->webhook_deadline_ms, 2000);
        EB_CHECK_INT(cfg->http_max_held, 500);

        /* dedupe, log, shutdown */
        EB_CHECK_INT(cfg->dedupe_window_ms, 48LL * 3600 * 1000);
        EB_CHECK_INT(cfg->dedupe_capacity, 2000000);
        EB_CHECK_INT(cfg->log_level, EB_LOG_DEBUG);
        EB_CHECK_INT(cfg->log_format, EB_LOG_FMT_JSON);
        EB_CHECK_INT(cfg->drain_timeout_ms, 45000);

        EB_REQUIRE(cfg->sources_cnt == 3);

        /* Kommo: every source key. */
        s = &cfg->sources[0];
        EB_CHECK_STR(s->name, "acme-kommo");
        EB_CHECK_STR(s->provider, "kommo");
        EB_CHECK_STR(s->base_url, "https://acme.kommo.com"); /* '/' cut */
        EB_CHECK_INT(s->enabled, 1);
        EB_CHECK_STR(s->token, "kommo-token-7f2b9d");
        EB_CHECK(s->api_key == NULL);
        EB_CHECK_INT(s->poll_interval_ms, 30000);
        EB_CHECK_STR(s->poll_start, "now");
        EB_CHECK_INT(s->overlap_ms, 120000);
        EB_CHECK_INT(s->lag_ms, 10000);
        EB_CHECK_INT(s->page_size, 100);
        EB_CHECK(s->rate_rps == 6.5);
        EB_CHECK_INT(s->rate_burst, 1);
        EB_CHECK_INT(s->timeout_ms, 25000);
        EB_CHECK_INT(s->connect_timeout_ms, 3000);
        EB_CHECK_INT(s->max_body, 8 * MIB);
        EB_CHECK_INT(s->webhook_enabled, 1);
        EB_CHECK(s->webhook_secret == NULL);
        EB_CHECK_STR(s->webhook_token, "kommo-hook-token-41c2");
        EB_CHECK(s->webhook_scheme == NULL);
        EB_CHECK_INT(s->webhook_tolerance_ms, 300000);
        EB_REQUIRE(s->json != NULL);
        opt = json_object_get(s->json, "options");
        EB_CHECK(json_is_object(opt));
        EB_CHECK_INT(json_array_size(json_object_get(opt, "with")), 2);
        EB_CHECK_INT(json_integer_value(json_array_get(
                             json_object_get(opt, "filter_created_by"), 1)),
                     939801);

        /* Close: defaults where keys are left out. */
        s = &cfg->sources[1];
        EB_CHECK_STR(s->name, "acme-close");
        EB_CHECK_STR(s->provider, "close");
        EB_CHECK(s->base_url == NULL);
        EB_CHECK_INT(s->enabled, 1);
        EB_CHECK(s->token == NULL);
        EB_CHECK_STR(s->api_key, "close-api-key-c0ffee");
        EB_CHECK_INT(s->poll_interval_ms, 90000);
        EB_CHECK_STR(s->poll_start, "2024-05-15T00:00:00Z");
        EB_CHECK_INT(s->overlap_ms, -1);
        EB_CHECK_INT(s->lag_ms, -1);
        EB_CHECK_INT(s->page_size, 0);
        EB_CHECK(s->rate_rps == 2.0);
        EB_CHECK_INT(s->rate_burst, 4);
        EB_CHECK_INT(s->timeout_ms, 20000);
        EB_CHECK_INT(s->connect_timeout_ms, 5000);
        EB_CHECK_INT(s->max_body, 16 * MIB);
        EB_CHECK_INT(s->webhook_enabled, 1);
        EB_CHECK_STR(s->webhook_secret, "0a1b2c3d4e5f60718293a4b5c6d7e8f9");
        EB_CHECK(s->webhook_token == NULL);
        EB_CHECK_STR(s->webhook_scheme, "close");
        EB_CHECK_INT(s->webhook_tolerance_ms, 600000);
        EB_CHECK_STR(json_string_value(json_object_get(
                             json_object_get(s->json, "options"), "action")),
                     "updated");

        /* Kota: disabled, loopback base URL, empty webhook block. */
        s = &cfg->sources[2];
        EB_CHECK_STR(s->name, "acme_kota.v2");
        EB_CHECK_STR(s->provider, "kota");
        EB_CHECK_STR(s->base_url, "http://127.0.0.1:18080");
        EB_CHECK_INT(s->enabled, 0);
        EB_CHECK_STR(s->api_key, "pk_test_kota-9a8b7c");
        EB_CHECK_INT(s->poll_interval_ms, 10000);
        EB_CHECK_STR(s->poll_start, "36h");
        EB_CHECK_INT(s->webhook_enabled, 1);
        EB_CHECK(s->webhook_secret == NULL);

        EB_CHECK(eb_config_source(cfg, "acme-close") == &cfg->sources[1]);
        EB_CHECK(eb_config_source(cfg, "acme_kota.v2") == &cfg->sources[2]);
        EB_CHECK(eb_config_source(cfg, "acme") == NULL);
        EB_CHECK(eb_config_source(cfg, "") == NULL);

        eb_config_free(cfg);
        free(path);
}

/* ------------------------------------------------------------------ */
/* Values, one key at a time                                           */
/* ------------------------------------------------------------------ */

struct value_case {
        const char *json; /* the value, as JSON text */
        long long want;   /* parsed value when err is NULL */
        const char *err;  /* expected message substring, or NULL */
};

/* Load "<pre><value><post>" (a document with one value filled in). */
static struct eb_config *load_with(const char *pre, const char *value,
                                   const char *post, char *err, size_t errsz)
{
        char doc[1024];

        snprintf(doc, sizeof(doc), "%s%s%s", pre, value, post);
        return eb_config_load_string(doc, err, errsz);
}

typedef long long (*value_get)(const struct eb_config *cfg);

static void run_value_cases(const char *pre, const char *post,
                            const struct value_case *cases, size_t n,
                            value_get get)
{
        size_t i;

        for (i = 0; i < n; i++) {
                char err[512] = "";
                struct eb_config *cfg =
                        load_with(pre, cases[i].json, post, err, sizeof(err));

                if (cases[i].err) {
                        if (cfg || !contains(err, cases[i].err))
                                fprintf(stderr,
                                        "  value %s: want error \"%s\", "
                                        "got \"%s\"\n",
                                        cases[i].json, cases[i].err, err);
                        EB_CHECK(cfg == NULL);
                        EB_CHECK(contains(err, cases[i].err));
                } else if (!cfg) {
                        fprintf(stderr, "  value %s: %s\n", cases[i].json, err);
                        EB_CHECK(cfg != NULL);
                } else {
                        long long got = get(cfg);

                        if (got != cases[i].want)
                                fprintf(stderr, "  value %s: %lld != %lld\n",
                                        cases[i].json, got, cases[i].want);
                        EB_CHECK(got == cases[i].want);
                }
                eb_config_free(cfg);
        }
}

static long long get_http_max_body(const struct eb_config *cfg)
{
        return (long long)cfg->http_max_body;
}

static long long get_poll_interval(const struct eb_config *cfg)
{
        return cfg->sources_cnt ? cfg->sources[0].poll_interval_ms : -1;
}

static void test_sizes(void)
{
        static const struct value_case cases[] = {
                {"1048576", 1048576, NULL},
                {"\"1048576\"", 1048576, NULL},
                {"\"1MiB\"", 1048576, NULL},
                {"\"512KiB\"", 524288, NULL},
                {"\"1MB\"", 1000000, NULL},
                {"\"64kb\"", 64000, NULL},
                {"\"1 GiB\"", 1073741824, NULL},
                {"\"1GB\"", 1000000000, NULL},
                {"\"100B\"", 100, NULL},
                {"1", 1, NULL},
                {"\"1.5MiB\"", 0,
                 "http.max_body: expected a size in bytes "
                 "like 1048576, \"512KiB\" or \"1MiB\", got "
                 "\"1.5MiB\""},
                {"\"lots\"", 0, "http.max_body: expected a size"},
                {"\"\"", 0, "http.max_body: expected a size"},
                {"\"-1\"", 0, "http.max_body: expected a size"},
                {"-1", 0,
                 "http.max_body: expected a size in bytes like "
                 "1048576, \"512KiB\" or \"1MiB\", got -1"},
                {"1.5", 0, "http.max_body: expected a size"},
                {"\"10XB\"", 0, "http.max_body: expected a size"},
                {"\"1  MiB\"", 0, "http.max_body: expected a size"},
                {"true", 0,
                 "http.max_body: expected a size in bytes like "
                 "1048576, \"512KiB\" or \"1MiB\", got a boolean"},
                {"0", 0,
                 "http.max_body: expected a size from 1B to 1GiB, "
                 "got 0"},
                {"\"2GiB\"", 0,
                 "http.max_body: expected a size from 1B to "
                 "1GiB, got \"2GiB\""},
                {"\"99999999999999999999\"", 0,
                 "http.max_body: expected a size from 1B to 1GiB"},
                {"\"9999999999GiB\"", 0,
                 "http.max_body: expected a size from 1B to 1GiB"},
        };

        run_value_cases("{\"http\": {\"max_body\": ", "}}", cases,
                        sizeof(cases) / sizeof(cases[0]), get_http_max_body);
}

static void test_durations(void)
{
        static const struct value_case cases[] = {
                {"\"100ms\"", 100, NULL},
                {"\"10s\"", 10000, NULL},
                {"\"1h30m\"", 5400000, NULL},
                {"\"24h\"", 86400000, NULL},
                {"\"1d\"", 86400000, NULL},
                {"\"often\"", 0,
                 "sources[0].poll.interval: expected a "
                 "duration like \"10s\", got \"often\""},
                {"\"10\"", 0,
                 "sources[0].poll.interval: expected a duration "
                 "like \"10s\", got \"10\""},
                {"\"-5s\"", 0, "expected a duration like \"10s\""},
                {"\"\"", 0, "expected a duration like \"10s\", got \"\""},
                {"10", 0,
                 "sources[0].poll.interval: expected a duration "
                 "like \"10s\", got the number 10"},
                {"[]", 0,
                 "sources[0].poll.interval: expected a duration "
                 "like \"10s\", got an array"},
                {"\"99ms\"", 0,
                 "sources[0].poll.interval: expected a "
                 "duration from 100ms to 1d, got \"99ms\""},
                {"\"25h\"", 0, "expected a duration from 100ms to 1d"},
                {"\"0\"", 0, "expected a duration from 100ms to 1d"},
        };

        run_value_cases("{\"sources\": [{\"name\": \"a\", \"provider\": "
                        "\"close\", \"poll\": {\"interval\": ",
                        "}}]}", cases, sizeof(cases) / sizeof(cases[0]),
                        get_poll_interval);
}

static void test_listen(void)
{
        static const struct {
                const char *json;
                const char *host; /* NULL: disabled */
                int port;
                const char *err;
        } cases[] = {
                {"\"127.0.0.1:0\"", "127.0.0.1", 0, NULL},
                {"\"localhost:65535\"", "localhost", 65535, NULL},
                {"\"[::1]:9000\"", "::1", 9000, NULL},
                {"\"[::]:80\"", "::", 80, NULL},
                {"null", NULL, 0, NULL},
                {"\"\"", NULL, 0, NULL},
                {"\"8080\"", NULL, 0,
                 "http.listen: expected \"host:port\" or \"[ipv6]:port\" "
                 "like \"0.0.0.0:8080\" (null or \"\" disables the "
                 "listener), got \"8080\""},
                {"\"0.0.0.0:70000\"", NULL, 0,
                 "http.listen: expected a port from 0 to 65535, got "
                 "\"0.0.0.0:70000\""},
                {"\"0.0.0.0:123456\"", NULL, 0, "http.listen: expected"},
                {"\"[::1]\"", NULL, 0, "http.listen: expected \"host:port\""},
                {"\"[]:80\"", NULL, 0, "http.listen: expected \"host:port\""},
                {"\"[1.2.3.4]:80\"", NULL, 0, "http.listen: expected"},
                {"\"::1:80\"", NULL, 0, "http.listen: expected \"host:port\""},
                {"\":8080\"", NULL, 0, "http.listen: expected \"host:port\""},
                {"\"host:\"", NULL, 0, "http.listen: expected \"host:port\""},
                {"\"host:8o\"", NULL, 0, "http.listen: expected"},
                {"\"my host:80\"", NULL, 0, "http.listen: expected"},
                {"8080", NULL, 0,
                 "http.listen: expected a string or null, got a number"},
        };
        size_t i;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char err[512] = "";
                struct eb_config *cfg =
                        load_with("{\"http\": {\"listen\": ", cases[i].json,
                                  "}}", err, sizeof(err));

                if (cases[i].err) {
                        if (cfg || !contains(err, cases[i].err))
                                fprintf(stderr, "  listen %s: got \"%s\"\n",
                                        cases[i].json, err);
                        EB_CHECK(cfg == NULL);
                        EB_CHECK(contains(err, cases[i].err));
                } else if (!cfg) {
                        fprintf(stderr, "  listen %s: %s\n", cases[i].json,
                                err);
                        EB_CHECK(cfg != NULL);
                } else if (!cases[i].host) {
                        EB_CHECK(cfg->listen == NULL);
                        EB_CHECK(cfg->listen_host == NULL);
                        EB_CHECK_INT(cfg->listen_port, 0);
                } else {
                        EB_CHECK_STR(cfg->listen_host, cases[i].host);
                        EB_CHECK_INT(cfg->listen_port, cases[i].port);
                        EB_CHECK(cfg->listen && cfg->listen[0] != '\0');
                }
                eb_config_free(cfg);
        }
}

static void test_topic_template(void)
{
        static const struct {
                const char *tmpl;
                const char *err; /* NULL: valid */
        } cases[] = {
                {"{prefix}.{provider}.{entity}.{action}", NULL},
                {"{prefix}.{entity}.{action}", NULL},
                {"{source}-{account}_{entity}", NULL},
                {"all-events", NULL},
                {"{prefix}.{entiti}.{action}",
                 "kafka.topic_template: unknown placeholder \"{entiti}\"; "
                 "expected {prefix}, {provider}, {entity}, {action}, {source} "
                 "or {account}"},
                {"{}", "unknown placeholder \"{}\""},
                {"{PREFIX}", "unknown placeholder \"{PREFIX}\""},
                {"{prefix", "kafka.topic_template: unbalanced braces: \"{\" "
                            "at offset 0 is not closed"},
                {"{prefix.{entity}", "unbalanced braces: \"{\" at offset 0"},
                {"prefix}", "kafka.topic_template: unbalanced braces: \"}\" "
                            "without \"{\" at offset 6"},
                {"{{prefix}}", "unbalanced braces"},
                {"", "kafka.topic_template: must not be empty"},
        };
        size_t i;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char err[512] = "", doc[512];
                struct eb_config *cfg;

                snprintf(doc, sizeof(doc),
                         "{\"kafka\": {\"topic_template\": \"%s\"}}",
                         cases[i].tmpl);
                cfg = eb_config_load_string(doc, err, sizeof(err));
                if (cases[i].err) {
                        if (cfg || !contains(err, cases[i].err))
                                fprintf(stderr, "  template %s: got \"%s\"\n",
                                        cases[i].tmpl, err);
                        EB_CHECK(cfg == NULL);
                        EB_CHECK(contains(err, cases[i].err));
                } else {
                        EB_CHECK(cfg != NULL);
                        if (cfg)
                                EB_CHECK_STR(cfg->topic_template,
                                             cases[i].tmpl);
                }
                eb_config_free(cfg);
        }
}

/* Exact messages: the format is an interface (operators read it, the
 * --check-config test greps it). */
static void test_error_messages(void)
{
        static const struct {
                const char *json;
                const char *msg;
        } cases[] = {
                {"{\"kafka\": {\"delivery\": 1}}",
                 "kafka.delivery: expected a string, got a number"},
                {"{\"kafka\": {\"delivery\": \"once\"}}",
                 "kafka.delivery: expected \"exactly-once\" or "
                 "\"at-least-once\", got \"once\""},
                {"{\"kafka\": {\"envelope\": \"avro\"}}",
                 "kafka.envelope: expected \"structured\" or \"binary\", got "
                 "\"avro\""},
                {"{\"log\": {\"level\": \"verbose\"}}",
                 "log.level: expected \"debug\", \"info\", \"warn\" or "
                 "\"error\", got \"verbose\""},
                {"{\"log\": {\"level\": \"off\"}}",
                 "log.level: expected \"debug\", \"info\", \"warn\" or "
                 "\"error\", got \"off\""},
                {"{\"log\": {\"format\": \"xml\"}}",
                 "log.format: expected \"text\" or \"json\", got \"xml\""},
                {"{\"kafka\": {\"ackss\": \"all\"}}",
                 "kafka.ackss: unknown key"},
                {"{\"kafka\": {\"brokerz\": \"k:9092\"}}",
                 "kafka.brokerz: unknown key (did you mean \"brokers\"?)"},
                {"{\"kafak\": {}}",
                 "kafak: unknown key (did you mean \"kafka\"?)"},
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"close\", "
                 "\"poll\": {\"intervall\": \"5s\"}}]}",
                 "sources[0].poll.intervall: unknown key (did you mean "
                 "\"interval\"?)"},
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"close\"}, "
                 "{\"name\": \"b\", \"provider\": \"kota\", \"poll\": "
                 "{\"interval\": \"often\"}}]}",
                 "sources[1].poll.interval: expected a duration like \"10s\", "
                 "got \"often\""},
                {"{\"sources\": [{\"name\": \"x\", \"provider\": \"p\"}, "
                 "{\"name\": \"y\", \"provider\": \"p\"}, {\"name\": \"x\", "
                 "\"provider\": \"p\"}]}",
                 "sources[2].name: duplicate source name \"x\" (also "
                 "sources[0])"},
                {"{\"sources\": [{\"provider\": \"close\"}]}",
                 "sources[0].name: required key is missing"},
                {"{\"sources\": [{\"name\": \"a\"}]}",
                 "sources[0].provider: required key is missing"},
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"\"}]}",
                 "sources[0].provider: must not be empty"},
                {"{\"sources\": [{\"name\": \"my source\", \"provider\": "
                 "\"close\"}]}",
                 "sources[0].name: expected 1 to 100 characters of "
                 "[A-Za-z0-9._-], got \"my source\""},
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"close\", "
                 "\"base_url\": \"ftp://api.close.com\"}]}",
                 "sources[0].base_url: expected a URL starting with http:// "
                 "or https:// followed by a host, got \"ftp://api.close.com\""},
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"close\", "
                 "\"base_url\": \"https://\"}]}",
                 "sources[0].base_url: expected a URL starting with http:// "
                 "or https:// followed by a host, got \"https://\""},
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"close\", "
                 "\"enabled\": \"yes\"}]}",
                 "sources[0].enabled: expected true or false, got a string"},
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"close\", "
                 "\"credentials\": {\"api_key\": 12345}}]}",
                 "sources[0].credentials.api_key: expected a string, got a "
                 "number"},
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"close\", "
                 "\"credentials\": {\"api_key\": \"\"}}]}",
                 "sources[0].credentials.api_key: must not be empty"},
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"close\", "
                 "\"credentials\": {\"password\": \"x\"}}]}",
                 "sources[0].credentials.password: unknown key"},
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"close\", "
                 "\"poll\": {\"start\": \"yesterday\"}}]}",
                 "sources[0].poll.start: expected \"now\", a duration back "
                 "from now like \"24h\" or an RFC 3339 time like "
                 "\"2024-05-15T00:00:00Z\", got \"yesterday\""},
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"close\", "
                 "\"poll\": {\"page_size\": 5000}}]}",
                 "sources[0].poll.page_size: expected an integer from 0 to "
                 "1000, got 5000"},
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"close\", "
                 "\"rate_limit\": {\"rps\": 0}}]}",
                 "sources[0].rate_limit.rps: expected a number greater than 0 "
                 "and at most 1000, got 0"},
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"close\", "
                 "\"rate_limit\": {\"rps\": 1000.5}}]}",
                 "sources[0].rate_limit.rps: expected a number greater than 0 "
                 "and at most 1000, got 1000.5"},
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"close\", "
                 "\"rate_limit\": {\"rps\": \"5\"}}]}",
                 "sources[0].rate_limit.rps: expected a number, got a string"},
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"close\", "
                 "\"rate_limit\": {\"burst\": 0}}]}",
                 "sources[0].rate_limit.burst: expected an integer from 1 to "
                 "1000, got 0"},
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"close\", "
                 "\"webhook\": {\"tolerance\": \"0s\"}}]}",
                 "sources[0].webhook.tolerance: expected a duration from 1s "
                 "to 1d, got \"0s\""},
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"close\", "
                 "\"webhook\": true}]}",
                 "sources[0].webhook: expected an object, got a boolean"},
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"close\", "
                 "\"options\": [1]}]}",
                 "sources[0].options: expected an object, got an array"},
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"close\", "
                 "\"http\": {\"max_body\": \"2GiB\"}}]}",
                 "sources[0].http.max_body: expected a size from 1B to 1GiB, "
                 "got \"2GiB\""},
                {"{\"kafka\": {\"embedded_brokers\": 12}}",
                 "kafka.embedded_brokers: expected an integer from 1 to 9, got "
                 "12"},
                {"{\"kafka\": {\"embedded_brokers\": 1.5}}",
                 "kafka.embedded_brokers: expected an integer, got 1.5"},
                {"{\"kafka\": {\"embedded_brokers\": \"3\"}}",
                 "kafka.embedded_brokers: expected an integer, got a string"},
                {"{\"kafka\": {\"queue_max_messages\": 999}}",
                 "kafka.queue_max_messages: expected an integer from 1000 to "
                 "10000000, got 999"},
                {"{\"kafka\": {\"batch\": {\"linger\": \"11s\"}}}",
                 "kafka.batch.linger: expected a duration from 0 to 10s, got "
                 "\"11s\""},
                {"{\"kafka\": {\"batch\": {\"max_events\": 0}}}",
                 "kafka.batch.max_events: expected an integer from 1 to "
                 "1000000, got 0"},
                {"{\"kafka\": {\"batch\": 5}}",
                 "kafka.batch: expected an object, got a number"},
                {"{\"kafka\": {\"brokers\": \"\"}}",
                 "kafka.brokers: expected a comma-separated broker list like "
                 "\"kafka-0:9092,kafka-1:9092\" or \"embedded\", got \"\""},
                {"{\"kafka\": {\"brokers\": \"a:1, ,b:2\"}}",
                 "kafka.brokers: expected a comma-separated broker list like "
                 "\"kafka-0:9092,kafka-1:9092\" or \"embedded\", got "
                 "\"a:1, ,b:2\""},
                {"{\"kafka\": {\"brokers\": null}}",
                 "kafka.brokers: expected a string, got null"},
                {"{\"kafka\": {\"state_prefix\": \"evb/prod\"}}",
                 "kafka.state_prefix: expected 1 to 200 characters of "
                 "[A-Za-z0-9._-] (legal in a Kafka topic name), got "
                 "\"evb/prod\""},
                {"{\"kafka\": {\"state_prefix\": \"\"}}",
                 "kafka.state_prefix: expected 1 to 200 characters of "
                 "[A-Za-z0-9._-] (legal in a Kafka topic name), got \"\""},
                {"{\"kafka\": {\"topic_prefix\": \"a b\"}}",
                 "kafka.topic_prefix: expected 1 to 200 characters of "
                 "[A-Za-z0-9._-] (legal in a Kafka topic name), got "
                 "\"a b\""},
                {"{\"kafka\": {\"transactional_id\": \"\"}}",
                 "kafka.transactional_id: must not be empty"},
                {"{\"kafka\": {\"properties\": {\"acks\": null}}}",
                 "kafka.properties.acks: expected a string, number or "
                 "boolean, got null"},
                {"{\"kafka\": {\"properties\": {\"a\": \"1\", \"b\": {}}}}",
                 "kafka.properties.b: expected a string, number or boolean, "
                 "got an object"},
                {"{\"kafka\": {\"properties\": {\"\": \"1\"}}}",
                 "kafka.properties: empty property name"},
                {"{\"kafka\": {\"properties\": [\"acks=all\"]}}",
                 "kafka.properties: expected an object, got an array"},
                {"{\"http\": {\"timeout\": \"2h\"}}",
                 "http.timeout: expected a duration from 1ms to 1h, got "
                 "\"2h\""},
                {"{\"http\": {\"max_held\": 0}}",
                 "http.max_held: expected an integer from 1 to 1000000, got "
                 "0"},
                {"{\"http\": {\"max_headers\": \"2MiB\"}}",
                 "http.max_headers: expected a size from 1B to 1MiB, got "
                 "\"2MiB\""},
                {"{\"http\": \"0.0.0.0:8080\"}",
                 "http: expected an object, got a string"},
                {"{\"dedupe\": {\"window\": \"30s\"}}",
                 "dedupe.window: expected a duration from 1m to 365d, got "
                 "\"30s\""},
                {"{\"dedupe\": {\"capacity\": 10}}",
                 "dedupe.capacity: expected an integer from 1000 to "
                 "1000000000, got 10"},
                {"{\"shutdown\": {\"drain_timeout\": \"1h\"}}",
                 "shutdown.drain_timeout: expected a duration from 1s to 10m, "
                 "got \"1h\""},
                {"{\"sources\": {}}",
                 "sources: expected an array, got an object"},
                {"{\"sources\": null}", "sources: expected an array, got null"},
                {"{\"sources\": [\"x\"]}",
                 "sources[0]: expected an object, got a string"},
                {"[1]", "expected an object at the top level, got an array"},
                /* Long values are cut in the message. */
                {"{\"log\": {\"level\": "
                 "\"0123456789012345678901234567890123456789012345678901234567"
                 "89012345\"}}",
                 "log.level: expected \"debug\", \"info\", \"warn\" or "
                 "\"error\", got "
                 "\"012345678901234567890123456789012345678901234567890123456"
                 "789...\""},
                /* Control characters are not echoed raw. */
                {"{\"log\": {\"format\": \"te\\nxt\\\"\"}}",
                 "log.format: expected \"text\" or \"json\", got \"te?xt?\""},
        };
        size_t i;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char err[1024] = "";
                struct eb_config *cfg =
                        eb_config_load_string(cases[i].json, err, sizeof(err));

                if (cfg || strcmp(err, cases[i].msg) != 0)
                        fprintf(stderr,
                                "  case %zu: %s\n    want: %s\n    got:  "
                                "%s\n",
                                i, cases[i].json, cases[i].msg, err);
                EB_CHECK(cfg == NULL);
                EB_CHECK_STR(err, cases[i].msg);
                eb_config_free(cfg);
        }
}

static void test_source_name_length(void)
{
        char name[128], doc[512], err[512] = "";
        struct eb_config *cfg;

        memset(name, 'n', 100);
        name[100] = '\0';
        snprintf(doc, sizeof(doc),
                 "{\"sources\": [{\"name\": \"%s\", \"provider\": \"x\"}]}",
                 name);
        cfg = eb_config_load_string(doc, err, sizeof(err));
        EB_CHECK(cfg != NULL);
        eb_config_free(cfg);

        name[100] = 'n';
        name[101] = '\0';
        snprintf(doc, sizeof(doc),
                 "{\"sources\": [{\"name\": \"%s\", \"provider\": \"x\"}]}",
                 name);
        cfg = eb_config_load_string(doc, err, sizeof(err));
        EB_CHECK(cfg == NULL);
        EB_CHECK(contains(err, "sources[0].name: expected 1 to 100 "
                               "characters"));
        eb_config_free(cfg);
}

/* ------------------------------------------------------------------ */
/* Interpolation                                                       */
/* ------------------------------------------------------------------ */

static void test_interpolate_env(void)
{
        static const struct {
                const char *in;
                const char *out; /* NULL: error */
                const char *err;
        } cases[] = {
                {"plain", "plain", NULL},
                {"", "", NULL},
                {"${EB_T_A}", "alpha", NULL},
                {"x-${EB_T_A}-y", "x-alpha-y", NULL},
                {"${EB_T_A}${EB_T_B}", "alphabeta", NULL},
                {"${EB_T_EMPTY}", "", NULL},
                {"_${_EB_T_U}_", "_under_", NULL},
                {"$${EB_T_A}", "${EB_T_A}", NULL},
                {"$${", "${", NULL},
                {"pre $${x} ${EB_T_A}", "pre ${x} alpha", NULL},
                {"a$b", "a$b", NULL},
                {"$", "$", NULL},
                {"$$", "$$", NULL},
                {"cost: $5 {x}", "cost: $5 {x}", NULL},
                {"}", "}", NULL},
                {"${EB_T_DOLLAR}", "${EB_T_A}", NULL}, /* not re-expanded */
                {"${EB_T_UNSET}", NULL,
                 "environment variable EB_T_UNSET is not set"},
                {"ok ${EB_T_A} ${EB_T_UNSET}", NULL,
                 "environment variable EB_T_UNSET is not set"},
                {"${", NULL,
                 "unterminated \"${\" at offset 0 (write \"$${\" for a "
                 "literal \"${\")"},
                {"abc${EB_T_A", NULL,
                 "unterminated \"${\" at offset 3"
                 " (write \"$${\" for a literal \"${\")"},
                {"${EB_T_A} ${", NULL,
                 "unterminated \"${\" at offset 10"
                 " (write \"$${\" for a literal \"${\")"},
                {"${}", NULL,
                 "invalid reference \"${}\": expected ${NAME} (letters, "
                 "digits, '_') or ${file:/path}"},
                {"${1X}", NULL,
                 "invalid reference \"${1X}\""
                 ": expected ${NAME} (letters, digits, '_') or ${file:/path}"},
                {"${A-B}", NULL,
                 "invalid reference \"${A-B}\""
                 ": expected ${NAME} (letters, digits, '_') or ${file:/path}"},
                {"${A ${B}}", NULL,
                 "invalid reference \"${A ${B}\""
                 ": expected ${NAME} (letters, digits, '_') or ${file:/path}"},
                {"${file:}", NULL,
                 "\"${file:}\" needs a path, like "
                 "\"${file:/run/secrets/token}\""},
        };
        size_t i;

        setenv("EB_T_A", "alpha", 1);
        setenv("EB_T_B", "beta", 1);
        setenv("EB_T_EMPTY", "", 1);
        setenv("_EB_T_U", "under", 1);
        setenv("EB_T_DOLLAR", "${EB_T_A}", 1);
        unsetenv("EB_T_UNSET");

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char err[512] = "";
                char *out =
                        eb_config_interpolate(cases[i].in, err, sizeof(err));

                if (cases[i].out) {
                        if (!out)
                                fprintf(stderr, "  \"%s\": %s\n", cases[i].in,
                                        err);
                        EB_CHECK_STR(out, cases[i].out);
                } else {
                        if (out || strcmp(err, cases[i].err) != 0)
                                fprintf(stderr,
                                        "  \"%s\": want \"%s\" got \"%s\"\n",
                                        cases[i].in, cases[i].err, err);
                        EB_CHECK(out == NULL);
                        EB_CHECK_STR(err, cases[i].err);
                }
                free(out);
        }
}

static void test_interpolate_file(void)
{
        static const struct {
                const char *content;
                const char *want;
        } cases[] = {
                {"s3cret-from-file\n", "s3cret-from-file"},
                {"no-newline", "no-newline"},
                {"crlf\r\n", "crlf"},
                {"two\n\n", "two\n"},
                {"multi\nline\n", "multi\nline"},
                {"", ""},
                {"\n", ""},
                {"${NOT_EXPANDED}", "${NOT_EXPANDED}"},
        };
        char err[512], in[256];
        char *path, *out, *big;
        size_t i;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                path = write_temp(cases[i].content, strlen(cases[i].content));
                EB_REQUIRE(path != NULL);
                snprintf(in, sizeof(in), "<${file:%s}>", path);
                err[0] = '\0';
                out = eb_config_interpolate(in, err, sizeof(err));
                if (out) {
                        size_t n = strlen(out);
                        EB_CHECK(n >= 2 && out[0] == '<' && out[n - 1] == '>');
                        if (n >= 2) {
                                out[n - 1] = '\0';
                                EB_CHECK_STR(out + 1, cases[i].want);
                        }
                } else {
                        fprintf(stderr, "  file case %zu: %s\n", i, err);
                        EB_CHECK(out != NULL);
                }
                free(out);
                remove_temp(path);
        }

        /* Exactly 64 KiB (plus the newline that is removed) is accepted;
         * one byte more is refused, never silently cut. */
        big = malloc(64 * KIB + 2);
        EB_REQUIRE(big != NULL);
        memset(big, 'k', 64 * KIB + 1);
        big[64 * KIB] = '\n';
        path = write_temp(big, 64 * KIB + 1);
        EB_REQUIRE(path != NULL);
        snprintf(in, sizeof(in), "${file:%s}", path);
        out = eb_config_interpolate(in, err, sizeof(err));
        EB_CHECK(out != NULL);
        if (out)
                EB_CHECK_INT(strlen(out), 64 * KIB);
        free(out);
        remove_temp(path);

        big[64 * KIB] = 'k';
        path = write_temp(big, 64 * KIB + 1);
        EB_REQUIRE(path != NULL);
        snprintf(in, sizeof(in), "${file:%s}", path);
        out = eb_config_interpolate(in, err, sizeof(err));
        EB_CHECK(out == NULL);
        EB_CHECK(contains(err, "is larger than 65536 bytes"));
        EB_CHECK(contains(err, path));
        free(out);
        remove_temp(path);
        free(big);

        /* A NUL byte cannot be carried in a C string value. */
        path = write_temp("a\0b", 3);
        EB_REQUIRE(path != NULL);
        snprintf(in, sizeof(in), "${file:%s}", path);
        out = eb_config_interpolate(in, err, sizeof(err));
        EB_CHECK(out == NULL);
        EB_CHECK(contains(err, "contains a NUL byte"));
        free(out);
        remove_temp(path);

        out = eb_config_interpolate("${file:/nonexistent/evbridge/key}", err,
                                    sizeof(err));
        EB_CHECK(out == NULL);
        EB_CHECK_STR(err, "cannot read file /nonexistent/evbridge/key: No "
                          "such file or directory");
        free(out);

        out = eb_config_interpolate("${file:/}", err, sizeof(err));
        EB_CHECK(out == NULL);
        EB_CHECK_STR(err, "cannot read file /: Is a directory");
        free(out);
}

static void test_interpolate_in_config(void)
{
        char err[1024] = "", doc[2048];
        struct eb_config *cfg;
        const struct eb_source_cfg *src;
        json_t *opt;
        char *path = write_temp("file-api-key-0042\n", 18);

        EB_REQUIRE(path != NULL);
        setenv("EB_T_BROKERS", "k1:9092,k2:9092", 1);
        setenv("EB_T_KPASS", "kpass-from-env-77", 1);
        setenv("EB_T_NAME", "acme", 1);
        setenv("EB_T_LEAD", "lead_abc", 1);
        setenv("EB_T_A", "alpha", 1);
        setenv("EB_T_IVL", "45s", 1);
        snprintf(doc, sizeof(doc),
                 "{\"kafka\": {\"brokers\": \"${EB_T_BROKERS}\", "
                 "\"properties\": {\"sasl.password\": \"${EB_T_KPASS}\", "
                 "\"client.id\": \"evb-$${HOST}\"}}, "
                 "\"sources\": [{\"name\": \"s-${EB_T_NAME}\", \"provider\": "
                 "\"close\", \"credentials\": {\"api_key\": "
                 "\"${file:%s}\"}, \"poll\": {\"interval\": \"${EB_T_IVL}\"}, "
                 "\"options\": {\"lead_id\": \"${EB_T_LEAD}\", \"nested\": "
                 "[{\"x\": \"${EB_T_A}\"}, 7]}}]}",
                 path);
        cfg = eb_config_load_string(doc, err, sizeof(err));
        remove_temp(path); /* read during the load; not needed after */
        if (!cfg)
                fprintf(stderr, "  %s\n", err);
        EB_REQUIRE(cfg != NULL);
        EB_CHECK_STR(cfg->brokers, "k1:9092,k2:9092");
        EB_REQUIRE(cfg->properties_cnt == 2);
        EB_CHECK_STR(cfg->properties[0].value, "kpass-from-env-77");
        EB_CHECK_STR(cfg->properties[1].value, "evb-${HOST}");
        EB_REQUIRE(cfg->sources_cnt == 1);
        src = &cfg->sources[0];
        EB_CHECK_STR(src->name, "s-acme");
        EB_CHECK_STR(src->api_key, "file-api-key-0042");
        EB_CHECK_INT(src->poll_interval_ms, 45000);
        /* The tree the adapter sees is the interpolated one. */
        EB_CHECK_STR(
                json_string_value(json_object_get(
                        json_object_get(src->json, "credentials"), "api_key")),
                "file-api-key-0042");
        opt = json_object_get(src->json, "options");
        EB_CHECK_STR(json_string_value(json_object_get(opt, "lead_id")),
                     "lead_abc");
        EB_CHECK_STR(json_string_value(json_object_get(
                             json_array_get(json_object_get(opt, "nested"), 0),
                             "x")),
                     "alpha");
        eb_config_free(cfg);
}

static void test_interpolate_errors_in_config(void)
{
        static const struct {
                const char *json;
                const char *msg;
        } cases[] = {
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"close\", "
                 "\"credentials\": {\"api_key\": \"${CLOSE_API_KEY}\"}}]}",
                 "sources[0].credentials.api_key: environment variable "
                 "CLOSE_API_KEY is not set"},
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"close\", "
                 "\"webhook\": {\"secret\": "
                 "\"${file:/nonexistent/evbridge/key}\"}}]}",
                 "sources[0].webhook.secret: cannot read file "
                 "/nonexistent/evbridge/key: No such file or directory"},
                {"{\"kafka\": {\"properties\": {\"sasl.password\": "
                 "\"${KPASS\"}}}",
                 "kafka.properties.sasl.password: unterminated \"${\" at "
                 "offset 0 (write \"$${\" for a literal \"${\")"},
                {"{\"sources\": [{\"name\": \"a\", \"provider\": \"close\"}, "
                 "{\"name\": \"b\", \"provider\": \"kommo\", \"options\": "
                 "{\"filters\": [\"ok\", {\"x\": \"${EB_T_UNSET}\"}]}}]}",
                 "sources[1].options.filters[1].x: environment variable "
                 "EB_T_UNSET is not set"},
        };
        size_t i;

        unsetenv("CLOSE_API_KEY");
        unsetenv("EB_T_UNSET");
        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char err[1024] = "";
                struct eb_config *cfg =
                        eb_config_load_string(cases[i].json, err, sizeof(err));

                EB_CHECK(cfg == NULL);
                EB_CHECK_STR(err, cases[i].msg);
                eb_config_free(cfg);
        }
}

/* ------------------------------------------------------------------ */
/* Broken fixture files                                                */
/* ------------------------------------------------------------------ */

/* Extra detail some fixtures must show beyond the key path. */
static const struct {
        const char *file;
        const char *detail;
} fixture_details[] = {
        {"bad-duration.json", "sources[1].poll.interval: expected a duration "
                              "like \"10s\", got \"often\""},
        {"bad-type-delivery.json",
         "kafka.delivery: expected a string, got a number"},
        {"bad-unknown-kafka.json", "kafka.ackss: unknown key"},
        {"bad-duplicate-name.json",
         "sources[2].name: duplicate source name \"x\" (also sources[0])"},
        {"bad-missing-name.json", "sources[0].name: required key is missing"},
        {"bad-env-missing.json",
         "sources[0].credentials.api_key: environment variable "
         "EVBRIDGE_TEST_UNSET_VAR_4242 is not set"},
        {"bad-file-missing.json", "sources[0].webhook.secret: cannot read file "
                                  "/nonexistent/evbridge-test/webhook-key"},
        {"bad-unterminated.json", "unterminated \"${\""},
        {"bad-syntax.json", "string or '}' expected"},
        {"bad-duplicate-key.json", "duplicate object key"},
        {"bad-sources-type.json", "sources: expected an array, got an object"},
        {"bad-top-array.json", "expected an object at the top level"},
};

static int listed(char **files, size_t n, const char *name)
{
        size_t i;

        for (i = 0; i < n; i++) {
                if (!strcmp(files[i], name))
                        return 1;
        }
        return 0;
}

static void test_bad_fixtures(void)
{
        char *index = eb_test_read_fixture("config/bad-cases.txt", NULL);
        char *files[128];
        char *line, *save = NULL, *dirpath;
        size_t n = 0, d;
        DIR *dir;
        struct dirent *de;

        EB_REQUIRE(index != NULL);
        unsetenv("EVBRIDGE_TEST_UNSET_VAR_4242");
        for (line = strtok_r(index, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save)) {
                char *tab = strchr(line, '\t');
                char *path, err[1024] = "", rel[256];
                struct eb_config *cfg;

                EB_CHECK(tab != NULL);
                if (!tab)
                        continue;
                *tab = '\0';
                snprintf(rel, sizeof(rel), "config/%s", line);
                path = eb_test_fixture(rel);
                EB_REQUIRE(path != NULL);
                cfg = eb_config_load(path, err, sizeof(err));
                if (cfg || !contains(err, tab + 1) ||
                    strncmp(err, path, strlen(path)) != 0)
                        fprintf(stderr, "  %s: want \"%s\", got \"%s\"\n", line,
                                tab + 1, err);
                EB_CHECK(cfg == NULL);
                /* The file comes first, then the key path. */
                EB_CHECK(strncmp(err, path, strlen(path)) == 0);
                EB_CHECK(contains(err, tab + 1));
                for (d = 0;
                     d < sizeof(fixture_details) / sizeof(fixture_details[0]);
                     d++) {
                        if (!strcmp(fixture_details[d].file, line)) {
                                if (!contains(err, fixture_details[d].detail))
                                        fprintf(stderr,
                                                "  %s: want detail \"%s\"\n",
                                                line,
                                                fixture_details[d].detail);
                                EB_CHECK(contains(err,
                                                  fixture_details[d].detail));
                        }
                }
                eb_config_free(cfg);
                free(path);
                if (n < sizeof(files) / sizeof(files[0]))
                        files[n++] = line;
        }
        EB_CHECK(n >= 15);

        /* Every bad-*.json on disk is in the index, and vice versa. */
        dirpath = eb_test_fixture("config");
        EB_REQUIRE(dirpath != NULL);
        dir = opendir(dirpath);
        EB_CHECK(dir != NULL);
        d = 0;
        while (dir && (de = readdir(dir)) != NULL) {
                size_t l = strlen(de->d_name);

                if (strncmp(de->d_name, "bad-", 4) != 0 || l < 5 ||
                    strcmp(de->d_name + l - 5, ".json") != 0)
                        continue;
                d++;
                if (!listed(files, n, de->d_name))
                        fprintf(stderr, "  %s is not in bad-cases.txt\n",
                                de->d_name);
                EB_CHECK(listed(files, n, de->d_name));
        }
        EB_CHECK_INT(d, n);
        if (dir)
                closedir(dir);
        free(dirpath);
        free(index);
}

static void test_load_errors(void)
{
        char err[512] = "", small[8];
        struct eb_config *cfg;

        cfg = eb_config_load("/nonexistent/evbridge.json", err, sizeof(err));
        EB_CHECK(cfg == NULL);
        EB_CHECK_STR(err, "/nonexistent/evbridge.json: cannot open the config "
                          "file: No such file or directory");

        cfg = eb_config_load_string("{\n  \"kafka\": }", err, sizeof(err));
        EB_CHECK(cfg == NULL);
        EB_CHECK(strncmp(err, "<string>:2:12: ", 15) == 0);

        /* No error buffer, or a tiny one: no crash, NUL-terminated. */
        cfg = eb_config_load_string("{\"x\": 1}", NULL, 0);
        EB_CHECK(cfg == NULL);
        memset(small, 'Z', sizeof(small));
        cfg = eb_config_load_string("{\"kafka\": {\"ackss\": 1}}", small,
                                    sizeof(small));
        EB_CHECK(cfg == NULL);
        EB_CHECK(memchr(small, '\0', sizeof(small)) != NULL);
        EB_CHECK_STR(small, "kafka.a");
}

/* ------------------------------------------------------------------ */
/* Secrets                                                             */
/* ------------------------------------------------------------------ */

static void test_secrets_registered(void)
{
        static const char *const secrets[] = {
                "kommo-token-7f2b9d",   "kommo-hook-token-41c2",
                "close-api-key-c0ffee", "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
                "pk_test_kota-9a8b7c",  "kafka-pass-5e3c1a",
        };
        char err[512] = "", line[256], out[256];
        char *path = eb_test_fixture("config/valid-full.json");
        struct eb_config *cfg;
        size_t i;

        eb_log_clear_secrets();
        eb_log_redact("Authorization: Bearer kommo-token-7f2b9d", out,
                      sizeof(out));
        EB_CHECK_STR(out, "Authorization: Bearer kommo-token-7f2b9d");

        cfg = eb_config_load(path, err, sizeof(err));
        EB_REQUIRE(cfg != NULL);
        eb_log_redact("Authorization: Bearer kommo-token-7f2b9d", out,
                      sizeof(out));
        EB_CHECK_STR(out, "Authorization: Bearer ***");
        for (i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
                snprintf(line, sizeof(line), "x=%s y", secrets[i]);
                eb_log_redact(line, out, sizeof(out));
                EB_CHECK_STR(out, "x=*** y");
        }
        /* Ordinary values are not secrets. */
        eb_log_redact("source=acme-kommo user=evbridge", out, sizeof(out));
        EB_CHECK_STR(out, "source=acme-kommo user=evbridge");
        eb_config_free(cfg);
        free(path);

        /* A secret that came from the environment is registered too. */
        eb_log_clear_secrets();
        setenv("EB_T_TOKEN", "env-token-98765", 1);
        cfg = eb_config_load_string(
                "{\"sources\": [{\"name\": \"k\", \"provider\": \"kommo\", "
                "\"credentials\": {\"token\": \"${EB_T_TOKEN}\"}}]}",
                err, sizeof(err));
        EB_REQUIRE(cfg != NULL);
        eb_log_redact("token env-token-98765!", out, sizeof(out));
        EB_CHECK_STR(out, "token ***!");
        eb_config_free(cfg);
        eb_log_clear_secrets();
}

int main(void)
{
        EB_RUN(test_new_default);
        EB_RUN(test_minimal_defaults);
        EB_RUN(test_valid_full);
        EB_RUN(test_sizes);
        EB_RUN(test_durations);
        EB_RUN(test_listen);
        EB_RUN(test_topic_template);
        EB_RUN(test_error_messages);
        EB_RUN(test_source_name_length);
        EB_RUN(test_interpolate_env);
        EB_RUN(test_interpolate_file);
        EB_RUN(test_interpolate_in_config);
        EB_RUN(test_interpolate_errors_in_config);
        EB_RUN(test_bad_fixtures);
        EB_RUN(test_load_errors);
        EB_RUN(test_secrets_registered);
        eb_log_shutdown();
        return eb_test_summary();
}
