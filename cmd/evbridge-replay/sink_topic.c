/*
 * Re-publish sink: copy matching records to another topic with a
 * transactional producer, exactly once.
 *
 * - Each record keeps its key, value and headers (and, with
 *   --keep-timestamp, its timestamp); the default partitioner hashes the
 *   key, so one entity's events stay in order in one target partition.
 * - Every record also gets the header
 *       evbridge-replay-from: <source topic>/<partition>/<offset>
 *   (replacing one it may already carry).
 * - Records are produced as they come, inside an open transaction, and
 *   the transaction is committed per batch (--batch-size records, or when
 *   the source is idle, or at the end). The run loop moves its durable
 *   positions only after a commit.
 * - An abortable error (a failed delivery, an AddPartitionsToTxn refusal)
 *   aborts the transaction and produces the same batch again in a new one,
 *   up to --retries attempts. A fatal error (fenced by another producer
 *   with the same transactional.id) stops the replay.
 *
 * Restart without duplicates (--resume): init_transactions() with the
 * same transactional.id first fences any previous instance and aborts
 * its unfinished transaction; then the target is read back (read
 * committed) from its end until the last record of every source partition
 * being replayed is found, and each source partition continues after it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_util.h"
#include "replay.h"

#define RP_RESUME_FIRST_WINDOW 1024
#define RP_RESUME_MAX_WINDOW   (1 << 20)

struct item {
        char *key;
        size_t key_len;
        char *value;
        size_t value_len;
        rd_kafka_headers_t *hdrs; /* with evbridge-replay-from set */
        int64_t ts;
};

struct topic_sink {
        struct rp_sink_s base;
        rd_kafka_t *rk;
        struct item *batch;
        size_t n, cap;
        int in_txn;
        int produce_failed; /* producev refused a record of this batch */
        char produce_err[256];
        uint64_t commits, aborts;
};

static void item_fini(struct item *it)
{
        free(it->key);
        free(it->value);
        if (it->hdrs)
                rd_kafka_headers_destroy(it->hdrs);
        memset(it, 0, sizeof(*it));
}

static void batch_clear(struct topic_sink *ts)
{
        size_t i;

        for (i = 0; i < ts->n; i++)
                item_fini(&ts->batch[i]);
        ts->n = 0;
}

static int txn_error(rd_kafka_error_t *error, const char *what, char *errstr,
                     size_t sz)
{
        snprintf(errstr, sz, "%s: %s", what, rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        return -EIO;
}

/* Produce one item into the open transaction. */
static int produce(struct topic_sink *ts, const struct item *it)
{
        const struct rp_opts *o = ts->base.o;
        rd_kafka_headers_t *hdrs = rd_kafka_headers_copy(it->hdrs);
        rd_kafka_resp_err_t err;
        int64_t deadline = rp_mono_ms() + o->timeout_ms;

        for (;;) {
                err = rd_kafka_producev(
                        ts->rk, RD_KAFKA_V_TOPIC(o->to_topic),
                        RD_KAFKA_V_KEY(it->key, it->key_len),
                        RD_KAFKA_V_VALUE(it->value, it->value_len),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                        RD_KAFKA_V_TIMESTAMP(
                                o->keep_timestamp && it->ts > 0 ? it->ts : 0),
                        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
                if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL ||
                    rp_mono_ms() > deadline)
                        break;
                rd_kafka_poll(ts->rk, 100); /* let the queue drain */
        }
        if (err) {
                rd_kafka_headers_destroy(hdrs);
                if (!ts->produce_failed)
                        snprintf(ts->produce_err, sizeof(ts->produce_err), "%s",
                                 rd_kafka_err2str(err));
                ts->produce_failed = 1;
                return -EIO;
        }
        rd_kafka_poll(ts->rk, 0);
        return 0;
}

static int begin(struct topic_sink *ts, char *errstr, size_t sz)
{
        rd_kafka_error_t *error;

        if (ts->in_txn)
                return 0;
        error = rd_kafka_begin_transaction(ts->rk);
        if (error)
                return txn_error(error, "begin_transaction", errstr, sz);
        ts->in_txn = 1;
        ts->produce_failed = 0;
        return 0;
}

static int topic_write(rp_sink_t *s, const struct rp_rec *r, char *errstr,
                       size_t sz)
{
        struct topic_sink *ts = (struct topic_sink *)s;
        const rd_kafka_message_t *m = r->msg;
        rd_kafka_headers_t *src = NULL;
        rd_kafka_timestamp_type_t tstype;
        char from[EB_REPLAY_TOPIC_MAX + 48];
        struct item *it;

        if (begin(ts, errstr, sz))
                return -EIO;
        if (ts->n == ts->cap) {
                ts->cap = ts->cap ? ts->cap * 2 : 64;
                ts->batch =
                        eb_xrealloc(ts->batch, ts->cap * sizeof(*ts->batch));
        }
        it = &ts->batch[ts->n++];
        memset(it, 0, sizeof(*it));
        if (m->key) {
                it->key = eb_xstrndup(m->key, m->key_len);
                it->key_len = m->key_len;
        }
        if (m->payload) {
                it->value = eb_xmalloc(m->len ? m->len : 1);
                memcpy(it->value, m->payload, m->len);
                it->value_len = m->len;
        }
        it->ts = rd_kafka_message_timestamp(m, &tstype);
        if (!rd_kafka_message_headers(m, &src) && src)
                it->hdrs = rd_kafka_headers_copy(src);
        else
                it->hdrs = rd_kafka_headers_new(1);
        (void)rd_kafka_header_remove(it->hdrs, EB_REPLAY_FROM_HEADER);
        if (eb_replay_from_header_format(from, sizeof(from), r->topic,
                                         m->partition, m->offset)) {
                snprintf(errstr, sz, "source position too long");
                return -EINVAL;
        }
        rd_kafka_header_add(it->hdrs, EB_REPLAY_FROM_HEADER, -1, from, -1);
        /* A refused record fails the batch at commit time, where it is
         * aborted and retried like any other abortable error. */
        (void)produce(ts, it);
        return 0;
}

/* Commit the open transaction; on an abortable error abort it and send
 * the whole batch again, up to --retries attempts. */
static int64_t topic_flush(rp_sink_t *s, char *errstr, size_t sz)
{
        struct topic_sink *ts = (struct topic_sink *)s;
        const struct rp_opts *o = s->o;
        int64_t n = (int64_t)ts->n;
        int attempt;
        size_t i;

        if (!ts->in_txn)
                return 0;
        for (attempt = 1;; attempt++) {
                rd_kafka_error_t *error = NULL;
                char why[512];
                int abortable;

                if (ts->produce_failed) {
                        snprintf(why, sizeof(why), "produce: %s",
                                 ts->produce_err);
                        abortable = 1;
                } else {
                        error = rd_kafka_commit_transaction(ts->rk,
                                                            (int)o->timeout_ms);
                        if (!error) {
                                ts->in_txn = 0;
                                ts->commits++;
                                batch_clear(ts);
                                return n;
                        }
                        snprintf(why, sizeof(why), "%s",
                                 rd_kafka_error_string(error));
                        abortable = rd_kafka_error_txn_requires_abort(error);
                        if (rd_kafka_error_is_retriable(error) &&
                            attempt < o->retries) {
                                rd_kafka_error_destroy(error);
                                fprintf(stderr,
                                        "evbridge-replay: warning: commit "
                                        "failed (%s); retrying\n",
                                        why);
                                rp_sleep_ms(eb_replay_backoff_ms(
                                        attempt, o->backoff_ms,
                                        o->backoff_max_ms));
                                continue;
                        }
                        rd_kafka_error_destroy(error);
                }
                if (!abortable) {
                        snprintf(errstr, sz,
                                 "transaction failed (not abortable): %s", why);
                        return -EIO;
                }
                error = rd_kafka_abort_transaction(ts->rk, (int)o->timeout_ms);
                if (error)
                        return txn_error(error, "abort_transaction", errstr,
                                         sz);
                ts->aborts++;
                ts->in_txn = 0;
                if (attempt >= o->retries) {
                        snprintf(errstr, sz,
                                 "transaction aborted %d times, last: %s",
                                 attempt, why);
                        return -EIO;
                }
                fprintf(stderr,
                        "evbridge-replay: warning: transaction aborted (%s); "
                        "retrying the batch of %lld (attempt %d of %d)\n",
                        why, (long long)n, attempt + 1, o->retries);
                rp_sleep_ms(eb_replay_backoff_ms(attempt, o->backoff_ms,
                                                 o->backoff_max_ms));
                if (begin(ts, errstr, sz))
                        return -EIO;
                for (i = 0; i < ts->n; i++)
                        (void)produce(ts, &ts->batch[i]);
        }
}

static int64_t topic_pending(rp_sink_t *s)
{
        return (int64_t)((struct topic_sink *)s)->n;
}

/* ---- --resume: read the target back ------------------------------------- */

struct resume_scan {
        rd_kafka_t *rk;
        struct rp_set *set;
        int64_t *best; /* per source part: last re-published offset + 1 */
        char *seen;    /* per source part: found in this target partition */
        size_t nseen;
        int64_t timeout_ms;
};

static void scan_record(struct resume_scan *sc, const rd_kafka_message_t *m)
{
        rd_kafka_headers_t *hdrs = NULL;
        char topic[EB_REPLAY_TOPIC_MAX + 1];
        const void *val = NULL;
        size_t len = 0;
        int32_t part;
        int64_t off;
        struct rp_part *p;
        size_t i;

        if (rd_kafka_message_headers(m, &hdrs) || !hdrs ||
            rd_kafka_header_get_last(hdrs, EB_REPLAY_FROM_HEADER, &val, &len) ||
            eb_replay_from_header_parse(val, len, topic, sizeof(topic), &part,
                                        &off))
                return;
        p = rp_find(sc->set, topic, part);
        if (!p)
                return;
        i = (size_t)(p - sc->set->parts);
        if (off + 1 > sc->best[i])
                sc->best[i] = off + 1;
        if (!sc->seen[i]) {
                sc->seen[i] = 1;
                sc->nseen++;
        }
}

/* Read [a, b) of one target partition. */
static int scan_window(struct resume_scan *sc, const char *topic,
                       int32_t partition, int64_t a, int64_t b, char *errstr,
                       size_t sz)
{
        rd_kafka_topic_partition_list_t *tpl =
                rd_kafka_topic_partition_list_new(1);
        int64_t deadline = rp_mono_ms() + sc->timeout_ms;
        rd_kafka_resp_err_t err;

        rd_kafka_topic_partition_list_add(tpl, topic, partition)->offset = a;
        err = rd_kafka_assign(sc->rk, tpl);
        rd_kafka_topic_partition_list_destroy(tpl);
        if (err) {
                snprintf(errstr, sz, "assign %s:%d: %s", topic, (int)partition,
                         rd_kafka_err2str(err));
                return -EIO;
        }
        while (!rp_stop_signal) {
                rd_kafka_message_t *m;
                int at_end = 0;

                if (rp_mono_ms() > deadline) {
                        snprintf(errstr, sz, "reading %s:%d timed out", topic,
                                 (int)partition);
                        return -ETIMEDOUT;
                }
                m = rd_kafka_consumer_poll(sc->rk, 100);
                if (!m)
                        continue;
                if (m->rkt && m->partition == partition &&
                    !strcmp(rd_kafka_topic_name(m->rkt), topic)) {
                        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                at_end = m->offset >= a;
                        else if (!m->err && m->offset >= a) {
                                if (m->offset < b)
                                        scan_record(sc, m);
                                at_end = m->offset + 1 >= b;
                        }
                }
                rd_kafka_message_destroy(m);
                if (at_end)
                        return 0;
        }
        snprintf(errstr, sz, "interrupted");
        return -EINTR;
}

static int resume_scan(struct topic_sink *ts, struct rp_set *set, char *errstr,
                       size_t sz)
{
        const struct rp_opts *o = ts->base.o;
        const struct rd_kafka_metadata *md = NULL;
        const struct rd_kafka_metadata_topic *mt = NULL;
        struct resume_scan sc;
        char group[128];
        const char *kv[] = {"group.id", group, "isolation.level",
                            "read_committed", "enable.partition.eof", "true",
                            "enable.auto.commit", "false", "auto.offset.reset",
                            "earliest",
                            /* Probes re-assign often, and a new
                             * assignment waits for the fetch in flight:
                             * keep fetches short. */
                            "fetch.wait.max.ms", "10", NULL};
        rd_kafka_resp_err_t err;
        size_t i;
        int rc = -EIO, t, j;

        memset(&sc, 0, sizeof(sc));
        sc.set = set;
        sc.timeout_ms = o->timeout_ms;
        sc.best = eb_xcalloc(set->nparts, sizeof(*sc.best));
        sc.seen = eb_xcalloc(set->nparts, 1);
        rp_private_group(group, sizeof(group), "resume");
        sc.rk = rp_kafka_new(o, RD_KAFKA_CONSUMER, kv, errstr, sz);
        if (!sc.rk)
                goto out;
        rd_kafka_poll_set_consumer(sc.rk);
        err = rd_kafka_metadata(sc.rk, 1, NULL, &md, (int)o->timeout_ms);
        if (err) {
                snprintf(errstr, sz, "metadata: %s", rd_kafka_err2str(err));
                goto out;
        }
        for (t = 0; t < md->topic_cnt; t++)
                if (!md->topics[t].err &&
                    !strcmp(md->topics[t].topic, o->to_topic))
                        mt = &md->topics[t];
        if (!mt) {
                fprintf(stderr,
                        "evbridge-replay: --resume: %s does not exist yet; "
                        "nothing to resume\n",
                        o->to_topic);
                rc = 0;
                goto out;
        }
        for (j = 0; j < mt->partition_cnt; j++) {
                int32_t tp = mt->partitions[j].id;
                int64_t lo, hi, end, win = RP_RESUME_FIRST_WINDOW;

                err = rd_kafka_query_watermark_offsets(
                        sc.rk, o->to_topic, tp, &lo, &hi, (int)o->timeout_ms);
                if (err) {
                        snprintf(errstr, sz, "watermarks of %s:%d: %s",
                                 o->to_topic, (int)tp, rd_kafka_err2str(err));
                        goto out;
                }
                memset(sc.seen, 0, set->nparts);
                sc.nseen = 0;
                /* Going back from the end: within one target partition the
                 * records of a source partition appear in source order, so
                 * the first window holding one has its latest. */
                for (end = hi; end > lo && sc.nseen < set->nparts;) {
                        int64_t a = end - lo > win ? end - win : lo;

                        rc = scan_window(&sc, o->to_topic, tp, a, end, errstr,
                                         sz);
                        if (rc)
                                goto out;
                        rc = -EIO;
                        end = a;
                        if (win < RP_RESUME_MAX_WINDOW)
                                win *= 2;
                }
        }
        for (i = 0; i < set->nparts; i++) {
                struct rp_part *p = &set->parts[i];

                if (sc.best[i] > p->start) {
                        fprintf(stderr,
                                "evbridge-replay: --resume: %s:%d continues "
                                "at %lld (the target has it up to %lld)\n",
                                p->topic, (int)p->partition,
                                (long long)sc.best[i],
                                (long long)sc.best[i] - 1);
                        p->start = sc.best[i];
                }
        }
        rc = 0;
out:
        if (md)
                rd_kafka_metadata_destroy(md);
        if (sc.rk) {
                (void)rd_kafka_consumer_close(sc.rk);
                rd_kafka_destroy(sc.rk);
        }
        free(sc.best);
        free(sc.seen);
        return rc;
}

/*
 * Ask for the target's metadata now: the first produce to a topic the
 * producer has never seen otherwise waits for a metadata refresh, which
 * would hold up the first commit by about a second. A topic that does not
 * exist yet is created on first produce where the cluster allows it.
 */
static void warm_up(struct topic_sink *ts)
{
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt =
                rd_kafka_topic_new(ts->rk, ts->base.o->to_topic, NULL);

        if (!rkt)
                return;
        if (!rd_kafka_metadata(ts->rk, 0, rkt, &md,
                               (int)ts->base.o->timeout_ms))
                rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
}

static int topic_open(rp_sink_t *s, struct rp_set *set, char *errstr, size_t sz)
{
        struct topic_sink *ts = (struct topic_sink *)s;
        const struct rp_opts *o = s->o;
        char txn_id[512];
        const char *kv[] = {"transactional.id",   txn_id, "acks", "all",
                            "enable.idempotence", "true", NULL};
        rd_kafka_error_t *error;

        if (o->txn_id)
                snprintf(txn_id, sizeof(txn_id), "%s", o->txn_id);
        else
                snprintf(txn_id, sizeof(txn_id), "evbridge-replay-%s",
                         o->to_topic);
        ts->rk = rp_kafka_new(o, RD_KAFKA_PRODUCER, kv, errstr, sz);
        if (!ts->rk)
                return -EIO;
        /* Fences an earlier run with this transactional.id and aborts its
         * unfinished transaction, before the target is read back. */
        error = rd_kafka_init_transactions(ts->rk, (int)o->timeout_ms);
        if (error)
                return txn_error(error, "init_transactions", errstr, sz);
        warm_up(ts);
        if (o->resume)
                return resume_scan(ts, set, errstr, sz);
        return 0;
}

static void topic_summary(rp_sink_t *s)
{
        struct topic_sink *ts = (struct topic_sink *)s;

        fprintf(stderr,
                "evbridge-replay: %s: %llu transactions committed, %llu "
                "aborted and retried\n",
                s->o->to_topic, (unsigned long long)ts->commits,
                (unsigned long long)ts->aborts);
}

static void topic_free(rp_sink_t *s)
{
        struct topic_sink *ts = (struct topic_sink *)s;
        rd_kafka_error_t *error;

        if (!ts)
                return;
        if (ts->rk) {
                if (ts->in_txn) {
                        /* Stopped mid-batch (failure): nothing of it may
                         * become visible. */
                        error = rd_kafka_abort_transaction(
                                ts->rk, (int)s->o->timeout_ms);
                        if (error)
                                rd_kafka_error_destroy(error);
                }
                rd_kafka_destroy(ts->rk);
        }
        batch_clear(ts);
        free(ts->batch);
        free(ts);
}

static const struct rp_sink_ops topic_ops = {
        .name = "topic",
        .sync = 0,
        .open = topic_open,
        .write = topic_write,
        .flush = topic_flush,
        .pending = topic_pending,
        .summary = topic_summary,
        .free = topic_free,
};

rp_sink_t *rp_sink_topic_new(const struct rp_opts *o)
{
        struct topic_sink *ts = eb_xcalloc(1, sizeof(*ts));

        ts->base.ops = &topic_ops;
        ts->base.o = o;
        return &ts->base;
}
