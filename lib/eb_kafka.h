/*
 * eb_kafka: the Kafka publisher, driven by the libevent loop.
 *
 * One idempotent librdkafka producer (enable.idempotence=true, acks=all, a
 * finite message.timeout.ms, client.id=evbridge-<host>) whose main queue
 * wakes the event loop through a pipe (rd_kafka_queue_io_event_enable),
 * with a 250 ms backstop timer. Delivery reports, librdkafka errors and
 * librdkafka log lines (log.queue=true) are therefore all served on the
 * loop thread, inside rd_kafka_poll(rk, 0): no locks in application code.
 *
 * Embedded mode (config without kafka.brokers): an in-process mock cluster
 * is started and the producer points at it. Nothing it stores is durable;
 * it dies with the process. Its bootstrap address is logged so
 * `kcat -b ADDR -L` works from another shell. librdkafka 2.0.2's mock does
 * not implement read_committed isolation (consumers also see aborted and
 * open transactions), which matters only to tests of transactional code.
 *
 * Contract for eb_kafka_produce() callbacks: each accepted message's
 * callback runs exactly once, on the loop thread: when the cluster
 * acknowledges it, when it finally fails (message.timeout.ms, a permanent
 * broker error), or from eb_kafka_free() with -ECANCELED if it was still
 * queued at teardown.
 *
 * Transactions (exactly-once delivery) are a later addition on top of this
 * handle: they will add eb_kafka_txn_*() calls and take transactional.id
 * from the config; eb_kafka_rk() exposes the producer for that work.
 *
 * Thread context: every function must be called on the thread that runs
 * the event_base given to eb_kafka_new(), unless stated otherwise.
 */
#ifndef EB_KAFKA_H
#define EB_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stddef.h>
#include <stdint.h>

#include "eb_config.h"
#include "eb_event.h"
#include "eb_log.h"

struct event_base;

typedef struct eb_kafka_s eb_kafka_t;

/** Default message.timeout.ms unless kafka.properties sets it. */
#define EB_KAFKA_MESSAGE_TIMEOUT_MS 300000
/** Backstop poll interval, in case a pipe wake-up is ever missed. */
#define EB_KAFKA_BACKSTOP_MS 250
/** eb_kafka_free() flush bound when cfg->drain_timeout_ms is 0. */
#define EB_KAFKA_DEFAULT_DRAIN_MS 20000
/** Largest kafka.embedded_brokers accepted. */
#define EB_KAFKA_MAX_EMBEDDED_BROKERS 16

/**
 * @brief Delivery callback of eb_kafka_produce().
 * @param opaque the pointer given to eb_kafka_produce().
 * @param err 0 when the cluster acknowledged the message, otherwise a
 * negative errno: -ETIMEDOUT (message.timeout.ms elapsed), -ECANCELED
 * (purged at eb_kafka_free()), -EACCES (authorization), -ENOENT (unknown
 * topic or partition), -EINVAL (message rejected as invalid or too large),
 * -EIO (anything else, including a fatal producer error).
 * @param errstr borrowed, valid during the call: librdkafka's text for the
 * error ("Success" when @p err is 0).
 * @remark Runs on the loop thread from rd_kafka_poll(); it may call
 * eb_kafka_produce() but must not call eb_kafka_free() or eb_kafka_flush().
 * eb_kafka_dr_persisted() tells whether a failed message may still have
 * been written.
 */
typedef void eb_kafka_dr_cb_t(void *opaque, int err, const char *errstr);

/**
 * @brief Fatal error callback: the producer can no longer deliver anything
 * (e.g. an idempotence sequence violation, or later a fenced transactional
 * producer). The application should shut down through its normal drain
 * path; never exit() from here.
 * @param reason borrowed, valid during the call.
 * @remark Runs on the loop thread from rd_kafka_poll().
 */
typedef void eb_kafka_fatal_cb_t(void *opaque, const char *reason);

/** Whether a failed message may have reached the log (for dedupe). */
typedef enum {
        EB_KAFKA_NOT_PERSISTED = 0,      /* safe to retry, drop dedupe key */
        EB_KAFKA_POSSIBLY_PERSISTED = 1, /* may be in the log: keep the key */
        EB_KAFKA_PERSISTED = 2,          /* acknowledged */
} eb_kafka_persisted_t;

/** Counters for metrics (monotonic except outq). */
struct eb_kafka_stats {
        uint64_t produced;   /* accepted by eb_kafka_produce() */
        uint64_t delivered;  /* acknowledged by the cluster */
        uint64_t failed;     /* delivery reports with an error */
        uint64_t queue_full; /* eb_kafka_produce() returned -EAGAIN */
        int outq;            /* rd_kafka_outq_len() at the time of the call */
};

/**
 * @brief Create the producer (and, in embedded mode, the mock cluster) and
 * attach its wake-ups to @p base.
 *
 * Configuration, in order (later wins): our defaults (enable.idempotence,
 * acks=all, message.timeout.ms, client.id, log.queue), bootstrap.servers
 * from @p cfg->brokers, queue.buffering.max.messages from
 * @p cfg->queue_max_messages (0: librdkafka's default), then every
 * @p cfg->properties entry unchanged. In embedded mode bootstrap.servers
 * is always the mock cluster's, with @p cfg->embedded_brokers brokers (0
 * means 1; at most EB_KAFKA_MAX_EMBEDDED_BROKERS).
 *
 * @param base borrowed; must outlive the handle.
 * @param cfg borrowed; only read during the call (the drain bound is
 * copied).
 * @param errstr receives e.g. "kafka.properties.foo: No such configuration
 * property: \"foo\"" on failure.
 * @returns new handle (free with eb_kafka_free()), or NULL.
 */
eb_kafka_t *eb_kafka_new(struct event_base *base, const struct eb_config *cfg,
                         char *errstr, size_t errstr_size);

/**
 * @brief Enqueue one rendered envelope: topic, key, value (copied) and
 * headers. Never blocks and never retries.
 * @param env borrowed; may be freed as soon as this returns.
 * @param cb optional (NULL: fire and forget, counted only).
 * @param opaque passed to @p cb.
 * @returns 0 (then @p cb will run exactly once), -EAGAIN when the local
 * queue is full (back off: answer 503, skip a poll cycle), -EINVAL for an
 * unusable envelope (no topic, too large, illegal topic name) or -EIO
 * (fatal producer state, anything else). On error @p cb is never called.
 */
int eb_kafka_produce(eb_kafka_t *k, const struct eb_envelope *env,
                     eb_kafka_dr_cb_t *cb, void *opaque) EB_WUR;

/**
 * @brief Wait until every queued message has been delivered or has failed,
 * serving delivery callbacks on this thread (they run before this
 * returns).
 * @returns 0, or -ETIMEDOUT if messages remain after @p timeout_ms.
 * @remark Blocks the loop: for shutdown and tests, not for normal flow.
 */
int eb_kafka_flush(eb_kafka_t *k, int timeout_ms) EB_WUR;

/**
 * @returns messages and requests not yet acknowledged plus delivery
 * reports not yet served (rd_kafka_outq_len()).
 */
int eb_kafka_outq_len(eb_kafka_t *k);

/** @brief Copy the counters into @p st. */
void eb_kafka_get_stats(eb_kafka_t *k, struct eb_kafka_stats *st);

/**
 * @brief Set the fatal error callback (NULL: just log). Without one a fatal
 * error is logged and every later eb_kafka_produce() returns -EIO.
 */
void eb_kafka_set_fatal_cb(eb_kafka_t *k, eb_kafka_fatal_cb_t *cb,
                           void *opaque);

/**
 * @returns whether the message whose callback is running may have been
 * written. Only meaningful inside an eb_kafka_dr_cb_t.
 */
eb_kafka_persisted_t eb_kafka_dr_persisted(const eb_kafka_t *k);

/**
 * @returns borrowed bootstrap servers: the embedded cluster's address, or
 * the configured brokers. Valid until eb_kafka_free().
 */
const char *eb_kafka_bootstrap(const eb_kafka_t *k);

/** @returns 1 when running on the embedded mock cluster. */
int eb_kafka_embedded(const eb_kafka_t *k);

/**
 * @returns borrowed producer handle (transactions, metadata, tests). Do not
 * destroy it or change its queues. Valid until eb_kafka_free().
 */
rd_kafka_t *eb_kafka_rk(eb_kafka_t *k);

/**
 * @returns borrowed mock cluster in embedded mode (fault injection in
 * tests: rd_kafka_mock_broker_set_down() ...), NULL otherwise. Valid until
 * eb_kafka_free().
 */
rd_kafka_mock_cluster_t *eb_kafka_mock_cluster(eb_kafka_t *k);

/**
 * @brief Tear down, in this order: flush for at most the configured drain
 * timeout (shutdown.drain_timeout, default 20 s); purge what is left, whose
 * callbacks then run with -ECANCELED; disable the queue's io-event and
 * destroy the queue; free the loop events and the pipe; destroy the
 * producer; then destroy the embedded cluster and its owner handle.
 * NULL is a no-op.
 * @remark Must be called while the event_base still exists, and before
 * anything a pending callback's opaque refers to is freed. Never from
 * inside one of this handle's callbacks.
 */
void eb_kafka_free(eb_kafka_t *k);

#endif /* EB_KAFKA_H */
