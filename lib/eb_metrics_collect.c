#include "eb_metrics_collect.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "eb_dedupe.h"
#include "eb_fsm.h"
#include "eb_kafka.h"
#include "eb_shard_state.h"
#include "eb_time.h"
#include "eb_util.h"

/* ---- per source -------------------------------------------------------- */

/* A family's samples must stay together, so the sources are snapshotted
 * once and every family walks the snapshot. */
struct src_row {
        const char *name;     /* borrowed from the poller */
        const char *provider; /* borrowed from the poller */
        struct eb_source_stats st;
        struct eb_pipeline_stats pst;
};

struct snapshot {
        struct src_row *rows;
        size_t cnt, cap;
        eb_pipeline_t *pipeline;
        const struct eb_metrics_app *app;
};

static void snap_one(const char *name, const char *provider,
                     const struct eb_source_stats *st, void *opaque)
{
        struct snapshot *s = opaque;
        eb_pipeline_t *pl;
        struct src_row *r;

        if (s->cnt == s->cap) {
                s->cap = s->cap ? s->cap * 2 : 16;
                s->rows = eb_xrealloc(s->rows, s->cap * sizeof(*s->rows));
        }
        r = &s->rows[s->cnt++];
        r->name = name;
        r->provider = provider;
        r->st = *st;
        pl = s->app->pipeline_for
                     ? s->app->pipeline_for(s->app->pipeline_for_opaque, name)
                     : s->pipeline;
        if (pl)
                r->pst = *eb_pipeline_stats(pl, name);
        else
                memset(&r->pst, 0, sizeof(r->pst));
}

/* ---- accessors: one value of a row, NAN when it is not known ---------- */

#define ROW_U64(part, field)                                                   \
        static double part##_##field(const struct src_row *r, int64_t now_ms)  \
        {                                                                      \
                (void)now_ms;                                                  \
                return (double)r->part.field;                                  \
        }

ROW_U64(st, walks)
ROW_U64(st, requests)
ROW_U64(st, pages)
ROW_U64(st, events)
ROW_U64(st, rate_limited)
ROW_U64(st, slowdowns)
ROW_U64(st, checkpoints)
ROW_U64(st, slice_splits)
ROW_U64(pst, published)
ROW_U64(pst, duplicates)
ROW_U64(pst, stripped)
ROW_U64(pst, deadlettered)
ROW_U64(st, banned)
ROW_U64(st, refused)
ROW_U64(st, oauth_refused)
ROW_U64(st, oauth_refreshes)

static double backoff_s(const struct src_row *r, int64_t now_ms)
{
        (void)now_ms;
        return (double)r->st.backoff_ms / 1000.0;
}

static double stuck_s(const struct src_row *r, int64_t now_ms)
{
        int64_t since = r->st.stuck_since_ms;

        (void)now_ms;
        return since ? (double)(eb_mono_ms() - since) / 1000.0 : 0.0;
}

/* Only sources with a known value get a sample: a made-up 0 or a huge
 * "since 1970" would page someone for nothing. */
static double checkpoint_lag_s(const struct src_row *r, int64_t now_ms)
{
        int64_t newest = r->pst.newest_event_ms;

        if (newest <= 0)
                return NAN;
        return newest < now_ms ? (double)(now_ms - newest) / 1000.0 : 0.0;
}

static double last_poll_s(const struct src_row *r, int64_t now_ms)
{
        (void)now_ms;
        if (r->st.last_walk_end_ms <= 0)
                return NAN;
        return (double)r->st.last_walk_end_ms / 1000.0;
}

/* Families with one more label than source and provider: all of a row's
 * samples. */
static void errors_of(struct eb_prom *w, const struct src_row *r);
static void states_of(struct eb_prom *w, const struct src_row *r);

/* Every per-source family, in the order of the page: one sample per
 * source (get; NAN leaves the source out, and a family with no sample
 * out), or several (each). */
static const struct src_family {
        const char *name;
        const char *type;
        const char *help;
        double (*get)(const struct src_row *r, int64_t now_ms);
        void (*each)(struct eb_prom *w, const struct src_row *r);
} src_families[] = {
        {"evbridge_source_polls_total", "counter",
         "Poll walks completed (every page of one poll of the source).",
         st_walks, NULL},
        {"evbridge_source_requests_total", "counter",
         "HTTP requests sent to the source's events API.", st_requests, NULL},
        {"evbridge_source_pages_total", "counter",
         "Pages of events fetched and handled.", st_pages, NULL},
        {"evbridge_source_events_received_total", "counter",
         "Events fetched and handed to the publisher (before dedupe).",
         st_events, NULL},
        {"evbridge_source_rate_limited_total", "counter",
         "HTTP 429 responses from the source (rate limited).", st_rate_limited,
         NULL},
        {"evbridge_source_slowdowns_total", "counter",
         "Proactive pauses because the upstream rate-limit budget ran low, "
         "or another source on the same host got a 429.",
         st_slowdowns, NULL},
        {"evbridge_source_checkpoints_committed_total", "counter",
         "Times the source's checkpoint moved, committed with its events "
         "(a backfill moves it once per time slice).",
         st_checkpoints, NULL},
        {"evbridge_source_slice_splits_total", "counter",
         "Walks dropped because they held more than "
         "poll.max_buffered_events, and walked again as shorter time "
         "slices.",
         st_slice_splits, NULL},
        {"evbridge_source_errors_total", "counter",
         "Failed requests or pages by kind: http (timeout, "
         "reset, refused), 5xx, body (unparseable or over "
         "http.max_body), auth "
         "(401/402), client (other 4xx), publish (Kafka).",
         NULL, errors_of},
        {"evbridge_source_events_published_total", "counter",
         "Events of the source acknowledged by Kafka.", pst_published, NULL},
        {"evbridge_source_duplicates_dropped_total", "counter",
         "Events dropped because the same (source, id, "
         "version) was already published.",
         pst_duplicates, NULL},
        {"evbridge_source_stripped_total", "counter",
         "Close events published without data and "
         "previous_data (non-admin API key, events older "
         "than an hour).",
         pst_stripped, NULL},
        {"evbridge_source_deadletter_total", "counter",
         "Poison events of the source (could not be "
         "normalized or rendered) written raw to the "
         "dead-letter topic.",
         pst_deadlettered, NULL},
        {"evbridge_source_backoff_seconds", "gauge",
         "Current retry backoff after an error; 0 when none.", backoff_s, NULL},
        {"evbridge_source_banned", "gauge",
         "1 after the upstream banned the account (Kommo "
         "403): the source is stopped until restart.",
         st_banned, NULL},
        {"evbridge_source_stuck_seconds", "gauge",
         "How long the source's requests have been failing "
         "(5xx, transport errors, bodies that do not parse); "
         "0 once one succeeds.",
         stuck_s, NULL},
        {"evbridge_source_refused", "gauge",
         "1 after the upstream refused a request for good "
         "(Kota 400/404/422: do not retry): the source is "
         "stopped until restart or reload.",
         st_refused, NULL},
        {"evbridge_source_oauth_refused", "gauge",
         "1 after Kommo refused to renew the source's OAuth "
         "token (400/401): the source is stopped until it is "
         "re-authorized (new credentials.refresh_token).",
         st_oauth_refused, NULL},
        {"evbridge_source_oauth_refreshes_total", "counter",
         "OAuth token pairs renewed and persisted (Kommo "
         "OAuth sources).",
         st_oauth_refreshes, NULL},
        {"evbridge_source_state", "gauge",
         "Scheduler state of the source: 1 for the current "
         "state, 0 for the others.",
         NULL, states_of},
        {"evbridge_source_checkpoint_lag_seconds", "gauge",
         "Now minus the upstream time of the newest "
         "event of the source acknowledged by Kafka. "
         "Grows while the source has no new events.",
         checkpoint_lag_s, NULL},
        {"evbridge_source_last_poll_timestamp_seconds", "gauge",
         "Unix time the last poll walk of the source "
         "completed.",
         last_poll_s, NULL},
};

static const struct {
        const char *kind;
        size_t off;
} src_errors[] = {
        {"http", offsetof(struct eb_source_stats, errors_http)},
        {"5xx", offsetof(struct eb_source_stats, errors_5xx)},
        {"body", offsetof(struct eb_source_stats, errors_body)},
        {"auth", offsetof(struct eb_source_stats, errors_auth)},
        {"client", offsetof(struct eb_source_stats, errors_client)},
        {"publish", offsetof(struct eb_source_stats, errors_publish)},
};

static const enum eb_source_state src_states[] = {
        EB_SRC_IDLE,       EB_SRC_WAITING, EB_SRC_FETCHING,
        EB_SRC_PUBLISHING, EB_SRC_BACKOFF, EB_SRC_STOPPED,
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t u64_at(const void *base, size_t off)
{
        const uint64_t *p = (const uint64_t *)((const char *)base + off);

        return *p;
}

static void errors_of(struct eb_prom *w, const struct src_row *r)
{
        size_t j;

        for (j = 0; j < NELEM(src_errors); j++) {
                const char *lbl[] = {"source",    r->name, "provider",
                                     r->provider, "kind",  src_errors[j].kind,
                                     NULL};
                eb_prom_sample(w, NULL, lbl,
                               (double)u64_at(&r->st, src_errors[j].off));
        }
}

static void states_of(struct eb_prom *w, const struct src_row *r)
{
        size_t j;

        for (j = 0; j < NELEM(src_states); j++) {
                const char *lbl[] = {
                        "source",   r->name,
                        "provider", r->provider,
                        "state",    eb_source_state_name(src_states[j]),
                        NULL};
                eb_prom_sample(w, NULL, lbl, r->st.state == src_states[j]);
        }
}

static int row_cmp(const void *a, const void *b)
{
        const struct src_row *x = a, *y = b;

        return strcmp(x->name, y->name);
}

/* One family over every row; the header comes with its first sample. */
static void collect_family(struct eb_prom *w, const struct src_family *f,
                           const struct snapshot *s, int64_t now_ms)
{
        int any = 0;
        size_t i;

        for (i = 0; i < s->cnt; i++) {
                const struct src_row *r = &s->rows[i];
                const char *lbl[] = {"source", r->name, "provider", r->provider,
                                     NULL};
                double v = f->get ? f->get(r, now_ms) : 0;

                if (isnan(v))
                        continue;
                if (!any)
                        eb_prom_family(w, f->name, f->type, f->help);
                any = 1;
                if (f->each)
                        f->each(w, r);
                else
                        eb_prom_sample(w, NULL, lbl, v);
        }
}

void eb_metrics_collect_sources(struct eb_prom *w, void *opaque)
{
        const struct eb_metrics_app *a = opaque;
        struct snapshot s;
        int64_t now_ms = eb_now_ms();
        size_t j;

        if (!a->poller)
                return;
        memset(&s, 0, sizeof(s));
        s.pipeline = a->pipeline;
        s.app = a;
        eb_poller_foreach(a->poller, snap_one, &s);
        /* Sorted by name: a stable order for people reading the page. */
        if (s.cnt)
                qsort(s.rows, s.cnt, sizeof(*s.rows), row_cmp);
        for (j = 0; j < NELEM(src_families); j++)
                collect_family(w, &src_families[j], &s, now_ms);
        free(s.rows);
}

/* ---- Kafka --------------------------------------------------------------- */

void eb_metrics_collect_kafka(struct eb_prom *w, void *opaque)
{
        const struct eb_metrics_app *a = opaque;
        struct eb_kafka_stats ks;

        if (a->kafka) {
                eb_kafka_get_stats(a->kafka, &ks);
                eb_prom_family(w, "evbridge_kafka_messages_produced_total",
                               "counter",
                               "Messages accepted into the producer queue.");
                eb_prom_sample(w, NULL, NULL, (double)ks.produced);
                eb_prom_family(w, "evbridge_kafka_messages_delivered_total",
                               "counter",
                               "Messages acknowledged by the Kafka cluster.");
                eb_prom_sample(w, NULL, NULL, (double)ks.delivered);
                eb_prom_family(w, "evbridge_kafka_messages_failed_total",
                               "counter",
                               "Messages whose delivery finally failed "
                               "(timeout, authorization, rejected).");
                eb_prom_sample(w, NULL, NULL, (double)ks.failed);
                eb_prom_family(w, "evbridge_kafka_queue_full_total", "counter",
                               "Produce calls refused because the local "
                               "producer queue was full (backpressure).");
                /* exactly-once: publishes refused at the queue bound
                 * before they reach the producer (eb_pipeline) */
                eb_prom_sample(
                        w, NULL, NULL,
                        (double)ks.queue_full +
                                (a->pipeline ? (double)eb_pipeline_backpressure(
                                                       a->pipeline)
                                             : 0));
                eb_prom_family(w, "evbridge_kafka_producer_queue_messages",
                               "gauge",
                               "Messages and requests in the producer not "
                               "yet acknowledged (rd_kafka_outq_len).");
                eb_prom_sample(w, NULL, NULL, (double)ks.outq);
                eb_prom_family(w, "evbridge_kafka_embedded", "gauge",
                               "1 when running on the embedded in-process "
                               "cluster (nothing survives a restart).");
                eb_prom_sample(w, NULL, NULL, eb_kafka_embedded(a->kafka));
                /* Exactly-once delivery (Kafka transactions); 0 with
                 * delivery "at-least-once". */
                eb_prom_family(w, "evbridge_kafka_transactions_committed_total",
                               "counter",
                               "Kafka transactions committed (exactly-once "
                               "delivery).");
                eb_prom_sample(w, NULL, NULL, (double)ks.txn_committed);
                eb_prom_family(w, "evbridge_kafka_transactions_aborted_total",
                               "counter",
                               "Kafka transactions aborted (exactly-once "
                               "delivery).");
                eb_prom_sample(w, NULL, NULL, (double)ks.txn_aborted);
        }
        if (a->pipeline) {
                eb_prom_family(w, "evbridge_kafka_delivery_latency_seconds",
                               "histogram",
                               "Time from producing a message to its "
                               "delivery report (success or failure).");
                eb_prom_histogram(w, NULL,
                                  eb_pipeline_delivery_latency(a->pipeline));
                eb_prom_family(w, "evbridge_publish_pending_batches", "gauge",
                               "Pages and webhook batches handed to Kafka "
                               "whose delivery reports are not all in.");
                eb_prom_sample(w, NULL, NULL, eb_pipeline_pending(a->pipeline));
        }
}

/* ---- dedupe ------------------------------------------------------------- */

void eb_metrics_collect_dedupe(struct eb_prom *w, void *opaque)
{
        const struct eb_metrics_app *a = opaque;
        const eb_dedupe_t *dd;
        struct eb_dedupe_stats st;
        const char *cap[] = {"reason", "capacity", NULL};
        const char *win[] = {"reason", "window", NULL};

        if (!a->pipeline)
                return;
        dd = eb_pipeline_dedupe(a->pipeline);
        eb_dedupe_stats(dd, &st);
        eb_prom_family(w, "evbridge_dedupe_entries", "gauge",
                       "Event identities remembered by the dedupe table.");
        eb_prom_sample(w, NULL, NULL, (double)st.size);
        eb_prom_family(w, "evbridge_dedupe_capacity", "gauge",
                       "Most identities the dedupe table holds "
                       "(dedupe.capacity).");
        eb_prom_sample(w, NULL, NULL, (double)st.capacity);
        eb_prom_family(w, "evbridge_dedupe_window_seconds", "gauge",
                       "How long an identity is remembered "
                       "(dedupe.window).");
        eb_prom_sample(w, NULL, NULL, (double)eb_dedupe_window(dd));
        eb_prom_family(w, "evbridge_dedupe_evictions_total", "counter",
                       "Identities forgotten: reason capacity (the table was "
                       "full: raise dedupe.capacity) or window (older than "
                       "dedupe.window).");
        eb_prom_sample(w, NULL, cap, (double)st.evicted_capacity);
        eb_prom_sample(w, NULL, win, (double)st.evicted_window);
        eb_prom_family(w, "evbridge_dedupe_memory_bytes", "gauge",
                       "Memory allocated for the dedupe table.");
        eb_prom_sample(w, NULL, NULL, (double)st.bytes);
}

/* ---- process ------------------------------------------------------------ */

void eb_metrics_collect_process(struct eb_prom *w, void *opaque)
{
        const struct eb_metrics_app *a = opaque;
        const char *lbl[] = {"version", a->version ? a->version : "", "gitrev",
                             a->gitrev ? a->gitrev : "", NULL};

        eb_prom_family(w, "evbridge_build_info", "gauge",
                       "Always 1; the labels name the running build.");
        eb_prom_sample(w, NULL, lbl, 1);
        if (a->start_time_ms > 0) {
                eb_prom_family(w, "evbridge_process_start_time_seconds",
                               "gauge", "Unix time the process started.");
                eb_prom_sample(w, NULL, NULL,
                               (double)a->start_time_ms / 1000.0);
        }
        eb_prom_family(w, "evbridge_state_transitions_illegal_total", "counter",
                       "State changes that their machine's table does not "
                       "allow (a bug, logged with both states); 0 is "
                       "healthy.");
        eb_prom_sample(w, NULL, NULL,
                       (double)(eb_fsm_illegal_total() +
                                eb_kafka_txn_illegal_total() +
                                eb_shard_state_illegal_total()));
}

void eb_metrics_register_app(eb_metrics_t *m, const struct eb_metrics_app *a)
{
        void *op = (void *)(uintptr_t)a; /* collectors only read it */

        eb_metrics_add_collector(m, eb_metrics_collect_process, op);
        eb_metrics_add_collector(m, eb_metrics_collect_sources, op);
        eb_metrics_add_collector(m, eb_metrics_collect_kafka, op);
        eb_metrics_add_collector(m, eb_metrics_collect_dedupe, op);
}

void eb_metrics_unregister_app(eb_metrics_t *m, const struct eb_metrics_app *a)
{
        void *op = (void *)(uintptr_t)a;

        eb_metrics_remove_collector(m, eb_metrics_collect_process, op);
        eb_metrics_remove_collector(m, eb_metrics_collect_sources, op);
        eb_metrics_remove_collector(m, eb_metrics_collect_kafka, op);
        eb_metrics_remove_collector(m, eb_metrics_collect_dedupe, op);
}
