/*
 * eb_state: evbridge's own state, kept in two Kafka topics per deployment
 * (formats and restore: docs/delivery.md "The state topics").
 *
 *   <state_prefix>.checkpoints  cleanup.policy=compact, key = source name,
 *       value = JSON {"v":1,"source":S,"checkpoint":<provider JSON>,
 *       "ts":<ms>,"w":"<session hex>","seq":N,"prev":P}
 *   <state_prefix>.seen         cleanup.policy=delete, retention.ms =
 *       dedupe window + 1 day, key = transactional.id, value = the dedupe
 *       fingerprints committed in one transaction with their event times,
 *       in a compact binary form (about 17 bytes per id; split at
 *       EB_STATE_MAX_RECORD bytes).
 *
 * Every state record carries a transaction stamp (w, seq, prev): w is a
 * random 64-bit session id of the writing process, seq numbers its
 * transaction attempts 1, 2, 3, ... (an aborted attempt's redo gets the
 * next number) and prev is the seq of its last COMMITTED transaction when
 * the record was built. A stamp (seq S, prev P) therefore proves that P
 * committed and that every attempt between P and S was aborted. Restore
 * uses this to drop records of aborted transactions even when the broker
 * does not honour isolation.level=read_committed (librdkafka 2.0.2's mock
 * does not). Only a session's last transaction is never confirmed by a
 * later stamp; on a broker that honours read_committed (every real Kafka)
 * it is committed, since the consumer could not see it otherwise, so it is
 * trusted unless eb_state_restore_opts.distrust_tail is set.
 *
 * The writer's side of the contract (eb_state_writer_t): call
 * eb_state_writer_begin() for every transaction attempt, put
 * eb_state_seen_records() (at least one record, even with no ids) and any
 * checkpoint records in that transaction, then call
 * eb_state_writer_committed() or eb_state_writer_aborted() with its
 * outcome before the next begin.
 *
 * Thread context: none of it touches the event loop. eb_state_ensure_topics()
 * and eb_state_restore() block (start-up only, with a timeout).
 */
#ifndef EB_STATE_H
#define EB_STATE_H

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stddef.h>
#include <stdint.h>

#include "eb_config.h"
#include "eb_dedupe.h"
#include "eb_envelope.h"
#include "eb_event.h"
#include "eb_log.h"

#define EB_STATE_CHECKPOINTS_SUFFIX ".checkpoints"
#define EB_STATE_SEEN_SUFFIX        ".seen"

/** Largest value of one seen record (the broker default limit is ~1 MB). */
#define EB_STATE_MAX_RECORD (900 * 1024)
/** Smallest max_bytes eb_state_seen_records() accepts (header + one id). */
#define EB_STATE_MIN_RECORD 128
/** Largest checkpoint record value restore accepts. */
#define EB_STATE_MAX_CHECKPOINT (1024 * 1024)
/** Longest checkpoint key (source name) the restore filters look at. */
#define EB_STATE_KEY_MAX 256
/** .seen keeps ids this much longer than the dedupe window. */
#define EB_STATE_RETENTION_MARGIN_MS (24 * 3600 * 1000LL)
/** eb_state_restore() bound when opts->timeout_ms is 0. */
#define EB_STATE_RESTORE_TIMEOUT_MS 120000
/** Seen record format: magic bytes and version. */
#define EB_STATE_SEEN_MAGIC0  0xEB
#define EB_STATE_SEEN_MAGIC1  0x5E
#define EB_STATE_SEEN_VERSION 1

/** A transaction stamp (see above). session 0 means "no stamp". */
struct eb_state_txn {
        uint64_t session;
        uint64_t seq;
        uint64_t prev;
};

/* ---- names and topic creation ------------------------------------------ */

/** @returns the state topics' prefix (state_prefix, or "evbridge"). */
const char *eb_state_prefix(const struct eb_config *cfg);
/** @returns new "<state_prefix>.checkpoints". */
char *eb_state_topic_checkpoints(const struct eb_config *cfg);

/** @returns new "<state_prefix>.seen". */
char *eb_state_topic_seen(const struct eb_config *cfg);

/**
 * @returns the partitions of each state topic: 1 without sharding;
 * scale.shards + 1 with it: partition 0 keeps the records written before
 * the topics were partitioned by shard (and an unsharded instance's), and
 * partition n + 1 is shard n's (eb_state_shard_partition()), so a shard's
 * restore reads two partitions, not every shard's records
 * (docs/scaling.md).
 */
int eb_state_partitions(const struct eb_config *cfg);

/** @returns the state partition of shard @p n (n + 1). */
static inline int32_t eb_state_shard_partition(int n)
{
        return n + 1;
}

/**
 * @returns retention.ms for .seen: dedupe window + 1 day, or -1 (keep
 * forever) when the window is 0 (no time bound).
 */
int64_t eb_state_seen_retention_ms(const struct eb_config *cfg);

/**
 * @brief Whether both state topics exist in the cluster's metadata (one
 * all-topics metadata request, 10 s at most; no topic is created).
 * @returns 1, or 0 (one is missing, or the metadata is unavailable).
 */
int eb_state_topics_exist(rd_kafka_t *rk, const struct eb_config *cfg);

/**
 * @brief Create both state topics if they do not exist (blocking, for
 * start-up, before the loop serves anything).
 *
 * .checkpoints: 1 partition, cleanup.policy=compact. .seen:
 * @p partitions_seen partitions (0: 1), cleanup.policy=delete,
 * retention.ms from eb_state_seen_retention_ms(). With scale.shards both
 * get eb_state_partitions() partitions (@p partitions_seen is ignored).
 * Replication factor is the broker's default. TOPIC_ALREADY_EXISTS is success;
 * existing topics' configs are then checked with DescribeConfigs where the
 * broker allows it: a compacted .seen (it would keep only one record per
 * transactional.id) is an error, a non-compacted .checkpoints or a
 * .seen retention shorter than the window is a warning.
 *
 * @param rk borrowed producer or admin handle (eb_kafka_rk()) for the
 * Admin API (CreateTopics / DescribeConfigs).
 * @param mock borrowed embedded cluster (eb_kafka_mock_cluster()) or NULL.
 * librdkafka 2.0.2's mock has no controller, so its CreateTopics and
 * DescribeConfigs always time out: with @p mock the topics are created
 * on the mock directly (it keeps no topic configs).
 * @param timeout_ms overall bound (0: 30 s).
 * @param errstr on failure, what went wrong AND exactly what to create
 * by hand (names, partitions, configs), e.g. when the principal lacks
 * CREATE on the cluster.
 * @returns 0, -EACCES (not authorized), -ETIMEDOUT, -EINVAL (bad config,
 * e.g. a compacted .seen), -EIO (the broker refused for another reason).
 */
int eb_state_ensure_topics(rd_kafka_t *rk, rd_kafka_mock_cluster_t *mock,
                           const struct eb_config *cfg, int partitions_seen,
                           int timeout_ms, char *errstr,
                           size_t errstr_size) EB_WUR;

/* ---- the writer ---------------------------------------------------------- */

typedef struct eb_state_writer_s eb_state_writer_t;

/**
 * @brief A writer of state records for one process (one session).
 * @param cfg borrowed, only read during the call (topic names and the
 * .seen key, which is cfg->transactional_id, or state_prefix without one).
 * @param session 0: a random id (the normal case); tests pass their own.
 * @returns new writer (free with eb_state_writer_free()).
 */
eb_state_writer_t *eb_state_writer_new(const struct eb_config *cfg,
                                       uint64_t session);

/** @brief Free; NULL is a no-op. */
void eb_state_writer_free(eb_state_writer_t *w);

/**
 * @brief Number the next transaction attempt. A transaction still open
 * (begin without committed/aborted) is taken as aborted.
 * @returns its seq (1, 2, ...).
 */
uint64_t eb_state_writer_begin(eb_state_writer_t *w);

/** @brief The transaction from the last begin committed. */
void eb_state_writer_committed(eb_state_writer_t *w);

/** @brief The transaction from the last begin was aborted (or failed). */
void eb_state_writer_aborted(eb_state_writer_t *w);

/** @brief Copy the stamp of the open transaction (seq 0 if none). */
void eb_state_writer_txn(const eb_state_writer_t *w, struct eb_state_txn *txn);

/* ---- records ------------------------------------------------------------- */

/**
 * @brief Build the checkpoint record of @p source for the open
 * transaction: topic, key (= @p source) and value (JSON) in @p env.
 * @param cp borrowed provider checkpoint (any JSON value).
 * @param ts_ms the record's time (normally eb_now_ms()).
 * @param env receives owned strings; free with eb_envelope_fini().
 * @returns 0, or -EINVAL (no open transaction, empty source, @p cp not
 * serialisable).
 */
int eb_state_checkpoint_record(const eb_state_writer_t *w, const char *source,
                               const json_t *cp, int64_t ts_ms,
                               struct eb_envelope *env) EB_WUR;

/**
 * @brief Build the seen records of the open transaction: @p n
 * fingerprints with their times (Unix seconds, 0 .. 2^40), in as few
 * records of at most @p max_bytes value bytes as possible; always at
 * least one record (n = 0 gives one record with no ids, which still
 * carries the transaction's stamp).
 * @param max_bytes 0: EB_STATE_MAX_RECORD; at least EB_STATE_MIN_RECORD.
 * @param envsp receives a new array of *@p cntp envelopes; free each with
 * eb_envelope_fini() and the array with free().
 * @returns 0, or -EINVAL (no open transaction, a time out of range,
 * max_bytes too small).
 */
int eb_state_seen_records(const eb_state_writer_t *w, const struct eb_fp *fps,
                          const int64_t *times, size_t n, size_t max_bytes,
                          struct eb_envelope **envsp, size_t *cntp) EB_WUR;

/**
 * @brief Encode one seen record value (no splitting).
 * @param outp receives a new buffer of *@p lenp bytes (free()).
 * @returns 0 or -EINVAL (a time out of range, session 0).
 */
int eb_state_seen_encode(const struct eb_state_txn *txn,
                         const struct eb_fp *fps, const int64_t *times,
                         size_t n, unsigned char **outp, size_t *lenp) EB_WUR;

/**
 * @brief Decode a seen record value, validating all of it first.
 * @param fpsp, timesp receive new arrays of *@p np entries (free(); NULL
 * when *np is 0).
 * @returns 0, or -EINVAL (not a seen record, unknown version or flags,
 * truncated, trailing bytes, time out of range).
 */
int eb_state_seen_decode(const void *buf, size_t len, struct eb_state_txn *txn,
                         struct eb_fp **fpsp, int64_t **timesp,
                         size_t *np) EB_WUR;

/**
 * @brief Decode a checkpoint record value.
 * @param sourcep receives a new string; @p cpp a new reference.
 * @param txn receives the stamp (session 0 if the record has none).
 * @returns 0, or -EINVAL (not JSON, not an object, no "source" string or
 * "checkpoint", wrong types, larger than EB_STATE_MAX_CHECKPOINT).
 */
int eb_state_checkpoint_decode(const void *buf, size_t len, char **sourcep,
                               json_t **cpp, int64_t *ts_msp,
                               struct eb_state_txn *txn) EB_WUR;

/* ---- restore --------------------------------------------------------------
 */

/** What eb_state_restore() found. */
struct eb_state_restore_stats {
        uint64_t records;                 /* read, both topics */
        uint64_t seen_records;            /* .seen records decoded */
        uint64_t checkpoint_records;      /* .checkpoints records decoded */
        uint64_t garbage;                 /* undecodable records skipped */
        uint64_t ids;                     /* inserted into the dedupe table */
        uint64_t ids_duplicate;           /* already in the table */
        uint64_t ids_expired;             /* older than the window: skipped */
        uint64_t ids_aborted;             /* of transactions proven aborted */
        uint64_t ids_unconfirmed;         /* of unconfirmed last transactions,
                                             skipped (distrust_tail) */
        uint64_t checkpoints;             /* sources restored */
        uint64_t checkpoints_aborted;     /* records of aborted txns skipped */
        uint64_t checkpoints_unconfirmed; /* skipped (distrust_tail) */
        uint64_t txns_aborted;            /* proven aborted, records seen */
        uint64_t tails;                   /* sessions whose last transaction
                                             had no later confirmation */
        uint64_t assumed_committed;       /* outcome not provable from the
                                             stamps (records out of order) */
        int partitions_seen;              /* partitions found (0: missing) */
        int partitions_checkpoints;
        int partitioned; /* bit 0: .seen, bit 1: .checkpoints was read by
                            shard (opts.shard_partition and partition 0) */
        int64_t ms;      /* time taken */
};

/** Options of eb_state_restore(); NULL means all zero. */
struct eb_state_restore_opts {
        int timeout_ms; /* 0: EB_STATE_RESTORE_TIMEOUT_MS */
        int64_t now_s;  /* reference for expiry; 0: the wall clock */
        /*
         * 1: skip the ids and checkpoints of each session's last
         * transaction unless a later stamp confirms it (for brokers that
         * do not honour read_committed: at-least-once for that batch
         * instead of a possible loss). 0 (default): trust it.
         */
        int distrust_tail;
        /*
         * Sharding (docs/scaling.md): NULL-terminated list of .seen keys
         * (transactional.ids) whose records are read; NULL reads them all.
         */
        const char *const *seen_keys;
        /*
         * Sharding: the partition of this shard (eb_state_shard_partition())
         * in a state topic that has exactly @c partitions partitions
         * (eb_state_partitions()): only it and partition 0 are read. A topic
         * with another count is read whole (through the filters below).
         * 0: every partition.
         */
        int32_t shard_partition;
        int partitions;
        /* Only checkpoints of sources this returns 1 for (NULL: all). */
        int (*want_source)(const char *source, void *opaque);
        void *want_opaque;
};

typedef struct eb_state_loader_s eb_state_loader_t;

/**
 * @brief A consumer handle configured like restore's: @p cfg->properties
 * (producer-only ones left out), bootstrap.servers = @p bootstrap (if
 * set), client.id "evbridge-<role>", group.id @p group,
 * isolation.level=read_committed, auto.offset.reset=earliest, no auto
 * commit, then @p extra (NULL-terminated key, value pairs; may be NULL).
 * Logs go through eb_log. For the shard and intake consumers.
 * @returns new handle (rd_kafka_destroy()), or NULL with @p errstr.
 */
rd_kafka_t *eb_state_consumer_new(const char *bootstrap,
                                  const struct eb_config *cfg,
                                  const char *group, const char *role,
                                  const char *const *extra,
                                  rd_kafka_conf_t *conf, char *errstr,
                                  size_t errstr_size);

/**
 * @brief The decision logic of eb_state_restore(), without Kafka: feed it
 * every .seen record in log order, then eb_state_loader_seen_done(), then
 * every .checkpoints record in log order, then eb_state_loader_finish().
 * @param dd borrowed table that receives the ids (its window decides
 * expiry, relative to @p now_s).
 * @returns new loader (free with eb_state_loader_free()).
 */
eb_state_loader_t *eb_state_loader_new(eb_dedupe_t *dd, int64_t now_s,
                                       int distrust_tail);

/** @returns 0, or -EINVAL (garbage: counted and skipped). */
int eb_state_loader_seen(eb_state_loader_t *ld, const void *value, size_t len);

/** @brief All .seen records are in: settle every session's last ones. */
void eb_state_loader_seen_done(eb_state_loader_t *ld);

/**
 * @brief One .checkpoints record (@p value NULL or empty: a tombstone for
 * @p key). @p partition and @p offset order the records.
 * @returns 0, or -EINVAL (garbage: counted and skipped).
 */
int eb_state_loader_checkpoint(eb_state_loader_t *ld, const void *key,
                               size_t key_len, const void *value, size_t len,
                               int32_t partition, int64_t offset);

/**
 * @brief Put the latest trusted checkpoint of every source into
 * @p checkpoints_out (source -> checkpoint, references added) and copy
 * the counters into @p st (ms is left alone).
 */
void eb_state_loader_finish(eb_state_loader_t *ld, json_t *checkpoints_out,
                            struct eb_state_restore_stats *st);

/** @brief Free; NULL is a no-op. */
void eb_state_loader_free(eb_state_loader_t *ld);

/**
 * @brief Read both state topics from the beginning to the high watermark
 * each partition had when this was called, into @p dd (every id with its
 * time; expired ones skipped) and @p checkpoints_out (latest trusted
 * checkpoint per source). Blocks (start-up), bounded by the timeout.
 *
 * Call it after eb_kafka_txn_init() has succeeded: that fences an older
 * instance with the same transactional.id and aborts its open
 * transaction; before that a read_committed consumer would wait for that
 * transaction (up to transaction.timeout.ms).
 *
 * The consumer takes @p cfg->properties (TLS, SASL; producer-only
 * properties are left out), then bootstrap.servers = @p bootstrap, then
 * isolation.level=read_committed and a group.id it never joins or commits
 * ("<transactional_id>-restore"). Watermarks come from a second, short
 * lived read_uncommitted handle, so transactions of other writers that are
 * open now are waited for, not cut off. A missing topic is empty (first
 * start). Records of transactions proven aborted are skipped (see the
 * top of this file).
 *
 * @param bootstrap borrowed (eb_kafka_bootstrap()); NULL or "": from
 * @p cfg->properties.
 * @param opts may be NULL.
 * @param dd borrowed; @p checkpoints_out borrowed JSON object.
 * @param st may be NULL.
 * @returns 0, -ETIMEDOUT (errstr names the partitions not read to their
 * end), -EACCES (authorization), -EINVAL (bad config), -EIO.
 */
int eb_state_restore(const char *bootstrap, const struct eb_config *cfg,
                     const struct eb_state_restore_opts *opts, eb_dedupe_t *dd,
                     json_t *checkpoints_out, struct eb_state_restore_stats *st,
                     char *errstr, size_t errstr_size) EB_WUR;

#endif /* EB_STATE_H */
