/*
 * eb_pipeline_int.h: what the two files of the pipeline share and nobody
 * else sees. eb_pipeline.c: the publish batches, dedupe and in-flight
 * tracking, rendering and the at-least-once engine; eb_pipeline_txn.c:
 * the exactly-once engine (transactional batching). Loop thread only.
 */
#ifndef EB_PIPELINE_INT_H
#define EB_PIPELINE_INT_H

#include <event2/event.h>

#include "eb_metrics.h"
#include "eb_pipeline.h"
#include "eb_state.h"

struct srcstat {
        struct srcstat *next;
        char *name;
        struct eb_pipeline_stats st;
        int64_t cp_committed_ms;    /* when its checkpoint last committed */
        int64_t stripped_logged_ms; /* monotonic: last stripped warning */
};

/*
 * A checkpoint that moves without events (Kommo's watermark follows the
 * clock on every idle poll) is persisted at most this often. Only the
 * restart point depends on it: after a crash the source re-reads at most
 * this much more, and the restored ids drop what was published.
 */
#define EB_PIPELINE_IDLE_CHECKPOINT_MS 30000

/* One publish call: settles when every produced message has its DR. */
struct batch {
        eb_pipeline_t *pl;
        char *source;
        json_t *cp;
        eb_publish_done_cb *done;
        void *arg;
        int outstanding;     /* messages produced, DR not yet in */
        int submitted;       /* all produce calls made */
        int err;             /* first error */
        struct event *later; /* settles from the loop when nothing is due */
        struct txn *txn;     /* exactly-once: the transaction it waits for */
        int32_t off_part;    /* consumed record this publish came from */
        int64_t off;         /* (intake), committed with it; -1: none */
};

/* A batch waiting on another batch's message with the same fingerprint. */
struct waiter {
        struct waiter *next;
        struct batch *b;
};

/* One message in flight: its fingerprint, for rollback. */
struct msg {
        struct batch *b;
        struct eb_fp fp;
        int64_t time_ms;
        int64_t produced_us; /* eb_mono_us() at produce, for the latency */
        struct msg *hnext;   /* in-flight index chain */
        struct waiter *waiters;
        /* exactly-once only: the kept rendered envelope (redone as is
         * after an abort), its place in the transaction, and the time
         * the id was remembered (Unix seconds, for the seen record) */
        struct eb_envelope env;
        struct msg *tnext;
        int64_t seen_s;
};

/*
 * Exactly-once mode: one transaction's worth of publishes. Messages are
 * kept rendered in memory and produced only when the transaction closes
 * (after kafka.batch.linger or kafka.batch.max_events), all in one go
 * together with the state records, so an attempt and its redo are the
 * same code and nothing is ever produced outside a transaction.
 */
struct txn {
        struct msg *msgs, **tail; /* in publish order */
        size_t nmsgs;
        struct batch **batches; /* publishes settled by its outcome */
        size_t nbatches, cap;
        int attempts; /* attempts aborted so far */
        int last_err; /* why the last attempt failed */
        /* Events of the running attempt whose delivery report is due, and
         * whether one of them failed: its state records wait for them. */
        size_t drs_due;
        int dr_failed, state_due;
};

/*
 * In-flight index: fingerprint -> message not yet acknowledged. A publish
 * that meets a duplicate of an in-flight message must not settle before
 * that message does: otherwise a webhook could be answered 200, or a poll
 * checkpoint move past an event, while the only copy on its way to Kafka
 * may still fail. Such a batch waits for the message and inherits its
 * error.
 */
#define EB_INFLIGHT_MIN_BUCKETS 1024

struct eb_pipeline_s {
        struct event_base *base;
        const struct eb_config *cfg;
        eb_kafka_t *kafka;
        eb_dedupe_t *dedupe;
        json_t *checkpoints; /* source name -> committed checkpoint */
        struct srcstat *stats;
        int pending;
        struct eb_pipeline_stats zero;
        struct eb_histogram latency; /* produce -> delivery report */
        struct msg **inflight;       /* buckets, power of two */
        size_t inflight_buckets;
        size_t inflight_cnt;
        /* exactly-once mode (a transactional producer) */
        int eos;
        int fatal;                 /* no transaction can run any more */
        eb_state_writer_t *writer; /* state record stamps */
        struct txn *cur;           /* accumulating, not produced yet */
        struct txn *closing;       /* being committed, aborted, redone */
        struct event *linger;      /* closes cur */
        int close_wanted;          /* cur is due once closing is over */
        uint64_t txn_redone;       /* attempts redone after an abort */
        uint64_t txn_failed;       /* transactions given up */
        uint64_t txn_backpressure; /* publishes refused: queue bound */
        /* consume-transform-produce (eb_pipeline_set_consumer()) */
        char *off_topic;
        rd_kafka_t *off_consumer;
        /* where state records go (eb_pipeline_set_state_partitions()) */
        int32_t state_partition[2];
        char *state_topics[2]; /* .seen, .checkpoints */
};

/* ---- eb_pipeline.c ------------------------------------------------------- */

struct srcstat *pl_stat_of(eb_pipeline_t *pl, const char *source);
void pl_inflight_add(eb_pipeline_t *pl, struct msg *m);
/* A duplicate? (counted; @p b waits for an in-flight copy) */
int pl_dedupe_hit(eb_pipeline_t *pl, struct batch *b, struct srcstat *ss,
                  const struct eb_event *evt, struct eb_fp *fp);
int pl_render(eb_pipeline_t *pl, struct batch *b, struct srcstat *ss,
              const struct eb_event *evt, struct eb_envelope *env);
void pl_maybe_settle(struct batch *b);
int pl_settle_later(eb_pipeline_t *pl, struct batch *b);
void pl_msg_settle(eb_pipeline_t *pl, struct msg *m, int err);

/* ---- eb_pipeline_txn.c --------------------------------------------------- */

void pl_on_linger(evutil_socket_t fd, short what, void *arg);
int pl_eos_publish(eb_pipeline_t *pl, const struct eb_source_cfg *src,
                   struct eb_event **evts, size_t cnt, json_t *cp,
                   int32_t off_part, int64_t off, eb_publish_done_cb *done,
                   void *arg);
/* Free a transaction at teardown without calling anyone back. */
void pl_txn_discard(struct txn *t);

#endif /* EB_PIPELINE_INT_H */
