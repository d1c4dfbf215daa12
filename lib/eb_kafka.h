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
 * Transactions (exactly-once delivery): a handle made by eb_kafka_new_ex()
 * with EB_KAFKA_NEW_F_TRANSACTIONS from an exactly-once config is a
 * transactional producer (transactional.id = kafka.transactional_id). Its
 * eb_kafka_txn_*() calls never block the loop and report through a
 * callback. librdkafka's init/commit/abort_transaction() block, and on
 * 2.0.2 resuming them with short timeouts from the loop can crash the
 * process (docs/delivery.md), so: the loop first waits, without blocking,
 * until every delivery report of the transaction has been served on it;
 * then one helper thread per transactional producer makes the blocking
 * call (in EB_KAFKA_TXN_SLICE_MS slices) and wakes the loop through the
 * same pipe. The helper touches no application state; every callback of
 * this module still runs on the loop thread. The life of a transaction:
 *
 *     eb_kafka_txn_init(k, cb)              once, before anything else
 *     eb_kafka_txn_begin(k)                 -> EB_KAFKA_TXN_IN_TXN
 *     eb_kafka_produce(k, ...) ...          events and state records
 *     eb_kafka_txn_commit(k, cb)            cb(0): durable and visible
 *       cb(-ECANCELED) -> eb_kafka_txn_abort(k, cb), then redo the batch
 *       cb(-EPERM)     -> fenced by a newer instance: shut down
 *
 * In a transaction a delivery report only says that the broker stored the
 * message; it is NOT durable: if the transaction is then aborted, consumers
 * (read_committed) never see it. Only a successful commit callback makes
 * the batch durable, so checkpoints advance and held webhooks are answered
 * from the commit callback, never from delivery reports. Every delivery
 * report of a transaction runs before its commit or abort callback.
 * docs/delivery.md has the librdkafka 2.0.2 behaviour behind all this.
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
#include "eb_envelope.h"
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
 * (e.g. an idempotence sequence violation, or a fenced transactional
 * producer: reason "fenced: another evbridge with transactional.id=X took
 * over (...)"). The application should shut down through its normal drain
 * path; never exit() from here. Runs at most once per handle.
 * @param reason borrowed, valid during the call.
 * @remark Runs on the loop thread from rd_kafka_poll() or from the timer
 * that drives a transaction operation.
 */
typedef void eb_kafka_fatal_cb_t(void *opaque, const char *reason);

/** Whether a failed message may have reached the log (for dedupe). */
typedef enum {
        EB_KAFKA_NOT_PERSISTED = 0,      /* safe to retry, drop dedupe key */
        EB_KAFKA_POSSIBLY_PERSISTED = 1, /* may be in the log: keep the key */
        EB_KAFKA_PERSISTED = 2,          /* acknowledged */
} eb_kafka_persisted_t;

/** Counters for metrics (monotonic except outq and txn_last_commit_ms). */
struct eb_kafka_stats {
        uint64_t produced;   /* accepted by eb_kafka_produce() */
        uint64_t delivered;  /* acknowledged by the cluster */
        uint64_t failed;     /* delivery reports with an error */
        uint64_t queue_full; /* eb_kafka_produce() returned -EAGAIN */
        int outq;            /* rd_kafka_outq_len() at the time of the call */
        /* Transactions (zero unless transactional). */
        uint64_t txn_committed;      /* commits that succeeded */
        uint64_t txn_aborted;        /* aborts that succeeded */
        uint64_t txn_commit_failed;  /* commits that ended in an error */
        int64_t txn_last_commit_ms;  /* duration of the last good commit */
        uint64_t txn_offset_commits; /* commits that carried consumed
                                        offsets (eb_kafka_txn_set_offsets) */
};

/** Flags of eb_kafka_new_ex(). */
#define EB_KAFKA_NEW_F_TRANSACTIONS                                            \
        0x1 /* exactly-once config => transactional producer */

/** Where a transactional producer is (eb_kafka_txn_state()). */
typedef enum {
        EB_KAFKA_TXN_NONE = 0,     /* not a transactional producer */
        EB_KAFKA_TXN_INIT,         /* eb_kafka_txn_init() not called yet */
        EB_KAFKA_TXN_INITIALIZING, /* eb_kafka_txn_init() running */
        EB_KAFKA_TXN_READY,        /* may eb_kafka_txn_begin() */
        EB_KAFKA_TXN_IN_TXN,       /* begun: produce, commit or abort */
        EB_KAFKA_TXN_COMMITTING,   /* eb_kafka_txn_commit() running */
        EB_KAFKA_TXN_ABORTING,     /* eb_kafka_txn_abort() running */
        EB_KAFKA_TXN_ABORTABLE,    /* failed: only eb_kafka_txn_abort() */
        EB_KAFKA_TXN_FATAL,        /* fenced or fatal error: shut down */
} eb_kafka_txn_state_t;

/** Transaction operations run without blocking the loop (see the .c). */
#define EB_KAFKA_TXN_TICK_MAX_MS  10   /* delivery-report wait: check period */
#define EB_KAFKA_TXN_SLOW_MS      5000 /* then every EB_KAFKA_TXN_SLOW_TICK */
#define EB_KAFKA_TXN_SLOW_TICK_MS 100
#define EB_KAFKA_TXN_SLICE_MS     500 /* one blocking call of the helper */
/** Default transaction.timeout.ms unless kafka.properties sets it. */
#define EB_KAFKA_TXN_TIMEOUT_MS 60000

/**
 * @brief Result of eb_kafka_txn_init(), eb_kafka_txn_commit() and
 * eb_kafka_txn_abort().
 * @param err 0 on success, otherwise:
 *  -ECANCELED  (commit only) abortable: the transaction failed as a whole
 *              (a message failed delivery, the coordinator rejected it,
 *              ...); nothing of it is visible to read_committed
 *              consumers. Call eb_kafka_txn_abort(), then redo the batch
 *              in a new transaction.
 *  -EPERM      fenced: another producer with the same transactional.id
 *              initialised after this one. Fatal; the fatal callback has
 *              run with "fenced: another evbridge with
 *              transactional.id=X took over".
 *  -EACCES     (init) transactional.id or cluster authorization refused;
 *              fatal.
 *  -EIO        any other fatal producer error; fatal.
 *  -ESHUTDOWN  eb_kafka_free() ran before the operation could finish.
 * @param errstr borrowed, valid during the call; librdkafka's text or ours.
 * @remark Runs on the loop thread from a timer, never inside the call that
 * started the operation (or from eb_kafka_free()). It may start the next
 * operation (e.g. abort from a commit's callback) but must not call
 * eb_kafka_free().
 */
typedef void eb_kafka_txn_cb_t(void *opaque, int err, const char *errstr);

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
 * @brief eb_kafka_new() with options. @p flags 0 is eb_kafka_new().
 *
 * With EB_KAFKA_NEW_F_TRANSACTIONS and @p cfg->delivery ==
 * EB_DELIVERY_EXACTLY_ONCE the producer is transactional: our defaults
 * then also hold transactional.id = @p cfg->transactional_id (must be set)
 * and transaction.timeout.ms = EB_KAFKA_TXN_TIMEOUT_MS, and
 * message.timeout.ms defaults to transaction.timeout.ms (librdkafka
 * requires message.timeout.ms <= transaction.timeout.ms). Every
 * kafka.properties entry still wins, except transactional.id, which is
 * refused there (kafka.transactional_id is the one place to set it).
 * With an at-least-once config the flag changes nothing.
 * Nothing is sent until eb_kafka_txn_init().
 */
eb_kafka_t *eb_kafka_new_ex(struct event_base *base,
                            const struct eb_config *cfg, int flags,
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
 * (fatal producer state, anything else; on a transactional producer also
 * when no transaction is open: state other than EB_KAFKA_TXN_IN_TXN).
 * On error @p cb is never called.
 * @remark On a transactional producer a refused message is not part of
 * the transaction: a caller that needs it there must abort, not commit.
 */
int eb_kafka_produce(eb_kafka_t *k, const struct eb_envelope *env,
                     eb_kafka_dr_cb_t *cb, void *opaque) EB_WUR;

/**
 * @brief Set TCP_NODELAY on every listening TCP socket of this process,
 * which is how librdkafka's mock brokers get it (their accepted
 * connections inherit it on Linux). A real broker answers with Nagle off;
 * the 2.0.2 mock does not, so each small response after a request can
 * wait for the client's delayed ACK (about 40 ms) and a request/response
 * exchange (a transaction's produce, AddPartitionsToTxn, EndTxn) looks
 * many times slower than it is. For the embedded cluster and
 * evbridge-kafka-mock only; call it right after creating the cluster.
 * @returns the number of sockets changed.
 */
int eb_kafka_mock_nodelay(void);

/**
 * @brief Set one librdkafka property. On failure @p errstr is
 * "<what>: <librdkafka's message>", with secrets redacted.
 * @returns 0 or -EINVAL.
 */
int eb_kafka_conf_set(rd_kafka_conf_t *conf, const char *what, const char *key,
                      const char *val, char *errstr, size_t errstr_size);

/**
 * @brief eb_kafka_produce() to an explicit @p partition
 * (RD_KAFKA_PARTITION_UA: the partitioner's choice, i.e.
 * eb_kafka_produce()). For the sharded intake topic, whose partition is
 * the source's shard.
 */
int eb_kafka_produce_to(eb_kafka_t *k, const struct eb_envelope *env,
                        int32_t partition, eb_kafka_dr_cb_t *cb,
                        void *opaque) EB_WUR;

/**
 * @brief Consume-transform-produce: commit @p offsets (the next offset to
 * read per partition) for the consumer group of @p cgmd within the open
 * transaction. Call after eb_kafka_txn_begin(), before
 * eb_kafka_txn_commit(); the helper sends them
 * (rd_kafka_send_offsets_to_transaction()) right before the commit, and
 * an error there fails the commit like any other (-ECANCELED: abort and
 * redo). Takes ownership of both (also on error); a second call replaces
 * the first. Cleared when the transaction ends.
 * @returns 0, or -EINVAL (not transactional, no open transaction, an
 * operation running).
 */
int eb_kafka_txn_set_offsets(eb_kafka_t *k,
                             rd_kafka_topic_partition_list_t *offsets,
                             rd_kafka_consumer_group_metadata_t *cgmd);

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
/**
 * @brief The last connection-level problem librdkafka reported (cannot
 * resolve or connect to a broker, TLS or SASL failure, all brokers down),
 * in librdkafka's words, which name the broker: "127.0.0.1:1/bootstrap:
 * Connect to ipv4#127.0.0.1:1 failed: Connection refused (...)".
 * @return 0 and "" when there is none, -1 with the text in @p buf.
 * @remark SASL authentication failures are fatal (the fatal callback
 * runs with "authentication failed: ..."): no retry can fix them.
 */
int eb_kafka_problem(eb_kafka_t *k, char *buf, size_t size);

/**
 * @brief The last message the cluster refused or failed to deliver
 * ("topic crm.close.lead.created: Broker: Topic authorization failed
 * (TOPIC_AUTHORIZATION_FAILED)"), purges left out.
 * @return when it happened (wall clock ms), 0 (and "") if never.
 */
int64_t eb_kafka_last_failure(const eb_kafka_t *k, char *buf, size_t size);

/** @brief Forget the problem (the cluster answered since). */
void eb_kafka_problem_clear(eb_kafka_t *k);

const char *eb_kafka_bootstrap(const eb_kafka_t *k);

/** @returns 1 when running on the embedded mock cluster. */
int eb_kafka_embedded(const eb_kafka_t *k);

/**
 * @returns borrowed producer handle (metadata, admin requests, tests). Do
 * not destroy it, change its queues, produce on it or call its
 * transactional API: a transactional handle counts the messages of
 * eb_kafka_produce() to know when a transaction's delivery reports are all
 * in. Valid until eb_kafka_free().
 */
rd_kafka_t *eb_kafka_rk(eb_kafka_t *k);

/**
 * @returns borrowed mock cluster in embedded mode (fault injection in
 * tests: rd_kafka_mock_broker_set_down() ...), NULL otherwise. Valid until
 * eb_kafka_free().
 */
rd_kafka_mock_cluster_t *eb_kafka_mock_cluster(eb_kafka_t *k);

/*
 * Transaction calls. Each returns -ESHUTDOWN when called from a callback
 * that eb_kafka_free() runs. Only one operation (init, commit, abort) runs
 * at a time.
 */

/** @returns 1 if the producer is transactional (eb_kafka_new_ex()). */
int eb_kafka_transactional(const eb_kafka_t *k);

/** @returns the transaction state (EB_KAFKA_TXN_NONE if not
 *  transactional). */
eb_kafka_txn_state_t eb_kafka_txn_state(const eb_kafka_t *k);

/** @returns static name of @p st ("ready", "in_txn", ...). */
const char *eb_kafka_txn_state_name(eb_kafka_txn_state_t st);

/** Illegal transaction state transitions seen by this process (a bug;
 *  part of evbridge_state_transitions_illegal_total). */
uint64_t eb_kafka_txn_illegal_total(void);

/**
 * @brief Start init_transactions: get a producer id and epoch from the
 * transaction coordinator, fencing any older producer with the same
 * transactional.id and aborting its open transaction. Starts the helper
 * thread, which retries until it ends; there is no overall time limit (it
 * waits for the coordinator as long as it takes, logging every 10 s), so a
 * caller that wants one uses its own timer and eb_kafka_free().
 * @param cb required; runs exactly once: 0 (state READY), or -EPERM /
 * -EACCES / -EIO (state FATAL), or -ESHUTDOWN.
 * @returns 0 (state INITIALIZING), -EINVAL (not transactional, or not in
 * state INIT), -EIO (fatal state, or the thread could not be started).
 */
int eb_kafka_txn_init(eb_kafka_t *k, eb_kafka_txn_cb_t *cb,
                      void *opaque) EB_WUR;

/**
 * @brief Begin a transaction (local, immediate).
 * @returns 0 (state IN_TXN), -EBUSY (an operation is running), -EINVAL
 * (not transactional, or not in state READY), -EIO (fatal state).
 */
int eb_kafka_txn_begin(eb_kafka_t *k) EB_WUR;

/**
 * @brief Commit the open transaction: wait for every delivery report of
 * its messages, then end it on the coordinator. Never blocks; the outcome
 * goes to @p cb (see eb_kafka_txn_cb_t), which runs after every delivery
 * report of the transaction's messages.
 * Commit resumes through broker outages (librdkafka retries by itself);
 * a message that exceeds message.timeout.ms meanwhile makes it end with
 * -ECANCELED.
 * @param cb required; runs exactly once. On 0 the state is READY; on
 * -ECANCELED it is ABORTABLE; on -EPERM / -EIO it is FATAL.
 * @returns 0 (state COMMITTING), -EBUSY (an operation is running),
 * -EINVAL (not transactional, or not in state IN_TXN), -EIO (fatal).
 */
int eb_kafka_txn_commit(eb_kafka_t *k, eb_kafka_txn_cb_t *cb,
                        void *opaque) EB_WUR;

/**
 * @brief Abort the open (or failed) transaction: its messages still
 * queued are sent and their delivery reports served first (after an
 * abortable error librdkafka has purged them: -ECANCELED, NOT_PERSISTED),
 * then the coordinator writes the abort markers. Delivery reports that
 * said "delivered" do not make those messages visible: read_committed
 * consumers skip them.
 * @param cb required; runs exactly once: 0 (state READY) or -EPERM / -EIO
 * (state FATAL) or -ESHUTDOWN.
 * @returns 0 (state ABORTING), -EBUSY (an operation is running, e.g. a
 * commit: librdkafka cannot abort a commit half way; wait for its
 * callback), -EINVAL (not transactional, or not in state IN_TXN or
 * ABORTABLE), -EIO (fatal).
 */
int eb_kafka_txn_abort(eb_kafka_t *k, eb_kafka_txn_cb_t *cb,
                       void *opaque) EB_WUR;

/**
 * @brief Tear down, in this order: on a transactional producer, finish a
 * running commit or abort, or abort an open transaction, within the drain
 * timeout (blocking; a pending eb_kafka_txn_*() callback runs from here
 * with its result, or -ESHUTDOWN); flush for at most the configured drain
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

/**
 * @brief Bound what eb_kafka_free() waits for (a transaction's end, the
 * queue's delivery) to @p ms instead of shutdown.drain_timeout: 0 purges
 * at once. For a producer whose pending work is given up anyway (a
 * shard handed back after scale.rebalance_timeout).
 */
void eb_kafka_set_drain(eb_kafka_t *k, int64_t ms);

/* ---- topic creation (any thread; blocking) ------------------------------ */

/**
 * @brief eb_state_topics_exist() and eb_state_ensure_topics() on the
 * producer's own connection (and its embedded cluster, if it runs one),
 * for callers that hold only the eb_kafka_t. Same results. Blocking.
 */
int eb_kafka_state_topics_exist(eb_kafka_t *k, const struct eb_config *cfg);
int eb_kafka_ensure_state_topics(eb_kafka_t *k, const struct eb_config *cfg,
                                 int partitions_seen, int timeout_ms,
                                 char *errstr, size_t errstr_size) EB_WUR;

/** @returns 1 if @p err says the principal may not do it (ACLs,
 * authentication), which no retry fixes. */
int eb_kafka_auth_error(rd_kafka_resp_err_t err);

/** One topic for eb_kafka_create_topics(). */
struct eb_kafka_topic_spec {
        const char *name;
        int partitions;
        /* NULL-terminated key, value pairs of topic configs; may be NULL */
        const char *const *configs;
        /* out: the broker's answer for this topic (NO_ERROR: created;
         * TOPIC_ALREADY_EXISTS is left to the caller to judge) */
        rd_kafka_resp_err_t err;
        char errstr[256];
};

/**
 * @brief CreateTopics for @p n topics in one request, replication factor
 * the broker's default, and wait for the answer: the one topic-creation
 * path of evbridge (state, control and intake topics).
 * @param rk borrowed producer, consumer or admin handle.
 * @param timeout_ms request and operation timeout (0: 30 s).
 * @returns 0 when the broker answered (each topic's outcome in its err and
 * errstr), -EINVAL (a bad spec), -ETIMEDOUT or -EIO (no answer, or the
 * request as a whole failed; @p errstr says why).
 * @remark Thread context: any thread; blocks up to @p timeout_ms + 1 s.
 */
int eb_kafka_create_topics(rd_kafka_t *rk, struct eb_kafka_topic_spec *t,
                           size_t n, int timeout_ms, char *errstr,
                           size_t errstr_size) EB_WUR;

/**
 * @brief Make sure @p topic exists: create it with @p partitions when it
 * does not, and wait until the brokers' metadata shows it (up to 10 s).
 * Asks for the metadata of every topic, never of @p topic alone, so a
 * broker with auto.create.topics.enable does not create it first with
 * its default partition count.
 * @returns the topic's partition count (which may differ from
 * @p partitions for a topic that existed), 0 if it is still not visible,
 * or -errno with @p errstr.
 * @remark Blocking; start-up (the shard group's control and intake
 * topics).
 */
int eb_kafka_topic_ensure(eb_kafka_t *k, const char *topic, int partitions,
                          char *errstr, size_t errstr_size);

#endif /* EB_KAFKA_H */
