/*
 * eb_log: one logger for the process.
 *
 * One record is one line on stderr (or the sink a test installs):
 *
 *     2026-11-22T08:30:00.123Z W kafka: delivery failed topic=x err=...
 *     {"ts":"2026-11-22T08:30:00.123Z","level":"warn","module":"kafka",...}
 *
 * The level is checked before any formatting. Every string registered with
 * eb_log_add_secret() is replaced by "***" in every record, whoever wrote
 * it (our code, librdkafka, libevent), so a credential cannot reach a log
 * line even through a library's error text.
 *
 * Thread context: records may come from any thread (librdkafka's own
 * threads log before log.queue is set up); writes are one fputs of a fully
 * built line, which stdio keeps whole.
 */
#ifndef EB_LOG_H
#define EB_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef enum {
        EB_LOG_DEBUG = 0,
        EB_LOG_INFO = 1,
        EB_LOG_WARN = 2,
        EB_LOG_ERROR = 3,
        EB_LOG_OFF = 4,
} eb_log_level_t;

typedef enum {
        EB_LOG_FMT_TEXT = 0,
        EB_LOG_FMT_JSON = 1,
} eb_log_format_t;

extern eb_log_level_t eb_log_level;

#if defined(__GNUC__)
#define EB_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define EB_WUR          __attribute__((warn_unused_result))
#else
#define EB_PRINTF(f, a)
#define EB_WUR
#endif

/** @brief Log a record if @p lvl passes the level. @p mod names the module. */
#define eb_log(lvl, mod, ...)                                                  \
        do {                                                                   \
                if ((lvl) >= eb_log_level)                                     \
                        eb_log_write((lvl), (mod), __VA_ARGS__);               \
        } while (0)

#define eb_debug(mod, ...) eb_log(EB_LOG_DEBUG, mod, __VA_ARGS__)
#define eb_info(mod, ...)  eb_log(EB_LOG_INFO, mod, __VA_ARGS__)
#define eb_warn(mod, ...)  eb_log(EB_LOG_WARN, mod, __VA_ARGS__)
#define eb_error(mod, ...) eb_log(EB_LOG_ERROR, mod, __VA_ARGS__)

/** @brief Format and emit one record (use the eb_log macros instead). */
void eb_log_write(eb_log_level_t lvl, const char *mod, const char *fmt, ...)
        EB_PRINTF(3, 4);
void eb_log_vwrite(eb_log_level_t lvl, const char *mod, const char *fmt,
                   va_list ap) EB_PRINTF(3, 0);

void eb_log_set_level(eb_log_level_t lvl);
void eb_log_set_format(eb_log_format_t fmt);

/** @brief Parse "debug|info|warn|error|off". @returns 0 or -EINVAL. */
int eb_log_level_parse(const char *s, eb_log_level_t *lvl) EB_WUR;

/**
 * @brief Register a secret that must never appear in a log line.
 * The string is copied; strings shorter than 4 bytes are ignored (they
 * would redact ordinary words). Safe to call repeatedly with the same value.
 */
void eb_log_add_secret(const char *secret);

/**
 * @brief Forget one secret registered before (a rotated token), so a
 * process that renews credentials keeps a bounded list. Unknown: no-op.
 */
void eb_log_remove_secret(const char *secret);

/** @brief How many secrets are registered (tests). */
size_t eb_log_secret_count(void);

/** @brief Forget every registered secret (reload, tests). */
void eb_log_clear_secrets(void);

/**
 * @brief Send finished lines to @p fn instead of stderr (tests); NULL
 * restores stderr. @p fn gets the line without its trailing newline.
 */
void eb_log_set_sink(void (*fn)(const char *line, void *opaque), void *opaque);

/**
 * @brief Copy @p in to @p out (size @p outsz) with every registered secret
 * replaced by "***". Always NUL-terminates.
 * @returns @p out.
 */
char *eb_log_redact(const char *in, char *out, size_t outsz);

/** @brief Route libevent's internal log messages into eb_log. */
void eb_log_hook_libevent(void);

/**
 * @brief librdkafka log_cb: syslog level to ours, facility as detail.
 * Signature matches rd_kafka_conf_set_log_cb().
 */
struct rd_kafka_s;
void eb_log_rdkafka_cb(const struct rd_kafka_s *rk, int level, const char *fac,
                       const char *buf);

/** @brief Free the logger's memory (end of main; valgrind-clean exit). */
void eb_log_shutdown(void);

#endif /* EB_LOG_H */
