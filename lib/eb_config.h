/*
 * eb_config: the configuration file (JSON), loaded, interpolated and fully
 * validated before anything connects anywhere.
 *
 * Parse, then validate, then apply: eb_config_load() either returns a
 * complete config whose every value is in range, or fails with one message
 * that names the offending key by its path, e.g.
 *
 *     sources[1].poll.interval: expected a duration like "10s", got "often"
 *
 * String values may hold ${VAR} (an environment variable) and
 * ${file:/path} (a file's contents, trailing newline removed: a mounted
 * Kubernetes Secret). "$${" stands for a literal "${". Unknown keys are
 * errors (a typo must not silently become a default).
 *
 * Every credential and webhook secret is registered with
 * eb_log_add_secret() as it is loaded, so it can never reach a log line.
 *
 * The shape is documented in docs/configuration.md; provider-specific
 * options (filters, enrichment) are validated by the provider adapters
 * through eb_provider_check_config(), which the daemon runs after this.
 */
#ifndef EB_CONFIG_H
#define EB_CONFIG_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "eb_log.h"

typedef enum {
        EB_DELIVERY_EXACTLY_ONCE = 0,
        EB_DELIVERY_AT_LEAST_ONCE = 1,
} eb_delivery_t;

struct eb_kv {
        char *key;
        char *value;
};

struct eb_source_cfg {
        char *name;     /* [A-Za-z0-9._-], 1..100 chars, unique */
        char *provider; /* "kommo" | "close" | "kota" (checked by adapter) */
        char *base_url; /* NULL: the provider's default */
        int enabled;    /* "enabled": default true */

        /* credentials (secrets) */
        char *token;   /* Kommo "token" */
        char *api_key; /* Close / Kota "api_key" */

        /* poll */
        int64_t poll_interval_ms; /* "poll.interval", default 10s */
        char *poll_start;         /* "poll.start", default "24h" */
        int64_t overlap_ms;       /* "poll.overlap", -1: provider default */
        int64_t lag_ms;           /* "poll.lag", -1: provider default */
        int page_size;            /* "poll.page_size", 0: provider default */

        /* rate limit */
        double rate_rps; /* "rate_limit.rps", 0: provider default */
        int rate_burst;  /* "rate_limit.burst", 0: provider default */

        /* HTTP client */
        int64_t timeout_ms;         /* "http.timeout", default 20s */
        int64_t connect_timeout_ms; /* "http.connect_timeout", default 5s */
        size_t max_body;            /* "http.max_body", default 16 MiB */

        /* webhook ("webhook" block present => accepted) */
        int webhook_enabled;
        char *webhook_secret; /* HMAC key (Close: hex; Kota; standard) */
        char *webhook_token;  /* Kommo path/query token */
        char *webhook_scheme; /* signature scheme, NULL: provider's */
        int64_t webhook_tolerance_ms; /* default 5m */

        /* The whole source object as written (after interpolation), for
         * the provider adapter's own options ("options": {...}). Owned
         * reference. */
        json_t *json;

        /* "poll.max_buffered_events", default 2000: the most
         * events of a newest-first walk (Kommo, Close) held in memory
         * before they are published; walks are cut into time slices
         * that hold at most this many. */
        int max_buffered_events;
        /* "rate_limit.above_documented", default false: allow a
         * rate above the provider's documented per-account limit (a
         * simulator or a benchmark; never a real account). */
        int rate_above_documented;
        /* Kommo OAuth 2.0 instead of "credentials.token"
         * (docs/providers.md, "Kommo authentication"): the integration's
         * client_id, client_secret (secret) and redirect_uri, the initial
         * refresh_token (secret) and token_key (secret: 64 hex digits, the
         * AES-256 key that encrypts the newest token pair in the state
         * topic). All NULL when the source uses a long-lived token. */
        char *client_id;
        char *client_secret;
        char *redirect_uri;
        char *refresh_token;
        char *token_key;
};

struct eb_config {
        char *path; /* the file it came from, or "<string>" */

        /* kafka */
        char *brokers;        /* NULL: embedded mock cluster */
        int embedded;         /* 1 when brokers is absent or "embedded" */
        int embedded_brokers; /* "kafka.embedded_brokers", default 1 */
        char *topic_prefix;   /* default "crm" */
        char *topic_template; /* default "{prefix}.{provider}.{entity}.{action}"
                               */
        char *state_prefix;   /* default "evbridge" */
        char *transactional_id;    /* default "<state_prefix>-main" */
        eb_delivery_t delivery;    /* default exactly-once */
        int envelope_binary;       /* "kafka.envelope": structured|binary */
        int64_t batch_linger_ms;   /* "kafka.batch.linger", default 100ms */
        int batch_max_events;      /* "kafka.batch.max_events", default 5000 */
        size_t queue_max_messages; /* "kafka.queue_max_messages", 100000 */
        struct eb_kv *properties;  /* "kafka.properties" pass-through */
        size_t properties_cnt;

        /* http listener (webhooks, /metrics, /healthz, /readyz) */
        char *listen;            /* NULL: no listener; default "0.0.0.0:8080" */
        size_t http_max_body;    /* "http.max_body", default 1 MiB */
        size_t http_max_headers; /* "http.max_headers", default 16 KiB */
        int64_t http_timeout_ms; /* "http.timeout", default 10s */
        int64_t webhook_deadline_ms; /* "http.webhook_deadline", default 1500ms
                                      */
        int http_max_held;           /* "http.max_held", default 10000 */

        /* dedupe */
        int64_t dedupe_window_ms; /* default 72h */
        size_t dedupe_capacity;   /* default 1000000 */

        /* log */
        eb_log_level_t log_level;   /* default info */
        eb_log_format_t log_format; /* "text" | "json" */

        /* shutdown */
        int64_t drain_timeout_ms; /* "shutdown.drain_timeout", default 20s */

        struct eb_source_cfg *sources;
        size_t sources_cnt;

        /* "http.listen" split for the listener (added after the original
         * fields): host without IPv6 brackets, NULL when listen is NULL. */
        char *listen_host;
        int listen_port;

        /* "scale": sharding across replicas (docs/scaling.md). 0 shards:
         * one process owns every source (the default). */
        int scale_shards;                   /* "scale.shards", 0..1024 */
        int64_t scale_rebalance_timeout_ms; /* "scale.rebalance_timeout",
                                               default 10s */
        int64_t scale_session_timeout_ms;   /* "scale.session_timeout",
                                               default 10s */

        /* "kafka.deadletter_topic", NULL: "<topic_prefix>.deadletter".
         * Poison events (cannot be normalized or rendered) go there raw. */
        char *deadletter_topic;
};

/**
 * @brief Load, interpolate and validate the config file @p path.
 * @returns new config (free with eb_config_free()), or NULL with the
 * message ("<key path>: <what is wrong>", or "<file>:<line>: ..." for JSON
 * syntax) in @p errstr.
 */
struct eb_config *eb_config_load(const char *path, char *errstr,
                                 size_t errstr_size);

/**
 * @brief eb_config_load() for checking a config's shape where its secrets
 * are not mounted (a build machine, CI): a ${file:/path} whose file does
 * not exist becomes a placeholder (64 hex digits, one per path) instead
 * of an error. Never for running: the values are not the real ones.
 * @param absent_cnt how many such references there were (0: a full check).
 * @param first the first missing path.
 */
struct eb_config *eb_config_load_shape(const char *path, size_t *absent_cnt,
                                       char *first, size_t first_size,
                                       char *errstr, size_t errstr_size);

/** @brief Same as eb_config_load() from a string (tests, embedded demo). */
struct eb_config *eb_config_load_string(const char *json, char *errstr,
                                        size_t errstr_size);

/** @returns new config with every default and no sources. */
struct eb_config *eb_config_new_default(void);

/**
 * @brief Every key of the file with its type and default, from the
 * parser's own tables and eb_config_new_default(): the one source of
 * truth that docs/configuration.md is checked against. @p key is a dotted
 * path ("kafka.batch.linger", "sources[].poll.interval"); @p dflt is a
 * JSON-ish value ("\"crm\"", "5000", "true"), a duration in ms ("5ms"),
 * a size in bytes, "required", "absent", or "-" (computed, e.g. from the
 * provider).
 */
void eb_config_describe(void (*fn)(const char *key, const char *type,
                                   const char *dflt, void *opaque),
                        void *opaque);

/** @returns how many sources are enabled (what runs). */
size_t eb_config_enabled_sources(const struct eb_config *cfg);

/** @brief Free a config; NULL is a no-op. */
void eb_config_free(struct eb_config *cfg);

/** @returns borrowed source by name, or NULL. */
const struct eb_source_cfg *eb_config_source(const struct eb_config *cfg,
                                             const char *name);

/**
 * @brief What a reload changes in the polled sources: @p fn is called once
 * for each enabled source of @p ncfg that is new (@p o NULL) or changed
 * (both set), then once for each enabled source of @p old that is gone or
 * disabled (@p n NULL). Unchanged sources are not reported.
 */
void eb_config_diff_sources(const struct eb_config *old,
                            const struct eb_config *ncfg,
                            void (*fn)(const struct eb_source_cfg *o,
                                       const struct eb_source_cfg *n,
                                       void *opaque),
                            void *opaque);

/**
 * @brief Interpolate ${VAR} and ${file:/path} in @p in.
 * @returns new string, or NULL with the reason in @p errstr (without the
 * key path, which the caller prefixes).
 */
char *eb_config_interpolate(const char *in, char *errstr, size_t errstr_size);

#endif /* EB_CONFIG_H */
