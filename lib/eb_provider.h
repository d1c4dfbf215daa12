/*
 * eb_provider: the adapter interface every upstream platform implements.
 *
 * An adapter is a table of functions (struct eb_provider) in its own
 * lib/provider_<name>.c, registered in eb_provider.c's table; adding one
 * touches nothing else. The scheduler (eb_poller) owns the HTTP transfers,
 * rate limits, backoff and publishing; the adapter only knows its API:
 *
 *   walk_begin      checkpoint (JSON, or NULL on first start) -> walk state
 *   next_request    walk state -> the URL and auth header of the next page
 *   handle_response HTTP response -> events + "more pages?" + signals
 *   page_done       the page's events are in Kafka -> advance the
 *                   checkpoint (w->cp) the scheduler will persist
 *   walk_end        the walk finished -> final checkpoint for the next one
 *   normalize       one native event -> struct eb_event (webhooks too)
 *
 * Checkpoints are provider-defined JSON objects, so they can be stored in
 * Kafka as they are (<state_prefix>.checkpoints) and read back after a
 * restart. They must only move forward when the events behind them are
 * acknowledged; the scheduler guarantees page_done is called only then.
 *
 * Thread context: all calls on the loop thread; no I/O inside adapters.
 */
#ifndef EB_PROVIDER_H
#define EB_PROVIDER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "eb_config.h"
#include "eb_event.h"
#include "eb_log.h"

/** What the scheduler should make of a response. */
typedef enum {
        EB_RESP_OK = 0,       /* a page (possibly empty): see page fields */
        EB_RESP_RATE_LIMITED, /* 429: wait retry_after_ms (or back off) */
        EB_RESP_BANNED,       /* Kommo 403: stop the source, alert */
        EB_RESP_AUTH,         /* 401/402/403 (not a ban): credentials */
        EB_RESP_RETRY,        /* 5xx, 408, etc: back off and retry */
        EB_RESP_BAD_BODY,     /* unparseable or wrong shape: back off */
        EB_RESP_CLIENT_ERROR, /* other 4xx: our request is wrong; back off */
} eb_resp_kind_t;

/** The response the scheduler hands to the adapter (all borrowed). */
struct eb_response {
        long status;              /* HTTP status */
        const char *body;         /* NUL-terminated, may be "" */
        size_t body_len;
        const char *content_type; /* may be NULL */
        const char *retry_after;  /* Retry-After header, may be NULL */
        const char *ratelimit;    /* RateLimit header, may be NULL */
        int64_t now_ms;           /* wall clock at completion */
};

/** What the adapter made of a response. */
struct eb_page {
        eb_resp_kind_t kind;
        struct eb_event **events; /* new array of new events (kind OK) */
        size_t events_cnt;
        int more;                 /* 1: call next_request for another page */
        int full;                 /* 1: the page was full (catch-up hint) */
        int64_t retry_after_ms;   /* >0 when the upstream said how long */
        char detail[256];         /* why, for logs and metrics */
};

/** One walk over the events list. Owned by the scheduler. */
struct eb_walk {
        const struct eb_source_cfg *src; /* borrowed */
        const char *base_url;   /* src->base_url or the provider default */
        int64_t now_ms;         /* wall clock when the walk began */
        int64_t start_ms;       /* poll.start resolved (first start only) */
        int64_t overlap_ms;     /* resolved (source or provider default) */
        int64_t lag_ms;         /* resolved */
        int page_size;          /* resolved */
        json_t *cp;             /* checkpoint: in at begin, advanced by
                                 * page_done/walk_end (owned ref) */
        json_t *state;          /* adapter-private walk state (owned ref) */
        int pages;              /* pages fetched so far in this walk */
        /* Extra query filters an adapter may add for a targeted walk
         * (Kommo webhook trigger: entity + entity_id). Owned, may be NULL. */
        json_t *hint;
};

struct eb_provider {
        const char *name;
        const char *default_base_url; /* NULL: base_url is required */
        double default_rps;
        int default_burst;
        int default_page_size;
        int max_page_size;
        int64_t default_overlap_ms;
        int64_t default_lag_ms;

        /** Check provider-specific keys of a source; @p path is
         *  "sources[N]". @returns 0 or -EINVAL with "path.key: why". */
        int (*check_config)(const struct eb_source_cfg *src, const char *path,
                            char *errstr, size_t errstr_size);

        /** Prepare a walk from w->cp (NULL: first start, use start_ms). */
        int (*walk_begin)(struct eb_walk *w);

        /** Build the next request. @p url and @p auth are new strings
         *  (auth: a full header line, "Authorization: ..."). */
        int (*next_request)(struct eb_walk *w, char **url, char **auth);

        /** Classify and parse a response. Never fails: bad input becomes
         *  kind EB_RESP_BAD_BODY with a detail. */
        void (*handle_response)(struct eb_walk *w,
                                const struct eb_response *resp,
                                struct eb_page *page);

        /** The last page's events are acknowledged: advance w->cp. */
        void (*page_done)(struct eb_walk *w);

        /** The walk is over (no more pages): finalize w->cp. */
        void (*walk_end)(struct eb_walk *w);

        /** Normalize one native event (borrowed) for source @p src.
         *  @returns new event, or NULL with a reason in @p errstr. */
        struct eb_event *(*normalize)(const struct eb_source_cfg *src,
                                      json_t *native, char *errstr,
                                      size_t errstr_size);
};

/** @returns borrowed adapter by name, or NULL. */
const struct eb_provider *eb_provider_lookup(const char *name);

/** @returns the NULL-terminated list of registered adapters. */
const struct eb_provider *const *eb_provider_all(void);

/**
 * @brief Check every source's provider and provider-specific options.
 * @returns 0 or -EINVAL with "sources[N].key: why" in @p errstr.
 */
int eb_provider_check_config(const struct eb_config *cfg, char *errstr,
                             size_t errstr_size);

/** @brief Free a page's events and reset it. */
void eb_page_fini(struct eb_page *page);

/** @brief Set up @p w for @p src and @p prov at @p now_ms, taking a
 * reference to @p cp (may be NULL). */
void eb_walk_init(struct eb_walk *w, const struct eb_provider *prov,
                  const struct eb_source_cfg *src, json_t *cp,
                  int64_t now_ms);
/** @brief Release what a walk holds. */
void eb_walk_fini(struct eb_walk *w);

#endif /* EB_PROVIDER_H */
