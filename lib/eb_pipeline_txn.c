/*
 * eb_pipeline_txn.c: the exactly-once engine. Publishes gather in a
 * transaction that closes after kafka.batch.linger or batch.max_events and
 * is produced with its state records in one Kafka transaction; aborted
 * attempts are redone. Loop thread only.
 */
#include "eb_pipeline_int.h"

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

/* ---- exactly-once mode ------------------------------------------------
 *
 * publish: dedupe as at least once (eb_pipeline.c), render, keep the
 * envelope in the open transaction (pl->cur; the id is remembered and
 * indexed in flight at once, so a concurrent duplicate waits for this
 * copy's outcome). The transaction closes kafka.batch.linger after its
 * first publish, or at kafka.batch.max_events messages; closing it (only
 * one at a time, in order; publishes meanwhile go into the next one):
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
                pl_msg_settle(pl, m, err);
                eb_envelope_fini(&m->env);
                free(m);
        }
        for (i = 0; i < t->nbatches; i++) {
                struct batch *b = t->batches[i];
                b->txn = NULL;
                if (err && !b->err)
                        b->err = err;
                pl_maybe_settle(b);
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
                        pl_stat_of(pl, t->msgs ? t->msgs->b->source
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

void pl_on_linger(evutil_socket_t fd, short what, void *arg)
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

int pl_eos_publish(eb_pipeline_t *pl, const struct eb_source_cfg *src,
                   struct eb_event **evts, size_t cnt, json_t *cp,
                   int32_t off_part, int64_t off, eb_publish_done_cb *done,
                   void *arg)
{
        const struct eb_config *cfg = pl->cfg;
        struct srcstat *ss = pl_stat_of(pl, src->name);
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

                if (pl_dedupe_hit(pl, b, ss, evt, &fp))
                        continue;
                if (held >= cap) {
                        /* back-pressure: the rest on the retry */
                        ss->st.queue_full++;
                        pl->txn_backpressure++;
                        b->err = -EAGAIN;
                        break;
                }
                m = eb_xcalloc(1, sizeof(*m));
                if (pl_render(pl, b, ss, evt, &m->env)) {
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
                pl_inflight_add(pl, m);
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
                return pl_settle_later(pl, b);
        }
        return 0;
}

/* Free a transaction at teardown without calling anyone back. */
void pl_txn_discard(struct txn *t)
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
        return pl_eos_publish(pl, src, evts, cnt, NULL, partition, offset, done,
                              arg);
}

void eb_pipeline_set_consumer(eb_pipeline_t *pl, const char *topic,
                              rd_kafka_t *consumer)
{
        free(pl->off_topic);
        pl->off_topic = topic ? eb_xstrdup(topic) : NULL;
        pl->off_consumer = topic ? consumer : NULL;
}

void eb_pipeline_set_state_partitions(eb_pipeline_t *pl, int32_t seen,
                                      int32_t checkpoints)
{
        pl->state_partition[0] = seen;
        pl->state_partition[1] = checkpoints;
}
