#include "eb_metrics_collect.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "eb_dedupe.h"
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

/* Counters of struct eb_source_stats that map one to one to a family. */
static const struct {
        const char *name;
        const char *help;
        size_t off;
} src_counters[] = {
        {"evbridge_source_polls_total",
         "Poll walks completed (every page of one poll of the source).",
         offsetof(struct eb_source_stats, walks)},
        {"evbridge_source_requests_total",
         "HTTP requests sent to the source's events API.",
         offsetof(struct eb_source_stats, requests)},
        {"evbridge_source_pages_total", "Pages of events fetched and handled.",
         offsetof(struct eb_source_stats, pages)},
        {"evbridge_source_events_received_total",
         "Events fetched and handed to the publisher (before dedupe).",
         offsetof(struct eb_source_stats, events)},
        {"evbridge_source_rate_limited_total",
         "HTTP 429 responses from the source (rate limited).",
         offsetof(struct eb_source_stats, rate_limited)},
        {"evbridge_source_slowdowns_total",
         "Proactive pauses because the upstream rate-limit budget ran low, "
         "or another source on the same host got a 429.",
         offsetof(struct eb_source_stats, slowdowns)},
        {"evbridge_source_checkpoints_committed_total",
         "Times the source's checkpoint moved, committed with its events "
         "(a backfill moves it once per time slice).",
         offsetof(struct eb_source_stats, checkpoints)},
        {"evbridge_source_slice_splits_total",
         "Walks dropped because they held more than "
         "poll.max_buffered_events, and walked again as shorter time "
         "slices.",
         offsetof(struct eb_source_stats, slice_splits)},
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

static int row_cmp(const void *a, const void *b)
{
        const struct src_row *x = a, *y = b;

        return strcmp(x->name, y->name);
}

void eb_metrics_collect_sources(struct eb_prom *w, void *opaque)
{
        const struct eb_metrics_app *a = opaque;
        struct snapshot s;
        int64_t now_ms = eb_now_ms();
        size_t i, j;
        int any;

        if (!a->poller)
                return;
        memset(&s, 0, sizeof(s));
        s.pipeline = a->pipeline;
        s.app = a;
        eb_poller_foreach(a->poller, snap_one, &s);
        if (s.cnt == 0)
                goto out;
        /* Sorted by name: a stable order for people reading the page. */
        qsort(s.rows, s.cnt, sizeof(*s.rows), row_cmp);

        for (j = 0; j < NELEM(src_counters); j++) {
                eb_prom_family(w, src_counters[j].name, "counter",
                               src_counters[j].help);
                for (i = 0; i < s.cnt; i++) {
                        const char *lbl[] = {"source", s.rows[i].name,
                                             "provider", s.rows[i].provider,
                                             NULL};
                        eb_prom_sample(w, NULL, lbl,
                                       (double)u64_at(&s.rows[i].st,
                                                      src_counters[j].off));
                }
        }

        eb_prom_family(w, "evbridge_source_errors_total", "counter",
                       "Failed requests or pages by kind: http (timeout, "
                       "reset, refused), 5xx, body (unparseable or over "
                       "http.max_body), auth "
                       "(401/402), client (other 4xx), publish (Kafka).");
        for (i = 0; i < s.cnt; i++) {
                for (j = 0; j < NELEM(src_errors); j++) {
                        const char *lbl[] = {"source",   s.rows[i].name,
                                             "provider", s.rows[i].provider,
                                             "kind",     src_errors[j].kind,
                                             NULL};
                        eb_prom_sample(w, NULL, lbl,
                                       (double)u64_at(&s.rows[i].st,
                                                      src_errors[j].off));
                }
        }

        eb_prom_family(w, "evbridge_source_events_published_total", "counter",
                       "Events of the source acknowledged by Kafka.");
        for (i = 0; i < s.cnt; i++) {
                const char *lbl[] = {"source", s.rows[i].name, "provider",
                                     s.rows[i].provider, NULL};
                eb_prom_sample(w, NULL, lbl, (double)s.rows[i].pst.published);
        }

        eb_prom_family(w, "evbridge_source_duplicates_dropped_total", "counter",
                       "Events dropped because the same (source, id, "
                       "version) was already published.");
        for (i = 0; i < s.cnt; i++) {
                const char *lbl[] = {"source", s.rows[i].name, "provider",
                                     s.rows[i].provider, NULL};
                eb_prom_sample(w, NULL, lbl, (double)s.rows[i].pst.duplicates);
        }

        eb_prom_family(w, "evbridge_source_stripped_total", "counter",
                       "Close events published without data and "
                       "previous_data (non-admin API key, events older "
                       "than an hour).");
        for (i = 0; i < s.cnt; i++) {
                const char *lbl[] = {"source", s.rows[i].name, "provider",
                                     s.rows[i].provider, NULL};
                eb_prom_sample(w, NULL, lbl, (double)s.rows[i].pst.stripped);
        }

        eb_prom_family(w, "evbridge_source_deadletter_total", "counter",
                       "Poison events of the source (could not be "
                       "normalized or rendered) written raw to the "
                       "dead-letter topic.");
        for (i = 0; i < s.cnt; i++) {
                const char *lbl[] = {"source", s.rows[i].name, "provider",
                                     s.rows[i].provider, NULL};
                eb_prom_sample(w, NULL, lbl,
                               (double)s.rows[i].pst.deadlettered);
        }

        eb_prom_family(w, "evbridge_source_backoff_seconds", "gauge",
                       "Current retry backoff after an error; 0 when none.");
        for (i = 0; i < s.cnt; i++) {
                const char *lbl[] = {"source", s.rows[i].name, "provider",
                                     s.rows[i].provider, NULL};
                eb_prom_sample(w, NULL, lbl,
                               (double)s.rows[i].st.backoff_ms / 1000.0);
        }

        eb_prom_family(w, "evbridge_source_banned", "gauge",
                       "1 after the upstream banned the account (Kommo "
                       "403): the source is stopped until restart.");
        for (i = 0; i < s.cnt; i++) {
                const char *lbl[] = {"source", s.rows[i].name, "provider",
                                     s.rows[i].provider, NULL};
                eb_prom_sample(w, NULL, lbl, s.rows[i].st.banned ? 1 : 0);
        }

        eb_prom_family(w, "evbridge_source_stuck_seconds", "gauge",
                       "How long the source's requests have been failing "
                       "(5xx, transport errors, bodies that do not parse); "
                       "0 once one succeeds.");
        for (i = 0; i < s.cnt; i++) {
                const char *lbl[] = {"source", s.rows[i].name, "provider",
                                     s.rows[i].provider, NULL};
                int64_t since = s.rows[i].st.stuck_since_ms;
                eb_prom_sample(w, NULL, lbl,
                               since ? (double)(eb_mono_ms() - since) / 1000.0
                                     : 0.0);
        }

        eb_prom_family(w, "evbridge_source_refused", "gauge",
                       "1 after the upstream refused a request for good "
                       "(Kota 400/404/422: do not retry): the source is "
                       "stopped until restart or reload.");
        for (i = 0; i < s.cnt; i++) {
                const char *lbl[] = {"source", s.rows[i].name, "provider",
                                     s.rows[i].provider, NULL};
                eb_prom_sample(w, NULL, lbl, s.rows[i].st.refused ? 1 : 0);
        }

        eb_prom_family(w, "evbridge_source_oauth_refused", "gauge",
                       "1 after Kommo refused to renew the source's OAuth "
                       "token (400/401): the source is stopped until it is "
                       "re-authorized (new credentials.refresh_token).");
        for (i = 0; i < s.cnt; i++) {
                const char *lbl[] = {"source", s.rows[i].name, "provider",
                                     s.rows[i].provider, NULL};
                eb_prom_sample(w, NULL, lbl,
                               s.rows[i].st.oauth_refused ? 1 : 0);
        }

        eb_prom_family(w, "evbridge_source_oauth_refreshes_total", "counter",
                       "OAuth token pairs renewed and persisted (Kommo "
                       "OAuth sources).");
        for (i = 0; i < s.cnt; i++) {
                const char *lbl[] = {"source", s.rows[i].name, "provider",
                                     s.rows[i].provider, NULL};
                eb_prom_sample(w, NULL, lbl,
                               (double)s.rows[i].st.oauth_refreshes);
        }

        eb_prom_family(w, "evbridge_source_state", "gauge",
                       "Scheduler state of the source: 1 for the current "
                       "state, 0 for the others.");
        for (i = 0; i < s.cnt; i++) {
                for (j = 0; j < NELEM(src_states); j++) {
                        const char *lbl[] = {
                                "source",   s.rows[i].name,
                                "provider", s.rows[i].provider,
                                "state",    eb_source_state_name(src_states[j]),
                                NULL};
                        eb_prom_sample(w, NULL, lbl,
                                       s.rows[i].st.state == src_states[j]);
                }
        }

        /* Only sources with a known value get a sample: a made-up 0 or a
         * huge "since 1970" would page someone for nothing. */
        any = 0;
        for (i = 0; i < s.cnt; i++) {
                int64_t newest = s.rows[i].pst.newest_event_ms;
                const char *lbl[] = {"source", s.rows[i].name, "provider",
                                     s.rows[i].provider, NULL};
                if (newest <= 0)
                        continue;
                if (!any)
                        eb_prom_family(
                                w, "evbridge_source_checkpoint_lag_seconds",
                                "gauge",
                                "Now minus the upstream time of the newest "
                                "event of the source acknowledged by Kafka. "
                                "Grows while the source has no new events.");
                any = 1;
                eb_prom_sample(w, NULL, lbl,
                               newest < now_ms
                                       ? (double)(now_ms - newest) / 1000.0
                                       : 0.0);
        }

        any = 0;
        for (i = 0; i < s.cnt; i++) {
                int64_t t = s.rows[i].st.last_walk_end_ms;
                const char *lbl[] = {"source", s.rows[i].name, "provider",
                                     s.rows[i].provider, NULL};
                if (t <= 0)
                        continue;
                if (!any)
                        eb_prom_family(
                                w,
                                "evbridge_source_last_poll_timestamp_seconds",
                                "gauge",
                                "Unix time the last poll walk of the source "
                                "completed.");
                any = 1;
                eb_prom_sample(w, NULL, lbl, (double)t / 1000.0);
        }
out:
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
