#include "eb_pipeline.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "eb_metrics.h"
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
};

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

        if (!b->err && b->cp)
                json_object_set(pl->checkpoints, b->source, b->cp);
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

static void maybe_settle(struct batch *b)
{
        if (b->submitted && b->outstanding == 0)
                batch_settle(b);
}

static void on_delivery(void *opaque, int err, const char *errstr)
{
        struct msg *m = opaque;
        struct batch *b = m->b;
        struct srcstat *ss = stat_of(b->pl, b->source);

        eb_histogram_observe(&b->pl->latency,
                             (double)(eb_mono_us() - m->produced_us) / 1e6);
        if (err) {
                ss->st.failed++;
                if (!b->err)
                        b->err = err;
                /* Forget the id only if Kafka is sure it is not written:
                 * the retried page then publishes it again. */
                if (eb_kafka_dr_persisted(b->pl->kafka) ==
                    EB_KAFKA_NOT_PERSISTED)
                        eb_dedupe_remove(b->pl->dedupe, &m->fp);
                eb_warn("pipeline", "source=%s delivery failed: %s", b->source,
                        errstr);
        } else {
                ss->st.published++;
                if (m->time_ms > ss->st.newest_event_ms)
                        ss->st.newest_event_ms = m->time_ms;
        }
        inflight_del(b->pl, m);
        while (m->waiters) {
                struct waiter *w = m->waiters;
                m->waiters = w->next;
                if (err && !w->b->err)
                        w->b->err = err; /* its copy is not in Kafka either */
                w->b->outstanding--;
                maybe_settle(w->b);
                free(w);
        }
        b->outstanding--;
        free(m);
        maybe_settle(b);
}

int eb_pipeline_publish(eb_pipeline_t *pl, const struct eb_source_cfg *src,
                        struct eb_event **evts, size_t cnt, json_t *cp,
                        eb_publish_done_cb *done, void *arg)
{
        const struct eb_config *cfg = pl->cfg;
        struct srcstat *ss = stat_of(pl, src->name);
        struct batch *b = eb_xcalloc(1, sizeof(*b));
        int64_t now_s = eb_now_ms() / 1000;
        size_t i;

        b->pl = pl;
        b->source = eb_xstrdup(src->name);
        b->cp = cp ? json_incref(cp) : NULL;
        b->done = done;
        b->arg = arg;
        eb_dedupe_expire(pl->dedupe, now_s);

        for (i = 0; i < cnt; i++) {
                struct eb_event *evt = evts[i];
                struct eb_envelope env;
                struct msg *m;
                struct eb_fp fp;
                size_t klen;
                char *dkey;
                int rc;

                if (b->err)
                        break;
                dkey = eb_event_dedupe_key(evt, &klen);
                eb_fp_compute(dkey, klen, &fp);
                free(dkey);
                if (eb_dedupe_contains(pl->dedupe, &fp)) {
                        struct msg *m0 = inflight_find(pl, &fp);
                        ss->st.duplicates++;
                        if (m0) {
                                struct waiter *w = eb_xcalloc(1, sizeof(*w));
                                w->b = b;
                                w->next = m0->waiters;
                                m0->waiters = w;
                                b->outstanding++;
                        }
                        continue;
                }
                if (eb_envelope_render(
                            evt, cfg->topic_template, cfg->topic_prefix,
                            cfg->envelope_binary ? EB_ENVELOPE_BINARY
                                                 : EB_ENVELOPE_STRUCTURED,
                            &env) != 0) {
                        /* A normalized event missing a required field is a
                         * bug in an adapter: count it and fail the page so
                         * it is retried and visible, never skipped. */
                        ss->st.invalid++;
                        eb_error("pipeline",
                                 "source=%s event %s cannot be rendered",
                                 src->name, evt->id ? evt->id : "(no id)");
                        b->err = -EINVAL;
                        break;
                }
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
        for (i = 0; i < cnt; i++)
                eb_event_free(evts[i]);
        free(evts);

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
                /* Nothing to wait for (all duplicates, or no events): settle
                 * from the loop, never inside this call. */
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
        json_decref(pl->checkpoints);
        eb_histogram_fini(&pl->latency);
        free(pl->inflight);
        eb_dedupe_free(pl->dedupe);
        free(pl);
}
