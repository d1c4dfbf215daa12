/*
 * eb_kmock: Kafka helpers for tests, on librdkafka's in-process mock
 * cluster (librdkafka 2.0.2, rdkafka_mock.h).
 *
 *     eb_kmock_t *m = eb_kmock_start(3);
 *     eb_kmock_create_topic(eb_kmock_cluster(m), "crm.close.lead.created", 3);
 *     ... produce to eb_kmock_bootstrap(m) ...
 *     const char *topics[] = {"crm.close.lead.created", NULL};
 *     struct eb_kmock_records recs;
 *     rc = eb_kmock_consume_all(eb_kmock_bootstrap(m), topics, 10000, &recs);
 *     ... recs.v[i].key, eb_kmock_header(&recs.v[i], "content-type") ...
 *     eb_kmock_records_free(&recs);
 *     eb_kmock_stop(m);
 *
 * The readers work against any cluster (the daemon's embedded one through
 * eb_kafka_bootstrap(), or a real broker), read with
 * isolation.level=read_committed like every evbridge consumer should, and
 * never join a consumer group (they assign partitions and commit nothing),
 * so they can be called any number of times and see everything committed.
 *
 * Limitation of librdkafka 2.0.2's mock cluster: read_committed is not
 * honoured. Its Fetch reports the high watermark as the last stable offset
 * and never lists aborted transactions, so on the mock these readers return
 * records of aborted and still-open transactions too (tests/integration/
 * test_kmock.c pins this). Against a real broker they do not. On the mock,
 * assert transactional outcomes on commit/abort results and delivery
 * reports, not on what a consumer reads; better, run the case on a real
 * broker (eb_tkafka.h), as the integration tests do except where they
 * inject an error code only the mock can return.
 *
 * Failures print one line on stderr saying why, so a test log explains
 * itself. Everything runs on the calling thread and blocks.
 */
#ifndef EB_KMOCK_H
#define EB_KMOCK_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stddef.h>
#include <stdint.h>

typedef struct eb_kmock_s eb_kmock_t;

/**
 * @brief Start a mock cluster with @p brokers brokers (1..16) listening on
 * 127.0.0.1 ephemeral ports. Topics are auto-created on first produce
 * with the mock's default partition count (4).
 * @returns new cluster (stop with eb_kmock_stop()), or NULL.
 */
eb_kmock_t *eb_kmock_start(int brokers);

/** @returns borrowed "host:port,..." bootstrap list, valid until stop. */
const char *eb_kmock_bootstrap(const eb_kmock_t *m);

/** @returns borrowed mock cluster, for fault injection; valid until stop. */
rd_kafka_mock_cluster_t *eb_kmock_cluster(eb_kmock_t *m);

/** @brief Destroy the cluster (clients should be gone first). NULL ok. */
void eb_kmock_stop(eb_kmock_t *m);

/**
 * @brief Create @p topic with @p partitions partitions on @p mc (from
 * eb_kmock_cluster() or eb_kafka_mock_cluster()), replication factor
 * min(3, brokers). Creating an existing topic is an error.
 * @returns 0 or -EEXIST / -EINVAL.
 */
int eb_kmock_create_topic(rd_kafka_mock_cluster_t *mc, const char *topic,
                          int partitions);

/** One topic as metadata describes it. */
struct eb_kmock_topic {
        char *name;
        int partitions;
};

/**
 * @brief List the cluster's topics (internal "__" ones included), sorted
 * by name.
 * @param topicsp receives a new array of *@p cntp entries; free with
 * eb_kmock_topics_free().
 * @returns 0, or -ETIMEDOUT / -EIO.
 */
int eb_kmock_list_topics(const char *bootstrap, int timeout_ms,
                         struct eb_kmock_topic **topicsp, size_t *cntp);

/** @brief Free what eb_kmock_list_topics() returned. */
void eb_kmock_topics_free(struct eb_kmock_topic *topics, size_t cnt);

/** @returns 1 if @p name is in the list, else 0. */
int eb_kmock_topics_has(const struct eb_kmock_topic *topics, size_t cnt,
                        const char *name);

/** One record header. value is NULL for a null header value. */
struct eb_kmock_header {
        char *name;
        char *value; /* NUL-terminated copy (may contain NULs before) */
        size_t value_len;
};

/** One consumed record. Every pointer is owned by the records set. */
struct eb_kmock_record {
        char *topic;
        int32_t partition;
        int64_t offset;
        char *key; /* NUL-terminated copy, NULL for a null key */
        size_t key_len;
        char *value; /* NUL-terminated copy, NULL for a null value */
        size_t value_len;
        struct eb_kmock_header *headers; /* in record order */
        size_t header_cnt;
        int64_t timestamp; /* ms since epoch, -1 if none */
};

/** A set of records, sorted by topic, then partition, then offset. */
struct eb_kmock_records {
        struct eb_kmock_record *v;
        size_t cnt;
};

/**
 * @brief Read every committed record of @p topics from the beginning to
 * the end of each partition (on the mock: every record, see above).
 *
 * A read_committed consumer (auto.offset.reset=earliest) is assigned every
 * partition of every topic (from metadata) and polled until each partition
 * has reported end-of-partition with nothing newer behind it.
 *
 * @param topics NULL-terminated list of topic names.
 * @param timeout_ms overall bound, including metadata.
 * @param out always initialised; holds whatever was read, even on error
 * (useful in a failure message); free with eb_kmock_records_free().
 * @returns 0; -ENOENT if a topic does not exist; -ETIMEDOUT if some
 * partition did not reach its end in time; -EIO on a consumer error.
 */
int eb_kmock_consume_all(const char *bootstrap, const char *const *topics,
                         int timeout_ms, struct eb_kmock_records *out);

/** @brief Free a record set; it is empty afterwards. */
void eb_kmock_records_free(struct eb_kmock_records *recs);

/**
 * @returns borrowed value of the last header named @p name, or NULL.
 */
const char *eb_kmock_header(const struct eb_kmock_record *rec,
                            const char *name);

/** @returns how many headers named @p name @p rec has. */
size_t eb_kmock_header_count(const struct eb_kmock_record *rec,
                             const char *name);

/** @returns number of records of @p topic in @p recs. */
size_t eb_kmock_count(const struct eb_kmock_records *recs, const char *topic);

#endif /* EB_KMOCK_H */
