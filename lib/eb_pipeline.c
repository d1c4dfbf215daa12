#include "eb_pipeline.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "eb_log.h"
#include "eb_metrics.h"
#include "eb_oauth.h"
#include "eb_state.h"
#include "eb_time.h"
#include "eb_util.h"

/* Delivery latency histogram bounds, seconds (produce -> delivery report). */
static const double delivery_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025,
                                         0.05,  0.1,    0.25,  0.5,  1,
                                         2.5,   5,      10,    30};

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

static size_t inflight_slot(const eb_pipeline_t *pl, const struct eb_fp *fp)
{
        return (size_t)(fp->lo ^ (fp->hi >> 17)) & (pl->inflight_buckets - 1);
}

static struct msg *inflight_find(const eb_pipeline_t *pl,
                                 const struct eb_fp *fp)
{
        struct msg *m;

        for (m = pl->inflight[inflight_slot(pl, fp)]; m; m = m->hnext)
                if (m->fp.hi == fp->hi && m->fp.lo == fp->lo)
                        return m;
        return NULL;
}

static void inflight_grow(eb_pipeline_t *pl)
{
        size_t old = pl->inflight_buckets, i;
        struct msg **ob = pl->inflight;

        pl->inflight_buckets = old * 2;
        pl->inflight = eb_xcalloc(pl->inflight_buckets, sizeof(*pl->inflight));
        for (i = 0; i < old; i++) {
                while (ob[i]) {
                        struct msg *m = ob[i];
                        size_t k = inflight_slot(pl, &m->fp);
                        ob[i] = m->hnext;
                        m->hnext = pl->inflight[k];
                        pl->inflight[k] = m;
                }
        }
        free(ob);
}

static void inflight_add(eb_pipeline_t *pl, struct msg *m)
{
        size_t k;

        if (pl->inflight_cnt >= pl->inflight_buckets * 2)
                inflight_grow(pl);
        k = inflight_slot(pl, &m->fp);
        m->hnext = pl->inflight[k];
        pl->inflight[k] = m;
        pl->inflight_cnt++;
}

static void inflight_del(eb_pipeline_t *pl, struct msg *m)
{
        struct msg **pp = &pl->inflight[inflight_slot(pl, &m->fp)];

        for (; *pp; pp = &(*pp)->hnext) {
                if (*pp == m) {
                        *pp = m->hnext;
                        pl->inflight_cnt--;
                        return;
                }
        }
}

static struct srcstat *stat_of(eb_pipeline_t *pl, const char *source)
{
        struct srcstat *s;

        for (s = pl->stats; s; s = s->next)
                if (!strcmp(s->name, source))
                        return s;
        s = eb_xcalloc(1, sizeof(*s));
        s->name = eb_xstrdup(source);
        s->next = pl->stats;
        pl->stats = s;
        return s;
}

static void on_linger(evutil_socket_t fd, short what, void *arg);
static int eos_publish(eb_pipeline_t *pl, const struct eb_source_cfg *src,
                       struct eb_event **evts, size_t cnt, json_t *cp,
                       int32_t off_part, int64_t off, eb_publish_done_cb *done,
                       void *arg);

eb_pipeline_t *eb_pipeline_new(struct event_base *base,
                               const struct eb_config *cfg, eb_kafka_t *kafka,
                               char *errstr, size_t errstr_size)
{
        eb_pipeline_t *pl = eb_xcalloc(1, sizeof(*pl));

        pl->base = base;
        pl->cfg = cfg;
        pl->kafka = kafka;
        pl->dedupe = eb_dedupe_new(cfg->dedupe_capacity,
                                   cfg->dedupe_window_ms / 1000);
        if (!pl->dedupe) {
                snprintf(errstr, errstr_size,
                         "dedupe.capacity: cannot allocate a table of %zu "
                         "ids",
                         cfg->dedupe_capacity);
                free(pl);
                return NULL;
        }
        pl->checkpoints = json_object();
        pl->inflight_buckets = EB_INFLIGHT_MIN_BUCKETS;
        pl->inflight = eb_xcalloc(pl->inflight_buckets, sizeof(*pl->inflight));
        eb_histogram_init(&pl->latency, delivery_bounds,
                          sizeof(delivery_bounds) / sizeof(delivery_bounds[0]));
        if (cfg->delivery == EB_DELIVERY_EXACTLY_ONCE &&
            eb_kafka_transactional(kafka)) {
                pl->eos = 1;
                pl->writer = eb_state_writer_new(cfg, 0);
                pl->state_partition[0] = RD_KAFKA_PARTITION_UA;
                pl->state_partition[1] = RD_KAFKA_PARTITION_UA;
                pl->state_topics[0] = eb_state_topic_seen(cfg);
                pl->state_topics[1] = eb_state_topic_checkpoints(cfg);
                pl->linger = evtimer_new(base, on_linger, pl);
                if (!pl->linger) {
                        snprintf(errstr, errstr_size,
                                 "cannot create the batch timer");
                        eb_pipeline_free(pl);
                        return NULL;
                }
        }
        return pl;
}

static int sink_publish(void *opaque, const struct eb_source_cfg *src,
                        struct eb_event **evts, size_t cnt, json_t *cp,
                        eb_publish_done_cb *done, void *arg)
{
        return eb_pipeline_publish(opaque, src, evts, cnt, cp, done, arg);
}

struct eb_sink eb_pipeline_sink(eb_pipeline_t *pl)
{
        struct eb_sink sink;

        sink.publish = sink_publish;
        sink.opaque = pl;
        return sink;
}

static void batch_settle(struct batch *b)
{
        eb_pipeline_t *pl = b->pl;

        if (!b->err && b->cp) {
                json_object_set(pl->checkpoints, b->source, b->cp);
                stat_of(pl, b->source)->cp_committed_ms = eb_mono_ms();
        }
        pl->pending--;
        if (b->done)
                b->done(b->arg, b->err);
        if (b->later)
                event_free(b->later);
        json_decref(b->cp);
        free(b->source);
        free(b);
}

static void on_later(evutil_socket_t fd, short what, void *arg)
{
        (void)fd;
        (void)what;
        batch_settle(arg);
}

/* Settle @p b (submitted, nothing outstanding) from the loop, never
 * inside the publish call that made it. @returns 0, or -ENOMEM with @p b
 * freed (the publish fails, its caller still owns the retry). */
static int settle_later(eb_pipeline_t *pl, struct batch *b)
{
        struct timeval tv = {0, 0};

        b->later = evtimer_new(pl->base, on_later, b);
        if (!b->later) {
                pl->pending--;
                json_decref(b->cp);
                free(b->source);
                free(b);
                return -ENOMEM;
        }
        evtimer_add(b->later, &tv);
        return 0;
}

static void maybe_settle(struct batch *b)
{
        if (b->submitted && b->outstanding == 0 && !b->txn)
                batch_settle(b);
}

/*
 * The one settle loop: message @p m has its outcome (0: in Kafka, or
 * committed). Count it; on an error forget its id, so the retried page or
 * webhook publishes it again (also when Kafka may have written it: a
 * timeout in flight, POSSIBLY_PERSISTED; a broker that died before
 * appending it wrote nothing, and keeping the id would answer the retry
 * as a duplicate of nothing, a loss. At least once: a duplicate, never a
 * loss). Then take it out of the in-flight index and settle the batches
 * that waited for it: they inherit the error (their copy is not in Kafka
 * either). @p m itself stays the caller's.
 */
static void msg_settle(eb_pipeline_t *pl, struct msg *m, int err)
{
        struct srcstat *ss = stat_of(pl, m->b->source);

        if (err) {
                ss->st.failed++;
                eb_dedupe_remove(pl->dedupe, &m->fp);
        } else {
                ss->st.published++;
                if (m->time_ms > ss->st.newest_event_ms)
                        ss->st.newest_event_ms = m->time_ms;
        }
        inflight_del(pl, m);
        while (m->waiters) {
                struct waiter *w = m->waiters;
                m->waiters = w->next;
                if (err && !w->b->err)
                        w->b->err = err;
                w->b->outstanding--;
                maybe_settle(w->b);
                free(w);
        }
}

static void on_delivery(void *opaque, int err, const char *errstr)
{
        struct msg *m = opaque;
        struct batch *b = m->b;

        eb_histogram_observe(&b->pl->latency,
                             (double)(eb_mono_us() - m->produced_us) / 1e6);
        if (err) {
                if (!b->err)
                        b->err = err;
                eb_warn("pipeline", "source=%s delivery failed: %s", b->source,
                        errstr);
        }
        msg_settle(b->pl, m, err);
        b->outstanding--;
        free(m);
        maybe_settle(b);
}

/* ---- exactly-once mode ------------------------------------------------
 *
 * publish: dedupe as above, render, keep the envelope in the open
 * transaction (pl->cur; the id is remembered and indexed in flight at
 * once, so a concurrent duplicate waits for this copy's outcome). The
 * transaction closes kafka.batch.linger after its first publish, or at
 * kafka.batch.max_events messages; closing it (only one at a time, in
 * order; publishes meanwhile go into the next one):
 *
 *   eb_kafka_txn_begin; eb_state_writer_begin
 *   produce every kept envelope (header evbridge-txn: <session>:<seq>)
 *   produce the seen record(s) of its ids and one checkpoint record per
 *   source (the last checkpoint of that source's publishes that have no
 *   error), then eb_kafka_txn_commit
 *     0          writer committed; every publish done(0) (or the error it
 *                inherited from a duplicate's earlier copy); checkpoints
 *                recorded; waiters settled
 *     -ECANCELED writer aborted; eb_kafka_txn_abort; redo the same
 *                envelopes in a new attempt, up to
 *                EB_PIPELINE_TXN_ATTEMPTS attempts (docs/delivery.md: the
 *                first redo can fail again); then give up: every publish
 *                gets -EAGAIN (poller rolls back, webhooks answer 503)
 *                and the ids are forgotten so the retry publishes them
 *     fatal      (-EPERM fenced, -EIO, -EACCES, -ESHUTDOWN) every pending
 *                publish fails with that error; later publishes get -EIO;
 *                the kafka fatal callback shuts the application down
 *
 * A produce refused during an attempt (-EAGAIN queue full, or anything
 * else) means that message is not in the transaction, so the attempt is
 * aborted, never committed, and counts as a failed attempt: the abort
 * lets the queue drain and the redo produces everything again. This keeps
 * one rule (a transaction commits only with all its messages) at the cost
 * of redoing a whole batch, which is rare.
 *
 * Ids stay remembered between attempts: an event published again during
 * a redo waits for the copy being redone instead of going into the next
 * transaction as a second copy.
 */

#define EB_PIPELINE_TXN_ATTEMPTS 5
#define EB_PIPELINE_TXN_HEADER   "evbridge-txn"
/*
 * Back-pressure. Messages are produced only when their transaction closes,
 * so the producer queue (kafka.queue_max_messages) must hold a whole
 * transaction: a transaction takes at most half of it (and at most
 * kafka.batch.max_events), and the messages held in memory (closing + open
 * transaction) never exceed that half: a publish that reaches it stops
 * adding messages and gets -EAGAIN (poller: page retried; its messages
 * already added are committed and deduplicated on the retry, so a large
 * page makes progress; webhook: 503 queue_full), as with a full producer
 * queue in at-least-once mode. Without a queue bound, held messages may
 * reach this many times batch.max_events.
 */
#define EB_PIPELINE_TXN_BACKLOG_FACTOR 4

static void txn_close(eb_pipeline_t *pl);

static struct txn *txn_cur(eb_pipeline_t *pl)
{
        if (!pl->cur) {
                pl->cur = eb_xcalloc(1, sizeof(*pl->cur));
                pl->cur->tail = &pl->cur->msgs;
        }
        return pl->cur;
}

static void txn_add_batch(struct txn *t, struct batch *b)
{
        if (t->nbatches == t->cap) {
                t->cap = t->cap ? t->cap * 2 : 8;
                t->batches =
                        eb_xrealloc(t->batches, t->cap * sizeof(*t->batches));
        }
        t->batches[t->nbatches++] = b;
        b->txn = t;
}

/* Settle everything of @p t with @p err (0: committed) and free it. */
static void txn_settle(eb_pipeline_t *pl, struct txn *t, int err)
{
        size_t i;

        while (t->msgs) {
                struct msg *m = t->msgs;

                t->msgs = m->tnext;
                msg_settle(pl, m, err);
                eb_envelope_fini(&m->env);
                free(m);
        }
        for (i = 0; i < t->nbatches; i++) {
                struct batch *b = t->batches[i];
                b->txn = NULL;
                if (err && !b->err)
                        b->err = err;
                maybe_settle(b);
        }
        free(t->batches);
        free(t);
}

/* The closing transaction is over: settle it, then close the next one if
 * it is due (or fail it too after a fatal error). */
static void txn_finish(eb_pipeline_t *pl, int err)
{
        struct txn *t = pl->closing;

        pl->closing = NULL;
        if (err) {
                pl->txn_failed++;
                eb_warn("pipeline",
                        "transaction of %zu message(s) failed after %d "
                        "attempt(s): %s",
                        t->nmsgs, t->attempts + 1, strerror(-err));
        }
        txn_settle(pl, t, err);
        if (pl->fatal && pl->cur) {
                struct txn *c = pl->cur;
                pl->cur = NULL;
                evtimer_del(pl->linger);
                txn_settle(pl, c, -EIO);
        }
        /* Group commit: what arrived while this one committed goes out
         * now, without waiting for its own linger. Under load every
         * transaction carries whatever accumulated during the previous
         * commit; idle, an event waits kafka.batch.linger at most. */
        if (pl->cur)
                txn_close(pl);
}

static void txn_attempt_state(eb_pipeline_t *pl);

static void on_txn_dr(void *opaque, int err, const char *errstr)
{
        struct msg *m = opaque;
        eb_pipeline_t *pl = m->b->pl;
        struct txn *t = pl->closing;

        (void)errstr;
        eb_histogram_observe(&pl->latency,
                             (double)(eb_mono_us() - m->produced_us) / 1e6);
        if (!t || t->drs_due == 0)
                return;
        if (err)
                t->dr_failed = 1;
        if (--t->drs_due == 0 && t->state_due) {
                t->state_due = 0;
                txn_attempt_state(pl);
        }
}

/* A state record's delivery report: only the latency histogram, which
 * counts every delivery report (metrics: count == delivered + failed). */
struct state_dr {
        eb_pipeline_t *pl;
        int64_t produced_us;
};

static void on_state_dr(void *opaque, int err, const char *errstr)
{
        struct state_dr *d = opaque;

        (void)err;
        (void)errstr;
        eb_histogram_observe(&d->pl->latency,
                             (double)(eb_mono_us() - d->produced_us) / 1e6);
        free(d);
}

/* @returns the partition a record for @p topic goes to. */
static int32_t state_partition_of(const eb_pipeline_t *pl, const char *topic)
{
        int i;

        for (i = 0; i < 2; i++)
                if (topic && pl->state_topics[i] &&
                    !strcmp(topic, pl->state_topics[i]))
                        return pl->state_partition[i];
        return RD_KAFKA_PARTITION_UA;
}

static int state_produce(eb_pipeline_t *pl, const struct eb_envelope *env)
{
        struct state_dr *d = eb_xcalloc(1, sizeof(*d));
        int rc;

        d->pl = pl;
        d->produced_us = eb_mono_us();
        /* Every record of a state topic, whatever its kind, goes to the
         * shard's partition (unsharded: the partitioner's choice). */
        rc = eb_kafka_produce_to(pl->kafka, env,
                                 state_partition_of(pl, env->topic),
                                 on_state_dr, d);
        if (rc)
                free(d);
        return rc;
}

static void txn_attempt(eb_pipeline_t *pl);

static void on_txn_abort(void *opaque, int err, const char *errstr)
{
        eb_pipeline_t *pl = opaque;
        struct txn *t = pl->closing;

        if (err) {
                eb_error("pipeline", "transaction abort failed: %s", errstr);
                pl->fatal = 1;
                txn_finish(pl, err);
                return;
        }
        t->attempts++;
        if (t->attempts < EB_PIPELINE_TXN_ATTEMPTS) {
                pl->txn_redone++;
                eb_info("pipeline",
                        "transaction aborted; redoing its %zu message(s) "
                        "(attempt %d of %d)",
                        t->nmsgs, t->attempts + 1, EB_PIPELINE_TXN_ATTEMPTS);
                txn_attempt(pl);
                return;
        }
        txn_finish(pl, t->last_err ? t->last_err : -EAGAIN);
}

static void txn_abort(eb_pipeline_t *pl, int why)
{
        int rc;

        eb_state_writer_aborted(pl->writer);
        pl->closing->last_err = why;
        rc = eb_kafka_txn_abort(pl->kafka, on_txn_abort, pl);
        if (rc) {
                eb_error("pipeline", "cannot abort the transaction: %s",
                         strerror(-rc));
                pl->fatal = 1;
                txn_finish(pl, -EIO);
        }
}

static void on_txn_commit(void *opaque, int err, const char *errstr)
{
        eb_pipeline_t *pl = opaque;

        if (err == 0) {
                eb_state_writer_committed(pl->writer);
                txn_finish(pl, 0);
                return;
        }
        if (err == -ECANCELED) {
                eb_warn("pipeline", "transaction commit failed: %s", errstr);
                txn_abort(pl, -EAGAIN);
                return;
        }
        /* fenced or fatal: the kafka fatal callback shuts us down */
        eb_state_writer_aborted(pl->writer);
        eb_error("pipeline", "transaction commit failed (fatal): %s", errstr);
        pl->fatal = 1;
        txn_finish(pl, err);
}

/* Produce one kept envelope with the transaction stamp header. */
static int txn_produce_msg(eb_pipeline_t *pl, struct msg *m, const char *stamp)
{
        struct eb_envelope *env = &m->env;
        int rc, hdr = env->header_cnt < EB_ENVELOPE_MAX_HEADERS;

        if (hdr) {
                env->headers[env->header_cnt].name = EB_PIPELINE_TXN_HEADER;
                env->headers[env->header_cnt].value = (char *)stamp;
                env->header_cnt++;
        }
        m->produced_us = eb_mono_us();
        rc = eb_kafka_produce(pl->kafka, env, on_txn_dr, m);
        if (hdr) {
                env->header_cnt--;
                env->headers[env->header_cnt].name = NULL;
                env->headers[env->header_cnt].value = NULL;
        }
        return rc;
}

/* The state records of the open attempt: seen record(s), checkpoints. */
static int txn_produce_state(eb_pipeline_t *pl, struct txn *t)
{
        struct eb_fp *fps = eb_xcalloc(t->nmsgs + 1, sizeof(*fps));
        int64_t *times = eb_xcalloc(t->nmsgs + 1, sizeof(*times));
        struct eb_envelope *envs = NULL;
        size_t n = 0, cnt = 0, i, j;
        struct msg *m;
        int rc;

        for (m = t->msgs; m; m = m->tnext, n++) {
                fps[n] = m->fp;
                times[n] = m->seen_s;
        }
        rc = eb_state_seen_records(pl->writer, fps, times, n, 0, &envs, &cnt);
        free(fps);
        free(times);
        for (i = 0; i < cnt; i++) {
                if (!rc)
                        rc = state_produce(pl, &envs[i]);
                eb_envelope_fini(&envs[i]);
        }
        free(envs);
        /* One checkpoint per source: its last publish without an error. */
        for (i = t->nbatches; !rc && i-- > 0;) {
                struct batch *b = t->batches[i];
                struct eb_envelope env;
                int dup = 0;

                if (!b->cp || b->err)
                        continue;
                for (j = i + 1; j < t->nbatches && !dup; j++)
                        dup = t->batches[j]->cp && !t->batches[j]->err &&
                              !strcmp(t->batches[j]->source, b->source);
                if (dup)
                        continue;
                rc = eb_state_checkpoint_record(pl->writer, b->source, b->cp,
                                                eb_now_ms(), &env);
                if (rc)
                        break;
                rc = state_produce(pl, &env);
                eb_envelope_fini(&env);
        }
        return rc;
}

/* Consume-transform-produce: the next offset of every consumed partition
 * whose records this transaction publishes commits with it. */
static void txn_set_offsets(eb_pipeline_t *pl, const struct txn *t)
{
        rd_kafka_topic_partition_list_t *tpl = NULL;
        size_t i;

        if (!pl->off_consumer)
                return;
        for (i = 0; i < t->nbatches; i++) {
                const struct batch *b = t->batches[i];
                rd_kafka_topic_partition_t *tp;

                if (b->off < 0)
                        continue;
                if (!tpl)
                        tpl = rd_kafka_topic_partition_list_new(4);
                tp = rd_kafka_topic_partition_list_find(tpl, pl->off_topic,
                                                        b->off_part);
                if (!tp)
                        tp = rd_kafka_topic_partition_list_add(
                                tpl, pl->off_topic, b->off_part);
                if (b->off + 1 > tp->offset)
                        tp->offset = b->off + 1;
        }
        if (tpl && eb_kafka_txn_set_offsets(
                           pl->kafka, tpl,
                           rd_kafka_consumer_group_metadata(pl->off_consumer)))
                eb_warn("pipeline", "transaction: cannot attach the consumed "
                                    "offsets; they are read again later");
}

static void txn_attempt(eb_pipeline_t *pl)
{
        struct txn *t = pl->closing;
        struct eb_state_txn st;
        char stamp[64];
        struct msg *m;
        int rc;

        rc = eb_kafka_txn_begin(pl->kafka);
        if (rc) {
                eb_error("pipeline", "cannot begin a transaction: %s",
                         strerror(-rc));
                pl->fatal = 1;
                txn_finish(pl, -EIO);
                return;
        }
        eb_state_writer_begin(pl->writer);
        eb_state_writer_txn(pl->writer, &st);
        snprintf(stamp, sizeof(stamp), "%016llx:%llu",
                 (unsigned long long)st.session, (unsigned long long)st.seq);
        t->drs_due = 0;
        t->dr_failed = 0;
        t->state_due = 0;
        for (m = t->msgs; m; m = m->tnext) {
                rc = txn_produce_msg(pl, m, stamp);
                if (rc)
                        break;
                t->drs_due++;
        }
        /*
         * The state records (seen ids, checkpoints) go out only once every
         * event of the attempt is acknowledged. On a broker that honours
         * read_committed this changes nothing; on one that ignores it (the
         * 2.0.2 mock) a crash can leave a transaction that never committed
         * visible, and restore trusts a session's last transaction: its
         * ids and checkpoint must then never be there without all of its
         * events. The cost is one round trip per transaction.
         */
        if (rc) {
                if (rc == -EAGAIN)
                        stat_of(pl, t->msgs ? t->msgs->b->source
                                            : t->batches[0]->source)
                                ->st.queue_full++;
                eb_warn("pipeline",
                        "transaction: a message was refused (%s); aborting "
                        "it",
                        strerror(-rc));
                txn_abort(pl, rc == -EAGAIN ? -EAGAIN : rc);
                return;
        }
        if (t->drs_due > 0) {
                t->state_due = 1; /* on_txn_dr() goes on */
                return;
        }
        txn_attempt_state(pl);
}

/* Second half of an attempt, once every event is acknowledged: the state
 * records, then the commit. */
static void txn_attempt_state(eb_pipeline_t *pl)
{
        struct txn *t = pl->closing;
        int rc;

        if (t->dr_failed) {
                /* the transaction is lost anyway: abort it, then redo */
                txn_abort(pl, -EAGAIN);
                return;
        }
        rc = txn_produce_state(pl, t);
        if (rc) {
                eb_warn("pipeline",
                        "transaction: a state record was refused (%s); "
                        "aborting it",
                        strerror(-rc));
                txn_abort(pl, rc);
                return;
        }
        txn_set_offsets(pl, t);
        rc = eb_kafka_txn_commit(pl->kafka, on_txn_commit, pl);
        if (rc) {
                eb_error("pipeline", "cannot commit the transaction: %s",
                         strerror(-rc));
                eb_state_writer_aborted(pl->writer);
                pl->fatal = 1;
                txn_finish(pl, -EIO);
        }
}

/* Close the accumulating transaction now, or as soon as the closing one is
 * over. */
static void txn_close(eb_pipeline_t *pl)
{
        if (!pl->cur || pl->fatal)
                return;
        if (pl->closing) {
                pl->close_wanted = 1;
                return;
        }
        pl->close_wanted = 0;
        evtimer_del(pl->linger);
        pl->closing = pl->cur;
        pl->cur = NULL;
        txn_attempt(pl);
}

/*
 * The fingerprint of @p evt into @p fp. A duplicate (already published or
 * on its way) is counted and, while its message is in flight, @p b waits
 * for that message: @returns 1. @returns 0 for a new event.
 */
static int dedupe_hit(eb_pipeline_t *pl, struct batch *b, struct srcstat *ss,
                      const struct eb_event *evt, struct eb_fp *fp)
{
        struct msg *m0;
        size_t klen;
        char *dkey = eb_event_dedupe_key(evt, &klen);

        eb_fp_compute(dkey, klen, fp);
        if (evt->stripped) {
                /* A Close version without its data: if the full version
                 * is already out, this one adds nothing and must not
                 * follow it; else it is remembered under a fingerprint of
                 * its own, so the full version still goes out later. */
                char *skey;

                if (eb_dedupe_contains(pl->dedupe, fp)) {
                        free(dkey);
                        ss->st.duplicates++;
                        return 1;
                }
                skey = eb_xasprintf("%s\x1fstripped", dkey);
                eb_fp_compute(skey, strlen(skey), fp);
                free(skey);
        }
        free(dkey);
        if (!eb_dedupe_contains(pl->dedupe, fp))
                return 0;
        ss->st.duplicates++;
        m0 = inflight_find(pl, fp);
        if (m0) {
                struct waiter *w = eb_xcalloc(1, sizeof(*w));
                w->b = b;
                w->next = m0->waiters;
                m0->waiters = w;
                b->outstanding++;
        }
        return 1;
}

/* A dead-letter record larger than this (Kafka's default message size is
 * 1 MB) carries an excerpt of the raw event instead of the whole. */
#define EB_PIPELINE_DEADLETTER_MAX     (512 * 1024)
#define EB_PIPELINE_DEADLETTER_EXCERPT (64 * 1024)

/*
 * A poison event as a dead-letter record: key = the source name, value =
 * {"source","provider","id","reason","position","event": <raw native>},
 * header evbridge-deadletter-reason. It travels in the same publish (and,
 * exactly-once, the same transaction) as the checkpoint that moves past
 * it. The raw event is never logged: it may hold personal data.
 * @returns 0 or -1 (b->err set).
 */
static int render_deadletter(eb_pipeline_t *pl, struct batch *b,
                             struct srcstat *ss, const struct eb_event *evt,
                             const char *reason, struct eb_envelope *env)
{
        const struct eb_config *cfg = pl->cfg;
        json_t *rec;
        char *value;

        memset(env, 0, sizeof(*env));
        rec = json_pack("{s:s, s:s?, s:s?, s:s, s:s?, s:O}", "source",
                        b->source, "provider", evt->provider, "id", evt->id,
                        "reason", reason, "position", evt->position, "event",
                        evt->native ? evt->native : json_null());
        value = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
        if (value && strlen(value) > EB_PIPELINE_DEADLETTER_MAX) {
                /* Larger than a Kafka message may be: keep the start of
                 * the raw event, say how long it was. */
                /* ASCII only, so the cut cannot split a character */
                char *raw =
                        json_dumps(evt->native, JSON_COMPACT | JSON_ENCODE_ANY |
                                                        JSON_ENSURE_ASCII);
                size_t n = raw ? strlen(raw) : 0;

                if (raw && n > EB_PIPELINE_DEADLETTER_EXCERPT)
                        raw[EB_PIPELINE_DEADLETTER_EXCERPT] = '\0';
                free(value);
                json_object_set_new(rec, "event", json_null());
                json_object_set_new(rec, "event_excerpt",
                                    json_string(raw ? raw : ""));
                json_object_set_new(rec, "event_bytes",
                                    json_integer((json_int_t)n));
                free(raw);
                value = json_dumps(rec, JSON_COMPACT);
        }
        json_decref(rec);
        if (!value) {
                ss->st.invalid++;
                b->err = -EINVAL;
                return -1;
        }
        env->topic = cfg->deadletter_topic
                             ? eb_xstrdup(cfg->deadletter_topic)
                             : eb_xasprintf("%s.deadletter", cfg->topic_prefix);
        env->key = eb_xstrdup(b->source);
        env->key_len = strlen(env->key);
        env->value = value;
        env->value_len = strlen(value);
        env->headers[0].name = "evbridge-deadletter-reason";
        env->headers[0].value = eb_xstrdup(reason);
        env->header_cnt = 1;
        ss->st.deadlettered++;
        eb_warn("pipeline",
                "source=%s poison event %s at %s goes to the dead-letter "
                "topic %s: %s",
                b->source, evt->id ? evt->id : "(no id)",
                evt->position ? evt->position : "(unknown position)",
                env->topic, reason);
        return 0;
}

/* A Close version without data/previous_data is published (marked
 * data_stripped), counted, and said in the log at most once a minute per
 * source: a backfill of old events would otherwise log every one. */
static void note_stripped(struct batch *b, struct srcstat *ss)
{
        int64_t now = eb_mono_ms();

        ss->st.stripped++;
        if (ss->stripped_logged_ms && now - ss->stripped_logged_ms < 60000)
                return;
        ss->stripped_logged_ms = now;
        eb_warn("pipeline",
                "source=%s Close sent events without data and previous_data "
                "(%llu so far): its API key is not an admin's and the events "
                "are older than an hour. They are published with "
                "data_stripped: true; use an admin key for a complete feed",
                b->source, (unsigned long long)ss->st.stripped);
}

/*
 * Render @p evt as the configured envelope. A poison event (the adapter
 * could not normalize it), or one that cannot be rendered, goes raw to
 * the dead-letter topic instead, counted and logged: one bad event never
 * stops its source and is never dropped silently.
 * @returns 0 or -1.
 */
static int render(eb_pipeline_t *pl, struct batch *b, struct srcstat *ss,
                  const struct eb_event *evt, struct eb_envelope *env)
{
        const struct eb_config *cfg = pl->cfg;

        if (evt->deadletter)
                return render_deadletter(pl, b, ss, evt, evt->deadletter, env);
        if (eb_envelope_render(evt, cfg->topic_template, cfg->topic_prefix,
                               cfg->envelope_binary ? EB_ENVELOPE_BINARY
                                                    : EB_ENVELOPE_STRUCTURED,
                               env) == 0) {
                if (evt->stripped)
                        note_stripped(b, ss);
                return 0;
        }
        ss->st.invalid++;
        return render_deadletter(pl, b, ss, evt,
                                 "cannot be rendered as a CloudEvent (a "
                                 "required attribute is missing or not "
                                 "UTF-8)",
                                 env);
}

static void on_linger(evutil_socket_t fd, short what, void *arg)
{
        (void)fd;
        (void)what;
        txn_close(arg);
}

/* A checkpoint that brings a new OAuth token pair (eb_oauth.h) must be
 * written whatever the idle-checkpoint throttle says: the poller uses the
 * pair only once this record is committed. */
static int oauth_changed(const json_t *cp, const json_t *committed)
{
        const json_t *a = json_object_get(cp, EB_OAUTH_CP_KEY);
        const json_t *b = json_object_get(committed, EB_OAUTH_CP_KEY);

        if (!a)
                return 0;
        return !b || !json_equal(a, b);
}

static int eos_publish(eb_pipeline_t *pl, const struct eb_source_cfg *src,
                       struct eb_event **evts, size_t cnt, json_t *cp,
                       int32_t off_part, int64_t off, eb_publish_done_cb *done,
                       void *arg)
{
        const struct eb_config *cfg = pl->cfg;
        struct srcstat *ss = stat_of(pl, src->name);
        size_t max = cfg->batch_max_events > 0 ? (size_t)cfg->batch_max_events
                                               : 5000;
        size_t qmax = cfg->queue_max_messages, held, cap;
        int64_t now_s = eb_now_ms() / 1000;
        struct batch *b;
        size_t i, added = 0;
        int rc = 0;

        if (qmax >= 2 && max > qmax / 2)
                max = qmax / 2;
        cap = qmax >= 2 ? qmax / 2 : max * EB_PIPELINE_TXN_BACKLOG_FACTOR;
        held = (pl->closing ? pl->closing->nmsgs : 0) +
               (pl->cur ? pl->cur->nmsgs : 0);
        if (pl->fatal) {
                rc = -EIO;
        } else if (cnt > 0 && held >= cap) {
                ss->st.queue_full++;
                pl->txn_backpressure++;
                rc = -EAGAIN;
        }
        if (rc) {
                eb_events_free(evts, cnt);
                return rc;
        }
        b = eb_xcalloc(1, sizeof(*b));
        b->pl = pl;
        b->source = eb_xstrdup(src->name);
        /* A checkpoint equal to the committed one (an idle poll) needs no
         * record: the source has at most one publish in flight, so the
         * committed checkpoint is its latest. Without events either, the
         * publish then settles without a transaction. */
        if (cp && json_equal(cp, json_object_get(pl->checkpoints, src->name)))
                cp = NULL;
        if (cp && cnt == 0 && ss->cp_committed_ms &&
            eb_mono_ms() - ss->cp_committed_ms <
                    EB_PIPELINE_IDLE_CHECKPOINT_MS &&
            !oauth_changed(cp, json_object_get(pl->checkpoints, src->name)))
                cp = NULL;
        b->cp = cp ? json_incref(cp) : NULL;
        b->done = done;
        b->arg = arg;
        b->off_part = off_part;
        b->off = off;
        eb_dedupe_expire(pl->dedupe, now_s);

        for (i = 0; i < cnt && !b->err; i++) {
                struct eb_event *evt = evts[i];
                struct txn *t;
                struct msg *m;
                struct eb_fp fp;

                if (dedupe_hit(pl, b, ss, evt, &fp))
                        continue;
                if (held >= cap) {
                        /* back-pressure: the rest on the retry */
                        ss->st.queue_full++;
                        pl->txn_backpressure++;
                        b->err = -EAGAIN;
                        break;
                }
                m = eb_xcalloc(1, sizeof(*m));
                if (render(pl, b, ss, evt, &m->env)) {
                        free(m);
                        break;
                }
                m->b = b;
                m->fp = fp;
                m->time_ms = evt->time_ms;
                m->seen_s = now_s;
                t = txn_cur(pl);
                *t->tail = m;
                t->tail = &m->tnext;
                t->nmsgs++;
                eb_dedupe_insert(pl->dedupe, &fp, now_s);
                inflight_add(pl, m);
                added++;
                held++;
        }
        eb_events_free(evts, cnt);

        pl->pending++;
        b->submitted = 1;
        if (added || b->cp || b->off >= 0) {
                /* its messages, its checkpoint and/or its consumed offset
                 * go into pl->cur */
                struct txn *t = txn_cur(pl);
                txn_add_batch(t, b);
                if (t->nmsgs >= max) {
                        /* full: close it from the loop, so that no done
                         * callback can run inside this call */
                        struct timeval now = {0, 0};
                        evtimer_del(pl->linger);
                        evtimer_add(pl->linger, &now);
                } else if (!evtimer_pending(pl->linger, NULL)) {
                        struct timeval tv;
                        int64_t ms = cfg->batch_linger_ms > 0
                                             ? cfg->batch_linger_ms
                                             : 0;
                        tv.tv_sec = (time_t)(ms / 1000);
                        tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
                        evtimer_add(pl->linger, &tv);
                }
        } else if (b->outstanding == 0) {
                /* all duplicates already committed, or nothing at all */
                return settle_later(pl, b);
        }
        return 0;
}

/* Free a transaction at teardown without calling anyone back. */
static void txn_discard(struct txn *t)
{
        size_t i;

        if (!t)
                return;
        while (t->msgs) {
                struct msg *m = t->msgs;
                t->msgs = m->tnext;
                while (m->waiters) {
                        struct waiter *w = m->waiters;
                        m->waiters = w->next;
                        free(w);
                }
                eb_envelope_fini(&m->env);
                free(m);
        }
        for (i = 0; i < t->nbatches; i++) {
                struct batch *b = t->batches[i];
                if (b->later)
                        event_free(b->later);
                json_decref(b->cp);
                free(b->source);
                free(b);
        }
        free(t->batches);
        free(t);
}

int eb_pipeline_publish_consumed(eb_pipeline_t *pl,
                                 const struct eb_source_cfg *src,
                                 struct eb_event **evts, size_t cnt,
                                 int32_t partition, int64_t offset,
                                 eb_publish_done_cb *done, void *arg)
{
        if (!pl->eos || !pl->off_consumer || offset < 0) {
                eb_events_free(evts, cnt);
                return -EINVAL;
        }
        return eos_publish(pl, src, evts, cnt, NULL, partition, offset, done,
                           arg);
}

void eb_pipeline_set_consumer(eb_pipeline_t *pl, const char *topic,
                              rd_kafka_t *consumer)
{
        free(pl->off_topic);
        pl->off_topic = topic ? eb_xstrdup(topic) : NULL;
        pl->off_consumer = topic ? consumer : NULL;
}

int eb_pipeline_publish(eb_pipeline_t *pl, const struct eb_source_cfg *src,
                        struct eb_event **evts, size_t cnt, json_t *cp,
                        eb_publish_done_cb *done, void *arg)
{
        struct srcstat *ss = stat_of(pl, src->name);
        struct batch *b;
        int64_t now_s = eb_now_ms() / 1000;
        size_t i;

        if (pl->eos)
                return eos_publish(pl, src, evts, cnt, cp, -1, -1, done, arg);
        b = eb_xcalloc(1, sizeof(*b));
        b->pl = pl;
        b->source = eb_xstrdup(src->name);
        b->cp = cp ? json_incref(cp) : NULL;
        b->done = done;
        b->arg = arg;
        b->off = -1;
        eb_dedupe_expire(pl->dedupe, now_s);

        for (i = 0; i < cnt; i++) {
                struct eb_event *evt = evts[i];
                struct eb_envelope env;
                struct msg *m;
                struct eb_fp fp;
                int rc;

                if (b->err)
                        break;
                if (dedupe_hit(pl, b, ss, evt, &fp))
                        continue;
                if (render(pl, b, ss, evt, &env))
                        break;
                m = eb_xcalloc(1, sizeof(*m));
                m->b = b;
                m->fp = fp;
                m->time_ms = evt->time_ms;
                m->produced_us = eb_mono_us();
                rc = eb_kafka_produce(pl->kafka, &env, on_delivery, m);
                eb_envelope_fini(&env);
                if (rc) {
                        free(m);
                        if (rc == -EAGAIN)
                                ss->st.queue_full++;
                        b->err = rc;
                        break;
                }
                /* Stamped with the time we published it, not the event's
                 * time: the window is how long after publishing a repeat
                 * (platform retries, rescans) is still recognised. An old
                 * event stamped with its own time would expire at once. */
                eb_dedupe_insert(pl->dedupe, &fp, now_s);
                inflight_add(pl, m);
                b->outstanding++;
        }
        eb_events_free(evts, cnt);

        if (b->err == -EAGAIN && b->outstanding == 0) {
                /* Nothing went out: refuse now, the caller backs off. */
                json_decref(b->cp);
                free(b->source);
                free(b);
                return -EAGAIN;
        }
        pl->pending++;
        b->submitted = 1;
        if (b->outstanding == 0) {
                /* Nothing to wait for (all duplicates, or no events). */
                return settle_later(pl, b);
        }
        return 0;
}

json_t *eb_pipeline_checkpoint(const eb_pipeline_t *pl, const char *source)
{
        return json_object_get(pl->checkpoints, source);
}

const struct eb_pipeline_stats *eb_pipeline_stats(eb_pipeline_t *pl,
                                                  const char *source)
{
        struct srcstat *s;

        for (s = pl->stats; s; s = s->next)
                if (!strcmp(s->name, source))
                        return &s->st;
        return &pl->zero;
}

const eb_dedupe_t *eb_pipeline_dedupe(const eb_pipeline_t *pl)
{
        return pl->dedupe;
}

int eb_pipeline_transactional(const eb_pipeline_t *pl)
{
        return pl->eos;
}

uint64_t eb_pipeline_backpressure(const eb_pipeline_t *pl)
{
        return pl->txn_backpressure;
}

int eb_pipeline_restore(eb_pipeline_t *pl, const char *bootstrap,
                        json_t *checkpoints_out,
                        struct eb_state_restore_stats *st, char *errstr,
                        size_t errstr_size)
{
        return eb_pipeline_restore_ex(pl, bootstrap, NULL, checkpoints_out, st,
                                      errstr, errstr_size);
}

int eb_pipeline_restore_ex(eb_pipeline_t *pl, const char *bootstrap,
                           const struct eb_state_restore_opts *opts,
                           json_t *checkpoints_out,
                           struct eb_state_restore_stats *st, char *errstr,
                           size_t errstr_size)
{
        const char *key;
        json_t *cp;
        int rc;

        rc = eb_state_restore(bootstrap, pl->cfg, opts, pl->dedupe,
                              checkpoints_out, st, errstr, errstr_size);
        if (rc)
                return rc;
        json_object_foreach(checkpoints_out, key, cp)
                json_object_set(pl->checkpoints, key, cp);
        return 0;
}

const struct eb_histogram *eb_pipeline_delivery_latency(const eb_pipeline_t *pl)
{
        return &pl->latency;
}

int eb_pipeline_pending(const eb_pipeline_t *pl)
{
        return pl->pending;
}

void eb_pipeline_free(eb_pipeline_t *pl)
{
        if (!pl)
                return;
        while (pl->stats) {
                struct srcstat *s = pl->stats;
                pl->stats = s->next;
                free(s->name);
                free(s);
        }
        /* Exactly-once: a transaction still here at teardown (the drain
         * timed out) is dropped; its callers are gone. Nothing of it was
         * committed, so its pages are fetched again on the next start. */
        if (pl->linger)
                event_free(pl->linger);
        txn_discard(pl->closing);
        txn_discard(pl->cur);
        eb_state_writer_free(pl->writer);
        json_decref(pl->checkpoints);
        eb_histogram_fini(&pl->latency);
        free(pl->inflight);
        eb_dedupe_free(pl->dedupe);
        free(pl->off_topic);
        free(pl->state_topics[0]);
        free(pl->state_topics[1]);
        free(pl);
}

void eb_pipeline_set_state_partitions(eb_pipeline_t *pl, int32_t seen,
                                      int32_t checkpoints)
{
        pl->state_partition[0] = seen;
        pl->state_partition[1] = checkpoints;
}
