/*
 * eb_poller: the scheduler that polls every configured source.
 *
 * One page walk in flight per source; many sources on one loop, each with
 * its own timer, token bucket and backoff, so a slow or failing upstream
 * delays nobody else. For each page:
 *
 *   token -> adapter next_request -> HTTP -> adapter handle_response
 *        -> sink publish(events, checkpoint)  -> acknowledged?
 *             yes: keep the new checkpoint, next page (or end the walk)
 *             no:  roll the walk back to before the page, back off, retry
 *
 * so a checkpoint never moves past events that are not in Kafka, and no
 * error (HTTP, upstream, Kafka) loses the position.
 *
 * Signals honoured: 429 (Retry-After / Kommo body retry_after / Close
 * RateLimit reset), Close RateLimit remaining near 0 (slow down), Kommo
 * 403 (ban: the source stops and says so loudly), 401/402 (long backoff),
 * 5xx / timeouts / resets / bad bodies (exponential backoff with jitter).
 *
 * Thread context: the loop thread only.
 */
#ifndef EB_POLLER_H
#define EB_POLLER_H

#include <jansson.h>
#include <stdint.h>

#include "eb_config.h"
#include "eb_event.h"
#include "eb_http.h"
#include "eb_log.h"
#include "eb_provider.h"

struct event_base;
typedef struct eb_poller_s eb_poller_t;

/** Called by the sink when a publish is settled: @p err 0 = every event
 *  and the checkpoint are durably in Kafka. */
typedef void(eb_publish_done_cb)(void *arg, int err);

/**
 * Where pages go. publish() takes ownership of @p evts (the array and the
 * events) whatever it returns; @p cp is the checkpoint to persist with
 * them (borrowed: incref to keep). It returns 0 and later calls @p done
 * exactly once (never from inside publish()), or a negative errno at once
 * (-EAGAIN: Kafka queue full; the poller backs off and retries the page).
 */
struct eb_sink {
        int (*publish)(void *opaque, const struct eb_source_cfg *src,
                       struct eb_event **evts, size_t cnt, json_t *cp,
                       eb_publish_done_cb *done, void *arg);
        void *opaque;
};

struct eb_poller_opts {
        int64_t backoff_min_ms;    /* first retry delay, default 1s */
        int64_t backoff_max_ms;    /* cap, default 5 min */
        int64_t auth_backoff_ms;   /* after 401/402, default 5 min */
        int64_t catchup_delay_ms;  /* between back-to-back walks, default 0 */
        double slowdown_remaining; /* Close RateLimit: below this share of
                                    * limit left, spread the rest (0.1) */
        long max_walk_events;      /* newest-first walks are buffered and
                                    * published oldest first up to this many
                                    * events (default 2000): the bound of a
                                    * time slice; a source's
                                    * poll.max_buffered_events wins */
        long publish_max_events;   /* most events handed to the sink in one
                                    * publish (default 5000; evbridge sets
                                    * kafka.batch.max_events) */
};

enum eb_source_state {
        EB_SRC_IDLE = 0,   /* waiting for the next walk */
        EB_SRC_WAITING,    /* waiting for a token / a rate-limit pause */
        EB_SRC_FETCHING,   /* HTTP request in flight */
        EB_SRC_PUBLISHING, /* page handed to the sink */
        EB_SRC_BACKOFF,    /* retrying after an error */
        EB_SRC_STOPPED,    /* banned or removed */
};

/** Per-source counters (monotonic unless noted). */
struct eb_source_stats {
        uint64_t walks;       /* completed page walks */
        uint64_t requests;    /* HTTP requests sent */
        uint64_t pages;       /* pages handled */
        uint64_t events;      /* events handed to the sink */
        uint64_t errors_http; /* timeouts, resets, refused */
        uint64_t errors_5xx;
        uint64_t errors_body;       /* unparseable / wrong shape / over
                                     * http.max_body */
        uint64_t errors_auth;       /* 401 / 402 */
        uint64_t errors_client;     /* other 4xx */
        uint64_t errors_publish;    /* sink failures */
        uint64_t rate_limited;      /* 429s */
        uint64_t slowdowns;         /* proactive waits: RateLimit remaining,
                                     * or a 429 of another source on the
                                     * same host */
        int banned;                 /* gauge: 1 after a Kommo 403 */
        int refused;                /* gauge: 1 after a 4xx the upstream
                                     * says not to retry (Kota) */
        int64_t stuck_since_ms;     /* gauge: monotonic ms of the first of
                                     * the current run of failed requests
                                     * (0: the last one succeeded) */
        int64_t backoff_ms;         /* gauge: current backoff, 0 if none */
        int64_t newest_event_ms;    /* gauge: newest event time published
                                     * (acknowledged by the sink) */
        int64_t last_walk_end_ms;   /* gauge: wall clock */
        uint64_t checkpoints;       /* checkpoints committed (moved) */
        uint64_t slice_splits;      /* walks dropped and walked again as
                                     * shorter time slices */
        enum eb_source_state state; /* gauge */
        /* What /status shows (wall clock ms, 0: not yet). */
        int64_t oldest_event_ms; /* oldest event time published */
        int64_t start_ms;        /* poll.start resolved: backfill target */
        int64_t next_poll_ms;    /* when the source's timer fires */
        int64_t last_error_ms;   /* when last_error happened */
        char last_error[200];    /* the last failure, "" if none */
        /* Kommo OAuth (credentials.refresh_token): */
        uint64_t oauth_refreshes; /* token pairs renewed and persisted */
        int oauth_refused;        /* gauge: 1 after the token endpoint
                                   * refused the refresh (400/401): the
                                   * source is stopped until the operator
                                   * re-authorizes */
};

/** @returns new poller. @p opts may be NULL for defaults. */
eb_poller_t *eb_poller_new(struct event_base *base, eb_http_t *http,
                           const struct eb_sink *sink,
                           const struct eb_poller_opts *opts);

/**
 * @brief Add a source and schedule its first walk (after a small stagger,
 * so hundreds of sources don't fire at once).
 * @p src is borrowed and must outlive the source; @p cp is the restored
 * checkpoint (borrowed, may be NULL).
 * @returns 0, -EEXIST, or -EINVAL (unknown provider) with @p errstr.
 */
int eb_poller_add(eb_poller_t *p, const struct eb_source_cfg *src, json_t *cp,
                  char *errstr, size_t errstr_size);

/**
 * @brief Stop and forget a source. An in-flight request is let finish (the
 * upstream serves it either way) and its answer dropped; an in-flight
 * publish is let run. A source added again under the same name sends
 * nothing until its predecessor's request is over, so an account never
 * sees two of our requests at once.
 */
void eb_poller_remove(eb_poller_t *p, const char *name);

/**
 * @brief Apply one source's reload (eb_config_diff_sources()): @p n NULL
 * removes @p o; @p o NULL adds @p n; both restart it with the new
 * configuration. A restarted or added source resumes from the checkpoint
 * the poller holds for it, else from @p cp (borrowed, may be NULL).
 * Logs what it did and counts it in @p tally (may be NULL).
 * @returns 0, or eb_poller_add()'s error.
 */
struct eb_reload_tally {
        int added, removed, changed;
};
int eb_poller_replace(eb_poller_t *p, const struct eb_source_cfg *o,
                      const struct eb_source_cfg *n, json_t *cp,
                      struct eb_reload_tally *tally, char *errstr,
                      size_t errstr_size);

/** @returns 1 while a request or publish of @p name (removed or not) is in
 *  flight. */
int eb_poller_busy(const eb_poller_t *p, const char *name);

/** @brief Remove @p name and cancel its requests now, those of removed
 *  incarnations included (a deadline passed). Publishes still settle. */
void eb_poller_cancel(eb_poller_t *p, const char *name);

/**
 * @brief Ask for a walk of @p name now (webhook trigger). Coalesced: while
 * a walk runs, one more walk follows it; bounded by the rate limit.
 * @returns 0 or -ENOENT.
 */
int eb_poller_trigger(eb_poller_t *p, const char *name);

/** @brief Stop starting requests; in-flight work finishes. */
void eb_poller_stop(eb_poller_t *p);

/** @returns 1 when no request or publish is in flight. */
int eb_poller_idle(const eb_poller_t *p);

/** @returns borrowed stats of @p name, or NULL. */
const struct eb_source_stats *eb_poller_stats(const eb_poller_t *p,
                                              const char *name);

/** @returns borrowed committed checkpoint of @p name, or NULL. */
json_t *eb_poller_checkpoint(const eb_poller_t *p, const char *name);

/** @brief Call @p fn for every source (name, provider, stats). */
void eb_poller_foreach(const eb_poller_t *p,
                       void (*fn)(const char *name, const char *provider,
                                  const struct eb_source_stats *st,
                                  void *opaque),
                       void *opaque);

/**
 * @brief Every source as JSON for /status: name, provider, state, the
 * backfill (oldest and newest event time published, the poll.start
 * target), lag (now - newest event), next poll, last error, counters.
 * @returns new array.
 */
json_t *eb_poller_status(const eb_poller_t *p);

/**
 * @brief The sources stopped because their OAuth refresh was refused,
 * as "name, name" in @p buf. @returns how many.
 */
int eb_poller_oauth_refused(const eb_poller_t *p, char *buf, size_t size);

/** @returns the name of a state ("idle", "fetching", ...). */
const char *eb_source_state_name(enum eb_source_state st);

/** @brief Free everything (cancels in-flight requests); NULL is a no-op.
 *  Publishes still pending in the sink must be settled or abandoned by
 *  the caller first (their done callbacks must not run after this). */
void eb_poller_free(eb_poller_t *p);

#endif /* EB_POLLER_H */
