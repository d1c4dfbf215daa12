/*
 * eb_pipeline: from normalized events to Kafka, exactly once per version.
 *
 *   events -> dedupe (source, id, version) -> envelope -> eb_kafka_produce
 *          -> every delivery report in -> done(0) / done(err)
 *
 * It is the poller's sink (struct eb_sink) and the webhook intake's
 * publisher, so a webhook and a poll of the same event version publish one
 * message. A fingerprint is remembered as soon as its message is handed to
 * Kafka (so a concurrent duplicate is dropped) and forgotten again if its
 * delivery fails, NOT_PERSISTED or POSSIBLY_PERSISTED alike (so the retry
 * publishes it: a copy that timed out in flight may be in Kafka or not,
 * and only republishing it rules out a loss; the price is a possible
 * duplicate).
 *
 * Committed checkpoints are kept per source; eb_pipeline_checkpoint()
 * returns the last one whose events were all acknowledged.
 *
 * Exactly-once mode (a transactional producer, eb_kafka_new_ex() with
 * EB_KAFKA_NEW_F_TRANSACTIONS, and delivery "exactly-once"): publishes
 * accumulate into a Kafka transaction that closes after
 * kafka.batch.linger or kafka.batch.max_events; the transaction holds the
 * events (header "evbridge-txn: <session hex>:<seq>"), the seen record(s)
 * of their ids and one checkpoint record per source (eb_state). done(0)
 * runs only once that transaction has committed; an aborted one is redone
 * a few times, then its publishes get -EAGAIN. Details in the .c.
 *
 * Thread context: the loop thread only.
 */
#ifndef EB_PIPELINE_H
#define EB_PIPELINE_H

#include <jansson.h>
#include <stdint.h>

#include "eb_config.h"
#include "eb_dedupe.h"
#include "eb_event.h"
#include "eb_kafka.h"
#include "eb_metrics.h"
#include "eb_poller.h"
#include "eb_state.h"

struct event_base;
typedef struct eb_pipeline_s eb_pipeline_t;

/** Per-source publishing counters. */
struct eb_pipeline_stats {
        uint64_t published;      /* messages acknowledged by Kafka */
        uint64_t duplicates;     /* events dropped as already published */
        uint64_t failed;         /* messages whose delivery failed */
        uint64_t invalid;        /* events that could not be rendered */
        uint64_t queue_full;     /* publishes refused: Kafka queue full */
        int64_t newest_event_ms; /* newest event time acknowledged */
        uint64_t deadlettered;   /* poison events sent to the dead-letter
                                  * topic (counted when handed to Kafka) */
        uint64_t stripped;       /* Close versions published without data
                                  * and previous_data (non-admin key) */
};

/**
 * @brief Create a pipeline publishing through @p kafka (borrowed).
 * @p cfg is borrowed (topic template, prefix, envelope mode, dedupe
 * bounds) and must outlive the pipeline.
 * @returns new pipeline, or NULL with @p errstr.
 */
eb_pipeline_t *eb_pipeline_new(struct event_base *base,
                               const struct eb_config *cfg, eb_kafka_t *kafka,
                               char *errstr, size_t errstr_size);

/** @returns a sink (struct eb_sink) that publishes into @p pl. */
struct eb_sink eb_pipeline_sink(eb_pipeline_t *pl);

/**
 * @brief Publish @p cnt events (takes ownership of the array and events)
 * for source @p src, with checkpoint @p cp (borrowed, may be NULL) to
 * commit once they are all acknowledged. @p done runs exactly once, later,
 * from the loop (never inside this call) unless this returns an error.
 * @returns 0, or -EAGAIN (Kafka queue full before anything was produced).
 */
int eb_pipeline_publish(eb_pipeline_t *pl, const struct eb_source_cfg *src,
                        struct eb_event **evts, size_t cnt, json_t *cp,
                        eb_publish_done_cb *done, void *arg);

/**
 * @brief Consume-transform-produce (exactly-once only): take the consumer
 * whose records are published with eb_pipeline_publish_consumed(); each
 * transaction then also commits, for that consumer's group, the next
 * offset of every @p topic partition it published records of.
 * @p consumer is borrowed and must outlive the pipeline's transactions;
 * NULL @p topic detaches.
 */
void eb_pipeline_set_consumer(eb_pipeline_t *pl, const char *topic,
                              rd_kafka_t *consumer);

/**
 * @brief Exactly-once: from now on produce every record of the .seen
 * topic to partition @p seen and every record of the .checkpoints topic
 * (of any kind) to @p checkpoints; RD_KAFKA_PARTITION_UA (the default)
 * leaves it to the partitioner. A shard gives its own partition
 * (eb_state_shard_partition()) for a topic partitioned by shard, else
 * partition 0 (docs/scaling.md).
 */
void eb_pipeline_set_state_partitions(eb_pipeline_t *pl, int32_t seen,
                                      int32_t checkpoints);

/**
 * @brief eb_pipeline_publish() of the events of one consumed record
 * (@p partition, @p offset of the eb_pipeline_set_consumer() topic): its
 * offset commits in the same transaction as its events, even when they
 * are all duplicates. @p done as for eb_pipeline_publish().
 * @returns 0, -EAGAIN (back-pressure) or -EINVAL (not exactly-once, no
 * consumer set).
 */
int eb_pipeline_publish_consumed(eb_pipeline_t *pl,
                                 const struct eb_source_cfg *src,
                                 struct eb_event **evts, size_t cnt,
                                 int32_t partition, int64_t offset,
                                 eb_publish_done_cb *done, void *arg);

/** @returns borrowed last committed checkpoint of @p source, or NULL. */
json_t *eb_pipeline_checkpoint(const eb_pipeline_t *pl, const char *source);

/** @returns borrowed stats of @p source (zeroes if unknown: never NULL). */
const struct eb_pipeline_stats *eb_pipeline_stats(eb_pipeline_t *pl,
                                                  const char *source);

/** @returns borrowed dedupe table (metrics). */
const eb_dedupe_t *eb_pipeline_dedupe(const eb_pipeline_t *pl);

/**
 * @returns borrowed histogram of the seconds from eb_kafka_produce() to the
 * message's delivery report (success or failure), for metrics. Valid until
 * eb_pipeline_free().
 */
const struct eb_histogram *
eb_pipeline_delivery_latency(const eb_pipeline_t *pl);

/** @returns 1 in exactly-once (transactional) mode. */
int eb_pipeline_transactional(const eb_pipeline_t *pl);

/**
 * @returns exactly-once mode: publishes refused with -EAGAIN because the
 * messages held for transactions reached kafka.queue_max_messages (the
 * producer queue's bound; counted in evbridge_kafka_queue_full_total with
 * the producer's own refusals). 0 in at-least-once mode.
 */
uint64_t eb_pipeline_backpressure(const eb_pipeline_t *pl);

/**
 * @brief Exactly-once start-up: eb_state_restore() from @p bootstrap into
 * the pipeline's dedupe table and committed checkpoints (blocking; call
 * after eb_kafka_txn_init() succeeded, before anything publishes).
 * @param checkpoints_out borrowed JSON object: receives source ->
 * checkpoint (references added).
 * @param st may be NULL.
 * @returns 0 or eb_state_restore()'s error with @p errstr.
 */
int eb_pipeline_restore(eb_pipeline_t *pl, const char *bootstrap,
                        json_t *checkpoints_out,
                        struct eb_state_restore_stats *st, char *errstr,
                        size_t errstr_size) EB_WUR;

/**
 * @brief eb_pipeline_restore() with restore options (sharding: only this
 * shard's .seen keys and sources). @p opts may be NULL.
 */
int eb_pipeline_restore_ex(eb_pipeline_t *pl, const char *bootstrap,
                           const struct eb_state_restore_opts *opts,
                           json_t *checkpoints_out,
                           struct eb_state_restore_stats *st, char *errstr,
                           size_t errstr_size) EB_WUR;

/** @returns publishes not yet settled (in exactly-once mode including
 *  those in the open transaction, which the drain thus waits for). */
int eb_pipeline_pending(const eb_pipeline_t *pl);

/** @brief Free; pending publishes must have settled (flush Kafka first).
 *  NULL is a no-op. */
void eb_pipeline_free(eb_pipeline_t *pl);

#endif /* EB_PIPELINE_H */
