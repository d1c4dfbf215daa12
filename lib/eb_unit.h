/*
 * eb_unit: what one exactly-once unit starts from, the same for the
 * single process and for each shard of a sharded one (eb_app, eb_shard):
 * its producer, whose fatal errors go to the owner, and its pipeline
 * (dedupe, batching, state records) on that producer. The owner then
 * starts the transactions (eb_kafka_txn_init), restores and starts the
 * sources.
 *
 * Thread context: the loop thread only.
 */
#ifndef EB_UNIT_H
#define EB_UNIT_H

#include <stddef.h>

#include "eb_config.h"
#include "eb_kafka.h"
#include "eb_pipeline.h"

struct event_base;

struct eb_unit {
        eb_kafka_t *kafka;
        eb_pipeline_t *pipeline;
};

/**
 * @brief Create @p u's producer for @p cfg (borrowed; its
 * transactional.id names the unit) with eb_kafka_new_ex()'s @p flags,
 * send its fatal errors to @p fatal (may be NULL), and the pipeline on it.
 * @returns 0, or -1 with @p errstr and nothing left in @p u.
 */
int eb_unit_open(struct eb_unit *u, struct event_base *base,
                 const struct eb_config *cfg, int flags,
                 eb_kafka_fatal_cb_t *fatal, void *opaque, char *errstr,
                 size_t errstr_size);

#endif /* EB_UNIT_H */
