/*
 * eb_shard: sources sharded across replicas through Kafka (scale.shards;
 * docs/scaling.md).
 *
 * A source belongs to shard eb_shard_of(name, N) (FNV-1a of its name,
 * modulo N: stable across processes, hosts and versions). The control
 * topic <state_prefix>.shards has N partitions; every replica joins the
 * consumer group <state_prefix>-shards on it (cooperative-sticky) and
 * owns the shards of the partitions the group assigns it. Nothing is ever
 * written to the control topic: the group coordinator is the only
 * coordinator.
 *
 * An owned shard has its own transactional producer (transactional.id
 * <state_prefix>-shard-<n>), its own pipeline (dedupe table, state writer)
 * and its sources in the process's one poller. Its life:
 *
 *   assigned -> txn init (fences a previous owner, aborts its open
 *   transaction) -> restore this shard's .seen ids and its sources'
 *   checkpoints -> sources start, intake partition n is consumed
 *   revoked  -> sources removed (in-flight requests cancelled), intake
 *   partition n released, the open transaction commits (bounded by
 *   scale.rebalance_timeout) -> producer and pipeline freed -> only then
 *   the partition is given back to the group, so the next owner starts
 *   after this one has stopped.
 *
 * Webhooks (the intake tier): any replica verifies any source's webhook
 * and appends the verified event to <state_prefix>.intake, partition =
 * the source's shard, key = source, through an idempotent producer; the
 * request is answered once that write is acknowledged. The shard's owner
 * consumes partition n and publishes the events in its transactions, the
 * consumed offsets committed in the same transaction
 * (consume-transform-produce), so each intake record is published once.
 *
 * Thread context: the loop thread only.
 */
#ifndef EB_SHARD_H
#define EB_SHARD_H

#include "eb_config.h"
#include "eb_event.h"
#include "eb_metrics.h"
#include "eb_pipeline.h"
#include "eb_poller.h"

struct event_base;
typedef struct eb_shards_s eb_shards_t;

/** Intake record format version. */
#define EB_INTAKE_VERSION 1
/** Tick of the group member, the intake consumer and stopping shards. */
#define EB_SHARD_TICK_MS 20
/** Intake records handled per tick at most. */
#define EB_INTAKE_BATCH 1000

/** @returns the shard of source @p name among @p nshards (> 0). */
int eb_shard_of(const char *name, int nshards);

/**
 * @brief The intake record of one verified webhook event: JSON
 * {"v":1,"source":S,"received_ms":T,"event":{id, source, provider,
 * account, entity_type, entity_id, action, actor, version, time_ms,
 * fields, native}}. A trigger record is {"v":1,"source":S,"trigger":true}.
 * @returns new string (free()) of *@p lenp bytes, NULL on failure.
 */
char *eb_intake_encode(const struct eb_event *e, size_t *lenp);

/**
 * @brief Decode an intake record: *@p sourcep (new string) and either
 * *@p evtp (new event) or *@p trigger = 1.
 * @returns 0, or -EINVAL (not an intake record of this version, a
 * required field missing, empty or mistyped, the event's source not the
 * record's). An event decoded here is complete enough to render.
 */
int eb_intake_decode(const void *buf, size_t len, char **sourcep,
                     struct eb_event **evtp, int *trigger);

/** Called once when the process must stop (a fenced shard, a consumer
 *  error that cannot be recovered): @p why is borrowed. */
typedef void eb_shards_fatal_cb(void *opaque, const char *why);

/**
 * @brief Set up sharding for @p cfg (scale.shards > 0; borrowed, must
 * outlive the manager: every shard's producer and pipeline use its
 * settings, also after eb_shards_reload()): check or
 * create the control and intake topics (N partitions each; a different
 * partition count is an error naming the fix), create the intake producer
 * and the two consumers, and join the group. Blocks briefly (metadata).
 * @param poller borrowed: owned shards' sources run in it.
 * @returns new manager or NULL with @p errstr.
 */
eb_shards_t *eb_shards_new(struct event_base *base, const struct eb_config *cfg,
                           eb_poller_t *poller, eb_shards_fatal_cb *fatal,
                           void *opaque, char *errstr, size_t errstr_size);

/** @returns the poller's sink: routes a source's pages to its shard. */
struct eb_sink eb_shards_poll_sink(eb_shards_t *m);

/** @returns the webhook sink: appends verified events to the intake. */
struct eb_sink eb_shards_intake_sink(eb_shards_t *m);

/**
 * @brief Kommo-style poll trigger for @p source, from any replica: an
 * intake record its shard's owner turns into eb_poller_trigger().
 * @returns 0, -ENOENT (unknown source) or -EAGAIN (intake queue full).
 */
int eb_shards_trigger(eb_shards_t *m, const char *source);

/** @brief SIGHUP: switch the sources to @p cfg's (borrowed until the
 *  next reload and the work of the sources started from it settled);
 *  owned shards add, remove and restart their changed sources. */
void eb_shards_reload(eb_shards_t *m, const struct eb_config *cfg,
                      struct eb_reload_tally *tally);

/** @brief Shutdown: stop every owned shard (sources, then commit). */
void eb_shards_stop(eb_shards_t *m);

/** @returns 1 when no owned shard has a publish pending (the drain's
 *  test, with the poller's). */
int eb_shards_idle(const eb_shards_t *m);

/** @returns the pipeline of @p source's shard if owned here, else NULL
 *  (metrics). */
eb_pipeline_t *eb_shards_pipeline_for(void *m, const char *source);

/** @returns shards owned (running or starting) now. */
int eb_shards_owned(const eb_shards_t *m);

/** @brief Collector: evbridge_shard_* and evbridge_intake_* families. */
void eb_shards_collect(struct eb_prom *w, void *opaque);

/** @brief Free: stop what runs (bounded), leave the group. NULL no-op. */
void eb_shards_free(eb_shards_t *m);

#endif /* EB_SHARD_H */
