/*
 * The replay loop: an assign-only read_committed consumer over the
 * selected partitions, each read from its start to its stop offset, every
 * record parsed as an envelope, filtered, and handed to the sink.
 *
 * Positions: part->next is the next offset to look at; part->durable is
 * the offset before which everything that matched has reached the sink
 * (after an fflush, an HTTP 2xx or a committed transaction). A resume line
 * always prints durable positions, so re-running from it never skips an
 * event (and, for the stdout and topic sinks, never repeats one).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eb_time.h"
#include "eb_util.h"
#include "replay.h"

#define RP_MAX_INVALID_SHOWN 5
/* A batch (transaction, stdout buffer) is made durable at the latest this
 * long after the previous one, even while records keep trickling in. */
#define RP_BATCH_MAX_MS 1000

struct run {
        const struct rp_opts *o;
        struct rp_set set;
        rd_kafka_t *rk;
        rp_sink_t *sink;
        uint64_t *pending; /* per topic: written, not yet durable */
        uint64_t read, matched, written, skipped;
        uint64_t invalid_shown;
        int progress;
        int64_t started_ms;
        int64_t last_progress_ms;
        int64_t last_flush_ms;
        uint64_t last_progress_read;
        double next_slot_ms; /* --rate pacing */
        struct eb_replay_hdr *hdrs;
        size_t hdr_cap;
        char last_pos[EB_REPLAY_TOPIC_MAX + 48];
        rd_kafka_resp_err_t last_err;
        int64_t last_err_ms;
};

static void print_resume(const struct run *r)
{
        size_t i;

        fputs("resume with:", stderr);
        for (i = 0; i < r->set.nparts; i++) {
                const struct rp_part *p = &r->set.parts[i];

                fprintf(stderr, " --from %s:%d:%lld", p->topic,
                        (int)p->partition, (long long)p->durable);
        }
        fputc('\n', stderr);
}

static int64_t remaining(const struct run *r)
{
        int64_t n = 0;
        size_t i;

        for (i = 0; i < r->set.nparts; i++) {
                const struct rp_part *p = &r->set.parts[i];

                if (!p->done && p->stop != INT64_MAX && p->stop > p->next)
                        n += p->stop - p->next;
        }
        return n;
}

static void progress(struct run *r, int force)
{
        int64_t now = rp_mono_ms();
        double secs = (double)(now - r->last_progress_ms) / 1000.0;
        double rate;

        if (!r->progress)
                return;
        if (!force) {
                int by_time = now - r->last_progress_ms >= 1000;
                int by_count = r->o->progress_every > 0 &&
                               r->read - r->last_progress_read >=
                                       (uint64_t)r->o->progress_every;

                if (!by_time && !by_count)
                        return;
        }
        rate = secs > 0 ? (double)(r->read - r->last_progress_read) / secs
                        : 0.0;
        fprintf(stderr,
                "evbridge-replay: progress: read %llu, matched %llu, written "
                "%llu, %.0f/s",
                (unsigned long long)r->read, (unsigned long long)r->matched,
                (unsigned long long)(r->written), rate);
        if (!r->o->follow)
                fprintf(stderr, ", remaining <= %lld", (long long)remaining(r));
        if (r->last_pos[0])
                fprintf(stderr, ", at %s", r->last_pos);
        fputc('\n', stderr);
        r->last_progress_ms = now;
        r->last_progress_read = r->read;
}

static void summary(const struct run *r)
{
        int64_t ms = rp_mono_ms() - r->started_ms;
        size_t i, w = 5;

        if (r->o->quiet)
                return;
        for (i = 0; i < r->set.ntopics; i++)
                if (strlen(r->set.topics[i].name) > w)
                        w = strlen(r->set.topics[i].name);
        fprintf(stderr,
                "evbridge-replay: summary: read %llu, matched %llu, written "
                "%llu, skipped %llu (not an envelope) in %.1fs\n",
                (unsigned long long)r->read, (unsigned long long)r->matched,
                (unsigned long long)r->written, (unsigned long long)r->skipped,
                (double)ms / 1000.0);
        fprintf(stderr, "  %-*s %10s %10s %10s %10s\n", (int)w, "TOPIC", "READ",
                "MATCHED", "WRITTEN", "SKIPPED");
        for (i = 0; i < r->set.ntopics; i++) {
                const struct rp_topic *t = &r->set.topics[i];

                fprintf(stderr, "  %-*s %10llu %10llu %10llu %10llu\n", (int)w,
                        t->name, (unsigned long long)t->read,
                        (unsigned long long)t->matched,
                        (unsigned long long)t->written,
                        (unsigned long long)t->skipped);
        }
        if (r->sink && r->sink->ops->summary)
                r->sink->ops->summary(r->sink);
}

static int flush_sink(struct run *r, char *errstr, size_t sz)
{
        int64_t n;
        size_t i;

        r->last_flush_ms = rp_mono_ms();
        n = r->sink->ops->flush(r->sink, errstr, sz);
        if (n < 0)
                return (int)n;
        for (i = 0; i < r->set.ntopics; i++) {
                r->set.topics[i].written += r->pending[i];
                r->written += r->pending[i];
                r->pending[i] = 0;
        }
        for (i = 0; i < r->set.nparts; i++)
                r->set.parts[i].durable = r->set.parts[i].next;
        return 0;
}

static void pace(struct run *r)
{
        double now, gap;

        if (r->o->rate <= 0)
                return;
        gap = 1000.0 / r->o->rate;
        now = (double)rp_mono_ms();
        if (r->next_slot_ms < now - gap)
                r->next_slot_ms = now; /* no bursts after an idle spell */
        if (r->next_slot_ms > now)
                rp_sleep_ms((int64_t)(r->next_slot_ms - now + 0.5));
        r->next_slot_ms += gap;
}

static size_t collect_headers(struct run *r, const rd_kafka_message_t *m)
{
        rd_kafka_headers_t *hdrs = NULL;
        size_t i, n;

        if (rd_kafka_message_headers(m, &hdrs) || !hdrs)
                return 0;
        n = rd_kafka_header_cnt(hdrs);
        if (n > r->hdr_cap) {
                r->hdr_cap = n;
                r->hdrs = eb_xrealloc(r->hdrs, n * sizeof(*r->hdrs));
        }
        for (i = 0; i < n; i++)
                if (rd_kafka_header_get_all(hdrs, i, &r->hdrs[i].name,
                                            &r->hdrs[i].value, &r->hdrs[i].len))
                        break;
        return i;
}

/* One record. Returns 0, or RP_EXIT_SINK after a sink failure. */
static int handle(struct run *r, struct rp_part *p, const rd_kafka_message_t *m)
{
        struct rp_topic *t = &r->set.topics[p->tix];
        struct eb_replay_record evt;
        struct rp_rec rec;
        char err[512];
        size_t nh;
        int rc = 0;

        r->read++;
        t->read++;
        snprintf(r->last_pos, sizeof(r->last_pos), "%s:%d:%lld", p->topic,
                 (int)p->partition, (long long)m->offset);
        nh = collect_headers(r, m);
        if (eb_replay_record_parse(m->payload, m->len, r->hdrs, nh, &evt, err,
                                   sizeof(err))) {
                r->skipped++;
                t->skipped++;
                if (r->invalid_shown++ < RP_MAX_INVALID_SHOWN)
                        fprintf(stderr,
                                "evbridge-replay: skipping %s: not an "
                                "envelope: %s%s\n",
                                r->last_pos, err,
                                r->invalid_shown == RP_MAX_INVALID_SHOWN
                                        ? " (further ones are only counted)"
                                        : "");
                goto done;
        }
        if (!eb_replay_filter_match(r->o->filter, &evt))
                goto done;
        r->matched++;
        t->matched++;
        pace(r);
        rec.msg = m;
        rec.evt = &evt;
        rec.topic = p->topic;
        rc = r->sink->ops->write(r->sink, &rec, err, sizeof(err));
        if (rc == -EINTR) {
                rc = 0; /* not delivered; the loop stops on the signal */
                goto out;
        }
        if (rc) {
                fprintf(stderr, "evbridge-replay: %s sink failed at %s: %s\n",
                        r->sink->ops->name, r->last_pos, err);
                rc = RP_EXIT_SINK;
                goto out;
        }
        if (r->sink->ops->sync) {
                t->written++;
                r->written++;
        } else {
                r->pending[p->tix]++;
        }
done:
        p->next = m->offset + 1;
        if (r->sink->ops->sync || r->sink->ops->pending(r->sink) == 0)
                p->durable = p->next;
out:
        eb_replay_record_fini(&evt);
        return rc;
}

static int setup(struct run *r, char *errstr, size_t sz)
{
        const struct eb_replay_pos beginning = {EB_REPLAY_POS_BEGINNING, 0,
                                                NULL};
        const struct rp_opts *o = r->o;
        int64_t *starts = NULL, *stops = NULL;
        size_t i;
        int rc;

        rc = rp_select(r->rk, o, &r->set, errstr, sz);
        if (!rc)
                rc = rp_watermarks(r->rk, o, &r->set, errstr, sz);
        if (rc)
                return rc;
        starts = eb_xcalloc(r->set.nparts, sizeof(*starts));
        stops = eb_xcalloc(r->set.nparts, sizeof(*stops));
        rc = rp_resolve(r->rk, o, &r->set, o->froms, o->nfroms, &beginning,
                        starts, errstr, sz);
        if (!rc && o->has_until && !o->follow)
                rc = rp_resolve(r->rk, o, &r->set, NULL, 0, &o->until, stops,
                                errstr, sz);
        if (rc)
                goto out;
        if (o->sink == RP_SINK_TOPIC) {
                for (i = 0; i < r->set.ntopics; i++)
                        if (!strcmp(r->set.topics[i].name, o->to_topic)) {
                                snprintf(errstr, sz,
                                         "--to-topic %s is also a topic "
                                         "being read",
                                         o->to_topic);
                                rc = -EINVAL;
                                goto out;
                        }
        }
        for (i = 0; i < r->set.nparts; i++) {
                struct rp_part *p = &r->set.parts[i];

                p->start = starts[i];
                p->stop = o->follow      ? INT64_MAX
                          : o->has_until ? stops[i]
                                         : p->hi;
                if (p->stop < p->start)
                        p->stop = p->start;
        }
out:
        free(starts);
        free(stops);
        return rc;
}

static int assign(struct run *r, char *errstr, size_t sz)
{
        rd_kafka_topic_partition_list_t *tpl;
        rd_kafka_resp_err_t err;
        size_t i;
        int n = 0;

        tpl = rd_kafka_topic_partition_list_new((int)r->set.nparts);
        for (i = 0; i < r->set.nparts; i++) {
                struct rp_part *p = &r->set.parts[i];

                p->next = p->durable = p->start;
                p->done = p->next >= p->stop;
                if (p->done)
                        continue;
                rd_kafka_topic_partition_list_add(tpl, p->topic, p->partition)
                        ->offset = p->start;
                n++;
        }
        err = n ? rd_kafka_assign(r->rk, tpl) : RD_KAFKA_RESP_ERR_NO_ERROR;
        rd_kafka_topic_partition_list_destroy(tpl);
        if (err) {
                snprintf(errstr, sz, "assign: %s", rd_kafka_err2str(err));
                return -EIO;
        }
        return n;
}

static int fatal_consumer_error(rd_kafka_resp_err_t err)
{
        return err == RD_KAFKA_RESP_ERR__FATAL ||
               err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
               err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
               err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
               err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
               err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED ||
               err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
               err == RD_KAFKA_RESP_ERR__SSL;
}

/* The loop. Returns an RP_EXIT_* code. */
static int consume(struct run *r, int active)
{
        const struct rp_opts *o = r->o;
        char err[512];
        int code = RP_EXIT_OK;

        while (active > 0 && !rp_stop_signal) {
                rd_kafka_message_t *m;
                struct rp_part *p;

                if (o->count && r->matched >= (uint64_t)o->count)
                        break;
                progress(r, 0);
                if (!r->sink->ops->sync &&
                    (r->sink->ops->pending(r->sink) >= o->batch_size ||
                     (r->sink->ops->pending(r->sink) > 0 &&
                      rp_mono_ms() - r->last_flush_ms >= RP_BATCH_MAX_MS))) {
                        if (flush_sink(r, err, sizeof(err))) {
                                fprintf(stderr,
                                        "evbridge-replay: %s sink failed: "
                                        "%s\n",
                                        r->sink->ops->name, err);
                                return RP_EXIT_SINK;
                        }
                }
                m = rd_kafka_consumer_poll(r->rk, 100);
                if (!m) {
                        /* Idle: make what we have durable. */
                        if (!r->sink->ops->sync &&
                            r->sink->ops->pending(r->sink) > 0 &&
                            flush_sink(r, err, sizeof(err))) {
                                fprintf(stderr,
                                        "evbridge-replay: %s sink failed: "
                                        "%s\n",
                                        r->sink->ops->name, err);
                                return RP_EXIT_SINK;
                        }
                        continue;
                }
                p = m->rkt ? rp_find(&r->set, rd_kafka_topic_name(m->rkt),
                                     m->partition)
                           : NULL;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        /* The end of the log may lie past the last data
                         * record (transaction markers). */
                        if (p && !p->done && m->offset > p->next)
                                p->next = m->offset;
                        if (p && !p->done && p->next >= p->stop) {
                                p->done = 1;
                                active--;
                        }
                        if (p && (r->sink->ops->sync ||
                                  r->sink->ops->pending(r->sink) == 0))
                                p->durable = p->next;
                } else if (m->err) {
                        int64_t now = rp_mono_ms();

                        if (fatal_consumer_error(m->err)) {
                                fprintf(stderr,
                                        "evbridge-replay: consumer: %s\n",
                                        rd_kafka_message_errstr(m));
                                code = RP_EXIT_RUNTIME;
                                rd_kafka_message_destroy(m);
                                break;
                        }
                        if (m->err != r->last_err ||
                            now - r->last_err_ms > 10000) {
                                fprintf(stderr,
                                        "evbridge-replay: warning: %s "
                                        "(retrying)\n",
                                        rd_kafka_message_errstr(m));
                                r->last_err = m->err;
                                r->last_err_ms = now;
                        }
                } else if (p && !p->done && m->offset >= p->next) {
                        if (m->offset >= p->stop) {
                                p->done = 1;
                                active--;
                        } else {
                                code = handle(r, p, m);
                                if (!code && p->next >= p->stop) {
                                        p->done = 1;
                                        active--;
                                }
                        }
                }
                rd_kafka_message_destroy(m);
                if (code)
                        return code;
        }
        if (r->sink->ops->pending(r->sink) > 0 || !r->sink->ops->sync) {
                if (flush_sink(r, err, sizeof(err))) {
                        fprintf(stderr, "evbridge-replay: %s sink failed: %s\n",
                                r->sink->ops->name, err);
                        return RP_EXIT_SINK;
                }
        }
        if (code)
                return code;
        if (rp_stop_signal && !o->follow && active > 0)
                return RP_EXIT_INTERRUPTED;
        return RP_EXIT_OK;
}

int rp_run(const struct rp_opts *o)
{
        char group[128], errstr[1024];
        const char *kv[] = {"group.id",
                            group,
                            "isolation.level",
                            "read_committed",
                            "enable.partition.eof",
                            "true",
                            "enable.auto.commit",
                            "false",
                            "enable.auto.offset.store",
                            "false",
                            "auto.offset.reset",
                            "earliest",
                            NULL};
        struct run r;
        int code = RP_EXIT_RUNTIME, active;

        memset(&r, 0, sizeof(r));
        r.o = o;
        r.started_ms = r.last_progress_ms = rp_mono_ms();
        r.progress = o->progress == 1 ||
                     (o->progress == -1 && !o->quiet && isatty(2));
        rp_private_group(group, sizeof(group), "read");
        r.rk = rp_kafka_new(o, RD_KAFKA_CONSUMER, kv, errstr, sizeof(errstr));
        if (!r.rk) {
                fprintf(stderr, "evbridge-replay: %s\n", errstr);
                return RP_EXIT_RUNTIME;
        }
        rd_kafka_poll_set_consumer(r.rk);
        if (setup(&r, errstr, sizeof(errstr))) {
                fprintf(stderr, "evbridge-replay: %s\n", errstr);
                goto out;
        }
        r.pending = eb_xcalloc(r.set.ntopics, sizeof(*r.pending));
        switch (o->sink) {
        case RP_SINK_STDOUT:
                r.sink = rp_sink_stdout_new(o);
                break;
        case RP_SINK_HTTP:
                r.sink = rp_sink_http_new(o, errstr, sizeof(errstr));
                break;
        case RP_SINK_TOPIC:
                r.sink = rp_sink_topic_new(o);
                break;
        }
        if (!r.sink) {
                fprintf(stderr, "evbridge-replay: %s\n", errstr);
                goto out;
        }
        {
                size_t i;

                /* Until the sink has opened, nothing was written: a
                 * failure in open() resumes from the start positions. */
                for (i = 0; i < r.set.nparts; i++)
                        r.set.parts[i].durable = r.set.parts[i].start;
        }
        if (r.sink->ops->open &&
            r.sink->ops->open(r.sink, &r.set, errstr, sizeof(errstr))) {
                fprintf(stderr, "evbridge-replay: %s sink: %s\n",
                        r.sink->ops->name, errstr);
                code = RP_EXIT_SINK;
                print_resume(&r);
                goto out;
        }
        active = assign(&r, errstr, sizeof(errstr));
        r.last_flush_ms = r.last_progress_ms = rp_mono_ms();
        if (active < 0) {
                fprintf(stderr, "evbridge-replay: %s\n", errstr);
                goto out;
        }
        code = consume(&r, active);
        progress(&r, 1);
        if (code == RP_EXIT_SINK || code == RP_EXIT_INTERRUPTED ||
            code == RP_EXIT_RUNTIME || (rp_stop_signal && o->follow))
                print_resume(&r);
        if (code == RP_EXIT_INTERRUPTED)
                fprintf(stderr,
                        "evbridge-replay: interrupted before the end of the "
                        "range\n");
        if (code == RP_EXIT_OK && !r.matched)
                code = RP_EXIT_NOTHING;
        summary(&r);
out:
        if (r.sink)
                r.sink->ops->free(r.sink);
        (void)rd_kafka_consumer_close(r.rk);
        rd_kafka_destroy(r.rk);
        rp_set_fini(&r.set);
        free(r.pending);
        free(r.hdrs);
        return code;
}
