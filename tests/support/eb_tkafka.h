/*
 * eb_tkafka: a real Apache Kafka broker for a test binary.
 *
 *     eb_tkafka_t *k = eb_tkafka_start(1, NULL);
 *     eb_tkafka_create_topic(eb_tkafka_bootstrap(k), "crm.x", 3, NULL);
 *     ... produce / run evbridge against eb_tkafka_bootstrap(k) ...
 *     ... read back with eb_kmock_consume_all() (read_committed) ...
 *     eb_tkafka_stop(k);
 *
 * The broker is tests/kafka/broker (Apache Kafka 4.x, KRaft, from Maven
 * artifacts) in a temporary directory, on ports the kernel picked, one
 * per call: tests never share state. With EB_TEST_BROKERS=host:port set,
 * a one-node request without options uses that cluster instead (nothing
 * is started or stopped; the test must then use names of its own).
 *
 * Everything blocks and runs on the calling thread; failures print one
 * line on stderr saying why.
 */
#ifndef EB_TKAFKA_H
#define EB_TKAFKA_H

#include <stddef.h>

typedef struct eb_tkafka_s eb_tkafka_t;

/**
 * @brief Start a cluster of @p nodes (1 or 3) combined broker/controller
 * nodes. @p opts: extra options of `tests/kafka/broker start`
 * ("--no-auto-create", "--sasl", "--acl"), or NULL.
 * @returns the cluster (stop with eb_tkafka_stop()), or NULL.
 */
eb_tkafka_t *eb_tkafka_start(int nodes, const char *opts);

/** @returns borrowed "host:port,..." bootstrap list, valid until stop. */
const char *eb_tkafka_bootstrap(const eb_tkafka_t *k);

/** @returns 1 when the cluster is EB_TEST_BROKERS's (not ours), else 0. */
int eb_tkafka_shared(const eb_tkafka_t *k);

/**
 * @brief `tests/kafka/broker VERB DIR [NODE]` on our cluster: VERB is
 * "kill", "restart", "pause" or "resume"; @p node 0 means every node.
 * @returns 0, or -1 (also for a shared cluster).
 */
int eb_tkafka_ctl(eb_tkafka_t *k, const char *verb, int node);

/** @brief Stop the nodes and remove their directory. NULL ok. */
void eb_tkafka_stop(eb_tkafka_t *k);

/**
 * @brief Create @p topic with @p partitions partitions (replication
 * factor: the broker's default) through the Admin API.
 * @param configs NULL, or "name", "value", ..., NULL.
 * @returns 0, -EEXIST if it exists, or -EIO (reason on stderr).
 */
int eb_tkafka_create_topic(const char *bootstrap, const char *topic,
                           int partitions, const char *const *configs);

/**
 * @brief The value of topic config @p name of @p topic, as the broker
 * describes it (DescribeConfigs; defaults included), into @p out.
 * @returns 0, -ENOENT if the topic or the config is unknown, or -EIO.
 */
int eb_tkafka_topic_config(const char *bootstrap, const char *topic,
                           const char *name, char *out, size_t size);

/**
 * @brief The same for broker config @p name of node @p node (node ids
 * count from 1).
 */
int eb_tkafka_broker_config(const char *bootstrap, int node, const char *name,
                            char *out, size_t size);

/**
 * @brief A name of its own for this process: "<stem>.<pid>" into @p out,
 * so runs against a shared cluster (EB_TEST_BROKERS) do not collide.
 * @returns @p out.
 */
char *eb_tkafka_name(char *out, size_t size, const char *stem);

/** @returns "Apache Kafka 4.1.1" or the shared cluster's address. */
const char *eb_tkafka_describe(const eb_tkafka_t *k);

#endif /* EB_TKAFKA_H */
