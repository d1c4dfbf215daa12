/*
 * eb_kafka_int.h: what the files of the Kafka publisher share and nobody
 * else sees. eb_kafka.c (producer, delivery reports, error events),
 * eb_txn.c (transactions: helper thread and state machine),
 * eb_mockcluster.c (the embedded cluster) and eb_kafka_admin.c (topics)
 * all work on one struct eb_kafka_s, on the loop thread unless a comment
 * says otherwise.
 */
#ifndef EB_KAFKA_INT_H
#define EB_KAFKA_INT_H

#include <event2/event.h>
#include <pthread.h>

#include "eb_kafka.h"

/* Error events handed from another thread to the loop, at most. */
#define EB_KAFKA_DEFERRED_MAX 16

/* The transaction operation running. */
enum txn_op {
        TXN_OP_NONE = 0,
        TXN_OP_INIT,
        TXN_OP_COMMIT,
        TXN_OP_ABORT,
};

/* Where the running operation is. */
enum txn_phase {
        TXN_PHASE_IDLE = 0,
        TXN_PHASE_WAIT_DRS, /* loop: waiting for every delivery report */
        TXN_PHASE_WORKER,   /* the helper thread is in librdkafka */
};

/* The helper thread that makes librdkafka's blocking transactional calls
 * (eb_txn.c). Everything but thread is under mu. */
struct txn_worker {
        pthread_t thread;
        int started; /* loop thread only */
        pthread_mutex_t mu;
        pthread_cond_t cv;
        enum txn_op job;          /* to run; NONE: idle */
        int quit;                 /* stop at the next slice */
        int done;                 /* finished; result below */
        rd_kafka_error_t *result; /* NULL: success */
};

/* An error event librdkafka served on the helper thread. */
struct deferred_err {
        int err;
        char reason[512];
};

struct ratelimit {
        int64_t window_ms; /* start of the current 1 s window */
        int count;         /* lines logged in it */
        uint64_t dropped;  /* lines suppressed since the last report */
};

struct eb_kafka_s {
        struct event_base *base; /* borrowed */
        rd_kafka_t *rk;
        rd_kafka_queue_t *mainq; /* io-event enabled main queue */
        int wake_fds[2];         /* [0] read end (loop), [1] librdkafka */
        struct event *wake_ev;
        struct event *backstop_ev;

        /* Embedded mode: the mock cluster and the handle that owns it. */
        rd_kafka_t *mock_rk;
        rd_kafka_mock_cluster_t *mock;
        char *bootstrap;

        eb_kafka_fatal_cb_t *fatal_cb;
        void *fatal_opaque;
        int64_t drain_ms;

        int flags;
#define EB_KAFKA_F_FATAL    0x1 /* fatal error seen: produce refuses */
#define EB_KAFKA_F_CLOSING  0x2 /* inside eb_kafka_free() */
#define EB_KAFKA_F_REPORTED 0x4 /* fatal callback has run (at most once) */

        eb_kafka_persisted_t dr_status; /* of the DR being served */
        struct eb_kafka_stats stats;
        struct ratelimit rl_dr;
        struct ratelimit rl_err;
        char fatal_msg[768]; /* what the fatal callback was told */

        /* The last connection-level problem librdkafka reported (error
         * events: transport, resolve, TLS, SASL, all brokers down), for
         * the start-up and /readyz while the cluster cannot be used. */
        char problem[512];
        int problem_err;
        /* The last message the cluster refused (an ACL, a topic), for
         * /status: the log has every one, rate-limited. */
        char failure[400];
        int64_t failure_ms;

        pthread_t loop_thread; /* the thread that made the handle */
        int sync_ready;        /* the mutexes below are initialised */
        pthread_mutex_t def_mu;
        struct deferred_err deferred[EB_KAFKA_DEFERRED_MAX];
        int ndeferred;
        uint64_t deferred_dropped;

        /* Transactions: txn_id is NULL unless transactional. */
        char *txn_id;
        eb_kafka_txn_state_t txn_state;
        struct event *txn_ev; /* drives txn_op */
        enum txn_op txn_op;
        enum txn_phase txn_phase;
        struct txn_worker worker;
        eb_kafka_txn_cb_t *txn_cb;
        void *txn_opaque;
        int64_t txn_op_start_ms; /* when txn_op started */
        int64_t txn_report_ms;   /* next "still running" line */
        int txn_tick_ms;         /* next resume delay */
        uint64_t txn_msgs;       /* produced in the open transaction */
        /* Consumed offsets to commit with the open transaction
         * (eb_kafka_txn_set_offsets()); the helper sends them before the
         * commit. Owned; cleared when the transaction ends. */
        rd_kafka_topic_partition_list_t *txn_offsets;
        rd_kafka_consumer_group_metadata_t *txn_cgmd;
        int txn_offsets_sent;
};

/* ---- eb_kafka.c ---------------------------------------------------------- */

/* Wake the loop from another thread (the helper). */
void kafka_wake_loop(eb_kafka_t *k);
/* Record a fatal error (the one place): produce refuses, FATAL state, the
 * fatal callback runs once. k->fatal_msg then holds what it was told. */
void kafka_set_fatal(eb_kafka_t *k, rd_kafka_resp_err_t code, const char *text);
/* How a fatal error reaches a transaction callback (-EPERM fenced, ...). */
int kafka_fatal_errno(rd_kafka_resp_err_t code);

/* ---- eb_mockcluster.c ---------------------------------------------------- */

/* Start the embedded cluster of cfg->embedded_brokers brokers; sets
 * k->mock, k->mock_rk and k->bootstrap. */
int kafka_mock_start(eb_kafka_t *k, const struct eb_config *cfg, char *errstr,
                     size_t errstr_size);
/* Stop it (after the producer is gone). */
void kafka_mock_stop(eb_kafka_t *k);

/* ---- eb_txn.c ------------------------------------------------------------ */

/* Every change of k->txn_state goes through here (checked). */
void txn_set_state(eb_kafka_t *k, eb_kafka_txn_state_t to);
/* The transaction timer's callback (k->txn_ev). */
void txn_step(evutil_socket_t fd, short what, void *arg);
/* A delivery report was served: the last one a commit or abort waits for
 * lets it go on at once. */
void txn_on_delivered(eb_kafka_t *k);
/* From the wake-up: has the helper finished? */
void txn_poll_worker(eb_kafka_t *k);
/* eb_kafka_free(): finish or abort what runs, stop the helper. */
void txn_teardown(eb_kafka_t *k);
void txn_offsets_clear(eb_kafka_t *k);

/*
 * The transaction state machine on its own (tests/unit/test_eb_txn.c).
 * eb_txn_transition_ok(): 1 if @p from -> @p to is in the table (a
 * transition to the same state always is: nothing changes).
 * eb_txn_state_set(): moves *@p st to @p to; an illegal transition is a
 * bug: it is logged at error level and counted, and then, in debug builds
 * (EB_DEBUG, every build but release) the process aborts; release builds
 * carry on with the new state, as before the check existed.
 * @returns 0, or -1 for an illegal transition (when it did not abort).
 */
int eb_txn_transition_ok(eb_kafka_txn_state_t from, eb_kafka_txn_state_t to);
int eb_txn_state_set(eb_kafka_txn_state_t *st, eb_kafka_txn_state_t to,
                     const char *txn_id);
/* Illegal transitions seen by this process. */
uint64_t eb_txn_illegal_count(void);
/* Whether an illegal transition aborts (default: 1 with EB_DEBUG);
 * @returns the previous setting. For tests. */
int eb_txn_abort_on_illegal(int on);

#endif /* EB_KAFKA_INT_H */
