/*
 * eb_pipeline.c: from a source's events to Kafka. Publish batches and
 * their settling, dedupe and the in-flight index, rendering (and the dead
 * letters), the at-least-once engine, and the pipeline's life. The
 * exactly-once engine is eb_pipeline_txn.c. Loop thread only.
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

/* Delivery latency histogram bounds, seconds (produce -> delivery report). */
static const double delivery_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025,
                                         0.05,  0.1,    0.25,  0.5,  1,
                                         2.5,   5,      10,    30};

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

void pl_inflight_add(eb_pipeline_t *pl, struct msg *m)
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

struct srcstat *pl_stat_of(eb_pipeline_t *pl, const char *source)
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
                pl->linger = evtimer_new(base, pl_on_linger, pl);
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
                pl_stat_of(pl, b->source)->cp_committed_ms = eb_mono_ms();
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
int pl_settle_later(eb_pipeline_t *pl, struct batch *b)
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

void pl_maybe_settle(struct batch *b)
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
void pl_msg_settle(eb_pipeline_t *pl, struct msg *m, int err)
{
        struct srcstat *ss = pl_stat_of(pl, m->b->source);

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
                pl_maybe_settle(w->b);
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
        pl_msg_settle(b->pl, m, err);
        b->outstanding--;
        free(m);
        pl_maybe_settle(b);
}

/*
 * The fingerprint of @p evt into @p fp. A duplicate (already published or
 * on its way) is counted and, while its message is in flight, @p b waits
 * for that message: @returns 1. @returns 0 for a new event.
 */
int pl_dedupe_hit(eb_pipeline_t *pl, struct batch *b, struct srcstat *ss,
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
int pl_render(eb_pipeline_t *pl, struct batch *b, struct srcstat *ss,
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

int eb_pipeline_publish(eb_pipeline_t *pl, const struct eb_source_cfg *src,
                        struct eb_event **evts, size_t cnt, json_t *cp,
                        eb_publish_done_cb *done, void *arg)
{
        struct srcstat *ss = pl_stat_of(pl, src->name);
        struct batch *b;
        int64_t now_s = eb_now_ms() / 1000;
        size_t i;

        if (pl->eos)
                return pl_eos_publish(pl, src, evts, cnt, cp, -1, -1, done,
                                      arg);
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
                if (pl_dedupe_hit(pl, b, ss, evt, &fp))
                        continue;
                if (pl_render(pl, b, ss, evt, &env))
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
                pl_inflight_add(pl, m);
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
                return pl_settle_later(pl, b);
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
        pl_txn_discard(pl->closing);
        pl_txn_discard(pl->cur);
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
